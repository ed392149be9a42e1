//! Readahead across files: which compressed resources follow a given one
//! in the WIM file.
//!
//! A reader that goes through many small files (`cat` of a tree, `grep
//! -r`, a backup) asks for one file at a time, and a small file is one
//! chunk, so the readahead inside a file has nothing to start: each file's
//! decode waits for the request that wants it while the other cores idle,
//! and the reader waits for the decode. Capture tools write a tree's blobs
//! in the order they walk it, which is mostly the order a reader lists it
//! (measured on /usr/share captured by wimlib: for 80% of the files, in
//! directory order, the next file's resource is the next one in the WIM).
//! So when a read reaches the end of a file, the resources just after its
//! own are decoded in the background, and the reader's own work (its
//! writes, its next open) overlaps with that decoding.
//!
//! Only whole (non-solid) compressed resources take part: a raw resource
//! needs no decoding, and a solid one is already read ahead by chunk.
//!
//! The decoding is done by one thread of its own, fed through a short
//! queue, not by the rayon pool: a rayon task per file woke the pool's
//! idle workers, which spin (sched_yield) before sleeping, and that
//! spinning took more CPU than the overlap gave back on two cores.

use crate::cache::ChunkCache;
use crate::wim::resource::Resource;
use crate::wim::{BlobLoc, Sha1, Wim};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;

/// Resources waiting for the follower thread, at most: when it is that far
/// behind, the readers are ahead of it anyway.
const QUEUE: usize = 64;

/// The index plus the thread that decodes ahead of readers.
pub(crate) struct Follower {
    index: Following,
    wim: Arc<Wim>,
    tx: SyncSender<(Arc<Resource>, u64)>,
}

