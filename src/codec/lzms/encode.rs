//! The LZMS encoder: a match finder over the whole chunk (built from its
//! sorted suffixes for chunks of 1 MiB or more, a binary tree below), a
//! delta-match finder, and a near-optimal parse.
//!
//! Why near-optimal: LZMS codes every item with adaptive Huffman codes and
//! adaptive bit probabilities, so the cheapest item at each position is not
//! the longest match. A greedy/lazy parse left solid resources 14-16% larger
//! than wimlib's on text and x86 code. The parser here collects every match
//! the finder sees at each position of a segment, then runs a forward
//! dynamic programme (cheapest way to reach each position) priced with the
//! code lengths and probabilities in force when the segment starts, tracking
//! both repeat queues (LZ offsets, delta pairs) and the decision contexts
//! along each path, and codes the cheapest path. Costs are in 1/16 bit.
//!
//! Memory per encoder: the chunk copy plus the match finder's tables, at
//! most about 9 bytes per byte of chunk while it is built (about 800 MiB
//! at the peak for a 64 MiB ESD chunk, with the parse and the output; see
//! `codec/lcpit.rs`), 8 of them kept between chunks by the thread-local
//! encoder; the solid writer compresses two such chunks at a time.
//!
//! Speed: the match finder is most of the work, and most of its time is
//! waiting for memory (its tables are spread over hundreds of MiB), so
//! each search asks early for what the next positions load first. For a
//! chunk of 1 MiB or more the matches are collected on a thread of their
//! own, a few segments ahead of the parse and the range coder, which are
//! fed in order: what the collector does never depends on what the parse
//! decides, so the output does not depend on the timing.
//!
//! Why the window is the whole chunk: ESD solid chunks are 64 MiB of files
//! laid end to end, and most of their redundancy is between files far
//! apart (the same text or code in several packages).

use super::*;
use crate::codec::bt::{match_len, MatchFinder};
use crate::codec::lcpit::LcpFinder;

/// Forward range encoder producing 16-bit LE units (LZMA-style carry
/// handling with 16-bit units; the decoder does not skip a leading unit, so
/// the first, always-zero cache unit is dropped).
struct RangeEncoder {
    low: u64,
    range: u32,
    cache: u16,
    cache_size: u64,
    first: bool,
    out: Vec<u8>,
}

impl RangeEncoder {
    fn new(out: Vec<u8>) -> Self {
        RangeEncoder {
            low: 0,
            range: 0xFFFF_FFFF,
            cache: 0,
            cache_size: 1,
            first: true,
            out,
        }
    }

    #[inline(always)]
    fn emit(&mut self, unit: u16) {
        if self.first {
            self.first = false;
        } else {
            self.out.extend_from_slice(&unit.to_le_bytes());
        }
    }

    fn shift_low(&mut self) {
        if (self.low as u32) < 0xFFFF_0000 || (self.low >> 32) != 0 {
            let carry = (self.low >> 32) as u16;
            let mut unit = self.cache;
            loop {
                self.emit(unit.wrapping_add(carry));
                unit = 0xFFFF;
                self.cache_size -= 1;
                if self.cache_size == 0 {
                    break;
                }
            }
            self.cache = ((self.low >> 16) & 0xFFFF) as u16;
        }
        self.cache_size += 1;
        self.low = (self.low & 0xFFFF) << 16;
    }

    #[inline(always)]
    fn encode(&mut self, bit: u32, p: &mut Prob) {
        if self.range <= 0xFFFF {
            self.range <<= 16;
            self.shift_low();
        }
        let bound = (self.range >> 6) * p.p();
        if bit == 0 {
            self.range = bound;
        } else {
            self.low += bound as u64;
            self.range -= bound;
        }
        p.update(bit);
    }

    fn finish(mut self) -> Vec<u8> {
        for _ in 0..4 {
            self.shift_low();
        }
        self.out
    }
}

#[inline(always)]
fn encode_decision<const N: usize>(
    rc: &mut RangeEncoder,
    probs: &mut [Prob; N],
    state: &mut usize,
    bit: u32,
) {
    rc.encode(bit, &mut probs[*state & (N - 1)]);
    *state = ((*state << 1) | bit as usize) & (N - 1);
}

/// Backwards bitstream writer: units are collected in write order and later
/// placed at the end of the output in reverse.
struct BitWriter {
    buf: u64,
    count: u32,
    units: Vec<u16>,
}

impl BitWriter {
    #[inline(always)]
    fn write(&mut self, bits: u32, n: u32) {
        if n == 0 {
            return;
        }
        self.buf = (self.buf << n) | bits as u64;
        self.count += n;
        while self.count >= 16 {
            self.count -= 16;
            self.units.push((self.buf >> self.count) as u16);
        }
    }

