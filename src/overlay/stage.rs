//! A changed stream: copy-on-write at block granularity.
//!
//! A staged stream is the stream's old content (a blob in the WIM, read
//! through the chunk cache) with changed blocks laid over it. Changed
//! ("dirty") blocks live in one sparse staging file per stream, at the same
//! offsets as in the stream; a bitmap says which blocks are dirty. The first
//! write into a clean block copies only that block's old bytes (at most
//! [`BLOCK`]) into the staging file, so changing one byte of a large file
//! reads and decompresses about one block, never the whole file.
//!
//! Invariants:
//! - Bytes of the stream at or past `base_valid` that are not in a dirty
//!   block read as zeros (a truncation down then up shows zeros, never the
//!   old data).
//! - Clean blocks of the staging file hold zeros (or lie past its end):
//!   truncation shortens the file, and recovery zeroes clean blocks that an
//!   interrupted write may have touched.

use crate::cache::ChunkCache;
use crate::wim::Blob;
use parking_lot::RwLock;
use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Copy-on-write block size: the unit of dirtiness and of copying old data.
pub const BLOCK: u64 = 64 * 1024;

/// Largest stream size accepted (keeps block arithmetic far from overflow).
pub const MAX_SIZE: u64 = 1 << 50;

/// Counters shared by all streams of an overlay (for tests and `--stats`).
#[derive(Debug, Default)]
pub struct StageCounters {
    /// Old bytes read from the WIM to fill partly written blocks.
    pub copied_from_base: AtomicU64,
    /// Bytes written into staging files by users.
    pub written: AtomicU64,
}

struct State {
    size: u64,
    base_valid: u64,
    /// One bit per block.
    dirty: Vec<u64>,
}

impl State {
    fn is_dirty(&self, b: u64) -> bool {
        self.dirty
            .get((b / 64) as usize)
            .is_some_and(|w| w & (1 << (b % 64)) != 0)
    }
    fn set_dirty(&mut self, b: u64) {
        let w = (b / 64) as usize;
        if self.dirty.len() <= w {
            self.dirty.resize(w + 1, 0);
        }
        self.dirty[w] |= 1 << (b % 64);
    }
    fn clear_from(&mut self, first: u64) {
        let w = (first / 64) as usize;
        if w < self.dirty.len() {
            self.dirty[w] &= (1u64 << (first % 64)) - 1;
            self.dirty.truncate(w + 1);
        }
        while self.dirty.last() == Some(&0) {
            self.dirty.pop();
        }
    }
    fn dirty_blocks(&self) -> impl Iterator<Item = u64> + '_ {
        self.dirty.iter().enumerate().flat_map(|(i, &w)| {
            (0..64u64)
                .filter(move |k| w & (1 << k) != 0)
                .map(move |k| i as u64 * 64 + k)
        })
    }
}

/// One changed stream.
pub struct Staged {
    pub id: u64,
    base: Option<Arc<Blob>>,
    /// Size of the old content (0 without one).
    base_size: u64,
    st: RwLock<State>,
    file: File,
    cache: Arc<ChunkCache>,
    counters: Arc<StageCounters>,
    unsynced: AtomicBool,
}

/// What [`Staged::scan`] found cut back by a resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Length of the staging file (how far data had been written).
    pub staged_len: u64,
    /// The stream's size as the journal records it (as resumed).
    pub size: u64,
    /// Blocks written after the last sync point inside the recorded size:
    /// they revert to their content as of that sync point.
    pub unrecorded_blocks: u64,
    /// Blocks the journal records as written that the staging file no
    /// longer holds (they read as zeros).
    pub missing_blocks: u64,
}

/// Runs of newly dirtied blocks: (first block, count).
pub type Runs = Vec<(u64, u64)>;

fn push_run(runs: &mut Runs, b: u64) {
    match runs.last_mut() {
        Some((s, n)) if *s + *n == b => *n += 1,
        _ => runs.push((b, 1)),
    }
}

impl Staged {
    /// A staged stream over the staging file `file` (opened by the
    /// overlay through its private staging directory, never through a
    /// symlink) whose old content is `base` of `base_size` bytes. The new
    /// stream starts equal to the old content.
    pub fn open(
        id: u64,
        file: File,
        base: Option<Arc<Blob>>,
        base_size: u64,
        cache: Arc<ChunkCache>,
        counters: Arc<StageCounters>,
    ) -> io::Result<Staged> {
        Ok(Staged {
            id,
            base,
            base_size,
            st: RwLock::new(State {
                size: base_size,
                base_valid: base_size,
                dirty: Vec::new(),
            }),
            file,
            cache,
            counters,
            unsynced: AtomicBool::new(false),
        })
    }

    pub fn size(&self) -> u64 {
        self.st.read().size
    }

    /// Number of dirty blocks (for tests and stats).
    pub fn dirty_count(&self) -> u64 {
        self.st
            .read()
            .dirty
            .iter()
            .map(|w| w.count_ones() as u64)
            .sum()
    }

