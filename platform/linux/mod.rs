//! FUSE adapter (fuser 0.18): a thin translation between kernel requests and
//! [`crate::vfs::Vfs`]. No WIM logic and no caching policy live here; this
//! module only chooses how the *kernel* may cache an immutable image (long
//! entry/attribute timeouts, kept page cache, cached directories and
//! symlinks, large reads) and how requests are spread over threads.
//!
//! Every operation that would change the image answers EROFS. Requests are
//! answered on the FUSE thread that received them: metadata comes from
//! memory, and a read that must wait for decompression holds only its own
//! thread while the others (many, each on its own cloned /dev/fuse fd) keep
//! serving. Handing reads to a separate pool instead was measured: the extra
//! thread hop per request cost ~30% of small-file read throughput.

use crate::vfs::{Attr, FileKind, Vfs, VfsError};
use fuser::{
    AccessFlags, BsdFileFlags, Config, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType,
    Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner, MountOption,
    OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, Session, SessionACL, SessionUnmounter, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The image never changes under a read-only mount, so the kernel may keep
/// names and attributes for as long as it likes.
const TTL: Duration = Duration::from_secs(365 * 24 * 3600);
const GEN: Generation = Generation(0);
/// Entries asked of the vfs per READDIR request (the reply buffer decides
/// how many actually fit).
const READDIR_BATCH: usize = 256;

/// How to mount: the few choices the command line exposes.
#[derive(Debug, Clone)]
pub struct MountConfig {
    /// FUSE request threads (each with its own cloned /dev/fuse fd). Reads
    /// block their thread while chunks decode, so more than the cores.
    pub threads: usize,
    /// Let other users see the mount (`allow_other`).
    pub allow_other: bool,
    /// Shown as the source in /proc/mounts.
    pub fsname: String,
}

impl Default for MountConfig {
    fn default() -> Self {
        MountConfig {
            threads: 8,
            allow_other: false,
            fsname: "wimfs".into(),
        }
    }
}

/// A VfsError in the kernel's vocabulary.
pub fn errno(e: &VfsError) -> Errno {
    match e {
        VfsError::NotFound => Errno::ENOENT,
        VfsError::NotDir => Errno::ENOTDIR,
        VfsError::IsDir => Errno::EISDIR,
        VfsError::ReadOnly => Errno::EROFS,
        VfsError::NoAttr => Errno::NO_XATTR,
        VfsError::Range => Errno::ERANGE,
        VfsError::TooBig => Errno::E2BIG,
        VfsError::Invalid | VfsError::NotLink => Errno::EINVAL,
        VfsError::Io(_) => Errno::EIO,
    }
}

fn systime((secs, nanos): (i64, u32)) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(nanos.min(999_999_999)));
    if secs >= 0 {
        UNIX_EPOCH
            .checked_add(Duration::from_secs(secs as u64) + nanos)
            .unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))
            .and_then(|t| t.checked_add(nanos))
            .unwrap_or(UNIX_EPOCH)
    }
}

fn file_type(k: FileKind) -> FileType {
    match k {
        FileKind::Directory => FileType::Directory,
        FileKind::Regular => FileType::RegularFile,
        FileKind::Symlink => FileType::Symlink,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: systime(a.atime),
        mtime: systime(a.mtime),
        ctime: systime(a.ctime),
        crtime: systime(a.crtime),
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        // A large preferred I/O size makes cat/cp ask for big reads.
        blksize: 128 * 1024,
        flags: 0,
    }
}

/// The answer to a negative lookup: node id 0 tells the kernel to remember
/// that the name does not exist for the entry timeout.
fn negative_entry() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn name_str(name: &OsStr) -> Option<&str> {
    std::str::from_utf8(name.as_bytes()).ok()
}

/// The fuser filesystem: a thin layer over a [`Vfs`].
pub struct WimFuse {
    vfs: Arc<Vfs>,
    /// The kernel may skip OPEN/RELEASE and OPENDIR/RELEASEDIR: the first
    /// one answered ENOSYS switches them off, and the kernel then keeps the
    /// page cache and caches directories by itself (FOPEN_KEEP_CACHE |
    /// FOPEN_CACHE_DIR is its default without open). Saves two round trips
    /// per file and per directory.
    no_open: bool,
}

impl WimFuse {
    pub fn new(vfs: Arc<Vfs>) -> WimFuse {
        WimFuse {
            vfs,
            no_open: false,
        }
    }
}

