//! LZX (WIM variant) codec tests, with wimlib (libwim.so.15) as the oracle.

mod common;
use common::libwim;

use proptest::prelude::*;
use wimfs::codec::lzx;
use wimfs::codec::CodecError;

/// Every chunk size WIM allows for LZX.
const CHUNK_SIZES: [usize; 7] = [
    1 << 15,
    1 << 16,
    1 << 17,
    1 << 18,
    1 << 19,
    1 << 20,
    1 << 21,
];

/// Deterministic pseudo-random bytes (xorshift), for large fixed inputs.
fn prng_bytes(n: usize, mut seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.extend_from_slice(&seed.to_le_bytes());
    }
    v.truncate(n);
    v
}

/// Text-like data: words from a small vocabulary.
fn text_like(n: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "the ",
        "window ",
        "chunk ",
        "LZX ",
        "imaging ",
        "format\n",
        "of ",
        "a ",
        "compressed ",
        "resource, ",
        "Huffman ",
        "match ",
        "offset ",
        "and ",
        "is ",
        "file ",
    ];
    let r = prng_bytes(n, seed);
    let mut v = Vec::with_capacity(n + 16);
    let mut i = 0;
    while v.len() < n {
        v.extend_from_slice(WORDS[(r[i % r.len().max(1)] & 15) as usize].as_bytes());
        i += 1;
    }
    v.truncate(n);
    v
}

/// Words with numbers that vary: a short match every eight bytes or so,
/// dense enough for the encoder's near-optimal parse.
fn numbered_words(n: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 8] = [
        "lib", "perl", "python3", "data", "dev", "common", "utils", "core",
    ];
    let r = prng_bytes(n, seed);
    let mut v = Vec::with_capacity(n + 16);
    let mut i = 0;
    while v.len() < n {
        let (w, d) = (r[i % r.len()], r[(i + 1) % r.len()]);
        v.extend_from_slice(format!("{}{} ", WORDS[(w & 7) as usize], d % 100).as_bytes());
        i += 2;
    }
    v.truncate(n);
    v
}

/// x86-code-like data: random opcodes with many E8 calls to nearby targets.
fn x86_like(n: usize, seed: u64) -> Vec<u8> {
    let r = prng_bytes(n + 8, seed);
    let mut v = Vec::with_capacity(n + 8);
    let mut i = 0;
    while v.len() < n {
        let b = r[i % r.len()];
        i += 1;
        if b < 40 {
            let rel = (r[i % r.len()] as i32 - 128) * 37;
            v.push(0xE8);
            v.extend_from_slice(&rel.to_le_bytes());
        } else if b < 60 {
            v.extend_from_slice(&[0x48, 0x89, 0xE5]);
        } else {
            v.push(b & 0x7F);
        }
    }
    v.truncate(n);
    v
}

/// Decode with our decoder at the given chunk size.
fn ours(comp: &[u8], n: usize, chunk: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![0u8; n];
    lzx::decompress_chunk(comp, &mut out, chunk)?;
    Ok(out)
}

/// wimlib compress + our decode must give back the input.
fn check_wimlib_roundtrip(data: &[u8], chunk: usize, level: u32) {
    if !libwim::available() || data.is_empty() {
        return;
    }
    if let Some(c) = libwim::compress(libwim::LZX, chunk, level, data) {
        let got = ours(&c, data.len(), chunk).expect("our decoder rejected wimlib output");
        assert!(
            got == data,
            "decode mismatch (len {}, chunk {chunk})",
            data.len()
        );
    }
}

/// Our compress must decode with wimlib and with our decoder.
fn check_encoder_roundtrip(data: &[u8], chunk: usize) {
    let Some(c) = lzx::compress_chunk(data, chunk) else {
        return;
    };
    assert!(c.len() < data.len());
    let got = ours(&c, data.len(), chunk).expect("our decoder rejected our output");
    assert!(got == data, "self roundtrip mismatch (len {})", data.len());
    if libwim::available() {
        let w = libwim::decompress(libwim::LZX, chunk, &c, data.len())
            .expect("wimlib rejected our output");
        assert!(w == data, "wimlib decodes our output wrongly");
    }
}

/// A stream holding one uncompressed block, built by hand.
fn uncompressed_stream(data: &[u8], chunk: usize) -> Vec<u8> {
    let order = chunk.next_power_of_two().trailing_zeros().max(15);
    let mut bits: Vec<bool> = vec![false, true, true]; // type 3
    let n = data.len();
    if n == 32768 {
        bits.push(true);
    } else {
        bits.push(false);
        let nb = if order >= 16 { 24 } else { 16 };
        for i in (0..nb).rev() {
            bits.push((n >> i) & 1 == 1);
        }
    }
    // 1..16 bits of padding to the next 16-bit boundary.
    let pad = 16 - bits.len() % 16;
    bits.extend(std::iter::repeat_n(false, pad));
    let mut out = Vec::new();
    for w in bits.chunks(16) {
        let mut v = 0u16;
        for &b in w {
            v = (v << 1) | b as u16;
        }
        out.extend_from_slice(&v.to_le_bytes());
    }
    for r in [1u32, 2, 3] {
        out.extend_from_slice(&r.to_le_bytes());
    }
    out.extend_from_slice(data);
    if n % 2 == 1 {
        out.push(0);
    }
    out
}

