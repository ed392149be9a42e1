use super::bt::match_len;
use super::huffman::canonical_codes;
use super::CodecError;

// LZX as used in WIM resources (wimlib compression type 2).
//
// Format facts (from the LZX DELTA specification [MS-PATCH], the cabinet LZX
// description and wimlib's documentation of the WIM differences):
//
// * Every WIM chunk is an independent LZX stream. The LZX window is the WIM
//   chunk size rounded up to a power of two, at least 32 KiB, at most 2 MiB.
//   The window size fixes the number of offset slots and therefore the size
//   of the main Huffman code, so the *resource's* chunk size (not the length
//   of a short final chunk) must be known to decode or encode a chunk.
// * The bitstream is a sequence of 16-bit little-endian words whose bits are
//   consumed most significant first.
// * Block header: 3-bit type (1 verbatim, 2 aligned offset, 3 uncompressed),
//   then 1 bit "size is 32768"; if that bit is 0 an explicit size follows in
//   16 bits, or 24 bits when the window is at least 64 KiB.
// * Code lengths are delta coded with a 20-symbol pretree against the
//   previous block's lengths of the same chunk (all zero at chunk start); the
//   main code is sent in two halves (256 literals, then the match symbols).
// * Recent offsets R0..R2 start at 1 for each chunk. Match offsets are coded
//   as "formatted offsets" (offset + 2); slots 0..2 select R0..R2.
// * There is no E8 header bit: x86 CALL translation is always undone after
//   decoding, with the fixed "file size" 12,000,000, for E8 bytes that start
//   before the last 10 bytes of the chunk.
// * Uncompressed blocks: after the header the stream skips to the next
//   16-bit boundary (a whole 16-bit word if already aligned), then R0..R2 as
//   32-bit little-endian values, the raw bytes, and a pad byte if the size is
//   odd. wimlib's own compressor never emits them; we follow the spec.
//
// API: `decompress`/`compress` take the window from the data length, which
// is right for every full-size chunk and for every chunk of a 32 KiB-chunk
// resource. The short final chunk of a resource with larger chunks needs
// `decompress_chunk`/`compress_chunk` with the resource's chunk size.
//
// Decoder speed notes: 64-bit bit buffer refilled four words at a time
// without branches, 11-bit root Huffman tables with subtables, up to three
// literals per refill, match copies in 8-byte words with overrun into slack,
// SIMD-friendly E8 scan. Decoding errors never panic: reads past the input
// yield zero bits and are reported as `Truncated` at block boundaries.

/// Number of literal symbols in the main code.
mod optimal;

const NUM_CHARS: usize = 256;
/// Shortest match LZX can express.
const MIN_MATCH: usize = 2;
/// Longest match LZX can express (7 primary lengths + 249 length symbols + 2).
const MAX_MATCH: usize = 257;
/// Number of match-length headers per offset slot in the main code.
const NUM_LEN_HEADERS: usize = 8;
/// Length header value meaning "read the rest from the length code".
const NUM_PRIMARY_LENS: usize = 7;
/// Symbols in the length code.
const LEN_SYMS: usize = 249;
/// Symbols in the pretree that codes code lengths.
const PRE_SYMS: usize = 20;
/// Symbols in the aligned-offset code.
const ALIGNED_SYMS: usize = 8;
/// Most offset slots any window (2 MiB) needs.
const MAX_SLOTS: usize = 50;
/// Largest main code (2 MiB window).
const MAX_MAIN_SYMS: usize = NUM_CHARS + MAX_SLOTS * NUM_LEN_HEADERS;
/// Longest Huffman codeword LZX allows.
const MAX_CODE_LEN: usize = 16;
/// The fixed "file size" WIM uses for E8 call translation.
const E8_FILE_SIZE: i32 = 12_000_000;
/// Block size signalled by the single header bit.
const DEFAULT_BLOCK_SIZE: usize = 32768;
/// Smallest LZX window (log2).
const MIN_WINDOW_ORDER: u32 = 15;
/// Largest LZX window (log2); WIM chunks never exceed it.
const MAX_WINDOW_ORDER: u32 = 21;
/// Largest chunk (and window) size supported.
pub const MAX_CHUNK_SIZE: usize = 1 << MAX_WINDOW_ORDER;
/// A run-length pretree symbol can write up to 50 lengths past the end of the
/// range being decoded (wimlib tolerates this, so we do too); the length arrays
/// get this much slack so that such streams decode identically.
const LENS_OVERRUN: usize = 64;

/// First formatted offset of each offset slot (the last entry is a sentinel).
const SLOT_BASE: [u32; MAX_SLOTS + 1] = {
    let mut t = [0u32; MAX_SLOTS + 1];
    let mut i = 0;
    while i <= MAX_SLOTS {
        t[i] = if i < 4 {
            i as u32
        } else if i < 36 {
            let extra = (i / 2 - 1) as u32;
            (2 + (i as u32 & 1)) << extra
        } else {
            // From slot 36 on every slot spans 2^17 offsets.
            (1u32 << 18) + ((i as u32 - 36) << 17)
        };
        i += 1;
    }
    t
};

/// Number of extra (verbatim) offset bits of each slot; padded to 64 entries so
/// that indexing with a masked slot number needs no bounds check.
const EXTRA_BITS: [u8; 64] = {
    let mut t = [0u8; 64];
    let mut i = 4;
    while i < 64 {
        let e = i / 2 - 1;
        t[i] = if e > 17 { 17 } else { e as u8 };
        i += 1;
    }
    t
};

/// [`SLOT_BASE`] padded to 64 entries for check-free indexing in the hot loop.
const SLOT_BASE64: [u32; 64] = {
    let mut t = [0u32; 64];
    let mut i = 0;
    while i <= MAX_SLOTS {
        t[i] = SLOT_BASE[i];
        i += 1;
    }
    t
};

/// log2 of the LZX window for a WIM chunk size: rounded up to a power of two
/// and to at least 32 KiB. `None` if the size is 0 or above 2 MiB.
pub fn window_order(chunk_size: usize) -> Option<u32> {
    if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
        return None;
    }
    let order = chunk_size.next_power_of_two().trailing_zeros();
    Some(order.max(MIN_WINDOW_ORDER))
}

/// Number of offset slots for a window: enough for formatted offsets up to
/// `window - 1`, i.e. match offsets up to `window - 3` (the format does not
/// allow a match at offset `window - 2`, saving one slot; 30 slots for 32 KiB
/// up to 50 for 2 MiB).
fn num_slots(order: u32) -> usize {
    let max_formatted = (1u32 << order) - 3 + 2;
    let mut n = 30;
    while n < MAX_SLOTS && max_formatted >= SLOT_BASE[n] {
        n += 1;
    }
    n
}

/// Number of main-code symbols for a window.
fn num_main_syms(order: u32) -> usize {
    NUM_CHARS + num_slots(order) * NUM_LEN_HEADERS
}

// ---------------------------------------------------------------------------
// Bit input
// ---------------------------------------------------------------------------

