use super::CodecError;

// LZMS, the chunk codec of solid WIM / ESD resources (WIM version 0xE00).
//
// Format summary (learned from public prose descriptions of the format; no
// official specification exists):
//
// * A compressed chunk is a sequence of 16-bit little-endian units read from
//   both ends. From the front, an adaptive binary range decoder supplies the
//   item-type decisions; from the back, a bitstream (MSB first within each
//   unit) supplies Huffman symbols and verbatim "extra" bits.
// * Each decision class has its own table of probability entries indexed by
//   the last 4, 5 or 6 decisions of that class. An entry's probability of a
//   0 is the number of zeros among the last 64 bits coded with it (clamped
//   to 1..=63, out of 64).
// * Five adaptive Huffman codes (literal, LZ offset slot, length slot, delta
//   offset slot, delta power) start with all frequencies 1 and are rebuilt
//   from the running frequencies every 1024 or 512 symbols, after which the
//   frequencies are halved (`f / 2 + 1`). The code must be exactly the one a
//   priority-queue Huffman construction yields when ties prefer leaves, in
//   canonical form, so encoder and decoder stay in lock step.
// * Items are literals, LZ matches and "delta" matches; both match kinds
//   have a 3-entry repeat queue whose front insertion is delayed by one
//   item.
// * After decoding, an x86 post-filter turns absolute call/RIP-relative
//   targets back into relative ones.

/// Largest uncompressed buffer the format can describe (largest offset + 1).
pub const MAX_BUFFER_SIZE: usize = 1_180_427_429;

const NUM_LITERAL_SYMS: usize = 256;
const NUM_LENGTH_SYMS: usize = 54;
const NUM_POWER_SYMS: usize = 8;
const MAX_OFFSET_SYMS: usize = 799;
const MAX_SYMS: usize = 799;
const MAX_CODEWORD_LEN: usize = 15;

const LITERAL_REBUILD: u32 = 1024;
const LZ_OFFSET_REBUILD: u32 = 1024;
const LENGTH_REBUILD: u32 = 512;
const DELTA_OFFSET_REBUILD: u32 = 1024;
const DELTA_POWER_REBUILD: u32 = 512;

const X86_ID_WINDOW: i64 = 65535;
const X86_MAX_TRANSLATION_OFFSET: i64 = 1023;

/// Number of extra offset bits per offset slot, as (bits, run length).
const OFFSET_EXTRA_RUNS: [(u8, u16); 21] = [
    (0, 8),
    (2, 9),
    (3, 7),
    (4, 10),
    (5, 15),
    (6, 15),
    (7, 20),
    (8, 20),
    (9, 30),
    (10, 33),
    (11, 40),
    (12, 42),
    (13, 45),
    (14, 60),
    (15, 73),
    (16, 80),
    (17, 85),
    (18, 95),
    (19, 105),
    (20, 6),
    (30, 1),
];

/// Number of extra length bits per length slot, as (bits, run length).
const LENGTH_EXTRA_RUNS: [(u8, u16); 13] = [
    (0, 26),
    (1, 4),
    (2, 6),
    (3, 4),
    (4, 5),
    (5, 2),
    (6, 1),
    (7, 1),
    (8, 1),
    (9, 1),
    (10, 1),
    (16, 1),
    (30, 1),
];

const fn expand_extra<const N: usize>(runs: &[(u8, u16)]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut k = 0;
    let mut r = 0;
    while r < runs.len() {
        let mut c = 0;
        while c < runs[r].1 {
            out[k] = runs[r].0;
            k += 1;
            c += 1;
        }
        r += 1;
    }
    out
}

/// Slot bases follow from the extra-bit counts: each slot starts where the
/// previous one's range ends, and the first value is 1.
const fn bases<const N: usize, const M: usize>(extra: &[u8; N]) -> [u32; M] {
    let mut out = [0u32; M];
    out[0] = 1;
    let mut i = 0;
    while i < N {
        out[i + 1] = out[i] + (1u32 << extra[i]);
        i += 1;
    }
    out
}

static OFFSET_EXTRA: [u8; MAX_OFFSET_SYMS] = expand_extra(&OFFSET_EXTRA_RUNS);
static OFFSET_BASE: [u32; MAX_OFFSET_SYMS + 1] = bases(&OFFSET_EXTRA);
static LENGTH_EXTRA: [u8; NUM_LENGTH_SYMS] = expand_extra(&LENGTH_EXTRA_RUNS);
static LENGTH_BASE: [u32; NUM_LENGTH_SYMS + 1] = bases(&LENGTH_EXTRA);

/// Slot whose range contains `value` (value >= 1).
fn slot_of(value: u32, base: &[u32]) -> usize {
    // partition_point: number of bases <= value; slot is one less.
    base.partition_point(|&b| b <= value).saturating_sub(1)
}

/// Number of offset slots (alphabet size of both offset codes) for a buffer
/// of `size` bytes: just enough slots to express offset `size - 1`.
fn num_offset_slots(size: usize) -> usize {
    if size < 2 {
        return 0;
    }
    let v = (size - 1).min(u32::MAX as usize) as u32;
    (1 + slot_of(v, &OFFSET_BASE)).min(MAX_OFFSET_SYMS)
}

