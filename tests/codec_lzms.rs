//! LZMS codec tests: wimlib's compressor and decompressor (libwim.so.15) are
//! the oracle; our decoder must reproduce wimlib-compressed data exactly,
//! wimlib must decode what our encoder produces, and hostile input must fail
//! cleanly.

mod common;
use common::{libwim, Rng};

use proptest::prelude::*;
use wimfs::codec::lzms;
use wimfs::codec::CodecError;

/// English-like text from a small vocabulary.
fn text_like(n: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "lazy",
        "dog",
        "Windows",
        "image",
        "file",
        "system",
        "resource",
        "header",
        "compression",
        "solid",
        "chunk",
        "\n",
        ", ",
        "lorem",
        "ipsum",
        "dolor",
        "sit",
        "amet",
        "0123",
        "{",
        "}",
        "();",
    ];
    let mut r = Rng::new(seed);
    let mut v = Vec::with_capacity(n + 16);
    while v.len() < n {
        v.extend_from_slice(WORDS[r.index(WORDS.len())].as_bytes());
        v.push(b' ');
    }
    v.truncate(n);
    v
}

/// Fake x86-64 code: calls, RIP-relative loads, jumps, filler.
fn x86_like(n: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let targets: Vec<u32> = (0..32).map(|_| r.next_u64() as u32 & 0xFFFFF).collect();
    let mut v = Vec::with_capacity(n + 16);
    while v.len() < n {
        let pos = v.len() as u32;
        match r.index(8) {
            0 | 1 => {
                v.push(0xE8);
                let t = targets[r.index(targets.len())];
                v.extend_from_slice(&t.wrapping_sub(pos + 5).to_le_bytes());
            }
            2 => {
                v.extend_from_slice(&[0x48, 0x8D, 0x05]);
                let t = targets[r.index(targets.len())];
                v.extend_from_slice(&t.wrapping_sub(pos + 7).to_le_bytes());
            }
            3 => {
                v.extend_from_slice(&[0x48, 0x8B, 0x0D]);
                v.extend_from_slice(&(r.next_u64() as u32).to_le_bytes());
            }
            4 => {
                v.extend_from_slice(&[0xFF, 0x15]);
                let t = targets[r.index(targets.len())];
                v.extend_from_slice(&t.wrapping_sub(pos + 6).to_le_bytes());
            }
            5 => v.extend_from_slice(&[0xE9, 1, 2, 0, 0, 0xF0, 0x83, 0x05, 9, 9, 0, 0, 1]),
            6 => v.extend_from_slice(&[0x55, 0x48, 0x89, 0xE5, 0x4C, 0x8D, 0x15, 0, 1, 0, 0]),
            _ => v.push(r.next_u64() as u8),
        }
    }
    v.truncate(n);
    v
}

