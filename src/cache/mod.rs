//! Chunk cache: decompressed chunks keyed by (resource, chunk index),
//! weighted by bytes, shared by all threads.
//!
//! Two threads that want the same missing chunk never both decode it: the
//! first takes an in-flight slot and decodes, the second waits on the slot's
//! lock and then finds the chunk. Reads that span several missing chunks
//! decode them in parallel on the rayon pool. Raw (uncompressed) resources
//! bypass the cache and are read directly.

use crate::error::{Error, Result};
use crate::wim::resource::Resource;
use crate::wim::{Blob, BlobLoc};
use lru::LruCache;
use parking_lot::Mutex;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

type Key = (u64, u64);
type Chunk = Arc<ChunkBuf>;

mod pool;
pub use pool::ChunkBuf;
use pool::Pool;

/// Memory a cached chunk costs besides its block: the LRU node and map slot,
/// the shared header and the buffer descriptor. With /usr's many small
/// files the cache holds tens of thousands of chunks, so this is megabytes.
const ENTRY_OVERHEAD: u64 = 160;

fn cost(c: &Chunk) -> u64 {
    if is_big(c) {
        c.footprint()
    } else {
        c.footprint() + ENTRY_OVERHEAD
    }
}

/// A chunk too big for the pool (solid resources' 64 MiB chunks): its own
/// allocation, no pool or per-thread overhead to budget for.
fn is_big(c: &Chunk) -> bool {
    c.footprint() > pool::MAX_POOLED as u64
}

/// Drop least recently used chunks until the budget holds (one chunk is
/// always kept). Big chunks may use the whole budget: what is set aside
/// for the pool and the threads serves small chunks, and a 256 MiB cache
/// must hold four 64 MiB solid chunks or random reads over them thrash.
fn evict(l: &mut Lru, big: bool) {
    let cap = if big { l.total } else { l.capacity };
    while l.bytes > cap && l.map.len() > 1 {
        match l.map.pop_lru() {
            Some((_, v)) => l.bytes -= cost(&v),
            None => break,
        }
    }
}

/// Freed blocks kept resident for reuse (evicted chunks, read buffers of
/// the mount adapters), at most: the cache turns over one chunk at a time
/// and a mount has a dozen reads in flight. Taken out of the cache's budget,
/// so chunks plus pool stay within the size the user set.
fn pool_hot_bytes(capacity: u64) -> usize {
    (capacity / 16).min(4 << 20) as usize
}

struct Lru {
    map: LruCache<Key, Chunk>,
    bytes: u64,
    /// Budget when small chunks come in.
    capacity: u64,
    /// The whole budget (big chunks).
    total: u64,
}

/// Counters, for `--stats` and benchmarks.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub bytes: u64,
    pub capacity: u64,
    pub decoded_bytes: u64,
    /// Chunks held.
    pub entries: u64,
    /// Bytes mapped for chunk blocks (resident or given back).
    pub mapped: u64,
}

pub struct ChunkCache {
    lru: Mutex<Lru>,
    inflight: Mutex<HashMap<Key, Arc<Mutex<Option<Chunk>>>>>,
    pool: Arc<Pool>,
    hits: AtomicU64,
    misses: AtomicU64,
    decoded: AtomicU64,
}

impl ChunkCache {
    /// A cache holding up to `capacity` bytes of decompressed chunks. One
    /// chunk is always kept even when larger than the capacity, so a solid
    /// 64 MiB chunk is not decoded again for every small read.
    pub fn new(capacity: u64) -> Self {
        Self::with_reserve(capacity, 0)
    }

    /// A cache within `total` bytes, of which `reserve` (capped at a
    /// quarter) is left for the threads' working memory when chunks are
    /// small (see `evict`).
    pub fn with_reserve(total: u64, reserve: u64) -> Self {
        let hot = pool_hot_bytes(total);
        let capacity = total
            .saturating_sub(hot as u64)
            .saturating_sub(reserve.min(total / 4));
        ChunkCache {
            lru: Mutex::new(Lru {
                map: LruCache::unbounded(),
                bytes: 0,
                capacity,
                total,
            }),
            inflight: Mutex::new(HashMap::new()),
            pool: Pool::new(hot),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            decoded: AtomicU64::new(0),
        }
    }

    /// The memory the cache was given (`total` of [`Self::with_reserve`]).
    pub fn total(&self) -> u64 {
        self.lru.lock().total
    }