    fn flush(&mut self) {
        if self.count > 0 {
            self.units.push((self.buf << (16 - self.count)) as u16);
            self.count = 0;
        }
    }
}

/// Encoder side of an adaptive Huffman code.
struct EncodeCode {
    num_syms: usize,
    rebuild_freq: u32,
    until_rebuild: u32,
    freqs: [u32; MAX_SYMS],
    lens: [u8; MAX_SYMS],
    codes: [u32; MAX_SYMS],
}

impl EncodeCode {
    fn new(rebuild_freq: u32) -> Self {
        EncodeCode {
            num_syms: 0,
            rebuild_freq,
            until_rebuild: rebuild_freq,
            freqs: [1; MAX_SYMS],
            lens: [0; MAX_SYMS],
            codes: [0; MAX_SYMS],
        }
    }

    fn reset(&mut self, num_syms: usize, w: &mut HuffWork) {
        self.num_syms = num_syms.min(MAX_SYMS);
        self.freqs[..self.num_syms].fill(1);
        self.build(w);
    }

    fn build(&mut self, w: &mut HuffWork) {
        let n = self.num_syms;
        self.until_rebuild = self.rebuild_freq;
        if n == 0 {
            return;
        }
        build_lengths(&self.freqs[..n], &mut self.lens[..n], w);
        crate::codec::huffman::canonical_codes(&self.lens[..n], &mut self.codes[..n]);
    }

    #[inline(always)]
    fn encode(&mut self, sym: usize, bw: &mut BitWriter, w: &mut HuffWork) {
        bw.write(self.codes[sym], self.lens[sym] as u32);
        self.freqs[sym] += 1;
        self.until_rebuild -= 1;
        if self.until_rebuild == 0 {
            self.build(w);
            for f in &mut self.freqs[..self.num_syms] {
                *f = (*f >> 1) + 1;
            }
        }
    }
}

/// Repeat queue of one match kind (LZ offsets, or delta (power, offset)
/// pairs) with the format's delayed front insertion: a match's value joins
/// the front only once an item of another kind (or another match of this
/// kind) follows it. 0 is "none".
#[derive(Clone, Copy)]
struct RepQueue<T> {
    reps: [T; 4],
    pending: T,
    /// The last item was a match of this kind.
    prev_same: bool,
}

type LzQueue = RepQueue<u32>;
type DeltaQueue = RepQueue<u64>;

impl<T: Copy + PartialEq + Default + From<u8>> RepQueue<T> {
    fn new() -> Self {
        RepQueue {
            reps: [T::from(1), T::from(2), T::from(3), T::from(4)],
            pending: T::default(),
            prev_same: false,
        }
    }

    /// The three values a repeat match at this point may refer to.
    #[inline(always)]
    fn visible(&self) -> [T; 3] {
        if self.pending != T::default() && !self.prev_same {
            [self.pending, self.reps[0], self.reps[1]]
        } else {
            [self.reps[0], self.reps[1], self.reps[2]]
        }
    }

    /// Apply a match of this kind (explicit `value`, or repeat index
    /// `rep`) exactly as the decoder does.
    fn apply(&mut self, rep: Option<usize>, value: T) {
        let none = T::default();
        if self.pending != none && !self.prev_same {
            self.reps = [self.pending, self.reps[0], self.reps[1], self.reps[2]];
            self.pending = none;
        }
        let v = match rep {
            None => value,
            Some(i) => {
                let o = self.reps[i];
                for k in i..3 {
                    self.reps[k] = self.reps[k + 1];
                }
                o
            }
        };
        if self.pending != none {
            self.reps = [self.pending, self.reps[0], self.reps[1], self.reps[2]];
        }
        self.pending = v;
        self.prev_same = true;
    }
}

/// Cost in 1/16 bit of coding a bit whose probability of being 0 is p/64.
static BIT_COST: [i32; 65] = {
    // round(-log2(p / 64) * 16), computed with a small integer log2.
    let mut t = [0i32; 65];
    let mut p = 1;
    while p <= 64 {
        // log2(64/p) * 16 via fixed-point: find x with 2^(x/16) ~ 64/p.
        let mut x = 0;
        // Compare p * 2^(x/16) >= 64 using the 16th-root table.
        while x < 400 && ((p as u64 * ROOT16[x % 16]) << (x / 16)) < (64u64 << 30) {
            x += 1;
        }
        t[p] = x as i32;
        p += 1;
    }
    t[0] = t[1];
    t
};

/// 2^(k/16) in 2^30 fixed point.
const ROOT16: [u64; 16] = [
    1073741824, 1120768876, 1169855677, 1221092319, 1274573036, 1330396384, 1388665412, 1449487865,
    1512976403, 1579248823, 1648428307, 1720643664, 1796029608, 1874727020, 1956883238, 2042652317,
];

