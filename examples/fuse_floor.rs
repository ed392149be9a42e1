//! The FUSE floor: what a trivial read-only FUSE filesystem costs on this
//! kernel for the request patterns of `scripts/bench-servicing.sh`'s walk
//! and cat rows, with nothing to decode.
//!
//! It loads a plain directory tree into memory at start (names, attributes,
//! children), then answers every request from there: LOOKUP, GETATTR and
//! READDIRPLUS from memory, READ by a positional read of the source file
//! (from the page cache once warm). It asks the kernel for the same things
//! the wimfs read-only mount asks for (readdirplus always, no OPEN/OPENDIR,
//! long TTLs, async reads, the largest readahead, the same thread count on
//! cloned /dev/fuse fds), so the time it takes is the part of a wimfs walk
//! or cat that no work in the daemon can remove.
//!
//!     cargo build --example fuse_floor
//!     target/debug/examples/fuse_floor SOURCE_DIR MOUNTPOINT [THREADS] &
//!     time find MOUNTPOINT -printf '%s %m %T@\n' >/dev/null
//!     fusermount3 -u MOUNTPOINT
//!
//! With `--rw` (before SOURCE_DIR) it starts from the tree as well and
//! takes MKDIR, CREATE, WRITE (the bytes are dropped, only the size is
//! kept), FLUSH, RELEASE, SYMLINK and GETXATTR (no attribute) in memory,
//! with the read-write mount's settings (1 s TTLs, OPEN and FLUSH kept):
//! the floor of `cp -r` into a read-write mount, with no staging at all.
//!
//! A measuring tool, not part of wimfs.

#[cfg(target_os = "linux")]
mod floor {
    use fuser::{
        BsdFileFlags, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
        Generation, INodeNo, InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr,
        ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
        ReplyOpen, ReplyWrite, ReplyXattr, Request, Session, SessionACL, TimeOrNow, WriteFlags,
    };
    use parking_lot::RwLock;
    use std::collections::HashMap;
    use std::ffi::{OsStr, OsString};
    use std::os::unix::fs::{FileExt, MetadataExt};
    use std::path::{Path, PathBuf};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    const RO_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
    const RW_TTL: Duration = Duration::from_secs(1);
    const PRELOAD: u64 = 1 << 20;

    struct Node {
        path: PathBuf,
        /// The content of a file up to [`PRELOAD`] bytes, read at start so
        /// a READ is one copy from memory (larger files are read from the
        /// page cache per request).
        data: Option<Vec<u8>>,
        attr: FileAttr,
        /// (name, child inode) in readdir order, with `.` and `..` first.
        children: Vec<(OsString, u64)>,
        by_name: HashMap<OsString, u64>,
    }

    pub struct Floor {
        nodes: RwLock<Vec<Node>>,
        rw: bool,
        ttl: Duration,
    }

    fn kind(m: &std::fs::Metadata) -> FileType {
        let t = m.file_type();
        if t.is_dir() {
            FileType::Directory
        } else if t.is_symlink() {
            FileType::Symlink
        } else {
            FileType::RegularFile
        }
    }

    fn attr(ino: u64, m: &std::fs::Metadata) -> FileAttr {
        let t = |s: i64, ns: i64| {
            UNIX_EPOCH + Duration::new(s.max(0) as u64, ns.clamp(0, 999_999_999) as u32)
        };
        FileAttr {
            ino: INodeNo(ino),
            size: m.len(),
            blocks: m.blocks(),
            atime: t(m.atime(), m.atime_nsec()),
            mtime: t(m.mtime(), m.mtime_nsec()),
            ctime: t(m.ctime(), m.ctime_nsec()),
            crtime: t(m.mtime(), m.mtime_nsec()),
            kind: kind(m),
            perm: (m.mode() & 0o7777) as u16,
            nlink: 1,
            uid: m.uid(),
            gid: m.gid(),
            rdev: 0,
            blksize: 128 * 1024,
            flags: 0,
        }
    }

    impl Floor {
        /// Everything under `root`, loaded now (the walk is not timed).
        pub fn load(root: &Path, rw: bool) -> std::io::Result<Floor> {
            let m = std::fs::symlink_metadata(root)?;
            let mut nodes = vec![Node {
                path: root.to_path_buf(),
                data: None,
                attr: attr(1, &m),
                children: Vec::new(),
                by_name: HashMap::new(),
            }];
            let mut i = 0;
            while i < nodes.len() {
                if nodes[i].attr.kind == FileType::Directory {
                    let ino = i as u64 + 1;
                    let mut kids = vec![(OsString::from("."), ino), (OsString::from(".."), 1)];
                    let mut names: Vec<_> = std::fs::read_dir(&nodes[i].path)?
                        .filter_map(|e| e.ok())
                        .collect();
                    names.sort_by_key(|e| e.file_name());
                    for e in names {
                        let p = e.path();
                        let m = std::fs::symlink_metadata(&p)?;
                        let c = nodes.len() as u64 + 1;
                        let data = (m.is_file() && m.len() <= PRELOAD)
                            .then(|| std::fs::read(&p))
                            .transpose()?;
                        nodes.push(Node {
                            path: p,
                            data,
                            attr: attr(c, &m),
                            children: Vec::new(),
                            by_name: HashMap::new(),
                        });
                        kids.push((e.file_name(), c));
                    }
                    nodes[i].by_name = kids.iter().skip(2).cloned().collect();
                    nodes[i].children = kids;
                }
                i += 1;
            }
            Ok(Floor {
                nodes: RwLock::new(nodes),
                rw,
                ttl: if rw { RW_TTL } else { RO_TTL },
            })
        }

