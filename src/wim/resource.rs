//! Resources: runs of bytes in a WIM part, stored raw or as independently
//! compressed chunks behind a chunk table.
//!
//! Two layouts exist. A normal resource starts with a table of the offsets of
//! chunks 1..n (relative to the end of the table; 8-byte entries when the
//! resource is over 4 GiB uncompressed) and uses the WIM's codec and chunk
//! size. A solid resource (WIM version 0xE00) starts with its own 16-byte
//! header (uncompressed size, chunk size, codec) followed by the compressed
//! size of every chunk as 4-byte entries. Either way a chunk whose stored size
//! equals its uncompressed size is stored raw.

use super::header::{Compression, ResHdr};
use crate::codec;
use crate::error::{Error, Result, Section};
use crate::io::ReadAt;
use rayon::prelude::*;
use std::sync::{Arc, OnceLock};

/// Solid chunks may be huge (64 MiB in ESDs); refuse anything absurd before
/// allocating for it.
pub const MAX_CHUNK_SIZE: u32 = 1 << 30;

/// A physical resource in one part file.
pub struct Resource {
    /// Unique within an opened WIM; the chunk cache keys on it.
    pub id: u64,
    pub source: Arc<dyn ReadAt>,
    pub part: u16,
    pub reshdr: ResHdr,
    pub uncompressed_size: u64,
    pub compression: Compression,
    pub chunk_size: u32,
    pub solid: bool,
    /// Loaded once; a failure is kept too (shared, not re-read) so every
    /// later read of the resource reports the same typed error.
    table: OnceLock<std::result::Result<Arc<ChunkTable>, Arc<Error>>>,
}

/// Absolute file offsets of every chunk's stored bytes; `starts[n]` is the end.
pub struct ChunkTable {
    pub starts: Vec<u64>,
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resource")
            .field("id", &self.id)
            .field("part", &self.part)
            .field("offset", &self.reshdr.offset)
            .field("size_in_wim", &self.reshdr.size_in_wim)
            .field("uncompressed_size", &self.uncompressed_size)
            .field("compression", &self.compression)
            .field("chunk_size", &self.chunk_size)
            .field("solid", &self.solid)
            .finish()
    }
}

/// The 16-byte header at the start of a solid resource.
pub const SOLID_HEADER_SIZE: u64 = 16;

impl Resource {
    /// Describe a normal (non-solid) resource using the WIM's default codec.
    pub fn normal(
        id: u64,
        source: Arc<dyn ReadAt>,
        part: u16,
        reshdr: ResHdr,
        wim_compression: Compression,
        wim_chunk_size: u32,
    ) -> Result<Self> {
        reshdr.check_bounds(source.len(), Section::Resource, "resource")?;
        let compression = if reshdr.is_compressed() {
            if wim_compression == Compression::None {
                return Err(Error::corrupt(
                    Section::Resource,
                    Some(reshdr.offset),
                    format!(
                        "resource at {:#x} is marked compressed but the WIM header names no compression",
                        reshdr.offset
                    ),
                ));
            }
            wim_compression
        } else {
            // Stored raw, the two sizes must agree (wimlib and WIMGAPI insist).
            if reshdr.size_in_wim != reshdr.uncompressed_size {
                return Err(Error::corrupt(
                    Section::Resource,
                    Some(reshdr.offset),
                    format!(
                        "uncompressed resource at {:#x} is {} bytes but claims {} bytes of data",
                        reshdr.offset, reshdr.size_in_wim, reshdr.uncompressed_size
                    ),
                ));
            }
            Compression::None
        };
        Ok(Resource {
            id,
            source,
            part,
            reshdr,
            uncompressed_size: reshdr.uncompressed_size,
            compression,
            chunk_size: wim_chunk_size,
            solid: false,
            table: OnceLock::new(),
        })
    }

