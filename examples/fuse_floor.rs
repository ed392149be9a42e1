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
//! A measuring tool, not part of wimfs.

#[cfg(target_os = "linux")]
mod floor {
    use fuser::{
        Config, Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, InitFlags,
        KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
        ReplyDirectoryPlus, ReplyEntry, ReplyOpen, Request, Session, SessionACL,
    };
    use std::collections::HashMap;
    use std::ffi::{OsStr, OsString};
    use std::os::unix::fs::{FileExt, MetadataExt};
    use std::path::{Path, PathBuf};
    use std::time::{Duration, UNIX_EPOCH};

    const TTL: Duration = Duration::from_secs(365 * 24 * 3600);
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
        nodes: Vec<Node>,
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
        pub fn load(root: &Path) -> std::io::Result<Floor> {
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
            Ok(Floor { nodes })
        }

        fn node(&self, ino: INodeNo) -> Option<&Node> {
            self.nodes.get((ino.0 as usize).checked_sub(1)?)
        }
    }

    impl Filesystem for Floor {
        fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
            for cap in [
                InitFlags::FUSE_ASYNC_READ,
                InitFlags::FUSE_DO_READDIRPLUS,
                InitFlags::FUSE_PARALLEL_DIROPS,
                InitFlags::FUSE_CACHE_SYMLINKS,
                InitFlags::FUSE_MAX_PAGES,
                InitFlags::FUSE_NO_OPEN_SUPPORT | InitFlags::FUSE_NO_OPENDIR_SUPPORT,
            ] {
                let _ = config.add_capabilities(cap);
            }
            if let Err(max) = config.set_max_readahead(u32::MAX) {
                let _ = config.set_max_readahead(max);
            }
            let _ = config.set_max_background(64);
            let _ = config.set_congestion_threshold(48);
            Ok(())
        }

        fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
            match self
                .node(parent)
                .and_then(|p| p.by_name.get(name))
                .and_then(|&c| self.node(INodeNo(c)))
            {
                Some(n) => reply.entry(&TTL, &n.attr, Generation(0)),
                None => reply.error(Errno::ENOENT),
            }
        }

        fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
            match self.node(ino) {
                Some(n) => reply.attr(&TTL, &n.attr),
                None => reply.error(Errno::ENOENT),
            }
        }

        fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
            reply.error(Errno::ENOSYS);
        }

        fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
            reply.error(Errno::ENOSYS);
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
            let Some(n) = self.node(ino) else {
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
            let Some(n) = self.node(ino) else {
                return reply.error(Errno::ENOENT);
            };
            for (i, (name, c)) in n.children.iter().enumerate().skip(offset as usize) {
                let k = self
                    .node(INodeNo(*c))
                    .map_or(FileType::Directory, |c| c.attr.kind);
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
            let Some(n) = self.node(ino) else {
                return reply.error(Errno::ENOENT);
            };
            for (i, (name, c)) in n.children.iter().enumerate().skip(offset as usize) {
                let Some(cn) = self.node(INodeNo(*c)) else {
                    continue;
                };
                if reply.add(
                    INodeNo(*c),
                    i as u64 + 1,
                    name,
                    &TTL,
                    &cn.attr,
                    Generation(0),
                ) {
                    break;
                }
            }
            reply.ok();
        }
    }

    pub fn run(src: &Path, mnt: &Path, threads: usize) -> std::io::Result<()> {
        let fs = Floor::load(src)?;
        eprintln!("fuse_floor: {} entries loaded", fs.nodes.len());
        let mut c = Config::default();
        c.mount_options = vec![
            MountOption::RO,
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
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 3 {
        eprintln!("usage: fuse_floor SOURCE_DIR MOUNTPOINT [THREADS]");
        std::process::exit(2);
    }
    let threads = a.get(3).and_then(|t| t.parse().ok()).unwrap_or(8);
    floor::run(
        std::path::Path::new(&a[1]),
        std::path::Path::new(&a[2]),
        threads,
    )
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("fuse_floor: Linux only");
}
