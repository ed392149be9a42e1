//! Named data streams as streams (NTFS `file:stream`): offset reads and
//! writes, size changes, create, delete and enumerate, with no size limit
//! but the staging's. The `user.NAME` xattrs are the same streams seen
//! whole (and so capped at the xattr limit); the NT layer uses these.

use super::{Ino, ReadView, Vfs, VfsError, VfsResult, XattrMode};
use crate::overlay::Data;

impl Vfs {
    /// The named streams of a file: (name, size).
    pub fn streams(&self, ino: Ino) -> VfsResult<Vec<(String, u64)>> {
        Ok(self
            .view
            .named_streams(ino)?
            .into_iter()
            .map(|(n, d)| (n, d.size()))
            .collect())
    }

    /// Read up to `buf.len()` bytes of named stream `name` at `offset`;
    /// returns how many (fewer only at its end). [`VfsError::NoAttr`] if
    /// the file has no such stream.
    pub fn read_stream(
        &self,
        ino: Ino,
        name: &str,
        offset: u64,
        buf: &mut [u8],
    ) -> VfsResult<usize> {
        let d = self.view.named_stream(ino, name)?.ok_or(VfsError::NoAttr)?;
        let n = (buf.len() as u64).min(d.size().saturating_sub(offset)) as usize;
        let buf = &mut buf[..n];
        if n == 0 {
            return Ok(0);
        }
        match d {
            Data::Staged(s) => Ok(s.read(offset, buf)?),
            Data::Inline(v) => {
                // `n > 0` means `offset < v.len()`.
                let a = offset as usize;
                buf.copy_from_slice(&v[a..a + n]);
                Ok(n)
            }
            Data::Base { blob: Some(b), .. } => Ok(self.cache.read_blob(&b, offset, buf)?),
            Data::Base { blob: None, .. } => Err(VfsError::missing_data()),
        }
    }

    /// Create an empty named stream ([`VfsError::Exists`] if there is one).
    pub fn create_stream(&self, ino: Ino, name: &str) -> VfsResult<()> {
        self.rw()?
            .set_stream(ino, name, &[], XattrMode::Create, &self.opts)
    }

    /// Delete a named stream ([`VfsError::NoAttr`] if there is none).
    pub fn delete_stream(&self, ino: Ino, name: &str) -> VfsResult<()> {
        self.rw()?.remove_stream(ino, name)
    }

    /// Write `data` at `offset` of an existing named stream; durable at the
    /// next [`Vfs::fsync`] (or sync), like the unnamed stream's writes.
    pub fn write_stream(&self, ino: Ino, name: &str, offset: u64, data: &[u8]) -> VfsResult<u32> {
        self.rw()?.write_stream(ino, name, offset, data)
    }

    /// Truncate or extend (with zeros) an existing named stream.
    pub fn set_stream_size(&self, ino: Ino, name: &str, size: u64) -> VfsResult<()> {
        self.rw()?.set_stream_size(ino, name, size)
    }
}
