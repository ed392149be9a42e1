//! Chunk codecs: XPRESS Huffman, LZX (WIM variant) and LZMS.
//!
//! Every function here is pure: a compressed chunk in, the decompressed chunk
//! out, no I/O and no knowledge of the WIM container. The container tells us
//! the exact uncompressed size of each chunk, so decoders fill a caller-sized
//! output buffer and fail if the input does not produce exactly that many
//! bytes. Decoders must never panic or read out of bounds on any input.

use thiserror::Error;

/// Why a chunk could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The compressed data ended before the output was full.
    #[error("compressed data truncated")]
    Truncated,
    /// The compressed data is malformed (bad Huffman table, match before
    /// start of window, invalid block type, ...).
    #[error("corrupt compressed data: {0}")]
    Corrupt(&'static str),
    /// A parameter (chunk size, window size) is outside what the format allows.
    #[error("unsupported parameter: {0}")]
    Unsupported(&'static str),
}

mod bt;
mod huffman;
mod lcpit;
pub mod lzms;
pub mod lzx;
mod suffix;
pub mod xpress;

/// A small deterministic generator (xorshift64) for the codecs' unit tests.
#[cfg(test)]
pub(crate) fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// Encoder speed apart from the capture pipeline, for the codecs' opt-in
/// benches: compresses the file named by the environment variable `var` in
/// 32 KiB chunks (the WIM default) on one thread with `compress` (the
/// output length, `None` for a chunk stored raw) and prints the time and
/// the output size. Does nothing when `var` is unset.
#[cfg(test)]
pub(crate) fn bench_chunks(
    name: &str,
    var: &str,
    mut compress: impl FnMut(&[u8]) -> Option<usize>,
) {
    let Some(path) = std::env::var_os(var) else {
        return;
    };
    let data = std::fs::read(path).unwrap();
    let t = std::time::Instant::now();
    let (mut total, mut raw) = (0usize, 0usize);
    for c in data.chunks(32768) {
        total += compress(c).unwrap_or_else(|| {
            raw += 1;
            c.len()
        });
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "{name} bench: {} -> {total} bytes ({raw} chunks raw) in {s:.3} s ({:.1} MB/s)",
        data.len(),
        data.len() as f64 / s / 1e6
    );
}