    /// Read up to `buf.len()` bytes from `offset`; returns the count (short
    /// only at the end of the stream).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> crate::Result<usize> {
        let st = self.st.read();
        if offset >= st.size {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(st.size - offset) as usize;
        let buf = &mut buf[..n];
        let end = offset + n as u64;
        // Group consecutive blocks of the same kind, so clean runs become
        // one (parallel, multi-chunk) read through the cache.
        let mut pos = offset;
        while pos < end {
            let dirty = st.is_dirty(pos / BLOCK);
            let mut stop = ((pos / BLOCK) + 1) * BLOCK;
            while stop < end && st.is_dirty(stop / BLOCK) == dirty {
                stop += BLOCK;
            }
            let stop = stop.min(end);
            let out = &mut buf[(pos - offset) as usize..(stop - offset) as usize];
            if dirty {
                read_file_zero_fill(&self.file, pos, out)?;
            } else {
                self.read_base(pos, out, st.base_valid)?;
            }
            pos = stop;
        }
        Ok(n)
    }

    /// Old content for `[pos, pos+out.len())`, zeros at or past `valid`.
    fn read_base(&self, pos: u64, out: &mut [u8], valid: u64) -> crate::Result<()> {
        let have = valid
            .min(self.base_size)
            .saturating_sub(pos)
            .min(out.len() as u64) as usize;
        if have > 0 {
            let b = self
                .base
                .as_ref()
                .ok_or_else(|| crate::Error::Other("data missing from WIM".into()))?;
            let got = self.cache.read_blob(b, pos, &mut out[..have])?;
            if got != have {
                return Err(crate::Error::Invalid("blob shorter than its stream".into()));
            }
        }
        out[have..].fill(0);
        Ok(())
    }

    /// Write `data` at `offset`; returns the blocks newly made dirty.
    pub fn write(&self, offset: u64, data: &[u8]) -> crate::Result<Runs> {
        let mut runs = Vec::new();
        if data.is_empty() {
            return Ok(runs);
        }
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e <= MAX_SIZE)
            .ok_or_else(|| crate::Error::Other("file too large".into()))?;
        let mut st = self.st.write();
        let (first, last) = (offset / BLOCK, (end - 1) / BLOCK);
        for b in first..=last {
            if st.is_dirty(b) {
                continue;
            }
            let bs = b * BLOCK;
            let be = bs + BLOCK;
            // Old bytes of this block that the write does not cover.
            let valid = st.base_valid.min(self.base_size).min(be);
            let covered = offset <= bs && end >= valid;
            if valid > bs && !covered {
                let mut old = vec![0u8; (valid - bs) as usize];
                self.read_base(bs, &mut old, valid)?;
                crate::sys::write_all_at(&self.file, &old, bs)?;
                self.counters
                    .copied_from_base
                    .fetch_add(old.len() as u64, Ordering::Relaxed);
            }
            st.set_dirty(b);
            push_run(&mut runs, b);
        }
        crate::sys::write_all_at(&self.file, data, offset)?;
        self.counters
            .written
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        st.size = st.size.max(end);
        self.unsynced.store(true, Ordering::Release);
        Ok(runs)
    }

    /// Set the size: shrinking forgets everything past `size` (old data
    /// and dirty blocks), growing adds zeros.
    pub fn set_size(&self, size: u64) -> crate::Result<()> {
        if size > MAX_SIZE {
            return Err(crate::Error::Other("file too large".into()));
        }
        let mut st = self.st.write();
        if size < st.size {
            st.clear_from(size.div_ceil(BLOCK));
            st.base_valid = st.base_valid.min(size);
            if self.file.metadata()?.len() > size {
                self.file.set_len(size)?;
                self.unsynced.store(true, Ordering::Release);
            }
        }
        st.size = size;
        Ok(())
    }

    /// Replay: mark blocks dirty and set the size, without touching data.
    pub fn replay_data(&self, runs: &[(u64, u64)], size: u64) {
        let mut st = self.st.write();
        for &(s, n) in runs {
            for b in s..s.saturating_add(n).min(MAX_SIZE / BLOCK) {
                st.set_dirty(b);
            }
        }
        st.size = size.min(MAX_SIZE);
    }

    /// Replay a size change: the bookkeeping of [`Self::set_size`] only.
    pub fn replay_size(&self, size: u64) {
        let mut st = self.st.write();
        let size = size.min(MAX_SIZE);
        if size < st.size {
            st.clear_from(size.div_ceil(BLOCK));
            st.base_valid = st.base_valid.min(size);
        }
        st.size = size;
    }

    /// After replay: compare the staging file with what the journal says
    /// and report data that was written but never recorded (written after
    /// the stream's last sync point, so its records died with the daemon).
    /// With `fix`, also restore the invariants: bytes past the size are
    /// dropped and clean blocks that an interrupted write touched are
    /// zeroed (only those: untouched holes stay holes).
    ///
    /// Three signs, none of which a completed sync point leaves behind:
    /// the file is longer than the recorded size; a clean block holds
    /// non-zero bytes; a dirty block lies wholly past the end of the file
    /// (written, then cut by a truncation that was not recorded).
    pub fn scan(&self, fix: bool) -> io::Result<Option<Cut>> {
        let st = self.st.read();
        let flen = self.file.metadata()?.len();
        let mut cut = Cut {
            staged_len: flen,
            size: st.size,
            unrecorded_blocks: 0,
            missing_blocks: st
                .dirty_blocks()
                .filter(|&b| b * BLOCK >= flen && b * BLOCK < st.size)
                .count() as u64,
        };
        if fix && flen > st.size {
            self.file.set_len(st.size)?;
        }
        let end = flen.min(st.size);
        let zeros = vec![0u8; BLOCK as usize];
        let mut buf = vec![0u8; BLOCK as usize];
        let mut b = 0;
        while b * BLOCK < end {
            if !st.is_dirty(b) {
                let n = (end - b * BLOCK).min(BLOCK) as usize;
                read_file_zero_fill(&self.file, b * BLOCK, &mut buf[..n])?;
                if buf[..n].iter().any(|&x| x != 0) {
                    cut.unrecorded_blocks += 1;
                    if fix {
                        crate::sys::write_all_at(&self.file, &zeros[..n], b * BLOCK)?;
                    }
                }
            }
            b += 1;
        }
        if fix {
            self.file.sync_data()?;
        }
        Ok(
            (cut.staged_len > cut.size || cut.unrecorded_blocks > 0 || cut.missing_blocks > 0)
                .then_some(cut),
        )
    }

    /// Make the staging file durable (if written since the last sync).
    pub fn sync(&self) -> io::Result<()> {
        if self.unsynced.swap(false, Ordering::AcqRel) {
            if let Err(e) = self.file.sync_data() {
                self.unsynced.store(true, Ordering::Release);
                return Err(e);
            }
        }
        Ok(())
    }

    /// The dirty blocks, for tests.
    pub fn dirty_list(&self) -> Vec<u64> {
        self.st.read().dirty_blocks().collect()
    }
}