    /// Describe a solid resource, reading its 16-byte header.
    pub fn solid(id: u64, source: Arc<dyn ReadAt>, part: u16, reshdr: ResHdr) -> Result<Self> {
        reshdr.check_bounds(source.len(), Section::Resource, "solid resource")?;
        if reshdr.size_in_wim < SOLID_HEADER_SIZE {
            return Err(Error::corrupt(
                Section::Resource,
                Some(reshdr.offset),
                format!(
                    "solid resource at {:#x} is too small ({} bytes)",
                    reshdr.offset, reshdr.size_in_wim
                ),
            ));
        }
        let mut h = [0u8; 16];
        source.read_exact_at(&mut h, reshdr.offset)?;
        let usize_ = u64::from_le_bytes(h[0..8].try_into().unwrap_or_default());
        let chunk_size = u32::from_le_bytes(h[8..12].try_into().unwrap_or_default());
        let fmt = u32::from_le_bytes(h[12..16].try_into().unwrap_or_default());
        let compression = Compression::from_solid_format(fmt).ok_or_else(|| {
            Error::Unsupported(format!(
                "solid resource at {:#x} uses unknown compression format {fmt}",
                reshdr.offset
            ))
        })?;
        if chunk_size == 0
            || !chunk_size.is_power_of_two()
            || chunk_size > MAX_CHUNK_SIZE.min(compression.max_chunk())
        {
            return Err(Error::corrupt(
                Section::Resource,
                Some(reshdr.offset),
                format!(
                    "solid resource at {:#x} has invalid chunk size {chunk_size}",
                    reshdr.offset
                ),
            ));
        }
        Ok(Resource {
            id,
            source,
            part,
            reshdr,
            uncompressed_size: usize_,
            compression,
            chunk_size,
            solid: true,
            table: OnceLock::new(),
        })
    }

    pub fn num_chunks(&self) -> u64 {
        self.uncompressed_size.div_ceil(self.chunk_size as u64)
    }

    /// Uncompressed size of chunk `i`.
    pub fn chunk_len(&self, i: u64) -> usize {
        let start = i * self.chunk_size as u64;
        (self.uncompressed_size.saturating_sub(start)).min(self.chunk_size as u64) as usize
    }

    /// Is this resource one whose bytes are simply the data?
    pub fn is_raw(&self) -> bool {
        self.compression == Compression::None && !self.solid
    }

    /// The chunk table, read and checked on first use.
    pub fn chunk_table(&self) -> Result<Arc<ChunkTable>> {
        self.table
            .get_or_init(|| self.load_table().map(Arc::new).map_err(Arc::new))
            .clone()
            .map_err(Error::Shared)
    }

    fn load_table(&self) -> Result<ChunkTable> {
        let n = self.num_chunks();
        let off = self.reshdr.offset;
        let size = self.reshdr.size_in_wim;
        let bad = |what: String| {
            Error::corrupt(
                Section::Resource,
                Some(off),
                format!("resource at {off:#x}: {what}"),
            )
        };
        if self.solid {
            let tsize = n
                .checked_mul(4)
                .filter(|t| t + SOLID_HEADER_SIZE <= size)
                .ok_or_else(|| {
                    bad(format!(
                        "chunk table of {n} chunks does not fit in {size} bytes"
                    ))
                })?;
            let mut raw = vec![0u8; tsize as usize];
            self.source
                .read_exact_at(&mut raw, off + SOLID_HEADER_SIZE)?;
            let mut starts = Vec::with_capacity(n as usize + 1);
            let mut pos = off + SOLID_HEADER_SIZE + tsize;
            let end = off + size;
            for (i, c) in raw.chunks_exact(4).enumerate() {
                starts.push(pos);
                let csize = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64;
                if csize > self.chunk_len(i as u64) as u64 || csize == 0 {
                    return Err(bad(format!("chunk {i} has invalid stored size {csize}")));
                }
                pos += csize;
                if pos > end {
                    return Err(bad(format!(
                        "chunk {i} extends past the end of the resource"
                    )));
                }
            }
            starts.push(pos);
            Ok(ChunkTable { starts })
        } else {
            let esize: u64 = if self.uncompressed_size > u32::MAX as u64 {
                8
            } else {
                4
            };
            let entries = n.saturating_sub(1);
            let tsize = entries
                .checked_mul(esize)
                .filter(|&t| t <= size)
                .ok_or_else(|| {
                    bad(format!(
                        "chunk table of {n} chunks does not fit in {size} bytes"
                    ))
                })?;
            let mut raw = vec![0u8; tsize as usize];
            self.source.read_exact_at(&mut raw, off)?;
            let data_start = off + tsize;
            let data_len = size - tsize;
            let mut starts = Vec::with_capacity(n as usize + 1);
            starts.push(data_start);
            let mut prev = 0u64;
            for (i, c) in raw.chunks_exact(esize as usize).enumerate() {
                let rel = if esize == 8 {
                    u64::from_le_bytes(c.try_into().unwrap_or_default())
                } else {
                    u32::from_le_bytes(c.try_into().unwrap_or_default()) as u64
                };
                if rel < prev || rel > data_len || rel - prev > self.chunk_len(i as u64) as u64 {
                    return Err(bad(format!(
                        "chunk table entry {} is out of order or range",
                        i + 1
                    )));
                }
                prev = rel;
                starts.push(data_start + rel);
            }
            if n > 0 && data_len - prev > self.chunk_len(n - 1) as u64 {
                return Err(bad("last chunk is larger than its uncompressed size".into()));
            }
            starts.push(data_start + data_len);
            Ok(ChunkTable { starts })
        }
    }

