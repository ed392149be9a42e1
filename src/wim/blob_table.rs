//! The blob table ("lookup table"): one 50-byte entry per stored blob.

use super::bytes::Le;
use super::header::ResHdr;
use crate::error::{Error, Result, Section};

pub const ENTRY_SIZE: usize = 50;

/// One raw blob-table entry as stored on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    pub reshdr: ResHdr,
    pub part_number: u16,
    pub refcount: u32,
    pub hash: [u8; 20],
}

impl BlobEntry {
    pub fn parse(b: &[u8]) -> Result<Self> {
        let le = Le::new(b, Section::BlobTable, "blob table entry");
        Ok(BlobEntry {
            reshdr: ResHdr::parse(le.bytes(0, 24)?)?,
            part_number: le.u16(24)?,
            refcount: le.u32(26)?,
            hash: le.sha1(30)?,
        })
    }
    pub fn write(&self, out: &mut Vec<u8>) {
        self.reshdr.write(out);
        out.extend_from_slice(&self.part_number.to_le_bytes());
        out.extend_from_slice(&self.refcount.to_le_bytes());
        out.extend_from_slice(&self.hash);
    }
}

/// Parse a whole (already decompressed) blob table.
pub fn parse(b: &[u8]) -> Result<Vec<BlobEntry>> {
    if !b.len().is_multiple_of(ENTRY_SIZE) {
        log::warn!(
            "blob table size {} is not a multiple of {ENTRY_SIZE}; ignoring {} trailing bytes",
            b.len(),
            b.len() % ENTRY_SIZE
        );
    }
    b.chunks_exact(ENTRY_SIZE).map(BlobEntry::parse).collect()
}

/// Serialize a blob table.
pub fn write(entries: &[BlobEntry]) -> Vec<u8> {
    let mut o = Vec::with_capacity(entries.len() * ENTRY_SIZE);
    for e in entries {
        e.write(&mut o);
    }
    o
}

/// Sanity limit: refuse a blob table that claims more entries than could
/// fit in the file (the table itself is bounded by the file size already,
/// this only guards the error path).
pub fn check_size(size: u64, file_len: u64) -> Result<()> {
    if size > file_len {
        return Err(Error::corrupt(
            Section::BlobTable,
            None,
            format!("blob table size {size} exceeds file size {file_len}"),
        ));
    }
    Ok(())
}
