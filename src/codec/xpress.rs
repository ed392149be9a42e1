use super::CodecError;

// XPRESS Huffman ("LZ77+Huffman" of [MS-XCA]) as used by WIM resources.
//
// One WIM chunk (at most 64 KiB of output) is exactly one MS-XCA block:
//
// * 256 bytes holding 512 four-bit codeword lengths (low nibble = even
//   symbol) of a canonical Huffman code, maximum codeword length 15;
// * a bit stream made of 16-bit little-endian words, each read from its most
//   significant bit down, into which whole bytes (the long match length
//   escapes) are interleaved.
//
// Symbols 0..=255 are literals. Symbol `256 + (log2 << 4) + lh` is a match
// whose offset is `(1 << log2) | <log2 raw bits>` and whose length is
// `lh + 3`, except that `lh == 15` is followed by an extra byte `b`
// (length `b + 18`), and `b == 255` by a 16-bit little-endian length `n`
// (length `n + 3`). WIM has no end-of-block handling: the container knows
// the exact uncompressed size and decoding stops when the output is full
// (the encoder still appends symbol 256 after the last item, as Microsoft's
// decoder expects).
//
// The position of an interleaved byte is defined by the reference decoder:
// it reads two words up front and afterwards reads one more word whenever
// fewer than 16 unread bits remain after consuming a field. A byte therefore
// sits right after the smallest number of words that leaves at least 16
// unconsumed bits. Our decoder keeps a 64-bit look-ahead buffer for speed and
// "un-reads" surplus words before reading such a byte; the encoder mirrors
// the rule by reserving word slots in the output one word ahead.

use std::cell::RefCell;

/// Largest chunk the WIM format allows for XPRESS.
pub const MAX_CHUNK_SIZE: usize = 65536;
/// Literals 0..=255 plus 256 match headers.
const NUM_SYMBOLS: usize = 512;
const NUM_LITERALS: usize = 256;
const MAX_CODEWORD_LEN: usize = 15;
/// Bytes of packed codeword lengths at the start of every block.
const HEADER_LEN: usize = NUM_SYMBOLS / 2;
const MIN_MATCH_LEN: usize = 3;
/// Longest match one item can describe (16-bit escape plus the minimum).
const MAX_MATCH_LEN: usize = 0xFFFF + MIN_MATCH_LEN;
/// Match header "length 3, offset 1", written once after the last item.
const END_OF_DATA: usize = NUM_LITERALS;

// ---------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------

/// Bits resolved by the first-level decode table. 11 bits keeps the table at
/// 8 KiB (cache resident) while nearly all codewords of real data fit.
const TABLE_BITS: usize = 11;
/// Longer codewords go to second-level tables indexed by the remaining
/// `15 - TABLE_BITS` bits; a fixed size keeps table construction trivial.
const SUB_BITS: usize = MAX_CODEWORD_LEN - TABLE_BITS;
/// Each codeword longer than TABLE_BITS has a distinct prefix at most once per
/// symbol, so 512 subtables always suffice.
const TABLE_SIZE: usize = (1 << TABLE_BITS) + NUM_SYMBOLS * (1 << SUB_BITS);

/// Table entry layout, chosen so the hot loop's critical path is just
/// "look up, shift by the entry's low bits, look up" and so literals and short
/// matches can share one branch-free step:
/// * bits 0..5: bits to consume for the whole item: the codeword, plus for
///   matches without a length escape also the offset bits, which are thus
///   the low `log2` of those bits (at most 30, so bit 5 is clear and
///   `e & 63`, free in x86 shifts, extracts it);
/// * bits 8..12: flags below;
/// * bits 12..16: log2 of the offset; 4 for literals, which makes their
///   (unused) "offset" land in 16..=31;
/// * bits 16..21: bytes the item produces (1 for a literal, 3..=17 for a
///   match without escape);
/// * bits 24..32: the literal byte;
/// * subtable links: subtable start in bits 16..32.
const SUBTABLE: u32 = 0x100;
/// Codewords that an incomplete code never assigned.
const INVALID: u32 = 0x200;
const MATCH: u32 = 0x400;
/// Match whose length header is 15: an escape byte precedes the offset bits.
const LONG: u32 = 0x800;
const SLOW: u32 = SUBTABLE | INVALID;
const MAIN_SIZE: usize = 1 << TABLE_BITS;

