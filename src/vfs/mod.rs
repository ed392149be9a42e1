//! The filesystem the user sees, in platform-neutral terms.
//!
//! Both mount adapters (fuser on Linux, WinFsp on Windows) translate their
//! requests onto [`Vfs`] and its replies back; nothing here names a FUSE or
//! WinFsp type. Inode numbers are the image's inode indexes plus one, so
//! hard links share a number and numbers are stable for the mount's life.
//! Reads come from the image through the chunk cache; the read-write overlay
//! will sit in front of that without changing this interface.

mod write;
mod xattr;

use crate::cache::ChunkCache;
use crate::image::{Image, Inode, ROOT};
use crate::overlay::{Data, Overlay, StagingError, StagingStatus};
use crate::reparse;
use crate::wim::header::flags;
use crate::wim::{Blob, Wim};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

pub use crate::image::Special;
pub use crate::overlay::{Cred, RenameMode, SetAttr, XattrMode};

pub use xattr::XATTR_STREAM_PREFIX;

pub use crate::node::{
    Attr, DirEntry, FileKind, Ino, IoCause, StatFs, Timestamp, VfsError, VfsOptions, VfsResult,
    ROOT_INO,
};

/// A view of one image: read-only, or read-write with an [`Overlay`].
pub struct Vfs {
    pub wim: Arc<Wim>,
    pub image: Arc<Image>,
    pub cache: Arc<ChunkCache>,
    pub opts: VfsOptions,
    /// First reachable dentry of each inode (directories have exactly one).
    inode_dentry: Vec<u32>,
    /// POSIX targets of symlink and junction reparse points, by inode
    /// index, decoded on first use (`None`: the reparse data does not
    /// decode, and the inode shows as a file with its data).
    links: HashMap<u32, OnceLock<Option<String>>>,
    /// The change set of a read-write mount.
    rw: Option<Overlay>,
}

impl Vfs {
    pub fn new(wim: Arc<Wim>, image: Arc<Image>, cache: Arc<ChunkCache>, opts: VfsOptions) -> Vfs {
        let inode_dentry = image
            .inodes
            .iter()
            .map(|i| i.dentries.first().copied().unwrap_or(u32::MAX))
            .collect();
        // Symlink and junction targets are decoded when first asked for
        // (a kind, a size, a readlink): /usr has thousands, and a mount
        // should not wait for them.
        let links: HashMap<u32, OnceLock<Option<String>>> = image
            .inodes
            .iter()
            .enumerate()
            .filter(|(idx, ino)| {
                *idx != 0
                    && ino.is_reparse()
                    && !ino.dentries.is_empty()
                    && matches!(
                        ino.reparse_tag,
                        reparse::TAG_SYMLINK | reparse::TAG_MOUNT_POINT
                    )
            })
            .map(|(idx, _)| (idx as u32, OnceLock::new()))
            .collect();
        Vfs {
            wim,
            image,
            cache,
            opts,
            inode_dentry,
            links,
            rw: None,
        }
    }

    /// A read-write view: changes go to (and are resumed from) the staging
    /// directory `staging`. The status says whether earlier changes were
    /// found and replayed.
    pub fn open_rw(
        wim: Arc<Wim>,
        image: Arc<Image>,
        cache: Arc<ChunkCache>,
        opts: VfsOptions,
        staging: &Path,
    ) -> std::result::Result<(Vfs, StagingStatus), StagingError> {
        let mut v = Vfs::new(wim.clone(), image.clone(), cache.clone(), opts);
        let links = v.posix_links();
        let (ov, status) = Overlay::open(wim, image, cache, &links, staging)?;
        v.rw = Some(ov);
        Ok((v, status))
    }

    /// What a read-write mount of `image` would resume from the staging
    /// `staging`, without changing it (for `wimfs recover`).
    pub fn inspect_staging(
        wim: Arc<Wim>,
        image: Arc<Image>,
        cache: Arc<ChunkCache>,
        staging: &Path,
    ) -> std::result::Result<StagingStatus, StagingError> {
        let v = Vfs::new(
            wim.clone(),
            image.clone(),
            cache.clone(),
            VfsOptions::default(),
        );
        let links = v.posix_links();
        Overlay::inspect(wim, image, cache, &links, staging)
    }

    /// The POSIX targets of the image's symlinks, by inode index.
    fn posix_links(&self) -> HashMap<u32, String> {
        self.links
            .par_iter()
            .filter_map(|(&idx, _)| self.link_target(idx).map(|t| (idx, t.to_string())))
            .collect()
    }

    /// The overlay of a read-write mount.
    pub fn overlay(&self) -> Option<&Overlay> {
        self.rw.as_ref()
    }