/// Matches at least this long are taken as they are, without pricing the
/// alternatives (they are almost always right, and it bounds the work).
const NICE_LEN: usize = 64;
/// Tree nodes a match search visits (on 8 MiB of text: 16 steps left the
/// output 0.7% larger than 32, 64 gained 0.05% for 15% more time).
const MAX_DEPTH: usize = 32;
/// Positions priced together by one run of the dynamic programme: long
/// enough that the parse sees across several items, short enough that the
/// prices taken at its start stay close to the adaptive codes' state.
const SEGMENT: usize = 2048;
/// Farthest back a 3-byte match is looked for (longer offsets cost more
/// than three literals).
const MAX_OFFSET3: usize = 8192;
const NONE: u32 = u32::MAX;

/// Delta powers searched: spans 1 to 32 bytes, the record sizes of tables,
/// pixels and samples (64 and 128 gained 0.01% on x86 binaries for 5% more
/// time).
const DELTA_POWERS: usize = 6;
/// Delta matches are looked for only where the longest LZ match is shorter
/// than this (the same size as searching everywhere, a sixth less time).
const DELTA_BELOW: usize = 12;
const DELTA_BITS: u32 = 14;
/// Shortest delta match kept (an explicit one costs a power, an offset and
/// a length: more than three literals saved is rare below this).
const MIN_DELTA: usize = 4;

/// Finds delta matches: for a span S = 2^power, position i matches i - O
/// when the byte differences d[x] = data[x] - data[x - S] agree, which is
/// what a delta match (power, O / S) reproduces. One table per power maps
/// a hash of four differences to the latest position; O must be a
/// multiple of S. (In x86 binaries about a tenth of the bytes are best
/// coded this way: tables of addresses, relocations.)
#[derive(Default)]
struct DeltaFinder {
    heads: Vec<u32>,
}

/// Length over which the delta match (span `s`, offset `o`) reproduces
/// `data[p..]`, up to `max`.
#[inline(always)]
fn delta_len(data: &[u8], p: usize, o: usize, s: usize, max: usize) -> usize {
    let mut l = 0;
    while l < max
        && data[p + l].wrapping_sub(data[p + l - s])
            == data[p + l - o].wrapping_sub(data[p + l - o - s])
    {
        l += 1;
    }
    l
}

impl DeltaFinder {
    fn reset(&mut self) {
        self.heads.clear();
        self.heads.resize(DELTA_POWERS << DELTA_BITS, NONE);
    }

    /// Record `p` and return the longest delta match found there as
    /// (length, power, raw offset), length 0 if none.
    fn search(&mut self, data: &[u8], p: usize, max: usize) -> (u32, u8, u32) {
        let mut best = (0u32, 0u8, 0u32);
        if p + 4 > data.len() {
            return best;
        }
        for power in 0..DELTA_POWERS {
            let s = 1usize << power;
            if p < s {
                break;
            }
            let d = u32::from_le_bytes([
                data[p].wrapping_sub(data[p - s]),
                data[p + 1].wrapping_sub(data[p + 1 - s]),
                data[p + 2].wrapping_sub(data[p + 2 - s]),
                data[p + 3].wrapping_sub(data[p + 3 - s]),
            ]);
            let h = (power << DELTA_BITS)
                | ((d ^ power as u32).wrapping_mul(0x9E37_79B1) >> (32 - DELTA_BITS)) as usize;
            let c = self.heads[h];
            self.heads[h] = p as u32;
            if c == NONE {
                continue;
            }
            let o = p - c as usize;
            if !o.is_multiple_of(s) || o + s > p {
                continue;
            }
            let l = delta_len(data, p, o, s, max);
            if l >= MIN_DELTA && l as u32 > best.0 {
                best = (l as u32, power as u8, (o >> power) as u32);
            }
        }
        best
    }
}

/// What one item of the parse is.
#[derive(Clone, Copy)]
enum Item {
    Lit,
    LzRep(u8),
    Lz(u32),
    DeltaRep(u8),
    /// (power, raw offset)
    Delta(u8, u32),
}

/// One way to reach a position in the parse: the item that ends there.
#[derive(Clone, Copy)]
struct Node {
    /// Cheapest cost found (1/16 bit) from the segment's start.
    cost: u32,
    /// Length of the item ending here (1 for a literal).
    len: u32,
    item: Item,
}

/// Coder state that the price of the next item depends on, followed along
/// each path of the parse.
#[derive(Clone, Copy)]
struct PathState {
    q: LzQueue,
    dq: DeltaQueue,
    main: usize,
    matc: usize,
    lz: usize,
    rep: [usize; 2],
    delta: usize,
    drep: [usize; 2],
}

