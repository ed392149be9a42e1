//! The read-only view of an image and the read-write overlay over it, with
//! no change made, show the same filesystem: every inode's attributes,
//! directory entries, symlink target, data and xattrs are equal. The vfs
//! reads both through one interface and builds attributes in one place;
//! this keeps the two views from drifting apart.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use wimfs::cache::ChunkCache;
use wimfs::vfs::{Attr, FileKind, Ino, Vfs, VfsOptions, ROOT_INO};
use wimfs::wim::Wim;

fn open_both(wim: &Path, staging: &Path, opts: VfsOptions) -> (Vfs, Vfs) {
    let w = Arc::new(Wim::open(wim, &[]).unwrap());
    // The read-only view a mount uses (decoded as visited).
    let ro = Vfs::open_lazy(
        w.clone(),
        1,
        Arc::new(ChunkCache::new(64 << 20)),
        opts.clone(),
    )
    .unwrap();
    let (rw, _) = Vfs::open_rw(w, 1, Arc::new(ChunkCache::new(64 << 20)), opts, staging).unwrap();
    (ro, rw)
}

fn read_all(v: &Vfs, ino: Ino) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = v.read(ino, out.len() as u64, 1 << 20).unwrap();
        if b.is_empty() {
            return out;
        }
        out.extend_from_slice(&b);
    }
}

/// (ino, kind, name) of every entry of directory `ino`, in name order.
fn entries(v: &Vfs, ino: Ino) -> BTreeSet<(String, Ino, String)> {
    let mut out = BTreeSet::new();
    let mut off = 0;
    loop {
        let es = v.readdir(ino, off, 7).unwrap();
        if es.is_empty() {
            return out;
        }
        for e in es {
            off = e.next;
            out.insert((e.name, e.ino, format!("{:?}", e.kind)));
        }
    }
}

/// The inode numbers of the two views: each may number inodes its own
/// way (the read-write tree in the order directories are visited), but
/// the numbers must pair one to one (hard links share one on both sides).
#[derive(Default)]
struct Pairs {
    rw_of: BTreeMap<Ino, Ino>,
    ro_of: BTreeMap<Ino, Ino>,
}

impl Pairs {
    fn pair(&mut self, ro: Ino, rw: Ino, what: &str) {
        assert_eq!(
            *self.rw_of.entry(ro).or_insert(rw),
            rw,
            "inode numbers of {what}"
        );
        assert_eq!(
            *self.ro_of.entry(rw).or_insert(ro),
            ro,
            "inode numbers of {what}"
        );
    }

    /// `a` (read-only) and `b` (read-write) equal but for the number.
    fn same_attr(&mut self, a: Attr, mut b: Attr, what: &str) {
        self.pair(a.ino, b.ino, what);
        b.ino = a.ino;
        assert_eq!(a, b, "attributes of {what}");
    }
}