impl Follower {
    /// Index `wim`'s resources and start the thread (which ends when this
    /// is dropped). A thread that cannot be started only means no
    /// readahead across files.
    pub fn start(wim: Arc<Wim>, cache: Arc<ChunkCache>) -> Follower {
        let (tx, rx) = sync_channel::<(Arc<Resource>, u64)>(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("wimfs-follow".into())
            .spawn(move || {
                for (r, last) in rx {
                    for c in 0..=last {
                        // Errors are the reader's to report, when it asks.
                        if cache.get(&r, c).is_err() {
                            break;
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            log::debug!("no readahead across files: cannot start its thread: {e}");
        }
        Follower {
            index: Following::new(&wim),
            wim,
            tx,
        }
    }

    /// A reader finished `r`: queue the resources stored after it (at most
    /// `max_files`, `max_bytes` of decoded data) that are not cached yet.
    pub fn finished(&self, r: &Resource, cache: &ChunkCache, max_files: usize, max_bytes: u64) {
        for (next, last) in self.index.after(r, max_files, max_bytes, Some(&self.wim)) {
            if cache.contains(&next, 0) {
                continue;
            }
            if self.tx.try_send((next, last)).is_err() {
                break;
            }
        }
    }
}

/// A resource in a [`Following`]: made, or to be made from its blob's
/// hash (a lazily opened WIM makes blobs only when asked).
enum Slot {
    /// Unit tests index resources made without a WIM.
    #[cfg(test)]
    Made(Arc<Resource>),
    Hash(Sha1),
}

/// Compressed whole-blob resources in the order they are stored.
pub(crate) struct Following {
    /// (part, offset, the resource there), sorted.
    order: Vec<(u16, u64, Slot)>,
}

impl Following {
    /// The index of `wim`'s resources (one pass over its blob table: a few
    /// milliseconds for a hundred thousand blobs, made on the first read
    /// that wants it, not at mount).
    pub fn new(wim: &Wim) -> Following {
        Following {
            order: wim
                .stored_order()
                .into_iter()
                .map(|(part, offset, h)| (part, offset, Slot::Hash(h)))
                .collect(),
        }
    }

    #[cfg(test)]
    fn from_resources(rs: Vec<Arc<Resource>>) -> Following {
        let mut order: Vec<(u16, u64, Slot)> = rs
            .into_iter()
            .map(|r| (r.part, r.reshdr.offset, Slot::Made(r)))
            .collect();
        order.sort_by_key(|x| (x.0, x.1));
        order.dedup_by_key(|x| (x.0, x.1));
        Following { order }
    }

    /// The resources stored after `r`, nearest first, as `(resource, last
    /// chunk to decode)`: at most `max_files` of them, and no more chunks
    /// than `max_bytes` of decoded data hold (a large file that follows is
    /// started, not decoded whole: its own readahead takes over once it is
    /// read). Hashes are made into resources through `wim`.
    pub fn after(
        &self,
        r: &Resource,
        max_files: usize,
        max_bytes: u64,
        wim: Option<&Wim>,
    ) -> Vec<(Arc<Resource>, u64)> {
        let key = (r.part, r.reshdr.offset);
        let start = match self.order.binary_search_by_key(&key, |x| (x.0, x.1)) {
            Ok(i) => i + 1,
            Err(i) => i,
        };
        let mut out = Vec::new();
        let mut left = max_bytes;
        for (_, _, slot) in self.order.iter().skip(start).take(max_files) {
            let n = match slot {
                #[cfg(test)]
                Slot::Made(r) => r.clone(),
                Slot::Hash(h) => match wim.and_then(|w| w.blob(h)).map(|b| b.loc.clone()) {
                    Some(BlobLoc::Whole(r)) if !r.is_raw() => r,
                    _ => continue,
                },
            };
            let cs = u64::from(n.chunk_size.max(1));
            let chunks = n.num_chunks();
            if chunks == 0 || left == 0 {
                break;
            }
            let want = chunks.min(left.div_ceil(cs));
            left = left.saturating_sub(want * cs);
            out.push((n, want - 1));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wim::header::{Compression, ResHdr};

    /// A compressed resource that is never decoded here: only its place
    /// and sizes matter.
    fn res(id: u64, offset: u64, size: u64) -> Arc<Resource> {
        let hdr = ResHdr {
            size_in_wim: size / 2,
            flags: 0x04,
            offset,
            uncompressed_size: size,
        };
        let src: Arc<Vec<u8>> = Arc::new(vec![0u8; 1 << 20]);
        Arc::new(Resource::normal(id, src, 1, hdr, Compression::Lzx, 32768).unwrap())
    }

    #[test]
    fn after_walks_stored_order_within_budget() {
        // Made out of order, as a blob table's hash order would give them.
        let sizes = [40_000u64, 3_000, 5_000, 100_000, 7_000];
        let mut rs: Vec<Arc<Resource>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| res(i as u64, 1000 + 100_000 * i as u64, n))
            .collect();
        rs.reverse();
        let f = Following::from_resources(rs);
        let at = |i: usize| match &f.order[i].2 {
            Slot::Made(r) => r.clone(),
            Slot::Hash(_) => unreachable!("made from resources"),
        };
        let ids: Vec<u64> = (0..f.order.len()).map(|i| at(i).id).collect();
        assert_eq!(ids, [0, 1, 2, 3, 4], "stored (offset) order");
        let first = at(0);
        let all = f.after(&first, 10, u64::MAX, None);
        let got: Vec<(u64, u64)> = all.iter().map(|(r, last)| (r.id, *last)).collect();
        // Whole resources when the budget allows: 3,000 and 5,000 bytes are
        // one chunk, 100,000 four, 7,000 one.
        assert_eq!(got, [(1, 0), (2, 0), (3, 3), (4, 0)]);
        // Two files at most.
        assert_eq!(f.after(&first, 2, u64::MAX, None).len(), 2);
        // A budget of 40,000 bytes: two chunks, so the next two (a chunk
        // each), and the 100,000-byte one is not started.
        let some: Vec<(u64, u64)> = f
            .after(&first, 10, 40_000, None)
            .iter()
            .map(|(r, l)| (r.id, *l))
            .collect();
        assert_eq!(some, [(1, 0), (2, 0)]);
        // From the one before the big file, a budget of three chunks:
        // the big file is started with its first three chunks only.
        let big: Vec<(u64, u64)> = f
            .after(&at(2), 10, 3 * 32768, None)
            .iter()
            .map(|(r, l)| (r.id, *l))
            .collect();
        assert_eq!(big, [(3, 2)]);
        // The last resource has nothing after it.
        assert!(f.after(&at(4), 10, u64::MAX, None).is_empty());
        // A resource not in the index (raw ones are left out): those
        // stored after its place.
        let outside = res(9, 150_000, 10);
        let next: Vec<u64> = f
            .after(&outside, 1, u64::MAX, None)
            .iter()
            .map(|(r, _)| r.id)
            .collect();
        assert_eq!(next, [2]);
    }
}
