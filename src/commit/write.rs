//! Writing resources: blobs compressed chunk-parallel with the WIM's own
//! codec and chunk size, solid runs for LZMS WIMs, and raw tables.

use crate::commit::Content;
use crate::error::{Error, Result};
use crate::wim::header::{resflags, Compression, ResHdr, SOLID_RESOURCE_MAGIC};
use crate::wim::resource::compress;
use rayon::prelude::*;
use std::fs::File;
use std::sync::mpsc;

/// Appends to a file at a tracked position (positional writes, so nothing
/// else needs the file's cursor).
pub struct Appender<'a> {
    pub file: &'a File,
    pub pos: u64,
    pub path: String,
}

impl Appender<'_> {
    pub fn write(&mut self, b: &[u8]) -> Result<u64> {
        let at = self.pos;
        self.write_at(b, at)?;
        self.pos += b.len() as u64;
        Ok(at)
    }
    /// Cut the file at the current position: whatever lies beyond was
    /// written by this appender and is no longer wanted (the file must end
    /// where the header will say it does).
    pub fn cut(&self) -> Result<()> {
        self.file.set_len(self.pos).map_err(|e| Error::Io {
            path: self.path.clone(),
            err: e,
        })
    }
    pub fn write_at(&self, b: &[u8], at: u64) -> Result<()> {
        crate::sys::write_all_at(self.file, b, at).map_err(|e| Error::Io {
            path: self.path.clone(),
            err: e,
        })
    }
}

/// Bytes of input compressed in one parallel batch.
const WINDOW: usize = 64 << 20;

/// Compress `chunks` in parallel; raw where a chunk does not shrink.
fn compress_chunks(chunks: &[&[u8]], comp: Compression, cs: u32) -> Vec<Option<Vec<u8>>> {
    chunks.par_iter().map(|c| compress(comp, cs, c)).collect()
}

/// Compress the chunks `next` fills (it returns false when there are no
/// more) on `workers` threads and hand each to `sink` in order, raw and
/// compressed (`None`: it does not shrink). Each worker takes the next
/// chunk as soon as it is free: the 64 MiB chunks of one solid resource
/// differ several times over in how long they take, and compressing them
/// in fixed batches left a core idle for the difference in every batch. At
/// most `ahead` chunks are read and not yet handed on (memory).
fn compress_in_order(
    mut next: impl FnMut(&mut Vec<u8>) -> Result<bool>,
    comp: Compression,
    cs: u32,
    workers: usize,
    ahead: usize,
    mut sink: impl FnMut(&[u8], Option<&[u8]>) -> Result<()>,
) -> Result<()> {
    type Done = (usize, Vec<u8>, Option<Vec<u8>>);
    let (work_tx, work_rx) = mpsc::channel::<(usize, Vec<u8>)>();
    let work_rx = parking_lot::Mutex::new(work_rx);
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    std::thread::scope(|sc| {
        for _ in 0..workers {
            let (rx, tx) = (&work_rx, done_tx.clone());
            sc.spawn(move || loop {
                let job = rx.lock().recv();
                let Ok((i, raw)) = job else {
                    break;
                };
                let c = compress(comp, cs, &raw);
                if tx.send((i, raw, c)).is_err() {
                    break;
                }
            });
        }
        drop(done_tx);
        let mut run = || -> Result<()> {
            let (mut sent, mut written, mut more) = (0usize, 0usize, true);
            let mut held: std::collections::BTreeMap<usize, (Vec<u8>, Option<Vec<u8>>)> =
                std::collections::BTreeMap::new();
            let mut spare: Vec<Vec<u8>> = Vec::new();
            loop {
                while more && sent - written < ahead {
                    let mut buf = spare.pop().unwrap_or_default();
                    buf.clear();
                    if next(&mut buf)? {
                        work_tx
                            .send((sent, buf))
                            .map_err(|_| Error::Other("compression workers stopped".into()))?;
                        sent += 1;
                    } else {
                        more = false;
                    }
                }
                if written == sent {
                    return Ok(());
                }
                let (i, raw, c) = done_rx
                    .recv()
                    .map_err(|_| Error::Other("compression workers stopped".into()))?;
                held.insert(i, (raw, c));
                while let Some((raw, c)) = held.remove(&written) {
                    sink(&raw, c.as_deref())?;
                    spare.push(raw);
                    written += 1;
                }
            }
        };
        let r = run();
        // Workers see the queue closed and stop.
        drop(work_tx);
        r
    })
}