/// MSB-first reader over 16-bit little-endian words with a 64-bit buffer.
///
/// Reading past the end yields zero bits (so the hot loop needs no end
/// checks); `pos` then runs past `data.len()` and [`Bits::check`] reports the
/// overrun as truncation at block boundaries. Every decode step produces at
/// least one output byte or consumes header bits, so this cannot loop forever.
struct Bits<'a> {
    data: &'a [u8],
    /// Bits available from the 16-bit words starting at the reader's origin
    /// (an odd trailing byte can't form a word).
    limit_bits: usize,
    /// Next byte to load (may exceed `data.len()` once zero words were fed).
    pos: usize,
    /// Valid bits are left-justified; bits below them are zero or the true
    /// upcoming bits.
    buf: u64,
    /// Number of valid bits, always 0..=63, but only its low 6 bits are
    /// meaningful: the decoder subtracts raw table entries (length in the low
    /// bits, symbol above) to save a mask, and all users reduce it mod 64.
    avail: u32,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        let whole = data.len().saturating_sub(pos) & !1;
        Bits {
            data,
            limit_bits: (pos + whole) * 8,
            pos,
            buf: 0,
            avail: 0,
        }
    }

    /// Top up the buffer so that at least 48 bits are available.
    ///
    /// Loads the next four words at once and ORs them in below the valid
    /// bits; only whole words that fit are accounted for. Bits of a word that
    /// only partly fit are the true upcoming bits, so OR-ing them in again at
    /// the next refill is harmless. Afterwards `avail == old_avail | 48`.
    #[inline(always)]
    fn refill(&mut self) {
        let v = match self.data.get(self.pos..).and_then(|s| s.first_chunk::<8>()) {
            Some(b) => u64::from_le_bytes(*b),
            None => tail_word(self.data, self.pos),
        };
        // Reverse the order of the four 16-bit words: first word on top.
        let y = v.rotate_left(32);
        let w = ((y >> 16) & 0x0000_ffff_0000_ffff) | ((y & 0x0000_ffff_0000_ffff) << 16);
        let avail = self.avail & 63;
        self.buf |= w >> avail;
        let new_avail = avail | 48;
        self.pos += ((new_avail - avail) >> 3) as usize;
        self.avail = new_avail;
    }

    /// Remove `n` (<= avail) bits.
    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.buf <<= n;
        self.avail = self.avail.wrapping_sub(n);
    }

    /// Read `n` bits, 0 <= n <= 32 and n <= avail.
    #[inline(always)]
    fn take(&mut self, n: u32) -> u32 {
        let v = ((self.buf >> 1) >> (63 - n)) as u32;
        self.consume(n);
        v
    }

    /// Bits consumed so far.
    fn consumed_bits(&self) -> usize {
        (self.pos * 8).saturating_sub((self.avail & 63) as usize)
    }

    /// Fail if more bits were consumed than the input holds.
    fn check(&self) -> Result<(), CodecError> {
        if self.consumed_bits() > self.limit_bits {
            Err(CodecError::Truncated)
        } else {
            Ok(())
        }
    }
}

/// The next four words at byte `pos` near or past the end of the input, as a
/// little-endian u64 with missing (or odd trailing) bytes read as zero.
#[cold]
#[inline(never)]
fn tail_word(data: &[u8], pos: usize) -> u64 {
    let mut a = [0u8; 8];
    if pos < data.len() {
        let n = ((data.len() - pos) & !1).min(8);
        a[..n].copy_from_slice(&data[pos..pos + n]);
    }
    u64::from_le_bytes(a)
}

// ---------------------------------------------------------------------------
// Huffman decoding tables
// ---------------------------------------------------------------------------

/// Entry flag: not a direct leaf (subtable pointer or invalid).
const F_INDIRECT: u32 = 0x100;
/// Entry with no codeword (unused space of an incomplete code).
const INVALID: u32 = 0xFFFF_0000 | F_INDIRECT | 0x200;
/// Literal-pair entry flag (bit 6, ignored by the 6-bit shift count).
const F_PAIR: u32 = 0x40;
/// Index bits of the literal-pair table (same as the main root table).
const PAIR_BITS: u32 = 11;

/// Build the literal-pair table from the main code's root table: where the
/// next 11 bits hold two complete literal codewords, the entry is
/// `sym2 << 16 | sym1 << 8 | F_PAIR | (len1 + len2)`; elsewhere it is a copy
/// of the root entry. Text decodes roughly two literals per lookup this way.
#[inline(never)]
fn build_pairs(main: &Table<2048>, pair: &mut [u32; 1 << PAIR_BITS]) {
    const MASK: usize = (1 << PAIR_BITS) - 1;
    for (i, p) in pair.iter_mut().enumerate() {
        let e1 = main.root[i];
        *p = e1;
        if e1 & F_INDIRECT != 0 || e1 >> 16 >= NUM_CHARS as u32 {
            continue;
        }
        let l1 = e1 & 0x1f;
        let e2 = main.root[(i << l1) & MASK];
        if e2 & F_INDIRECT != 0 || e2 >> 16 >= NUM_CHARS as u32 {
            continue;
        }
        let l2 = e2 & 0x1f;
        if l1 + l2 <= PAIR_BITS {
            *p = (e2 >> 16) << 16 | (e1 >> 16) << 8 | F_PAIR | (l1 + l2);
        }
    }
}

/// Canonical Huffman decode table: a root table indexed by the next
/// `log2(N)` bits and second-level tables for longer codewords.
///
/// Leaf entry `sym << 16 | len` (the root holds codes up to `log2(N)` bits;
/// subtable leaves store the length beyond that); bits 5..7 are zero so the
/// raw entry can serve as a shift count (x86 masks it to 6 bits), which keeps
/// a mask off the critical decode path. Pointer entry `subtable_number << 16
/// | F_INDIRECT`; all subtables of one code have `sub_bits` index bits. Incomplete codes are accepted; their unused space is
/// marked invalid and only fails if actually hit, while over-subscribed codes
/// are rejected when the table is built.
struct Table<const N: usize> {
    root: [u32; N],
    sub: Vec<u32>,
    sub_bits: u32,
}

impl<const N: usize> Table<N> {
    const BITS: u32 = N.trailing_zeros();

    fn new(max_syms: usize) -> Box<Self> {
        Box::new(Table {
            root: [INVALID; N],
            sub: Vec::with_capacity(max_syms << (MAX_CODE_LEN as u32 - Self::BITS.min(16))),
            sub_bits: 0,
        })
    }

    #[inline(never)]
    fn build(&mut self, lens: &[u8]) -> Result<(), CodecError> {
        const BAD: CodecError = CodecError::Corrupt("invalid Huffman code");
        let tb = Self::BITS;
        let mut count = [0u32; MAX_CODE_LEN + 1];
        for &l in lens {
            *count.get_mut(l as usize).ok_or(BAD)? += 1;
        }
        count[0] = 0;
        let mut left: i64 = 1;
        let mut maxlen = 0;
        for (l, &c) in count.iter().enumerate().skip(1) {
            left = (left << 1) - c as i64;
            if left < 0 {
                return Err(CodecError::Corrupt("over-subscribed Huffman code"));
            }
            if c != 0 {
                maxlen = l as u32;
            }
        }
        // Symbols sorted by (length, symbol) = canonical code order.
        let mut offs = [0usize; MAX_CODE_LEN + 2];
        for l in 1..=MAX_CODE_LEN {
            offs[l + 1] = offs[l] + count[l] as usize;
        }
        let mut sorted = [0u16; MAX_MAIN_SYMS];
        for (s, &l) in lens.iter().enumerate() {
            if l != 0 {
                let o = &mut offs[l as usize];
                *sorted.get_mut(*o).ok_or(BAD)? = s as u16;
                *o += 1;
            }
        }
        let mut syms = sorted.iter();
        // `cur` is the next codeword, left-aligned to 16 bits.
        let mut cur: u32 = 0;
        for l in 1..=maxlen.min(tb) {
            let span = 1usize << (tb - l);
            for _ in 0..count[l as usize] {
                let sym = *syms.next().ok_or(BAD)? as u32;
                let start = (cur >> (16 - tb)) as usize;
                self.root
                    .get_mut(start..start + span)
                    .ok_or(BAD)?
                    .fill(sym << 16 | l);
                cur += 1 << (16 - l);
            }
        }
        let filled = (cur >> (16 - tb)) as usize;
        self.root.get_mut(filled..).ok_or(BAD)?.fill(INVALID);
        self.sub.clear();
        if maxlen > tb {
            let sb = maxlen - tb;
            self.sub_bits = sb;
            let subsize = 1usize << sb;
            let mut cur_prefix = usize::MAX;
            let mut base = 0usize;
            for l in tb + 1..=maxlen {
                let span = 1usize << (maxlen - l);
                for _ in 0..count[l as usize] {
                    let sym = *syms.next().ok_or(BAD)? as u32;
                    let prefix = (cur >> (16 - tb)) as usize;
                    if prefix != cur_prefix {
                        cur_prefix = prefix;
                        base = self.sub.len();
                        self.sub.resize(base + subsize, INVALID);
                        *self.root.get_mut(prefix).ok_or(BAD)? =
                            F_INDIRECT | ((base >> sb) as u32) << 16;
                    }
                    let idx = base + ((cur >> (16 - maxlen)) as usize & (subsize - 1));
                    self.sub
                        .get_mut(idx..idx + span)
                        .ok_or(BAD)?
                        .fill(sym << 16 | (l - tb));
                    cur += 1 << (16 - l);
                }
            }
        }
        Ok(())
    }

