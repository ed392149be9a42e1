//! The write side of the vfs: every change goes to the overlay. On a
//! read-only view each of these fails with [`VfsError::ReadOnly`].

use super::{
    Attr, Cred, Ino, NtTimes, RenameMode, SetAttr, Special, Vfs, VfsError, VfsResult, XattrMode,
    XATTR_STREAM_PREFIX,
};
use crate::newimage::NewImage;
use crate::overlay::{Frozen, StagingError};
use crate::wim::Wim;
use std::sync::Arc;

/// An open file handle (0 on read-only views, which track none).
pub type Fh = u64;

impl Vfs {
    /// Open a file and count it as open until [`Vfs::release`]. `write`
    /// opens for writing, `truncate` empties the file (O_TRUNC). Read-only
    /// views check as [`Vfs::open`] does and return handle 0.
    pub fn open_file(&self, ino: Ino, write: bool, truncate: bool) -> VfsResult<Fh> {
        match self.overlay() {
            Some(ov) => ov.open_handle(ino, write, truncate),
            None => self.open(ino, write || truncate).map(|_| 0),
        }
    }

    /// Close a handle. The last close of an unlinked file frees it; closing
    /// a written handle makes the changes durable.
    pub fn release(&self, fh: Fh) -> VfsResult<()> {
        match self.overlay() {
            Some(ov) => ov.release(fh),
            None => Ok(()),
        }
    }

    /// A close(2) of handle `fh` (FUSE FLUSH): journal every change so
    /// far (a file it wrote that is held in memory goes to the staging
    /// first), without fsync. close(2) waits for this but not for RELEASE,
    /// so this is what makes "closed" mean "survives the daemon being
    /// killed".
    pub fn flush(&self, fh: Fh) -> VfsResult<()> {
        match self.overlay() {
            Some(ov) => ov.flush_handle(fh),
            None => Ok(()),
        }
    }

    /// Open handles (commit refuses while there are any, unless forced).
    pub fn open_handles(&self) -> usize {
        self.overlay().map_or(0, |ov| ov.open_handles())
    }

    /// Create and open (for writing) a regular file.
    pub fn create(&self, parent: Ino, name: &str, mode: u32, cred: Cred) -> VfsResult<(Attr, Fh)> {
        self.rw()?.create(parent, name, mode, cred, &self.opts)
    }

    /// A FIFO, device or socket with permissions `mode` and device number
    /// `rdev` (see [`crate::image::UnixData`]): kept in the UNIX-data tag,
    /// so only where UNIX data is stored (else a permission error).
    pub fn mknod(
        &self,
        parent: Ino,
        name: &str,
        kind: Special,
        mode: u32,
        rdev: u32,
        cred: Cred,
    ) -> VfsResult<Attr> {
        self.rw()?
            .mknod(parent, name, kind, mode, rdev, cred, &self.opts)
    }

    pub fn mkdir(&self, parent: Ino, name: &str, mode: u32, cred: Cred) -> VfsResult<Attr> {
        self.rw()?.mkdir(parent, name, mode, cred, &self.opts)
    }

    pub fn symlink(&self, parent: Ino, name: &str, target: &str, cred: Cred) -> VfsResult<Attr> {
        self.rw()?.symlink(parent, name, target, cred, &self.opts)
    }

    /// A hard link `newparent/newname` to `ino`.
    pub fn link(&self, ino: Ino, newparent: Ino, newname: &str) -> VfsResult<Attr> {
        self.rw()?.link(ino, newparent, newname, &self.opts)
    }

    pub fn unlink(&self, parent: Ino, name: &str) -> VfsResult<()> {
        self.rw()?.unlink(parent, name)
    }

    pub fn rmdir(&self, parent: Ino, name: &str) -> VfsResult<()> {
        self.rw()?.rmdir(parent, name)
    }

    pub fn rename(
        &self,
        parent: Ino,
        name: &str,
        newparent: Ino,
        newname: &str,
        mode: RenameMode,
    ) -> VfsResult<()> {
        self.rw()?
            .rename(parent, name, newparent, newname, mode, &self.opts)
    }

    pub fn setattr(&self, ino: Ino, a: &SetAttr) -> VfsResult<Attr> {
        self.rw()?.setattr(ino, a, &self.opts)
    }

    /// Write `data` at `offset` of the unnamed data stream; returns the
    /// count written (all of it).
    pub fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> VfsResult<u32> {
        self.rw()?.write(ino, offset, data)
    }

    /// Extend the file to `offset + len` unless `keep_size` (space is not
    /// reserved: staging files are sparse).
    pub fn fallocate(&self, ino: Ino, offset: u64, len: u64, keep_size: bool) -> VfsResult<()> {
        self.rw()?.fallocate(ino, offset, len, keep_size)
    }

