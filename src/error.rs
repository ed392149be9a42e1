//! The library's error type: every failure names what was wrong and where.

use crate::codec::CodecError;
use std::io;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("I/O error on {path}: {err}")]
    Io { path: String, err: io::Error },
    #[error("I/O error: {0}")]
    RawIo(#[from] io::Error),
    #[error("not a WIM file: {0}")]
    NotWim(String),
    #[error("invalid WIM: {0}")]
    Invalid(String),
    #[error("unsupported WIM feature: {0}")]
    Unsupported(String),
    #[error("corrupt compressed data in resource at offset {offset:#x}, chunk {chunk}: {err}")]
    Decompress {
        offset: u64,
        chunk: u64,
        err: CodecError,
    },
    #[error("SHA-1 mismatch for blob {0}")]
    HashMismatch(String),
    #[error("blob {0} is not in this WIM (a split WIM part may be missing: use --ref)")]
    MissingBlob(String),
    #[error("no such image: {0}")]
    NoSuchImage(String),
    #[error("no such file or directory in image: {0}")]
    NotFound(String),
    #[error(
        "the WIM at {path} was {how} since wimfs locked it (another program, e.g. \
         wimlib-imagex optimize, wrote a new file in its place); nothing was written to it"
    )]
    WimReplaced { path: String, how: &'static str },
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Build an [`Error::Invalid`] with a formatted message.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => { $crate::error::Error::Invalid(format!($($arg)*)) };
}