    /// Decode one symbol; the caller guarantees at least 16 buffered bits.
    #[inline(always)]
    fn decode(&self, bits: &mut Bits) -> Result<u32, CodecError> {
        let e = self.root[(bits.buf >> (64 - Self::BITS)) as usize];
        if e & F_INDIRECT == 0 {
            bits.buf = bits.buf.wrapping_shl(e);
            // Only the low 6 bits of `avail` are meaningful (see `Bits`).
            bits.avail = bits.avail.wrapping_sub(e);
            Ok(e >> 16)
        } else {
            let (sym, n) = self.decode_slow(e, bits.buf)?;
            bits.consume(n);
            Ok(sym)
        }
    }

    /// Second-level lookup; returns the symbol and the total codeword length.
    /// Takes the bit buffer by value so the hot loop keeps it in a register.
    #[cold]
    #[inline(never)]
    fn decode_slow(&self, e: u32, buf: u64) -> Result<(u32, u32), CodecError> {
        const BAD: CodecError = CodecError::Corrupt("invalid Huffman codeword");
        if e == INVALID {
            return Err(BAD);
        }
        let sb = self.sub_bits;
        let base = ((e >> 16) as usize) << sb;
        let idx = base + ((buf << Self::BITS) >> (64 - sb)) as usize;
        let e2 = *self.sub.get(idx).ok_or(BAD)?;
        if e2 & F_INDIRECT != 0 {
            return Err(BAD);
        }
        Ok((e2 >> 16, Self::BITS + (e2 & 0x1f)))
    }
}

// ---------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------

/// Reusable LZX decoder state (Huffman tables and code-length arrays), so that
/// decoding a chunk allocates nothing.
pub struct Decoder {
    main: Box<Table<2048>>,
    pair: Box<[u32; 1 << PAIR_BITS]>,
    len: Box<Table<1024>>,
    aligned: Box<Table<128>>,
    pre: Box<Table<64>>,
    main_lens: [u8; MAX_MAIN_SYMS + LENS_OVERRUN],
    len_lens: [u8; LEN_SYMS + LENS_OVERRUN],
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            main: Table::new(MAX_MAIN_SYMS),
            pair: Box::new([INVALID; 1 << PAIR_BITS]),
            len: Table::new(LEN_SYMS),
            aligned: Table::new(ALIGNED_SYMS),
            pre: Table::new(PRE_SYMS),
            main_lens: [0; MAX_MAIN_SYMS + LENS_OVERRUN],
            len_lens: [0; LEN_SYMS + LENS_OVERRUN],
        }
    }

    /// Decode one chunk whose LZX window is derived from `output.len()`.
    /// Correct for every chunk that has the resource's full chunk size, and
    /// for all chunks of 32 KiB-chunk resources; use
    /// [`Decoder::decompress_chunk`] for a short final chunk otherwise.
    pub fn decompress(&mut self, input: &[u8], output: &mut [u8]) -> Result<(), CodecError> {
        self.decompress_chunk(input, output, output.len())
    }

    /// Decode one chunk of a resource whose chunk size is `chunk_size`
    /// (which fixes the LZX window); `output.len()` is this chunk's exact
    /// uncompressed size and must not exceed the window.
    pub fn decompress_chunk(
        &mut self,
        input: &[u8],
        output: &mut [u8],
        chunk_size: usize,
    ) -> Result<(), CodecError> {
        if output.is_empty() {
            return Ok(());
        }
        let order = window_order(chunk_size.max(output.len()))
            .ok_or(CodecError::Unsupported("LZX chunk larger than 2 MiB"))?;
        let num_main = num_main_syms(order);
        self.main_lens.fill(0);
        self.len_lens.fill(0);
        let mut rec = [1u32; 3];
        let mut bits = Bits::new(input, 0);
        let out_len = output.len();
        let mut pos = 0usize;
        let mut may_have_e8 = false;
        while pos < out_len {
            bits.refill();
            let btype = bits.take(3);
            let bsize = if bits.take(1) == 1 {
                DEFAULT_BLOCK_SIZE
            } else {
                let mut s = bits.take(16) as usize;
                if order >= 16 {
                    s = (s << 8) | bits.take(8) as usize;
                }
                s
            };
            if bsize > out_len - pos {
                return Err(CodecError::Corrupt("LZX block exceeds chunk"));
            }
            match btype {
                1 | 2 => {
                    let aligned = btype == 2;
                    if aligned {
                        let mut al = [0u8; ALIGNED_SYMS];
                        bits.refill();
                        for l in al.iter_mut() {
                            *l = bits.take(3) as u8;
                        }
                        self.aligned.build(&al)?;
                    }
                    read_lens(&mut bits, &mut self.pre, &mut self.main_lens, 0, NUM_CHARS)?;
                    read_lens(
                        &mut bits,
                        &mut self.pre,
                        &mut self.main_lens,
                        NUM_CHARS,
                        num_main,
                    )?;
                    self.main.build(&self.main_lens[..num_main])?;
                    build_pairs(&self.main, &mut self.pair);
                    read_lens(&mut bits, &mut self.pre, &mut self.len_lens, 0, LEN_SYMS)?;
                    self.len.build(&self.len_lens[..LEN_SYMS])?;
                    bits.check()?;
                    // The first E8 byte of a chunk must come from a literal.
                    may_have_e8 |= self.main_lens[0xe8] != 0;
                    pos = if aligned {
                        self.decode_block::<true>(&mut bits, output, pos, pos + bsize, &mut rec)?
                    } else {
                        self.decode_block::<false>(&mut bits, output, pos, pos + bsize, &mut rec)?
                    };
                }
                3 => {
                    // Skip to the next 16-bit boundary; when already aligned a
                    // whole 16-bit word of padding is skipped.
                    let mut p = (bits.consumed_bits() / 16 + 1) * 2;
                    let hdr = input.get(p..p + 12).ok_or(CodecError::Truncated)?;
                    for (i, r) in rec.iter_mut().enumerate() {
                        let b = &hdr[i * 4..i * 4 + 4];
                        *r = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    }
                    if rec.contains(&0) {
                        return Err(CodecError::Corrupt("zero recent offset"));
                    }
                    p += 12;
                    let raw = input.get(p..p + bsize).ok_or(CodecError::Truncated)?;
                    output[pos..pos + bsize].copy_from_slice(raw);
                    pos += bsize;
                    p += bsize;
                    // Odd-sized raw data is followed by a pad byte (tolerate
                    // its absence at the very end of the input).
                    p = (p + (bsize & 1)).min(input.len());
                    bits = Bits::new(input, p);
                    may_have_e8 = true;
                }
                _ => return Err(CodecError::Corrupt("invalid LZX block type")),
            }
            bits.check()?;
        }
        if may_have_e8 {
            undo_e8(output);
        }
        Ok(())
    }

    /// Decode the symbols of one verbatim or aligned-offset block into
    /// `out[pos..end]`; returns `end`.
    #[inline(always)]
    fn decode_block<const ALIGNED: bool>(
        &self,
        bits: &mut Bits,
        output: &mut [u8],
        pos: usize,
        end: usize,
        rec: &mut [u32; 3],
    ) -> Result<usize, CodecError> {
        // Work on register copies of the bit reader and recent offsets; they
        // are written back only on success (errors abandon the chunk).
        let mut b = Bits {
            data: bits.data,
            limit_bits: bits.limit_bits,
            pos: bits.pos,
            buf: bits.buf,
            avail: bits.avail,
        };
        let mut r = *rec;
        let end = end.min(output.len());
        let pos = decode_symbols::<ALIGNED>(
            &self.main,
            &self.pair,
            &self.len,
            &self.aligned,
            &mut b,
            output,
            pos,
            end,
            &mut r,
        )?;
        *bits = b;
        *rec = r;
        Ok(pos)
    }
}