/// Reusable XPRESS decoder; holds the Huffman decode table so decoding a chunk
/// allocates nothing.
pub struct Decoder {
    table: Vec<u32>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

thread_local! {
    static DECODER: RefCell<Decoder> = RefCell::new(Decoder::new());
}

/// Decompress one WIM XPRESS chunk into `output`, whose length must be the
/// exact uncompressed size. Uses a per-thread [`Decoder`].
pub fn decompress(input: &[u8], output: &mut [u8]) -> Result<(), CodecError> {
    DECODER.with(|d| match d.try_borrow_mut() {
        Ok(mut d) => d.decompress(input, output),
        // Re-entrancy cannot happen in practice; fall back to a fresh table
        // rather than panicking.
        Err(_) => Decoder::new().decompress(input, output),
    })
}

/// MSB-first reader state over 16-bit little-endian words with interleaved
/// bytes. A small `Copy` value so the hot loop keeps it in registers; the
/// cold paths take and return it by value.
///
/// `buf` is left-aligned: its top `count` bits are the next unread bits and
/// every bit below them is zero. `pos` is the input offset after the last
/// word loaded; it may run past the end, in which case missing words read as
/// zero and are counted in `virt` so that actually *using* them is detected.
#[derive(Clone, Copy)]
struct Bits {
    buf: u64,
    count: u32,
    virt: u32,
    pos: usize,
}

impl Bits {
    /// Branch-free top-up to 49..=64 bits from 8 input bytes, whatever the
    /// current count (< 64). Returns false, doing nothing, near the end of
    /// the input. Running it for every item avoids a hard-to-predict
    /// "need bits?" branch.
    #[inline(always)]
    fn refill_all(&mut self, input: &[u8]) -> bool {
        let Some(bytes) = input.get(self.pos..self.pos + 8) else {
            return false;
        };
        let mut b = [0u8; 8];
        b.copy_from_slice(bytes);
        let x = u64::from_le_bytes(b);
        // x = w0 | w1<<16 | w2<<32 | w3<<48; we want w0 on top.
        let r = x.rotate_left(32);
        let y = ((r & 0x0000_FFFF_0000_FFFF) << 16) | ((r >> 16) & 0x0000_FFFF_0000_FFFF);
        // Every item consumes at least one bit between two refills, so the
        // buffer is never completely full here (a full one would make the
        // `count & 63` shift below wrong).
        debug_assert!(self.count < 64);
        let words = (64 - self.count) >> 4;
        let new = self.count + (words << 4);
        // Whole words only: clear the bits of a partial word below `new`.
        let keep = !((u64::MAX >> 1) >> ((new - 1) & 63));
        self.buf |= (y >> (self.count & 63)) & keep;
        self.count = new;
        self.pos += (words as usize) << 1;
        true
    }

    #[cold]
    #[inline(never)]
    fn refill_slow(mut self, input: &[u8]) -> Result<Self, CodecError> {
        // Bits from past the end of the input were already consumed.
        if self.virt * 16 > self.count {
            return Err(CodecError::Truncated);
        }
        while self.count <= 48 {
            self = self.load_word(input);
        }
        Ok(self)
    }

    fn load_word(mut self, input: &[u8]) -> Self {
        let w = match input.get(self.pos..self.pos + 2) {
            Some(b) => u16::from_le_bytes([b[0], b[1]]),
            None => {
                self.virt += 1;
                0
            }
        };
        self.buf |= u64::from(w) << (48 - self.count);
        self.count += 16;
        self.pos += 2;
        self
    }

    #[inline(always)]
    fn peek(&self, n: usize) -> usize {
        (self.buf >> (64 - n)) as usize
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.buf <<= n & 63;
        self.count = self.count.wrapping_sub(n);
    }

    /// Pop `n` (0..=15) bits; the caller guarantees they are buffered.
    #[inline(always)]
    fn pop(&mut self, n: u32) -> u32 {
        let v = ((self.buf >> 1) >> (63 - n)) as u32;
        self.consume(n);
        v
    }

    /// Read the extended match length that follows a length header of 15,
    /// from where the reference decoder would read it: right after the fewest
    /// words that leave >= 16 unread bits. Surplus look-ahead words are given
    /// back first. Returns the match length minus the minimum.
    #[cold]
    #[inline(never)]
    fn read_long_len(mut self, input: &[u8]) -> Result<(Self, usize), CodecError> {
        while self.count < 16 {
            self = self.load_word(input);
        }
        while self.count >= 32 {
            self.count -= 16;
            self.pos -= 2;
            if self.pos + 2 > input.len() {
                self.virt = self.virt.saturating_sub(1);
            }
        }
        self.buf &= !((u64::MAX >> 1) >> (self.count - 1));
        let b = *input.get(self.pos).ok_or(CodecError::Truncated)?;
        self.pos += 1;
        if b != 255 {
            return Ok((self, 15 + usize::from(b)));
        }
        let w = input
            .get(self.pos..self.pos + 2)
            .ok_or(CodecError::Truncated)?;
        self.pos += 2;
        let n = usize::from(u16::from_le_bytes([w[0], w[1]]));
        if n < 15 {
            return Err(CodecError::Corrupt("bad 16-bit match length"));
        }
        Ok((self, n))
    }
}

impl Decoder {
    /// Allocate the decode tables (about 40 KiB).
    pub fn new() -> Self {
        Decoder {
            table: vec![INVALID; TABLE_SIZE],
        }
    }

