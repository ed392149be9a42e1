//! A changed stream: copy-on-write at block granularity, small new files
//! packed.
//!
//! A staged stream is the stream's old content (a blob in the WIM, read
//! through the chunk cache) with changed blocks laid over it. Changed
//! ("dirty") blocks live in one sparse staging file per stream, at the same
//! offsets as in the stream; a bitmap says which blocks are dirty. The first
//! write into a clean block copies only that block's old bytes (at most
//! [`BLOCK`]) into the staging file, so changing one byte of a large file
//! reads and decompresses about one block, never the whole file.
//!
//! A stream whose whole content was written in the mount (a new file, or
//! one emptied by `O_TRUNC`) is held in memory while it is small and being
//! written, and appended to one shared pack file when it is closed or
//! fsynced, so copying in a tree of small files (a driver folder) creates
//! no file per file in the staging. That matters beyond the saved calls:
//! on ext4 without a journal each new inode is searched for past every
//! inode freed in the last minutes, so thousands of staging files created
//! after a discard or commit cost quadratic time. A packed stream that is
//! written again moves into a staging file of its own (at most
//! [`MEM_MAX`] bytes are copied). Bytes written into a stream still held
//! in memory die with the daemon, which the durability promise allows
//! (only closed or fsynced data is promised); see the overlay's module
//! documentation.
//!
//! Invariants:
//! - Bytes of the stream at or past `base_valid` that are not in a dirty
//!   block read as zeros (a truncation down then up shows zeros, never the
//!   old data).
//! - Clean blocks of the staging file hold zeros (or lie past its end):
//!   truncation shortens the file, and recovery zeroes clean blocks that an
//!   interrupted write may have touched.
//! - Memory and packed streams have no old content (`base_valid` is 0) and
//!   no dirty blocks; past their bytes they read as zeros.

use crate::cache::ChunkCache;
use crate::sys::{Access, PrivateDir};
use crate::wim::Blob;
use parking_lot::{Mutex, RwLock};
use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Copy-on-write block size: the unit of dirtiness and of copying old data.
pub const BLOCK: u64 = 64 * 1024;

/// Largest stream size accepted (keeps block arithmetic far from overflow).
pub const MAX_SIZE: u64 = 1 << 50;

/// Largest new stream held in memory until it is closed: above this it
/// gets a staging file of its own (a large file gains nothing from the
/// pack, and its bytes should reach the kernel as they are written).
pub const MEM_MAX: u64 = 1 << 20;

/// Most bytes all streams of an overlay hold in memory together (many
/// files open for writing at once then go to staging files); less when
/// the mount's cache is small: see [`mem_budget`].
pub const MEM_BUDGET: u64 = 64 << 20;

/// The memory new streams of a mount may hold: an eighth of what the
/// mount's `--cache-size` gives it, at most [`MEM_BUDGET`]. The mount
/// leaves it out of the chunk cache, so the daemon stays within its size.
pub fn mem_budget(cache_total: u64) -> u64 {
    MEM_BUDGET.min(cache_total / 8)
}

/// Name of the pack file in the data directory (every other name there is
/// a stream id).
pub const PACK: &str = "pack";

/// Counters shared by all streams of an overlay (for tests and `--stats`).
#[derive(Debug, Default)]
pub struct StageCounters {
    /// Old bytes read from the WIM to fill partly written blocks.
    pub copied_from_base: AtomicU64,
    /// Bytes written into staging files by users.
    pub written: AtomicU64,
    /// Streams appended to the pack.
    pub packed: AtomicU64,
    /// Staging files created.
    pub files: AtomicU64,
}

/// The pack: small closed streams, appended one after another. Space of a
/// stream deleted or rewritten is not reused; the pack is emptied after a
/// commit leaves no stream in it.
struct Pack {
    file: Option<Arc<File>>,
    end: u64,
}

/// What the staged streams of one overlay share: the directory of their
/// staging files, the pack, the chunk cache and the memory budget.
pub struct Area {
    dir: PrivateDir,
    /// Open files read-only and create none (`wimfs recover`).
    read_only: bool,
    cache: Arc<ChunkCache>,
    counters: Arc<StageCounters>,
    pack: Mutex<Pack>,
    pack_unsynced: AtomicBool,
    held: AtomicU64,
    budget: u64,
}

