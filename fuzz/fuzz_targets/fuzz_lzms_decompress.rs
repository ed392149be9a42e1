#![no_main]
//! Fuzz the LZMS decoder: the first 4 bytes pick the uncompressed size, the
//! rest is the compressed chunk. The decoder must return Ok or Err, never
//! panic, hang or read out of bounds.

use libfuzzer_sys::fuzz_target;

/// LZMS itself allows ~1.1 GiB buffers, but WIM/ESD chunks are at most
/// 64 MiB; capping there keeps each iteration's output allocation sane.
const MAX_OUT: usize = 1 << 26;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let size = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let size = size % (MAX_OUT.min(wimfs::codec::lzms::MAX_BUFFER_SIZE) + 1);
    // Mostly small outputs: large ones only when the top bit is set.
    let size = if data[3] & 0x80 != 0 {
        size
    } else {
        size & 0xFFFF
    };
    let mut out = vec![0u8; size];
    let _ = wimfs::codec::lzms::decompress(&data[4..], &mut out);
});