impl Filesystem for WimFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Each capability is asked for on its own: one the kernel lacks must
        // not cost the others.
        for cap in [
            InitFlags::FUSE_ASYNC_READ,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_MAX_PAGES,
        ] {
            let _ = config.add_capabilities(cap);
        }
        // Only on a read-only mount: the kernel then refuses writable opens
        // itself (EROFS), so nothing is lost by not seeing OPEN.
        self.no_open = config
            .add_capabilities(InitFlags::FUSE_NO_OPEN_SUPPORT | InitFlags::FUSE_NO_OPENDIR_SUPPORT)
            .is_ok();
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        // WIM timestamps count 100 ns intervals.
        let _ = config.set_time_granularity(Duration::from_nanos(100));
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name_str(name) else {
            return reply.error(Errno::ENOENT);
        };
        match self.vfs.lookup(parent.0, name) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), GEN),
            Err(VfsError::NotFound) => reply.entry(&TTL, &negative_entry(), GEN),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.vfs.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.vfs.readlink(ino.0) {
            Ok(t) => reply.data(t.as_bytes()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if self.no_open {
            return reply.error(Errno::ENOSYS);
        }
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & libc::O_TRUNC != 0;
        match self.vfs.open(ino.0, write) {
            // The data never changes: keep the page cache across opens and
            // skip FLUSH on close.
            Ok(()) => reply.opened(
                FileHandle(0),
                FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.vfs.read(ino.0, offset, size) {
            Ok(buf) => reply.data(&buf),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing to flush, ever: ENOSYS tells the kernel to stop sending
        // FLUSH on every close.
        reply.error(Errno::ENOSYS);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.no_open {
            return reply.error(Errno::ENOSYS);
        }
        match self.vfs.getattr(ino.0) {
            Ok(a) if a.kind == FileKind::Directory => reply.opened(
                FileHandle(0),
                FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
            ),
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut off = offset;
        loop {
            let entries = match self.vfs.readdir(ino.0, off, READDIR_BATCH) {
                Ok(v) => v,
                Err(e) => return reply.error(errno(&e)),
            };
            if entries.is_empty() {
                break;
            }
            for e in entries {
                if reply.add(INodeNo(e.ino), e.next, file_type(e.kind), &e.name) {
                    return reply.ok();
                }
                off = e.next;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let mut off = offset;
        loop {
            let entries = match self.vfs.readdir(ino.0, off, READDIR_BATCH) {
                Ok(v) => v,
                Err(e) => return reply.error(errno(&e)),
            };
            if entries.is_empty() {
                break;
            }
            for e in entries {
                let attr = match self.vfs.getattr(e.ino) {
                    Ok(a) => a,
                    Err(err) => return reply.error(errno(&err)),
                };
                if reply.add(
                    INodeNo(e.ino),
                    e.next,
                    &e.name,
                    &TTL,
                    &file_attr(&attr),
                    GEN,
                ) {
                    return reply.ok();
                }
                off = e.next;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.vfs.statfs();
        reply.statfs(
            s.blocks, s.bfree, s.bfree, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
        );
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let Some(name) = name_str(name) else {
            return reply.error(Errno::NO_XATTR);
        };
        match self.vfs.getxattr(ino.0, name) {
            Ok(v) => xattr_reply(reply, size, &v),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.vfs.listxattr(ino.0) {
            Ok(names) => {
                let mut v = Vec::new();
                for n in names {
                    v.extend_from_slice(n.as_bytes());
                    v.push(0);
                }
                xattr_reply(reply, size, &v)
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match self.vfs.getattr(ino.0) {
            Ok(_) if mask.contains(AccessFlags::W_OK) => reply.error(Errno::EROFS),
            Ok(_) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }
}

fn xattr_reply(reply: ReplyXattr, size: u32, v: &[u8]) {
    if size == 0 {
        match u32::try_from(v.len()) {
            Ok(n) => reply.size(n),
            Err(_) => reply.error(Errno::E2BIG),
        }
    } else if v.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(v);
    }
}

/// A mounted, initialised FUSE session: the mount is live once this exists.
pub struct Mounted {
    session: Session<WimFuse>,
}

impl Mounted {
    /// Something another thread can use to unmount (ends [`Mounted::run`]).
    pub fn unmounter(&mut self) -> SessionUnmounter {
        self.session.unmount_callable()
    }

    /// Serve requests until the filesystem is unmounted.
    pub fn run(self) -> io::Result<()> {
        self.session.run()
    }
}

/// Mount `vfs` read-only at `mountpoint`. Returns after the kernel's INIT
/// handshake, i.e. once the mount is usable.
pub fn mount(vfs: Arc<Vfs>, mountpoint: &Path, cfg: &MountConfig) -> io::Result<Mounted> {
    let fs = WimFuse::new(vfs);
    let mut c = Config::default();
    c.mount_options = vec![
        MountOption::RO,
        MountOption::FSName(cfg.fsname.clone()),
        MountOption::Subtype("wimfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
    ];
    c.acl = if cfg.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    c.n_threads = Some(cfg.threads.max(1));
    c.clone_fd = true;
    let session = Session::new(fs, mountpoint, &c)?;
    Ok(Mounted { session })
}
