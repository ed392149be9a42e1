//! Positional reads: the only way the format layer touches storage.
//!
//! Keeping I/O behind a tiny trait lets tests hand the parser memory, a
//! truncated buffer or a source that fails, and lets several threads read
//! one file at once without sharing a cursor (pread).

use std::fs::File;
use std::io;
use std::sync::Arc;

/// A read-only, random-access byte source of known length.
pub trait ReadAt: Send + Sync {
    /// Fill all of `buf` from `offset`, or fail (short reads are errors).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Length of the source in bytes.
    fn len(&self) -> u64;
    /// True when the source has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A file read with `pread`, shareable between threads.
pub struct FileSource {
    file: File,
    len: u64,
}

impl FileSource {
    pub fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(FileSource { file, len })
    }
}

impl FileSource {
    /// `read_exact_at` under another name, for callers holding the concrete type.
    pub fn read_exact_at_io(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        ReadAt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for FileSource {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        crate::sys::read_exact_at(&self.file, buf, offset)
    }
    fn len(&self) -> u64 {
        self.len
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start =
            usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let end = start
            .checked_add(buf.len())
            .filter(|&e| e <= self.as_slice().len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(&self[start..end]);
        Ok(())
    }
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Arc<T> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
    fn len(&self) -> u64 {
        (**self).len()
    }
}
