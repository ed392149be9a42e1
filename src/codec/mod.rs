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

pub mod lzms;
pub mod lzx;
pub mod xpress;
