//! XPRESS Huffman codec tests: wimlib (the oracle) and our codec must agree in
//! both directions, hand-built streams pin down the byte/bit interleaving, and
//! hostile input must fail cleanly.

mod common;
use common::libwim;

use proptest::prelude::*;
use wimfs::codec::xpress;
use wimfs::codec::CodecError;

const CHUNK_SIZES: [usize; 5] = [4096, 8192, 16384, 32768, 65536];

fn decode(c: &[u8], n: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![0u8; n];
    xpress::decompress(c, &mut out).map(|()| out)
}

/// Check that wimlib decodes `c` to `data` too (skipped without the oracle).
fn wimlib_agrees(c: &[u8], data: &[u8]) {
    if libwim::available() {
        let w = libwim::decompress(libwim::XPRESS, 65536, c, data.len());
        assert!(w.as_deref() == Some(data), "wimlib disagrees");
    }
}

fn header(lens: &[(usize, u8)]) -> Vec<u8> {
    let mut h = vec![0u8; 256];
    for &(s, l) in lens {
        h[s / 2] |= l << (4 * (s % 2));
    }
    h
}

// ----- data generators -----

fn text_like() -> impl Strategy<Value = Vec<u8>> {
    let words = prop::sample::select(vec![
        "the ",
        "of ",
        "and ",
        "Windows ",
        "image ",
        "file ",
        "\n",
        "resource ",
        "chunk ",
        "compression ",
        "XPRESS ",
        "Huffman ",
        "0123 ",
        "{ ",
        "} ",
        "fn ",
        "let ",
        "; ",
    ]);
    prop::collection::vec(words, 0..20000).prop_map(|w| w.concat().into_bytes())
}

fn x86_like() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            (any::<i32>()).prop_map(|d| {
                let mut v = vec![0xE8];
                v.extend_from_slice(&(d % 4096).to_le_bytes());
                v
            }),
            Just(vec![0x48, 0x89, 0xE5]),
            Just(vec![0x55, 0x48, 0x83, 0xEC, 0x20]),
            Just(vec![0xC3, 0x90, 0x90, 0x90]),
            any::<[u8; 3]>().prop_map(|b| b.to_vec()),
        ],
        0..12000,
    )
    .prop_map(|v| v.concat())
}

fn repetitive() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(any::<u8>(), 1..40),
        1usize..70000,
        any::<u8>(),
    )
        .prop_map(|(pat, n, noise)| {
            let mut v: Vec<u8> = pat.iter().cycle().take(n).copied().collect();
            if !v.is_empty() {
                let k = noise as usize % v.len();
                v[k] ^= noise;
            }
            v
        })
}

fn any_data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..70000),
        prop::collection::vec(0u8..4, 0..70000),
        text_like(),
        x86_like(),
        repetitive(),
    ]
}

/// Data cut to a chunk size the format allows (4 KiB..64 KiB, or shorter as
/// the final chunk of a resource).
fn chunk() -> impl Strategy<Value = (usize, Vec<u8>)> {
    (prop::sample::select(CHUNK_SIZES.to_vec()), any_data()).prop_map(|(cs, mut d)| {
        d.truncate(cs);
        (cs, d)
    })
}

proptest! {
    // Failing cases are saved next to this file
    // (tests/<name>.proptest-regressions, kept in git) and replayed first
    // on every later run.
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn decodes_wimlib_output((cs, data) in chunk()) {
        if let Some(c) = libwim::compress(libwim::XPRESS, cs, 50, &data) {
            prop_assert!(decode(&c, data.len()).unwrap() == data);
        }
    }

    #[test]
    fn decodes_wimlib_high_level_output((cs, data) in chunk()) {
        if let Some(c) = libwim::compress(libwim::XPRESS, cs, 100, &data) {
            prop_assert!(decode(&c, data.len()).unwrap() == data);
        }
    }

    #[test]
    fn encoder_round_trips((_cs, data) in chunk()) {
        if let Some(c) = xpress::compress(&data) {
            prop_assert!(c.len() < data.len());
            prop_assert!(decode(&c, data.len()).unwrap() == data);
            wimlib_agrees(&c, &data);
        }
    }

    #[test]
    fn random_input_never_panics(input in prop::collection::vec(any::<u8>(), 0..2000), n in 0usize..70000) {
        let _ = decode(&input, n);
    }

    #[test]
    fn structured_garbage_never_panics(lens in prop::collection::vec(0u8..16, 512), body in prop::collection::vec(any::<u8>(), 0..3000), n in 1usize..65537) {
        // Valid-looking headers reach deep into the decoder.
        let mut input: Vec<u8> = lens.chunks(2).map(|p| p[0] | p[1] << 4).collect();
        input.extend_from_slice(&body);
        let _ = decode(&input, n);
    }

    #[test]
    fn bit_flips_never_panic((_cs, data) in chunk(), flips in prop::collection::vec(any::<(usize, u8)>(), 1..8)) {
        if let Some(mut c) = xpress::compress(&data) {
            let len = c.len();
            for (pos, bit) in flips {
                c[pos % len] ^= 1 << (bit % 8);
            }
            let _ = decode(&c, data.len());
        }
    }

    #[test]
    fn truncation_fails_or_is_harmless((_cs, data) in chunk(), cut in any::<usize>()) {
        if let Some(c) = xpress::compress(&data) {
            let keep = cut % c.len();
            match decode(&c[..keep], data.len()) {
                Err(_) => {}
                // Only trailing padding can be dropped without harm.
                Ok(out) => prop_assert!(out == data && keep + 4 >= c.len()),
            }
        }
    }
}

#[test]
fn empty_output_is_ok() {
    assert_eq!(decode(&[], 0), Ok(vec![]));
    assert_eq!(xpress::compress(&[]), None);
    assert_eq!(xpress::compress(b"x"), None);
}

