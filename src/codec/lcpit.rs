//! A match finder over a whole large chunk built from its suffixes sorted
//! by their first bytes: the LCP-interval tree, walked from each
//! position's leaf to the root.
//!
//! Why: the binary tree of [`super::bt`] costs a few hundred nanoseconds a
//! position on a 64 MiB chunk, nearly all of it waiting for memory (each
//! step down the tree a cache miss somewhere in hundreds of MiB); it was
//! two thirds of the LZMS encoder's time, and solid LZMS took 1.15-1.2x
//! wimlib's time. Sorting the suffixes once and then visiting each
//! position's few ancestors costs less (`capture --solid` of /usr/share
//! 0.83x wimlib's time), and finds for every length the nearest earlier
//! match, where the tree's bounded walk may miss one (the output is a
//! little smaller too).
//!
//! How: with the neighbours' shared lengths capped at the nice length
//! (and lengths below 3 counted as 0), the suffixes sharing a prefix of
//! length `l` form an interval of the sorted order, and the intervals nest
//! as a tree whose depth is bounded by the cap; order beyond the cap does
//! not matter, so [`sort_prefixes`] sorts by the first `nice` bytes only.
//! Positions are visited in text order, each from its innermost interval
//! up to the root, and each interval belongs to the last position that
//! passed through it: an interval's owner is the nearest earlier position
//! sharing at least its length, a match. Walking up, lengths fall and
//! owners only get nearer, so the matches come out longest (and farthest)
//! first, one per owner.
//!
//! Handing every interval on the way to the current position would cost
//! the tree's depth per position (7 steps a position on package lists, each
//! likely a cache miss). Instead an owner holds a whole stretch of its
//! path at once, and only where the stretches meet is anything written:
//! an interval records the position that last entered it, and a position
//! records where its stretch was cut (the lowest interval a later position
//! took from it; the root if none). An interval's recorded position may
//! have lost it since; following the cuts from it finds the owner. A visit
//! then costs one step per match plus those hops, and the first visit of
//! an interval one step more. The same stretches are what a visit takes
//! over: the current position cuts each owner it meets where it met it,
//! and enters that interval.
//!
//! Packing (why chunks of at most 64 MiB): an interval is named by a
//! reference, its index under 2^26 with its length above, so comparing two
//! references on one path compares lengths; an interval's word holds its
//! parent's reference until first visited, then the visiting position (a
//! reference has a length code above the index, a position none); a
//! position's word holds its innermost interval until visited,
//! then its cut.
//!
//! Memory: while sorting, 5 bytes per byte of chunk (the sorted suffixes
//! and their shared lengths) and up to 128 MiB of keys; while building, 9
//! (the intervals' words replace the sorted suffixes as they are read);
//! while searching, 8 (the two words above), kept for the next chunk.
//! About 580 MiB at most for a 64 MiB chunk.

use super::suffix::sort_prefixes;

/// Shortest match reported.
const MIN_LEN: u8 = 3;

/// Largest chunk the packed words can describe.
pub(crate) const MAX_CHUNK: usize = 1 << ID_BITS;

/// How many positions ahead a visit asks for the next ones' first loads.
const AHEAD: usize = 4;

const ID_BITS: u32 = 26;
const ID_MASK: u32 = (1 << ID_BITS) - 1;
/// The root's reference: below every other one. References have a
/// length code of at least 1 above the index, positions none, which is how
/// an interval's word tells a parent from a visitor.
const ROOT: u32 = 1 << ID_BITS;

/// The reference of interval `id` (not the root) with length `lcp`.
#[inline(always)]
fn reference(id: u32, lcp: u32) -> u32 {
    if id == 0 {
        ROOT
    } else {
        (lcp - 1) << ID_BITS | id
    }
}

#[inline(always)]
fn length(r: u32) -> u32 {
    (r >> ID_BITS) + 1
}

/// The LCP-interval match finder; [`Self::reset`] builds it for a chunk.
pub(crate) struct LcpFinder {
    nice: u8,
    max_off3: usize,
    /// Per position: its innermost interval's reference ([`ROOT`]: no
    /// match of [`MIN_LEN`]) until visited, then its cut.
    pos: Vec<u32>,
    /// Per interval: its parent's reference until visited, then the last
    /// position that entered it.
    iv: Vec<u32>,
    /// Building only: the open intervals (index, length).
    stack: Vec<(u32, u32)>,
    /// Positions below this have been visited.
    visited: usize,
}

impl LcpFinder {
    /// A finder for matches of up to `nice` bytes (longer ones are reported
    /// as `nice`; at most 64), 3-byte matches at most `max_off3` back.
    pub(crate) fn new(nice: u8, max_off3: usize) -> Self {
        assert!((MIN_LEN..=64).contains(&nice));
        LcpFinder {
            nice,
            max_off3,
            pos: Vec::new(),
            iv: Vec::new(),
            stack: Vec::new(),
            visited: 0,
        }
    }