// ---------------------------------------------------------------------------
// Adaptive probabilities
// ---------------------------------------------------------------------------

/// One adaptive probability: the last 64 bits coded with it and how many of
/// them were zero.
#[derive(Clone, Copy)]
struct Prob {
    /// Zeros among the last 64 bits, clamped to 1..=63 (0/64 and 64/64 are
    /// not usable probabilities). Kept pre-clamped so the range coder's
    /// critical path is just a load and a multiply.
    p: u32,
    zeros: u32,
    recent: u64,
}

const PROB_INIT: Prob = Prob {
    p: 48,
    zeros: 48,
    recent: 0x5555_5555,
};

impl Prob {
    /// Probability (out of 64) that the next bit is 0.
    #[inline(always)]
    fn p(&self) -> u32 {
        self.p
    }

    #[inline(always)]
    fn update(&mut self, bit: u32) {
        self.zeros = self.zeros + (self.recent >> 63) as u32 - bit;
        self.recent = (self.recent << 1) | bit as u64;
        // Clamp 0..=64 to 1..=63 without compares.
        let z = self.zeros;
        self.p = z + u32::from(z == 0) - (z >> 6);
    }
}

/// All decision classes with their context states. Shared by encoder and
/// decoder so both evolve identically.
#[derive(Clone)]
struct Models {
    main_state: usize,
    main: [Prob; 16],
    match_state: usize,
    matc: [Prob; 32],
    lz_state: usize,
    lz: [Prob; 64],
    lz_rep_state: [usize; 2],
    lz_rep: [[Prob; 64]; 2],
    // The decoder keeps its context states in locals; only the encoder
    // reads these two.
    #[allow(dead_code)]
    delta_state: usize,
    delta: [Prob; 64],
    #[allow(dead_code)]
    delta_rep_state: [usize; 2],
    delta_rep: [[Prob; 64]; 2],
}

impl Models {
    fn new() -> Self {
        Models {
            main_state: 0,
            main: [PROB_INIT; 16],
            match_state: 0,
            matc: [PROB_INIT; 32],
            lz_state: 0,
            lz: [PROB_INIT; 64],
            lz_rep_state: [0; 2],
            lz_rep: [[PROB_INIT; 64]; 2],
            delta_state: 0,
            delta: [PROB_INIT; 64],
            delta_rep_state: [0; 2],
            delta_rep: [[PROB_INIT; 64]; 2],
        }
    }

    fn reset(&mut self) {
        *self = Self::new();
    }
}

// ---------------------------------------------------------------------------
// Huffman code construction (shared by encoder and decoder)
// ---------------------------------------------------------------------------

/// Scratch space for building codes; reused across rebuilds.
struct HuffWork {
    /// Symbols sorted by (frequency, symbol), packed as freq << 10 | sym,
    /// plus one sentinel slot.
    sorted: [u32; MAX_SYMS + 1],
    /// Internal node frequencies, then reused for depths.
    node: [u32; MAX_SYMS],
    /// Internal node parents.
    parent: [u16; MAX_SYMS],
    buckets: [u32; 256],
    /// Number of symbols given each codeword length by the last
    /// `build_lengths`.
    len_counts: [u32; MAX_CODEWORD_LEN + 1],
}

impl HuffWork {
    fn new() -> Box<Self> {
        Box::new(HuffWork {
            sorted: [0; MAX_SYMS + 1],
            node: [0; MAX_SYMS],
            parent: [0; MAX_SYMS],
            buckets: [0; 256],
            len_counts: [0; MAX_CODEWORD_LEN + 1],
        })
    }
}