/// The hot loop: decode main-code symbols until `end`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn decode_symbols<const ALIGNED: bool>(
    main: &Table<2048>,
    pair: &[u32; 1 << PAIR_BITS],
    lent: &Table<1024>,
    alt: &Table<128>,
    bits: &mut Bits,
    output: &mut [u8],
    mut pos: usize,
    end: usize,
    rec: &mut [u32; 3],
) -> Result<usize, CodecError> {
    let (mut r0, mut r1, mut r2) = (rec[0], rec[1], rec[2]);
    while pos < end {
        // Keep >= 32 bits: enough for a literal pair (<= 11 bits) or a main
        // symbol plus a length symbol (<= 32 bits).
        if bits.avail & 63 < 32 {
            bits.refill();
        }
        let idx = (bits.buf >> (64 - PAIR_BITS)) as usize;
        let mut e = pair[idx];
        if e & F_PAIR != 0 {
            if pos + 2 <= end {
                bits.buf = bits.buf.wrapping_shl(e);
                bits.avail = bits.avail.wrapping_sub(e);
                output[pos] = (e >> 8) as u8;
                output[pos + 1] = (e >> 16) as u8;
                pos += 2;
                continue;
            }
            e = main.root[idx];
        }
        let sym = if e & F_INDIRECT == 0 {
            bits.buf = bits.buf.wrapping_shl(e);
            bits.avail = bits.avail.wrapping_sub(e);
            (e >> 16) as usize
        } else {
            let (sym, n) = main.decode_slow(e, bits.buf)?;
            bits.consume(n);
            sym as usize
        };
        if sym < NUM_CHARS {
            output[pos] = sym as u8;
            pos += 1;
            continue;
        }
        let m = sym - NUM_CHARS;
        let mut len = m & (NUM_LEN_HEADERS - 1);
        let slot = (m / NUM_LEN_HEADERS) & 63;
        if len == NUM_PRIMARY_LENS {
            len += lent.decode(bits)? as usize;
        }
        len += MIN_MATCH;
        let off;
        if slot >= 3 {
            bits.refill();
            let extra = EXTRA_BITS[slot] as u32;
            let mut o = SLOT_BASE64[slot];
            if ALIGNED && extra >= 3 {
                o += bits.take(extra - 3) << 3;
                o += alt.decode(bits)?;
            } else {
                o += bits.take(extra);
            }
            off = o - 2;
            r2 = r1;
            r1 = r0;
            r0 = off;
        } else if slot == 0 {
            off = r0;
        } else if slot == 1 {
            off = r1;
            r1 = r0;
            r0 = off;
        } else {
            off = r2;
            r2 = r0;
            r0 = off;
        }
        let off = off as usize;
        if len > end - pos {
            return Err(CodecError::Corrupt("LZX match exceeds block"));
        }
        if off.wrapping_sub(1) >= pos {
            return Err(CodecError::Corrupt("LZX match offset before chunk start"));
        }
        copy_match(output, pos, off, len);
        pos += len;
    }
    *rec = [r0, r1, r2];
    Ok(pos)
}

/// Read a pretree and then code lengths `lens[start..end]`, delta coded
/// against the previous values. Runs may spill up to 50 entries past `end`
/// (into the slack of the array), as in wimlib.
fn read_lens(
    bits: &mut Bits,
    pre: &mut Table<64>,
    lens: &mut [u8],
    start: usize,
    end: usize,
) -> Result<(), CodecError> {
    let mut pl = [0u8; PRE_SYMS];
    bits.refill();
    for l in pl[..10].iter_mut() {
        *l = bits.take(4) as u8;
    }
    bits.refill();
    for l in pl[10..].iter_mut() {
        *l = bits.take(4) as u8;
    }
    pre.build(&pl)?;
    let mut i = start;
    while i < end {
        bits.refill();
        let ps = pre.decode(bits)?;
        let cur = *lens
            .get(i)
            .ok_or(CodecError::Corrupt("code length overrun"))?;
        if ps < 17 {
            lens[i] = ((cur as u32 + 17 - ps) % 17) as u8;
            i += 1;
            continue;
        }
        let (run, v) = match ps {
            17 => (4 + bits.take(4) as usize, 0u8),
            18 => (20 + bits.take(5) as usize, 0u8),
            _ => {
                let run = 4 + bits.take(1) as usize;
                let p2 = pre.decode(bits)?;
                if p2 > 17 {
                    return Err(CodecError::Corrupt("invalid pretree run"));
                }
                (run, ((cur as u32 + 17 - p2) % 17) as u8)
            }
        };
        lens.get_mut(i..i + run)
            .ok_or(CodecError::Corrupt("code length overrun"))?
            .fill(v);
        i += run;
    }
    Ok(())
}

/// Copy an LZ77 match of `len` bytes from `pos - off` to `pos`, with LZ
/// semantics for overlapping copies. The caller validated `1 <= off <= pos`
/// and `pos + len <= out.len()`. When there is slack after the match, copies
/// use whole 16/8-byte chunks and may scribble past the match end; those
/// bytes are rewritten later because every output byte is produced in order.
#[inline(always)]
fn copy_match(out: &mut [u8], pos: usize, off: usize, len: usize) {
    let src = pos - off;
    let end = pos + len;
    if end + 16 <= out.len() {
        if off == 1 {
            let b = out[src];
            out[pos..end].fill(b);
            return;
        }
        if off >= 8 {
            let mut s = src;
            let mut d = pos;
            loop {
                let mut t = [0u8; 8];
                t.copy_from_slice(&out[s..s + 8]);
                out[d..d + 8].copy_from_slice(&t);
                d += 8;
                s += 8;
                if d >= end {
                    break;
                }
            }
            return;
        }
    }
    if off >= len {
        out.copy_within(src..src + len, pos);
    } else {
        for i in pos..end {
            out[i] = out[i - off];
        }
    }
}