impl Area {
    pub fn new(
        dir: PrivateDir,
        read_only: bool,
        cache: Arc<ChunkCache>,
        counters: Arc<StageCounters>,
    ) -> Area {
        Area {
            dir,
            read_only,
            budget: mem_budget(cache.total()),
            cache,
            counters,
            pack: Mutex::new(Pack { file: None, end: 0 }),
            pack_unsynced: AtomicBool::new(false),
            held: AtomicU64::new(0),
        }
    }

    /// The data directory (staging files and the pack).
    pub fn dir(&self) -> &PrivateDir {
        &self.dir
    }

    /// The staging file of stream `id` if it exists (opened read-write,
    /// or read-only for `recover`).
    pub fn existing_file(&self, id: u64) -> io::Result<Option<File>> {
        let access = if self.read_only {
            Access::Read
        } else {
            Access::ReadWrite
        };
        match self.dir.open_file(id.to_string(), access) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A new, empty staging file for stream `id` (whatever a killed
    /// earlier run left under the name is emptied), marked sparse: it
    /// holds only the blocks changed in the mount at their offsets, so on
    /// NTFS (Windows) a few changed blocks of a large file must not take
    /// the whole file's space. A volume that cannot do it (FAT) still
    /// works, only larger, so a failure is logged, not returned.
    fn new_file(&self, id: u64) -> io::Result<File> {
        if self.read_only {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the staging is open read-only",
            ));
        }
        let f = self.dir.open_file(id.to_string(), Access::Create)?;
        f.set_len(0)?;
        if let Err(e) = crate::sys::set_sparse(&f) {
            log::debug!("staging file {id} not made sparse: {e}");
        }
        self.counters.files.fetch_add(1, Ordering::Relaxed);
        Ok(f)
    }

    fn pack_file(&self) -> io::Result<Arc<File>> {
        let mut p = self.pack.lock();
        if let Some(f) = &p.file {
            return Ok(f.clone());
        }
        let access = if self.read_only {
            Access::Read
        } else {
            Access::Create
        };
        let f = Arc::new(self.dir.open_file(PACK, access)?);
        // Appends go after whatever is there: bytes past the last record
        // that names them (a killed append) are never read.
        p.end = f.metadata()?.len();
        p.file = Some(f.clone());
        Ok(f)
    }

    /// Append `bytes` to the pack; returns their offset.
    fn pack_append(&self, bytes: &[u8]) -> io::Result<u64> {
        let f = self.pack_file()?;
        let off = {
            let mut p = self.pack.lock();
            let off = p.end;
            p.end += bytes.len() as u64;
            off
        };
        crate::sys::write_all_at(&f, bytes, off)?;
        self.pack_unsynced.store(true, Ordering::Release);
        self.counters.packed.fetch_add(1, Ordering::Relaxed);
        Ok(off)
    }