    pub fn is_rw(&self) -> bool {
        self.rw.is_some()
    }

    fn rw(&self) -> VfsResult<&Overlay> {
        self.rw.as_ref().ok_or(VfsError::ReadOnly)
    }

    fn inode(&self, ino: Ino) -> VfsResult<(u32, &Inode)> {
        let idx = ino.checked_sub(1).ok_or(VfsError::NotFound)?;
        let i = u32::try_from(idx).map_err(|_| VfsError::NotFound)?;
        let node = self
            .image
            .inodes
            .get(i as usize)
            .ok_or(VfsError::NotFound)?;
        if node.dentries.is_empty() {
            return Err(VfsError::NotFound);
        }
        Ok((i, node))
    }

    fn dentry_of(&self, idx: u32) -> u32 {
        self.inode_dentry[idx as usize]
    }

    /// The POSIX target of inode `idx` if it is a symlink or junction
    /// whose reparse data decodes.
    fn link_target(&self, idx: u32) -> Option<&str> {
        let cell = self.links.get(&idx)?;
        cell.get_or_init(|| {
            let ino = self.image.inodes.get(idx as usize)?;
            let b = ino.reparse().and_then(|s| s.blob.as_ref())?;
            let data = read_once(&self.cache, b, 1 << 16)
                .map_err(|e| log::error!("reparse data of inode {idx}: {e}"))
                .ok()?;
            let t = reparse::decode(ino.reparse_tag, &data)?;
            let rpfix = self.wim.header.flags & flags::RP_FIX != 0;
            let fixed = rpfix && ino.rp_flags & reparse::RP_NOT_FIXED == 0;
            Some(reparse::posix_target(&t, fixed, &self.opts.mount_root))
        })
        .as_deref()
    }

    pub fn kind(&self, idx: u32, node: &Inode) -> FileKind {
        if self.link_target(idx).is_some() {
            FileKind::Symlink
        } else if node.is_dir() {
            FileKind::Directory
        } else if let Some(s) = node.special().filter(|_| self.opts.use_unix_data) {
            FileKind::Special(s)
        } else {
            FileKind::Regular
        }
    }