/// Context state after a repeat-index decision sequence for index `k`.
#[inline(always)]
fn after_rep(st: &mut [usize; 2], k: usize) {
    for r in st.iter_mut().take(k.min(2)) {
        *r = ((*r << 1) | 1) & 63;
    }
    if k < 2 {
        st[k] = (st[k] << 1) & 63;
    }
}

impl PathState {
    fn after(mut self, item: Item) -> Self {
        match item {
            Item::Lit => {
                self.main = (self.main << 1) & 15;
                self.q.prev_same = false;
                self.dq.prev_same = false;
                return self;
            }
            Item::LzRep(_) | Item::Lz(_) => {
                self.matc = (self.matc << 1) & 31;
                self.dq.prev_same = false;
            }
            Item::DeltaRep(_) | Item::Delta(..) => {
                self.matc = ((self.matc << 1) | 1) & 31;
                self.q.prev_same = false;
            }
        }
        self.main = ((self.main << 1) | 1) & 15;
        match item {
            Item::LzRep(k) => {
                self.lz = ((self.lz << 1) | 1) & 63;
                after_rep(&mut self.rep, k as usize);
                self.q.apply(Some(k as usize), 0);
            }
            Item::Lz(o) => {
                self.lz = (self.lz << 1) & 63;
                self.q.apply(None, o);
            }
            Item::DeltaRep(k) => {
                self.delta = ((self.delta << 1) | 1) & 63;
                after_rep(&mut self.drep, k as usize);
                self.dq.apply(Some(k as usize), 0);
            }
            Item::Delta(power, raw) => {
                self.delta = (self.delta << 1) & 63;
                self.dq.apply(None, pair(power, raw));
            }
            Item::Lit => {}
        }
        self
    }
}

#[inline(always)]
fn pair(power: u8, raw: u32) -> u64 {
    (u64::from(power) << 32) | u64::from(raw)
}

#[inline(always)]
fn bit_cost<const N: usize>(probs: &[Prob; N], state: usize, bit: u32) -> u32 {
    let p = probs[state & (N - 1)].p() as usize;
    (if bit == 0 {
        BIT_COST[p]
    } else {
        BIT_COST[64 - p]
    }) as u32
}

/// Cost of the decisions choosing repeat index `k` (contexts `st`).
#[inline(always)]
fn rep_cost(probs: &[[Prob; 64]; 2], st: &[usize; 2], k: usize) -> u32 {
    let mut c = 0;
    for j in 0..k.min(2) {
        c += bit_cost(&probs[j], st[j], 1);
    }
    if k < 2 {
        c += bit_cost(&probs[k], st[k], 0);
    }
    c
}

/// The adaptive codes and probabilities, and the coding of one item.
struct Coder {
    models: Models,
    literal: EncodeCode,
    lz_offset: EncodeCode,
    length: EncodeCode,
    delta_offset: EncodeCode,
    delta_power: EncodeCode,
    work: Box<HuffWork>,
}

/// Both repeat queues, as the decoder keeps them.
#[derive(Clone, Copy)]
struct Queues {
    lz: LzQueue,
    delta: DeltaQueue,
}

impl Coder {
    fn literal(&mut self, rc: &mut RangeEncoder, bw: &mut BitWriter, q: &mut Queues, b: u8) {
        let m = &mut self.models;
        encode_decision(rc, &mut m.main, &mut m.main_state, 0);
        self.literal.encode(b as usize, bw, &mut self.work);
        q.lz.prev_same = false;
        q.delta.prev_same = false;
    }

    fn length(&mut self, bw: &mut BitWriter, len: usize) {
        let lslot = slot_of(len as u32, &LENGTH_BASE);
        self.length.encode(lslot, bw, &mut self.work);
        bw.write(len as u32 - LENGTH_BASE[lslot], LENGTH_EXTRA[lslot] as u32);
    }

    /// Repeat index `k` decisions.
    fn rep_bits(rc: &mut RangeEncoder, probs: &mut [[Prob; 64]; 2], st: &mut [usize; 2], k: usize) {
        for j in 0..k.min(2) {
            encode_decision(rc, &mut probs[j], &mut st[j], 1);
        }
        if k < 2 {
            encode_decision(rc, &mut probs[k], &mut st[k], 0);
        }
    }