/// Write one blob as a normal (non-solid) resource at the end of `out`.
/// Small blobs that do not shrink are stored uncompressed.
pub fn write_blob(
    out: &mut Appender,
    src: &dyn Content,
    comp: Compression,
    cs: u32,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ResHdr> {
    let size = src.len();
    let start = out.pos;
    if size == 0 {
        return Ok(ResHdr {
            size_in_wim: 0,
            flags: 0,
            offset: start,
            uncompressed_size: 0,
        });
    }
    if comp == Compression::None {
        let mut buf = vec![0u8; (WINDOW as u64).min(size) as usize];
        let mut p = 0u64;
        while p < size {
            let n = ((size - p) as usize).min(buf.len());
            src.read_at(p, &mut buf[..n])?;
            out.write(&buf[..n])?;
            progress(n as u64);
            p += n as u64;
        }
        return Ok(ResHdr {
            size_in_wim: size,
            flags: 0,
            offset: start,
            uncompressed_size: size,
        });
    }
    let cs64 = cs as u64;
    let n = size.div_ceil(cs64);
    let esize: u64 = if size > u32::MAX as u64 { 8 } else { 4 };
    let table_len = (n - 1) * esize;
    // Reserve the table, then the chunks; fill the table in at the end.
    out.pos += table_len;
    let mut offsets: Vec<u64> = Vec::with_capacity(n as usize);
    let mut rel = 0u64;
    let mut buf = vec![0u8; (WINDOW as u64).min(size) as usize];
    let mut p = 0u64;
    while p < size {
        let whole = if buf.len() >= cs as usize {
            buf.len() - buf.len() % cs as usize
        } else {
            buf.len()
        };
        let len = ((size - p) as usize).min(whole);
        src.read_at(p, &mut buf[..len])?;
        let chunks: Vec<&[u8]> = buf[..len].chunks(cs as usize).collect();
        let enc = compress_chunks(&chunks, comp, cs);
        for (raw, c) in chunks.iter().zip(enc) {
            offsets.push(rel);
            let stored: &[u8] = c.as_deref().unwrap_or(raw);
            out.write(stored)?;
            rel += stored.len() as u64;
        }
        progress(len as u64);
        p += len as u64;
    }
    let total = table_len + rel;
    if total >= size {
        // Did not shrink: rewrite uncompressed in place of what we wrote.
        out.pos = start;
        let mut p = 0u64;
        while p < size {
            let len = ((size - p) as usize).min(buf.len());
            src.read_at(p, &mut buf[..len])?;
            out.write(&buf[..len])?;
            p += len as u64;
        }
        // The compressed attempt was longer than the raw data: its tail is
        // still in the file past the end of the raw copy.
        out.cut()?;
        return Ok(ResHdr {
            size_in_wim: size,
            flags: 0,
            offset: start,
            uncompressed_size: size,
        });
    }
    let mut table = Vec::with_capacity(table_len as usize);
    for &o in &offsets[1..] {
        if esize == 8 {
            table.extend_from_slice(&o.to_le_bytes());
        } else {
            table.extend_from_slice(&(o as u32).to_le_bytes());
        }
    }
    out.write_at(&table, start)?;
    Ok(ResHdr {
        size_in_wim: total,
        flags: resflags::COMPRESSED,
        offset: start,
        uncompressed_size: size,
    })
}

/// Write many blobs, in parallel where they are small: each batch of small
/// blobs is compressed on all cores, then written in order.
pub fn write_blobs(
    out: &mut Appender,
    blobs: &[&dyn Content],
    comp: Compression,
    cs: u32,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<ResHdr>> {
    let mut res = Vec::with_capacity(blobs.len());
    let small = (cs as u64).max(1 << 20);
    let mut i = 0;
    while i < blobs.len() {
        if blobs[i].len() > small {
            res.push(write_blob(out, blobs[i], comp, cs, progress)?);
            i += 1;
            continue;
        }
        // A batch of consecutive small blobs, up to WINDOW bytes.
        let mut j = i;
        let mut bytes = 0u64;
        while j < blobs.len() && blobs[j].len() <= small && bytes < WINDOW as u64 {
            bytes += blobs[j].len();
            j += 1;
        }
        let encoded: Vec<Result<(Vec<u8>, bool)>> = blobs[i..j]
            .par_iter()
            .map(|b| {
                let mut v = vec![0u8; b.len() as usize];
                b.read_at(0, &mut v)?;
                let mut mem = Vec::new();
                let compressed = encode_in_memory(&v, comp, cs, &mut mem);
                progress(v.len() as u64);
                Ok(if compressed { (mem, true) } else { (v, false) })
            })
            .collect();
        for (b, e) in blobs[i..j].iter().zip(encoded) {
            let (e, compressed) = e?;
            let size = b.len();
            let off = out.write(&e)?;
            res.push(ResHdr {
                size_in_wim: e.len() as u64,
                flags: if compressed { resflags::COMPRESSED } else { 0 },
                offset: off,
                uncompressed_size: size,
            });
        }
        i = j;
    }
    Ok(res)
}

/// Encode a small blob (table + chunks) into `out`; false when it does not
/// shrink and should be stored raw.
fn encode_in_memory(data: &[u8], comp: Compression, cs: u32, out: &mut Vec<u8>) -> bool {
    if comp == Compression::None || data.is_empty() {
        return false;
    }
    let chunks: Vec<&[u8]> = data.chunks(cs as usize).collect();
    let enc: Vec<Option<Vec<u8>>> = chunks.iter().map(|c| compress(comp, cs, c)).collect();
    let esize = if data.len() as u64 > u32::MAX as u64 {
        8
    } else {
        4
    };
    let mut rel = 0u64;
    let mut table = Vec::new();
    for (k, (raw, c)) in chunks.iter().zip(&enc).enumerate() {
        if k > 0 {
            if esize == 8 {
                table.extend_from_slice(&rel.to_le_bytes());
            } else {
                table.extend_from_slice(&(rel as u32).to_le_bytes());
            }
        }
        rel += c.as_ref().map_or(raw.len(), |c| c.len()) as u64;
    }
    if table.len() as u64 + rel >= data.len() as u64 {
        return false;
    }
    out.extend_from_slice(&table);
    for (raw, c) in chunks.iter().zip(&enc) {
        out.extend_from_slice(c.as_deref().unwrap_or(raw));
    }
    true
}

/// Write blobs into one new solid resource (how WIMs of version 0xE00
/// store data). Returns the resource header (as a blob-table entry wants
/// it) and each blob's offset within the resource.
pub fn write_solid(
    out: &mut Appender,
    blobs: &[&dyn Content],
    comp: Compression,
    cs: u32,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(ResHdr, Vec<u64>)> {
    let total: u64 = blobs.iter().map(|b| b.len()).sum();
    let start = out.pos;
    let n = total.div_ceil(cs as u64);
    let table_len = 4 * n;
    out.pos += 16 + table_len;
    let mut sizes: Vec<u32> = Vec::with_capacity(n as usize);
    let mut offsets = Vec::with_capacity(blobs.len());
    let mut acc = 0u64;
    for b in blobs {
        offsets.push(acc);
        acc += b.len();
    }
    // The blobs laid end to end, cut into chunks.
    let mut bi = 0usize;
    let mut boff = 0u64;
    let mut done = 0u64;
    let next = |buf: &mut Vec<u8>| -> Result<bool> {
        let want = (cs as u64).min(total - done) as usize;
        if want == 0 {
            return Ok(false);
        }
        while buf.len() < want {
            let b = blobs[bi];
            let take = ((b.len() - boff) as usize).min(want - buf.len());
            let at = buf.len();
            buf.resize(at + take, 0);
            b.read_at(boff, &mut buf[at..])?;
            boff += take as u64;
            if boff == b.len() {
                bi += 1;
                boff = 0;
            }
            while bi < blobs.len() && blobs[bi].is_empty() {
                bi += 1;
            }
        }
        done += want as u64;
        Ok(true)
    };
    let workers = rayon::current_num_threads().max(1);
    let ahead = (workers + 1).max(WINDOW / cs as usize);
    compress_in_order(next, comp, cs, workers, ahead, |raw, c| {
        let stored = c.unwrap_or(raw);
        out.write(stored)?;
        sizes.push(stored.len() as u32);
        progress(raw.len() as u64);
        Ok(())
    })?;
    let mut hdr = Vec::with_capacity(16 + table_len as usize);
    hdr.extend_from_slice(&total.to_le_bytes());
    hdr.extend_from_slice(&cs.to_le_bytes());
    hdr.extend_from_slice(&comp.solid_format().to_le_bytes());
    for s in &sizes {
        hdr.extend_from_slice(&s.to_le_bytes());
    }
    out.write_at(&hdr, start)?;
    Ok((
        ResHdr {
            size_in_wim: out.pos - start,
            flags: resflags::SOLID,
            offset: start,
            uncompressed_size: SOLID_RESOURCE_MAGIC,
        },
        offsets,
    ))
}

/// Append an integrity table covering the file from the end of the header
/// to `covered_end` (the end of the blob table), after syncing what it
/// hashes.
pub fn append_integrity(out: &mut Appender, covered_end: u64) -> Result<ResHdr> {
    out.file.sync_data()?;
    let src = crate::io::FileSource::new(out.file.try_clone()?)?;
    let it = crate::wim::integrity::build(
        &src,
        crate::wim::header::HEADER_SIZE as u64,
        covered_end,
        super::INTEGRITY_CHUNK,
    )?;
    let off = out.write(&it)?;
    Ok(ResHdr {
        size_in_wim: it.len() as u64,
        flags: 0,
        offset: off,
        uncompressed_size: it.len() as u64,
    })
}