    /// Where chunk `i`'s stored bytes lie in the source: `(start, end)`.
    ///
    /// For a non-solid resource the two chunk-table entries around chunk
    /// `i` are read for each chunk (one small `pread`, from the page cache
    /// after the first) instead of keeping the table: a mount that reads
    /// every file of a /usr-sized image would otherwise keep ~5 MB of
    /// tables, growing outside the cache's budget. Each entry pair is
    /// checked on its own: in order, inside the resource, no larger than
    /// the chunk. A one-chunk resource (most files) has no table at all.
    /// Solid resources keep their table: their chunk sizes must be summed.
    fn chunk_span(&self, i: u64) -> Result<(u64, u64)> {
        let n = self.num_chunks();
        if i >= n {
            return Err(Error::corrupt(
                Section::Resource,
                Some(self.reshdr.offset),
                format!("chunk {i} out of range"),
            ));
        }
        if self.solid {
            let t = self.chunk_table()?;
            return match (t.starts.get(i as usize), t.starts.get(i as usize + 1)) {
                (Some(&s), Some(&e)) => Ok((s, e)),
                _ => Err(Error::corrupt(
                    Section::Resource,
                    Some(self.reshdr.offset),
                    format!("chunk {i} out of range"),
                )),
            };
        }
        let off = self.reshdr.offset;
        let size = self.reshdr.size_in_wim;
        let esize: u64 = if self.uncompressed_size > u32::MAX as u64 {
            8
        } else {
            4
        };
        let tsize = (n - 1)
            .checked_mul(esize)
            .filter(|&t| t <= size)
            .ok_or_else(|| {
                Error::corrupt(
                    Section::Resource,
                    Some(off),
                    format!(
                        "resource at {off:#x}: chunk table of {n} chunks does not fit in {size} bytes"
                    ),
                )
            })?;
        let data_start = off + tsize;
        let data_len = size - tsize;
        // Entry k (0-based) holds the start of chunk k + 1.
        let entry = |b: &[u8]| -> u64 {
            if esize == 8 {
                u64::from_le_bytes(b.try_into().unwrap_or_default())
            } else {
                u32::from_le_bytes(b.try_into().unwrap_or_default()) as u64
            }
        };
        let mut raw = [0u8; 16];
        let (rel_s, rel_e) = if n == 1 {
            (0, data_len)
        } else {
            let first = i.saturating_sub(1);
            let last = i.min(n - 2).max(first);
            let cnt = (last - first + 1) as usize;
            let buf = &mut raw[..cnt * esize as usize];
            self.source.read_exact_at(buf, off + first * esize)?;
            let e0 = entry(&buf[..esize as usize]);
            let e1 = entry(&buf[buf.len() - esize as usize..]);
            match (i == 0, i == n - 1) {
                (true, _) => (0, e0),
                (false, true) => (e1, data_len),
                (false, false) => (e0, e1),
            }
        };
        if rel_s > rel_e || rel_e > data_len || rel_e - rel_s > self.chunk_len(i) as u64 {
            return Err(Error::corrupt(
                Section::Resource,
                Some(off),
                format!(
                    "resource at {off:#x}: chunk table entries for chunk {i} are out of order or range"
                ),
            ));
        }
        Ok((data_start + rel_s, data_start + rel_e))
    }

