//! The one read view the vfs reads through: the image as it is (a
//! read-only mount, [`ImageView`]) or the overlay over it (a read-write
//! mount, [`Overlay`]). Each answers the same questions in the vfs's
//! terms, so every vfs read is written once over [`ReadView`].
//!
//! The vfs holds a [`View`] (an enum, dispatched in one place) rather than
//! a `Box<dyn ReadView>`: the read-only path is benchmarked, and static
//! dispatch keeps it as cheap as the direct calls it replaces.

use super::image_view::ImageView;
use super::lazy_view::LazyView;
use crate::node::{Attr, DirEntry, FileKind, Ino, VfsOptions, VfsResult};
use crate::overlay::{Data, Overlay, WinMeta};
use crate::wim::Wim;
use std::sync::Arc;

/// What a view of an image answers. Inode numbers are image inode
/// indexes plus one in both views.
pub(crate) trait ReadView {
    fn getattr(&self, ino: Ino, opts: &VfsOptions) -> VfsResult<Attr>;
    /// What `ino` shows as (cheaper than its attributes where it can be).
    fn kind(&self, ino: Ino, opts: &VfsOptions) -> VfsResult<FileKind>;
    /// The attributes of `name` in directory `parent` (`.` and `..` too).
    fn lookup(&self, parent: Ino, name: &str, opts: &VfsOptions) -> VfsResult<Attr>;
    /// `lookup` under NT semantics (exact name first, else the name equal
    /// but for case, the first in collation order of several): the name
    /// as stored and its attributes. Not for `.` and `..`.
    fn lookup_ci(&self, parent: Ino, name: &str, opts: &VfsOptions) -> VfsResult<(String, Attr)>;
    /// Entries from `offset` (0 = start, with `.` and `..`), at most `max`.
    fn readdir(
        &self,
        ino: Ino,
        offset: u64,
        max: usize,
        opts: &VfsOptions,
    ) -> VfsResult<Vec<DirEntry>>;
    fn readlink(&self, ino: Ino) -> VfsResult<String>;
    /// The unnamed data stream (`None`: the inode has none); a directory
    /// is [`crate::node::VfsError::IsDir`].
    fn data(&self, ino: Ino) -> VfsResult<Option<Data>>;
    /// The named stream `name`, if there is one.
    fn named_stream(&self, ino: Ino, name: &str) -> VfsResult<Option<Data>>;
    /// The named data streams shown as `user.` xattrs (name, content).
    fn named_streams(&self, ino: Ino) -> VfsResult<Vec<(String, Data)>>;
    /// The tagged item of Linux xattrs stored by `--unix-data` capture
    /// (tag, bytes), if any.
    fn linux_xattrs(&self, ino: Ino) -> VfsResult<Option<(u32, Vec<u8>)>>;
    /// Windows metadata for the `system.ntfs_*` xattrs.
    fn win_meta(&self, ino: Ino) -> VfsResult<WinMeta>;
    fn inode_count(&self) -> u64;
    /// The WIM the view reads (a read-write mount's changes after a commit).
    fn wim(&self) -> Arc<Wim>;
    /// Free bytes where changes go (`None`: nowhere, or unknown).
    fn free_space(&self) -> Option<u64>;
}

/// The view a [`super::Vfs`] reads through. There is one per mount, so
/// the overlay's size is not worth a box (and a pointer hop on every
/// read-write request).
#[allow(clippy::large_enum_variant)]
pub(crate) enum View {
    Image(ImageView),
    /// A read-only mount's image, decoded as it is visited.
    Lazy(LazyView),
    Overlay(Overlay),
}

/// The one dispatch point between the two views.
macro_rules! dispatch {
    ($self:ident, $v:ident => $e:expr) => {
        match $self {
            View::Image($v) => $e,
            View::Lazy($v) => $e,
            View::Overlay($v) => $e,
        }
    };
}

