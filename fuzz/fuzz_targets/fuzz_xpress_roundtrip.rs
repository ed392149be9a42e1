#![no_main]
//! Fuzz the XPRESS encoder: whatever it emits must decode to the input.

use libfuzzer_sys::fuzz_target;
use wimfs::codec::xpress;

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(xpress::MAX_CHUNK_SIZE)];
    if let Some(c) = xpress::compress(data) {
        assert!(c.len() < data.len());
        let mut out = vec![0u8; data.len()];
        xpress::decompress(&c, &mut out).expect("own output must decode");
        assert!(out == data);
    }
});
