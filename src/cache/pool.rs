//! Memory for decoded chunks, kept apart from the general heap.
//!
//! A mount decodes millions of chunks and the cache turns over all the time.
//! With every chunk a `Vec` from malloc, a long `cat` of a /usr-sized image
//! left the daemon ~100 MiB above the bytes really live (measured: 385 MiB
//! live, 488 MiB resident): freed chunk-sized holes pinned by small
//! long-lived allocations placed among them, in several per-thread arenas.
//! Here chunk buffers are page-aligned blocks of power-of-two size classes,
//! carved from slabs mapped for the purpose. A freed block is kept "hot"
//! for the next decode of its class while the hot set is small; beyond that
//! its pages are handed back to the system (`MADV_DONTNEED`), so resident
//! memory follows the cache's live bytes whatever the mix of sizes.
//!
//! Chunks larger than [`MAX_POOLED`] (solid resources' 64 MiB chunks) and
//! platforms without `mmap` use ordinary heap vectors.

use crate::sys;
use parking_lot::Mutex;
use std::ptr::NonNull;
use std::sync::Arc;

/// Smallest block: one page, so every block can be given back on its own.
const MIN_CLASS: usize = 4096;
/// Largest pooled block.
pub const MAX_POOLED: usize = 4 << 20;
/// Blocks of a class are carved from slabs at least this large.
const SLAB: usize = 2 << 20;

/// Size class (block size) for `len` bytes.
fn class_size(len: usize) -> usize {
    len.max(MIN_CLASS).next_power_of_two()
}

fn class_index(size: usize) -> usize {
    (size.trailing_zeros() - MIN_CLASS.trailing_zeros()) as usize
}

/// A decoded chunk's bytes: a pooled block or, for big chunks, a vector.
pub struct ChunkBuf {
    store: Store,
    len: usize,
}

enum Store {
    Heap(Vec<u8>),
    #[cfg_attr(not(unix), allow(dead_code))]
    Block {
        ptr: NonNull<u8>,
        size: usize,
        pool: Arc<Pool>,
    },
}

// SAFETY: a block is owned by exactly one ChunkBuf until it is returned to
// the pool in Drop; the pool's slabs outlive it (the ChunkBuf holds an Arc
// of the pool). Shared access is read-only.
unsafe impl Send for ChunkBuf {}
// SAFETY: see Send; `&ChunkBuf` only gives `&[u8]`.
unsafe impl Sync for ChunkBuf {}

impl ChunkBuf {
    /// Bytes of memory this buffer occupies (what the cache budget counts).
    pub fn footprint(&self) -> u64 {
        match &self.store {
            Store::Heap(v) => v.capacity() as u64,
            Store::Block { size, .. } => *size as u64,
        }
    }

    /// The bytes, writable (only while the buffer is not yet shared).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match &mut self.store {
            Store::Heap(v) => &mut v[..],
            // SAFETY: the block is `size >= len` bytes, exclusively ours.
            Store::Block { ptr, .. } => unsafe {
                std::slice::from_raw_parts_mut(ptr.as_ptr(), self.len)
            },
        }
    }
}

impl std::ops::Deref for ChunkBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.store {
            Store::Heap(v) => &v[..],
            // SAFETY: as in as_mut_slice; no writer exists once shared.
            Store::Block { ptr, .. } => unsafe {
                std::slice::from_raw_parts(ptr.as_ptr(), self.len)
            },
        }
    }
}

impl Drop for ChunkBuf {
    fn drop(&mut self) {
        if let Store::Block { ptr, size, pool } = &self.store {
            pool.put(*ptr, *size);
        }
    }
}

/// Free blocks by class, and the slabs they come from.
pub struct Pool {
    inner: Mutex<Inner>,
    /// Free blocks kept with their pages, in bytes.
    hot_max: usize,
}

#[derive(Default)]
struct Inner {
    classes: Vec<Class>,
    hot_bytes: usize,
    slabs: Vec<(NonNull<u8>, usize)>,
}

#[derive(Default)]
struct Class {
    /// Freed blocks whose pages are still resident (reuse is free).
    hot: Vec<NonNull<u8>>,
    /// Freed blocks whose pages were given back (reuse faults them in).
    cold: Vec<NonNull<u8>>,
    /// Uncarved rest of the newest slab: (next block, blocks left).
    fresh: Option<(NonNull<u8>, usize)>,
}

// SAFETY: the raw pointers name memory the pool owns; all access to them
// goes through the mutex.
unsafe impl Send for Pool {}
// SAFETY: as for Send.
unsafe impl Sync for Pool {}

impl Pool {
    /// A pool keeping up to `hot_max` bytes of freed blocks resident.
    pub fn new(hot_max: usize) -> Arc<Pool> {
        Arc::new(Pool {
            inner: Mutex::new(Inner::default()),
            hot_max,
        })
    }

    /// A zeroed buffer of `len` bytes.
    pub fn take(self: &Arc<Self>, len: usize) -> ChunkBuf {
        self.take_inner(len, true)
    }

    /// A buffer of `len` bytes whose contents are whatever was there (a
    /// reused block is not cleared).
    pub fn take_dirty(self: &Arc<Self>, len: usize) -> ChunkBuf {
        self.take_inner(len, false)
    }