/// The merged view, as commit content.
impl crate::newimage::Content for Staged {
    fn len(&self) -> u64 {
        self.size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> crate::Result<()> {
        let n = self.read(offset, buf)?;
        if n != buf.len() {
            return Err(crate::Error::Other(
                "read past the end of a changed stream".into(),
            ));
        }
        Ok(())
    }
}

/// Positional read that fills with zeros past the end of the file.
fn read_file_zero_fill(f: &File, mut pos: u64, mut out: &mut [u8]) -> io::Result<()> {
    while !out.is_empty() {
        let n = crate::sys::read_at(f, out, pos)?;
        if n == 0 {
            out.fill(0);
            return Ok(());
        }
        pos += n as u64;
        out = &mut out[n..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::Path;

    fn staged(dir: &Path) -> Staged {
        let c = Arc::new(ChunkCache::new(1 << 20));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("s"))
            .unwrap();
        Staged::open(1, f, None, 0, c, Arc::default()).unwrap()
    }

    #[test]
    fn sparse_write_truncate_regrow() {
        let d = tempfile::tempdir().unwrap();
        let s = staged(d.path());
        s.write(200_000, b"hello").unwrap();
        assert_eq!(s.size(), 200_005);
        let mut b = vec![1u8; 10];
        assert_eq!(s.read(199_998, &mut b).unwrap(), 7);
        assert_eq!(&b[..7], b"\0\0hello");
        s.set_size(200_001).unwrap();
        s.set_size(300_000).unwrap();
        let mut b = vec![1u8; 6];
        s.read(200_000, &mut b).unwrap();
        assert_eq!(b, b"h\0\0\0\0\0");
        assert_eq!(s.dirty_list(), vec![3]);
        s.set_size(10).unwrap();
        assert!(s.dirty_list().is_empty());
    }

    #[test]
    fn scan_names_data_the_journal_never_recorded() {
        let d = tempfile::tempdir().unwrap();
        // Recorded state: 100 bytes written, then grown to 200 KB by a
        // truncate (no data): nothing is cut.
        let s = staged(d.path());
        let runs = s.write(0, &[1u8; 100]).unwrap();
        s.set_size(200_000).unwrap();
        let r = staged(d.path());
        r.replay_data(&runs, 100);
        r.replay_size(200_000);
        assert_eq!(r.scan(false).unwrap(), None);
        // Written after the last record: past the size, and in a clean
        // block inside it.
        s.write(300_000, b"late").unwrap();
        s.write(70_000, b"also late").unwrap();
        let c = r.scan(false).unwrap().unwrap();
        assert_eq!((c.staged_len, c.size), (300_004, 200_000));
        assert_eq!((c.unrecorded_blocks, c.missing_blocks), (1, 0));
        // Fixing restores the invariants; then nothing is cut.
        r.scan(true).unwrap();
        assert_eq!(r.scan(false).unwrap(), None);
        let mut b = vec![9u8; 9];
        r.read(70_000, &mut b).unwrap();
        assert_eq!(b, vec![0u8; 9]);
        // A truncation that was never recorded: recorded blocks missing.
        s.set_size(10).unwrap();
        let q = staged(d.path());
        q.replay_data(&[(0, 2)], 100_000);
        let c = q.scan(false).unwrap().unwrap();
        assert_eq!(c.missing_blocks, 1);
    }
}