    /// An LZ match: repeat index `rep`, or explicit `offset`.
    fn lz_match(
        &mut self,
        rc: &mut RangeEncoder,
        bw: &mut BitWriter,
        q: &mut Queues,
        len: usize,
        rep: Option<usize>,
        offset: u32,
    ) {
        let m = &mut self.models;
        encode_decision(rc, &mut m.main, &mut m.main_state, 1);
        encode_decision(rc, &mut m.matc, &mut m.match_state, 0);
        match rep {
            Some(k) => {
                encode_decision(rc, &mut m.lz, &mut m.lz_state, 1);
                Self::rep_bits(rc, &mut m.lz_rep, &mut m.lz_rep_state, k);
            }
            None => {
                encode_decision(rc, &mut m.lz, &mut m.lz_state, 0);
                let slot = slot_of(offset, &OFFSET_BASE);
                self.lz_offset.encode(slot, bw, &mut self.work);
                bw.write(offset - OFFSET_BASE[slot], OFFSET_EXTRA[slot] as u32);
            }
        }
        q.lz.apply(rep, offset);
        q.delta.prev_same = false;
        self.length(bw, len);
    }

    /// A delta match: `Item::DeltaRep` or `Item::Delta`.
    fn delta_match(
        &mut self,
        rc: &mut RangeEncoder,
        bw: &mut BitWriter,
        q: &mut Queues,
        len: usize,
        item: Item,
    ) {
        let m = &mut self.models;
        encode_decision(rc, &mut m.main, &mut m.main_state, 1);
        encode_decision(rc, &mut m.matc, &mut m.match_state, 1);
        match item {
            Item::DeltaRep(k) => {
                encode_decision(rc, &mut m.delta, &mut m.delta_state, 1);
                Self::rep_bits(rc, &mut m.delta_rep, &mut m.delta_rep_state, k as usize);
                q.delta.apply(Some(k as usize), 0);
            }
            Item::Delta(power, raw) => {
                encode_decision(rc, &mut m.delta, &mut m.delta_state, 0);
                self.delta_power.encode(power as usize, bw, &mut self.work);
                let slot = slot_of(raw, &OFFSET_BASE);
                self.delta_offset.encode(slot, bw, &mut self.work);
                bw.write(raw - OFFSET_BASE[slot], OFFSET_EXTRA[slot] as u32);
                q.delta.apply(None, pair(power, raw));
            }
            Item::Lit | Item::LzRep(_) | Item::Lz(_) => {
                debug_assert!(false, "delta_match given an LZ item");
                return;
            }
        }
        q.lz.prev_same = false;
        self.length(bw, len);
    }

    fn state(&self, q: Queues) -> PathState {
        let m = &self.models;
        PathState {
            q: q.lz,
            dq: q.delta,
            main: m.main_state,
            matc: m.match_state,
            lz: m.lz_state,
            rep: m.lz_rep_state,
            delta: m.delta_state,
            drep: m.delta_rep_state,
        }
    }
}

/// Reusable LZMS encoder state (match finder tables, parse arrays and coder
/// models); tables grow to the largest chunk seen.
pub struct Encoder {
    coder: Coder,
    mf: MatchFinder,
    lf: LcpFinder,
    df: DeltaFinder,
    x86: X86Filter,
    buf: Vec<u8>,
    parser: Parser,
    seg: Segment,
}

/// The parse's working memory.
#[derive(Default)]
struct Parser {
    nodes: Vec<Node>,
    states: Vec<PathState>,
    path: Vec<(u32, Item)>,
}

/// The matches of one segment of positions, collected ahead of its parse
/// ([`collect`]).
#[derive(Default)]
struct Segment {
    /// First position, and how many positions the parse prices.
    p: usize,
    seg: usize,
    /// Matches of each position, flattened; `starts[i]` is where position
    /// `p + i`'s begin.
    matches: Vec<(u32, u32)>,
    starts: Vec<u32>,
    /// The longest delta match of each position.
    deltas: Vec<(u32, u8, u32)>,
    /// A match of at least [`NICE_LEN`] at `p + seg` that ends the
    /// segment: its whole length and offset.
    long: Option<(usize, u32)>,
}

/// Chunks at least this large have their matches found through their
/// sorted suffixes ([`LcpFinder`]); smaller ones through the binary tree,
/// whose tables then fit the caches, and so do chunks that are mostly one
/// byte pair (zeros), which the sort would spend its time and memory on.
const LCP_MIN: usize = 1 << 20;
const LCP_MAX: usize = crate::codec::lcpit::MAX_CHUNK;

/// The match finder of one chunk.
enum Finder<'a> {
    Tree(&'a mut MatchFinder),
    Lcp(&'a mut LcpFinder),
}

impl Finder<'_> {
    /// Visit every position before `p`, then `p`: append its matches, each
    /// longer than the one before, and return the longest length.
    fn search(&mut self, data: &[u8], p: usize, out: &mut Vec<(u32, u32)>) -> usize {
        match self {
            Finder::Tree(f) => {
                f.insert_upto(data, p);
                f.search(data, p, Some(out))
            }
            Finder::Lcp(f) => {
                f.insert_upto(p);
                f.search(p, out)
            }
        }
    }
}