    /// Build the two-level canonical decode table from the 256-byte header.
    ///
    /// Over-subscribed codes are rejected. Incomplete codes are accepted (the
    /// reference decoder does not check completeness); their unassigned
    /// codewords decode to an error only if they are actually used.
    #[inline(never)]
    fn build_table(&mut self, header: &[u8]) -> Result<(), CodecError> {
        let mut lens = [0u8; NUM_SYMBOLS];
        // Two histograms (even/odd symbols) halve the store-to-load chains.
        let mut c_even = [0u16; 16];
        let mut c_odd = [0u16; 16];
        for (pair, &b) in lens.chunks_exact_mut(2).zip(header) {
            pair[0] = b & 15;
            pair[1] = b >> 4;
            c_even[usize::from(b & 15)] += 1;
            c_odd[usize::from(b >> 4)] += 1;
        }
        let mut count = [0u16; MAX_CODEWORD_LEN + 1];
        for l in 1..=MAX_CODEWORD_LEN {
            count[l] = c_even[l] + c_odd[l];
        }
        let mut left: i32 = 1;
        for &c in &count[1..] {
            left = (left << 1) - i32::from(c);
            if left < 0 {
                return Err(CodecError::Corrupt("over-subscribed Huffman code"));
            }
        }
        if left == 1 << MAX_CODEWORD_LEN {
            return Err(CodecError::Corrupt("empty Huffman code"));
        }
        // Symbols sorted by (length, value): canonical order.
        let mut offs = [0u16; MAX_CODEWORD_LEN + 2];
        for l in 1..=MAX_CODEWORD_LEN {
            offs[l + 1] = offs[l] + count[l];
        }
        // Unused symbols (length 0) go after all used ones, so every slot
        // index stays below 512 and the loop needs no branch.
        offs[0] = offs[MAX_CODEWORD_LEN + 1];
        let mut sorted = [0u16; NUM_SYMBOLS];
        for (sym, &l) in lens.iter().enumerate() {
            let o = &mut offs[usize::from(l)];
            sorted[usize::from(*o) & (NUM_SYMBOLS - 1)] = sym as u16;
            *o += 1;
        }
        let used = usize::from(offs[MAX_CODEWORD_LEN]).min(NUM_SYMBOLS);

        let table = &mut self.table;
        let main = 1usize << TABLE_BITS;
        // Codeword of the next symbol, left-aligned to 15 bits.
        let mut code: usize = 0;
        let mut next_sub = main;
        let mut cur_prefix = usize::MAX;
        let mut cur_sub = 0usize;
        let mut filled_main = 0usize;
        for &sym in &sorted[..used] {
            let len = usize::from(lens[usize::from(sym)]);
            let span = 1usize << (MAX_CODEWORD_LEN - len);
            if len <= TABLE_BITS {
                let start = code >> SUB_BITS;
                let n = span >> SUB_BITS;
                let e = entry(sym, len);
                table[start..start + n].fill(e);
                filled_main = start + n;
            } else {
                let prefix = code >> SUB_BITS;
                if prefix != cur_prefix {
                    cur_prefix = prefix;
                    cur_sub = next_sub;
                    next_sub += 1 << SUB_BITS;
                    table[cur_sub..next_sub].fill(INVALID);
                    table[prefix] = ((cur_sub as u32) << 16) | SUBTABLE | SUB_BITS as u32;
                    filled_main = prefix + 1;
                }
                let start = cur_sub + (code & ((1 << SUB_BITS) - 1));
                let e = entry(sym, len - TABLE_BITS);
                table[start..start + span].fill(e);
            }
            code += span;
        }
        table[filled_main..main].fill(INVALID);
        Ok(())
    }

