//! Integrity table: SHA-1 of fixed-size chunks of the file from the end of
//! the header to the end of the blob table.

use super::bytes::Le;
use super::header::{Header, HEADER_SIZE};
use crate::error::{Error, Result, Section};
use crate::io::ReadAt;
use sha1::{Digest, Sha1};

#[derive(Debug, Clone)]
pub struct IntegrityTable {
    pub chunk_size: u32,
    pub hashes: Vec<[u8; 20]>,
}

/// Outcome of checking the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntegrityStatus {
    Absent,
    Ok,
    /// Indexes of mismatching chunks, and the region they cover.
    Mismatch(Vec<(u32, u64, u64)>),
}

pub fn parse(b: &[u8]) -> Result<IntegrityTable> {
    let le = Le::new(b, Section::Integrity, "integrity table");
    let size = le.u32(0)? as usize;
    let n = le.u32(4)? as usize;
    let chunk_size = le.u32(8)?;
    if size > b.len()
        || n.checked_mul(20)
            .and_then(|x| x.checked_add(12))
            .is_none_or(|x| x > b.len())
    {
        return Err(Error::corrupt(
            Section::Integrity,
            None,
            format!("integrity table claims {n} entries, more than it holds"),
        ));
    }
    if chunk_size == 0 {
        return Err(Error::corrupt(
            Section::Integrity,
            None,
            "integrity table chunk size is 0",
        ));
    }
    let hashes = (0..n)
        .map(|i| le.sha1(12 + 20 * i))
        .collect::<Result<Vec<_>>>()?;
    Ok(IntegrityTable { chunk_size, hashes })
}

pub fn build(src: &dyn ReadAt, start: u64, end: u64, chunk_size: u32) -> Result<Vec<u8>> {
    let mut hashes = Vec::new();
    let mut buf = vec![0u8; chunk_size as usize];
    let mut p = start;
    while p < end {
        let n = ((end - p) as usize).min(buf.len());
        src.read_exact_at(&mut buf[..n], p)?;
        hashes.push(Sha1::digest(&buf[..n]));
        p += n as u64;
    }
    let mut o = Vec::new();
    o.extend_from_slice(&((12 + 20 * hashes.len()) as u32).to_le_bytes());
    o.extend_from_slice(&(hashes.len() as u32).to_le_bytes());
    o.extend_from_slice(&chunk_size.to_le_bytes());
    for h in hashes {
        o.extend_from_slice(&h);
    }
    Ok(o)
}

/// Check the table against the file; `progress` is told of bytes hashed.
pub fn check(
    src: &dyn ReadAt,
    hdr: &Header,
    table: &IntegrityTable,
    progress: &dyn Fn(u64),
) -> Result<IntegrityStatus> {
    let start = HEADER_SIZE as u64;
    let end = hdr
        .blob_table
        .offset
        .saturating_add(hdr.blob_table.size_in_wim);
    if end > src.len() || end < start {
        return Err(Error::corrupt(
            Section::BlobTable,
            Some(hdr.blob_table.offset),
            "blob table lies outside the file",
        ));
    }
    let cs = table.chunk_size as u64;
    let expect = (end - start).div_ceil(cs);
    if expect != table.hashes.len() as u64 {
        return Ok(IntegrityStatus::Mismatch(vec![(0, start, end)]));
    }
    let mut bad = Vec::new();
    let mut buf = vec![0u8; cs.min(64 << 20) as usize];
    for (i, want) in table.hashes.iter().enumerate() {
        let s = start + i as u64 * cs;
        let e = (s + cs).min(end);
        let mut h = Sha1::new();
        let mut p = s;
        while p < e {
            let n = ((e - p) as usize).min(buf.len());
            src.read_exact_at(&mut buf[..n], p)?;
            h.update(&buf[..n]);
            p += n as u64;
        }
        progress(e - s);
        if h.finalize().as_slice() != want {
            bad.push((i as u32, s, e));
        }
    }
    Ok(if bad.is_empty() {
        IntegrityStatus::Ok
    } else {
        IntegrityStatus::Mismatch(bad)
    })
}