/// Compute codeword lengths for `freqs` (all nonzero, at most 2050) the way
/// the format requires: symbols sorted by (freq, symbol), two-queue Huffman
/// construction preferring leaves on ties, lengths handed out longest-first
/// in sorted order. Depths beyond 15 (which LZMS frequencies cannot reach)
/// are folded with the usual "move to the deepest shorter level" rule.
fn build_lengths(freqs: &[u32], lens: &mut [u8], w: &mut HuffWork) {
    let n = freqs.len().min(MAX_SYMS).min(lens.len());
    if n == 0 {
        return;
    }
    if n == 1 {
        lens[0] = 1;
        w.len_counts = [0; MAX_CODEWORD_LEN + 1];
        w.len_counts[1] = 1;
        return;
    }
    // Counting sort on min(freq, 127), then sort the high bucket. Two
    // interleaved histograms halve the store-to-load chains on runs of
    // equal frequencies.
    const NB: usize = 128;
    w.buckets.fill(0);
    {
        let (h0, h1) = w.buckets.split_at_mut(NB);
        let mut pairs = freqs[..n].chunks_exact(2);
        for p in &mut pairs {
            h0[(p[0] as usize).min(NB - 1)] += 1;
            h1[(p[1] as usize).min(NB - 1)] += 1;
        }
        for &f in pairs.remainder() {
            h0[(f as usize).min(NB - 1)] += 1;
        }
        let mut acc = 0u32;
        for (a, &b) in h0.iter_mut().zip(h1.iter()) {
            let c = *a + b;
            *a = acc;
            acc += c;
        }
    }
    let nb = NB;
    let high_start = w.buckets[nb - 1] as usize;
    for (sym, &f) in freqs[..n].iter().enumerate() {
        let b = (f as usize).min(nb - 1);
        let idx = w.buckets[b] as usize;
        w.buckets[b] += 1;
        w.sorted[idx] = (f.min(0x3F_FFFF) << 10) | sym as u32;
    }
    w.sorted[high_start..n].sort_unstable();

    // Two-queue construction. Leaves are w.sorted[0..n] (freq in high bits),
    // internal nodes are created in nondecreasing frequency order.
    // Branch-free merge: each step takes the smaller queue head, a leaf on
    // ties. Exhausted queues read as u32::MAX (node sentinel written at
    // node[e] before each step). Node sums cannot reach u32::MAX: at most
    // 799 leaves of at most 2^22 each.
    let mut i = 0usize; // next leaf
    let mut b = 0usize; // next parentless internal node
    for e in 0..n - 1 {
        w.node[e] = u32::MAX;
        let mut sum = 0u32;
        for _ in 0..2 {
            let lf = (w.sorted[i] >> 10) | ((i >= n) as u32).wrapping_neg();
            let nf = w.node[b];
            let leaf = lf <= nf;
            w.parent[b] = e as u16;
            sum = sum.wrapping_add(if leaf { lf } else { nf });
            i += leaf as usize;
            b += (!leaf) as usize;
        }
        w.node[e] = sum;
    }

    // Depths of internal nodes (root is n - 2).
    let root = n - 2;
    w.node[root] = 0;
    let mut max_depth = 0u32;
    for k in (0..root).rev() {
        let depth = w.node[w.parent[k] as usize] + 1;
        w.node[k] = depth;
        max_depth = max_depth.max(depth);
    }

    // Leaf counts per length.
    let mut counts = [0u32; MAX_CODEWORD_LEN + 2];
    if (max_depth as usize) < MAX_CODEWORD_LEN {
        // No folding needed: leaves at depth L = 2 * (internal nodes at
        // depth L - 1) - (internal nodes at depth L). Depths come in runs,
        // so count runs instead of bumping a histogram per node.
        let mut inodes = [0u32; MAX_CODEWORD_LEN + 1];
        let mut cur = 0usize;
        let mut run = 1u32; // the root
        for k in (0..root).rev() {
            let d = w.node[k] as usize;
            if d != cur {
                inodes[cur] += run;
                cur = d;
                run = 0;
            }
            run += 1;
        }
        inodes[cur] += run;
        for len in 1..=MAX_CODEWORD_LEN {
            counts[len] = (2 * inodes[len - 1]).saturating_sub(inodes[len]);
        }
    } else {
        counts[1] = 2;
        for k in (0..root).rev() {
            let mut len = w.node[k] as usize;
            if len >= MAX_CODEWORD_LEN {
                len = MAX_CODEWORD_LEN;
                loop {
                    len -= 1;
                    if counts[len] != 0 || len == 1 {
                        break;
                    }
                }
            }
            // Saturating: frequencies bounded by the rebuild schedule keep
            // the tree shallower than 15, but never trust that on hostile
            // input.
            counts[len] = counts[len].saturating_sub(1);
            counts[len + 1] += 2;
        }
    }

    // Hand out lengths: longest to the least frequent.
    let mut k = 0usize;
    w.len_counts = [0; MAX_CODEWORD_LEN + 1];
    for len in (1..=MAX_CODEWORD_LEN).rev() {
        let c = (counts[len] as usize).min(n - k);
        w.len_counts[len] = c as u32;
        for &v in &w.sorted[k..k + c] {
            lens[(v & 0x3FF) as usize] = len as u8;
        }
        k += c;
    }
}

// ---------------------------------------------------------------------------
// Decoder side: adaptive Huffman code with a lookup table
// ---------------------------------------------------------------------------

/// Table entry layout: bits 0..8 = bits to consume, bits 8..12 = subtable
/// index bits, bit 12 = subtable pointer, bits 16..32 = symbol or subtable
/// start. A symbol of 0xFFFF marks an unused codeword.
const ENTRY_SUB: u32 = 1 << 12;
const ENTRY_INVALID: u32 = 0xFFFF << 16;

struct DecodeCode {
    num_syms: usize,
    rebuild_freq: u32,
    table_bits: u32,
    freqs: [u32; MAX_SYMS],
    lens: [u8; MAX_SYMS],
    table: Vec<u32>,
}

impl DecodeCode {
    fn new(table_bits: u32, rebuild_freq: u32) -> Self {
        DecodeCode {
            num_syms: 0,
            rebuild_freq,
            table_bits,
            freqs: [1; MAX_SYMS],
            lens: [0; MAX_SYMS],
            table: vec![ENTRY_INVALID; (1 << table_bits) + (1 << MAX_CODEWORD_LEN)],
        }
    }

    fn reset(&mut self, num_syms: usize, w: &mut HuffWork) {
        self.num_syms = num_syms.min(MAX_SYMS);
        self.freqs[..self.num_syms].fill(1);
        self.build(w);
    }