/// Walk both views from the root and compare everything a reader sees.
/// Returns how many inodes were compared.
fn assert_same(ro: &Vfs, rw: &Vfs) -> usize {
    assert_eq!(ro.inode_count(), rw.inode_count());
    assert_eq!(ro.statfs().files, rw.statfs().files);
    let mut pairs = Pairs::default();
    let mut seen = BTreeSet::new();
    let mut stack = vec![(ROOT_INO, ROOT_INO, "/".to_string())];
    while let Some((ino, rino, path)) = stack.pop() {
        pairs.pair(ino, rino, &path);
        if !seen.insert(ino) {
            continue;
        }
        let a = ro.getattr(ino).unwrap();
        pairs.same_attr(a, rw.getattr(rino).unwrap(), &path);
        let mut names = ro.listxattr(ino).unwrap();
        let mut rw_names = rw.listxattr(rino).unwrap();
        names.sort();
        rw_names.sort();
        assert_eq!(names, rw_names, "xattr names of {path}");
        for n in &names {
            assert_eq!(
                ro.getxattr(ino, n),
                rw.getxattr(rino, n),
                "xattr {n} of {path}"
            );
        }
        for n in [
            "user.no-such",
            "security.selinux",
            "system.posix_acl_access",
        ] {
            assert_eq!(ro.getxattr(ino, n), rw.getxattr(rino, n), "{n} of {path}");
        }
        assert_eq!(ro.readlink(ino), rw.readlink(rino), "target of {path}");
        assert_eq!(ro.open(ino, false), rw.open(rino, false), "open of {path}");
        match a.kind {
            FileKind::Directory => {
                let es = entries(ro, ino);
                let rw_es = entries(rw, rino);
                let strip = |s: &BTreeSet<(String, Ino, String)>| {
                    s.iter()
                        .map(|(n, _, k)| (n.clone(), k.clone()))
                        .collect::<Vec<_>>()
                };
                assert_eq!(strip(&es), strip(&rw_es), "entries of {path}");
                for ((name, child, _), (_, rchild, _)) in es.iter().zip(&rw_es) {
                    let what = format!("{path}{name}");
                    pairs.pair(*child, *rchild, &what);
                    if name == "." || name == ".." {
                        continue;
                    }
                    pairs.same_attr(
                        ro.lookup(ino, name).unwrap(),
                        rw.lookup(rino, name).unwrap(),
                        &format!("lookup of {what}"),
                    );
                    stack.push((*child, *rchild, format!("{what}/")));
                }
                pairs.same_attr(
                    ro.lookup(ino, "..").unwrap(),
                    rw.lookup(rino, "..").unwrap(),
                    &format!("{path}.."),
                );
                assert_eq!(ro.read(ino, 0, 10), rw.read(rino, 0, 10), "read {path}");
            }
            FileKind::Regular => {
                let data = read_all(ro, ino);
                assert_eq!(data.len() as u64, a.size, "size of {path}");
                assert_eq!(data, read_all(rw, rino), "data of {path}");
                // A read past the end, and one across it.
                assert_eq!(ro.read(ino, a.size + 5, 100).unwrap(), b"");
                assert_eq!(
                    ro.read(ino, a.size.saturating_sub(3), 100),
                    rw.read(rino, a.size.saturating_sub(3), 100)
                );
            }
            _ => {}
        }
    }
    assert_eq!(ro.getattr(0), rw.getattr(0));
    assert_eq!(ro.getattr(1 << 40), rw.getattr(1 << 40));
    seen.len()
}

#[test]
fn linux_tree_with_unix_data_looks_the_same_read_only_and_read_write() {
    if !common::require(&["wimlib-imagex"]) {
        return;
    }
    let tmp = common::tempdir();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    common::make_source_tree(&src);
    std::fs::create_dir(src.join("xattrs")).unwrap();
    std::fs::write(src.join("xattrs/f"), b"x").unwrap();
    common::set_user_xattr(&src.join("xattrs"), "user.note", b"on a directory");
    common::set_user_xattr(&src.join("xattrs/f"), "user.k", b"v");
    let wim = tmp.path().join("t.wim");
    common::wimlib_capture(&src, &wim, &["--unix-data", "--compress=LZX"]);
    for use_unix_data in [true, false] {
        let opts = VfsOptions {
            use_unix_data,
            mount_root: tmp.path().join("mnt").display().to_string(),
            ..VfsOptions::default()
        };
        let staging = tmp.path().join(format!("s-{use_unix_data}"));
        let (ro, rw) = open_both(&wim, &staging, opts);
        let n = assert_same(&ro, &rw);
        assert!(n > 20, "only {n} inodes compared");
        // The Linux xattrs wimlib stored were among what was compared.
        let x = ro.lookup(ROOT_INO, "xattrs").unwrap().ino;
        assert_eq!(ro.getxattr(x, "user.note").unwrap(), b"on a directory");
    }
}

#[test]
fn ntfs_sourced_wim_looks_the_same_read_only_and_read_write() {
    let tmp = common::tempdir();
    let Some(nt) = common::build_ntfs_wim(&tmp.path().join("ntfs"), &[]) else {
        return;
    };
    let opts = VfsOptions {
        mount_root: tmp.path().join("mnt").display().to_string(),
        ..VfsOptions::default()
    };
    let (ro, rw) = open_both(&nt.wim, &tmp.path().join("staging"), opts);
    let n = assert_same(&ro, &rw);
    assert!(n > 5, "only {n} inodes compared");
    // Named streams, security descriptors and short names were compared.
    assert!(!nt.ads.is_empty() && !nt.short_names.is_empty());
}