/// Chunks at least this large have their matches collected on a thread of
/// their own while the parse and the range coder run on the caller's (the
/// match finder is about three quarters of the work): a solid resource's
/// last 64 MiB chunk then no longer runs on one core while the other idles.
const COLLECT_THREAD_MIN: usize = 1 << 20;
/// Segments collected ahead of the parse (memory: a few hundred KiB each).
const COLLECT_AHEAD: usize = 16;

/// Collect the segment from `p`: the matches of each position until
/// [`SEGMENT`] positions or one with a match of at least [`NICE_LEN`],
/// whose whole length is measured. Returns the position after the segment
/// (after the long match). Depends on nothing the parse decides, so it can
/// run ahead of it.
fn collect(mf: &mut Finder, df: &mut DeltaFinder, data: &[u8], p: usize, s: &mut Segment) -> usize {
    let n = data.len();
    let end = (p + SEGMENT).min(n);
    s.p = p;
    s.matches.clear();
    s.starts.clear();
    s.deltas.clear();
    s.long = None;
    let mut i = p;
    while i < end {
        s.starts.push(s.matches.len() as u32);
        let l = mf.search(data, i, &mut s.matches);
        if l >= NICE_LEN {
            // The longest match found there; the finder stops comparing at
            // the nice length.
            let (_, off) = s.matches[s.matches.len() - 1];
            let len = match_len(data, i - off as usize, i, n - i);
            s.long = Some((len, off));
            s.seg = i - p;
            s.starts.push(s.matches.len() as u32);
            return i + len;
        }
        // Delta matches matter where LZ finds little.
        s.deltas.push(if l < DELTA_BELOW {
            df.search(data, i, (end - i).min(NICE_LEN))
        } else {
            (0, 0, 0)
        });
        i += 1;
    }
    s.seg = i - p;
    s.starts.push(s.matches.len() as u32);
    i
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// Allocate an encoder.
    pub fn new() -> Self {
        Encoder {
            coder: Coder {
                models: Models::new(),
                literal: EncodeCode::new(LITERAL_REBUILD),
                lz_offset: EncodeCode::new(LZ_OFFSET_REBUILD),
                length: EncodeCode::new(LENGTH_REBUILD),
                delta_offset: EncodeCode::new(DELTA_OFFSET_REBUILD),
                delta_power: EncodeCode::new(DELTA_POWER_REBUILD),
                work: HuffWork::new(),
            },
            mf: MatchFinder::new(NICE_LEN, MAX_DEPTH, MAX_OFFSET3, usize::MAX),
            lf: LcpFinder::new(NICE_LEN as u8, MAX_OFFSET3),
            df: DeltaFinder::default(),
            x86: X86Filter::new(),
            buf: Vec::new(),
            parser: Parser::default(),
            seg: Segment::default(),
        }
    }

    /// Compress one chunk; `None` if the result would not be smaller.
    pub fn compress(&mut self, input: &[u8]) -> Option<Vec<u8>> {
        let n = input.len();
        if !(4..=MAX_BUFFER_SIZE).contains(&n) {
            return None;
        }
        let mut data = std::mem::take(&mut self.buf);
        data.clear();
        data.extend_from_slice(input);
        self.x86.run(&mut data, false);
        let r = self.encode(&data);
        self.buf = data;
        r.filter(|c| c.len() < n)
    }

    fn encode(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let n = data.len();
        let slots = num_offset_slots(n);
        let c = &mut self.coder;
        c.models.reset();
        c.literal.reset(NUM_LITERAL_SYMS, &mut c.work);
        c.lz_offset.reset(slots, &mut c.work);
        c.length.reset(NUM_LENGTH_SYMS, &mut c.work);
        c.delta_offset.reset(slots, &mut c.work);
        c.delta_power.reset(NUM_POWER_SYMS, &mut c.work);
        // One finder's tables at a time: each is hundreds of MiB for a
        // large chunk.
        let mut mf = if (LCP_MIN..=LCP_MAX).contains(&n) && self.lf.reset(data) {
            self.mf.release();
            Finder::Lcp(&mut self.lf)
        } else {
            self.lf.release();
            self.mf.reset(n);
            Finder::Tree(&mut self.mf)
        };
        self.df.reset();

        let mut rc = RangeEncoder::new(Vec::with_capacity(n / 2 + 16));
        let mut bw = BitWriter {
            buf: 0,
            count: 0,
            units: Vec::with_capacity(n / 4 + 16),
        };
        let mut q = Queues {
            lz: LzQueue::new(),
            delta: DeltaQueue::new(),
        };
        let limit = n / 2 + 64; // give up once clearly not compressible
        let (coder, parser) = (&mut self.coder, &mut self.parser);
        // Encode one collected segment; false once the output is clearly
        // not going to be smaller.
        let mut emit = |s: &Segment| -> bool {
            emit_segment(coder, parser, data, s, &mut rc, &mut bw, &mut q);
            rc.out.len() + bw.units.len() * 2 <= limit.max(n)
        };
        if n >= COLLECT_THREAD_MIN {
            let (mf, df) = (&mut mf, &mut self.df);
            let whole = std::thread::scope(|sc| {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Segment>(COLLECT_AHEAD);
                let (back, spare) = std::sync::mpsc::channel::<Segment>();
                sc.spawn(move || {
                    let mut p = 0;
                    while p < n {
                        let mut s = spare.try_recv().unwrap_or_default();
                        p = collect(mf, df, data, p, &mut s);
                        // The parse gave up: stop.
                        if tx.send(s).is_err() {
                            break;
                        }
                    }
                });
                for s in rx {
                    if !emit(&s) {
                        return false;
                    }
                    let _ = back.send(s);
                }
                true
            });
            if !whole {
                return None;
            }
        } else {
            let mut seg = std::mem::take(&mut self.seg);
            let mut p = 0usize;
            let mut whole = true;
            while p < n {
                p = collect(&mut mf, &mut self.df, data, p, &mut seg);
                if !emit(&seg) {
                    whole = false;
                    break;
                }
            }
            self.seg = seg;
            if !whole {
                return None;
            }
        }
        bw.flush();
        let mut out = rc.finish();
        for u in bw.units.iter().rev() {
            out.extend_from_slice(&u.to_le_bytes());
        }
        Some(out)
    }
}