/// Smoothly varying 16-bit samples: exercises delta matches.
fn delta_like(n: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let mut v = Vec::with_capacity(n + 2);
    let mut x: u16 = 1000;
    let mut step: u16 = 3;
    while v.len() < n {
        if r.index(64) == 0 {
            step = r.index(16) as u16;
        }
        x = x.wrapping_add(step);
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

fn repetitive(n: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let period = 1 + r.index(40);
    let pat: Vec<u8> = (0..period).map(|_| r.next_u64() as u8).collect();
    (0..n)
        .map(|i| {
            if r.index(200) == 0 {
                r.next_u64() as u8
            } else {
                pat[i % period]
            }
        })
        .collect()
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| r.next_u64() as u8).collect()
}

fn mixed(n: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    let mut r = Rng::new(seed);
    while v.len() < n {
        let k = 1 + r.index(8192);
        let s = r.next_u64();
        let part = match r.index(5) {
            0 => text_like(k, s),
            1 => x86_like(k, s),
            2 => delta_like(k, s),
            3 => repetitive(k, s),
            _ => random_bytes(k.min(300), s),
        };
        v.extend_from_slice(&part);
    }
    v.truncate(n);
    v
}

fn gen(kind: u8, n: usize, seed: u64) -> Vec<u8> {
    match kind % 6 {
        0 => text_like(n, seed),
        1 => x86_like(n, seed),
        2 => delta_like(n, seed),
        3 => repetitive(n, seed),
        4 => random_bytes(n, seed),
        _ => mixed(n, seed),
    }
}

/// Compress with wimlib, decode with ours, compare. Whether it got that far
/// (false: wimlib found the data incompressible, or is missing).
fn check_wimlib_to_ours(data: &[u8], max_block: usize, level: u32) -> bool {
    let Some(c) = libwim::compress(libwim::LZMS, max_block, level, data) else {
        return false; // incompressible (or oracle missing): nothing to decode
    };
    let mut out = vec![0u8; data.len()];
    lzms::decompress(&c, &mut out).expect("our decoder rejected wimlib output");
    assert!(
        out == data,
        "mismatch decoding wimlib output ({} bytes)",
        data.len()
    );
    true
}

/// Compress with ours, decode with ours and with wimlib. Whether it got
/// that far (false: our encoder found the data incompressible).
fn check_ours_roundtrip(data: &[u8], max_block: usize) -> bool {
    let Some(c) = lzms::compress(data) else {
        return false;
    };
    assert!(c.len() < data.len());
    let mut out = vec![0u8; data.len()];
    lzms::decompress(&c, &mut out).expect("our decoder rejected our output");
    assert!(
        out == data,
        "our round trip mismatch ({} bytes)",
        data.len()
    );
    if libwim::available() {
        let w = libwim::decompress(libwim::LZMS, max_block.max(data.len()), &c, data.len())
            .expect("wimlib rejected our output");
        assert!(w == data, "wimlib decoded our output differently");
    }
    true
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
    fn wimlib_compressed_decodes(kind in 0u8..6, n in 1usize..40_000, seed: u64, level in prop::sample::select(vec![20u32, 50, 100])) {
        let data = gen(kind, n, seed);
        let _ = check_wimlib_to_ours(&data, 65536, level);
    }

    #[test]
    fn ours_roundtrips(kind in 0u8..6, n in 1usize..40_000, seed: u64) {
        let data = gen(kind, n, seed);
        let _ = check_ours_roundtrip(&data, 65536);
    }

    #[test]
    fn random_input_never_panics(input in prop::collection::vec(any::<u8>(), 0..2000), n in 0usize..5000) {
        let mut out = vec![0u8; n];
        let _ = lzms::decompress(&input, &mut out);
    }

    #[test]
    fn bitflipped_stream_never_panics(kind in 0u8..6, n in 64usize..8000, seed: u64, flips in prop::collection::vec((any::<usize>(), 0u8..8), 1..8), trunc in any::<bool>()) {
        let data = gen(kind, n, seed);
        let c = lzms::compress(&data).or_else(|| libwim::compress(libwim::LZMS, 65536, 50, &data));
        if let Some(mut c) = c {
            for (at, bit) in flips {
                let k = at % c.len();
                c[k] ^= 1 << bit;
            }
            if trunc {
                let k = c.len() / 2;
                c.truncate(k & !1);
            }
            let mut out = vec![0u8; n];
            let _ = lzms::decompress(&c, &mut out);
        }
    }
}

#[test]
fn all_block_sizes_from_wimlib() {
    // One chunk per max_block size the WIM/ESD writers use; the large ones
    // are kept few and moderately sized so the test stays quick.
    for (i, &(max_block, n)) in [
        (65536usize, 65536usize),
        (131072, 131072),
        (1 << 20, 1 << 20),
        (1 << 23, 3 << 20),
        (1 << 26, 2 << 20),
    ]
    .iter()
    .enumerate()
    {
        if !libwim::available() {
            return;
        }
        let data = mixed(n, 77 + i as u64);
        let c = libwim::compress(libwim::LZMS, max_block, 50, &data).expect("wimlib compress");
        let mut out = vec![0u8; n];
        lzms::decompress(&c, &mut out).expect("decode");
        assert!(out == data, "mismatch at max_block {max_block}");
    }
}

#[test]
fn our_encoder_large_chunks() {
    for (i, &n) in [65536usize, 131072, 1 << 20, 3 << 20].iter().enumerate() {
        let data = mixed(n, 99 + i as u64);
        assert!(check_ours_roundtrip(&data, n), "{n} bytes: incompressible");
    }
}

/// Chunks of 1 MiB and more find their matches through their suffixes
/// sorted by the first 64 bytes: the same text twice far apart, long runs
/// of zeros, a period longer than the sort's keys, and a repeat running
/// into the chunk's end (where the sort's keys read past it) must come out
/// as wimlib decodes them.
#[test]
fn our_encoder_large_chunk_with_long_repeats() {
    let text = text_like(300_000, 7);
    let mut data = text.clone();
    data.extend(std::iter::repeat_n(0u8, 200_000));
    data.extend(x86_like(200_000, 8));
    data.extend_from_slice(&text);
    let period: Vec<u8> = random_bytes(100, 9);
    while data.len() < (3 << 19) {
        data.extend_from_slice(&period);
    }
    data.extend_from_slice(&text[..1000]);
    data.extend(std::iter::repeat_n(0u8, 70));
    // The text's last bytes, which elsewhere run on into zeros.
    data.extend_from_slice(&text[text.len() - 20..]);
    assert!(data.len() >= 1 << 20);
    assert!(check_ours_roundtrip(&data, data.len()), "incompressible");
}

/// A chunk of mostly zeros (a sparse or zeroed file in a solid resource)
/// takes the binary tree instead of the sorted suffixes, and round trips.
#[test]
fn our_encoder_chunk_of_mostly_zeros() {
    let mut data = vec![0u8; 9 << 20];
    let tail = mixed(1 << 20, 11);
    data[4 << 20..5 << 20].copy_from_slice(&tail);
    assert!(check_ours_roundtrip(&data, data.len()), "incompressible");
}

#[test]
fn edge_sizes() {
    // Empty / tiny outputs: wimlib never compresses these, but the decoder
    // must behave (fill exactly, or fail) without panicking.
    let mut empty: [u8; 0] = [];
    assert!(lzms::decompress(&[0, 0, 0, 0], &mut empty).is_ok());
    assert!(lzms::decompress(&[], &mut empty).is_err());
    assert!(lzms::decompress(&[0, 0, 0], &mut [0u8; 1]).is_err());
    assert!(lzms::decompress(&[0, 0, 0, 0, 0], &mut [0u8; 1]).is_err());
    // A hand-checked stream: all-zero input decodes to literal-coded bytes.
    // With every range-coded bit 0 (literal) and every Huffman bit 0, each
    // byte is the symbol whose canonical codeword is all zeros: literal 0.
    let mut one = [0xAAu8; 1];
    lzms::decompress(&[0, 0, 0, 0], &mut one).unwrap();
    assert_eq!(one, [0]);
    let mut five = [0xAAu8; 5];
    lzms::decompress(&[0u8; 8], &mut five).unwrap();
    assert_eq!(five, [0; 5]);
    // Small inputs of a two-byte pattern: up to 5 bytes LZMS cannot win
    // (both encoders say incompressible, and the WIM stores such a chunk
    // raw); from 16 on every one compresses and must round trip, through
    // our decoder and wimlib's.
    let (mut ours, mut theirs) = (0, 0);
    for n in [1usize, 2, 3, 4, 5, 16, 17, 18, 19, 100] {
        let data: Vec<u8> = (0..n).map(|i| b"ab"[i % 2]).collect();
        let ran = check_ours_roundtrip(&data, 65536);
        assert_eq!(ran, n >= 16, "{n} bytes: compressed by our encoder: {ran}");
        ours += usize::from(ran);
        theirs += usize::from(check_wimlib_to_ours(&data, 65536, 50));
    }
    assert_eq!(ours, 5, "round trips of our encoder's output");
    if libwim::available() {
        assert_eq!(theirs, 5, "round trips of wimlib's output");
    }
    // Incompressible input is reported as such.
    assert!(lzms::compress(&random_bytes(4096, 5)).is_none());
}

#[test]
fn oversized_output_rejected() {
    // A valid stream, asked for one byte more output than the format
    // allows: refused for its size (not as truncated or corrupt, which is
    // what decoding it would end in). The buffer is zero-allocated and never
    // written, so its pages are never touched.
    let data = text_like(8192, 3);
    let c = lzms::compress(&data).expect("text compresses");
    let mut exact = vec![0u8; data.len()];
    lzms::decompress(&c, &mut exact).expect("the stream is valid");
    assert!(exact == data);
    let mut big = vec![0u8; lzms::MAX_BUFFER_SIZE + 1];
    assert_eq!(
        lzms::decompress(&c, &mut big),
        Err(CodecError::Unsupported(
            "LZMS chunk larger than the format allows"
        ))
    );
    // At the limit the size is allowed: the decoder runs, and fails only
    // because the stream ends (or, read with offset slots for another size,
    // makes no sense) long before the output is full.
    let at_limit = lzms::decompress(&c, &mut big[..lzms::MAX_BUFFER_SIZE]);
    assert!(
        matches!(
            at_limit,
            Err(CodecError::Truncated | CodecError::Corrupt(_))
        ),
        "{at_limit:?}"
    );
}

#[test]
fn x86_filter_boundaries() {
    // E8 calls right at the filter's end boundary (size - 17 .. size - 1):
    // a run of calls to one target (so the filter translates them from the
    // third on) ends at every distance from the end, after zeros that make
    // every input compressible, so each one reaches the round-trip checks.
    let (mut ours, mut theirs, mut inputs) = (0, 0, 0);
    for m in 17..64usize {
        for start in 0..5usize {
            let mut data = vec![0u8; 48 + m];
            let mut p = 48 + start;
            while p + 5 <= data.len() {
                data[p] = 0xE8;
                let rel = 0x100u32.wrapping_sub(p as u32);
                data[p + 1..p + 5].copy_from_slice(&rel.to_le_bytes());
                p += 5;
            }
            inputs += 1;
            theirs += usize::from(check_wimlib_to_ours(&data, 65536, 50));
            ours += usize::from(check_ours_roundtrip(&data, 65536));
        }
    }
    assert_eq!(
        ours, inputs,
        "inputs our encoder compressed and round tripped"
    );
    if libwim::available() {
        assert_eq!(theirs, inputs, "inputs wimlib compressed and we decoded");
    }
}

/// A chunk large enough to have its matches collected on a second thread
/// that cannot shrink: the encoder gives up (`None`, the chunk is stored
/// raw) rather than hang on the collector or return a larger stream; and a
/// compressible one of the same size after it still round trips (the
/// encoder is reusable after giving up).
#[test]
fn incompressible_large_chunk_gives_up() {
    let mut rng = Rng::new(3);
    let noise = rng.bytes(2 << 20);
    assert!(lzms::compress(&noise).is_none());
    let data = mixed(2 << 20, 4);
    assert!(
        check_ours_roundtrip(&data, data.len()),
        "mixed data after noise"
    );
}