    /// Build the tree of `data` (at most [`MAX_CHUNK`] bytes); false, and
    /// nothing built, for a chunk the sort refuses (see [`sort_prefixes`]).
    pub(crate) fn reset(&mut self, data: &[u8]) -> bool {
        let n = data.len();
        assert!(
            n <= MAX_CHUNK,
            "chunk too large for the LCP-interval finder"
        );
        self.visited = 0;
        // What only the building needs is given back once built (two
        // encoders run at once, each building while the other searches),
        // and the intervals take the sorted suffixes' place.
        let mut sa = vec![0u32; n];
        let mut lcp = vec![0u8; n];
        let mut keys = Vec::new();
        if !sort_prefixes(data, &mut sa, &mut lcp, self.nice as usize, &mut keys) {
            return false;
        }
        drop(keys);
        self.pos.clear();
        self.pos.resize(n, ROOT);
        self.build(sa, &lcp);
        true
    }

    /// The intervals by one scan of the suffix and LCP arrays with a stack
    /// of the open ones (their lengths increasing), and each position's
    /// innermost. The intervals' words are written over the suffix array
    /// as it is read: by rank `r` at most `r + 2` intervals exist and
    /// ranks up to `r + 1` have been read.
    fn build(&mut self, mut sa: Vec<u32>, lcp: &[u8]) {
        let n = sa.len();
        let (pos, stack) = (&mut self.pos, &mut self.stack);
        let len = |r: usize| -> u32 {
            match lcp.get(r) {
                Some(&l) if l >= MIN_LEN => l as u32,
                _ => 0,
            }
        };
        let mut count = 1u32;
        let mut next = sa.first().copied().unwrap_or(0);
        stack.clear();
        stack.push((0, 0));
        // `left`: the length shared with the suffix before rank `r`, which
        // is the top of the stack's length.
        let mut left = 0u32;
        for r in 0..n {
            let p = next as usize;
            if let Some(&q) = sa.get(r + 1) {
                next = q;
            }
            if r == 0 {
                sa[0] = ROOT;
            }
            let iv = &mut sa;
            let right = len(r + 1);
            let (top, top_len) = *stack.last().unwrap_or(&(0, 0));
            // The leaf's innermost interval: the deeper of the ones it
            // shares with its two neighbours.
            if right <= left {
                pos[p] = reference(top, top_len);
            }
            // Close the intervals deeper than the boundary after rank r;
            // each one's parent is the next one closed or what stays open.
            let mut closed = None;
            while let Some(&(t, t_len)) = stack.last() {
                if t_len <= right {
                    break;
                }
                stack.pop();
                if let Some(c) = closed {
                    iv[c as usize] = reference(t, t_len);
                }
                closed = Some(t);
            }
            let (t, t_len) = *stack.last().unwrap_or(&(0, 0));
            let open = if t_len < right {
                let id = count;
                count += 1;
                stack.push((id, right));
                reference(id, right)
            } else {
                reference(t, t_len)
            };
            if let Some(c) = closed {
                iv[c as usize] = open;
            }
            if right > left {
                pos[p] = open;
            }
            left = right;
        }
        // Intervals are about half as many as positions: give the rest back.
        sa.truncate(count as usize);
        sa.shrink_to_fit();
        self.iv = sa;
    }

    /// Give the tables back (the chunk went to the other finder).
    pub(crate) fn release(&mut self) {
        self.pos = Vec::new();
        self.iv = Vec::new();
    }

    /// Visit positions up to (not including) `upto` without collecting
    /// their matches.
    pub(crate) fn insert_upto(&mut self, upto: usize) {
        while self.visited < upto {
            let p = self.visited;
            self.visit::<false>(p, &mut Vec::new());
        }
    }

    /// Visit `p` (the next position) and append its matches as (length,
    /// offset), each longer than the one before. Returns the longest
    /// length (0 if none).
    pub(crate) fn search(&mut self, p: usize, out: &mut Vec<(u32, u32)>) -> usize {
        let from = out.len();
        self.visit::<true>(p, out);
        out[from..].reverse();
        out.last()
            .filter(|_| out.len() > from)
            .map_or(0, |&(l, _)| l as usize)
    }