/// Parse and encode one collected segment, then its long match if it
/// ends with one.
fn emit_segment(
    coder: &mut Coder,
    parser: &mut Parser,
    data: &[u8],
    s: &Segment,
    rc: &mut RangeEncoder,
    bw: &mut BitWriter,
    q: &mut Queues,
) {
    let mut p = s.p;
    if s.seg > 0 {
        parser.parse(coder, data, s, *q);
        for &(len, item) in &parser.path {
            let len = len as usize;
            match item {
                Item::Lit => coder.literal(rc, bw, q, data[p]),
                Item::LzRep(k) => coder.lz_match(rc, bw, q, len, Some(k as usize), 0),
                Item::Lz(o) => coder.lz_match(rc, bw, q, len, None, o),
                Item::DeltaRep(_) | Item::Delta(..) => coder.delta_match(rc, bw, q, len, item),
            }
            p += len;
        }
    }
    if let Some((len, off)) = s.long {
        debug_assert_eq!(p, s.p + s.seg);
        // As a repeat if one of the queue's offsets gives the same length
        // (a repeat that would reach further is not followed: where the
        // next segment starts was decided by the collector).
        let vis = q.lz.visible();
        let mut rep = vis.iter().position(|&o| {
            let o = o as usize;
            o != 0 && o <= p && match_len(data, p - o, p, len) >= len
        });
        if rep.is_none() && vis.contains(&off) {
            rep = vis.iter().position(|&o| o == off);
        }
        coder.lz_match(rc, bw, q, len, rep, off);
    }
}

