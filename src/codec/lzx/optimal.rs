//! The near-optimal LZX parse: the cheapest coding of a chunk under the
//! code lengths of a quick first parse, found by pricing, position by
//! position, a literal, every length of the three recent-offset matches and
//! every length of the matches a binary-tree finder gathers there.
//!
//! It costs about three times the lazy parse (on 32 KiB chunks the tree
//! search and the pricing take ~40 ns per position each) and codes text
//! 3-6 % smaller; the encoder runs it on the chunks where the lazy parse
//! leaves the most behind (see [`super::Encoder::compress_chunk`]).

use super::{
    huffman_lengths, match_len, slot_of, EXTRA_BITS, ITEM_MATCH, LEN_SYMS, MAX_MAIN_SYMS,
    MAX_MATCH, NUM_CHARS, NUM_LEN_HEADERS, NUM_PRIMARY_LENS,
};
use crate::codec::bt::MatchFinder;

/// Tree nodes one match search visits at most.
const DEPTH: usize = 32;
/// A match this long is taken whole: what led to it is then final and the
/// positions it covers are neither searched nor priced.
const NICE: usize = 64;
/// Farthest back a 3-byte match is looked for (farther ones cost more than
/// the three literals they replace).
const OFF3: usize = 4096;

/// The cheapest known way to a position: its cost in bits, the position it
/// comes from and the item taken there.
#[derive(Clone, Copy)]
struct Step {
    cost: u32,
    from: u32,
    item: u32,
}

impl Step {
    const UNREACHED: Step = Step {
        cost: u32::MAX,
        from: 0,
        item: 0,
    };
}

/// Bits of each main and length symbol under the Huffman codes a parse
/// would get (symbols it did not use are priced as rare ones).
struct Costs {
    main: [u32; MAX_MAIN_SYMS],
    len: [u32; LEN_SYMS],
}

impl Costs {
    fn of(items: &[u32], num_main: usize) -> Costs {
        let mut main_freq = [0u32; MAX_MAIN_SYMS];
        let mut len_freq = [0u32; LEN_SYMS];
        for &it in items {
            if it & ITEM_MATCH == 0 {
                main_freq[it as usize] += 1;
                continue;
            }
            let l = ((it >> 22) & 0xff) as usize;
            let slot = slot_of(it & 0x3f_ffff);
            main_freq[NUM_CHARS + slot * NUM_LEN_HEADERS + l.min(NUM_PRIMARY_LENS)] += 1;
            if l >= NUM_PRIMARY_LENS {
                len_freq[l - NUM_PRIMARY_LENS] += 1;
            }
        }
        let mut main_lens = [0u8; MAX_MAIN_SYMS];
        huffman_lengths(&main_freq[..num_main], 16, &mut main_lens[..num_main]);
        let mut len_lens = [0u8; LEN_SYMS];
        huffman_lengths(&len_freq, 16, &mut len_lens);
        let price = |l: u8, unused: u32| if l == 0 { unused } else { u32::from(l) };
        let mut c = Costs {
            main: [16; MAX_MAIN_SYMS],
            len: [16; LEN_SYMS],
        };
        for (o, &l) in c.main.iter_mut().zip(&main_lens[..num_main]) {
            *o = price(l, 15);
        }
        for (o, &l) in c.len.iter_mut().zip(&len_lens) {
            *o = price(l, 12);
        }
        c
    }
}

/// The recent-offset queue after a match item (formatted offset `f`: 0..2
/// a recent offset, else the offset + 2).
#[inline(always)]
fn after_match(mut q: [u32; 3], f: u32) -> [u32; 3] {
    if f < 3 {
        q.swap(f as usize, 0);
        q
    } else {
        [f - 2, q[0], q[1]]
    }
}

/// A match item: length and formatted offset.
#[inline(always)]
fn match_item(len: usize, f: u32) -> u32 {
    ITEM_MATCH | ((len - 2) as u32) << 22 | f
}

/// The parse's tables, kept between chunks so that a chunk allocates
/// nothing.
#[derive(Default)]
pub(super) struct Optimal {
    /// The explicit matches at each position (`start[p]..start[p + 1]` in
    /// `matches`, packed as length << 24 | offset, lengths increasing).
    start: Vec<u32>,
    matches: Vec<u32>,
    /// Per position the cheapest known way there and the recent-offset
    /// queue after it.
    node: Vec<Step>,
    queue: Vec<[u32; 3]>,
    found: Vec<(u32, u32)>,
    mf: Option<MatchFinder>,
}