/// What an LZX decoder must output for `data` stored in uncompressed
/// blocks: the E8 (x86 CALL) translation is undone on every chunk, stored
/// blocks included. Written from the format's description, independently of
/// the decoder: an E8 byte at position `i` below `len - 10` is followed by a
/// 32-bit target; one in `-i .. 12_000_000` was made absolute by the
/// encoder and becomes relative again (`abs - i`, or `abs + 12_000_000` if
/// negative); the four target bytes are skipped either way.
fn undo_e8_reference(data: &[u8]) -> Vec<u8> {
    const FILE_SIZE: i64 = 12_000_000;
    let mut d = data.to_vec();
    let mut i = 0usize;
    while i + 10 < d.len() {
        if d[i] != 0xE8 {
            i += 1;
            continue;
        }
        let abs = i32::from_le_bytes(d[i + 1..i + 5].try_into().unwrap()) as i64;
        let ip = i as i64;
        if abs >= -ip && abs < FILE_SIZE {
            let rel = if abs >= 0 { abs - ip } else { abs + FILE_SIZE };
            d[i + 1..i + 5].copy_from_slice(&(rel as i32).to_le_bytes());
        }
        i += 5;
    }
    d
}

#[test]
fn empty_output_is_ok() {
    let mut out = [0u8; 0];
    assert_eq!(lzx::decompress(&[], &mut out), Ok(()));
}

#[test]
fn one_byte_uncompressed_block_exact() {
    let s = uncompressed_stream(b"A", 32768);
    assert_eq!(
        s,
        [0x00, 0x60, 0x00, 0x10, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, b'A', 0]
    );
    assert_eq!(ours(&s, 1, 32768).unwrap(), b"A");
    if libwim::available() {
        assert_eq!(libwim::decompress(libwim::LZX, 32768, &s, 1).unwrap(), b"A");
    }
}

#[test]
fn uncompressed_blocks_match_wimlib() {
    for &chunk in &CHUNK_SIZES {
        for n in [1usize, 2, 11, 32767, 32768, 40001] {
            let n = n.min(chunk);
            let data = x86_like(n, n as u64 + chunk as u64);
            let s = uncompressed_stream(&data, chunk);
            let got = ours(&s, n, chunk).unwrap();
            assert!(got == undo_e8_reference(&data), "chunk {chunk} n {n}");
            if libwim::available() {
                let w = libwim::decompress(libwim::LZX, chunk, &s, n).unwrap();
                assert!(got == w, "chunk {chunk} n {n}: differs from wimlib");
            }
        }
    }
}

#[test]
fn maximum_size_chunk() {
    let chunk = 1 << 21;
    let mut data = text_like(chunk / 2, 7);
    data.extend_from_slice(&x86_like(chunk / 2, 8));
    check_wimlib_roundtrip(&data, chunk, 20);
    check_encoder_roundtrip(&data, chunk);
    // A full-size uncompressed block needs the 24-bit size field.
    assert!(
        undo_e8_reference(&data) != data,
        "the data has no E8 targets to translate"
    );
    let s = uncompressed_stream(&data, chunk);
    let got = ours(&s, chunk, chunk).unwrap();
    assert!(
        got == undo_e8_reference(&data),
        "full-size uncompressed block"
    );
    if libwim::available() {
        let w = libwim::decompress(libwim::LZX, chunk, &s, chunk).unwrap();
        assert!(got == w, "full-size uncompressed block differs from wimlib");
    }
}

/// Text dense in short matches goes through the near-optimal parse (the
/// encoder's unit test checks that it does): wimlib must read what it
/// writes, for full, short and final chunks of every window size, with
/// x86 calls mixed in (E8 translation); larger chunks keep the lazy parse.
#[test]
fn near_optimal_output_decodes_with_wimlib() {
    if !libwim::available() {
        common::skip("libwim.so.15 absent: no oracle for the near-optimal LZX output");
        return;
    }
    for (k, &chunk) in [32768usize, 65536].iter().enumerate() {
        let mut data = numbered_words(chunk, 11 + k as u64);
        let x86 = x86_like(chunk / 8, 5);
        data[chunk / 2..chunk / 2 + x86.len()].copy_from_slice(&x86);
        for n in [chunk, chunk / 2 + 7, 1000] {
            let c = lzx::compress_chunk(&data[..n], chunk).expect("text compresses");
            let w = libwim::decompress(libwim::LZX, chunk, &c, n).expect("wimlib reads it");
            assert!(
                w == data[..n],
                "wimlib decodes {n} bytes of chunk size {chunk}"
            );
            assert_eq!(ours(&c, n, chunk).unwrap(), &data[..n]);
        }
    }
}