    /// Read and decompress chunk `i` into a new buffer.
    pub fn read_chunk(&self, i: u64) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.chunk_len(i)];
        self.read_chunk_into(i, &mut out)?;
        Ok(out)
    }

    /// Read and decompress chunk `i` into `out`, which must be exactly
    /// [`Self::chunk_len`] bytes. The compressed bytes go through a buffer
    /// kept per thread, so a decode allocates nothing: a long-running mount
    /// decoding millions of chunks does not churn (and fragment) the heap.
    pub fn read_chunk_into(&self, i: u64, out: &mut [u8]) -> Result<()> {
        let ulen = self.chunk_len(i);
        if out.len() != ulen {
            return Err(Error::Internal(format!(
                "chunk {i} is {ulen} bytes, buffer is {}",
                out.len()
            )));
        }
        if self.is_raw() {
            self.source
                .read_exact_at(out, self.reshdr.offset + i * self.chunk_size as u64)?;
            return Ok(());
        }
        let (s, e) = self.chunk_span(i)?;
        let clen = (e - s) as usize;
        if clen == ulen || self.compression == Compression::None {
            if clen != ulen {
                return Err(Error::corrupt(
                    Section::Resource,
                    Some(s),
                    format!("raw chunk {i} has wrong size"),
                ));
            }
            self.source.read_exact_at(out, s)?;
            return Ok(());
        }
        if clen > ulen {
            return Err(Error::corrupt(
                Section::Resource,
                Some(s),
                format!(
                    "chunk {i} of the resource at {:#x} is stored in {clen} bytes, more than its {ulen} bytes of data",
                    self.reshdr.offset
                ),
            ));
        }
        COMPRESSED.with(|cell| {
            let mut own = Vec::new();
            let mut guard = cell.try_borrow_mut();
            let comp = match guard.as_mut() {
                Ok(b) => &mut **b,
                Err(_) => &mut own,
            };
            comp.clear();
            comp.resize(clen, 0);
            self.source.read_exact_at(comp, s)?;
            let r = decompress(self.compression, self.chunk_size, comp, out).map_err(|err| {
                Error::Decompress {
                    offset: self.reshdr.offset,
                    chunk: i,
                    err,
                }
            });
            // Keep a solid resource's 64 MiB input buffer only while in use.
            if comp.capacity() > KEEP_COMPRESSED {
                *comp = Vec::new();
            }
            r
        })
    }

    /// Read the whole resource (small resources: metadata, XML, blob table).
    /// The caller bounds the size before calling. Chunks are decoded in
    /// parallel (a /usr-sized image's metadata is tens of megabytes).
    pub fn read_all(&self) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.uncompressed_size as usize];
        if self.is_raw() {
            self.source.read_exact_at(&mut out, self.reshdr.offset)?;
            return Ok(out);
        }
        let cs = (self.chunk_size as usize).max(1);
        let one = |(i, o): (usize, &mut [u8])| self.read_chunk_into(i as u64, o);
        if self.num_chunks() < 4 {
            // Not worth waking the thread pool (a small image's metadata).
            out.chunks_mut(cs).enumerate().try_for_each(one)?;
        } else {
            out.par_chunks_mut(cs).enumerate().try_for_each(one)?;
        }
        Ok(out)
    }
}

/// Compressed chunks up to this size keep their read buffer per thread.
const KEEP_COMPRESSED: usize = 4 << 20;

