//! The filesystem the user sees, in platform-neutral terms.
//!
//! Both mount adapters (fuser on Linux, WinFsp on Windows) translate their
//! requests onto [`Vfs`] and its replies back; nothing here names a FUSE or
//! WinFsp type. Inode numbers are the image's inode indexes plus one, so
//! hard links share a number and numbers are stable for the mount's life.
//! Every read goes through one view (`ReadView`, in `view.rs`): the image as it
//! is on a read-only mount, or the overlay over it on a read-write one, so
//! each request is written once here. Attributes are made in one place,
//! [`Attr::of`]; bytes come from the chunk cache, which alone knows how a
//! blob's range maps to chunks (reads, readahead).

mod following;
mod image_view;
mod lazy_view;
mod nt;
mod streams;
mod view;
mod write;
mod xattr;

use crate::cache::ChunkCache;
use crate::image::lazy::LazyImage;
use crate::image::{Image, ROOT};
use crate::overlay::{Data, LinkOf, Overlay, StagingError, StagingStatus};
use crate::wim::{Blob, BlobLoc, Wim};
use following::Follower;
use image_view::ImageView;
use lazy_view::LazyView;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use view::{ReadView, View};

pub use crate::image::Special;
pub use crate::overlay::{merge_attributes, Cred, NtTimes, RenameMode, SetAttr, XattrMode};

pub use nt::StreamInfo;
pub use xattr::XATTR_STREAM_PREFIX;

pub use crate::node::{
    Attr, AttrFacts, DirEntry, FileKind, Ino, IoCause, StatFs, Timestamp, VfsError, VfsOptions,
    VfsResult, ROOT_INO,
};

/// A view of one image: read-only, or read-write with an [`Overlay`].
/// Every read is written once, over the `ReadView` the mount has.
pub struct Vfs {
    pub wim: Arc<Wim>,
    pub image: Arc<Image>,
    pub cache: Arc<ChunkCache>,
    pub opts: VfsOptions,
    /// The image as it is, or the overlay over it (read-write).
    view: View,
    /// Resources in stored order, for readahead across files (read-only
    /// mounts: the WIM never changes under them). Made on first use.
    following: OnceLock<Follower>,
}

/// Readahead across files: how many resources after the one a read
/// finished, and how much decoded data at most. Measured with `cat` of
/// every file of /usr/share (LZX, 2 loaded cores, medians of 4): none
/// 5.0 s, 4 files/256 KiB 4.6 s, 16 files/1 MiB 4.8 s.
const FOLLOW_FILES: usize = 4;
const FOLLOW_BYTES: u64 = 256 << 10;

impl Vfs {
    pub fn new(wim: Arc<Wim>, image: Arc<Image>, cache: Arc<ChunkCache>, opts: VfsOptions) -> Vfs {
        let view = View::Image(ImageView::new(
            wim.clone(),
            image.clone(),
            cache.clone(),
            &opts,
        ));
        Vfs {
            wim,
            image,
            cache,
            opts,
            view,
            following: OnceLock::new(),
        }
    }

    /// A read-only view of image `index` that decodes directories as they
    /// are visited (what `wimfs mount` uses): opening it reads only the
    /// image's security data and root entry, so it takes the same time
    /// and memory whatever the image's size. Its inode numbers come from
    /// the metadata resource (see [`crate::image::lazy`]); `image` holds
    /// only the index ([`Image::placeholder`]).
    pub fn open_lazy(
        wim: Arc<Wim>,
        index: u32,
        cache: Arc<ChunkCache>,
        opts: VfsOptions,
    ) -> crate::error::Result<Vfs> {
        let lazy = Arc::new(LazyImage::open(wim.clone(), index)?);
        let view = View::Lazy(LazyView::new(lazy, cache.clone(), &opts));
        Ok(Vfs {
            wim,
            image: Arc::new(Image::placeholder(index)),
            cache,
            opts,
            view,
            following: OnceLock::new(),
        })
    }

    /// The lazily decoded image of a read-only view made by
    /// [`Vfs::open_lazy`], or the base image of a read-write one.
    pub fn lazy_image(&self) -> Option<Arc<LazyImage>> {
        match &self.view {
            View::Lazy(v) => Some(v.image().clone()),
            View::Overlay(ov) => Some(ov.base_image()),
            View::Image(_) => None,
        }
    }

