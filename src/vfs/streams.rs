//! Named data streams as streams (NTFS `file:stream`): offset reads and
//! writes, size changes, create, delete and enumerate, with no size limit
//! but the staging's. The `user.NAME` xattrs are the same streams seen
//! whole (and so capped at the xattr limit); the NT layer uses these.

use super::{Ino, Vfs, VfsResult, XattrMode};

impl Vfs {
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