impl ReadView for View {
    #[inline]
    fn getattr(&self, ino: Ino, opts: &VfsOptions) -> VfsResult<Attr> {
        dispatch!(self, v => v.getattr(ino, opts))
    }
    #[inline]
    fn kind(&self, ino: Ino, opts: &VfsOptions) -> VfsResult<FileKind> {
        dispatch!(self, v => ReadView::kind(v, ino, opts))
    }
    #[inline]
    fn lookup(&self, parent: Ino, name: &str, opts: &VfsOptions) -> VfsResult<Attr> {
        dispatch!(self, v => v.lookup(parent, name, opts))
    }
    #[inline]
    fn lookup_ci(&self, parent: Ino, name: &str, opts: &VfsOptions) -> VfsResult<(String, Attr)> {
        dispatch!(self, v => v.lookup_ci(parent, name, opts))
    }
    #[inline]
    fn readdir(
        &self,
        ino: Ino,
        offset: u64,
        max: usize,
        opts: &VfsOptions,
    ) -> VfsResult<Vec<DirEntry>> {
        dispatch!(self, v => v.readdir(ino, offset, max, opts))
    }
    #[inline]
    fn readlink(&self, ino: Ino) -> VfsResult<String> {
        dispatch!(self, v => v.readlink(ino))
    }
    #[inline]
    fn data(&self, ino: Ino) -> VfsResult<Option<Data>> {
        dispatch!(self, v => v.data(ino))
    }
    #[inline]
    fn named_stream(&self, ino: Ino, name: &str) -> VfsResult<Option<Data>> {
        dispatch!(self, v => ReadView::named_stream(v, ino, name))
    }
    #[inline]
    fn named_streams(&self, ino: Ino) -> VfsResult<Vec<(String, Data)>> {
        dispatch!(self, v => ReadView::named_streams(v, ino))
    }
    #[inline]
    fn linux_xattrs(&self, ino: Ino) -> VfsResult<Option<(u32, Vec<u8>)>> {
        dispatch!(self, v => ReadView::linux_xattrs(v, ino))
    }
    #[inline]
    fn win_meta(&self, ino: Ino) -> VfsResult<WinMeta> {
        dispatch!(self, v => ReadView::win_meta(v, ino))
    }
    #[inline]
    fn inode_count(&self) -> u64 {
        dispatch!(self, v => ReadView::inode_count(v))
    }
    #[inline]
    fn wim(&self) -> Arc<Wim> {
        dispatch!(self, v => ReadView::wim(v))
    }
    #[inline]
    fn free_space(&self) -> Option<u64> {
        dispatch!(self, v => ReadView::free_space(v))
    }
}

/// The overlay answers through its own methods (it holds the tree lock
/// for each answer).
impl ReadView for Overlay {
    fn getattr(&self, ino: Ino, opts: &VfsOptions) -> VfsResult<Attr> {
        Overlay::getattr(self, ino, opts)
    }
    fn kind(&self, ino: Ino, opts: &VfsOptions) -> VfsResult<FileKind> {
        Ok(Overlay::getattr(self, ino, opts)?.kind)
    }
    fn lookup(&self, parent: Ino, name: &str, opts: &VfsOptions) -> VfsResult<Attr> {
        Overlay::lookup(self, parent, name, opts)
    }
    fn lookup_ci(&self, parent: Ino, name: &str, opts: &VfsOptions) -> VfsResult<(String, Attr)> {
        Overlay::lookup_ci(self, parent, name, opts)
    }
    fn readdir(
        &self,
        ino: Ino,
        offset: u64,
        max: usize,
        opts: &VfsOptions,
    ) -> VfsResult<Vec<DirEntry>> {
        Overlay::readdir(self, ino, offset, max, opts)
    }
    fn readlink(&self, ino: Ino) -> VfsResult<String> {
        Overlay::readlink(self, ino)
    }
    fn data(&self, ino: Ino) -> VfsResult<Option<Data>> {
        Overlay::data(self, ino)
    }
    fn named_stream(&self, ino: Ino, name: &str) -> VfsResult<Option<Data>> {
        Ok(Overlay::named_streams(self, ino)?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d))
    }
    fn named_streams(&self, ino: Ino) -> VfsResult<Vec<(String, Data)>> {
        Overlay::named_streams(self, ino)
    }
    fn linux_xattrs(&self, ino: Ino) -> VfsResult<Option<(u32, Vec<u8>)>> {
        Ok(Overlay::win_meta(self, ino)?.xattrs)
    }
    fn win_meta(&self, ino: Ino) -> VfsResult<WinMeta> {
        Overlay::win_meta(self, ino)
    }
    fn inode_count(&self) -> u64 {
        Overlay::inode_count(self)
    }
    fn wim(&self) -> Arc<Wim> {
        Overlay::wim(self)
    }
    fn free_space(&self) -> Option<u64> {
        self.staging_space().map(|(free, _)| free)
    }
}
