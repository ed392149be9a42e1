//! A binary-tree match finder, shared by the LZMS and LZX encoders' near-
//! optimal parses: they price every match length at every position, so
//! they need all the matches of increasing length there, which a tree
//! finds in a few dozen steps where a hash chain needs hundreds.

const NONE: u32 = u32::MAX;

/// Chunks longer than this have tables larger than the caches.
const FAR: usize = 1 << 20;

/// Length of the common prefix of `data[a..]` and `data[b..]`, up to `max`.
#[inline(always)]
pub(crate) fn match_len(data: &[u8], a: usize, b: usize, max: usize) -> usize {
    // Two slices of exactly `max` bytes: the loops below then need no
    // bounds checks.
    let (x, y) = (&data[a..a + max], &data[b..b + max]);
    let mut l = 0;
    for (u, v) in x.chunks_exact(8).zip(y.chunks_exact(8)) {
        let d = u64::from_le_bytes(u.try_into().unwrap_or([0; 8]))
            ^ u64::from_le_bytes(v.try_into().unwrap_or([0; 8]));
        if d != 0 {
            return l + (d.trailing_zeros() / 8) as usize;
        }
        l += 8;
    }
    while l < max && x[l] == y[l] {
        l += 1;
    }
    l
}

/// Binary-tree match finder over a whole chunk. Positions with the same
/// 4-byte hash form a binary search tree ordered by the bytes that follow
/// them, newest at the root: walking down from the root meets candidates
/// sharing ever longer prefixes with the current position, so a few dozen
/// steps find the matches a hash chain would need hundreds of steps for
/// (most of an ESD's redundancy is long matches far back). Each search
/// also re-roots the tree at the current position. A 3-byte hash keeping
/// only the latest position adds short near matches.
pub(crate) struct MatchFinder {
    head4: Vec<u32>,
    head3: Vec<u32>,
    /// Two children per position: smaller, then greater suffix.
    child: Vec<[u32; 2]>,
    bits4: u32,
    bits3: u32,
    /// Positions below this are in the tables.
    inserted: usize,
    /// A match this long ends a search (and the position takes its
    /// candidate's place in the tree).
    nice: usize,
    /// Tree nodes a search visits at most.
    depth: usize,
    /// Farthest back a 3-byte match is taken.
    max_off3: usize,
    /// Farthest back any match is taken (the format's window).
    max_off: usize,
    /// The tables outgrow the processor's caches (a large chunk): worth
    /// prefetching the next searches' first loads.
    far: bool,
}

const BITS3: u32 = 14;

impl MatchFinder {
    /// A finder for matches of up to `nice` bytes, visiting at most `depth`
    /// tree nodes per search, 3-byte matches at most `max_off3` back and
    /// any at most `max_off` back.
    pub(crate) fn new(nice: usize, depth: usize, max_off3: usize, max_off: usize) -> Self {
        MatchFinder {
            head4: Vec::new(),
            head3: Vec::new(),
            child: Vec::new(),
            bits4: 0,
            bits3: 0,
            inserted: 0,
            nice,
            depth,
            max_off3,
            max_off,
            far: false,
        }
    }

    /// Change how far back matches may be (the next chunk's window).
    pub(crate) fn set_max_off(&mut self, max_off: usize) {
        self.max_off = max_off;
    }

    /// Give the tables back (the chunk went to another finder).
    pub(crate) fn release(&mut self) {
        self.head4 = Vec::new();
        self.head3 = Vec::new();
        self.child = Vec::new();
    }

    /// Start over on a chunk of `n` bytes.
    pub(crate) fn reset(&mut self, n: usize) {
        self.bits4 = (usize::BITS - n.leading_zeros())
            .saturating_sub(2)
            .clamp(12, 24);
        self.bits3 = self.bits4.min(BITS3);
        self.head4.clear();
        self.head4.resize(1 << self.bits4, NONE);
        self.head3.clear();
        self.head3.resize(1 << self.bits3, NONE);
        self.child.clear();
        self.child.resize(n, [NONE; 2]);
        self.inserted = 0;
        self.far = n > FAR;
    }

    #[inline(always)]
    fn hash4(&self, data: &[u8], p: usize) -> usize {
        let v = u32::from_le_bytes([data[p], data[p + 1], data[p + 2], data[p + 3]]);
        (v.wrapping_mul(0x9E37_79B1) >> (32 - self.bits4)) as usize
    }