#[test]
fn full_chunks_every_size() {
    for (i, &chunk) in CHUNK_SIZES.iter().enumerate() {
        let n = chunk.min(1 << 19);
        let mut data = text_like(n / 2, i as u64);
        data.extend_from_slice(&x86_like(n - n / 2, i as u64 + 100));
        check_wimlib_roundtrip(&data, chunk, 0);
        check_encoder_roundtrip(&data, chunk);
        // A chunk exactly the chunk size, decoded through the plain API.
        if chunk <= 1 << 16 {
            if let Some(c) = libwim::compress(libwim::LZX, chunk, 0, &data) {
                let mut out = vec![0u8; data.len()];
                lzx::decompress(&c, &mut out).unwrap();
                assert!(out == data);
            }
        }
    }
}

#[test]
fn truncated_streams_fail() {
    if !libwim::available() {
        return;
    }
    let data = text_like(30000, 3);
    let c = libwim::compress(libwim::LZX, 32768, 0, &data).unwrap();
    for cut in 1..c.len().min(64) {
        let r = ours(&c[..c.len() - cut], data.len(), 32768);
        assert!(r.is_err(), "cut {cut} decoded");
    }
    for cut in (0..c.len()).step_by(97) {
        assert!(ours(&c[..cut], data.len(), 32768).is_err());
    }
}

#[test]
fn output_size_errors() {
    let mut big = vec![0u8; (1 << 21) + 1];
    assert!(lzx::decompress(&[0; 16], &mut big).is_err());
    let mut out = [0u8; 100];
    assert!(lzx::decompress(&[], &mut out).is_err());
}

fn data_strategy(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..max),
        (1..max, any::<u64>()).prop_map(|(n, s)| text_like(n, s)),
        // Dense enough for the near-optimal parse, whole and with holes.
        (1..max, any::<u64>()).prop_map(|(n, s)| numbered_words(n, s)),
        (1..max, any::<u64>(), 2usize..40).prop_map(|(n, s, k)| {
            let mut v = numbered_words(n, s);
            let r = prng_bytes(n, s ^ 0xA5);
            for i in (0..n).step_by(k) {
                v[i] = r[i];
            }
            v
        }),
        (1..max, any::<u64>()).prop_map(|(n, s)| x86_like(n, s)),
        (proptest::collection::vec(any::<u8>(), 1..20), 1..max)
            .prop_map(|(p, n)| { p.iter().cycle().take(n).copied().collect() }),
        (1..max, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
        (1..max, any::<u64>()).prop_map(|(n, s)| {
            // Mixed: text with random holes and long-distance repeats.
            let mut v = text_like(n, s);
            let r = prng_bytes(n, s ^ 0x55);
            for i in (0..n).step_by(97) {
                v[i] = r[i];
            }
            v
        }),
    ]
}

proptest! {
    // Failing cases are saved next to this file
    // (tests/<name>.proptest-regressions, kept in git) and replayed first
    // on every later run.
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn wimlib_to_ours(data in data_strategy(70000), ci in 0usize..7, lvl in prop_oneof![Just(0u32), Just(20), Just(100)]) {
        let chunk = CHUNK_SIZES[ci].max(data.len());
        check_wimlib_roundtrip(&data, chunk, lvl);
    }

    #[test]
    fn ours_to_both(data in data_strategy(70000), ci in 0usize..7) {
        let chunk = CHUNK_SIZES[ci].max(data.len());
        check_encoder_roundtrip(&data, chunk);
    }

    #[test]
    fn random_input_never_panics(input in proptest::collection::vec(any::<u8>(), 0..3000), n in 1usize..100000, ci in 0usize..7) {
        let mut out = vec![0u8; n];
        let _ = lzx::decompress_chunk(&input, &mut out, CHUNK_SIZES[ci]);
    }

    #[test]
    fn bitflipped_streams_never_panic(data in data_strategy(40000), flips in proptest::collection::vec((any::<usize>(), 0u8..8), 1..8), ci in 0usize..3) {
        let chunk = CHUNK_SIZES[ci];
        let c = match lzx::compress_chunk(&data, chunk)
            .or_else(|| libwim::compress(libwim::LZX, chunk, 0, &data)) {
            Some(c) => c,
            None => return Ok(()),
        };
        let mut c = c;
        for (i, b) in flips {
            let i = i % c.len();
            c[i] ^= 1 << b;
        }
        let mut out = vec![0u8; data.len()];
        let _ = lzx::decompress_chunk(&c, &mut out, chunk);
    }
}
