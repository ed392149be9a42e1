//! FUSE adapter (fuser 0.18): a thin translation between kernel requests and
//! [`crate::vfs::Vfs`]. No WIM logic and no caching policy live here; this
//! module only chooses how the *kernel* may cache an immutable image (long
//! entry/attribute timeouts, kept page cache, cached directories and
//! symlinks, large reads) and how requests are spread over threads.
//!
//! A read-only mount answers EROFS to every operation that would change the
//! image; a read-write mount (a [`Vfs`] opened with `Vfs::open_rw`) passes
//! them on to the vfs's write API, with short cache timeouts and real file
//! handles (OPEN/RELEASE are never skipped there). Requests are answered on the FUSE thread that received them: metadata comes from
//! memory, and a read that must wait for decompression holds only its own
//! thread while the others (many, each on its own cloned /dev/fuse fd) keep
//! serving. Handing reads to a separate pool instead was measured: the extra
//! thread hop per request cost ~30% of small-file read throughput.

use crate::vfs::{
    Attr, Cred, FileKind, IoCause, RenameMode, SetAttr, Special, Vfs, VfsError, VfsResult,
    XattrMode,
};
use fuser::{
    AccessFlags, BsdFileFlags, Config, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType,
    Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner, MountOption,
    OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, Session, SessionACL, TimeOrNow, WriteFlags,
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
/// A read-write mount changes only through this adapter, but hard links,
/// link counts and times of other names change with it: keep it short.
const RW_TTL: Duration = Duration::from_secs(1);
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

/// A VfsError in the kernel's vocabulary. Every error reply passes here
/// once, so this is where an I/O error (whose cause the vfs keeps but does
/// not log) is logged.
pub fn errno(e: &VfsError) -> Errno {
    if let VfsError::Io(cause) = e {
        match cause {
            IoCause::Staging(io) => log::error!("staging I/O error: {io}"),
            IoCause::Lib(err) => log::error!("{err}"),
        }
    }
    match e {
        VfsError::NotFound => Errno::ENOENT,
        VfsError::NotDir => Errno::ENOTDIR,
        VfsError::IsDir => Errno::EISDIR,
        VfsError::ReadOnly => Errno::EROFS,
        VfsError::NoAttr => Errno::NO_XATTR,
        VfsError::Range => Errno::ERANGE,
        VfsError::TooBig => Errno::E2BIG,
        VfsError::Invalid | VfsError::NotLink => Errno::EINVAL,
        VfsError::Exists => Errno::EEXIST,
        VfsError::NotEmpty => Errno::ENOTEMPTY,
        VfsError::NoSpace => Errno::ENOSPC,
        VfsError::Perm => Errno::EPERM,
        VfsError::NameTooLong => Errno::ENAMETOOLONG,
        VfsError::NotSupported => Errno::EOPNOTSUPP,
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
        FileKind::Special(Special::Fifo) => FileType::NamedPipe,
        FileKind::Special(Special::CharDevice) => FileType::CharDevice,
        FileKind::Special(Special::BlockDevice) => FileType::BlockDevice,
        FileKind::Special(Special::Socket) => FileType::Socket,
    }
}

fn file_attr(a: &Attr, blksize: u32) -> FileAttr {
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
        blksize,
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

/// A new name: WIM names are UTF-16, so it must be valid UTF-8.
fn new_name(name: &OsStr) -> Result<&str, Errno> {
    name_str(name).ok_or(Errno::EINVAL)
}

fn cred(req: &Request) -> Cred {
    Cred {
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn unix_time(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() == 0 {
                (-secs, 0)
            } else {
                (-secs - 1, 1_000_000_000 - d.subsec_nanos())
            }
        }
    }
}

fn time_or_now(t: TimeOrNow) -> (i64, u32) {
    match t {
        TimeOrNow::SpecificTime(t) => unix_time(t),
        TimeOrNow::Now => unix_time(SystemTime::now()),
    }
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
    /// A read-write mount (the vfs has an overlay).
    rw: bool,
    ttl: Duration,
    /// The preferred I/O size shown (`st_blksize`): cp and cat size their
    /// buffers by it, and every READ or WRITE request is a round trip.
    blksize: u32,
}

/// `st_blksize` of a read-only mount: cat/cp ask for big reads.
const RO_BLKSIZE: u32 = 128 * 1024;
/// `st_blksize` of a read-write mount: cp writes this much per WRITE
/// request. Measured copying 1 GiB in (2 cores): 128 KiB 2.1-2.5 s,
/// 256 KiB 1.5-1.9 s, 1 MiB 4.8-7 s (the daemon's copies into the staging
/// page cache slow down with requests that large).
const RW_BLKSIZE: u32 = 256 * 1024;

impl WimFuse {
    pub fn new(vfs: Arc<Vfs>) -> WimFuse {
        let rw = vfs.is_rw();
        WimFuse {
            vfs,
            no_open: false,
            rw,
            ttl: if rw { RW_TTL } else { TTL },
            blksize: if rw { RW_BLKSIZE } else { RO_BLKSIZE },
        }
    }

    fn entry(&self, r: VfsResult<Attr>, reply: ReplyEntry) {
        match r {
            Ok(a) => reply.entry(&self.ttl, &file_attr(&a, self.blksize), GEN),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// `system.*` xattrs (Windows metadata under ntfs-3g's names) may be
    /// changed only by the file's owner or root, as ntfs-3g allows.
    fn may_set_system(&self, req: &Request, ino: u64, name: &str) -> Result<(), Errno> {
        if !name.starts_with("system.") || req.uid() == 0 {
            return Ok(());
        }
        match self.vfs.getattr(ino) {
            Ok(a) if a.uid == req.uid() => Ok(()),
            Ok(_) => Err(Errno::EPERM),
            Err(e) => Err(errno(&e)),
        }
    }

    fn empty(&self, r: VfsResult<()>, reply: ReplyEmpty) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// The checks `mknod` and `create` share, then the new file (opened for
    /// writing).
    fn create_file(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> Result<(Attr, u64), Errno> {
        if !self.rw {
            return Err(Errno::EROFS);
        }
        // Only regular files here (mknod of FIFOs, devices and sockets is
        // [`WimFuse::mknod`]'s).
        if mode & crate::sys::linux_consts::S_IFMT != crate::sys::linux_consts::S_IFREG
            && mode & crate::sys::linux_consts::S_IFMT != 0
        {
            return Err(Errno::EPERM);
        }
        let name = new_name(name)?;
        self.vfs
            .create(parent.0, name, mode & 0o7777 & !umask, cred(req))
            .map_err(|e| errno(&e))
    }
}

impl Filesystem for WimFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Each capability is asked for on its own: one the kernel lacks must
        // not cost the others.
        for cap in [
            InitFlags::FUSE_ASYNC_READ,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_MAX_PAGES,
        ] {
            let _ = config.add_capabilities(cap);
        }
        // READDIRPLUS_AUTO makes the kernel ask for attributes only in the
        // first READDIR of a directory (what fits one reply, ~700 names);
        // the rest of a large directory then costs one LOOKUP per name when
        // stat()ed (a walk of /usr/share: 19,000 LOOKUPs beside 6,000
        // READDIRs). On a read-only mount every attribute is in memory and
        // stays valid for good, so always send them with the names.
        if self.rw {
            let _ = config.add_capabilities(InitFlags::FUSE_READDIRPLUS_AUTO);
        }
        // Only on a read-only mount: the kernel then refuses writable opens
        // itself (EROFS), so nothing is lost by not seeing OPEN. A
        // read-write mount needs every OPEN and RELEASE (handles count).
        self.no_open = !self.rw
            && config
                .add_capabilities(
                    InitFlags::FUSE_NO_OPEN_SUPPORT | InitFlags::FUSE_NO_OPENDIR_SUPPORT,
                )
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
            Ok(a) => reply.entry(&self.ttl, &file_attr(&a, self.blksize), GEN),
            Err(VfsError::NotFound) => reply.entry(&self.ttl, &negative_entry(), GEN),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.vfs.getattr(ino.0) {
            Ok(a) => reply.attr(&self.ttl, &file_attr(&a, self.blksize)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let a = SetAttr {
            size,
            mode: mode.map(|m| m & 0o7777),
            uid,
            gid,
            atime: atime.map(time_or_now),
            mtime: mtime.map(time_or_now),
        };
        if a == SetAttr::default() {
            // Only ctime or BSD flags: nothing a WIM keeps.
            return self.getattr(_req, ino, None, reply);
        }
        match self.vfs.setattr(ino.0, &a) {
            Ok(at) => reply.attr(&self.ttl, &file_attr(&at, self.blksize)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.vfs.readlink(ino.0) {
            Ok(t) => reply.data(t.as_bytes()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        // A FIFO, device or socket: an empty file whose UNIX data says what
        // it is (only a --unix-data mount has that; the kernel has checked
        // CAP_MKNOD for devices). The mount is nodev: a device node made
        // here cannot be opened through it.
        if let Some(kind) = Special::of_mode(mode) {
            if !self.rw {
                return reply.error(Errno::EROFS);
            }
            let name = match new_name(name) {
                Ok(n) => n,
                Err(e) => return reply.error(e),
            };
            let r = self.vfs.mknod(
                parent.0,
                name,
                kind,
                mode & 0o7777 & !umask,
                rdev,
                cred(req),
            );
            return self.entry(r, reply);
        }
        match self.create_file(req, parent, name, mode, umask) {
            Ok((a, fh)) => {
                let _ = self.vfs.release(fh);
                reply.entry(&self.ttl, &file_attr(&a, self.blksize), GEN)
            }
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let name = match new_name(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let r = self
            .vfs
            .mkdir(parent.0, name, mode & 0o7777 & !umask, cred(req));
        self.entry(r, reply)
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Some(name) = name_str(name) else {
            return reply.error(Errno::ENOENT);
        };
        self.empty(self.vfs.unlink(parent.0, name), reply)
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Some(name) = name_str(name) else {
            return reply.error(Errno::ENOENT);
        };
        self.empty(self.vfs.rmdir(parent.0, name), reply)
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let name = match new_name(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let Some(target) = target.to_str() else {
            return reply.error(Errno::EINVAL);
        };
        let r = self.vfs.symlink(parent.0, name, target, cred(req));
        self.entry(r, reply)
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let Some(name) = name_str(name) else {
            return reply.error(Errno::ENOENT);
        };
        let newname = match new_name(newname) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let known = RenameFlags::RENAME_NOREPLACE | RenameFlags::RENAME_EXCHANGE;
        if !(flags - known).is_empty() || flags.contains(known) {
            return reply.error(Errno::EINVAL);
        }
        let mode = if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            RenameMode::Exchange
        } else if flags.contains(RenameFlags::RENAME_NOREPLACE) {
            RenameMode::NoReplace
        } else {
            RenameMode::Replace
        };
        let r = self.vfs.rename(parent.0, name, newparent.0, newname, mode);
        self.empty(r, reply)
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let newname = match new_name(newname) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let r = self.vfs.link(ino.0, newparent.0, newname);
        self.entry(r, reply)
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if self.no_open {
            return reply.error(Errno::ENOSYS);
        }
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        let truncate = flags.0 & crate::sys::linux_consts::O_TRUNC != 0;
        if self.rw {
            return match self.vfs.open_file(ino.0, write, truncate) {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(errno(&e)),
            };
        }
        match self.vfs.open(ino.0, write || truncate) {
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
        let mut buf = self.vfs.read_buffer(size as usize);
        match self.vfs.read_into(ino.0, offset, buf.as_mut_slice()) {
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.vfs.write(ino.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // On a read-write mount close(2) waits for FLUSH (not for
        // RELEASE): the changes are journalled here, so a closed file
        // survives the daemon being killed right after. On a read-only
        // mount ENOSYS tells the kernel to stop sending FLUSH on every
        // close.
        if self.rw {
            self.empty(self.vfs.flush(fh.0), reply)
        } else {
            reply.error(Errno::ENOSYS);
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.empty(self.vfs.release(fh.0), reply)
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.empty(self.vfs.fsync(ino.0), reply)
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.no_open {
            return reply.error(Errno::ENOSYS);
        }
        let flags = if self.rw {
            FopenFlags::empty()
        } else {
            FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR
        };
        match self.vfs.getattr(ino.0) {
            Ok(a) if a.kind == FileKind::Directory => reply.opened(FileHandle(0), flags),
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
                    &self.ttl,
                    &file_attr(&attr, self.blksize),
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
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.empty(self.vfs.fsync(ino.0), reply)
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.vfs.statfs();
        reply.statfs(
            s.blocks, s.bfree, s.bfree, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
        );
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        if !self.rw {
            return reply.error(Errno::EROFS);
        }
        let Some(name) = name_str(name) else {
            return reply.error(Errno::EOPNOTSUPP);
        };
        let mode = match flags {
            0 => XattrMode::Any,
            crate::sys::linux_consts::XATTR_CREATE => XattrMode::Create,
            crate::sys::linux_consts::XATTR_REPLACE => XattrMode::Replace,
            _ => return reply.error(Errno::EINVAL),
        };
        if let Err(e) = self.may_set_system(req, ino.0, name) {
            return reply.error(e);
        }
        self.empty(self.vfs.setxattr(ino.0, name, value, mode), reply)
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

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if !self.rw {
            return reply.error(Errno::EROFS);
        }
        let Some(name) = name_str(name) else {
            return reply.error(Errno::NO_XATTR);
        };
        if let Err(e) = self.may_set_system(req, ino.0, name) {
            return reply.error(e);
        }
        self.empty(self.vfs.removexattr(ino.0, name), reply)
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match self.vfs.getattr(ino.0) {
            Ok(_) if mask.contains(AccessFlags::W_OK) && !self.rw => reply.error(Errno::EROFS),
            Ok(_) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.create_file(req, parent, name, mode, umask) {
            Ok((a, fh)) => reply.created(
                &self.ttl,
                &file_attr(&a, self.blksize),
                GEN,
                FileHandle(fh),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if !self.rw {
            return reply.error(Errno::EROFS);
        }
        // Plain allocation only (punching holes, zeroing or collapsing
        // ranges are not supported).
        if mode & !crate::sys::linux_consts::FALLOC_FL_KEEP_SIZE != 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        let keep = mode & crate::sys::linux_consts::FALLOC_FL_KEEP_SIZE != 0;
        self.empty(self.vfs.fallocate(ino.0, offset, length, keep), reply)
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
        // On a read-write mount, ENOSYS makes the kernel copy by reading
        // and writing.
        reply.error(if self.rw { Errno::ENOSYS } else { Errno::EROFS });
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

/// FUSE subtype of wimfs mounts: the kernel lists them as `fuse.wimfs-rs`.
/// wimlib's own `wimlib-imagex mount` uses the subtype `wimfs`; a distinct
/// name lets `findmnt`, `mount` and `wimfs unmount` tell the two apart.
pub const SUBTYPE: &str = "wimfs-rs";
/// The filesystem type wimfs mounts have in /proc/self/mountinfo.
pub const FSTYPE: &str = "fuse.wimfs-rs";
/// The filesystem type of wimlib's mounts.
pub const WIMLIB_FSTYPE: &str = "fuse.wimfs";

/// Which mount is this daemon's own, recorded right after mounting: the
/// mount ID and device the kernel gave it, and (held by [`Mounted`]) the
/// FUSE connection. Both numbers are reused once the mount is gone, so the
/// connection being up is what proves they still mean this mount: the
/// device number stays taken while the connection's superblock lives.
pub use crate::session::MountIdentity;

struct Own {
    ident: MountIdentity,
    /// A duplicate of the session's /dev/fuse descriptor, polled to learn
    /// whether the connection is still up.
    fuse: std::os::fd::OwnedFd,
}

impl Own {
    /// Is what is mounted at the mount point now this daemon's mount?
    fn still_ours(&self) -> bool {
        use std::os::fd::AsFd;
        if !crate::sys::fuse_connected(self.fuse.as_fd()) {
            return false;
        }
        crate::sys::mount_at(&self.ident.mount_point).is_some_and(|m| {
            m.dev == self.ident.dev && m.mount_id == self.ident.mount_id && m.fstype == FSTYPE
        })
    }

    fn unmount(&self, lazy: bool) -> io::Result<bool> {
        if !self.still_ours() {
            use std::os::fd::AsFd;
            if !crate::sys::fuse_connected(self.fuse.as_fd()) {
                // The usual end: unmounted (by us or from outside).
                log::debug!("the FUSE connection is closed: nothing to unmount");
                return Ok(false);
            }
            log::info!(
                "{} is no longer this daemon's mount (unmounted from outside, or something \
                 else is mounted there now): not unmounting it",
                self.ident.mount_point.display()
            );
            return Ok(false);
        }
        crate::sys::unmount(&self.ident.mount_point, lazy)?;
        Ok(true)
    }
}

/// Unmounts the daemon's own mount from another thread (a signal), and
/// nothing else.
#[derive(Clone)]
pub struct Unmounter(Arc<Own>);

impl Unmounter {
    /// Unmount if the mount point still holds this daemon's mount (checked
    /// immediately before); `Ok(false)` when it does not.
    pub fn unmount(&self) -> io::Result<bool> {
        self.0.unmount(false)
    }

    /// Is the mount point still this daemon's mount?
    pub fn still_ours(&self) -> bool {
        self.0.still_ours()
    }
}

/// A mounted, initialised FUSE session, served on its own thread: the mount
/// is live once this exists.
///
/// fuser 0.18 unmounts the path when its session ends or is dropped, and
/// its check that the mount is still there reads the kernel's answer
/// backwards, so a daemon whose mount was unmounted from outside would
/// unmount whatever was mounted at the path since. Here fuser's mount
/// handle is never dropped (it is leaked when the session ends); every
/// unmount goes through [`Unmounter`], which checks the identity first.
pub struct Mounted {
    bg: Option<fuser::BackgroundSession>,
    own: Arc<Own>,
}

impl Mounted {
    /// Something another thread can use to unmount (ends [`Mounted::run`]).
    pub fn unmounter(&self) -> Unmounter {
        Unmounter(self.own.clone())
    }

    /// The mount as the kernel identifies it.
    pub fn identity(&self) -> &MountIdentity {
        &self.own.ident
    }

    /// Wait until the filesystem is unmounted (or the session fails). Does
    /// not unmount anything itself: call [`Unmounter::unmount`] after, which
    /// only unmounts a mount that is still this one.
    pub fn run(mut self) -> io::Result<()> {
        let Some(mut bg) = self.bg.take() else {
            return Ok(());
        };
        let guard = std::mem::replace(&mut bg.guard, std::thread::spawn(|| Ok(())));
        // fuser's mount handle would unmount the path when dropped.
        std::mem::forget(bg);
        guard
            .join()
            .map_err(|_| io::Error::other("the FUSE session thread panicked"))?
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(bg) = self.bg.take() {
            if let Err(e) = self.own.unmount(false) {
                log::warn!(
                    "cannot unmount {}: {e}",
                    self.own.ident.mount_point.display()
                );
            }
            std::mem::forget(bg);
        }
    }
}

/// Mount `vfs` at `mountpoint`: read-write when the vfs has an overlay,
/// read-only otherwise. Returns after the kernel's INIT handshake, i.e. once
/// the mount is usable.
pub fn mount(vfs: Arc<Vfs>, mountpoint: &Path, cfg: &MountConfig) -> io::Result<Mounted> {
    let fs = WimFuse::new(vfs);
    let mut c = Config::default();
    c.mount_options = vec![
        if fs.rw {
            MountOption::RW
        } else {
            MountOption::RO
        },
        MountOption::FSName(cfg.fsname.clone()),
        // Not MountOption::Subtype: fuser 0.18 drops it when it mounts
        // directly (as root), so the type would be plain `fuse`. As a
        // kernel option it reaches the kernel (and fusermount3) either way.
        MountOption::CUSTOM(format!("subtype={SUBTYPE}")),
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
    let fuse = {
        use std::os::fd::AsFd;
        session.as_fd().try_clone_to_owned()?
    };
    let canon = mountpoint
        .canonicalize()
        .unwrap_or_else(|_| mountpoint.to_path_buf());
    let ident = crate::sys::mount_at(&canon)
        .filter(|m| m.fstype == FSTYPE)
        .map(|m| MountIdentity {
            mount_point: canon.clone(),
            mount_id: m.mount_id,
            dev: m.dev,
        });
    let bg = session.spawn()?;
    let Some(ident) = ident else {
        // Cannot tell our mount from another later: let fuser take it down
        // now, while it certainly is ours.
        drop(bg);
        return Err(io::Error::other(format!(
            "mounted, but cannot find the mount in /proc/self/mountinfo at {}",
            canon.display()
        )));
    };
    Ok(Mounted {
        bg: Some(bg),
        own: Arc::new(Own { ident, fuse }),
    })
}

/// The FUSE adapter as a mount session sees it.
pub struct Fuse;

impl crate::session::Adapter for Fuse {
    fn fstype(&self) -> &str {
        FSTYPE
    }

    fn wimlib_fstype(&self) -> Option<&str> {
        Some(WIMLIB_FSTYPE)
    }

    fn check_available(&self) -> Result<(), String> {
        use std::os::unix::fs::FileTypeExt;
        match std::fs::metadata("/dev/fuse") {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            Ok(_) => Err("FUSE is not available: /dev/fuse is not a character device".into()),
            Err(_) => Err(
                "FUSE is not available: /dev/fuse does not exist (load the module: modprobe fuse)"
                    .into(),
            ),
        }
    }

    fn mount(
        &self,
        vfs: Arc<Vfs>,
        dir: &Path,
        opts: &crate::session::MountOptions,
    ) -> io::Result<Box<dyn crate::session::MountedFs>> {
        let cfg = MountConfig {
            threads: opts.threads,
            allow_other: opts.allow_other,
            fsname: opts.fsname.clone(),
        };
        Ok(Box::new(mount(vfs, dir, &cfg)?))
    }

    fn mount_error_hint(&self, e: &io::Error) -> &'static str {
        match crate::sys::mount_error_kind(e) {
            crate::sys::MountErrorKind::Busy => " (the mount point is busy)",
            crate::sys::MountErrorKind::Permission => {
                " (permission denied: is fusermount3 installed and setuid?)"
            }
            crate::sys::MountErrorKind::NoDevice => {
                " (is the fuse module loaded and fusermount3 installed?)"
            }
            crate::sys::MountErrorKind::Other => "",
        }
    }

    /// fusermount3 (or fusermount), as an unprivileged user must; umount2
    /// as the last resort. The error is fusermount's own message, or
    /// [`io::ErrorKind::ResourceBusy`] when the mount is busy.
    fn unmount_path(&self, dir: &Path, lazy: bool) -> io::Result<()> {
        let mut last_err = String::new();
        for bin in ["fusermount3", "fusermount"] {
            let mut c = std::process::Command::new(bin);
            c.arg(if lazy { "-uz" } else { "-u" }).arg("--").arg(dir);
            match c.output() {
                Ok(o) if o.status.success() => return Ok(()),
                Ok(o) => {
                    last_err = String::from_utf8_lossy(&o.stderr).trim().to_string();
                    break;
                }
                Err(e) => last_err = format!("cannot run {bin}: {e}"),
            }
        }
        let p = std::ffi::CString::new(dir.to_string_lossy().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad mount point path"))?;
        match crate::sys::umount2_plain(&p, lazy) {
            Ok(()) => Ok(()),
            Err(e) => {
                if crate::sys::mount_error_kind(&e) == crate::sys::MountErrorKind::Busy {
                    return Err(io::Error::new(io::ErrorKind::ResourceBusy, e));
                }
                if last_err.is_empty() {
                    last_err = e.to_string();
                }
                Err(io::Error::other(last_err))
            }
        }
    }
}

impl crate::session::MountedFs for Mounted {
    fn unmounter(&self) -> Arc<dyn crate::session::Unmount> {
        Arc::new(Mounted::unmounter(self))
    }

    fn identity(&self) -> MountIdentity {
        Mounted::identity(self).clone()
    }

    fn run(self: Box<Self>) -> io::Result<()> {
        Mounted::run(*self)
    }
}

impl crate::session::Unmount for Unmounter {
    fn unmount(&self) -> io::Result<bool> {
        Unmounter::unmount(self)
    }

    fn still_ours(&self) -> bool {
        Unmounter::still_ours(self)
    }
}
