//! What the NT view (`crate::ntvfs`) needs from the vfs beyond what the
//! Linux adapter asks: case-insensitive lookup, named streams read at an
//! offset (any size, not through the 64 KiB xattr window), the reparse
//! tag and the security descriptor. Reads only; the Linux FUSE path keeps
//! its exact-match lookup.

use super::view::ReadView;
use super::{Attr, Ino, Vfs, VfsResult};

/// A named data stream: its name and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub name: String,
    pub size: u64,
}

impl Vfs {
    /// `name` in directory `parent` under NT semantics: the exact name if
    /// it exists, else the one equal but for case (NTFS's upcase
    /// comparison, [`crate::nt::upcase`]); where an image holds several
    /// names differing only in case (a Linux capture), the first in NTFS
    /// collation order. Returns the name as stored and its attributes.
    /// Not for `.` and `..`.
    pub fn lookup_ci(&self, parent: Ino, name: &str) -> VfsResult<(String, Attr)> {
        self.view.lookup_ci(parent, name, &self.opts)
    }

    /// The named data streams of `ino`, as stored.
    pub fn streams(&self, ino: Ino) -> VfsResult<Vec<StreamInfo>> {
        Ok(self
            .view
            .named_streams(ino)?
            .into_iter()
            .map(|(name, d)| StreamInfo {
                size: d.size(),
                name,
            })
            .collect())
    }

    /// The named stream `name` of `ino` (exact name), if there is one.
    pub fn stream(&self, ino: Ino, name: &str) -> VfsResult<Option<StreamInfo>> {
        Ok(self.view.named_stream(ino, name)?.map(|d| StreamInfo {
            name: name.to_string(),
            size: d.size(),
        }))
    }

    /// Read the named stream `name` of `ino` at `offset` into `buf`;
    /// returns how many bytes (fewer only at its end).
    pub fn read_stream(
        &self,
        ino: Ino,
        name: &str,
        offset: u64,
        buf: &mut [u8],
    ) -> VfsResult<usize> {
        let d = self
            .view
            .named_stream(ino, name)?
            .ok_or(super::VfsError::NotFound)?;
        self.read_data(Some(d), offset, buf)
    }

    /// The reparse tag of `ino` if it is a reparse point.
    pub fn reparse_tag(&self, ino: Ino) -> VfsResult<Option<u32>> {
        Ok(self.view.win_meta(ino)?.reparse.map(|(t, _)| t))
    }

    /// The security descriptor of `ino` as stored in the image (the
    /// bytes `system.ntfs_acl` shows), if it has one.
    pub fn security(&self, ino: Ino) -> VfsResult<Option<Vec<u8>>> {
        Ok(self.view.win_meta(ino)?.security)
    }
}