    pub fn getattr(&self, ino: Ino) -> VfsResult<Attr> {
        if let Some(ov) = &self.rw {
            return ov.getattr(ino, &self.opts);
        }
        let (idx, node) = self.inode(ino)?;
        let kind = self.kind(idx, node);
        let size = match kind {
            FileKind::Symlink => self.link_target(idx).map_or(0, |s| s.len() as u64),
            FileKind::Directory | FileKind::Special(_) => 0,
            FileKind::Regular => node.size(),
        };
        let (mut perm, mut uid, mut gid, mut rdev) = match kind {
            FileKind::Directory => (self.opts.dir_mode, self.opts.uid, self.opts.gid, 0),
            FileKind::Regular | FileKind::Special(_) => {
                (self.opts.file_mode, self.opts.uid, self.opts.gid, 0)
            }
            FileKind::Symlink => (0o777, self.opts.uid, self.opts.gid, 0),
        };
        if self.opts.use_unix_data {
            if let Some(u) = node.unix {
                perm = (u.mode & 0o7777) as u16;
                uid = u.uid;
                gid = u.gid;
                rdev = u.rdev;
            }
        }
        let ft = crate::time::filetime_to_unix;
        Ok(Attr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: ft(node.last_access_time),
            mtime: ft(node.last_write_time),
            ctime: ft(node.last_write_time),
            crtime: ft(node.creation_time),
            kind,
            perm,
            nlink: if kind == FileKind::Directory {
                2 + self.subdir_count(idx)
            } else {
                node.nlink()
            },
            uid,
            gid,
            rdev,
            attributes: node.attributes,
        })
    }

    fn subdir_count(&self, idx: u32) -> u32 {
        let d = self.dentry_of(idx);
        self.image.dentries[d as usize]
            .children
            .iter()
            .filter(|&&c| {
                let ci = self.image.dentries[c as usize].inode;
                let n = &self.image.inodes[ci as usize];
                n.is_dir() && self.link_target(ci).is_none()
            })
            .count() as u32
    }

    fn dir_dentry(&self, ino: Ino) -> VfsResult<u32> {
        let (idx, node) = self.inode(ino)?;
        if self.kind(idx, node) != FileKind::Directory {
            return Err(VfsError::NotDir);
        }
        Ok(self.dentry_of(idx))
    }

    pub fn lookup(&self, parent: Ino, name: &str) -> VfsResult<Attr> {
        if let Some(ov) = &self.rw {
            return ov.lookup(parent, name, &self.opts);
        }
        let d = self.dir_dentry(parent)?;
        let c = match name {
            "." => d,
            ".." => self.image.dentries[d as usize].parent,
            _ => self.image.child(d, name).ok_or(VfsError::NotFound)?,
        };
        self.getattr(self.image.dentries[c as usize].inode as Ino + 1)
    }

    /// Directory entries from `offset` (0 = start; includes `.` and `..`).
    pub fn readdir(&self, ino: Ino, offset: u64, max: usize) -> VfsResult<Vec<DirEntry>> {
        if let Some(ov) = &self.rw {
            return ov.readdir(ino, offset, max, &self.opts);
        }
        let d = self.dir_dentry(ino)?;
        let dn = &self.image.dentries[d as usize];
        let mut out = Vec::new();
        let total = dn.children.len() as u64 + 2;
        let mut off = offset;
        while off < total && out.len() < max {
            let e = match off {
                0 => DirEntry {
                    ino,
                    kind: FileKind::Directory,
                    name: ".".into(),
                    next: 1,
                },
                1 => DirEntry {
                    ino: self.image.dentries[dn.parent as usize].inode as Ino + 1,
                    kind: FileKind::Directory,
                    name: "..".into(),
                    next: 2,
                },
                n => {
                    let c = dn.children[(n - 2) as usize];
                    let cd = &self.image.dentries[c as usize];
                    let ci = cd.inode;
                    DirEntry {
                        ino: ci as Ino + 1,
                        kind: self.kind(ci, &self.image.inodes[ci as usize]),
                        name: cd.name.clone(),
                        next: n + 1,
                    }
                }
            };
            out.push(e);
            off += 1;
        }
        Ok(out)
    }

    pub fn readlink(&self, ino: Ino) -> VfsResult<String> {
        if let Some(ov) = &self.rw {
            return ov.readlink(ino);
        }
        let (idx, _) = self.inode(ino)?;
        self.link_target(idx)
            .map(str::to_string)
            .ok_or(VfsError::NotLink)
    }

    /// Check an open: read-only mounts refuse writes; directories refuse
    /// file opens.
    pub fn open(&self, ino: Ino, write: bool) -> VfsResult<()> {
        if let Some(ov) = &self.rw {
            let a = ov.getattr(ino, &self.opts)?;
            return if a.kind == FileKind::Directory {
                Err(VfsError::IsDir)
            } else {
                Ok(())
            };
        }
        let (idx, node) = self.inode(ino)?;
        if write {
            return Err(VfsError::ReadOnly);
        }
        if self.kind(idx, node) == FileKind::Directory {
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
        if let Some(ov) = &self.rw {
            return match ov.data(ino)? {
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
            };
        }
        let (idx, node) = self.inode(ino)?;
        if self.kind(idx, node) == FileKind::Directory {
            return Err(VfsError::IsDir);
        }
        let Some(s) = node.data() else {
            return Ok(0);
        };
        let Some(b) = &s.blob else {
            return if s.size == 0 {
                Ok(0)
            } else {
                Err(VfsError::missing_data())
            };
        };
        self.read_blob(b, offset, buf)
    }

    fn read_blob(&self, b: &Blob, offset: u64, buf: &mut [u8]) -> VfsResult<usize> {
        if offset >= b.size {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(b.size - offset) as usize;
        let got = self.cache.read_blob(b, offset, &mut buf[..n])?;
        self.readahead(b, offset + got as u64);
        Ok(got)
    }

    /// Start decoding the chunks just past `pos`, so a sequential reader
    /// finds them ready.
    fn readahead(&self, b: &Blob, pos: u64) {
        self.cache.prefetch_blob(b, pos, self.opts.readahead);
    }

    pub fn statfs(&self) -> StatFs {
        if let Some(ov) = &self.rw {
            // Free space is the staging filesystem's: that is where changes go.
            let used: u64 = ov.wim().parts.iter().map(|p| p.source.len()).sum();
            let free = ov.staging_space().map_or(0, |(f, _)| f);
            return StatFs {
                blocks: (used + free).div_ceil(4096),
                bfree: free / 4096,
                files: ov.inode_count(),
                ffree: 0,
                bsize: 4096,
                namelen: 255,
            };
        }
        let used: u64 = self.wim.parts.iter().map(|p| p.source.len()).sum();
        StatFs {
            blocks: used.div_ceil(4096),
            bfree: 0,
            files: self.image.inodes.len() as u64,
            ffree: 0,
            bsize: 4096,
            namelen: 255,
        }
    }

    pub fn inode_count(&self) -> u64 {
        if let Some(ov) = &self.rw {
            return ov.inode_count();
        }
        self.image.inodes.len() as u64
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