    /// Decompress one chunk; see [`decompress`].
    pub fn decompress(&mut self, input: &[u8], output: &mut [u8]) -> Result<(), CodecError> {
        if output.is_empty() {
            return Ok(());
        }
        if input.len() < HEADER_LEN {
            return Err(CodecError::Truncated);
        }
        self.build_table(&input[..HEADER_LEN])?;
        let table = &self.table[..];
        let mut br = Bits {
            buf: 0,
            count: 0,
            virt: 0,
            pos: HEADER_LEN,
        };
        let out_len = output.len();
        let mut op = 0usize;

        let main: &[u32; MAIN_SIZE] = table
            .get(..MAIN_SIZE)
            .and_then(|t| t.try_into().ok())
            .ok_or(CodecError::Corrupt("decode table"))?;
        'outer: while op < out_len {
            if !br.refill_all(input) && br.count < 30 {
                br = br.refill_slow(input)?;
            }
            // At least 30 bits are buffered whenever `e` is examined below.
            let mut e = main[br.peek(TABLE_BITS)];
            while e & (SLOW | LONG) == 0 && op + 24 <= out_len {
                // Branch-free literal-or-short-match step. `mask` is all
                // ones for a match, zero for a literal; arithmetic selection
                // keeps the step free of unpredictable branches. Literals
                // have a dummy offset in 16..=31 and copy from the (long
                // settled) start of the output, avoiding store-forwarding
                // stalls.
                let total = e & 63;
                let log2 = (e >> 12) & 15;
                let extra = (br.buf >> (64 - total)) as u32 & ((1 << log2) - 1);
                let off = ((1 << log2) | extra) as usize;
                let mask = 0usize.wrapping_sub(((e & MATCH) >> 10) as usize);
                let back = off & mask;
                if (back > op) | (off < 16) {
                    break;
                }
                br.consume(total);
                let src = (op - back) & mask;
                // First word: the match source, or the literal byte (plus
                // don't-care bytes that later output overwrites).
                let w = (read8(output, src) & mask as u64) | (u64::from(e >> 24) & !(mask as u64));
                write8(output, op, w);
                // Then 16 more bytes (items produce at most 17). For a match
                // this may read what the first word wrote, which is exactly
                // LZ77 semantics for offsets >= 16.
                output.copy_within(src + 8..src + 24, op + 8);
                op += ((e >> 16) & 31) as usize;
                // >= 19 bits remain, so the next lookup needs no refill and
                // the refill runs beside it instead of in front of it.
                let next = main[br.peek(TABLE_BITS)];
                if !br.refill_all(input) {
                    continue 'outer;
                }
                e = next;
            }
            if op >= out_len {
                break;
            }
            if e & SLOW != 0 {
                if e & INVALID != 0 {
                    return Err(CodecError::Corrupt("invalid Huffman codeword"));
                }
                br.consume(TABLE_BITS as u32);
                let idx = (e >> 16) as usize + br.peek(SUB_BITS);
                e = *table.get(idx).ok_or(CodecError::Corrupt("bad subtable"))?;
                if e & INVALID != 0 {
                    return Err(CodecError::Corrupt("invalid Huffman codeword"));
                }
            }
            if e & MATCH == 0 {
                br.consume(e & 63);
                output[op] = (e >> 24) as u8;
                op += 1;
                continue;
            }
            let log2 = (e >> 12) & 15;
            let (offset, len) = if e & LONG == 0 {
                // The offset bits are the low bits of this item's bits.
                let total = e & 63;
                let extra = (br.buf >> (64 - total)) as u32 & ((1 << log2) - 1);
                br.consume(total);
                (((1u32 << log2) | extra) as usize, ((e >> 16) & 31) as usize)
            } else {
                br.consume(e & 63);
                let len;
                (br, len) = br.read_long_len(input)?;
                // 16..=31 bits remain after byte alignment: enough for 15.
                (
                    ((1u32 << log2) | br.pop(log2)) as usize,
                    len + MIN_MATCH_LEN,
                )
            };
            if offset > op {
                return Err(CodecError::Corrupt("match offset before start of output"));
            }
            if len > out_len - op {
                return Err(CodecError::Corrupt("match runs past end of output"));
            }
            copy_match(output, op, offset, len);
            op += len;
        }
        // Anything decoded from zero padding past the end means truncation.
        if br.virt * 16 > br.count {
            return Err(CodecError::Truncated);
        }
        Ok(())
    }
}

/// Decode-table entry for a single symbol whose codeword needs `len` more bits.
#[inline(always)]
fn entry(sym: u16, len: usize) -> u32 {
    let l = len as u32;
    let sym = u32::from(sym);
    if sym < NUM_LITERALS as u32 {
        sym << 24 | 1 << 16 | 4 << 12 | l
    } else {
        let lh = sym & 15;
        let log2 = (sym >> 4) & 15;
        let head = MATCH | log2 << 12;
        if lh == 15 {
            head | LONG | l
        } else {
            head | (lh + MIN_MATCH_LEN as u32) << 16 | (l + log2)
        }
    }
}

#[inline(always)]
fn read8(out: &[u8], pos: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&out[pos..pos + 8]);
    u64::from_le_bytes(w)
}

#[inline(always)]
fn write8(out: &mut [u8], pos: usize, w: u64) {
    out[pos..pos + 8].copy_from_slice(&w.to_le_bytes());
}

#[inline(always)]
fn copy8(out: &mut [u8], src: usize, dst: usize) {
    let mut w = [0u8; 8];
    w.copy_from_slice(&out[src..src + 8]);
    out[dst..dst + 8].copy_from_slice(&w);
}

/// Copy `len` bytes from `op - offset` to `op` with LZ77 overlap semantics.
/// The caller has checked `offset <= op` and `op + len <= out.len()`.
#[inline(always)]
fn copy_match(out: &mut [u8], op: usize, offset: usize, len: usize) {
    let src = op - offset;
    let end = op + len;
    if offset >= 16 && end + 16 <= out.len() {
        // 16-byte blocks whose source lies wholly before the destination
        // (offset >= 16), so each block is already final when read. One
        // block covers most matches; up to 15 bytes past `end` receive
        // scratch data that later output overwrites.
        out.copy_within(src..src + 16, op);
        let mut s = src + 16;
        let mut d = op + 16;
        while d < end {
            out.copy_within(s..s + 16, d);
            s += 16;
            d += 16;
        }
    } else if offset >= 8 && end + 16 <= out.len() {
        // Same with 8-byte words for 8 <= offset < 16.
        copy8(out, src, op);
        copy8(out, src + 8, op + 8);
        let mut s = src + 16;
        let mut d = op + 16;
        while d < end {
            copy8(out, s, d);
            s += 8;
            d += 8;
        }
    } else if offset == 1 {
        let b = out[src];
        out[op..end].fill(b);
    } else if offset >= len {
        out.copy_within(src..src + len, op);
    } else if offset < 8 && end + 8 <= out.len() {
        // Short period: build one 8-byte pattern word and advance by the
        // largest multiple of the period that fits in 8 bytes.
        let mut w = [0u8; 8];
        for (i, b) in w.iter_mut().enumerate() {
            *b = out[src + i % offset];
        }
        let stride = 8 - 8 % offset;
        let mut d = op;
        while d < end {
            out[d..d + 8].copy_from_slice(&w);
            d += stride;
        }
    } else {
        for i in op..end {
            out[i] = out[i - offset];
        }
    }
}

