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
    // The encoder emits no delta matches and the decoder keeps its context
    // states in locals, so these two are never read.
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

/// Canonical codewords from lengths (shorter codes first, then by symbol).
#[allow(dead_code)]
fn build_codewords(lens: &[u8], codes: &mut [u32]) {
    let mut count = [0u32; MAX_CODEWORD_LEN + 1];
    for &l in lens {
        count[l as usize] += 1;
    }
    count[0] = 0;
    let mut next = [0u32; MAX_CODEWORD_LEN + 2];
    let mut code = 0u32;
    for len in 1..=MAX_CODEWORD_LEN {
        code = (code + count[len - 1]) << 1;
        next[len] = code;
    }
    for (s, &l) in lens.iter().enumerate() {
        if l != 0 {
            codes[s] = next[l as usize];
            next[l as usize] += 1;
        }
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

// ---------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------

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
        build_codewords(&self.lens[..n], &mut self.codes[..n]);
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

/// LZ repeat-offset queue with the format's delayed front insertion.
#[derive(Clone, Copy)]
struct LzQueue {
    reps: [u32; 4],
    pending: u32,
    prev_was_lz: bool,
}

impl LzQueue {
    fn new() -> Self {
        LzQueue {
            reps: [1, 2, 3, 4],
            pending: 0,
            prev_was_lz: false,
        }
    }

    /// The three offsets a repeat match at this point may refer to.
    #[inline(always)]
    fn visible(&self) -> [u32; 3] {
        if self.pending != 0 && !self.prev_was_lz {
            [self.pending, self.reps[0], self.reps[1]]
        } else {
            [self.reps[0], self.reps[1], self.reps[2]]
        }
    }

    /// Apply an LZ match (explicit `offset`, or repeat index `rep`) exactly
    /// as the decoder does.
    fn apply(&mut self, rep: Option<usize>, offset: u32) {
        if self.pending != 0 && !self.prev_was_lz {
            self.reps = [self.pending, self.reps[0], self.reps[1], self.reps[2]];
            self.pending = 0;
        }
        let off = match rep {
            None => offset,
            Some(i) => {
                let o = self.reps[i];
                for k in i..3 {
                    self.reps[k] = self.reps[k + 1];
                }
                o
            }
        };
        if self.pending != 0 {
            self.reps = [self.pending, self.reps[0], self.reps[1], self.reps[2]];
        }
        self.pending = off;
        self.prev_was_lz = true;
    }
}

const MIN_MATCH: usize = 3;
const NICE_LEN: usize = 192;
const MAX_CHAIN: u32 = 64;

/// Reusable LZMS encoder state (match finder tables and coder models).
pub struct Encoder {
    models: Models,
    literal: EncodeCode,
    lz_offset: EncodeCode,
    length: EncodeCode,
    delta_offset: EncodeCode,
    delta_power: EncodeCode,
    work: Box<HuffWork>,
    x86: X86Filter,
    head: Vec<u32>,
    prev: Vec<u32>,
    buf: Vec<u8>,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Length of the common prefix of `data[a..]` and `data[b..]`, up to `max`.
#[inline(always)]
fn match_len(data: &[u8], a: usize, b: usize, max: usize) -> usize {
    let mut l = 0;
    while l + 8 <= max {
        let x = u64::from_le_bytes(data[a + l..a + l + 8].try_into().unwrap_or([0; 8]));
        let y = u64::from_le_bytes(data[b + l..b + l + 8].try_into().unwrap_or([0; 8]));
        let d = x ^ y;
        if d != 0 {
            return l + (d.trailing_zeros() / 8) as usize;
        }
        l += 8;
    }
    while l < max && data[a + l] == data[b + l] {
        l += 1;
    }
    l
}

/// A parse decision at one position.
#[derive(Clone, Copy)]
enum Choice {
    Literal,
    /// Repeat match: (length, visible queue index).
    Rep(usize, usize),
    /// Explicit match: (length, offset).
    Explicit(usize, usize),
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

/// Read-only view of the current codes for cost estimation.
#[derive(Clone, Copy)]
struct Costs<'a> {
    literal: &'a EncodeCode,
    length: &'a EncodeCode,
    lz_offset: &'a EncodeCode,
}

impl Costs<'_> {
    #[inline(always)]
    fn bit_cost<const N: usize>(probs: &[Prob; N], state: usize, bit: u32) -> i32 {
        let p = probs[state & (N - 1)].p() as usize;
        if bit == 0 {
            BIT_COST[p]
        } else {
            BIT_COST[64 - p]
        }
    }

    /// Cost (1/16 bit) of a literal byte.
    #[inline(always)]
    fn lit_cost(self, b: u8, m: &Models) -> i32 {
        Self::bit_cost(&m.main, m.main_state, 0) + 16 * self.literal.lens[b as usize] as i32
    }

    #[inline(always)]
    fn length_cost(self, len: usize) -> i32 {
        let s = slot_of(len as u32, &LENGTH_BASE);
        16 * (self.length.lens[s] as i32 + LENGTH_EXTRA[s] as i32)
    }

    /// Length covered and score (literal cost saved minus match cost).
    fn choice_len_score(
        self,
        data: &[u8],
        p: usize,
        c: &Choice,
        q: &LzQueue,
        m: &Models,
    ) -> (usize, i32) {
        let (len, cost) = match *c {
            Choice::Literal => return (1, 0),
            Choice::Rep(len, idx) => {
                let mut cost = Self::bit_cost(&m.main, m.main_state, 1)
                    + Self::bit_cost(&m.matc, m.match_state, 0)
                    + Self::bit_cost(&m.lz, m.lz_state, 1);
                for k in 0..idx.min(2) {
                    cost += Self::bit_cost(&m.lz_rep[k], m.lz_rep_state[k], 1);
                }
                if idx < 2 {
                    cost += Self::bit_cost(&m.lz_rep[idx], m.lz_rep_state[idx], 0);
                }
                (len, cost + self.length_cost(len))
            }
            Choice::Explicit(len, off) => {
                let s = slot_of(off as u32, &OFFSET_BASE);
                let cost = Self::bit_cost(&m.main, m.main_state, 1)
                    + Self::bit_cost(&m.matc, m.match_state, 0)
                    + Self::bit_cost(&m.lz, m.lz_state, 0)
                    + 16 * (self.lz_offset.lens[s] as i32 + OFFSET_EXTRA[s] as i32);
                (len, cost + self.length_cost(len))
            }
        };
        let _ = q;
        // Literal cost of the covered bytes (estimated past 32 bytes).
        let main0 = Self::bit_cost(&m.main, m.main_state, 0);
        let k = len.min(32);
        let mut lits: i32 = data[p..p + k]
            .iter()
            .map(|&b| 16 * self.literal.lens[b as usize] as i32 + main0)
            .sum();
        if len > k {
            // Matches can be millions of bytes long in a 64 MiB solid
            // chunk: the estimate saturates instead of overflowing.
            let est = i64::from(lits / k as i32) * len as i64;
            lits = est.clamp(0, i64::from(i32::MAX / 2)) as i32;
        }
        (len, lits.saturating_sub(cost))
    }

    /// Best choice at `p` given the explicit and repeat candidates.
    fn best_choice(
        self,
        data: &[u8],
        p: usize,
        q: &LzQueue,
        m: &Models,
        explicit: (usize, usize),
        rep: (usize, usize),
    ) -> Choice {
        let mut best = Choice::Literal;
        let mut best_score = 0i32;
        if rep.0 >= 2 {
            let c = Choice::Rep(rep.0, rep.1);
            let (_, sc) = self.choice_len_score(data, p, &c, q, m);
            if sc > best_score {
                best = c;
                best_score = sc;
            }
        }
        if explicit.0 >= MIN_MATCH && !q.visible().contains(&(explicit.1 as u32)) {
            let c = Choice::Explicit(explicit.0, explicit.1);
            let (_, sc) = self.choice_len_score(data, p, &c, q, m);
            if sc > best_score {
                best = c;
            }
        }
        best
    }
}

impl Encoder {
    /// Allocate an encoder; tables grow to the largest chunk seen.
    pub fn new() -> Self {
        Encoder {
            models: Models::new(),
            literal: EncodeCode::new(LITERAL_REBUILD),
            lz_offset: EncodeCode::new(LZ_OFFSET_REBUILD),
            length: EncodeCode::new(LENGTH_REBUILD),
            delta_offset: EncodeCode::new(DELTA_OFFSET_REBUILD),
            delta_power: EncodeCode::new(DELTA_POWER_REBUILD),
            work: HuffWork::new(),
            x86: X86Filter::new(),
            head: Vec::new(),
            prev: Vec::new(),
            buf: Vec::new(),
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
        self.models.reset();
        let w = &mut *self.work;
        self.literal.reset(NUM_LITERAL_SYMS, w);
        self.lz_offset.reset(slots, w);
        self.length.reset(NUM_LENGTH_SYMS, w);
        self.delta_offset.reset(slots, w);
        self.delta_power.reset(NUM_POWER_SYMS, w);

        // Hash chains over 3-byte prefixes, window = whole chunk (capped).
        let hash_bits = (usize::BITS - n.leading_zeros()).clamp(12, 20);
        let window_bits = (usize::BITS - n.leading_zeros()).min(24);
        let wmask = (1usize << window_bits) - 1;
        self.head.clear();
        self.head.resize(1 << hash_bits, u32::MAX);
        self.prev.clear();
        self.prev.resize(1 << window_bits, u32::MAX);
        let max_dist = wmask;

        let mut rc = RangeEncoder::new(Vec::with_capacity(n / 2 + 16));
        let mut bw = BitWriter {
            buf: 0,
            count: 0,
            units: Vec::with_capacity(n / 4 + 16),
        };
        let mut q = LzQueue::new();
        let limit = n / 2 + 64; // give up once clearly not compressible

        let hash = |p: usize| -> usize {
            let v = u32::from(data[p]) | u32::from(data[p + 1]) << 8 | u32::from(data[p + 2]) << 16;
            (v.wrapping_mul(0x9E37_79B1) >> (32 - hash_bits)) as usize
        };
        let mut inserted = 0usize; // positions < inserted are in the chains
        let head = &mut self.head;
        let prev = &mut self.prev;

        // Insert positions up to (not including) `upto`.
        let insert = |upto: usize, inserted: &mut usize, head: &mut [u32], prev: &mut [u32]| {
            let end = upto.min(n.saturating_sub(2));
            while *inserted < end {
                let p = *inserted;
                let h = hash(p);
                prev[p & wmask] = head[h];
                head[h] = p as u32;
                *inserted += 1;
            }
            *inserted = (*inserted).max(upto.min(n));
        };

        // Best explicit match at `p` (length, offset).
        let find = |p: usize, head: &[u32], prev: &[u32]| -> (usize, usize) {
            if p + MIN_MATCH > n {
                return (0, 0);
            }
            let max = n - p;
            let mut best = (0usize, 0usize);
            let mut cand = head[hash(p)];
            let mut chain = MAX_CHAIN;
            while cand != u32::MAX && chain > 0 {
                let c = cand as usize;
                if c >= p || p - c > max_dist {
                    break;
                }
                if data[c + best.0.min(max - 1)] == data[p + best.0.min(max - 1)] {
                    let l = match_len(data, c, p, max);
                    if l > best.0 {
                        best = (l, p - c);
                        if l >= NICE_LEN || l == max {
                            break;
                        }
                    }
                }
                let nx = prev[c & wmask];
                if nx != u32::MAX && nx as usize >= c {
                    break;
                }
                cand = nx;
                chain -= 1;
            }
            if best.0 >= MIN_MATCH {
                best
            } else {
                (0, 0)
            }
        };

        let rep_match = |p: usize, q: &LzQueue| -> (usize, usize) {
            // (length, index) of the longest usable repeat match.
            let mut best = (0usize, 0usize);
            let max = n - p;
            for (i, &o) in q.visible().iter().enumerate() {
                let o = o as usize;
                if o == 0 || o > p {
                    continue;
                }
                let l = match_len(data, p - o, p, max);
                if l > best.0 {
                    best = (l, i);
                }
            }
            best
        };

        let mut p = 0usize;
        let m = &mut self.models;
        while p < n {
            insert(p, &mut inserted, head, prev);
            let cx = Costs {
                literal: &self.literal,
                length: &self.length,
                lz_offset: &self.lz_offset,
            };
            let cur = cx.best_choice(data, p, &q, m, find(p, head, prev), rep_match(p, &q));
            let choice = match cur {
                Choice::Literal => Choice::Literal,
                c => {
                    // Lazy evaluation: if starting one byte later is clearly
                    // better, emit a literal now.
                    let (clen, cscore) = cx.choice_len_score(data, p, &c, &q, m);
                    if clen < NICE_LEN && p + 1 < n {
                        insert(p + 1, &mut inserted, head, prev);
                        let mut q2 = q;
                        q2.prev_was_lz = false;
                        let nxt = cx.best_choice(
                            data,
                            p + 1,
                            &q2,
                            m,
                            find(p + 1, head, prev),
                            rep_match(p + 1, &q2),
                        );
                        let (_, nscore) = cx.choice_len_score(data, p + 1, &nxt, &q2, m);
                        let lit = cx.lit_cost(data[p], m);
                        if nscore - lit > cscore + 16 {
                            Choice::Literal
                        } else {
                            c
                        }
                    } else {
                        c
                    }
                }
            };
            match choice {
                Choice::Literal => {
                    let lit = data[p] as usize;
                    encode_decision(&mut rc, &mut m.main, &mut m.main_state, 0);
                    self.literal.encode(lit, &mut bw, w);
                    q.prev_was_lz = false;
                    p += 1;
                }
                Choice::Rep(len, ridx) | Choice::Explicit(len, ridx) => {
                    let is_rep = matches!(choice, Choice::Rep(..));
                    encode_decision(&mut rc, &mut m.main, &mut m.main_state, 1);
                    encode_decision(&mut rc, &mut m.matc, &mut m.match_state, 0);
                    if is_rep {
                        encode_decision(&mut rc, &mut m.lz, &mut m.lz_state, 1);
                        for k in 0..ridx.min(2) {
                            encode_decision(&mut rc, &mut m.lz_rep[k], &mut m.lz_rep_state[k], 1);
                        }
                        if ridx < 2 {
                            encode_decision(
                                &mut rc,
                                &mut m.lz_rep[ridx],
                                &mut m.lz_rep_state[ridx],
                                0,
                            );
                        }
                        q.apply(Some(ridx), 0);
                    } else {
                        let moff = ridx;
                        encode_decision(&mut rc, &mut m.lz, &mut m.lz_state, 0);
                        let slot = slot_of(moff as u32, &OFFSET_BASE);
                        self.lz_offset.encode(slot, &mut bw, w);
                        bw.write(moff as u32 - OFFSET_BASE[slot], OFFSET_EXTRA[slot] as u32);
                        q.apply(None, moff as u32);
                    }
                    let lslot = slot_of(len as u32, &LENGTH_BASE);
                    self.length.encode(lslot, &mut bw, w);
                    bw.write(len as u32 - LENGTH_BASE[lslot], LENGTH_EXTRA[lslot] as u32);
                    p += len;
                }
            }
            if rc.out.len() + bw.units.len() * 2 > limit.max(n) {
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