    pub fn stats(&self) -> CacheStats {
        let l = self.lru.lock();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes: l.bytes,
            capacity: l.capacity,
            decoded_bytes: self.decoded.load(Ordering::Relaxed),
            entries: l.map.len() as u64,
            mapped: self.pool.mapped() as u64,
        }
    }

    /// Bytes cached, as counted against the capacity (block sizes plus
    /// bookkeeping).
    pub fn bytes(&self) -> u64 {
        self.lru.lock().bytes
    }

    /// A buffer of `len` bytes from the pool, with unspecified contents
    /// (the caller overwrites what it uses): the mount adapters' read
    /// replies, recycled instead of churning the heap of every thread.
    pub fn scratch(&self, len: usize) -> ChunkBuf {
        self.pool.take_dirty(len)
    }

    fn lookup(&self, key: Key) -> Option<Chunk> {
        self.lru.lock().map.get(&key).cloned()
    }

    fn insert(&self, key: Key, c: Chunk) {
        let mut l = self.lru.lock();
        if let Some(old) = l.map.put(key, c.clone()) {
            l.bytes -= cost(&old);
        }
        l.bytes += cost(&c);
        evict(&mut l, is_big(&c));
    }

    /// Is the chunk cached (no decode, no LRU update)?
    pub fn contains(&self, res: &Resource, chunk: u64) -> bool {
        self.lru.lock().map.contains(&(res.id, chunk))
    }

    /// Get one chunk, decoding it if needed (at most once at a time).
    pub fn get(&self, res: &Resource, chunk: u64) -> Result<Chunk> {
        let key = (res.id, chunk);
        if let Some(c) = self.lookup(key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(c);
        }
        let slot = self
            .inflight
            .lock()
            .entry(key)
            .or_insert_with(|| Arc::new(Mutex::new(None)))
            .clone();
        let mut guard = slot.lock();
        if let Some(c) = guard.as_ref() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(c.clone());
        }
        // Another thread may have finished and removed the slot between our
        // lookup and taking it (then the slot we hold is a new one, or one
        // a prefetch scheduled): take it out again, or it would stay in
        // the map for good.
        if let Some(c) = self.lookup(key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            drop(guard);
            self.forget_slot(key, &slot);
            return Ok(c);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let len = res.chunk_len(chunk);
        let mut data = self.pool.take(len);
        let result = res.read_chunk_into(chunk, data.as_mut_slice());
        match result {
            Ok(()) => {
                self.decoded.fetch_add(data.len() as u64, Ordering::Relaxed);
                let c: Chunk = Arc::new(data);
                self.insert(key, c.clone());
                *guard = Some(c.clone());
                drop(guard);
                self.forget_slot(key, &slot);
                Ok(c)
            }
            Err(e) => {
                drop(guard);
                self.forget_slot(key, &slot);
                Err(e)
            }
        }
    }

    /// Get a run of chunks, decoding the missing ones in parallel.
    pub fn get_range(&self, res: &Resource, first: u64, last: u64) -> Result<Vec<Chunk>> {
        if first == last {
            return Ok(vec![self.get(res, first)?]);
        }
        (first..=last)
            .into_par_iter()
            .map(|c| self.get(res, c))
            .collect()
    }

    /// Remove `key`'s in-flight slot if it is still `slot`.
    fn forget_slot(&self, key: Key, slot: &Arc<Mutex<Option<Chunk>>>) {
        let mut inf = self.inflight.lock();
        if inf.get(&key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            inf.remove(&key);
        }
    }

    /// Start decoding chunks in the background (readahead); errors are
    /// ignored here and reported to whoever reads the chunk. A chunk is
    /// scheduled once: its in-flight slot is made now, so the next reads
    /// of the same window (a sequential reader asks for the next 4 MiB on
    /// every read) do not queue it again.
    pub fn prefetch(self: &Arc<Self>, res: &Arc<Resource>, first: u64, last: u64) {
        for c in first..=last.min(res.num_chunks().saturating_sub(1)) {
            let key = (res.id, c);
            if self.contains(res, c) {
                continue;
            }
            let slot = {
                let mut inf = self.inflight.lock();
                if inf.contains_key(&key) {
                    continue;
                }
                let slot = Arc::new(Mutex::new(None));
                inf.insert(key, slot.clone());
                slot
            };
            let me = self.clone();
            let r = res.clone();
            rayon::spawn(move || {
                let _ = me.get(&r, c);
                // If a reader got there first, the slot is still ours.
                me.forget_slot(key, &slot);
            });
        }
    }

    /// Slots of chunks being decoded or scheduled (for tests).
    pub fn in_flight(&self) -> usize {
        self.inflight.lock().len()
    }

    /// Read `buf.len()` bytes of `blob` from `offset`; returns bytes read
    /// (short only at the end of the blob).
    pub fn read_blob(&self, blob: &Blob, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let mut done = 0usize;
        for seg in blob.segments(offset, buf.len() as u64) {
            let out = &mut buf[done..done + seg.len as usize];
            self.read_resource(&seg.resource, seg.offset, out)?;
            done += seg.len as usize;
        }
        Ok(done)
    }

    /// Start decoding, in the background, the chunks that hold `len`
    /// bytes of `blob` from `offset` (readahead for a sequential reader,
    /// who then finds them ready). Raw resources need no decoding and are
    /// skipped; errors are left for whoever reads the chunk.
    pub fn prefetch_blob(self: &Arc<Self>, blob: &Blob, offset: u64, len: u64) {
        if len == 0 || offset >= blob.size {
            return;
        }
        for seg in blob.segments(offset, len) {
            let r = &seg.resource;
            if r.is_raw() {
                continue;
            }
            let cs = r.chunk_size as u64;
            let first = seg.offset / cs;
            let last = (seg.offset + seg.len - 1) / cs;
            self.prefetch(r, first, last);
        }
    }

    /// All of `blob` (the caller bounds its size).
    pub fn read_blob_all(&self, blob: &Blob) -> Result<Vec<u8>> {
        let len = usize::try_from(blob.size)
            .map_err(|_| Error::Invalid(format!("blob of {} bytes", blob.size)))?;
        let mut v = vec![0u8; len];
        let n = self.read_blob(blob, 0, &mut v)?;
        v.truncate(n);
        Ok(v)
    }

    /// All of a small `blob` that is wanted once (symlink targets at
    /// mount): when it is a whole one-chunk resource it is decoded
    /// directly, without taking a place in the cache; otherwise it goes
    /// through the cache (a blob inside a solid chunk must not cost a
    /// 64 MiB decode each time).
    pub fn read_blob_once(&self, blob: &Blob) -> Result<Vec<u8>> {
        if let BlobLoc::Whole(r) = &blob.loc {
            if r.num_chunks() == 1 && r.uncompressed_size == blob.size {
                return r.read_chunk(0);
            }
        }
        self.read_blob_all(blob)
    }

    /// Read a range of a resource's uncompressed data.
    pub fn read_resource(&self, res: &Resource, offset: u64, out: &mut [u8]) -> Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        if res.is_raw() {
            return res
                .source
                .read_exact_at(out, res.reshdr.offset + offset)
                .map_err(Error::from);
        }
        let cs = res.chunk_size as u64;
        let end = offset + out.len() as u64;
        let first = offset / cs;
        let last = (end - 1) / cs;
        let chunks = self.get_range(res, first, last)?;
        let mut w = 0usize;
        for (k, c) in chunks.iter().enumerate() {
            let cstart = (first + k as u64) * cs;
            let a = (offset.max(cstart) - cstart) as usize;
            let b = ((end.min(cstart + c.len() as u64)) - cstart) as usize;
            let piece = c
                .get(a..b)
                .ok_or_else(|| Error::Invalid("chunk shorter than expected".into()))?;
            out[w..w + piece.len()].copy_from_slice(piece);
            w += piece.len();
        }
        if w != out.len() {
            return Err(Error::Invalid(format!(
                "resource at {:#x} is shorter than its blobs",
                res.reshdr.offset
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wim::header::{Compression, ResHdr};

    fn raw_resource(id: u64, data: Vec<u8>) -> Resource {
        let n = data.len() as u64;
        Resource::normal(
            id,
            Arc::new(data),
            1,
            ResHdr {
                size_in_wim: n,
                flags: 0,
                offset: 0,
                uncompressed_size: n,
            },
            Compression::None,
            4096,
        )
        .unwrap()
    }

    /// A raw resource of 4 KiB chunks over a counting, slow source.
    fn counted(id: u64, data: &[u8]) -> (Arc<Counting>, Arc<Resource>) {
        let src = Arc::new(Counting(
            data.to_vec(),
            std::sync::atomic::AtomicUsize::new(0),
        ));
        let n = data.len() as u64;
        let hdr = ResHdr {
            size_in_wim: n,
            flags: 0,
            offset: 0,
            uncompressed_size: n,
        };
        let r = Resource::normal(id, src.clone(), 1, hdr, Compression::None, 4096).unwrap();
        (src, Arc::new(r))
    }

    #[test]
    fn prefetch_leaves_no_slots_behind() {
        let data: Vec<u8> = (0..64 * 4096u32).map(|i| (i % 251) as u8).collect();
        let (src, r) = counted(3, &data);
        let c = Arc::new(ChunkCache::new(1 << 20));
        // A reader racing the readahead it keeps asking for.
        for i in 0..64u64 {
            c.prefetch(&r, i, (i + 8).min(63));
            c.prefetch(&r, i, (i + 8).min(63));
            assert_eq!(
                &c.get(&r, i).unwrap()[..],
                &data[i as usize * 4096..][..4096]
            );
        }
        let t = std::time::Instant::now();
        while c.in_flight() > 0 && t.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(c.in_flight(), 0, "in-flight slots left behind");
        // Each chunk read from the source once: no duplicate prefetch work.
        assert_eq!(src.1.load(Ordering::SeqCst), 64);
    }

    #[test]
    fn whole_blob_reads() {
        let data: Vec<u8> = (0..10000u32).map(|i| (i % 241) as u8).collect();
        let r = Arc::new(raw_resource(5, data.clone()));
        let b = Blob {
            hash: [0; 20],
            size: data.len() as u64,
            loc: BlobLoc::Whole(r),
            refcount: 1,
            part: 1,
        };
        let c = Arc::new(ChunkCache::new(1 << 20));
        assert_eq!(c.read_blob_all(&b).unwrap(), data);
        assert_eq!(c.read_blob_once(&b).unwrap(), data);
        // Raw resources are never decoded ahead.
        c.prefetch_blob(&b, 0, 1 << 20);
        assert_eq!(c.in_flight(), 0);
        assert_eq!(c.stats().entries, 0);
    }

    #[test]
    fn raw_reads_and_eviction() {
        let data: Vec<u8> = (0..20000u32).map(|i| (i % 253) as u8).collect();
        let r = raw_resource(1, data.clone());
        let c = ChunkCache::new(8192);
        let mut out = vec![0u8; 5000];
        c.read_resource(&r, 3000, &mut out).unwrap();
        assert_eq!(out, data[3000..8000]);
        // Direct chunk access goes through the LRU and respects capacity.
        for i in 0..5 {
            let ch = c.get(&r, i).unwrap();
            assert_eq!(
                &ch[..],
                &data[i as usize * 4096..((i as usize + 1) * 4096).min(20000)]
            );
        }
        assert!(c.stats().bytes <= 8192);
        assert!(!c.contains(&r, 0));
        assert!(c.contains(&r, 4));
    }

    /// A source that counts reads and is slow, so concurrent requests for
    /// one chunk really overlap.
    struct Counting(Vec<u8>, std::sync::atomic::AtomicUsize);
    impl crate::io::ReadAt for Counting {
        fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
            self.1.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(20));
            self.0.read_exact_at(buf, off)
        }
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
    }

    #[test]
    fn one_decode_per_chunk_under_contention() {
        let data: Vec<u8> = (0..16384u32).map(|i| (i * 7) as u8).collect();
        let (src, r) = counted(9, &data);
        let c = Arc::new(ChunkCache::new(1 << 20));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (c, r) = (c.clone(), r.clone());
                std::thread::spawn(move || c.get(&r, 2).unwrap())
            })
            .collect();
        for t in threads {
            assert_eq!(&t.join().unwrap()[..], &data[8192..12288]);
        }
        assert_eq!(
            src.1.load(Ordering::SeqCst),
            1,
            "chunk decoded more than once"
        );
        // A multi-chunk read decodes only what is missing.
        let got = c.get_range(&r, 0, 3).unwrap();
        assert_eq!(
            got.iter()
                .flat_map(|c| c.iter().copied())
                .collect::<Vec<u8>>(),
            data
        );
        assert_eq!(src.1.load(Ordering::SeqCst), 4);
        let s = c.stats();
        assert_eq!((s.misses, s.bytes), (4, 4 * (4096 + ENTRY_OVERHEAD)));
    }
}