thread_local! {
    /// Each thread's buffer for the compressed bytes of the chunk it decodes.
    static COMPRESSED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Dispatch one chunk to its codec. `chunk_size` is the resource's chunk
/// size: LZX derives its window from it, also for a short final chunk.
pub fn decompress(
    c: Compression,
    chunk_size: u32,
    input: &[u8],
    out: &mut [u8],
) -> std::result::Result<(), codec::CodecError> {
    match c {
        Compression::None => {
            if input.len() != out.len() {
                return Err(codec::CodecError::Corrupt("raw chunk size mismatch"));
            }
            out.copy_from_slice(input);
            Ok(())
        }
        Compression::Xpress => codec::xpress::decompress(input, out),
        Compression::Lzx => codec::lzx::decompress_chunk(input, out, chunk_size as usize),
        Compression::Lzms => codec::lzms::decompress(input, out),
    }
}

/// Compress one chunk with the resource's codec; `None` when it does not
/// shrink (the chunk is then stored raw).
pub fn compress(c: Compression, chunk_size: u32, input: &[u8]) -> Option<Vec<u8>> {
    match c {
        Compression::None => None,
        Compression::Xpress => codec::xpress::compress(input),
        Compression::Lzx => codec::lzx::compress_chunk(input, chunk_size as usize),
        Compression::Lzms => codec::lzms::compress(input),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wim::header::resflags;

    /// A three-chunk XPRESS resource laid out as in a WIM: the chunk table
    /// (starts of chunks 1 and 2), then the compressed chunks.
    fn three_chunks() -> (Vec<u8>, Vec<u8>, ResHdr) {
        let data: Vec<u8> = (0..3 * 4096 + 1000u32)
            .map(|i| b"wimfs chunk table "[(i % 18) as usize] ^ (i / 4096) as u8)
            .collect();
        let chunks: Vec<Vec<u8>> = data
            .chunks(4096)
            .map(|c| compress(Compression::Xpress, 4096, c).unwrap_or_else(|| c.to_vec()))
            .collect();
        let mut file = Vec::new();
        let mut rel = 0u32;
        for c in &chunks[..chunks.len() - 1] {
            rel += c.len() as u32;
            file.extend_from_slice(&rel.to_le_bytes());
        }
        for c in &chunks {
            file.extend_from_slice(c);
        }
        let rh = ResHdr {
            size_in_wim: file.len() as u64,
            flags: resflags::COMPRESSED,
            offset: 0,
            uncompressed_size: data.len() as u64,
        };
        (data, file, rh)
    }

    fn resource(file: Vec<u8>, rh: ResHdr) -> Resource {
        Resource::normal(1, Arc::new(file), 1, rh, Compression::Xpress, 4096).unwrap()
    }

    #[test]
    fn chunks_are_found_through_the_table() {
        let (data, file, rh) = three_chunks();
        let r = resource(file, rh);
        assert_eq!(r.num_chunks(), 4);
        assert_eq!(r.read_all().unwrap(), data);
        for i in 0..4 {
            let c = r.read_chunk(i).unwrap();
            assert_eq!(
                &c[..],
                &data[i as usize * 4096..(data.len()).min((i as usize + 1) * 4096)]
            );
        }
        assert!(r.read_chunk(4).is_err());
    }

    #[test]
    fn bad_table_entries_are_errors_for_their_chunks() {
        let (_, mut file, rh) = three_chunks();
        // Entry 1 (start of chunk 2) before entry 0: chunks 1 and 2 are
        // out of order; chunk 0 is still readable.
        let e0 = u32::from_le_bytes(file[0..4].try_into().unwrap());
        file[4..8].copy_from_slice(&(e0 - 1).to_le_bytes());
        let r = resource(file.clone(), rh);
        assert!(r.read_chunk(0).is_ok());
        assert!(r.read_chunk(1).is_err());
        assert!(r.read_chunk(2).is_err());
        assert!(r.read_all().is_err());
        // Entry past the end of the resource.
        file[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        let r = resource(file, rh);
        assert!(r.read_chunk(3).is_err());
    }
}