    /// A read-write view of image `index`: changes go to (and are resumed
    /// from) the staging directory `staging`. The status says whether
    /// earlier changes were found and replayed. Like the read-only view it
    /// decodes the image one directory at a time (a resume, which must
    /// find every inode its journal names, and a commit decode all of it).
    pub fn open_rw(
        wim: Arc<Wim>,
        index: u32,
        cache: Arc<ChunkCache>,
        opts: VfsOptions,
        staging: &Path,
    ) -> std::result::Result<(Vfs, StagingStatus), StagingError> {
        let (lazy, link_of) = Self::base_for_overlay(&wim, index, &cache, &opts)?;
        let (ov, status) = Overlay::open(wim.clone(), lazy, cache.clone(), link_of, staging)?;
        let v = Vfs {
            wim,
            image: Arc::new(Image::placeholder(index)),
            cache,
            opts,
            view: View::Overlay(ov),
            following: OnceLock::new(),
        };
        Ok((v, status))
    }

    /// The lazily decoded base image of an overlay, and how its symlink
    /// targets show (as the read-only view shows them).
    fn base_for_overlay(
        wim: &Arc<Wim>,
        index: u32,
        cache: &Arc<ChunkCache>,
        opts: &VfsOptions,
    ) -> std::result::Result<(Arc<LazyImage>, LinkOf), StagingError> {
        let lazy = Arc::new(
            LazyImage::open(wim.clone(), index)
                .map_err(|e| StagingError::Invalid(format!("cannot load image {index}: {e}")))?,
        );
        // Not the view itself: it would keep the first lazy image (and
        // every entry a resume or commit decodes in it) alive.
        let rpfix = wim.header.flags & crate::wim::header::flags::RP_FIX != 0;
        let (cache, root) = (cache.clone(), opts.mount_root.clone());
        let link_of: LinkOf =
            Arc::new(move |e| lazy_view::link_target(e, &cache, rpfix, &root).map(str::to_string));
        Ok((lazy, link_of))
    }

    /// What a read-write mount of image `index` would resume from the
    /// staging `staging`, without changing it (for `wimfs recover`).
    pub fn inspect_staging(
        wim: Arc<Wim>,
        index: u32,
        cache: Arc<ChunkCache>,
        staging: &Path,
    ) -> std::result::Result<StagingStatus, StagingError> {
        let (lazy, link_of) = Self::base_for_overlay(&wim, index, &cache, &VfsOptions::default())?;
        Overlay::inspect(wim, lazy, cache, link_of, staging)
    }

    /// The overlay of a read-write mount.
    pub fn overlay(&self) -> Option<&Overlay> {
        match &self.view {
            View::Overlay(ov) => Some(ov),
            View::Image(_) | View::Lazy(_) => None,
        }
    }

    pub fn is_rw(&self) -> bool {
        self.overlay().is_some()
    }

    fn rw(&self) -> VfsResult<&Overlay> {
        self.overlay().ok_or(VfsError::ReadOnly)
    }

    pub fn getattr(&self, ino: Ino) -> VfsResult<Attr> {
        self.view.getattr(ino, &self.opts)
    }

    pub fn lookup(&self, parent: Ino, name: &str) -> VfsResult<Attr> {
        self.view.lookup(parent, name, &self.opts)
    }

    /// Directory entries from `offset` (0 = start; includes `.` and `..`).
    pub fn readdir(&self, ino: Ino, offset: u64, max: usize) -> VfsResult<Vec<DirEntry>> {
        self.view.readdir(ino, offset, max, &self.opts)
    }

    pub fn readlink(&self, ino: Ino) -> VfsResult<String> {
        self.view.readlink(ino)
    }

    /// Check an open: read-only mounts refuse writes; directories refuse
    /// file opens.
    pub fn open(&self, ino: Ino, write: bool) -> VfsResult<()> {
        let kind = self.view.kind(ino, &self.opts)?;
        if write && !self.is_rw() {
            return Err(VfsError::ReadOnly);
        }
        if kind == FileKind::Directory {
            return Err(VfsError::IsDir);
        }
        Ok(())
    }