    fn build(&mut self, w: &mut HuffWork) {
        let n = self.num_syms;
        if n == 0 {
            return;
        }
        build_lengths(&self.freqs[..n], &mut self.lens[..n], w);
        self.build_table(w);
    }

    /// Fill the lookup table from `lens` (canonical code).
    fn build_table(&mut self, w: &mut HuffWork) {
        let n = self.num_syms;
        let tb = self.table_bits as usize;
        // Sort symbols by (len, sym) into w.parent (reused as u16 list).
        let mut count = [0usize; MAX_CODEWORD_LEN + 2];
        for (c, &v) in count.iter_mut().zip(w.len_counts.iter()) {
            *c = v as usize;
        }
        let mut start = [0usize; MAX_CODEWORD_LEN + 2];
        let mut acc = 0;
        for len in 1..=MAX_CODEWORD_LEN {
            start[len] = acc;
            acc += count[len];
        }
        let total = acc;
        for (s, &l) in self.lens[..n].iter().enumerate() {
            let l = l as usize;
            if (1..=MAX_CODEWORD_LEN).contains(&l) {
                w.parent[start[l]] = s as u16;
                start[l] += 1;
            }
        }
        // Reconstruct the sorted order's lengths on the fly while walking.
        let table = &mut self.table;
        let main_size = 1usize << tb;
        let mut code: usize = 0; // canonical codeword of current symbol
        let mut cur_len: usize = 1;
        let mut k = 0usize;
        let mut main_pos = 0usize;
        // Short codes: contiguous fill of the main table.
        while k < total {
            let sym = w.parent[k] as usize;
            let len = self.lens[sym] as usize;
            if len > tb {
                break;
            }
            code <<= len - cur_len;
            cur_len = len;
            let span = 1usize << (tb - len);
            let entry = ((sym as u32) << 16) | len as u32;
            if let Some(dst) = table.get_mut(main_pos..main_pos + span) {
                dst.fill(entry);
            }
            main_pos += span;
            code += 1;
            k += 1;
        }
        // Long codes: grouped by their first `tb` bits into subtables.
        let mut sub_next = main_size;
        while k < total {
            let sym = w.parent[k] as usize;
            let len = self.lens[sym] as usize;
            code <<= len - cur_len;
            cur_len = len;
            let prefix = code >> (len - tb);
            // Group extent: following codes with the same prefix.
            let mut j = k;
            let mut c2 = code;
            let mut l2 = len;
            let mut max_len = len;
            while j < total {
                let lj = self.lens[w.parent[j] as usize] as usize;
                c2 <<= lj - l2;
                l2 = lj;
                if c2 >> (lj - tb) != prefix {
                    break;
                }
                max_len = lj;
                c2 += 1;
                j += 1;
            }
            let sub_bits = max_len - tb;
            let sub_start = sub_next;
            sub_next += 1 << sub_bits;
            if let Some(e) = table.get_mut(prefix) {
                *e = ((sub_start as u32) << 16) | ENTRY_SUB | ((sub_bits as u32) << 8) | tb as u32;
            }
            main_pos = main_pos.max(prefix + 1);
            while k < j {
                let sym = w.parent[k] as usize;
                let len = self.lens[sym] as usize;
                code <<= len - cur_len;
                cur_len = len;
                let rem = len - tb;
                let low = code & ((1 << rem) - 1);
                let span = 1usize << (sub_bits - rem);
                let at = sub_start + (low << (sub_bits - rem));
                let entry = ((sym as u32) << 16) | rem as u32;
                if let Some(dst) = table.get_mut(at..at + span) {
                    dst.fill(entry);
                }
                code += 1;
                k += 1;
            }
        }
        // Only an incomplete code (a one-symbol alphabet) leaves holes.
        if main_pos < main_size {
            if let Some(dst) = table.get_mut(main_pos..main_size) {
                dst.fill(ENTRY_INVALID);
            }
        }
    }

    #[inline(never)]
    fn rebuild(&mut self, w: &mut HuffWork) {
        self.build(w);
        for f in &mut self.freqs[..self.num_syms] {
            *f = (*f >> 1) + 1;
        }
    }

    /// Decode one symbol; caller guarantees at least 15 bits are buffered.
    #[inline(always)]
    fn decode(
        &mut self,
        bits: &mut BitReader,
        left: &mut u32,
        w: &mut HuffWork,
    ) -> Result<usize, CodecError> {
        let tb = self.table_bits;
        let mut e = self.table[(bits.buf >> (64 - tb)) as usize & ((1 << tb) - 1)];
        if e & ENTRY_SUB != 0 {
            bits.consume(tb);
            let sub_bits = (e >> 8) & 0xF;
            let idx = (e >> 16) as usize + (bits.buf >> (64 - sub_bits)) as usize;
            e = match self.table.get(idx) {
                Some(&v) => v,
                None => return Err(CodecError::Corrupt("bad Huffman table")),
            };
        }
        bits.consume(e & 0xFF);
        let sym = (e >> 16) as usize;
        // The table only holds symbols below num_syms, plus the
        // out-of-range marker of unused codewords.
        match self.freqs.get_mut(sym) {
            Some(f) => *f += 1,
            None => return Err(CodecError::Corrupt("invalid Huffman codeword")),
        }
        *left -= 1;
        if *left == 0 {
            self.rebuild(w);
            *left = self.rebuild_freq;
        }
        Ok(sym)
    }
}