impl Optimal {
    /// Parse `b` (a chunk after E8 translation) into `items`.
    pub(super) fn parse(
        &mut self,
        b: &[u8],
        max_off: usize,
        num_main: usize,
        items: &mut Vec<u32>,
    ) {
        self.gather(b, max_off);
        self.parse_greedy(b, items);
        let costs = Costs::of(items, num_main);
        self.parse_cheapest(b, &costs, items);
    }

    /// Find the explicit matches at every position (each longer than the
    /// ones before it). Inside a match of [`NICE`] bytes or more nothing is
    /// collected: the parse takes such a match whole.
    fn gather(&mut self, b: &[u8], max_off: usize) {
        let n = b.len();
        self.start.clear();
        self.matches.clear();
        let mf = self
            .mf
            .get_or_insert_with(|| MatchFinder::new(NICE, DEPTH, OFF3, max_off));
        mf.set_max_off(max_off);
        mf.reset(n);
        let found = &mut self.found;
        let mut skip_to = 0usize;
        for p in 0..n {
            self.start.push(self.matches.len() as u32);
            if p < skip_to {
                mf.search(b, p, None);
                continue;
            }
            found.clear();
            let best = mf.search(b, p, Some(found));
            self.matches
                .extend(found.iter().map(|&(l, off)| l << 24 | off));
            if best >= NICE {
                skip_to = p + best;
            }
        }
        self.start.push(self.matches.len() as u32);
    }

    /// A quick parse over the gathered matches (the longest at each
    /// position, or the longest recent-offset match when that is about as
    /// long), only for the code lengths that price the near-optimal parse.
    fn parse_greedy(&self, b: &[u8], items: &mut Vec<u32>) {
        let n = b.len();
        items.clear();
        let mut q = [1u32; 3];
        let mut i = 0usize;
        while i < n {
            let max = (n - i).min(MAX_MATCH);
            let mut best = (0usize, 0u32);
            if max >= 2 {
                for (k, &r) in q.iter().enumerate() {
                    let r = r as usize;
                    if r <= i && b[i] == b[i - r] && b[i + 1] == b[i + 1 - r] {
                        let l = match_len(b, i - r, i, max);
                        if l > best.0 {
                            best = (l, k as u32);
                        }
                    }
                }
                let here = &self.matches[self.start[i] as usize..self.start[i + 1] as usize];
                if let Some(&m) = here.last() {
                    let l = (m >> 24) as usize;
                    if l > best.0 + 1 {
                        best = (l, (m & 0xff_ffff) + 2);
                    }
                }
            }
            if best.0 < 2 || (best.0 == 2 && best.1 >= 3) {
                items.push(u32::from(b[i]));
                i += 1;
                continue;
            }
            q = after_match(q, best.1);
            items.push(match_item(best.0, best.1));
            i += best.0;
        }
    }