    fn take_inner(self: &Arc<Self>, len: usize, zero: bool) -> ChunkBuf {
        let size = class_size(len);
        if size <= MAX_POOLED {
            if let Some((ptr, hot)) = self.block(size) {
                if hot && zero {
                    // SAFETY: the block is `size` bytes and now ours alone.
                    unsafe { std::ptr::write_bytes(ptr.as_ptr(), 0, len) };
                }
                return ChunkBuf {
                    store: Store::Block {
                        ptr,
                        size,
                        pool: self.clone(),
                    },
                    len,
                };
            }
        }
        ChunkBuf {
            store: Store::Heap(vec![0u8; len]),
            len,
        }
    }

    /// Bytes mapped for blocks (resident or not).
    pub fn mapped(&self) -> usize {
        self.inner.lock().slabs.iter().map(|s| s.1).sum()
    }

    /// A free block of `size` bytes and whether its old contents are still
    /// there; `None` when memory cannot be mapped (the caller falls back
    /// to the heap).
    fn block(&self, size: usize) -> Option<(NonNull<u8>, bool)> {
        let ci = class_index(size);
        let mut g = self.inner.lock();
        let inner = &mut *g;
        if inner.classes.len() <= ci {
            inner.classes.resize_with(ci + 1, Class::default);
        }
        let c = &mut inner.classes[ci];
        if let Some(p) = c.hot.pop() {
            inner.hot_bytes -= size;
            return Some((p, true));
        }
        if let Some(p) = c.cold.pop() {
            return Some((p, false));
        }
        if let Some((p, left)) = c.fresh.take() {
            if left > 1 {
                // SAFETY: `left` blocks remain in the slab after p.
                let next = unsafe { NonNull::new_unchecked(p.as_ptr().add(size)) };
                c.fresh = Some((next, left - 1));
            }
            return Some((p, false));
        }
        let slab_len = size.max(SLAB);
        let p = sys::map_anonymous(slab_len)?;
        inner.slabs.push((p, slab_len));
        let left = slab_len / size;
        if left > 1 {
            // SAFETY: the slab holds `left` blocks.
            let next = unsafe { NonNull::new_unchecked(p.as_ptr().add(size)) };
            inner.classes[ci].fresh = Some((next, left - 1));
        }
        Some((p, false))
    }

    /// Take back a block. It stays hot when it fits the hot budget; to make
    /// room, hot blocks of the class holding the most hot bytes are given
    /// back first, so the classes in use now (evicted chunks, read replies)
    /// stay hot and a class no longer asked for does not clog the budget.
    fn put(&self, ptr: NonNull<u8>, size: usize) {
        let ci = class_index(size);
        let mut g = self.inner.lock();
        let inner = &mut *g;
        if ci >= inner.classes.len() || size > self.hot_max {
            // SAFETY: the block came from a slab mapped by `map_anonymous`
            // and is being returned, so nothing uses it any more.
            unsafe { sys::discard_pages(ptr, size) };
            if let Some(c) = inner.classes.get_mut(ci) {
                c.cold.push(ptr);
            }
            return;
        }
        while inner.hot_bytes + size > self.hot_max {
            let Some((vi, _)) = inner
                .classes
                .iter()
                .enumerate()
                .map(|(i, c)| (i, c.hot.len() << (i as u32 + MIN_CLASS.trailing_zeros())))
                .max_by_key(|&(_, b)| b)
                .filter(|&(_, b)| b > 0)
            else {
                break;
            };
            let victim_size = MIN_CLASS << vi;
            let vc = &mut inner.classes[vi];
            if let Some(v) = vc.hot.pop() {
                // SAFETY: `v` is a free block of `victim_size` bytes inside
                // one of our slabs; its contents are not needed.
                unsafe { sys::discard_pages(v, victim_size) };
                vc.cold.push(v);
                inner.hot_bytes -= victim_size;
            }
        }
        inner.hot_bytes += size;
        inner.classes[ci].hot.push(ptr);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for &(p, len) in &self.inner.get_mut().slabs {
            // SAFETY: (p, len) is a slab mapped by `map_anonymous` and no
            // block of it is in use (the pool is dropped only after every
            // ChunkBuf).
            unsafe { sys::unmap(p, len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_zeroed_disjoint_and_reused() {
        let pool = Pool::new(64 << 10);
        let mut a = pool.take(5000);
        let mut b = pool.take(5000);
        assert_eq!((a.len(), a.footprint()), (5000, 8192));
        assert!(a.iter().all(|&x| x == 0));
        a.as_mut_slice().fill(0xAA);
        b.as_mut_slice().fill(0x55);
        assert!(a.iter().all(|&x| x == 0xAA), "blocks overlap");
        let pa = a.as_ptr();
        drop(a);
        // The freed block comes back, zeroed again.
        let c = pool.take(6000);
        assert_eq!(c.as_ptr(), pa);
        assert!(c.iter().all(|&x| x == 0));
        assert!(b.iter().all(|&x| x == 0x55));
        // Past the hot budget, blocks are released and still reusable.
        let many: Vec<ChunkBuf> = (0..64).map(|_| pool.take(8192)).collect();
        drop(many);
        let d = pool.take(8192);
        assert!(d.iter().all(|&x| x == 0));
        // Big chunks are plain vectors.
        let big = pool.take(MAX_POOLED + 1);
        assert_eq!(big.len(), MAX_POOLED + 1);
        assert!(pool.mapped() >= SLAB);
    }
}