// ---------------------------------------------------------------------------
// Bit sources
// ---------------------------------------------------------------------------

/// Backwards bitstream: 16-bit LE units from the end, MSB first. Past the
/// start of the buffer it supplies zeros (as the reference decoder does).
///
/// A valid stream never *consumes* those padding bits (everything consumed
/// was written by the encoder inside the buffer); only look-ahead may read
/// them. `pad` counts padding bits in the buffer (always its lowest valid
/// bits), and a refill that finds `left < pad` flags `overrun`. This bounds
/// the work on hostile input: every item costs at least one real bit.
struct BitReader {
    buf: u64,
    left: u32,
    pos: usize,
    pad: u32,
    overrun: bool,
}

impl BitReader {
    #[inline(always)]
    fn ensure(&mut self, n: u32, input: &[u8]) {
        if self.left < n {
            self.refill(input);
        }
    }

    #[inline(always)]
    fn refill(&mut self, input: &[u8]) {
        if self.pos >= 8 {
            if let Some(b) = input.get(self.pos - 8..self.pos) {
                if let Ok(a) = <[u8; 8]>::try_from(b) {
                    let v = u64::from_le_bytes(a);
                    let c = (64 - self.left) / 16; // 2..=4 since left < 32
                    let w = v >> (64 - 16 * c);
                    self.buf |= w << (64 - 16 * c - self.left);
                    self.left += 16 * c;
                    self.pos -= 2 * c as usize;
                    return;
                }
            }
        }
        if self.left < self.pad {
            self.overrun = true;
        }
        let before = self.pos;
        let old_left = self.left;
        (self.buf, self.left, self.pos) = Self::refill_slow(self.buf, self.left, self.pos, input);
        let real = ((before - self.pos) * 8) as u32;
        self.pad = self.pad.min(old_left) + (self.left - old_left) - real;
    }

    /// Unit-at-a-time refill near the start of the buffer. Takes and
    /// returns the state by value so the hot reader never has its address
    /// taken (which would pin it to the stack).
    #[inline(never)]
    fn refill_slow(mut buf: u64, mut left: u32, mut pos: usize, input: &[u8]) -> (u64, u32, usize) {
        while left < 32 {
            let unit = if pos >= 2 {
                let u = match input.get(pos - 2..pos) {
                    Some(s) => u16::from_le_bytes([s[0], s[1]]),
                    None => 0,
                };
                pos -= 2;
                u
            } else {
                0
            };
            buf |= (unit as u64) << (48 - left);
            left += 16;
        }
        (buf, left, pos)
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.buf <<= n;
        self.left -= n;
    }

    /// Read `n` (0..=30) verbatim bits; caller ensured they are buffered.
    #[inline(always)]
    fn take(&mut self, n: u32) -> u32 {
        let v = ((self.buf >> 1) >> (63 - n)) as u32;
        self.consume(n);
        v
    }
}

/// Forward range decoder over 16-bit LE units; zeros past the end.
struct RangeDecoder {
    range: u32,
    code: u32,
    pos: usize,
}

impl RangeDecoder {
    #[inline(always)]
    fn bit(&mut self, p: &mut Prob, input: &[u8]) -> u32 {
        if self.range <= 0xFFFF {
            self.range <<= 16;
            let unit = match input.get(self.pos..self.pos + 2) {
                Some(s) => u16::from_le_bytes([s[0], s[1]]) as u32,
                None => 0,
            };
            self.pos += 2;
            self.code = (self.code << 16) | unit;
        }
        let bound = (self.range >> 6) * p.p();
        let bit = if self.code < bound {
            self.range = bound;
            0
        } else {
            self.range -= bound;
            self.code -= bound;
            1
        };
        p.update(bit);
        bit
    }
}

#[inline(always)]
fn decide<const N: usize>(
    rd: &mut RangeDecoder,
    probs: &mut [Prob; N],
    state: &mut usize,
    input: &[u8],
) -> u32 {
    let bit = rd.bit(&mut probs[*state & (N - 1)], input);
    *state = ((*state << 1) | bit as usize) & (N - 1);
    bit
}

// ---------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------

/// Reusable LZMS decoder. Holds roughly 700 KiB of tables so that decoding a
/// chunk allocates nothing.
pub struct Decoder {
    models: Models,
    literal: DecodeCode,
    lz_offset: DecodeCode,
    length: DecodeCode,
    delta_offset: DecodeCode,
    delta_power: DecodeCode,
    work: Box<HuffWork>,
    x86: X86Filter,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// Allocate a decoder (all tables, once).
    pub fn new() -> Self {
        Decoder {
            models: Models::new(),
            literal: DecodeCode::new(10, LITERAL_REBUILD),
            lz_offset: DecodeCode::new(10, LZ_OFFSET_REBUILD),
            length: DecodeCode::new(9, LENGTH_REBUILD),
            delta_offset: DecodeCode::new(9, DELTA_OFFSET_REBUILD),
            delta_power: DecodeCode::new(6, DELTA_POWER_REBUILD),
            work: HuffWork::new(),
            x86: X86Filter::new(),
        }
    }