/// Find the next 0xE8 byte at or after `i` and before `limit`. Skips 32
/// bytes per step with an "any byte equal" test that LLVM turns into SIMD
/// compares, then locates the byte with a word-wise zero-byte test.
#[inline(always)]
fn find_e8(data: &[u8], mut i: usize, limit: usize) -> Option<usize> {
    let limit = limit.min(data.len());
    while i + 32 <= limit {
        if let Some(c) = data[i..].first_chunk::<32>() {
            if c.iter().fold(false, |a, &b| a | (b == 0xE8)) {
                // Locate it word by word: in the zero-byte test below the
                // lowest flagged byte is always a true match.
                const LO: u64 = 0x0101_0101_0101_0101;
                const HI: u64 = 0x8080_8080_8080_8080;
                for (k, w) in c.chunks_exact(8).enumerate() {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(w);
                    let x = u64::from_le_bytes(a) ^ (0xE8 * LO);
                    let z = x.wrapping_sub(LO) & !x & HI;
                    if z != 0 {
                        return Some(i + 8 * k + (z.trailing_zeros() / 8) as usize);
                    }
                }
            }
        }
        i += 32;
    }
    while i < limit {
        if data[i] == 0xE8 {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Call `f` with the 4-byte operand and position of every E8 byte the
/// translation covers (none starting in the last 10 bytes; after each E8
/// examined, translated or not, its operand is skipped) and store what it
/// returns as the new operand.
#[inline(always)]
fn each_e8(data: &mut [u8], mut f: impl FnMut(i32, i32) -> Option<i32>) {
    if data.len() <= 10 {
        return;
    }
    let limit = data.len() - 10;
    let mut i = 0;
    while let Some(p) = find_e8(data, i, limit) {
        let t = &mut data[p + 1..p + 5];
        if let Some(v) = f(i32::from_le_bytes([t[0], t[1], t[2], t[3]]), p as i32) {
            t.copy_from_slice(&v.to_le_bytes());
        }
        i = p + 5;
    }
}

/// Undo the E8 (x86 CALL) translation the encoder applied: absolute targets
/// back to relative ones.
fn undo_e8(data: &mut [u8]) {
    each_e8(data, |abs, ip| {
        if abs >= 0 {
            (abs < E8_FILE_SIZE).then_some(abs - ip)
        } else {
            (abs >= -ip).then_some(abs + E8_FILE_SIZE)
        }
    });
}

/// Apply the E8 translation before encoding: relative CALL targets become
/// absolute, the exact inverse of [`undo_e8`].
fn do_e8(data: &mut [u8]) {
    each_e8(data, |rel, ip| {
        (rel >= -ip && rel < E8_FILE_SIZE).then(|| {
            if rel < E8_FILE_SIZE - ip {
                rel + ip
            } else {
                rel - E8_FILE_SIZE
            }
        })
    });
}

thread_local! {
    static DECODER: std::cell::RefCell<Decoder> = std::cell::RefCell::new(Decoder::new());
}

/// Decode one WIM LZX chunk whose window follows from `output.len()` (see
/// [`Decoder::decompress`]), using a per-thread reusable [`Decoder`].
pub fn decompress(input: &[u8], output: &mut [u8]) -> Result<(), CodecError> {
    decompress_chunk(input, output, output.len())
}

/// Decode one chunk of a resource with chunk size `chunk_size` (see
/// [`Decoder::decompress_chunk`]), using a per-thread reusable [`Decoder`].
pub fn decompress_chunk(
    input: &[u8],
    output: &mut [u8],
    chunk_size: usize,
) -> Result<(), CodecError> {
    DECODER.with(|d| match d.try_borrow_mut() {
        Ok(mut d) => d.decompress_chunk(input, output, chunk_size),
        Err(_) => Decoder::new().decompress_chunk(input, output, chunk_size),
    })
}

// ---------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------

/// Most hash-chain buckets (log2) for 3-byte hashes; small chunks use fewer
/// (16 for 32 KiB) so that resetting the table stays cheap, large ones use
/// this many so that chains stay short and cache misses few.
const MAX_HASH_BITS: u32 = 19;
/// Chain positions examined per match search.
const MAX_CHAIN: usize = 32;
/// Chain limit for chunks whose bytes look random (already-compressed
/// files): matches are rare there and every chain step is a cache miss.
const RANDOM_CHAIN: usize = 6;
/// A match this long is taken without searching further.
const NICE_LEN: usize = 96;
/// Items (literals/matches) are grouped into blocks of about this many
/// uncompressed bytes; each block gets its own Huffman codes.
const BLOCK_TARGET: usize = 65536;
/// Marker bit for match items in the parse buffer.
const ITEM_MATCH: u32 = 1 << 31;
/// A chunk is parsed again near-optimally ([`optimal`]) when the lazy parse
/// found a match every this many tenths of a byte or more often: dense short
/// matches are where the lazy parse's choices leave the most behind. On
/// /usr/share (32 KiB chunks of each file) the 13 % of the input this picks
/// holds a third of what the near-optimal parse would save on all of it
/// (on shared libraries: 22 % of the input, 30 % of the saving). Denser
/// settings trade capture time for size: a match every 8, 8.5, 8.7 and 9
/// bytes took an LZX capture of /usr/share from 0.42x wimlib's time at
/// 1.0256x its size to 0.52x at 1.0203x, 0.58x at 1.0184x, 0.63x at
/// 1.0173x and 0.71x at 1.0157x.
const OPTIMAL_SPACING_TENTHS: usize = 85;
/// Larger chunks keep the lazy parse: the near-optimal parse's tables grow
/// with the chunk (up to 33 gathered matches a position), and WIMs that
/// Windows Setup takes use 32 KiB chunks anyway.
const OPTIMAL_MAX_CHUNK: usize = 1 << 16;
/// Failed searches in a row before the parser starts skipping positions; one
/// more position is skipped per `1 << SKIP_SHIFT` further failures.
const SKIP_SHIFT: u32 = 8;

/// Offset slot of a formatted offset (offset + 2, or 0..2 for R0..R2).
#[inline]
fn slot_of(formatted: u32) -> usize {
    if formatted < 4 {
        formatted as usize
    } else if formatted < 1 << 18 {
        let bit = 31 - formatted.leading_zeros();
        (2 * bit + ((formatted >> (bit - 1)) & 1)) as usize
    } else {
        36 + ((formatted - (1 << 18)) >> 17) as usize
    }
}

/// MSB-first writer of 16-bit little-endian words.
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    #[inline(always)]
    fn put(&mut self, v: u32, nbits: u32) {
        self.acc = (self.acc << nbits) | v as u64;
        self.n += nbits;
        while self.n >= 16 {
            self.n -= 16;
            let w = (self.acc >> self.n) as u16;
            self.out.extend_from_slice(&w.to_le_bytes());
        }
    }

    /// Bits written so far.
    fn bits(&self) -> usize {
        self.out.len() * 8 + self.n as usize
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            let pad = 16 - self.n;
            self.put(0, pad);
        }
        self.out
    }
}

/// Length-limited Huffman code lengths for `freqs` (limit <= 16). Produces a
/// complete code whenever at least one symbol is used (a lone symbol gets a
/// partner of length 1), because wimlib rejects incomplete codes.
fn huffman_lengths(freqs: &[u32], limit: u32, lens: &mut [u8]) {
    lens.fill(0);
    let mut syms: Vec<(u32, u16)> = freqs
        .iter()
        .enumerate()
        .filter(|(_, &f)| f != 0)
        .map(|(i, &f)| (f, i as u16))
        .collect();
    match syms.len() {
        0 => return,
        1 => {
            let s = syms[0].1 as usize;
            lens[s] = 1;
            lens[if s == 0 { 1 } else { 0 }] = 1;
            return;
        }
        _ => {}
    }
    syms.sort_unstable();
    let n = syms.len();
    // Two-queue Huffman construction: leaves 0..n, internal nodes n..2n-1.
    let mut weight: Vec<u64> = Vec::with_capacity(2 * n);
    weight.extend(syms.iter().map(|&(f, _)| f as u64));
    let mut parent = vec![0usize; 2 * n - 1];
    let (mut leaf, mut node) = (0usize, n);
    for next in n..2 * n - 1 {
        let mut pick = || {
            if leaf < n && (node >= weight.len() || weight[leaf] <= weight[node]) {
                leaf += 1;
                leaf - 1
            } else {
                node += 1;
                node - 1
            }
        };
        let a = pick();
        let b = pick();
        parent[a] = next;
        parent[b] = next;
        let w = weight[a] + weight[b];
        weight.push(w);
    }
    // Depths, root (2n-2) first.
    let mut depth = vec![0u32; 2 * n - 1];
    for i in (0..2 * n - 2).rev() {
        depth[i] = depth[parent[i]] + 1;
    }
    // Clamp to the limit and repair the Kraft sum (units of 2^-limit).
    let full = 1u64 << limit;
    let mut l: Vec<u32> = depth[..n].iter().map(|&d| d.min(limit)).collect();
    let mut kraft: u64 = l.iter().map(|&d| full >> d).sum();
    // Over-full: lengthen the least frequent symbols that are still short.
    while kraft > full {
        let mut best = usize::MAX;
        for (i, &d) in l.iter().enumerate() {
            if d < limit && (best == usize::MAX || d > l[best]) {
                best = i;
            }
        }
        if best == usize::MAX {
            break;
        }
        kraft -= full >> (l[best] + 1);
        l[best] += 1;
    }
    // Under-full: shorten the most frequent of the longest codewords.
    while kraft < full {
        let maxl = *l.iter().max().unwrap_or(&1);
        if maxl <= 1 {
            break;
        }
        match (0..n).rev().find(|&i| l[i] == maxl) {
            Some(i) if kraft + (full >> maxl) <= full => {
                kraft += full >> maxl;
                l[i] -= 1;
            }
            _ => break,
        }
    }
    for (i, &(_, s)) in syms.iter().enumerate() {
        lens[s as usize] = l[i] as u8;
    }
}

/// Write code lengths `new[start..end]` delta coded against `prev` through a
/// freshly built pretree (run-length symbols 17, 18, 19 included).
fn write_lens(w: &mut BitWriter, prev: &[u8], new: &[u8]) {
    // (pretree symbol, extra bits value, extra bit count, second symbol)
    let mut items: Vec<(u8, u8, u8, u8)> = Vec::with_capacity(new.len());
    let mut freq = [0u32; PRE_SYMS];
    let delta = |i: usize| ((prev[i] as u32 + 17 - new[i] as u32) % 17) as u8;
    let mut i = 0;
    while i < new.len() {
        let v = new[i];
        let mut run = 1;
        while i + run < new.len() && new[i + run] == v {
            run += 1;
        }
        if v == 0 && run >= 20 {
            let r = run.min(51);
            items.push((18, (r - 20) as u8, 5, 0));
            freq[18] += 1;
            i += r;
        } else if v == 0 && run >= 4 {
            let r = run.min(19);
            items.push((17, (r - 4) as u8, 4, 0));
            freq[17] += 1;
            i += r;
        } else if run >= 4 {
            let r = run.min(5);
            let d = delta(i);
            items.push((19, (r - 4) as u8, 1, d));
            freq[19] += 1;
            freq[d as usize] += 1;
            i += r;
        } else {
            let d = delta(i);
            items.push((d, 0, 0, 0));
            freq[d as usize] += 1;
            i += 1;
        }
    }
    let mut plens = [0u8; PRE_SYMS];
    huffman_lengths(&freq, 15, &mut plens);
    let mut pcodes = [0u32; PRE_SYMS];
    canonical_codes(&plens, &mut pcodes);
    for &l in &plens {
        w.put(l as u32, 4);
    }
    for &(sym, extra, nextra, d) in &items {
        w.put(pcodes[sym as usize], plens[sym as usize] as u32);
        if nextra > 0 {
            w.put(extra as u32, nextra as u32);
        }
        if sym == 19 {
            w.put(pcodes[d as usize], plens[d as usize] as u32);
        }
    }
}

/// Reusable encoder buffers (hash chains, parse), so that compressing a
/// chunk does not allocate large tables every time.
pub struct Encoder {
    head: Vec<u32>,
    prev: Vec<u32>,
    items: Vec<u32>,
    buf: Vec<u8>,
    opt: optimal::Optimal,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

#[inline(always)]
fn hash3(b: &[u8], p: usize, bits: u32) -> usize {
    let v = (b[p] as u32) | (b[p + 1] as u32) << 8 | (b[p + 2] as u32) << 16;
    (v.wrapping_mul(0x9E37_79B1) >> (32 - bits)) as usize
}

/// Rough bit cost of coding a match, used to compare candidates.
#[inline(always)]
fn match_cost(formatted: u32) -> i32 {
    if formatted < 3 {
        7 + formatted as i32
    } else {
        9 + EXTRA_BITS[slot_of(formatted) & 63] as i32
    }
}

/// Estimated cost of a literal in 1/16 bits: the order-0 entropy of the
/// chunk, so that matches are valued against what literals really cost
/// (text literals are much cheaper than 8 bits).
fn literal_cost16(b: &[u8]) -> i32 {
    let mut hist = [0u32; 256];
    for &x in b {
        hist[x as usize] += 1;
    }
    let n = b.len().max(1) as f64;
    let h: f64 = hist
        .iter()
        .filter(|&&c| c != 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum();
    ((h * 16.0) as i32).clamp(3 * 16, 8 * 16)
}

/// Candidate match at one position: (length, formatted offset).
#[derive(Clone, Copy)]
struct Cand {
    len: usize,
    formatted: u32,
}

impl Cand {
    /// Bits saved (in 1/16 bits) compared with coding the bytes as
    /// literals of `lit16` sixteenths of a bit each.
    fn gain(&self, lit16: i32) -> i32 {
        if self.len == 0 {
            0
        } else {
            self.len as i32 * lit16 - 16 * match_cost(self.formatted)
        }
    }
}

impl Encoder {
    pub fn new() -> Self {
        Encoder {
            head: vec![u32::MAX; 1 << MAX_HASH_BITS],
            prev: Vec::new(),
            items: Vec::new(),
            buf: Vec::new(),
            opt: optimal::Optimal::default(),
        }
    }

    /// Compress one chunk of a resource whose chunk size is `chunk_size`
    /// (fixing the LZX window). `None` if the result would not be smaller
    /// than the input (the chunk is then stored raw) or the sizes are invalid.
    pub fn compress_chunk(&mut self, input: &[u8], chunk_size: usize) -> Option<Vec<u8>> {
        let n = input.len();
        if n == 0 {
            return None;
        }
        let order = window_order(chunk_size.max(n))?;
        let num_main = num_main_syms(order);
        // Offsets up to window - 3 have an offset slot.
        let max_off = (1usize << order) - 3;
        self.buf.clear();
        self.buf.extend_from_slice(input);
        do_e8(&mut self.buf);
        let matches = self.parse(max_off);
        let mut best = self.write_blocks(order, num_main, n * 8);
        if n <= OPTIMAL_MAX_CHUNK && matches * OPTIMAL_SPACING_TENTHS >= n * 10 {
            self.opt
                .parse(&self.buf, max_off, num_main, &mut self.items);
            let limit = best.as_ref().map_or(n, Vec::len) * 8;
            if let Some(out) = self.write_blocks(order, num_main, limit) {
                if best.as_ref().is_none_or(|b| out.len() < b.len()) {
                    best = Some(out);
                }
            }
        }
        best.filter(|out| out.len() < n)
    }

    /// Greedy/lazy parse of `self.buf` into `self.items`, tracking the
    /// recent-offset queue exactly as the decoder will. Returns how many
    /// matches it took.
    fn parse(&mut self, max_off: usize) -> usize {
        let b = &self.buf;
        let n = b.len();
        self.items.clear();
        let hash_bits = (n.next_power_of_two().trailing_zeros() + 1).clamp(16, MAX_HASH_BITS);
        self.head[..1 << hash_bits].fill(u32::MAX);
        self.prev.clear();
        self.prev.resize(n, u32::MAX);
        let head = &mut self.head;
        let prev = &mut self.prev;
        let items = &mut self.items;
        let mut rec = [1u32; 3];
        let mut inserted = 0usize;
        let lit16 = literal_cost16(b); // positions < inserted are in the chains
        let max_chain = if lit16 >= 126 {
            RANDOM_CHAIN
        } else {
            MAX_CHAIN
        };

        let insert_upto =
            |upto: usize, inserted: &mut usize, head: &mut Vec<u32>, prev: &mut Vec<u32>| {
                let lim = upto.min(n.saturating_sub(2));
                while *inserted < lim {
                    let p = *inserted;
                    let h = hash3(b, p, hash_bits);
                    prev[p] = head[h];
                    head[h] = p as u32;
                    *inserted += 1;
                }
            };

        // Best match at `p` given the recent offsets.
        let find = |p: usize, rec: &[u32; 3], head: &Vec<u32>, prev: &Vec<u32>| -> Cand {
            let max = (n - p).min(MAX_MATCH);
            let mut best = Cand {
                len: 0,
                formatted: 0,
            };
            if max < 2 {
                return best;
            }
            for (i, &r) in rec.iter().enumerate() {
                let r = r as usize;
                if r <= p && b[p] == b[p - r] {
                    let l = match_len(b, p - r, p, max);
                    let c = Cand {
                        len: l,
                        formatted: i as u32,
                    };
                    if l >= 2 && c.gain(lit16) > best.gain(lit16) {
                        best = c;
                    }
                }
            }
            if max < 3 || best.len >= NICE_LEN {
                return best;
            }
            let mut cand = head[hash3(b, p, hash_bits)];
            let mut chain = max_chain;
            let mut best_len = best.len.max(2);
            while cand != u32::MAX && chain > 0 {
                let c = cand as usize;
                let off = p - c;
                if off > max_off {
                    break;
                }
                if b[c + best_len.min(max - 1)] == b[p + best_len.min(max - 1)] {
                    let l = match_len(b, c, p, max);
                    if l >= 3 {
                        let cd = Cand {
                            len: l,
                            formatted: off as u32 + 2,
                        };
                        if cd.gain(lit16) > best.gain(lit16) {
                            best = cd;
                            best_len = best_len.max(l);
                            if l >= NICE_LEN || l == max {
                                break;
                            }
                        }
                    }
                }
                cand = prev[c];
                chain -= 1;
            }
            best
        };

        let mut p = 0usize;
        let mut pending: Option<Cand> = None;
        let mut misses = 0usize;
        let mut matches = 0usize;
        while p < n {
            insert_upto(p, &mut inserted, head, prev);
            let cur = match pending.take() {
                Some(c) => c,
                None => find(p, &rec, head, prev),
            };
            if cur.len < 2 || cur.gain(lit16) <= 0 {
                // After a long run of failed searches, search only every
                // few positions (and leave the skipped ones out of the
                // chains): incompressible data (already compressed files)
                // then costs a fraction of a full parse, while one match
                // found resets the stride.
                misses += 1;
                let end = (p + 1 + (misses >> SKIP_SHIFT)).min(n);
                items.extend(b[p..end].iter().map(|&x| u32::from(x)));
                p = end;
                inserted = inserted.max(p - 1);
                continue;
            }
            misses = 0;
            // Lazy evaluation: would starting one byte later be better?
            if cur.len < NICE_LEN && p + 1 < n {
                insert_upto(p + 1, &mut inserted, head, prev);
                let next = find(p + 1, &rec, head, prev);
                if next.gain(lit16) > cur.gain(lit16) + 32 {
                    items.push(b[p] as u32);
                    p += 1;
                    pending = Some(next);
                    continue;
                }
            }
            // Emit the match, updating the recent offsets like the decoder.
            // An explicit offset equal to a recent one is coded as a repeat.
            let mut f = cur.formatted;
            if f >= 3 {
                if let Some(i) = rec.iter().position(|&r| r == f - 2) {
                    f = i as u32;
                }
            }
            if f < 3 {
                rec.swap(f as usize, 0);
            } else {
                rec[2] = rec[1];
                rec[1] = rec[0];
                rec[0] = f - 2;
            }
            items.push(ITEM_MATCH | ((cur.len - 2) as u32) << 22 | f);
            matches += 1;
            p += cur.len;
        }
        matches
    }

    /// Split the parse into blocks and write them; `None` as soon as the
    /// symbols alone would take `limit_bits` or more (the chunk is then
    /// stored raw, and most of an incompressible chunk's writing is saved).
    fn write_blocks(&self, order: u32, num_main: usize, limit_bits: usize) -> Option<Vec<u8>> {
        let mut w = BitWriter {
            out: Vec::with_capacity(self.buf.len() / 2 + 64),
            acc: 0,
            n: 0,
        };
        let mut main_prev = [0u8; MAX_MAIN_SYMS];
        let mut len_prev = [0u8; LEN_SYMS];
        let items = &self.items;
        let mut i = 0;
        while i < items.len() {
            let start = i;
            let mut bytes = 0usize;
            while i < items.len() && bytes < BLOCK_TARGET {
                let it = items[i];
                bytes += if it & ITEM_MATCH != 0 {
                    ((it >> 22) & 0xff) as usize + 2
                } else {
                    1
                };
                i += 1;
            }
            write_block(
                &mut w,
                &items[start..i],
                bytes,
                order,
                num_main,
                &mut main_prev,
                &mut len_prev,
                limit_bits,
            )?;
        }
        Some(w.finish())
    }
}

/// Write one verbatim or aligned-offset block (whichever is smaller).
/// `None`, before writing it, if the writer would pass `limit_bits` with
/// the block's symbols alone.
#[allow(clippy::too_many_arguments)]
fn write_block(
    w: &mut BitWriter,
    items: &[u32],
    bytes: usize,
    order: u32,
    num_main: usize,
    main_prev: &mut [u8; MAX_MAIN_SYMS],
    len_prev: &mut [u8; LEN_SYMS],
    limit_bits: usize,
) -> Option<()> {
    let mut main_freq = [0u32; MAX_MAIN_SYMS];
    let mut len_freq = [0u32; LEN_SYMS];
    let mut al_freq = [0u32; ALIGNED_SYMS];
    let mut verbatim_low3 = 0u64; // bits of low-3 extra bits in verbatim mode
    let mut extra_bits = 0u64; // all extra offset bits in verbatim mode
    for &it in items {
        if it & ITEM_MATCH == 0 {
            main_freq[it as usize] += 1;
            continue;
        }
        let l = ((it >> 22) & 0xff) as usize;
        let f = it & 0x3f_ffff;
        let slot = slot_of(f);
        main_freq[NUM_CHARS + slot * NUM_LEN_HEADERS + l.min(NUM_PRIMARY_LENS)] += 1;
        if l >= NUM_PRIMARY_LENS {
            len_freq[l - NUM_PRIMARY_LENS] += 1;
        }
        if slot >= 3 {
            extra_bits += u64::from(EXTRA_BITS[slot]);
        }
        if slot >= 3 && EXTRA_BITS[slot] >= 3 {
            al_freq[(f & 7) as usize] += 1;
            verbatim_low3 += 3;
        }
    }
    let mut main_lens = [0u8; MAX_MAIN_SYMS];
    huffman_lengths(&main_freq[..num_main], 16, &mut main_lens[..num_main]);
    let mut len_lens = [0u8; LEN_SYMS];
    huffman_lengths(&len_freq, 16, &mut len_lens);
    let mut al_lens = [0u8; ALIGNED_SYMS];
    huffman_lengths(&al_freq, 7, &mut al_lens);
    let aligned_cost: u64 = 24
        + al_freq
            .iter()
            .zip(al_lens.iter())
            .map(|(&f, &l)| f as u64 * l as u64)
            .sum::<u64>();
    let aligned = verbatim_low3 > aligned_cost;
    let weigh = |freq: &[u32], lens: &[u8]| -> u64 {
        freq.iter()
            .zip(lens)
            .map(|(&f, &l)| u64::from(f) * u64::from(l))
            .sum()
    };
    let symbol_bits = weigh(&main_freq[..num_main], &main_lens[..num_main])
        + weigh(&len_freq, &len_lens)
        + extra_bits
        - if aligned {
            verbatim_low3 + 24 - aligned_cost
        } else {
            0
        };
    if w.bits() + symbol_bits as usize >= limit_bits {
        return None;
    }

    // Header.
    w.put(if aligned { 2 } else { 1 }, 3);
    if bytes == DEFAULT_BLOCK_SIZE {
        w.put(1, 1);
    } else {
        w.put(0, 1);
        if order >= 16 {
            w.put((bytes >> 8) as u32 & 0xffff, 16);
            w.put(bytes as u32 & 0xff, 8);
        } else {
            w.put(bytes as u32 & 0xffff, 16);
        }
    }
    if aligned {
        for &l in &al_lens {
            w.put(l as u32, 3);
        }
    }
    write_lens(w, &main_prev[..NUM_CHARS], &main_lens[..NUM_CHARS]);
    write_lens(
        w,
        &main_prev[NUM_CHARS..num_main],
        &main_lens[NUM_CHARS..num_main],
    );
    write_lens(w, &len_prev[..], &len_lens[..]);
    main_prev[..num_main].copy_from_slice(&main_lens[..num_main]);
    len_prev.copy_from_slice(&len_lens);

    let mut main_codes = [0u32; MAX_MAIN_SYMS];
    canonical_codes(&main_lens[..num_main], &mut main_codes[..num_main]);
    let mut len_codes = [0u32; LEN_SYMS];
    canonical_codes(&len_lens, &mut len_codes);
    let mut al_codes = [0u32; ALIGNED_SYMS];
    canonical_codes(&al_lens, &mut al_codes);

    for &it in items {
        if it & ITEM_MATCH == 0 {
            let s = it as usize;
            w.put(main_codes[s], main_lens[s] as u32);
            continue;
        }
        let l = ((it >> 22) & 0xff) as usize;
        let f = it & 0x3f_ffff;
        let slot = slot_of(f);
        let s = NUM_CHARS + slot * NUM_LEN_HEADERS + l.min(NUM_PRIMARY_LENS);
        w.put(main_codes[s], main_lens[s] as u32);
        if l >= NUM_PRIMARY_LENS {
            let ls = l - NUM_PRIMARY_LENS;
            w.put(len_codes[ls], len_lens[ls] as u32);
        }
        if slot >= 3 {
            let extra = EXTRA_BITS[slot] as u32;
            let v = f - SLOT_BASE[slot];
            if aligned && extra >= 3 {
                w.put(v >> 3, extra - 3);
                let a = (v & 7) as usize;
                w.put(al_codes[a], al_lens[a] as u32);
            } else {
                w.put(v, extra);
            }
        }
    }
    Some(())
}

thread_local! {
    static ENCODER: std::cell::RefCell<Encoder> = std::cell::RefCell::new(Encoder::new());
}

/// Compress one chunk, taking the LZX window from `input.len()` (right for
/// every full-size chunk and for all chunks of 32 KiB-chunk resources; use
/// [`compress_chunk`] for a short final chunk of a larger-chunk resource).
pub fn compress(input: &[u8]) -> Option<Vec<u8>> {
    compress_chunk(input, input.len())
}

/// Compress one chunk of a resource with chunk size `chunk_size`, using a
/// per-thread reusable [`Encoder`]. `None` if the output would not be
/// strictly smaller than the input.
pub fn compress_chunk(input: &[u8], chunk_size: usize) -> Option<Vec<u8>> {
    ENCODER.with(|e| match e.try_borrow_mut() {
        Ok(mut e) => e.compress_chunk(input, chunk_size),
        Err(_) => Encoder::new().compress_chunk(input, chunk_size),
    })
}

#[cfg(test)]
mod bench {
    /// `LZX_BENCH_FILE=... cargo test --release --lib codec::lzx::bench -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn chunks_32k() {
        let mut enc = super::Encoder::new();
        crate::codec::bench_chunks("lzx", "LZX_BENCH_FILE", |c| {
            enc.compress_chunk(c, 32768).map(|o| o.len())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output of the lazy parse alone.
    fn lazy_only(enc: &mut Encoder, input: &[u8]) -> (usize, Vec<u8>) {
        let order = window_order(input.len().max(32768)).unwrap();
        enc.buf.clear();
        enc.buf.extend_from_slice(input);
        do_e8(&mut enc.buf);
        let matches = enc.parse((1 << order) - 3);
        let out = enc
            .write_blocks(order, num_main_syms(order), usize::MAX)
            .unwrap();
        (matches, out)
    }

    /// A pseudo-random number generator for test data.
    fn lcg(x: &mut u64) -> u64 {
        *x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        *x >> 33
    }

    /// Words of a small vocabulary, each with a number that varies: a
    /// short match every eight bytes or so, like the package lists and
    /// message catalogues of /usr/share.
    fn word_list(n: usize) -> Vec<u8> {
        let words = [
            "lib", "perl", "python3", "data", "dev", "common", "utils", "core",
        ];
        let mut x = 7u64;
        let mut s = String::new();
        while s.len() < n {
            let w = words[lcg(&mut x) as usize % words.len()];
            s += &format!("{w}{} ", lcg(&mut x) % 100);
        }
        s.into_bytes()[..n].to_vec()
    }

    /// Text dense in matches takes the near-optimal parse: smaller than the
    /// lazy parse, and it decodes to the input. Noise keeps the lazy parse
    /// (and is stored raw).
    #[test]
    fn dense_chunks_are_parsed_again() {
        let text = word_list(32768);
        let mut enc = Encoder::new();
        let (matches, lazy) = lazy_only(&mut enc, &text);
        assert!(matches * OPTIMAL_SPACING_TENTHS >= text.len() * 10);
        let out = enc.compress_chunk(&text, 32768).unwrap();
        assert!(
            out.len() < lazy.len(),
            "{} vs lazy {}",
            out.len(),
            lazy.len()
        );
        let mut back = vec![0; text.len()];
        decompress(&out, &mut back).unwrap();
        assert_eq!(back, text);

        let mut x = 1u64;
        let noise: Vec<u8> = (0..32768).map(|_| lcg(&mut x) as u8).collect();
        let (matches, _) = lazy_only(&mut enc, &noise);
        assert!(matches * OPTIMAL_SPACING_TENTHS < noise.len() * 10);
        assert!(enc.compress_chunk(&noise, 32768).is_none());
    }
}
