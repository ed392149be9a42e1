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

/// Number of literal symbols in the main code.
const NUM_CHARS: usize = 256;
/// Shortest match LZX can express.
const MIN_MATCH: usize = 2;
/// Longest match LZX can express (7 primary lengths + 249 length symbols + 2).
#[allow(dead_code)]
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

/// Number of offset slots for a window. The largest offset that can occur is
/// `window - 3` (a match of length 2 can't start at offset `window - 2`...
/// wimlib documents this quirk), so the count is the first slot whose base
/// exceeds the largest formatted offset.
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
    /// Valid bits are left-justified; bits below `avail` are zero.
    buf: u64,
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
        self.avail -= n;
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
        self.pos * 8 - self.avail as usize
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
/// Entry flag: no codeword maps here (incomplete code).
const F_INVALID: u32 = 0x200;
const INVALID: u32 = F_INDIRECT | F_INVALID;

/// Canonical Huffman decode table: a root table indexed by the next
/// `log2(N)` bits and second-level tables for longer codewords.
///
/// Leaf entry: `sym << 16 | len`. Pointer entry: `base << 16 | F_INDIRECT |
/// subtable_bits`. Incomplete codes are accepted; their unused space is
/// marked invalid and only fails if actually hit, while over-subscribed codes
/// are rejected when the table is built.
struct Table<const N: usize> {
    root: [u32; N],
    sub: Vec<u32>,
}

impl<const N: usize> Table<N> {
    const BITS: u32 = N.trailing_zeros();

    fn new(max_syms: usize) -> Box<Self> {
        Box::new(Table {
            root: [INVALID; N],
            sub: Vec::with_capacity(max_syms << (MAX_CODE_LEN as u32 - Self::BITS.min(16))),
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
                            (base as u32) << 16 | F_INDIRECT | sb;
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
            bits.consume(e & 0x1f);
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
        if e & F_INVALID != 0 {
            return Err(BAD);
        }
        let sb = e & 0x1f;
        let idx = (e >> 16) as usize + ((buf << Self::BITS) >> (64 - sb)) as usize;
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
        bits.refill();
        let mut sym = main.decode(bits)? as usize;
        if sym < NUM_CHARS {
            // Literal; a second symbol fits in the remaining >= 32 bits.
            output[pos] = sym as u8;
            pos += 1;
            if pos >= end {
                break;
            }
            sym = main.decode(bits)? as usize;
            if sym < NUM_CHARS {
                output[pos] = sym as u8;
                pos += 1;
                continue;
            }
            bits.refill();
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
        if off >= 16 {
            let mut s = src;
            let mut d = pos;
            loop {
                let mut t = [0u8; 16];
                t.copy_from_slice(&out[s..s + 16]);
                out[d..d + 16].copy_from_slice(&t);
                d += 16;
                s += 16;
                if d >= end {
                    break;
                }
            }
            return;
        }
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

/// Find the next 0xE8 byte at or after `i` and before `limit`.
#[inline(always)]
fn find_e8(data: &[u8], mut i: usize, limit: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    while i + 8 <= limit {
        let mut a = [0u8; 8];
        a.copy_from_slice(&data[i..i + 8]);
        let x = u64::from_le_bytes(a) ^ (0xE8 * LO);
        let z = x.wrapping_sub(LO) & !x & HI;
        if z != 0 {
            return Some(i + (z.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while i < limit {
        if data[i] == 0xE8 {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Undo the E8 (x86 CALL) translation the encoder applied: absolute targets
/// back to relative ones. After every E8 byte examined (translated or not)
/// its 4 operand bytes are skipped. Calls starting in the last 10 bytes are
/// left alone.
fn undo_e8(data: &mut [u8]) {
    if data.len() <= 10 {
        return;
    }
    let limit = data.len() - 10;
    let mut i = 0;
    while let Some(p) = find_e8(data, i, limit) {
        let t = &mut data[p + 1..p + 5];
        let abs = i32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        let ip = p as i32;
        if abs >= 0 {
            if abs < E8_FILE_SIZE {
                t.copy_from_slice(&(abs - ip).to_le_bytes());
            }
        } else if abs >= -ip {
            t.copy_from_slice(&(abs + E8_FILE_SIZE).to_le_bytes());
        }
        i = p + 5;
    }
}

/// Apply the E8 translation before encoding: relative CALL targets become
/// absolute, the exact inverse of [`undo_e8`].
#[allow(dead_code)]
fn do_e8(data: &mut [u8]) {
    if data.len() <= 10 {
        return;
    }
    let limit = data.len() - 10;
    let mut i = 0;
    while let Some(p) = find_e8(data, i, limit) {
        let t = &mut data[p + 1..p + 5];
        let rel = i32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        let ip = p as i32;
        if rel >= -ip && rel < E8_FILE_SIZE {
            let abs = if rel < E8_FILE_SIZE - ip {
                rel + ip
            } else {
                rel - E8_FILE_SIZE
            };
            t.copy_from_slice(&abs.to_le_bytes());
        }
        i = p + 5;
    }
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

/// Placeholder until the encoder exists.
pub fn compress_chunk(_input: &[u8], _chunk_size: usize) -> Option<Vec<u8>> {
    None
}

/// Placeholder until the encoder exists.
pub fn compress(_input: &[u8]) -> Option<Vec<u8>> {
    None
}