    /// Decompress one LZMS chunk into `output`, whose length is the exact
    /// uncompressed size.
    pub fn decompress(&mut self, input: &[u8], output: &mut [u8]) -> Result<(), CodecError> {
        if output.len() > MAX_BUFFER_SIZE {
            return Err(CodecError::Unsupported(
                "LZMS chunk larger than the format allows",
            ));
        }
        if input.len() < 4 {
            return Err(CodecError::Truncated);
        }
        if !input.len().is_multiple_of(2) {
            return Err(CodecError::Corrupt("LZMS data must be whole 16-bit units"));
        }
        let slots = num_offset_slots(output.len());
        self.models.reset();
        let w = &mut self.work;
        self.literal.reset(NUM_LITERAL_SYMS, w);
        self.lz_offset.reset(slots, w);
        self.length.reset(NUM_LENGTH_SYMS, w);
        self.delta_offset.reset(slots, w);
        self.delta_power.reset(NUM_POWER_SYMS, w);
        self.decode_items(input, output)?;
        self.x86.undo(output);
        Ok(())
    }

    fn decode_items(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
        let n = out.len();
        let m = &mut self.models;
        let w = &mut *self.work;
        let mut rd = RangeDecoder {
            range: 0xFFFF_FFFF,
            code: (u32::from(u16::from_le_bytes([input[0], input[1]])) << 16)
                | u32::from(u16::from_le_bytes([input[2], input[3]])),
            pos: 4,
        };
        let mut bits = BitReader {
            buf: 0,
            left: 0,
            pos: input.len(),
            pad: 0,
            overrun: false,
        };

        let mut lz_reps: [u32; 4] = [1, 2, 3, 4];
        let mut lz_pending: u32 = 0;
        let mut lz_pending_end: usize = usize::MAX;
        let mut delta_reps: [u64; 4] = [1, 2, 3, 4];
        let mut delta_pending: u64 = 0;
        let mut delta_pending_end: usize = usize::MAX;

        // Context states live in locals (registers) for the whole chunk;
        // they start at zero for every chunk.
        let (mut st_main, mut st_match, mut st_lz, mut st_delta) = (0usize, 0usize, 0usize, 0usize);
        let (mut st_lzr0, mut st_lzr1, mut st_dr0, mut st_dr1) = (0usize, 0usize, 0usize, 0usize);
        let mut lit_left = LITERAL_REBUILD;
        let mut lzo_left = LZ_OFFSET_REBUILD;
        let mut len_left = LENGTH_REBUILD;
        let mut dp_left = DELTA_POWER_REBUILD;
        let mut do_left = DELTA_OFFSET_REBUILD;

        let mut pos = 0usize;
        while pos < n {
            if bits.overrun {
                return Err(CodecError::Truncated);
            }
            if decide(&mut rd, &mut m.main, &mut st_main, input) == 0 {
                bits.ensure(MAX_CODEWORD_LEN as u32, input);
                let sym = self.literal.decode(&mut bits, &mut lit_left, w)?;
                out[pos] = sym as u8;
                pos += 1;
                continue;
            }
            if decide(&mut rd, &mut m.matc, &mut st_match, input) == 0 {
                // LZ match.
                if lz_pending != 0 && pos != lz_pending_end {
                    lz_reps = [lz_pending, lz_reps[0], lz_reps[1], lz_reps[2]];
                    lz_pending = 0;
                }
                let offset;
                if decide(&mut rd, &mut m.lz, &mut st_lz, input) == 0 {
                    bits.ensure(MAX_CODEWORD_LEN as u32, input);
                    let slot = self.lz_offset.decode(&mut bits, &mut lzo_left, w)?;
                    bits.ensure(30, input);
                    offset = OFFSET_BASE[slot] + bits.take(OFFSET_EXTRA[slot] as u32);
                } else if decide(&mut rd, &mut m.lz_rep[0], &mut st_lzr0, input) == 0 {
                    offset = lz_reps[0];
                    lz_reps = [lz_reps[1], lz_reps[2], lz_reps[3], lz_reps[3]];
                } else if decide(&mut rd, &mut m.lz_rep[1], &mut st_lzr1, input) == 0 {
                    offset = lz_reps[1];
                    lz_reps = [lz_reps[0], lz_reps[2], lz_reps[3], lz_reps[3]];
                } else {
                    offset = lz_reps[2];
                    lz_reps = [lz_reps[0], lz_reps[1], lz_reps[3], lz_reps[3]];
                }
                if lz_pending != 0 {
                    lz_reps = [lz_pending, lz_reps[0], lz_reps[1], lz_reps[2]];
                }
                lz_pending = offset;

                bits.ensure(MAX_CODEWORD_LEN as u32, input);
                let lslot = self.length.decode(&mut bits, &mut len_left, w)?;
                let mut length = LENGTH_BASE[lslot] as usize;
                let eb = LENGTH_EXTRA[lslot] as u32;
                if eb != 0 {
                    bits.ensure(30, input);
                    length += bits.take(eb) as usize;
                }
                let offset = offset as usize;
                if length > n - pos {
                    return Err(CodecError::Corrupt("match runs past end of chunk"));
                }
                if offset > pos {
                    return Err(CodecError::Corrupt("match offset before start of chunk"));
                }
                lz_copy(out, pos, offset, length);
                pos += length;
                lz_pending_end = pos;
            } else {
                // Delta match.
                if delta_pending != 0 && pos != delta_pending_end {
                    delta_reps = [delta_pending, delta_reps[0], delta_reps[1], delta_reps[2]];
                    delta_pending = 0;
                }
                let pair;
                if decide(&mut rd, &mut m.delta, &mut st_delta, input) == 0 {
                    bits.ensure(MAX_CODEWORD_LEN as u32, input);
                    let power = self.delta_power.decode(&mut bits, &mut dp_left, w)? as u64;
                    bits.ensure(MAX_CODEWORD_LEN as u32, input);
                    let slot = self.delta_offset.decode(&mut bits, &mut do_left, w)?;
                    bits.ensure(30, input);
                    let raw = OFFSET_BASE[slot] + bits.take(OFFSET_EXTRA[slot] as u32);
                    pair = (power << 32) | raw as u64;
                } else if decide(&mut rd, &mut m.delta_rep[0], &mut st_dr0, input) == 0 {
                    pair = delta_reps[0];
                    delta_reps = [delta_reps[1], delta_reps[2], delta_reps[3], delta_reps[3]];
                } else if decide(&mut rd, &mut m.delta_rep[1], &mut st_dr1, input) == 0 {
                    pair = delta_reps[1];
                    delta_reps = [delta_reps[0], delta_reps[2], delta_reps[3], delta_reps[3]];
                } else {
                    pair = delta_reps[2];
                    delta_reps = [delta_reps[0], delta_reps[1], delta_reps[3], delta_reps[3]];
                }
                if delta_pending != 0 {
                    delta_reps = [delta_pending, delta_reps[0], delta_reps[1], delta_reps[2]];
                }
                delta_pending = pair;

                bits.ensure(MAX_CODEWORD_LEN as u32, input);
                let lslot = self.length.decode(&mut bits, &mut len_left, w)?;
                let mut length = LENGTH_BASE[lslot] as usize;
                let eb = LENGTH_EXTRA[lslot] as u32;
                if eb != 0 {
                    bits.ensure(30, input);
                    length += bits.take(eb) as usize;
                }
                let power = (pair >> 32) as u32;
                let raw = pair & 0xFFFF_FFFF;
                let span = 1u64 << power;
                let offset = raw << power;
                if offset + span > pos as u64 {
                    return Err(CodecError::Corrupt("delta match before start of chunk"));
                }
                if length > n - pos {
                    return Err(CodecError::Corrupt("match runs past end of chunk"));
                }
                let offset = offset as usize;
                let span = span as usize;
                for i in pos..pos + length {
                    out[i] = out[i - offset]
                        .wrapping_add(out[i - span])
                        .wrapping_sub(out[i - offset - span]);
                }
                pos += length;
                delta_pending_end = pos;
            }
        }
        Ok(())
    }
}