    /// Set an xattr: `user.NAME` is the named data stream NAME; ntfs-3g's
    /// `system.ntfs_*` names set Windows metadata (their value formats are
    /// in `xattr.rs`); other names are not supported for writing.
    pub fn setxattr(&self, ino: Ino, name: &str, value: &[u8], mode: XattrMode) -> VfsResult<()> {
        let ov = self.rw()?;
        if let Some(r) = self.set_ntfs_xattr(ino, name, value) {
            return r;
        }
        match name.strip_prefix(XATTR_STREAM_PREFIX) {
            Some(s) => ov.set_stream(ino, s, value, mode, &self.opts),
            None => Err(VfsError::not_supported()),
        }
    }

    pub fn removexattr(&self, ino: Ino, name: &str) -> VfsResult<()> {
        let ov = self.rw()?;
        if let Some(r) = self.remove_ntfs_xattr(ino, name) {
            return r;
        }
        match name.strip_prefix(XATTR_STREAM_PREFIX) {
            Some(s) => ov.remove_stream(ino, s),
            None => Err(VfsError::not_supported()),
        }
    }

    // ----- Windows metadata (for the NT layer and the ntfs-3g xattrs) ----

    /// Set the DOS attributes: only the settable bits (see
    /// [`super::merge_attributes`]); the directory bit follows the kind.
    pub fn set_attributes(&self, ino: Ino, attributes: u32) -> VfsResult<Attr> {
        self.rw()?.set_attributes(ino, attributes)?;
        self.getattr(ino)
    }

    /// Set any of the four Windows times (FILETIMEs; see [`NtTimes`]).
    pub fn set_times(&self, ino: Ino, times: &NtTimes) -> VfsResult<Attr> {
        self.rw()?.set_times(ino, times)?;
        self.getattr(ino)
    }

    /// Give the file the self-relative security descriptor `sd`; a
    /// malformed one is [`VfsError::Invalid`] (and nothing changes).
    pub fn set_security(&self, ino: Ino, sd: &[u8]) -> VfsResult<()> {
        self.rw()?.set_security(ino, sd)
    }

    /// Make the file a reparse point (`data` without the 8-byte header);
    /// a symlink or junction then shows as a symlink.
    pub fn set_reparse(&self, ino: Ino, tag: u32, data: &[u8]) -> VfsResult<()> {
        self.rw()?.set_reparse(ino, tag, data, &self.opts)
    }

    /// Remove the file's reparse point ([`VfsError::NoAttr`] if none).
    pub fn delete_reparse(&self, ino: Ino) -> VfsResult<()> {
        self.rw()?.delete_reparse(ino)
    }

    /// [`Vfs::create`] with the security descriptor `sd` (validated)
    /// instead of the parent's.
    pub fn create_with_security(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        cred: Cred,
        sd: &[u8],
    ) -> VfsResult<(Attr, Fh)> {
        self.rw()?
            .create_with(parent, name, mode, cred, Some(sd), &self.opts)
    }

    /// [`Vfs::mkdir`] with the security descriptor `sd` (validated)
    /// instead of the parent's.
    pub fn mkdir_with_security(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        cred: Cred,
        sd: &[u8],
    ) -> VfsResult<Attr> {
        self.rw()?
            .mkdir_with(parent, name, mode, cred, Some(sd), &self.opts)
    }

    /// fsync/fsyncdir: make every change so far durable (the journal is
    /// shared, so this syncs all of it).
    pub fn fsync(&self, _ino: Ino) -> VfsResult<()> {
        match self.overlay() {
            Some(ov) => ov.sync(),
            None => Ok(()),
        }
    }

    /// Make every change durable (also worth calling periodically and at
    /// unmount).
    pub fn sync(&self) -> VfsResult<()> {
        self.fsync(0)
    }

    /// True on a read-write mount with no change since it started or since
    /// the last commit.
    pub fn is_unchanged(&self) -> bool {
        self.overlay().is_some_and(|ov| ov.is_unchanged())
    }

    /// Hold off all changes while a commit reads the tree.
    pub fn freeze(&self) -> VfsResult<Frozen<'_>> {
        Ok(self.rw()?.freeze())
    }

    /// The image as it now is, for commit (call while frozen).
    pub fn to_new_image(&self) -> crate::Result<NewImage> {
        match self.overlay() {
            Some(ov) => ov.to_new_image(),
            None => Err(crate::Error::Other("not a read-write mount".into())),
        }
    }

    /// Record the landing of a commit in progress (see
    /// [`crate::overlay::Overlay::note_landing`]).
    pub fn note_landing(&self, l: &crate::newimage::Landing) -> Result<(), StagingError> {
        match self.overlay() {
            Some(ov) => ov.note_landing(l),
            None => Err(StagingError::Invalid("not a read-write mount".into())),
        }
    }

    /// Forget a landing recorded for a commit that failed.
    pub fn clear_landing(&self) {
        if let Some(ov) = self.overlay() {
            ov.clear_landing();
        }
    }

    /// After a commit: switch to image `index` of the reopened `wim` and
    /// clear the staging (call while still frozen).
    pub fn after_commit(
        &self,
        frozen: &Frozen<'_>,
        wim: Arc<Wim>,
        index: u32,
    ) -> Result<(), StagingError> {
        match self.overlay() {
            Some(ov) => ov.after_commit(frozen, wim, index),
            None => Err(StagingError::Invalid("not a read-write mount".into())),
        }
    }
}