    #[inline(always)]
    fn hash3(&self, data: &[u8], p: usize) -> usize {
        let v = u32::from(data[p]) | u32::from(data[p + 1]) << 8 | u32::from(data[p + 2]) << 16;
        (v.wrapping_mul(0x9E37_79B1) >> (32 - self.bits3)) as usize
    }

    /// Put positions up to (not including) `upto` into the tables without
    /// collecting their matches.
    pub(crate) fn insert_upto(&mut self, data: &[u8], upto: usize) {
        while self.inserted < upto {
            let p = self.inserted;
            self.search(data, p, None);
        }
    }

    /// Insert `p`; with `out`, append its matches as (length, offset), each
    /// longer than the one before. Returns the longest length (0 if none).
    pub(crate) fn search(
        &mut self,
        data: &[u8],
        p: usize,
        mut out: Option<&mut Vec<(u32, u32)>>,
    ) -> usize {
        debug_assert_eq!(p, self.inserted);
        self.inserted = p + 1;
        let n = data.len();
        let max = n - p;
        let mut best = 0usize;
        if max < 3 {
            return 0;
        }
        // The searches ahead miss the cache on their first loads (tables
        // and candidates scattered over the whole chunk): ask for the hash
        // slot two positions on and the tree node and bytes of the next
        // position's first candidate now, so they arrive while this
        // search runs.
        if self.far && max >= 6 {
            prefetch(&self.head4[self.hash4(data, p + 2)]);
            let next = self.head4[self.hash4(data, p + 1)];
            if next != NONE {
                prefetch(&self.child[next as usize]);
                prefetch(&data[next as usize]);
            }
        }
        let h3 = self.hash3(data, p);
        let c3 = self.head3[h3];
        self.head3[h3] = p as u32;
        if let Some(out) = out.as_deref_mut() {
            if c3 != NONE && p - (c3 as usize) <= self.max_off3 {
                let c = c3 as usize;
                let l = match_len(data, c, p, max.min(self.nice));
                if l >= 3 {
                    best = l;
                    out.push((l as u32, (p - c) as u32));
                }
            }
        }
        if max < 4 {
            return best;
        }
        let nice = self.nice.min(max);
        let max_off = self.max_off;
        let h4 = self.hash4(data, p);
        let mut cur = self.head4[h4];
        self.head4[h4] = p as u32;
        // Where the next smaller / greater candidate is to be linked: a
        // position's child slot (index * 2 + side), or none yet.
        let child = &mut self.child;
        let mut lt_slot = (p, 0usize);
        let mut gt_slot = (p, 1usize);
        let (mut lt_len, mut gt_len) = (0usize, 0usize);
        let mut steps = self.depth;
        loop {
            // Deeper nodes are older, so farther back still.
            if cur == NONE || steps == 0 || p - cur as usize > max_off {
                child[lt_slot.0][lt_slot.1] = NONE;
                child[gt_slot.0][gt_slot.1] = NONE;
                break;
            }
            steps -= 1;
            let m = cur as usize;
            let start = lt_len.min(gt_len);
            let len = start + match_len(data, m + start, p + start, nice - start);
            if len > best {
                best = len;
                if len >= 3 {
                    if let Some(out) = out.as_deref_mut() {
                        out.push((len as u32, (p - m) as u32));
                    }
                }
            }
            if len >= nice {
                // Equal as far as the tree looks: `p` takes `m`'s place.
                let [l, g] = child[m];
                child[lt_slot.0][lt_slot.1] = l;
                child[gt_slot.0][gt_slot.1] = g;
                break;
            }
            if data[m + len] < data[p + len] {
                child[lt_slot.0][lt_slot.1] = cur;
                lt_slot = (m, 1);
                cur = child[m][1];
                lt_len = len;
            } else {
                child[gt_slot.0][gt_slot.1] = cur;
                gt_slot = (m, 0);
                cur = child[m][0];
                gt_len = len;
            }
        }
        if best < 3 {
            0
        } else {
            best
        }
    }
}

/// A hint to the processor to bring `r` into the cache.
#[inline(always)]
pub(crate) fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints the cache; it cannot fault and changes
    // no memory or register the program sees. `r` is a valid reference.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((r as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}