    /// Length of the pack file as it is on disk.
    fn pack_len(&self) -> io::Result<u64> {
        match self.pack_file() {
            Ok(f) => Ok(f.metadata()?.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Make the pack durable (if appended to since the last sync).
    pub fn sync_pack(&self) -> io::Result<()> {
        if self.pack_unsynced.swap(false, Ordering::AcqRel) {
            let f = self.pack.lock().file.clone();
            if let Some(f) = f {
                if let Err(e) = f.sync_data() {
                    self.pack_unsynced.store(true, Ordering::Release);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Delete the pack (no stream refers to it any more: after a commit);
    /// the next packing starts a new one. A staging with nothing left in
    /// it is then empty, as before the mount wrote anything.
    pub fn reset_pack(&self) -> io::Result<()> {
        let mut p = self.pack.lock();
        p.file = None;
        p.end = 0;
        self.pack_unsynced.store(false, Ordering::Release);
        match self.dir.remove_file(PACK) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Reserve `n` more bytes of the memory budget.
    fn hold(&self, n: u64) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                (h + n <= self.budget).then_some(h + n)
            })
            .is_ok()
    }

    fn unhold(&self, n: u64) {
        self.held.fetch_sub(n, Ordering::AcqRel);
    }

    /// Most bytes streams may hold in memory together.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Bytes held in memory by streams not yet packed.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }
}

/// Where a staged stream's new bytes are.
enum Store {
    /// Nowhere yet: no dirty block, everything reads from the old content.
    Base,
    /// In memory (the stream is new or was emptied, and is small).
    Mem(Vec<u8>),
    /// In the pack at `off`, `len` bytes.
    Packed { off: u64, len: u64 },
    /// In the stream's own staging file, as dirty blocks.
    File(File),
}

struct State {
    size: u64,
    base_valid: u64,
    /// One bit per block.
    dirty: Vec<u64>,
    store: Store,
    /// Replay only: a staging file left by a packed stream's later
    /// changes whose records were never written (named by the scan).
    leftover: Option<File>,
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
    area: Arc<Area>,
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

/// A stream packed by [`Staged::pack`]: what its journal record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packed {
    pub off: u64,
    pub len: u64,
    pub size: u64,
}

impl Staged {
    /// A staged stream whose old content is `base` of `base_size` bytes,
    /// over the staging file `file` when it has one already (found by a
    /// replay), else without one until it needs it. The new stream starts
    /// equal to the old content.
    pub fn open(
        id: u64,
        file: Option<File>,
        base: Option<Arc<Blob>>,
        base_size: u64,
        area: Arc<Area>,
    ) -> Staged {
        let store = match file {
            Some(f) => Store::File(f),
            None if base_size == 0 => Store::Mem(Vec::new()),
            None => Store::Base,
        };
        Staged {
            id,
            base,
            base_size,
            st: RwLock::new(State {
                size: base_size,
                base_valid: base_size,
                dirty: Vec::new(),
                store,
                leftover: None,
            }),
            area,
            unsynced: AtomicBool::new(false),
        }
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

    /// Is the content in the pack (a commit that keeps it keeps the pack)?
    pub fn is_packed(&self) -> bool {
        matches!(self.st.read().store, Store::Packed { .. })
    }

    /// Is the content held in memory only?
    pub fn in_memory(&self) -> bool {
        matches!(&self.st.read().store, Store::Mem(v) if !v.is_empty())
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
        let file = match &st.store {
            Store::Mem(v) => {
                let have = (v.len() as u64).saturating_sub(offset).min(n as u64) as usize;
                if have > 0 {
                    buf[..have].copy_from_slice(&v[offset as usize..offset as usize + have]);
                }
                buf[have..].fill(0);
                return Ok(n);
            }
            Store::Packed { off, len } => {
                let have = len.saturating_sub(offset).min(n as u64) as usize;
                if have > 0 {
                    let f = self.area.pack_file()?;
                    read_file_zero_fill(&f, off + offset, &mut buf[..have])?;
                }
                buf[have..].fill(0);
                return Ok(n);
            }
            Store::Base => None,
            Store::File(f) => Some(f),
        };
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
            match file.filter(|_| dirty) {
                Some(f) => read_file_zero_fill(f, pos, out)?,
                None => self.read_base(pos, out, st.base_valid)?,
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
            let got = self.area.cache.read_blob(b, pos, &mut out[..have])?;
            if got != have {
                return Err(crate::Error::Invalid("blob shorter than its stream".into()));
            }
        }
        out[have..].fill(0);
        Ok(())
    }

    /// Give the stream its own staging file (if it has none), moving the
    /// bytes held in memory or in the pack into it as dirty blocks;
    /// returns those blocks (to be journalled as written).
    fn to_file(&self, st: &mut State) -> crate::Result<Runs> {
        let mut runs = Runs::new();
        let moved = match &st.store {
            Store::File(_) => return Ok(runs),
            Store::Base => 0,
            Store::Mem(v) => v.len() as u64,
            Store::Packed { len, .. } => *len,
        };
        let f = self.area.new_file(self.id)?;
        match &st.store {
            Store::Mem(v) => crate::sys::write_all_at(&f, v, 0)?,
            Store::Packed { off, len } => {
                // A replayed record's length is not trusted for a buffer
                // size: copied in pieces.
                let pack = self.area.pack_file()?;
                let mut buf = vec![0u8; (*len).min(MEM_MAX) as usize];
                let mut pos = 0;
                while pos < *len {
                    let n = (len - pos).min(buf.len() as u64) as usize;
                    read_file_zero_fill(&pack, off + pos, &mut buf[..n])?;
                    crate::sys::write_all_at(&f, &buf[..n], pos)?;
                    pos += n as u64;
                }
            }
            Store::Base | Store::File(_) => {}
        }
        if let Store::Mem(v) = &st.store {
            self.area.unhold(v.len() as u64);
        }
        for b in 0..moved.div_ceil(BLOCK) {
            st.set_dirty(b);
            push_run(&mut runs, b);
        }
        st.store = Store::File(f);
        if moved > 0 {
            self.unsynced.store(true, Ordering::Release);
        }
        Ok(runs)
    }

    /// Give the stream its own staging file now (a value that must be
    /// durable before the record naming the stream is written).
    pub fn force_file(&self) -> crate::Result<Runs> {
        let mut st = self.st.write();
        self.to_file(&mut st)
    }

    /// Write `data` at `offset`. Returns the blocks newly made dirty in
    /// the staging file, to be journalled, or `None` when the bytes went
    /// to memory (nothing to journal until the stream is packed).
    pub fn write(&self, offset: u64, data: &[u8]) -> crate::Result<Option<Runs>> {
        if data.is_empty() {
            return Ok(Some(Runs::new()));
        }
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e <= MAX_SIZE)
            .ok_or_else(|| crate::Error::Other("file too large".into()))?;
        let mut st = self.st.write();
        if let Store::Mem(v) = &mut st.store {
            let grow = end.saturating_sub(v.len() as u64);
            if end <= MEM_MAX && (grow == 0 || self.area.hold(grow)) {
                let (o, e) = (offset as usize, end as usize);
                if v.len() < e {
                    v.resize(e, 0);
                }
                v[o..e].copy_from_slice(data);
                st.size = st.size.max(end);
                self.area
                    .counters
                    .written
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                return Ok(None);
            }
        }
        let mut runs = self.to_file(&mut st)?;
        // The file is taken out while the block bitmap changes beside it.
        let store = std::mem::replace(&mut st.store, Store::Base);
        let r = match &store {
            Store::File(file) => self.write_blocks(&mut st, file, offset, data, &mut runs),
            _ => Err(crate::Error::Other("staging file missing".into())),
        };
        st.store = store;
        r?;
        Ok(Some(runs))
    }

    fn write_blocks(
        &self,
        st: &mut State,
        file: &File,
        offset: u64,
        data: &[u8],
        runs: &mut Runs,
    ) -> crate::Result<()> {
        let end = offset + data.len() as u64;
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
                crate::sys::write_all_at(file, &old, bs)?;
                self.area
                    .counters
                    .copied_from_base
                    .fetch_add(old.len() as u64, Ordering::Relaxed);
            }
            st.set_dirty(b);
            push_run(runs, b);
        }
        crate::sys::write_all_at(file, data, offset)?;
        self.area
            .counters
            .written
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        st.size = st.size.max(end);
        self.unsynced.store(true, Ordering::Release);
        Ok(())
    }

    /// Set the size: shrinking forgets everything past `size` (old data
    /// and dirty blocks), growing adds zeros.
    pub fn set_size(&self, size: u64) -> crate::Result<()> {
        if size > MAX_SIZE {
            return Err(crate::Error::Other("file too large".into()));
        }
        let mut st = self.st.write();
        if size < st.size {
            if let Store::File(f) = &st.store {
                if f.metadata()?.len() > size {
                    f.set_len(size)?;
                    self.unsynced.store(true, Ordering::Release);
                }
            }
            if let Store::Mem(v) = &mut st.store {
                if v.len() as u64 > size {
                    let freed = v.len() as u64 - size;
                    v.truncate(size as usize);
                    self.area.unhold(freed);
                }
            }
        }
        self.resize(&mut st, size);
        Ok(())
    }

    /// The bookkeeping of a size change (live and replayed).
    fn resize(&self, st: &mut State, size: u64) {
        if size < st.size {
            st.clear_from(size.div_ceil(BLOCK));
            st.base_valid = st.base_valid.min(size);
            if let Store::Packed { len, .. } = &mut st.store {
                *len = (*len).min(size);
            }
        }
        // Emptied (or never with old content): new bytes can be held in
        // memory again (a small file rewritten in place packs again).
        let empty_pack = matches!(st.store, Store::Packed { len: 0, .. });
        if (matches!(st.store, Store::Base) && st.base_valid == 0) || empty_pack {
            st.store = Store::Mem(Vec::new());
        }
        st.size = size;
    }

    /// Move a stream held in memory into the pack (at a close or fsync).
    /// Returns what the journal must record, or `None` when nothing was
    /// held.
    pub fn pack(&self) -> crate::Result<Option<Packed>> {
        let mut st = self.st.write();
        let Store::Mem(v) = &st.store else {
            return Ok(None);
        };
        if v.is_empty() {
            return Ok(None);
        }
        let len = v.len() as u64;
        let off = self.area.pack_append(v)?;
        self.area.unhold(len);
        st.store = Store::Packed { off, len };
        Ok(Some(Packed {
            off,
            len,
            size: st.size,
        }))
    }

    /// Replay: mark blocks dirty and set the size, without touching data.
    /// The stream's staging file must exist (its data was written before
    /// the record).
    pub fn replay_data(&self, runs: &[(u64, u64)], size: u64) -> io::Result<()> {
        let mut st = self.st.write();
        if !matches!(st.store, Store::File(_)) {
            let f = match st.leftover.take() {
                Some(f) => f,
                None => match self.area.existing_file(self.id)? {
                    Some(f) => f,
                    // Gone (or never made): the scan names the missing
                    // blocks, which read as zeros.
                    None if !self.area.read_only => self.area.new_file(self.id)?,
                    None => {
                        return Err(io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("staging file {} missing", self.id),
                        ))
                    }
                },
            };
            // What a packed stream held was copied into the file before
            // these blocks were recorded.
            st.store = Store::File(f);
        }
        for &(s, n) in runs {
            for b in s..s.saturating_add(n).min(MAX_SIZE / BLOCK) {
                st.set_dirty(b);
            }
        }
        st.size = size.min(MAX_SIZE);
        Ok(())
    }

    /// Replay a size change: the bookkeeping of [`Self::set_size`] only.
    pub fn replay_size(&self, size: u64) {
        let mut st = self.st.write();
        self.resize(&mut st, size.min(MAX_SIZE));
    }

    /// Replay a packing: the content is `len` bytes of the pack at `off`.
    /// A staging file of the stream (changes after the packing whose
    /// records were lost) is kept aside for the scan to report.
    pub fn replay_packed(&self, p: Packed) -> io::Result<()> {
        if p.len > p.size || p.size > MAX_SIZE || p.off.checked_add(p.len).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "packed stream record out of range",
            ));
        }
        let mut st = self.st.write();
        let old = std::mem::replace(
            &mut st.store,
            Store::Packed {
                off: p.off,
                len: p.len,
            },
        );
        if let Store::File(f) = old {
            st.leftover = Some(f);
        }
        st.dirty.clear();
        st.base_valid = 0;
        st.size = p.size;
        Ok(())
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
    /// (written, then cut by a truncation that was not recorded). A packed
    /// stream is cut when the pack is shorter than its record says, or
    /// when a staging file of its later, unrecorded changes exists.
    pub fn scan(&self, fix: bool) -> io::Result<Option<Cut>> {
        let mut st = self.st.write();
        let file = match &st.store {
            Store::File(f) => f.try_clone()?,
            Store::Packed { off, len } => {
                let (off, len) = (*off, *len);
                let plen = self.area.pack_len()?;
                let have = plen.saturating_sub(off).min(len);
                let mut cut = Cut {
                    staged_len: len,
                    size: st.size,
                    unrecorded_blocks: 0,
                    missing_blocks: (len - have).div_ceil(BLOCK),
                };
                if let Some(f) = st.leftover.take() {
                    let flen = f.metadata()?.len();
                    cut.staged_len = cut.staged_len.max(flen);
                    cut.unrecorded_blocks = flen.min(st.size).div_ceil(BLOCK);
                    if fix {
                        drop(f);
                        self.area.dir.remove_file(self.id.to_string())?;
                    } else {
                        st.leftover = Some(f);
                    }
                }
                return Ok((cut.staged_len > cut.size
                    || cut.unrecorded_blocks > 0
                    || cut.missing_blocks > 0)
                    .then_some(cut));
            }
            Store::Base | Store::Mem(_) => return Ok(None),
        };
        let st = &*st;
        let flen = file.metadata()?.len();
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
            file.set_len(st.size)?;
        }
        let end = flen.min(st.size);
        let zeros = vec![0u8; BLOCK as usize];
        let mut buf = vec![0u8; BLOCK as usize];
        let mut b = 0;
        while b * BLOCK < end {
            if !st.is_dirty(b) {
                let n = (end - b * BLOCK).min(BLOCK) as usize;
                read_file_zero_fill(&file, b * BLOCK, &mut buf[..n])?;
                if buf[..n].iter().any(|&x| x != 0) {
                    cut.unrecorded_blocks += 1;
                    if fix {
                        crate::sys::write_all_at(&file, &zeros[..n], b * BLOCK)?;
                    }
                }
            }
            b += 1;
        }
        if fix {
            file.sync_data()?;
        }
        Ok(
            (cut.staged_len > cut.size || cut.unrecorded_blocks > 0 || cut.missing_blocks > 0)
                .then_some(cut),
        )
    }

    /// Make the stream's data durable (if written since the last sync):
    /// its staging file, or the pack it is in.
    pub fn sync(&self) -> io::Result<()> {
        if self.is_packed() {
            return self.area.sync_pack();
        }
        if self.unsynced.swap(false, Ordering::AcqRel) {
            let f = match &self.st.read().store {
                Store::File(f) => f.try_clone(),
                _ => return Ok(()),
            };
            if let Err(e) = f.and_then(|f| f.sync_data()) {
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

impl Drop for Staged {
    fn drop(&mut self) {
        if let Store::Mem(v) = &self.st.get_mut().store {
            self.area.unhold(v.len() as u64);
        }
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

    fn area(dir: &Path) -> Arc<Area> {
        let c = Arc::new(ChunkCache::new(1 << 30));
        let d = PrivateDir::create(&dir.join("data")).unwrap();
        Arc::new(Area::new(d, false, c, Arc::default()))
    }

    /// Stream 1 over its staging file (shared by every call).
    fn staged(dir: &Path) -> Staged {
        let a = area(dir);
        let f = a.dir.open_file("1", Access::Create).unwrap();
        Staged::open(1, Some(f), None, 0, a)
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
        let runs = s.write(0, &[1u8; 100]).unwrap().unwrap();
        s.set_size(200_000).unwrap();
        let r = staged(d.path());
        r.replay_data(&runs, 100).unwrap();
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
        q.replay_data(&[(0, 2)], 100_000).unwrap();
        let c = q.scan(false).unwrap().unwrap();
        assert_eq!(c.missing_blocks, 1);
    }

    fn read_all(s: &Staged) -> Vec<u8> {
        let mut v = vec![7u8; s.size() as usize];
        assert_eq!(s.read(0, &mut v).unwrap(), v.len());
        v
    }

    #[test]
    fn small_new_streams_live_in_memory_then_in_the_pack() {
        let d = tempfile::tempdir().unwrap();
        let a = area(d.path());
        let s = Staged::open(1, None, None, 0, a.clone());
        assert_eq!(s.write(0, b"hello").unwrap(), None);
        assert_eq!(s.write(10, b"world").unwrap(), None);
        assert_eq!(read_all(&s), b"hello\0\0\0\0\0world");
        assert_eq!(a.held(), 15);
        let p = s.pack().unwrap().unwrap();
        assert_eq!((p.off, p.len, p.size), (0, 15, 15));
        assert_eq!(a.held(), 0);
        assert!(s.is_packed());
        // Nothing left to pack; growing and shrinking need no file.
        assert_eq!(s.pack().unwrap(), None);
        s.set_size(20).unwrap();
        s.set_size(12).unwrap();
        assert_eq!(read_all(&s), b"hello\0\0\0\0\0wo");
        assert_eq!(a.counters.files.load(Ordering::Relaxed), 0);
        // A second stream packs after the first.
        let t = Staged::open(2, None, None, 0, a.clone());
        t.write(0, b"second").unwrap();
        assert_eq!(t.pack().unwrap().unwrap().off, 15);
        // Written again: the packed bytes move into a file of its own and
        // are journalled as its first block.
        let runs = s.write(12, b"ld!").unwrap().unwrap();
        assert_eq!(runs, vec![(0, 1)]);
        assert!(!s.is_packed());
        assert_eq!(read_all(&s), b"hello\0\0\0\0\0wold!");
        assert_eq!(a.counters.files.load(Ordering::Relaxed), 1);
        assert_eq!(read_all(&t), b"second");
        // Emptied, a packed stream is held in memory again.
        t.set_size(0).unwrap();
        assert_eq!(t.write(0, b"third").unwrap(), None);
        assert_eq!(t.pack().unwrap().unwrap().off, 21);
        assert_eq!(read_all(&t), b"third");
        assert_eq!(a.counters.files.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn large_or_over_budget_streams_get_a_file() {
        let d = tempfile::tempdir().unwrap();
        let a = area(d.path());
        let s = Staged::open(1, None, None, 0, a.clone());
        s.write(0, &[1u8; 1000]).unwrap();
        // Past MEM_MAX: the held bytes and the new ones go to a file.
        let runs = s.write(MEM_MAX, b"x").unwrap().unwrap();
        assert_eq!(runs.first(), Some(&(0, 1)));
        assert_eq!(a.held(), 0);
        let v = read_all(&s);
        assert_eq!(v.len() as u64, MEM_MAX + 1);
        assert!(
            v[..1000].iter().all(|&b| b == 1) && v[1000..MEM_MAX as usize].iter().all(|&b| b == 0)
        );
        // The budget: streams held in memory together stay under it.
        assert_eq!(a.budget(), MEM_BUDGET);
        let n = a.budget() / MEM_MAX;
        let held: Vec<Staged> = (0..n + 2)
            .map(|i| {
                let t = Staged::open(10 + i, None, None, 0, a.clone());
                t.write(0, &vec![2u8; MEM_MAX as usize]).unwrap();
                t
            })
            .collect();
        assert!(a.held() <= a.budget());
        assert_eq!(a.counters.files.load(Ordering::Relaxed), 3);
        drop(held);
        assert_eq!(a.held(), 0, "dropped streams give their memory back");
    }

    #[test]
    fn replayed_pack_records_and_leftover_files() {
        let d = tempfile::tempdir().unwrap();
        let a = area(d.path());
        let s = Staged::open(1, None, None, 0, a.clone());
        s.write(0, b"packed bytes").unwrap();
        let p = s.pack().unwrap().unwrap();
        // Replayed: the record alone gives the content back.
        let r = Staged::open(1, None, None, 0, area(d.path()));
        r.replay_packed(p).unwrap();
        assert_eq!(r.scan(false).unwrap(), None);
        assert_eq!(read_all(&r), b"packed bytes");
        // Written again after the record, then killed before its records:
        // the file of the later change is named and, fixed, removed.
        s.write(100, b"late").unwrap();
        let a2 = area(d.path());
        let f = a2.existing_file(1).unwrap();
        assert!(f.is_some());
        let r = Staged::open(1, f, None, 0, a2.clone());
        r.replay_packed(p).unwrap();
        let c = r.scan(true).unwrap().unwrap();
        assert_eq!((c.staged_len, c.size, c.unrecorded_blocks), (104, 12, 1));
        assert!(a2.existing_file(1).unwrap().is_none());
        assert_eq!(read_all(&r), b"packed bytes");
        // A record past the end of the pack: named as missing, zeros.
        let q = Staged::open(3, None, None, 0, area(d.path()));
        q.replay_packed(Packed {
            off: 1 << 20,
            len: 10,
            size: 10,
        })
        .unwrap();
        assert_eq!(q.scan(false).unwrap().unwrap().missing_blocks, 1);
        assert_eq!(read_all(&q), vec![0u8; 10]);
        // Hostile lengths are refused, never allocated.
        let h = Staged::open(4, None, None, 0, area(d.path()));
        assert!(h
            .replay_packed(Packed {
                off: u64::MAX,
                len: 2,
                size: 2,
            })
            .is_err());
        assert!(h
            .replay_packed(Packed {
                off: 0,
                len: 1 << 62,
                size: 1 << 62,
            })
            .is_err());
    }
}