/// Copy `len` bytes from `pos - offset` to `pos` with LZ77 overlap semantics.
/// Caller guarantees 1 <= offset <= pos and pos + len <= out.len().
#[inline(always)]
fn lz_copy(out: &mut [u8], pos: usize, offset: usize, len: usize) {
    let src = pos - offset;
    if offset >= 16 && len <= 32 && pos + 32 <= out.len() {
        // Fixed-size chunks compile to plain loads/stores; with offset >= 16
        // each 16-byte source lies wholly before its destination, so this
        // equals a byte-by-byte copy. Bytes past `len` are rewritten later.
        out.copy_within(src..src + 16, pos);
        if len > 16 {
            out.copy_within(src + 16..src + 32, pos + 16);
        }
        return;
    }
    if offset >= len {
        out.copy_within(src..src + len, pos);
    } else if offset == 1 {
        let b = out[src];
        out[pos..pos + len].fill(b);
    } else {
        // Grow the copied prefix in whole periods so source and destination
        // of each memmove never overlap.
        let mut done = 0;
        while done < len {
            let chunk = (done + offset).min(len - done);
            out.copy_within(src..src + chunk, pos + done);
            done += chunk;
        }
    }
}

thread_local! {
    static DECODER: std::cell::RefCell<Decoder> = std::cell::RefCell::new(Decoder::new());
}

/// Decompress one LZMS chunk using a per-thread reusable [`Decoder`].
pub fn decompress(input: &[u8], output: &mut [u8]) -> Result<(), CodecError> {
    DECODER.with(|d| match d.try_borrow_mut() {
        Ok(mut d) => d.decompress(input, output),
        Err(_) => Decoder::new().decompress(input, output),
    })
}

// ---------------------------------------------------------------------------
// x86 filter
// ---------------------------------------------------------------------------

/// Bytes that may start a translated instruction.
static X86_OPCODE: [bool; 256] = {
    let mut t = [false; 256];
    t[0x48] = true;
    t[0x4C] = true;
    t[0xE8] = true;
    t[0xE9] = true;
    t[0xF0] = true;
    t[0xFF] = true;
    t
};