// ---------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------

/// Hash chains link positions with equal 4-byte hashes: far more selective
/// than 3-byte chains, so a short search visits mostly real matches. 2^16
/// heads for at most 64 Ki positions keep chains nearly free of hash
/// collisions, which otherwise use up the search depth: on 32 KiB chunks of
/// /usr/share/doc this was ~10% faster than 2^15 (2^13: ~35% slower).
const HASH4_BITS: u32 = 16;
/// Length-3 matches come from a single most-recent-position table.
const HASH3_BITS: u32 = HASH4_BITS - 1;
/// Chain positions examined per search; bounds the worst case (long runs of
/// identical data). On tars of /usr/share/{doc,locale,package-lists}
/// (374 MB, one thread) 8 took 17% less time than 16 for 0.3% more
/// output; 4 another 16% less for another 0.8%.
const MAX_SEARCH_DEPTH: u32 = 8;
/// A match at least this long is taken without looking further.
const NICE_LEN: usize = 32;
/// A 3-byte match farther than this rarely beats three literals.
const MAX_LEN3_OFFSET: usize = 4096;
/// Search depth for the lazy "is the next position better?" probe: it only
/// has to beat an already found match, so a shallower search suffices, and
/// shallower still once that match is long.
const LAZY_DEPTH: u32 = 8;
const LAZY_DEPTH_LONG: u32 = 4;
/// Extra gain the next position's match needs to justify a literal now.
const LAZY_BONUS: i32 = 2;
/// Failed searches in a row before the parser starts skipping positions; one
/// more position is skipped per `1 << SKIP_SHIFT` further failures.
const SKIP_SHIFT: u32 = 6;
/// Matches at least this long are taken without the lazy probe.
const LAZY_MAX_LEN: usize = 24;

/// One parsed item. Literal: the byte value (< 256). Match: bit 63 set,
/// length in bits 16..33, offset in bits 0..16.
type Item = u64;
const MATCH_FLAG: u64 = 1 << 63;

/// Rough value of a match in quarter bits saved: each byte covered is worth
/// about four, each extra offset bit costs one.
#[inline(always)]
fn gain(len: usize, off: usize) -> i32 {
    (len as i32) * 4 - (usize::BITS - 1 - off.leading_zeros()) as i32
}

/// Reusable encoder state: hash chains and the item buffer. Positions are
/// stored as `pos + 1` in 16 bits (0 = none), which halves the cache
/// footprint; chunks never exceed 64 KiB.
pub struct Encoder {
    head4: Vec<u16>,
    head3: Vec<u16>,
    prev: Vec<u16>,
    items: Vec<Item>,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

thread_local! {
    static ENCODER: RefCell<Encoder> = RefCell::new(Encoder::new());
}

/// Compress one WIM chunk. Returns `None` when the result would not be
/// strictly smaller than the input (the container then stores it raw), and
/// for inputs longer than [`MAX_CHUNK_SIZE`], which are not valid WIM XPRESS
/// chunks.
pub fn compress(input: &[u8]) -> Option<Vec<u8>> {
    ENCODER.with(|e| match e.try_borrow_mut() {
        Ok(mut e) => e.compress(input),
        Err(_) => Encoder::new().compress(input),
    })
}

#[inline(always)]
fn read_u32(data: &[u8], pos: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&data[pos..pos + 4]);
    u32::from_le_bytes(w)
}

#[inline(always)]
fn hash4(v: u32) -> usize {
    (v.wrapping_mul(0x9E37_79B1) >> (32 - HASH4_BITS)) as usize
}

#[inline(always)]
fn hash3(v: u32) -> usize {
    ((v << 8).wrapping_mul(0x9E37_79B1) >> (32 - HASH3_BITS)) as usize
}

