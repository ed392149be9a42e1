#![no_main]
//! Fuzz the XPRESS decoder: the first two bytes choose the output size (up to
//! the 64 KiB WIM maximum), the rest is the compressed chunk. Any input must
//! return Ok or Err without panicking.

use libfuzzer_sys::fuzz_target;
use wimfs::codec::xpress;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = (usize::from(u16::from_le_bytes([data[0], data[1]])) + 1).min(xpress::MAX_CHUNK_SIZE);
    let mut out = vec![0u8; n];
    let _ = xpress::decompress(&data[2..], &mut out);
});