/// State of the x86 address translation: for each low 16 bits of a target
/// address, the (global) position where it was last referenced. Positions
/// are offset by `base`, which advances past every processed buffer by more
/// than the identification window, so stale entries from earlier chunks can
/// never match and the 512 KiB table never needs clearing.
struct X86Filter {
    last_target: Vec<u64>,
    base: u64,
}

/// Mask with the high bit set in each byte of `v` that may start a
/// translated instruction (0x48, 0x4C, 0xE8, 0xE9, 0xF0, 0xFF). Bytes above
/// a true hit may be flagged falsely, but the lowest flagged byte is always
/// a true hit, and no hit is ever missed.
#[inline(always)]
fn opcode_mask(v: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    #[inline(always)]
    fn zero_byte(x: u64) -> u64 {
        x.wrapping_sub(ONES) & !x & HIGH
    }
    let rex = (v & 0xFBFB_FBFB_FBFB_FBFB) ^ 0x4848_4848_4848_4848;
    let call = (v & 0xFEFE_FEFE_FEFE_FEFE) ^ 0xE8E8_E8E8_E8E8_E8E8;
    let lock = v ^ 0xF0F0_F0F0_F0F0_F0F0;
    let grp = !v;
    zero_byte(rex) | zero_byte(call) | zero_byte(lock) | zero_byte(grp)
}

impl X86Filter {
    fn new() -> Self {
        X86Filter {
            last_target: vec![0; 65536],
            base: 0,
        }
    }

    /// Run the filter: `undo` converts absolute back to relative (decoder),
    /// otherwise relative to absolute (encoder).
    fn run(&mut self, data: &mut [u8], undo: bool) {
        let size = data.len();
        if size <= 17 {
            return;
        }
        // Every entry is at least 65536 + 1 behind any position of this
        // buffer, exactly like the reference's initial value of -65536.
        let base = self.base + X86_ID_WINDOW as u64 + 1;
        self.base = base + size as u64;
        let last = &mut self.last_target[..];
        let mut last_x86_pos: i64 = -X86_MAX_TRANSLATION_OFFSET - 1;
        let tail = size - 16;
        let mut p = 1usize;
        'outer: while p < tail {
            // Skip bytes that cannot start an instruction, a word at a time;
            // the lowest flagged byte of a word is the next candidate.
            loop {
                if let Some(b) = data.get(p..p + 8) {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    let m = opcode_mask(u64::from_le_bytes(a));
                    if m == 0 {
                        p += 8;
                        if p >= tail {
                            break 'outer;
                        }
                        continue;
                    }
                    p += (m.trailing_zeros() / 8) as usize;
                    if p >= tail {
                        break 'outer;
                    }
                    break;
                }
                while !X86_OPCODE[data[p] as usize] {
                    p += 1;
                    if p >= tail {
                        break 'outer;
                    }
                }
                break;
            }
            let b0 = data[p];
            let b1 = data[p + 1];
            let b2 = data[p + 2];
            let (nbytes, max_off) = match b0 {
                0xE8 => (1usize, X86_MAX_TRANSLATION_OFFSET >> 1),
                0xE9 => {
                    p += 5;
                    continue;
                }
                0xFF => {
                    if b1 == 0x15 {
                        (2, X86_MAX_TRANSLATION_OFFSET)
                    } else {
                        p += 1;
                        continue;
                    }
                }
                0xF0 => {
                    if b1 == 0x83 && b2 == 0x05 {
                        (3, X86_MAX_TRANSLATION_OFFSET)
                    } else {
                        p += 1;
                        continue;
                    }
                }
                _ => {
                    // 0x48 / 0x4C REX prefixes: LEA or MOV, RIP-relative.
                    if (b2 & 0x07) == 0x05
                        && (b1 == 0x8D || (b1 == 0x8B && b0 & 0x04 == 0 && b2 & 0xF0 == 0))
                    {
                        (3, X86_MAX_TRANSLATION_OFFSET)
                    } else {
                        p += 1;
                        continue;
                    }
                }
            };
            let i = p as i64;
            let q = p + nbytes;
            let v = u32::from_le_bytes([data[q], data[q + 1], data[q + 2], data[q + 3]]);
            let rel16;
            if undo {
                let mut v2 = v;
                if i - last_x86_pos <= max_off {
                    v2 = v.wrapping_sub(i as u32);
                    data[q..q + 4].copy_from_slice(&v2.to_le_bytes());
                }
                rel16 = v2 as u16;
            } else {
                rel16 = v as u16;
                if i - last_x86_pos <= max_off {
                    let v2 = v.wrapping_add(i as u32);
                    data[q..q + 4].copy_from_slice(&v2.to_le_bytes());
                }
            }
            let target = (i as u32 as u16).wrapping_add(rel16) as usize;
            let end = i + nbytes as i64 + 3;
            let gend = base + end as u64;
            if gend - last[target] <= X86_ID_WINDOW as u64 {
                last_x86_pos = end;
            }
            last[target] = gend;
            p = q + 4;
        }
    }

    fn undo(&mut self, data: &mut [u8]) {
        self.run(data, true);
    }
}

mod encode;
pub use encode::{compress, Encoder};