    /// The cheapest coding of `b` under `costs`, into `items`. The recent-
    /// offset queue at each position is the one of the cheapest way there
    /// (the usual approximation: the best path to a position is taken as
    /// the best start from it).
    fn parse_cheapest(&mut self, b: &[u8], costs: &Costs, items: &mut Vec<u32>) {
        let n = b.len();
        items.clear();
        self.node.clear();
        self.node.resize(n + 1, Step::UNREACHED);
        self.queue.clear();
        self.queue.resize(n + 1, [1; 3]);
        let (node, queue) = (&mut self.node, &mut self.queue);
        let mut start = 0usize;
        let mut touched = 0usize;
        node[0].cost = 0;
        // Write the cheapest way from `start` to `end` into `items`.
        let backtrack = |items: &mut Vec<u32>, node: &[Step], start: usize, end: usize| {
            let first = items.len();
            let mut j = end;
            while j > start {
                items.push(node[j].item);
                j = node[j].from as usize;
            }
            items[first..].reverse();
        };
        // Bits of a match's length beyond its length header: the length
        // symbol, from the ninth length on.
        let mut len_cost = [0u32; MAX_MATCH + 1];
        for (len, c) in len_cost.iter_mut().enumerate().skip(2) {
            let h = len - 2;
            if h >= NUM_PRIMARY_LENS {
                *c = costs.len[h - NUM_PRIMARY_LENS];
            }
        }
        let mut i = 0usize;
        while i < n {
            // Every way into `i` starts before it, so the cheapest is final
            // now, and with it the queue here.
            let q = if i == start {
                queue[i]
            } else {
                let st = node[i];
                let mut q = queue[st.from as usize];
                if st.item & ITEM_MATCH != 0 {
                    q = after_match(q, st.item & 0x3f_ffff);
                }
                queue[i] = q;
                q
            };
            let c = node[i].cost;
            let mut relax = |to: usize, c2: u32, it: u32| {
                let t = &mut node[to];
                if c2 < t.cost {
                    *t = Step {
                        cost: c2,
                        from: i as u32,
                        item: it,
                    };
                }
            };
            relax(i + 1, c + costs.main[b[i] as usize], u32::from(b[i]));
            touched = touched.max(i + 1);
            let max = (n - i).min(MAX_MATCH);
            // The longest match here: (length, formatted offset).
            let mut long = (0usize, 0u32);
            if max >= 2 {
                for (k, &r) in q.iter().enumerate() {
                    let r = r as usize;
                    if r > i || b[i] != b[i - r] || b[i + 1] != b[i + 1 - r] {
                        continue;
                    }
                    let l = match_len(b, i - r, i, max);
                    if l > long.0 {
                        long = (l, k as u32);
                    }
                    if l >= NICE {
                        continue;
                    }
                    let main = &costs.main[NUM_CHARS + k * NUM_LEN_HEADERS..][..NUM_LEN_HEADERS];
                    for (len, &lc) in len_cost.iter().enumerate().take(l + 1).skip(2) {
                        let c2 = c + main[(len - 2).min(NUM_PRIMARY_LENS)] + lc;
                        relax(i + len, c2, match_item(len, k as u32));
                    }
                    touched = touched.max(i + l);
                }
                let mut lo = 3usize;
                let here = &self.matches[self.start[i] as usize..self.start[i + 1] as usize];
                for &m in here {
                    let l = (m >> 24) as usize;
                    let off = m & 0xff_ffff;
                    if q.contains(&off) {
                        // Coded as a recent offset, priced above.
                        lo = l + 1;
                        continue;
                    }
                    let f = off + 2;
                    if l > long.0 {
                        long = (l, f);
                    }
                    if l >= NICE {
                        break;
                    }
                    let slot = slot_of(f);
                    let main = &costs.main[NUM_CHARS + slot * NUM_LEN_HEADERS..][..NUM_LEN_HEADERS];
                    let c1 = c + u32::from(EXTRA_BITS[slot]);
                    for (len, &lc) in len_cost.iter().enumerate().take(l + 1).skip(lo) {
                        let c2 = c1 + main[(len - 2).min(NUM_PRIMARY_LENS)] + lc;
                        relax(i + len, c2, match_item(len, f));
                    }
                    touched = touched.max(i + l);
                    lo = l + 1;
                }
            }
            if long.0 >= NICE {
                // Take it whole: what led here is final.
                backtrack(items, node, start, i);
                items.push(match_item(long.0, long.1));
                start = i + long.0;
                for x in &mut node[start..=touched.max(start).min(n)] {
                    *x = Step::UNREACHED;
                }
                node[start].cost = 0;
                queue[start] = after_match(q, long.1);
                i = start;
                continue;
            }
            i += 1;
        }
        if start < n {
            backtrack(items, node, start, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes `items` stand for, read as the decoder reads them
    /// (recent offsets included).
    fn replay(items: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut q = [1u32; 3];
        for &it in items {
            if it & ITEM_MATCH == 0 {
                out.push(it as u8);
                continue;
            }
            let len = ((it >> 22) & 0xff) as usize + 2;
            let f = it & 0x3f_ffff;
            let off = if f < 3 { q[f as usize] } else { f - 2 } as usize;
            q = after_match(q, f);
            assert!(
                off >= 1 && off <= out.len(),
                "offset {off} at {}",
                out.len()
            );
            for _ in 0..len {
                out.push(out[out.len() - off]);
            }
        }
        out
    }

    fn lcg(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 56) as u8
            })
            .collect()
    }

    /// The parse's items stand for exactly the chunk, whatever its kind:
    /// text, runs (matches taken whole), short inputs, noise with repeats.
    #[test]
    fn items_replay_to_the_input() {
        let text = include_bytes!("mod.rs");
        let mut noisy = lcg(20000, 7);
        let copy = noisy[100..5000].to_vec();
        noisy.extend_from_slice(&copy);
        noisy.extend(lcg(3000, 9).iter().map(|b| b & 3));
        let cases: Vec<Vec<u8>> = vec![
            text[..32768].to_vec(),
            text[5000..6000].to_vec(),
            vec![0; 32768],
            b"abcabcabcabcabcabcabc".to_vec(),
            b"a".to_vec(),
            b"ab".to_vec(),
            b"aaa".to_vec(),
            noisy,
        ];
        let mut opt = Optimal::default();
        let mut items = Vec::new();
        for (k, c) in cases.iter().enumerate() {
            opt.parse(c, 32768 - 3, super::super::num_main_syms(15), &mut items);
            assert_eq!(replay(&items), *c, "case {k}");
        }
    }
}