        /// A new empty node under `parent`, or EEXIST.
        fn add(
            &self,
            parent: INodeNo,
            name: &OsStr,
            kind: FileType,
            perm: u16,
        ) -> Result<FileAttr, Errno> {
            let mut nodes = self.nodes.write();
            let p = (parent.0 as usize).checked_sub(1).ok_or(Errno::ENOENT)?;
            if nodes
                .get(p)
                .ok_or(Errno::ENOENT)?
                .by_name
                .contains_key(name)
            {
                return Err(Errno::EEXIST);
            }
            let ino = nodes.len() as u64 + 1;
            let now = SystemTime::now();
            let attr = FileAttr {
                ino: INodeNo(ino),
                size: 0,
                blocks: 0,
                atime: now,
                mtime: now,
                ctime: now,
                crtime: now,
                kind,
                perm,
                nlink: 1,
                uid: nodes[0].attr.uid,
                gid: nodes[0].attr.gid,
                rdev: 0,
                blksize: 256 * 1024,
                flags: 0,
            };
            let children = if kind == FileType::Directory {
                vec![(OsString::from("."), ino), (OsString::from(".."), parent.0)]
            } else {
                Vec::new()
            };
            nodes.push(Node {
                path: PathBuf::new(),
                data: Some(Vec::new()),
                attr,
                children,
                by_name: HashMap::new(),
            });
            nodes[p].by_name.insert(name.to_os_string(), ino);
            nodes[p].children.push((name.to_os_string(), ino));
            Ok(attr)
        }
    }

    fn get(nodes: &[Node], ino: INodeNo) -> Option<&Node> {
        nodes.get((ino.0 as usize).checked_sub(1)?)
    }

    impl Filesystem for Floor {
        fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
            for cap in [
                InitFlags::FUSE_ASYNC_READ,
                InitFlags::FUSE_DO_READDIRPLUS,
                InitFlags::FUSE_PARALLEL_DIROPS,
                InitFlags::FUSE_CACHE_SYMLINKS,
                InitFlags::FUSE_MAX_PAGES,
            ] {
                let _ = config.add_capabilities(cap);
            }
            if self.rw {
                let _ = config.add_capabilities(InitFlags::FUSE_READDIRPLUS_AUTO);
            } else {
                let _ = config.add_capabilities(
                    InitFlags::FUSE_NO_OPEN_SUPPORT | InitFlags::FUSE_NO_OPENDIR_SUPPORT,
                );
            }
            if let Err(max) = config.set_max_readahead(u32::MAX) {
                let _ = config.set_max_readahead(max);
            }
            let _ = config.set_max_background(64);
            let _ = config.set_congestion_threshold(48);
            Ok(())
        }

        fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
            let nodes = self.nodes.read();
            match get(&nodes, parent)
                .and_then(|p| p.by_name.get(name))
                .and_then(|&c| get(&nodes, INodeNo(c)))
            {
                Some(n) => reply.entry(&self.ttl, &n.attr, Generation(0)),
                None => reply.error(Errno::ENOENT),
            }
        }

        fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
            match get(&self.nodes.read(), ino) {
                Some(n) => reply.attr(&self.ttl, &n.attr),
                None => reply.error(Errno::ENOENT),
            }
        }

        fn setattr(
            &self,
            _req: &Request,
            ino: INodeNo,
            _mode: Option<u32>,
            _uid: Option<u32>,
            _gid: Option<u32>,
            size: Option<u64>,
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
            let mut nodes = self.nodes.write();
            match nodes.get_mut((ino.0 as usize).wrapping_sub(1)) {
                Some(n) => {
                    if let Some(s) = size {
                        n.attr.size = s;
                    }
                    reply.attr(&self.ttl, &n.attr)
                }
                None => reply.error(Errno::ENOENT),
            }
        }

        fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
            if self.rw {
                reply.opened(FileHandle(1), FopenFlags::empty())
            } else {
                reply.error(Errno::ENOSYS);
            }
        }

        fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
            if self.rw {
                reply.opened(FileHandle(1), FopenFlags::empty())
            } else {
                reply.error(Errno::ENOSYS);
            }
        }

        fn mkdir(
            &self,
            _req: &Request,
            parent: INodeNo,
            name: &OsStr,
            mode: u32,
            umask: u32,
            reply: ReplyEntry,
        ) {
            match self.add(
                parent,
                name,
                FileType::Directory,
                (mode & !umask & 0o7777) as u16,
            ) {
                Ok(a) => reply.entry(&self.ttl, &a, Generation(0)),
                Err(e) => reply.error(e),
            }
        }

        fn symlink(
            &self,
            _req: &Request,
            parent: INodeNo,
            name: &OsStr,
            _target: &Path,
            reply: ReplyEntry,
        ) {
            match self.add(parent, name, FileType::Symlink, 0o777) {
                Ok(a) => reply.entry(&self.ttl, &a, Generation(0)),
                Err(e) => reply.error(e),
            }
        }

        fn create(
            &self,
            _req: &Request,
            parent: INodeNo,
            name: &OsStr,
            mode: u32,
            umask: u32,
            _flags: i32,
            reply: ReplyCreate,
        ) {
            match self.add(
                parent,
                name,
                FileType::RegularFile,
                (mode & !umask & 0o7777) as u16,
            ) {
                Ok(a) => reply.created(
                    &self.ttl,
                    &a,
                    Generation(0),
                    FileHandle(1),
                    FopenFlags::empty(),
                ),
                Err(e) => reply.error(e),
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
            let mut nodes = self.nodes.write();
            match nodes.get_mut((ino.0 as usize).wrapping_sub(1)) {
                Some(n) => {
                    n.attr.size = n.attr.size.max(offset + data.len() as u64);
                    reply.written(data.len() as u32)
                }
                None => reply.error(Errno::ENOENT),
            }
        }

        fn flush(
            &self,
            _req: &Request,
            _ino: INodeNo,
            _fh: FileHandle,
            _lock_owner: LockOwner,
            reply: ReplyEmpty,
        ) {
            reply.ok();
        }

        fn getxattr(
            &self,
            _req: &Request,
            _ino: INodeNo,
            _name: &OsStr,
            _size: u32,
            reply: ReplyXattr,
        ) {
            reply.error(Errno::NO_XATTR);
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
            let nodes = self.nodes.read();
            let Some(n) = get(&nodes, ino) else {
                return reply.error(Errno::ENOENT);
            };
            let want = (size as u64).min(n.attr.size.saturating_sub(offset)) as usize;
            if let Some(d) = &n.data {
                let a = (offset as usize).min(d.len());
                return reply.data(&d[a..(a + want).min(d.len())]);
            }
            let mut buf = vec![0u8; want];
            match std::fs::File::open(&n.path).and_then(|f| f.read_at(&mut buf, offset)) {
                Ok(got) => reply.data(&buf[..got]),
                Err(_) => reply.error(Errno::EIO),
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
            let nodes = self.nodes.read();
            let Some(n) = get(&nodes, ino) else {
                return reply.error(Errno::ENOENT);
            };
            for (i, (name, c)) in n.children.iter().enumerate().skip(offset as usize) {
                let k = get(&nodes, INodeNo(*c)).map_or(FileType::Directory, |c| c.attr.kind);
                if reply.add(INodeNo(*c), i as u64 + 1, k, name) {
                    break;
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
            let nodes = self.nodes.read();
            let Some(n) = get(&nodes, ino) else {
                return reply.error(Errno::ENOENT);
            };
            for (i, (name, c)) in n.children.iter().enumerate().skip(offset as usize) {
                let Some(cn) = get(&nodes, INodeNo(*c)) else {
                    continue;
                };
                if reply.add(
                    INodeNo(*c),
                    i as u64 + 1,
                    name,
                    &self.ttl,
                    &cn.attr,
                    Generation(0),
                ) {
                    break;
                }
            }
            reply.ok();
        }
    }

    pub fn run(src: &Path, mnt: &Path, threads: usize, rw: bool) -> std::io::Result<()> {
        let fs = Floor::load(src, rw)?;
        eprintln!("fuse_floor: {} entries loaded", fs.nodes.read().len());
        let mut c = Config::default();
        c.mount_options = vec![
            if rw { MountOption::RW } else { MountOption::RO },
            MountOption::FSName("fuse_floor".into()),
            MountOption::DefaultPermissions,
            MountOption::NoAtime,
        ];
        c.acl = SessionACL::Owner;
        c.n_threads = Some(threads.max(1));
        c.clone_fd = true;
        Session::new(fs, mnt, &c)?.run()
    }
}

#[cfg(target_os = "linux")]
fn main() -> std::io::Result<()> {
    let mut a: Vec<String> = std::env::args().skip(1).collect();
    let rw = a.first().is_some_and(|x| x == "--rw");
    if rw {
        a.remove(0);
    }
    if a.len() < 2 {
        eprintln!("usage: fuse_floor [--rw] SOURCE_DIR MOUNTPOINT [THREADS]");
        std::process::exit(2);
    }
    let threads = a.get(2).and_then(|t| t.parse().ok()).unwrap_or(8);
    floor::run(
        std::path::Path::new(&a[0]),
        std::path::Path::new(&a[1]),
        threads,
        rw,
    )
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("fuse_floor: Linux only");
}