    /// The walk, longest match first into `out` when `RECORD`.
    #[inline(always)]
    fn visit<const RECORD: bool>(&mut self, p: usize, out: &mut Vec<(u32, u32)>) {
        debug_assert_eq!(p, self.visited);
        self.visited = p + 1;
        let (pos, iv) = (&mut self.pos, &mut self.iv);
        // Each visit starts with loads from anywhere in the tables: ask
        // for the innermost interval of the position a few ahead, and for
        // the cut of the last visitor of the next one's (asked for before).
        if let Some(&ahead) = pos.get(p + AHEAD) {
            super::bt::prefetch(&iv[(ahead & ID_MASK) as usize]);
        }
        if let Some(&next) = pos.get(p + 2) {
            let w = iv[(next & ID_MASK) as usize];
            if w >> ID_BITS == 0 {
                super::bt::prefetch(&pos[w as usize]);
            }
        }
        let me = p as u32;
        // Intervals never visited hold no earlier position: take them.
        let mut cur = pos[p];
        while cur != ROOT {
            let w = iv[(cur & ID_MASK) as usize];
            if w >> ID_BITS == 0 {
                break;
            }
            iv[(cur & ID_MASK) as usize] = me;
            cur = w;
        }
        // Then one stretch per earlier owner.
        while cur != ROOT {
            let slot = (cur & ID_MASK) as usize;
            // Its recorded position, or whoever took it since.
            let mut owner = iv[slot] as usize;
            let mut cut = pos[owner];
            while cut >= cur {
                owner = iv[(cut & ID_MASK) as usize] as usize;
                cut = pos[owner];
            }
            if RECORD {
                let (len, off) = (length(cur), p - owner);
                if len > MIN_LEN as u32 || off <= self.max_off3 {
                    out.push((len, off as u32));
                }
            }
            pos[owner] = cur;
            iv[slot] = me;
            cur = cut;
        }
        pos[p] = ROOT;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every match the finder reports is real, each length's offset is
    /// the nearest earlier position sharing that many bytes, and no
    /// length (up to the cap) where a match exists is missed; also where
    /// earlier positions were only visited (every `skip`th stretch of 5,
    /// as inside a long match).
    fn check(data: &[u8], nice: u8, skip: usize) {
        let n = data.len();
        let mut f = LcpFinder::new(nice, usize::MAX);
        assert!(f.reset(data));
        let mut out = Vec::new();
        for p in 0..n {
            if skip > 0 && (p / 5) % skip == 0 {
                continue;
            }
            f.insert_upto(p);
            out.clear();
            let best = f.search(p, &mut out);
            // The nearest earlier position for each capped length.
            let shared = |q: usize| -> usize {
                data[q..]
                    .iter()
                    .zip(&data[p..])
                    .take_while(|(a, b)| a == b)
                    .count()
                    .min(nice as usize)
            };
            let mut want = Vec::new();
            let mut longest = 0;
            for q in (0..p).rev() {
                let l = shared(q);
                if l >= MIN_LEN as usize && l > longest {
                    longest = l;
                    want.push((l as u32, (p - q) as u32));
                }
            }
            // Nearest first gives lengths rising with the offset; the
            // finder reports them in that order too.
            assert_eq!(out, want, "position {p}");
            assert_eq!(best, longest, "position {p}");
        }
    }

    #[test]
    fn finds_the_nearest_match_of_every_length() {
        check(b"", 64, 0);
        check(b"abc", 64, 0);
        check(b"abcabcabcabcabcabcabc", 64, 0);
        check(b"abcabcabcabcabcabcabc", 4, 2);
        check(&[7u8; 300], 64, 0);
        check(&[7u8; 300], 64, 3);
        check(
            b"the cat sat on the mat; the cat sat on the hat; a cat",
            8,
            0,
        );
        let mut rnd = crate::codec::xorshift(0x9E37_79B9_7F4A_7C15u64);
        for round in 0..60 {
            let n = (rnd() % 1500) as usize;
            let k = [2u64, 4, 26, 256][round % 4];
            let mut s: Vec<u8> = (0..n).map(|_| (rnd() % k) as u8).collect();
            if n > 200 {
                let (a, l) = ((rnd() as usize) % (n / 2), n / 5);
                s.copy_within(a..a + l, n - l);
            }
            check(&s, [3u8, 16, 64][round % 3], round % 4);
        }
    }

    /// A chunk of mostly one byte pair is refused (the encoder then uses
    /// the tree).
    #[test]
    fn mostly_zeros_is_refused() {
        let mut f = LcpFinder::new(64, usize::MAX);
        assert!(!f.reset(&vec![0u8; super::super::suffix::SLICE + 2]));
    }

    #[test]
    fn skipped_positions_still_count_as_earlier() {
        let data = b"xyzabcdefgh--abcdefgh--abcdefgh";
        let mut f = LcpFinder::new(64, usize::MAX);
        assert!(f.reset(data));
        f.insert_upto(23);
        let mut out = Vec::new();
        assert_eq!(f.search(23, &mut out), 8);
        assert_eq!(out.last(), Some(&(8, 10)));
    }
}