impl Parser {
    /// Cheapest path through `seg` positions from `base`, priced with the
    /// codes in force now; leaves it in `self.path` as (length, item).
    fn parse(&mut self, c: &Coder, data: &[u8], sg: &Segment, q: Queues) {
        let (base, seg) = (sg.p, sg.seg);
        let m = &c.models;
        let lits = &c.literal.lens;
        let lens = &c.length.lens;
        let offs = &c.lz_offset.lens;
        let doffs = &c.delta_offset.lens;
        let dpows = &c.delta_power.lens;
        let mut len_cost = [0u32; NICE_LEN + 1];
        for (l, slot) in len_cost.iter_mut().enumerate().skip(1) {
            let s = slot_of(l as u32, &LENGTH_BASE);
            *slot = 16 * (lens[s] as u32 + LENGTH_EXTRA[s] as u32);
        }
        self.nodes.clear();
        self.nodes.resize(
            seg + 1,
            Node {
                cost: u32::MAX,
                len: 0,
                item: Item::Lit,
            },
        );
        self.nodes[0].cost = 0;
        // Only the first state is needed up front: every later one is
        // written (from an earlier one) before it is read, so the array is
        // not refilled for each segment (2,049 copies of 128 bytes).
        let init = c.state(q);
        if self.states.len() < seg + 1 {
            self.states.resize(seg + 1, init);
        }
        self.states[0] = init;
        for i in 0..seg {
            if i > 0 {
                let nd = self.nodes[i];
                self.states[i] = self.states[i - nd.len as usize].after(nd.item);
            }
            let st = self.states[i];
            let c0 = self.nodes[i].cost;
            let pos = base + i;
            let nodes = &mut self.nodes;
            let mut relax = |to: usize, cost: u32, len: usize, item: Item| {
                let nd = &mut nodes[to];
                if cost < nd.cost {
                    *nd = Node {
                        cost,
                        len: len as u32,
                        item,
                    };
                }
            };
            relax(
                i + 1,
                c0 + bit_cost(&m.main, st.main, 0) + 16 * lits[data[pos] as usize] as u32,
                1,
                Item::Lit,
            );
            let maxl = (seg - i).min(NICE_LEN);
            if maxl < 2 {
                continue;
            }
            let is_match = c0 + bit_cost(&m.main, st.main, 1);
            let is_lz = is_match + bit_cost(&m.matc, st.matc, 0);
            let vis = st.q.visible();
            let rep_base = is_lz + bit_cost(&m.lz, st.lz, 1);
            for k in 0..3 {
                let o = vis[k] as usize;
                if o == 0 || o > pos || vis[..k].contains(&vis[k]) {
                    continue;
                }
                let l = match_len(data, pos - o, pos, maxl);
                if l < 2 {
                    continue;
                }
                let rc = rep_base + rep_cost(&m.lz_rep, &st.rep, k);
                for (ln, lc) in len_cost.iter().enumerate().take(l + 1).skip(2) {
                    relax(i + ln, rc + lc, ln, Item::LzRep(k as u8));
                }
            }
            let ex_base = is_lz + bit_cost(&m.lz, st.lz, 0);
            let mut done = 2usize;
            let (s, e) = (sg.starts[i] as usize, sg.starts[i + 1] as usize);
            for &(ml, off) in &sg.matches[s..e] {
                let ml = (ml as usize).min(maxl);
                if ml <= done {
                    continue;
                }
                if vis.contains(&off) {
                    done = ml;
                    continue;
                }
                let slot = slot_of(off, &OFFSET_BASE);
                let oc = ex_base + 16 * (offs[slot] as u32 + OFFSET_EXTRA[slot] as u32);
                for (ln, lc) in len_cost.iter().enumerate().take(ml + 1).skip(done + 1) {
                    relax(i + ln, oc + lc, ln, Item::Lz(off));
                }
                done = ml;
            }
            // Delta matches: the repeat queue's pairs, then the finder's.
            let is_delta = is_match + bit_cost(&m.matc, st.matc, 1);
            let dvis = st.dq.visible();
            let drep_base = is_delta + bit_cost(&m.delta, st.delta, 1);
            for k in 0..3 {
                let pr = dvis[k];
                let power = (pr >> 32) as u32;
                let (span, off) = (1usize << power, ((pr & 0xFFFF_FFFF) as usize) << power);
                if off + span > pos || dvis[..k].contains(&pr) {
                    continue;
                }
                let l = delta_len(data, pos, off, span, maxl);
                if l < 2 {
                    continue;
                }
                let rc = drep_base + rep_cost(&m.delta_rep, &st.drep, k);
                for (ln, lc) in len_cost.iter().enumerate().take(l + 1).skip(2) {
                    relax(i + ln, rc + lc, ln, Item::DeltaRep(k as u8));
                }
            }
            let (dl, power, raw) = sg.deltas[i];
            let dl = (dl as usize).min(maxl);
            if dl >= MIN_DELTA && !dvis.contains(&pair(power, raw)) {
                let slot = slot_of(raw, &OFFSET_BASE);
                let dc = is_delta
                    + bit_cost(&m.delta, st.delta, 0)
                    + 16 * (dpows[power as usize] as u32
                        + doffs[slot] as u32
                        + OFFSET_EXTRA[slot] as u32);
                for (ln, lc) in len_cost.iter().enumerate().take(dl + 1).skip(MIN_DELTA) {
                    relax(i + ln, dc + lc, ln, Item::Delta(power, raw));
                }
            }
        }
        self.path.clear();
        let mut i = seg;
        while i > 0 {
            let nd = self.nodes[i];
            self.path.push((nd.len, nd.item));
            i -= nd.len as usize;
        }
        self.path.reverse();
    }
}

thread_local! {
    static ENCODER: std::cell::RefCell<Encoder> = std::cell::RefCell::new(Encoder::new());
}

/// Compress one chunk with a per-thread reusable [`Encoder`]; `None` when
/// the result would not be strictly smaller than the input.
pub fn compress(input: &[u8]) -> Option<Vec<u8>> {
    ENCODER.with(|e| match e.try_borrow_mut() {
        Ok(mut e) => e.compress(input),
        Err(_) => Encoder::new().compress(input),
    })
}