    /// Read up to `size` bytes of the unnamed data stream at `offset`.
    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> VfsResult<Vec<u8>> {
        let mut buf = vec![0u8; size as usize];
        let n = self.read_into(ino, offset, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// A buffer for a read of `len` bytes from the cache's pool (inside
    /// its memory budget, recycled across threads), for adapters that
    /// answer many reads: see [`Vfs::read_into`].
    pub fn read_buffer(&self, len: usize) -> crate::cache::ChunkBuf {
        self.cache.scratch(len)
    }

    /// Read up to `buf.len()` bytes of the unnamed data stream at `offset`
    /// into `buf`; returns how many (fewer only at the end of the file).
    pub fn read_into(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> VfsResult<usize> {
        self.read_data(self.view.data(ino)?, offset, buf)
    }

    /// Read from a stream's content (`None`: no stream, nothing to read).
    fn read_data(&self, data: Option<Data>, offset: u64, buf: &mut [u8]) -> VfsResult<usize> {
        match data {
            None => Ok(0),
            Some(Data::Staged(s)) => {
                let n = (buf.len() as u64).min(s.size().saturating_sub(offset)) as usize;
                Ok(s.read(offset, &mut buf[..n])?)
            }
            Some(Data::Inline(v)) => {
                let a = usize::try_from(offset).unwrap_or(usize::MAX).min(v.len());
                let b = a.saturating_add(buf.len()).min(v.len());
                buf[..b - a].copy_from_slice(&v[a..b]);
                Ok(b - a)
            }
            Some(Data::Base { blob: Some(b), .. }) => self.read_blob(&b, offset, buf),
            Some(Data::Base { size: 0, .. }) => Ok(0),
            Some(Data::Base { blob: None, .. }) => Err(VfsError::missing_data()),
        }
    }

    fn read_blob(&self, b: &Blob, offset: u64, buf: &mut [u8]) -> VfsResult<usize> {
        if offset >= b.size {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(b.size - offset) as usize;
        let got = self.cache.read_blob(b, offset, &mut buf[..n])?;
        let end = offset + got as u64;
        if end >= b.size {
            self.read_following(b);
        } else {
            self.readahead(b, end);
        }
        Ok(got)
    }

    /// A read reached the end of `b`: start decoding the resources stored
    /// after it (see `following.rs`). Read-only mounts only: a read-write
    /// mount's WIM is reopened by a commit, and its readers are mostly
    /// the writers' own copies.
    fn read_following(&self, b: &Blob) {
        let BlobLoc::Whole(r) = &b.loc else {
            return;
        };
        // A raw resource (stored uncompressed: a .gz, a .png) is read
        // straight from the file, but the ones after it may need decoding.
        if self.is_rw() {
            return;
        }
        let f = self
            .following
            .get_or_init(|| Follower::start(self.wim.clone(), self.cache.clone()));
        f.finished(r, &self.cache, FOLLOW_FILES, FOLLOW_BYTES);
    }

    /// Start decoding the chunks just past `pos`, so a sequential reader
    /// finds them ready.
    fn readahead(&self, b: &Blob, pos: u64) {
        self.cache.prefetch_blob(b, pos, self.opts.readahead);
    }

    /// Sizes for statfs: the WIM's parts are what is used; free space is
    /// where changes go (the staging's filesystem; none when read-only).
    pub fn statfs(&self) -> StatFs {
        let used: u64 = self.view.wim().parts.iter().map(|p| p.source.len()).sum();
        let free = self.view.free_space().unwrap_or(0);
        StatFs {
            blocks: (used + free).div_ceil(4096),
            bfree: free / 4096,
            files: self.view.inode_count(),
            ffree: 0,
            bsize: 4096,
            namelen: 255,
        }
    }

    pub fn inode_count(&self) -> u64 {
        self.view.inode_count()
    }

    /// Root dentry helper for adapters.
    pub fn root_dentry(&self) -> u32 {
        ROOT
    }
}

/// Read a small blob that is wanted once (symlink targets at mount),
/// without filling the cache where it can (see
/// [`ChunkCache::read_blob_once`]).
fn read_once(cache: &ChunkCache, b: &Blob, max: u64) -> VfsResult<Vec<u8>> {
    if b.size > max {
        return Err(VfsError::TooBig);
    }
    Ok(cache.read_blob_once(b)?)
}

/// Read a small blob entirely (reparse data, xattr values).
pub(crate) fn read_all(cache: &ChunkCache, b: &Blob, max: u64) -> VfsResult<Vec<u8>> {
    if b.size > max {
        return Err(VfsError::TooBig);
    }
    Ok(cache.read_blob_all(b)?)
}