/// Length of the common prefix of `data[a..]` and `data[b..]` (a < b),
/// capped at `max`.
#[inline(always)]
fn match_len(data: &[u8], a: usize, b: usize, max: usize) -> usize {
    let mut n = 0;
    while n + 8 <= max {
        let x = u64::from_le_bytes(data[a + n..a + n + 8].try_into().unwrap_or([0; 8]));
        let y = u64::from_le_bytes(data[b + n..b + n + 8].try_into().unwrap_or([0; 8]));
        let d = x ^ y;
        if d != 0 {
            return n + (d.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    while n < max && data[a + n] == data[b + n] {
        n += 1;
    }
    n
}

impl Encoder {
    /// Allocate the hash tables and chains (about 200 KiB).
    pub fn new() -> Self {
        Encoder {
            head4: vec![0; 1 << HASH4_BITS],
            head3: vec![0; 1 << HASH3_BITS],
            prev: vec![0; MAX_CHUNK_SIZE],
            items: Vec::new(),
        }
    }

    /// Insert `pos` (with `pos + 4 <= data.len()`) into the hash tables;
    /// returns the previous 4-byte chain head and 3-byte table entry.
    #[inline(always)]
    fn insert(&mut self, data: &[u8], pos: usize) -> (u16, u16, u32) {
        let v = read_u32(data, pos);
        let h4 = hash4(v);
        let h3 = hash3(v);
        let me = (pos + 1) as u16;
        let c4 = std::mem::replace(&mut self.head4[h4], me);
        let c3 = std::mem::replace(&mut self.head3[h3], me);
        self.prev[pos] = c4;
        (c4, c3, v)
    }

    /// Insert `pos` and return the longest earlier match (length, offset);
    /// length 0 means none.
    #[inline(always)]
    fn find(&mut self, data: &[u8], pos: usize, depth: u32) -> (usize, usize) {
        let max = (data.len() - pos).min(MAX_MATCH_LEN);
        let (mut cand, c3, v) = self.insert(data, pos);
        let mut best_len = 3usize;
        let mut best_off = 0usize;
        let mut depth = depth;
        while cand != 0 && depth > 0 {
            let c = usize::from(cand) - 1;
            // Cheap rejection: a longer match must agree at best_len, and
            // hash collisions fail the 4-byte check.
            if best_len < max
                && data[c + best_len] == data[pos + best_len]
                && read_u32(data, c) == v
            {
                let l = match_len(data, c, pos, max);
                // Longer, and not bought with too many more offset bits.
                if l > best_len && (best_off == 0 || gain(l, pos - c) > gain(best_len, best_off)) {
                    best_len = l;
                    best_off = pos - c;
                    if l >= NICE_LEN.min(max) {
                        break;
                    }
                }
            }
            cand = self.prev[c];
            depth -= 1;
        }
        if best_off != 0 {
            return (best_len, best_off);
        }
        if c3 != 0 {
            let c = usize::from(c3) - 1;
            let off = pos - c;
            if off <= MAX_LEN3_OFFSET && data[c..c + 3] == data[pos..pos + 3] {
                return (3, off);
            }
        }
        (0, 0)
    }

    /// Lazy parse: take the longest match at each position unless the next
    /// position has a longer one.
    #[inline(never)]
    fn parse(&mut self, data: &[u8], freqs: &mut [u32; NUM_SYMBOLS]) {
        let n = data.len();
        self.head4.fill(0);
        self.head3.fill(0);
        let mut items = std::mem::take(&mut self.items);
        items.clear();
        let mut i = 0usize;
        // Positions below `ins` are already in the hash chains.
        let mut ins = 0usize;
        let mut pending: Option<(usize, usize)> = None;
        let mut misses = 0usize;
        while i < n {
            // Hashing reads 4 bytes; the last 3 bytes go out as literals.
            if i + 4 > n {
                for &b in &data[i..] {
                    items.push(u64::from(b));
                    freqs[usize::from(b)] += 1;
                }
                break;
            }
            let (len, off) = match pending.take() {
                Some(m) => m,
                None => {
                    ins = i + 1;
                    self.find(data, i, MAX_SEARCH_DEPTH)
                }
            };
            if len < MIN_MATCH_LEN {
                // After a long run of failed searches, search only every
                // few positions: incompressible data (already compressed
                // files) then costs a fraction of a full parse, while a
                // single match found resets the stride.
                misses += 1;
                let end = (i + 1 + (misses >> SKIP_SHIFT)).min(n);
                for &b in &data[i..end] {
                    items.push(u64::from(b));
                    freqs[usize::from(b)] += 1;
                }
                i = end;
                continue;
            }
            misses = 0;
            if len < LAZY_MAX_LEN && i + 1 + 4 <= n {
                // Search less hard when the current match is already good.
                let depth = if len >= 16 {
                    LAZY_DEPTH_LONG
                } else {
                    LAZY_DEPTH
                };

                ins = i + 2;
                let (l2, o2) = self.find(data, i + 1, depth);
                // Defer to the next position if its match is worth more,
                // weighing length against offset bits (one extra literal
                // is the price of deferring).
                if l2 >= MIN_MATCH_LEN && gain(l2, o2) > gain(len, off) + LAZY_BONUS {
                    items.push(u64::from(data[i]));
                    freqs[usize::from(data[i])] += 1;
                    i += 1;
                    pending = Some((l2, o2));
                    continue;
                }
            }
            // Emit the match at i.
            let end = i + len;
            let ins_end = end.min(n - 3);
            while ins < ins_end {
                self.insert(data, ins);
                ins += 1;
            }
            let l3 = len - MIN_MATCH_LEN;
            let log2 = (usize::BITS - 1 - off.leading_zeros()) as usize;
            freqs[NUM_LITERALS + (log2 << 4) + l3.min(15)] += 1;
            items.push(MATCH_FLAG | (len as u64) << 16 | off as u64);
            i = end;
        }
        self.items = items;
    }

    /// Compress one chunk; see [`compress`].
    pub fn compress(&mut self, input: &[u8]) -> Option<Vec<u8>> {
        // Header plus two words is the smallest possible output.
        if input.len() <= HEADER_LEN + 4 || input.len() > MAX_CHUNK_SIZE {
            return None;
        }
        let mut freqs = [0u32; NUM_SYMBOLS];
        self.parse(input, &mut freqs);
        // Microsoft's decoder expects an end-of-data symbol (256) after the
        // last item; WIM decoders stop at the known size and never read it.
        freqs[END_OF_DATA] += 1;
        let mut lens = [0u8; NUM_SYMBOLS];
        build_lengths(&freqs, &mut lens);
        // Incompressible chunks (already compressed files are common) are
        // recognised from the code lengths alone: the bit stream holds at
        // least every codeword and offset bit, so if those cannot fit, the
        // chunk is stored raw without running the output loop.
        let bits: u64 = freqs
            .iter()
            .zip(&lens)
            .enumerate()
            .map(|(s, (&f, &l))| {
                let extra = if s >= NUM_LITERALS {
                    (s - NUM_LITERALS) >> 4
                } else {
                    0
                };
                u64::from(f) * (u64::from(l) + extra as u64)
            })
            .sum();
        if HEADER_LEN as u64 + bits / 8 >= input.len() as u64 {
            return None;
        }
        let mut codes = [0u32; NUM_SYMBOLS];
        super::huffman::canonical_codes(&lens, &mut codes);

        // Codeword and length packed together: one table load per symbol.
        let mut sym_bits = [0u32; NUM_SYMBOLS];
        for ((sb, &c), &l) in sym_bits.iter_mut().zip(&codes).zip(&lens) {
            *sb = c << 8 | u32::from(l);
        }
        // Writing stops as soon as the output can no longer be smaller than
        // the input; the 16-byte margin covers one item's worst case (7).
        let limit = input.len();
        let mut out = vec![0u8; limit + 16];
        for (o, pair) in out.iter_mut().zip(lens.chunks_exact(2)) {
            *o = pair[0] | pair[1] << 4;
        }
        let mut bw = BitWriter::new(HEADER_LEN);
        for &it in &self.items {
            if bw.pos >= limit {
                return None;
            }
            if it & MATCH_FLAG == 0 {
                bw.bits(&mut out, sym_bits[(it & 0xFF) as usize]);
            } else {
                let off = (it & 0xFFFF) as u32;
                let l3 = ((it >> 16) as usize & 0x1FFFF) - MIN_MATCH_LEN;
                let log2 = 31 - off.leading_zeros();
                let s = NUM_LITERALS + ((log2 as usize) << 4) + l3.min(15);
                bw.bits(&mut out, sym_bits[s]);
                if l3 >= 15 {
                    if l3 - 15 < 255 {
                        bw.byte(&mut out, (l3 - 15) as u8);
                    } else {
                        bw.byte(&mut out, 255);
                        bw.byte(&mut out, l3 as u8);
                        bw.byte(&mut out, (l3 >> 8) as u8);
                    }
                }
                bw.bits(&mut out, (off & ((1 << log2) - 1)) << 8 | log2);
            }
        }
        bw.bits(&mut out, sym_bits[END_OF_DATA]);
        let len = bw.finish(&mut out);
        if len >= limit {
            return None;
        }
        out.truncate(len);
        Some(out)
    }
}

/// MSB-first writer of 16-bit little-endian words with interleaved bytes.
///
/// Mirrors the reference decoder's read pattern: two word slots are reserved
/// ahead, a word is only flushed once a *further* bit arrives (so a word that
/// is exactly full stays pending), and interleaved bytes go after all
/// reserved slots. Out-of-range writes are dropped; the caller sizes the
/// buffer so that they cannot happen.
struct BitWriter {
    acc: u64,
    n: u32,
    slot_cur: usize,
    slot_next: usize,
    pos: usize,
}

impl BitWriter {
    fn new(start: usize) -> Self {
        BitWriter {
            acc: 0,
            n: 0,
            slot_cur: start,
            slot_next: start + 2,
            pos: start + 4,
        }
    }

    /// Append `v >> 8` as a field of `v & 0xFF` (<= 16) bits.
    #[inline(always)]
    fn bits(&mut self, out: &mut [u8], v: u32) {
        let n = v & 0xFF;
        self.acc = (self.acc << n) | u64::from(v >> 8);
        self.n += n;
        if self.n > 16 {
            self.n -= 16;
            let w = (self.acc >> self.n) as u16;
            if let Some(d) = out.get_mut(self.slot_cur..self.slot_cur + 2) {
                d.copy_from_slice(&w.to_le_bytes());
            }
            self.slot_cur = self.slot_next;
            self.slot_next = self.pos;
            self.pos += 2;
        }
    }

    #[inline(always)]
    fn byte(&mut self, out: &mut [u8], b: u8) {
        if let Some(d) = out.get_mut(self.pos) {
            *d = b;
        }
        self.pos += 1;
    }

    /// Flush the pending word; returns the output length.
    fn finish(self, out: &mut [u8]) -> usize {
        if self.n > 0 {
            let w = ((self.acc << (16 - self.n)) & 0xFFFF) as u16;
            if let Some(d) = out.get_mut(self.slot_cur..self.slot_cur + 2) {
                d.copy_from_slice(&w.to_le_bytes());
            }
        }
        self.pos
    }
}

/// Length-limited (15) Huffman codeword lengths for `freqs`.
///
/// Builds an optimal tree with the two-queue method, clamps over-long
/// codewords to 15 and then lengthens the longest codewords that are still
/// short of 15 until the Kraft sum is exactly one again (the code must stay
/// complete: wimlib rejects incomplete codes). Lengths are finally handed out
/// by frequency so the most frequent symbols get the shortest codewords.
#[inline(never)]
fn build_lengths(freqs: &[u32; NUM_SYMBOLS], lens: &mut [u8; NUM_SYMBOLS]) {
    let mut syms: Vec<(u32, u16)> = freqs
        .iter()
        .enumerate()
        .filter(|(_, &f)| f > 0)
        .map(|(s, &f)| (f, s as u16))
        .collect();
    lens.fill(0);
    match syms.len() {
        0 => {
            lens[0] = 1;
            lens[1] = 1;
            return;
        }
        1 => {
            let s = usize::from(syms[0].1);
            lens[s] = 1;
            lens[if s == 0 { 1 } else { 0 }] = 1;
            return;
        }
        _ => {}
    }
    syms.sort_unstable();
    let m = syms.len();
    let total = 2 * m - 1;
    let mut weight = vec![0u64; total];
    let mut parent = vec![0usize; total];
    for (w, s) in weight.iter_mut().zip(&syms) {
        *w = u64::from(s.0);
    }
    let (mut li, mut ni) = (0usize, m);
    for next in m..total {
        let mut pick = |weight: &[u64]| -> usize {
            if li < m && (ni >= next || weight[li] <= weight[ni]) {
                li += 1;
                li - 1
            } else {
                ni += 1;
                ni - 1
            }
        };
        let a = pick(&weight);
        let b = pick(&weight);
        weight[next] = weight[a] + weight[b];
        parent[a] = next;
        parent[b] = next;
    }
    // Depths: parents always have larger indices than their children.
    let mut depth = vec![0u32; total];
    let mut bl = [0u32; MAX_CODEWORD_LEN + 1];
    for k in (0..total - 1).rev() {
        depth[k] = depth[parent[k]] + 1;
    }
    for &d in &depth[..m] {
        bl[(d as usize).min(MAX_CODEWORD_LEN)] += 1;
    }
    // Kraft sum in units of 2^-15.
    let mut kraft: u64 = (1..=MAX_CODEWORD_LEN)
        .map(|l| u64::from(bl[l]) << (MAX_CODEWORD_LEN - l))
        .sum();
    let full = 1u64 << MAX_CODEWORD_LEN;
    while kraft > full {
        // Lengthen one codeword of the largest length below 15; this lowers
        // the sum by the smallest available step, so we never undershoot.
        let Some(l) = (1..MAX_CODEWORD_LEN).rev().find(|&l| bl[l] > 0) else {
            break;
        };
        bl[l] -= 1;
        bl[l + 1] += 1;
        kraft -= 1 << (MAX_CODEWORD_LEN - l - 1);
    }
    // Most frequent symbols (end of `syms`) get the shortest lengths.
    let mut it = syms.iter();
    for l in (1..=MAX_CODEWORD_LEN).rev() {
        for _ in 0..bl[l] {
            if let Some(&(_, s)) = it.next() {
                lens[usize::from(s)] = l as u8;
            }
        }
    }
}

#[cfg(test)]
mod bench {
    /// `XPRESS_BENCH_FILE=... cargo test --release --lib codec::xpress::bench -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn chunks_32k() {
        let mut enc = super::Encoder::new();
        crate::codec::bench_chunks("xpress", "XPRESS_BENCH_FILE", |c| {
            enc.compress(c).map(|o| o.len())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{compress, decompress};

    /// Deterministic incompressible bytes (xorshift64).
    fn noise(n: usize, mut s: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn incompressible_chunk_is_stored_raw() {
        assert_eq!(compress(&noise(32768, 1)), None);
    }

    /// After a long incompressible run the parser skips positions; the
    /// repeat that follows must still be found despite the stride, and the
    /// chunk must round-trip exactly.
    #[test]
    fn repeat_after_noise_is_found_and_round_trips() {
        let mut data = noise(16384, 7);
        data.extend_from_within(..16384);
        let packed = compress(&data).expect("a repeated half compresses");
        // Noise costs ~8 bits a byte; the repeat must cost almost nothing.
        assert!(packed.len() < 16384 + 256 + 512, "{} bytes", packed.len());
        let mut out = vec![0u8; data.len()];
        decompress(&packed, &mut out).unwrap();
        assert_eq!(out, data);
    }
}
