//! Fuzz the WIM LZX decoder: the first byte picks the chunk (window) size
//! 32 KiB..2 MiB, the next three bytes the uncompressed size (at most the
//! chunk size); the rest is the compressed chunk. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wimfs::codec::lzx;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let chunk = 1usize << (15 + data[0] as usize % 7);
    let n = (u32::from_le_bytes([data[1], data[2], data[3], 0]) as usize) % chunk + 1;
    let mut out = vec![0u8; n];
    let _ = lzx::decompress_chunk(&data[4..], &mut out, chunk);
    // The plain entry point derives the window from the output size.
    let _ = lzx::decompress(&data[4..], &mut out);
});