#[test]
fn one_byte_output() {
    // 'A' and 'B' get 1-bit codewords 0 and 1; a single zero bit is 'A'.
    let mut input = header(&[(0x41, 1), (0x42, 1)]);
    input.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(decode(&input, 1), Ok(vec![0x41]));
    wimlib_agrees(&input, b"A");
    // The stream can only ever describe 'A'/'B' literals, never run dry
    // silently: 32 zero bits are available, 33 are not.
    assert_eq!(decode(&input, 32), Ok(vec![0x41; 32]));
    assert_eq!(decode(&input, 33), Err(CodecError::Truncated));
}

/// 'a' (0x61) = codeword 0, match header 256+15 (offset 1, extended length)
/// = codeword 1. `lits` literals then one match whose length byte is `b`.
fn escape_stream(lits: usize, extra: &[u8]) -> Vec<u8> {
    let mut input = header(&[(0x61, 1), (256 + 15, 1)]);
    let bits = lits + 1;
    // Words holding the bit stream, then the byte after the fewest words that
    // leave >= 16 unread bits (at least two words).
    let words = (bits.div_ceil(16) + 1).max(2);
    let mut w = vec![0u16; words];
    w[lits / 16] |= 0x8000 >> (lits % 16);
    for x in w {
        input.extend_from_slice(&x.to_le_bytes());
    }
    input.extend_from_slice(extra);
    input
}

#[test]
fn length_escape_byte_positions() {
    // 2, 16 (word exactly full), 17 and 33 bits before the byte.
    for lits in [1usize, 15, 16, 32, 47, 48] {
        let input = escape_stream(lits, &[10]);
        let want = vec![0x61u8; lits + 28];
        assert_eq!(
            decode(&input, want.len()).as_ref(),
            Ok(&want),
            "lits {lits}"
        );
        wimlib_agrees(&input, &want);
    }
}

#[test]
fn maximum_size_chunk() {
    // One literal and a single 65535-byte match: 16-bit length escape.
    let l3 = 65535 - 3;
    let input = escape_stream(1, &[255, l3 as u8, (l3 >> 8) as u8]);
    let want = vec![0x61u8; 65536];
    assert_eq!(decode(&input, 65536).as_ref(), Ok(&want));
    wimlib_agrees(&input, &want);
    // Our encoder on a full-size chunk, both decoders.
    let c = xpress::compress(&want).unwrap();
    assert!(c.len() < 300);
    assert_eq!(decode(&c, 65536).as_ref(), Ok(&want));
    wimlib_agrees(&c, &want);
    // One byte too many output requested: the match overruns.
    assert!(decode(&input, 65535).is_err());
}

#[test]
fn rejects_bad_headers() {
    // All-zero code with non-empty output.
    assert!(decode(&[0u8; 300], 10).is_err());
    // Over-subscribed: three 1-bit codewords.
    let mut input = header(&[(1, 1), (2, 1), (3, 1)]);
    input.extend_from_slice(&[0; 8]);
    assert!(decode(&input, 4).is_err());
    // Header alone is too short.
    assert_eq!(decode(&[0x11; 100], 4), Err(CodecError::Truncated));
    // Match before the start of the output.
    let mut input = header(&[(0x61, 1), (256, 1)]);
    input.extend_from_slice(&[0x00, 0x80, 0, 0]);
    assert!(matches!(decode(&input, 8), Err(CodecError::Corrupt(_))));
}

#[test]
fn real_files_round_trip() {
    let mut data = Vec::new();
    for f in ["/usr/bin/bash", "/usr/share/common-licenses/GPL-3"] {
        if let Ok(d) = std::fs::read(f) {
            data.extend_from_slice(&d[..d.len().min(1 << 20)]);
        }
    }
    for cs in CHUNK_SIZES {
        for c in data.chunks(cs) {
            if let Some(w) = libwim::compress(libwim::XPRESS, cs, 50, c) {
                assert!(decode(&w, c.len()).unwrap() == c);
            }
            if let Some(o) = xpress::compress(c) {
                assert!(decode(&o, c.len()).unwrap() == c);
                wimlib_agrees(&o, c);
            }
        }
    }
}

#[test]
fn overlapping_copies_near_the_end() {
    // Every small period, with the final match ending at every distance from
    // the end of the chunk: exercises each match-copy strategy and its tail.
    for period in 1..=20usize {
        for tail in 0..=20usize {
            let mut data: Vec<u8> = (0..period).map(|i| (i * 37 + 11) as u8).collect();
            while data.len() < 600 {
                let b = data[data.len() - period];
                data.push(b);
            }
            data.extend((0..tail).map(|i| (i * 101 + 7) as u8 ^ 0xA5));
            let c = xpress::compress(&data).expect("compressible");
            assert_eq!(
                decode(&c, data.len()).as_ref(),
                Ok(&data),
                "p{period} t{tail}"
            );
            wimlib_agrees(&c, &data);
            if let Some(w) = libwim::compress(libwim::XPRESS, 4096, 50, &data) {
                assert_eq!(decode(&w, data.len()).as_ref(), Ok(&data));
            }
        }
    }
}

#[test]
fn encoder_writes_end_of_data_symbol() {
    // Microsoft's decoder wants symbol 256 ("length 3, offset 1") after the
    // last item; decoding three bytes further must repeat the last byte.
    let data: Vec<u8> = b"end of data marker test, "
        .iter()
        .cycle()
        .take(5000)
        .copied()
        .collect();
    let c = xpress::compress(&data).unwrap();
    let mut want = data.clone();
    want.extend_from_slice(&[b' '; 3]);
    assert_eq!(decode(&c, want.len()), Ok(want));
}
