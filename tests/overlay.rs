//! The read-write overlay through the library only (no FUSE): random
//! operations against a plain directory side by side, crash recovery from
//! the staging directory, block-granular copy-on-write, and the tree that
//! commit is given.

mod common;

use common::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wimfs::cache::ChunkCache;
use wimfs::commit::StreamData;
use wimfs::image::Image;
use wimfs::vfs::{Cred, FileKind, Ino, RenameMode, SetAttr, Vfs, VfsOptions, XattrMode, ROOT_INO};
use wimfs::wim::Wim;

const CRED: Cred = Cred { uid: 0, gid: 0 };

/// A source tree with a large file, a hard link and a symlink.
fn make_src(dir: &Path) {
    let mut rng = Rng::new(7);
    std::fs::create_dir_all(dir.join("a/b")).unwrap();
    std::fs::create_dir_all(dir.join("c")).unwrap();
    std::fs::write(dir.join("small.txt"), b"hello world\n").unwrap();
    std::fs::write(dir.join("a/one"), common::text_bytes(&mut rng, 70_000)).unwrap();
    std::fs::write(dir.join("a/b/two"), rng.bytes(150_000)).unwrap();
    std::fs::write(dir.join("c/empty"), b"").unwrap();
    std::fs::write(dir.join("big"), common::text_bytes(&mut rng, 8 << 20)).unwrap();
    std::fs::hard_link(dir.join("a/one"), dir.join("c/one-link")).unwrap();
    std::os::unix::fs::symlink("../small.txt", dir.join("a/sym")).unwrap();
}

struct Fixture {
    _tmp: tempfile::TempDir,
    wim: PathBuf,
    src: PathBuf,
    root: PathBuf,
}

fn fixture(extra: &[&str]) -> Option<Fixture> {
    if !common::require(&["wimlib-imagex"]) {
        return None;
    }
    let tmp = common::tempdir();
    let src = tmp.path().join("src");
    make_src(&src);
    let wim = tmp.path().join("t.wim");
    let mut args = vec!["--compress=LZX"];
    args.extend_from_slice(extra);
    common::wimlib_capture(&src, &wim, &args);
    let root = tmp.path().to_path_buf();
    Some(Fixture {
        wim,
        src,
        root,
        _tmp: tmp,
    })
}

fn open_rw(wim: &Path, staging: &Path) -> (Vfs, wimfs::overlay::StagingStatus) {
    let w = Arc::new(Wim::open(wim, &[]).unwrap());
    let img = Arc::new(Image::load(&w, 1).unwrap());
    let cache = Arc::new(ChunkCache::new(64 << 20));
    let opts = VfsOptions {
        use_unix_data: false,
        ..VfsOptions::default()
    };
    Vfs::open_rw(w, img.index, cache, opts, staging).unwrap()
}

fn resolve(v: &Vfs, path: &str) -> Option<Ino> {
    let mut ino = ROOT_INO;
    for c in path.split('/').filter(|c| !c.is_empty()) {
        ino = v.lookup(ino, c).ok()?.ino;
    }
    Some(ino)
}

fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
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

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Dir,
    File(Vec<u8>),
    Link(String),
}

/// An entry: what it is, its user xattrs, its link count (files).
type Seen = (Item, BTreeMap<String, Vec<u8>>, u32);

/// Path -> item, user xattrs, and the hard-link partition.
#[derive(Debug, PartialEq, Eq)]
struct Dump {
    items: BTreeMap<String, Seen>,
    links: BTreeSet<Vec<String>>,
}

fn dump_vfs(v: &Vfs) -> Dump {
    let mut items = BTreeMap::new();
    let mut groups: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut stack = vec![(ROOT_INO, String::new())];
    while let Some((ino, path)) = stack.pop() {
        let mut off = 0;
        loop {
            let es = v.readdir(ino, off, 100).unwrap();
            if es.is_empty() {
                break;
            }
            for e in es {
                off = e.next;
                if e.name == "." || e.name == ".." {
                    continue;
                }
                let p = format!("{path}/{}", e.name);
                let a = v.getattr(e.ino).unwrap();
                assert_eq!(a.kind, e.kind, "{p}");
                let item = match a.kind {
                    FileKind::Directory => {
                        stack.push((e.ino, p.clone()));
                        Item::Dir
                    }
                    FileKind::Regular => {
                        let d = read_all(v, e.ino);
                        assert_eq!(d.len() as u64, a.size, "{p}: size");
                        groups.entry(e.ino).or_default().push(p.clone());
                        Item::File(d)
                    }
                    FileKind::Symlink => Item::Link(v.readlink(e.ino).unwrap()),
                    FileKind::Special(s) => panic!("{p}: unexpected {s:?}"),
                };
                let mut x = BTreeMap::new();
                for n in v.listxattr(e.ino).unwrap() {
                    if n.starts_with("user.") {
                        x.insert(n.clone(), v.getxattr(e.ino, &n).unwrap());
                    }
                }
                let nlink = if a.kind == FileKind::Regular {
                    a.nlink
                } else {
                    0
                };
                items.insert(p, (item, x, nlink));
            }
        }
    }
    let links = groups
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    Dump { items, links }
}

fn dump_dir(root: &Path) -> Dump {
    let mut items = BTreeMap::new();
    let mut groups: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, path)) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = format!("{path}/{}", e.file_name().to_string_lossy());
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let item = if md.is_dir() {
                stack.push((e.path(), p.clone()));
                Item::Dir
            } else if md.file_type().is_symlink() {
                Item::Link(
                    std::fs::read_link(e.path())
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                )
            } else {
                groups.entry(md.ino()).or_default().push(p.clone());
                Item::File(std::fs::read(e.path()).unwrap())
            };
            let x = if md.file_type().is_symlink() {
                BTreeMap::new()
            } else {
                common::user_xattrs(&e.path())
            };
            let nlink = if md.is_file() { md.nlink() as u32 } else { 0 };
            items.insert(p, (item, x, nlink));
        }
    }
    let links = groups
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    Dump { items, links }
}

fn assert_same(a: &Dump, b: &Dump, what: &str) {
    if a == b {
        return;
    }
    let mut msg = String::new();
    let keys: BTreeSet<&String> = a.items.keys().chain(b.items.keys()).collect();
    for k in keys {
        let (x, y) = (a.items.get(k), b.items.get(k));
        if x != y {
            let short = |o: Option<&Seen>| match o {
                None => "absent".to_string(),
                Some((Item::File(d), x, n)) => {
                    format!("file len {} nlink {n} xattrs {:?}", d.len(), x.keys())
                }
                Some(o) => format!("{:?}", o),
            };
            msg += &format!("  {k}: vfs {} / dir {}\n", short(x), short(y));
        }
    }
    if a.links != b.links {
        msg += &format!("  links: vfs {:?} / dir {:?}\n", a.links, b.links);
    }
    panic!("{what}: trees differ\n{msg}");
}

/// The directory side of the random test.
fn copy_tree(src: &Path, dst: &Path) {
    let o = std::process::Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dst)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cp -a: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Existing paths of the directory side: directories, and the rest.
fn listing(root: &Path) -> (Vec<String>, Vec<String>) {
    let (mut dirs, mut others) = (vec![String::new()], Vec::new());
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, path)) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let p = format!("{path}/{}", e.file_name().to_string_lossy());
            if e.file_type().unwrap().is_dir() {
                stack.push((e.path(), p.clone()));
                dirs.push(p);
            } else {
                others.push(p);
            }
        }
    }
    (dirs, others)
}

/// Open a regular file of the directory side for writing (not following
/// symlinks, as the vfs side cannot write through them either).
fn open_regular(root: &Path, p: &str) -> std::io::Result<std::fs::File> {
    let md = std::fs::symlink_metadata(rel(root, p))?;
    if !md.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    std::fs::OpenOptions::new().write(true).open(rel(root, p))
}

fn rel(root: &Path, p: &str) -> PathBuf {
    root.join(p.trim_start_matches('/'))
}

fn renameat2(a: &Path, b: &Path, flags: u32) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let ca = std::ffi::CString::new(a.as_os_str().as_bytes()).unwrap();
    let cb = std::ffi::CString::new(b.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid NUL-terminated paths; AT_FDCWD directories.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One random operation on both sides; returns a description. Both sides
/// must agree on success or failure.
fn random_op(rng: &mut Rng, v: &Vfs, root: &Path, step: usize) -> String {
    let (dirs, others) = listing(root);
    let all: Vec<&String> = dirs.iter().skip(1).chain(others.iter()).collect();
    let pick_dir = |r: &mut Rng| dirs[r.below(dirs.len() as u64) as usize].clone();
    let pick_any = |r: &mut Rng| -> String {
        if all.is_empty() || r.below(8) == 0 {
            format!("{}/n{}", pick_dir(r), r.below(6))
        } else {
            all[r.below(all.len() as u64) as usize].clone()
        }
    };
    let newname = |r: &mut Rng| format!("{}/n{}", pick_dir(r), r.below(6));
    let op = rng.below(15);
    let (desc, dir_ok, vfs_ok) = match op {
        0..=3 => {
            // Write somewhere (maybe sparse, maybe past a block boundary).
            let p = pick_any(rng);
            let off = match rng.below(4) {
                0 => rng.below(200),
                1 => rng.below(300_000),
                2 => (65536 * rng.below(4)).saturating_sub(rng.below(3)),
                _ => rng.below(9 << 20),
            };
            let max = if rng.below(4) == 0 { 200_000 } else { 3000 };
            let len = 1 + rng.below(max) as usize;
            let data = rng.bytes(len);
            let d = open_regular(root, &p)
                .and_then(|f| std::os::unix::fs::FileExt::write_all_at(&f, &data, off));
            let w = (|| -> Result<(), String> {
                let ino = resolve(v, &p).ok_or("nf")?;
                if v.getattr(ino).map_err(|e| e.to_string())?.kind != FileKind::Regular {
                    return Err("not regular".into());
                }
                let fh = v.open_file(ino, true, false).map_err(|e| e.to_string())?;
                let r = v.write(ino, off, &data).map_err(|e| e.to_string());
                v.release(fh).unwrap();
                r.map(|_| ())
            })();
            (
                format!("write {p} @{off} +{}", data.len()),
                d.is_ok(),
                w.is_ok(),
            )
        }
        4 => {
            let p = pick_any(rng);
            let size = match rng.below(3) {
                0 => 0,
                1 => rng.below(100_000),
                _ => rng.below(10 << 20),
            };
            let d = open_regular(root, &p).and_then(|f| f.set_len(size));
            let w = resolve(v, &p).ok_or(()).and_then(|ino| {
                v.setattr(
                    ino,
                    &SetAttr {
                        size: Some(size),
                        ..Default::default()
                    },
                )
                .map_err(|_| ())
            });
            (format!("truncate {p} {size}"), d.is_ok(), w.is_ok())
        }
        5 => {
            let p = newname(rng);
            let d = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(rel(root, &p));
            let (dn, n) = split(&p);
            let w = resolve(v, dn).ok_or(()).and_then(|pi| {
                v.create(pi, n, 0o644, CRED)
                    .map_err(|_| ())
                    .map(|(_, fh)| v.release(fh).unwrap())
            });
            (format!("create {p}"), d.is_ok(), w.is_ok())
        }
        6 => {
            let p = newname(rng);
            let d = std::fs::create_dir(rel(root, &p));
            let (dn, n) = split(&p);
            let w = resolve(v, dn)
                .ok_or(())
                .and_then(|pi| v.mkdir(pi, n, 0o755, CRED).map_err(|_| ()));
            (format!("mkdir {p}"), d.is_ok(), w.is_ok())
        }
        7 => {
            let p = pick_any(rng);
            let d = std::fs::remove_file(rel(root, &p));
            let (dn, n) = split(&p);
            let w = resolve(v, dn)
                .ok_or(())
                .and_then(|pi| v.unlink(pi, n).map_err(|_| ()));
            (format!("unlink {p}"), d.is_ok(), w.is_ok())
        }
        8 => {
            let p = if rng.below(2) == 0 {
                pick_dir(rng)
            } else {
                pick_any(rng)
            };
            if p.is_empty() {
                return "skip".into();
            }
            let d = std::fs::remove_dir(rel(root, &p));
            let (dn, n) = split(&p);
            let w = resolve(v, dn)
                .ok_or(())
                .and_then(|pi| v.rmdir(pi, n).map_err(|_| ()));
            (format!("rmdir {p}"), d.is_ok(), w.is_ok())
        }
        9 | 10 => {
            let a = pick_any(rng);
            let b = if rng.below(2) == 0 {
                pick_any(rng)
            } else {
                newname(rng)
            };
            let (mode, flags) = match rng.below(4) {
                0 => (RenameMode::NoReplace, libc::RENAME_NOREPLACE),
                1 => (RenameMode::Exchange, libc::RENAME_EXCHANGE),
                _ => (RenameMode::Replace, 0),
            };
            let d = renameat2(&rel(root, &a), &rel(root, &b), flags);
            let (an, ann) = split(&a);
            let (bn, bnn) = split(&b);
            let w = match (resolve(v, an), resolve(v, bn)) {
                (Some(x), Some(y)) => v.rename(x, ann, y, bnn, mode).map_err(|_| ()),
                _ => Err(()),
            };
            (format!("rename {a} -> {b} {mode:?}"), d.is_ok(), w.is_ok())
        }
        11 => {
            let a = pick_any(rng);
            let b = newname(rng);
            let ad = std::fs::symlink_metadata(rel(root, &a));
            // Hard links to symlinks are refused by the overlay (a WIM
            // cannot record them); skip those.
            if ad.as_ref().is_ok_and(|m| m.file_type().is_symlink()) {
                return "skip".into();
            }
            let d = std::fs::hard_link(rel(root, &a), rel(root, &b));
            let (bn, bnn) = split(&b);
            let w = match (resolve(v, &a), resolve(v, bn)) {
                (Some(x), Some(y)) => v.link(x, y, bnn).map(|_| ()).map_err(|_| ()),
                _ => Err(()),
            };
            (format!("link {a} -> {b}"), d.is_ok(), w.is_ok())
        }
        12 => {
            let p = newname(rng);
            let target = ["../small.txt", "x/y", "/abs/path", "n1"][rng.below(4) as usize];
            let d = std::os::unix::fs::symlink(target, rel(root, &p));
            let (dn, n) = split(&p);
            let w = resolve(v, dn)
                .ok_or(())
                .and_then(|pi| v.symlink(pi, n, target, CRED).map_err(|_| ()));
            (format!("symlink {p} -> {target}"), d.is_ok(), w.is_ok())
        }
        13 => {
            let p = pick_any(rng);
            let md = std::fs::symlink_metadata(rel(root, &p));
            if md.as_ref().is_ok_and(|m| m.file_type().is_symlink()) || md.is_err() {
                return "skip".into();
            }
            let name = format!("user.s{}", rng.below(3));
            if rng.below(3) == 0 {
                let had = common::user_xattrs(&rel(root, &p)).contains_key(&name);
                if had {
                    let c = std::ffi::CString::new(rel(root, &p).to_str().unwrap()).unwrap();
                    let cn = std::ffi::CString::new(name.clone()).unwrap();
                    // SAFETY: valid C strings.
                    assert_eq!(unsafe { libc::lremovexattr(c.as_ptr(), cn.as_ptr()) }, 0);
                }
                let w = resolve(v, &p)
                    .ok_or(())
                    .and_then(|i| v.removexattr(i, &name).map_err(|_| ()));
                (format!("removexattr {p} {name}"), had, w.is_ok())
            } else {
                let len = rng.below(100) as usize;
                let val = rng.bytes(len);
                common::set_user_xattr(&rel(root, &p), &name, &val);
                let w = resolve(v, &p)
                    .ok_or(())
                    .and_then(|i| v.setxattr(i, &name, &val, XattrMode::Any).map_err(|_| ()));
                (format!("setxattr {p} {name}"), true, w.is_ok())
            }
        }
        _ => {
            // Unlink an open file, then read and write it through the handle.
            let p = pick_any(rng);
            let Some(ino) = resolve(v, &p) else {
                return "skip".into();
            };
            if v.getattr(ino).unwrap().kind != FileKind::Regular {
                return "skip".into();
            }
            let before = read_all(v, ino);
            let fh = v.open_file(ino, true, false).unwrap();
            let nlink = v.getattr(ino).unwrap().nlink;
            let f = open_regular(root, &p).unwrap();
            let d = std::fs::remove_file(rel(root, &p));
            let (dn, n) = split(&p);
            let w = v.unlink(resolve(v, dn).unwrap(), n);
            assert_eq!(
                read_all(v, ino),
                before,
                "step {step}: open unlinked {p} readable"
            );
            assert_eq!(v.getattr(ino).unwrap().nlink, nlink - 1);
            v.write(ino, 0, b"still writable").unwrap();
            std::os::unix::fs::FileExt::write_all_at(&f, b"still writable", 0).unwrap();
            v.release(fh).unwrap();
            if nlink == 1 {
                assert!(v.getattr(ino).is_err(), "freed after release");
            }
            (format!("open-unlink {p}"), d.is_ok(), w.is_ok())
        }
    };
    assert_eq!(
        dir_ok, vfs_ok,
        "step {step}: {desc}: directory ok={dir_ok}, vfs ok={vfs_ok}"
    );
    desc
}

#[test]
fn fsx_random_ops_match_a_directory() {
    let Some(fx) = fixture(&[]) else { return };
    let oracle = fx.root.join("oracle");
    copy_tree(&fx.src, &oracle);
    let staging = fx.root.join("staging");
    let (v, st) = open_rw(&fx.wim, &staging);
    assert!(!st.resumed);
    assert_same(&dump_vfs(&v), &dump_dir(&oracle), "before any change");
    let seed = std::env::var("WIMFS_FSX_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12345);
    let mut rng = Rng::new(seed);
    let mut log = Vec::new();
    let steps: usize = std::env::var("WIMFS_FSX_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    for step in 0..steps {
        log.push(random_op(&mut rng, &v, &oracle, step));
        if step % 250 == 249 {
            let tail = log[log.len().saturating_sub(8)..].join("\n  ");
            let (a, b) = (dump_vfs(&v), dump_dir(&oracle));
            if a != b {
                eprintln!("last ops:\n  {tail}");
            }
            assert_same(&a, &b, &format!("after step {step}"));
        }
    }
    assert_same(&dump_vfs(&v), &dump_dir(&oracle), "at the end");
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for l in &log {
        *kinds.entry(l.split(' ').next().unwrap_or("")).or_default() += 1;
    }
    eprintln!("fsx: {steps} steps, seed {seed}: {kinds:?}");
    // The same changes come back from the staging directory.
    v.sync().unwrap();
    drop(v);
    let (v2, st) = open_rw(&fx.wim, &staging);
    assert!(st.resumed, "{st:?}");
    assert_same(
        &dump_vfs(&v2),
        &dump_dir(&oracle),
        "after reopening the staging",
    );
    // Commit, then check the WIM with the oracles: wimlib verifies it and
    // applies exactly the directory (wimlib drops named streams on Linux,
    // so xattrs are compared through a fresh read-only view instead).
    let g = v2.freeze().unwrap();
    let tree = v2.to_new_image().unwrap();
    let lock = wimfs::commit::WimLock::acquire(&fx.wim).unwrap();
    wimfs::commit::append_image(&lock, 1, tree, &Default::default(), &|_, _| {}).unwrap();
    drop(lock);
    drop(g);
    drop(v2);
    let run = |c: &mut std::process::Command| {
        let o = c.output().unwrap();
        assert!(
            o.status.success(),
            "{c:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(std::process::Command::new("wimlib-imagex")
        .arg("verify")
        .arg(&fx.wim));
    let applied = fx.root.join("applied");
    run(std::process::Command::new("wimlib-imagex")
        .arg("apply")
        .arg(&fx.wim)
        .arg("1")
        .arg(&applied));
    let strip = |d: Dump| Dump {
        items: d
            .items
            .into_iter()
            .map(|(k, (i, _, n))| (k, (i, BTreeMap::new(), n)))
            .collect(),
        links: d.links,
    };
    assert_same(
        &strip(dump_dir(&applied)),
        &strip(dump_dir(&oracle)),
        "wimlib apply of the commit",
    );
    let w = Arc::new(Wim::open(&fx.wim, &[]).unwrap());
    let img = Arc::new(Image::load(&w, 1).unwrap());
    let ro = Vfs::new(
        w,
        img,
        Arc::new(ChunkCache::new(64 << 20)),
        VfsOptions::default(),
    );
    assert_same(&dump_vfs(&ro), &dump_dir(&oracle), "the committed image");
}

#[test]
fn crash_recovery_keeps_synced_changes() {
    let Some(fx) = fixture(&[]) else { return };
    let mut unsynced_trials = 0;
    for trial in 0..12u64 {
        let oracle = fx.root.join(format!("oracle{trial}"));
        copy_tree(&fx.src, &oracle);
        let staging = fx.root.join(format!("staging{trial}"));
        let mut rng = Rng::new(1000 + trial);
        let v = open_rw(&fx.wim, &staging).0;
        let n = 20 + rng.below(300) as usize;
        for step in 0..n {
            random_op(&mut rng, &v, &oracle, step);
        }
        // Every change so far is closed (random_op releases its handles);
        // sync, then "crash": drop without any shutdown. The expectation is
        // the oracle directory, where random_op made the same changes.
        v.sync().unwrap();
        let unsynced_after = trial % 2 == 1;
        // Paths of /big's inode in the oracle, and /big's content with the
        // unsynced write applied: that write may or may not survive.
        let mut big_either: Option<(Vec<String>, Vec<u8>)> = None;
        let big_md = std::fs::symlink_metadata(oracle.join("big")).ok();
        if let (true, Some(ino), Some(md)) = (unsynced_after, resolve(&v, "/big"), big_md) {
            assert!(md.is_file(), "trial {trial}: /big in the oracle: {md:?}");
            // More changes that are never closed: writes into an open handle.
            let _fh = v.open_file(ino, true, false).unwrap();
            v.write(ino, 5 << 20, b"unsynced").unwrap();
            let mut patched = std::fs::read(oracle.join("big")).unwrap();
            patched.resize(patched.len().max((5 << 20) + 8), 0);
            patched[5 << 20..(5 << 20) + 8].copy_from_slice(b"unsynced");
            let paths = dump_dir(&oracle)
                .links
                .into_iter()
                .find(|g| g.iter().any(|p| p == "/big"))
                .unwrap_or_else(|| vec!["/big".to_string()]);
            big_either = Some((paths, patched));
            unsynced_trials += 1;
            // A metadata change made after the sync is journaled at once.
            v.mkdir(ROOT_INO, &format!("late{trial}"), 0o755, CRED)
                .unwrap();
            std::fs::create_dir(oracle.join(format!("late{trial}"))).unwrap();
        }
        drop(v);
        let (v2, st) = open_rw(&fx.wim, &staging);
        assert!(st.resumed || n == 0, "trial {trial}: {st:?}");
        let got = dump_vfs(&v2);
        let mut want = dump_dir(&oracle);
        if let Some((paths, patched)) = &big_either {
            for p in paths {
                let now = got.items.get(p).map(|x| &x.0);
                if now == Some(&Item::File(patched.clone())) {
                    if let Some(w) = want.items.get_mut(p) {
                        w.0 = Item::File(patched.clone());
                    }
                }
            }
        }
        assert_same(
            &got,
            &want,
            &format!("trial {trial}: reopened after crash vs the oracle directory"),
        );
    }
    assert!(unsynced_trials > 0, "no trial wrote after the sync");
}

#[test]
fn torn_journal_tail_and_wrong_wim() {
    let Some(fx) = fixture(&[]) else { return };
    let staging = fx.root.join("staging");
    let (v, _) = open_rw(&fx.wim, &staging);
    let (_, fh) = v.create(ROOT_INO, "new", 0o644, CRED).unwrap();
    let ino = v.lookup(ROOT_INO, "new").unwrap().ino;
    v.write(ino, 0, b"kept").unwrap();
    v.release(fh).unwrap();
    drop(v);
    // A half-written record at the end.
    use std::io::Write;
    let mut j = std::fs::OpenOptions::new()
        .append(true)
        .open(staging.join("journal"))
        .unwrap();
    j.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 5]).unwrap();
    drop(j);
    let (v, st) = open_rw(&fx.wim, &staging);
    assert!(st.resumed && st.torn_bytes == 9, "{st:?}");
    assert!(!st.warnings.is_empty());
    let ino = v.lookup(ROOT_INO, "new").unwrap().ino;
    assert_eq!(read_all(&v, ino), b"kept");
    // Appending after a cut tail works and survives another reopen.
    v.mkdir(ROOT_INO, "d2", 0o755, CRED).unwrap();
    v.sync().unwrap();
    drop(v);
    let (v, st) = open_rw(&fx.wim, &staging);
    assert_eq!(st.torn_bytes, 0);
    assert!(v.lookup(ROOT_INO, "d2").is_ok());
    drop(v);

    // The staging must not be applied to another WIM.
    let other = fx.root.join("other.wim");
    common::wimlib_capture(&fx.src.join("a"), &other, &[]);
    let w = Arc::new(Wim::open(&other, &[]).unwrap());
    let img = Arc::new(Image::load(&w, 1).unwrap());
    let err = Vfs::open_rw(
        w,
        img.index,
        Arc::new(ChunkCache::new(1 << 20)),
        VfsOptions::default(),
        &staging,
    )
    .err()
    .expect("mismatch refused");
    assert!(
        err.to_string().contains("different or since-changed"),
        "{err}"
    );
    // Discard, then it opens fresh.
    wimfs::overlay::discard(&staging).unwrap();
    let (v, st) = open_rw(&fx.wim, &staging);
    assert!(!st.resumed);
    assert!(v.lookup(ROOT_INO, "new").is_err());
}

#[test]
fn first_write_to_a_large_file_is_one_block() {
    let Some(fx) = fixture(&[]) else { return };
    let staging = fx.root.join("staging");
    let (v, _) = open_rw(&fx.wim, &staging);
    let ov = v.overlay().unwrap();
    let ino = resolve(&v, "/big").unwrap();
    let size = v.getattr(ino).unwrap().size;
    assert_eq!(size, 8 << 20);
    let decoded0 = v.cache.stats().decoded_bytes;
    let fh = v.open_file(ino, true, false).unwrap();
    v.write(ino, 3_000_001, b"X").unwrap();
    let copied = ov
        .counters
        .copied_from_base
        .load(std::sync::atomic::Ordering::Relaxed);
    let decoded = v.cache.stats().decoded_bytes - decoded0;
    assert!(copied <= 65536, "copied {copied} bytes for a 1-byte write");
    // LZX chunks are 32 KiB: a 64 KiB block spans at most three.
    assert!(
        decoded <= 3 * 32768,
        "decompressed {decoded} bytes for a 1-byte write"
    );
    v.release(fh).unwrap();
    let staged = std::fs::metadata(staging.join("data")).unwrap();
    assert!(staged.is_dir());
    let on_disk: u64 = std::fs::read_dir(staging.join("data"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().blocks() * 512)
        .sum();
    assert!(on_disk <= 2 * 65536, "staging uses {on_disk} bytes");
    // The merged view: one byte changed, the rest from the WIM.
    let mut want = std::fs::read(fx.src.join("big")).unwrap();
    want[3_000_001] = b'X';
    assert_eq!(read_all(&v, ino), want);
    // Truncate down then up reads zeros, not the old data.
    v.setattr(
        ino,
        &SetAttr {
            size: Some(100),
            ..Default::default()
        },
    )
    .unwrap();
    v.setattr(
        ino,
        &SetAttr {
            size: Some(200_000),
            ..Default::default()
        },
    )
    .unwrap();
    let got = read_all(&v, ino);
    assert_eq!(&got[..100], &want[..100]);
    assert!(got[100..].iter().all(|&b| b == 0));
}

#[test]
fn commit_tree_keeps_unchanged_and_links() {
    let Some(fx) = fixture(&[]) else { return };
    let staging = fx.root.join("staging");
    let (v, _) = open_rw(&fx.wim, &staging);
    // The base image as decoded on its own (a read-write view keeps only
    // what its overlay needs of it).
    let base = Image::load(&v.wim, 1).unwrap();
    let one = resolve(&v, "/a/one").unwrap();
    let fh = v.open_file(one, true, false).unwrap();
    v.write(one, 10, b"changed").unwrap();
    v.release(fh).unwrap();
    v.link(one, ROOT_INO, "third-link").unwrap();
    v.setxattr(
        resolve(&v, "/small.txt").unwrap(),
        "user.note",
        b"stream data",
        XattrMode::Create,
    )
    .unwrap();
    v.rename(
        ROOT_INO,
        "small.txt",
        ROOT_INO,
        "renamed.txt",
        RenameMode::Replace,
    )
    .unwrap();
    let (_, fh) = v
        .create(resolve(&v, "/c").unwrap(), "fresh", 0o644, CRED)
        .unwrap();
    v.release(fh).unwrap();
    let g = v.freeze().unwrap();
    let t = v.to_new_image().unwrap();
    assert_eq!(t.records.len(), t.streams.len());
    assert_eq!(t.security, base.security);
    let path_of = |i: usize| {
        let mut parts = Vec::new();
        let mut c = i;
        while c != 0 {
            parts.push(t.records[c].name.clone());
            c = t.records[c].parent as usize;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    };
    let mut by_path = BTreeMap::new();
    for i in 0..t.records.len() {
        assert!(
            i == 0 || (t.records[i].parent as usize) < i,
            "parents first"
        );
        by_path.insert(path_of(i), i);
    }
    // Unchanged file: same record fields and the same blob.
    let two = by_path["/a/b/two"];
    let d = base.lookup("/a/b/two").unwrap();
    let bi = base.inode_of(d);
    let r = &t.records[two];
    assert_eq!(
        (r.attributes, r.security_id, r.last_write_time),
        (bi.attributes, bi.security_id, bi.last_write_time)
    );
    assert!(
        matches!(&t.streams[two].data, Some(StreamData::Blob(h)) if *h == bi.data().unwrap().hash)
    );
    // Changed file: new content with the merged bytes; its three names
    // share one non-zero link group.
    let ids: Vec<u64> = ["/a/one", "/c/one-link", "/third-link"]
        .iter()
        .map(|p| t.records[by_path[*p]].link_group)
        .collect();
    assert!(ids[0] != 0 && ids.iter().all(|&x| x == ids[0]), "{ids:?}");
    match &t.streams[by_path["/a/one"]].data {
        Some(StreamData::New(c)) => {
            let mut buf = vec![0u8; c.len() as usize];
            c.read_at(0, &mut buf).unwrap();
            let mut want = std::fs::read(fx.src.join("a/one")).unwrap();
            want[10..17].copy_from_slice(b"changed");
            assert_eq!(buf, want);
        }
        _ => panic!("changed stream must be new content"),
    }
    // Renamed file keeps its data blob and gains the named stream.
    let rn = by_path["/renamed.txt"];
    assert_eq!(t.streams[rn].named.len(), 1);
    assert!(matches!(&t.streams[rn].named[0].1, StreamData::New(c) if c.len() == 11));
    assert!(matches!(t.streams[rn].data, Some(StreamData::Blob(_))));
    // New file: ARCHIVE, parent's security id, empty data.
    let fresh = &t.records[by_path["/c/fresh"]];
    assert_eq!(fresh.attributes, 0x20);
    assert_eq!(fresh.security_id, t.records[by_path["/c"]].security_id);
    assert!(matches!(
        t.streams[by_path["/c/fresh"]].data,
        Some(StreamData::Empty)
    ));
    // Symlink stays a reparse point with its data.
    let sym = by_path["/a/sym"];
    assert!(t.records[sym].is_reparse());
    assert!(t.streams[sym].reparse.is_some());
    drop(g);
}

#[test]
fn read_only_view_refuses_writes() {
    let Some(fx) = fixture(&[]) else { return };
    let w = Arc::new(Wim::open(&fx.wim, &[]).unwrap());
    let img = Arc::new(Image::load(&w, 1).unwrap());
    let v = Vfs::new(
        w,
        img,
        Arc::new(ChunkCache::new(1 << 20)),
        VfsOptions::default(),
    );
    assert!(v.mkdir(ROOT_INO, "x", 0o755, CRED).is_err());
    let ino = resolve(&v, "/small.txt").unwrap();
    assert!(v.write(ino, 0, b"x").is_err());
    assert!(v.open_file(ino, true, false).is_err());
    assert_eq!(v.open_file(ino, false, false).unwrap(), 0);
}

#[test]
fn chmod_chown_need_unix_data() {
    let Some(fx) = fixture(&[]) else { return };
    let w = Arc::new(Wim::open(&fx.wim, &[]).unwrap());
    let img = Arc::new(Image::load(&w, 1).unwrap());
    let cache = Arc::new(ChunkCache::new(1 << 20));
    // Without UNIX data: a real change is refused, a no-op accepted.
    let (v, _) = open_rw(&fx.wim, &fx.root.join("s1"));
    let ino = resolve(&v, "/small.txt").unwrap();
    let a = v.getattr(ino).unwrap();
    assert!(v
        .setattr(
            ino,
            &SetAttr {
                mode: Some(0o600),
                ..Default::default()
            }
        )
        .is_err());
    assert!(v
        .setattr(
            ino,
            &SetAttr {
                mode: Some(a.perm as u32),
                ..Default::default()
            }
        )
        .is_ok());
    drop(v);
    // With it: kept, journaled, and written as the UNIX-data tag.
    let opts = VfsOptions {
        store_unix_data: true,
        ..VfsOptions::default()
    };
    let staging = fx.root.join("s2");
    let (v, _) = Vfs::open_rw(w.clone(), img.index, cache.clone(), opts.clone(), &staging).unwrap();
    // Inode numbers come from lookups in each mount.
    let ino = resolve(&v, "/small.txt").unwrap();
    let s = SetAttr {
        mode: Some(0o640),
        uid: Some(1234),
        gid: Some(55),
        mtime: Some((1_000_000, 5)),
        ..Default::default()
    };
    let a = v.setattr(ino, &s).unwrap();
    assert_eq!(
        (a.perm, a.uid, a.gid, a.mtime),
        (0o640, 1234, 55, (1_000_000, 0))
    );
    let (_, fh) = v
        .create(ROOT_INO, "mine", 0o751, Cred { uid: 7, gid: 8 })
        .unwrap();
    assert_eq!(v.open_handles(), 1);
    v.release(fh).unwrap();
    assert_eq!(v.open_handles(), 0);
    drop(v);
    let (v, st) = Vfs::open_rw(w, img.index, cache, opts, &staging).unwrap();
    assert!(st.resumed);
    let ino = resolve(&v, "/small.txt").unwrap();
    let a = v.getattr(ino).unwrap();
    assert_eq!((a.perm, a.uid, a.gid), (0o640, 1234, 55));
    let m = v.getattr(resolve(&v, "/mine").unwrap()).unwrap();
    assert_eq!((m.perm, m.uid, m.gid), (0o751, 7, 8));
    let t = v.to_new_image().unwrap();
    let r = t.records.iter().find(|r| r.name == "mine").unwrap();
    let u = r.tagged(wimfs::wim::metadata::tag::UNIX_DATA).unwrap();
    assert_eq!(u32::from_le_bytes(u[8..12].try_into().unwrap()), 0o100751);
}

/// The source tree with [`some_changes`] made by plain file operations: the
/// independent expectation for the commit tests.
fn some_changes_oracle(fx: &Fixture, name: &str) -> PathBuf {
    let oracle = fx.root.join(name);
    copy_tree(&fx.src, &oracle);
    std::fs::create_dir(oracle.join("drivers")).unwrap();
    std::fs::write(
        oracle.join("drivers/net.inf"),
        b"[Version]\r\nSignature=\"$WINDOWS NT$\"\r\n",
    )
    .unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(oracle.join("big"))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"patched", 3 << 20).unwrap();
    std::fs::remove_file(oracle.join("c/empty")).unwrap();
    oracle
}

/// Some changes through the Vfs, synced: a new directory with a file, an
/// overwrite inside a large file and a removal.
fn some_changes(v: &Vfs) {
    let d = v.mkdir(ROOT_INO, "drivers", 0o755, CRED).unwrap();
    let (a, fh) = v.create(d.ino, "net.inf", 0o644, CRED).unwrap();
    v.write(a.ino, 0, b"[Version]\r\nSignature=\"$WINDOWS NT$\"\r\n")
        .unwrap();
    v.release(fh).unwrap();
    let big = resolve(v, "/big").unwrap();
    let fh = v.open_file(big, true, false).unwrap();
    v.write(big, 3 << 20, b"patched").unwrap();
    v.release(fh).unwrap();
    let c = resolve(v, "/c").unwrap();
    v.unlink(c, "empty").unwrap();
    v.sync().unwrap();
}

/// Commit the mount's tree into image 1 of `wim` as a mount's commit
/// does, its landing noted in the staging (the hook must be called); the
/// lock is still held.
fn commit_noting_landing(
    v: &Vfs,
    wim: &Path,
) -> (wimfs::commit::CommitReport, wimfs::commit::WimLock) {
    let tree = v.to_new_image().unwrap();
    let lock = wimfs::commit::WimLock::acquire(wim).unwrap();
    let mut noted = false;
    let rep = wimfs::commit::append_image_with(
        &lock,
        1,
        tree,
        &Default::default(),
        &|_, _| {},
        &mut |l| {
            noted = true;
            v.note_landing(l)
                .map_err(|e| wimfs::Error::Other(e.to_string()))
        },
    )
    .unwrap();
    assert!(noted, "the landing hook was not called");
    (rep, lock)
}

/// A commit whose header is written but whose process dies before the
/// staging is reset: the changes are in the WIM, and the next read-write
/// open starts afresh from it instead of refusing the staging.
#[test]
fn commit_killed_after_its_header_starts_afresh() {
    let Some(fx) = fixture(&[]) else { return };
    let staging = fx.root.join("landed");
    let (v, _) = open_rw(&fx.wim, &staging);
    some_changes(&v);
    let oracle = some_changes_oracle(&fx, "landed-oracle");
    let (_, lock) = commit_noting_landing(&v, &fx.wim);
    assert!(staging.join("commit.json").exists());
    // "Killed" here: no after_commit, the staging still describes the old WIM.
    drop(lock);
    drop(v);
    let (v2, st) = open_rw(&fx.wim, &staging);
    assert!(!st.resumed, "{st:?}");
    assert!(
        st.warnings
            .iter()
            .any(|w| w.contains("completed before the mount stopped")),
        "{st:?}"
    );
    assert!(!staging.join("commit.json").exists());
    assert_same(
        &dump_vfs(&v2),
        &dump_dir(&oracle),
        "after a landed commit vs the oracle directory",
    );
    // The tree comes from the WIM now, not from staged data.
    assert_eq!(
        std::fs::read_dir(staging.join("data")).unwrap().count(),
        0,
        "staged data left behind"
    );
    drop(v2);
    let o = common::wimlib_verify(&fx.wim, &[]);
    assert!(
        o.ok(),
        "wimlib verify: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The WIM itself holds the changes: wimlib applies the oracle.
    let applied = fx.root.join("landed-applied");
    let a = common::wimlib_apply(&fx.wim, "1", &applied, &[]);
    assert!(a.ok(), "wimlib apply: {}", a.describe());
    assert_same(
        &dump_dir(&applied),
        &dump_dir(&oracle),
        "wimlib apply of the landed commit",
    );
}

/// A commit that fails after the landing was recorded (the WIM is put
/// back): the record is ignored and the staging resumes every change.
#[test]
fn commit_that_did_not_land_resumes_the_staging() {
    let Some(fx) = fixture(&[]) else { return };
    let staging = fx.root.join("unlanded");
    let (v, _) = open_rw(&fx.wim, &staging);
    some_changes(&v);
    let oracle = some_changes_oracle(&fx, "unlanded-oracle");
    let before = std::fs::read(&fx.wim).unwrap();
    let tree = v.to_new_image().unwrap();
    let lock = wimfs::commit::WimLock::acquire(&fx.wim).unwrap();
    let err = wimfs::commit::append_image_with(
        &lock,
        1,
        tree,
        &Default::default(),
        &|_, _| {},
        &mut |l| {
            v.note_landing(l)
                .map_err(|e| wimfs::Error::Other(e.to_string()))?;
            Err(wimfs::Error::Other(
                "simulated failure before the header".into(),
            ))
        },
    );
    assert!(err.is_err());
    assert_eq!(std::fs::read(&fx.wim).unwrap(), before, "WIM not restored");
    assert!(staging.join("commit.json").exists());
    drop(lock);
    drop(v);
    let (v2, st) = open_rw(&fx.wim, &staging);
    assert!(st.resumed, "{st:?}");
    assert!(!staging.join("commit.json").exists());
    assert_same(
        &dump_vfs(&v2),
        &dump_dir(&oracle),
        "after a commit that did not land vs the oracle directory",
    );
}

/// A commit while mounted keeps the mount's inode numbers; changes made
/// after it are journaled with those numbers. A daemon killed then must
/// resume them on the committed image (whose own numbering differs: the
/// tree is rebuilt from it).
#[test]
fn changes_after_a_commit_while_mounted_survive_a_kill() {
    let Some(fx) = fixture(&[]) else { return };
    let staging = fx.root.join("after-commit");
    let (v, _) = open_rw(&fx.wim, &staging);
    some_changes(&v);
    let mut oracle = some_changes_oracle(&fx, "after-commit-oracle");
    // A file open across the commit with no name left: not in the
    // committed image, its later writes journal nothing a resume needs.
    let (gone, gone_fh) = v.create(ROOT_INO, "gone.txt", 0o644, CRED).unwrap();
    v.write(gone.ino, 0, b"before").unwrap();
    v.unlink(ROOT_INO, "gone.txt").unwrap();
    {
        let g = v.freeze().unwrap();
        let (rep, lock) = commit_noting_landing(&v, &fx.wim);
        let w = Arc::new(lock.open_wim().unwrap());
        v.after_commit(&g, w, rep.image).unwrap();
    }
    // After the commit: writes to the unnamed file, new files, a new
    // directory, a change to a file that existed before, all synced.
    v.write(gone.ino, 1 << 20, b"after").unwrap();
    v.setattr(
        gone.ino,
        &wimfs::overlay::SetAttr {
            size: Some(7),
            ..Default::default()
        },
    )
    .unwrap();
    v.release(gone_fh).unwrap();
    let d = v.mkdir(ROOT_INO, "later", 0o755, CRED).unwrap();
    let (a, fh) = v.create(d.ino, "x.txt", 0o644, CRED).unwrap();
    v.write(a.ino, 0, b"written after the commit").unwrap();
    v.release(fh).unwrap();
    let inf = resolve(&v, "/drivers/net.inf").unwrap();
    let fh = v.open_file(inf, true, false).unwrap();
    v.write(inf, 0, b"[VERSION]").unwrap();
    v.release(fh).unwrap();
    let (b, fh) = v.create(ROOT_INO, "top.txt", 0o644, CRED).unwrap();
    v.write(b.ino, 0, b"top").unwrap();
    v.release(fh).unwrap();
    v.sync().unwrap();
    drop(v); // killed: nothing more is written
    std::fs::create_dir(oracle.join("later")).unwrap();
    std::fs::write(oracle.join("later/x.txt"), b"written after the commit").unwrap();
    std::fs::write(oracle.join("top.txt"), b"top").unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(oracle.join("drivers/net.inf"))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"[VERSION]", 0).unwrap();
    let (v2, st) = open_rw(&fx.wim, &staging);
    assert!(st.resumed, "{st:?}");
    assert!(st.warnings.is_empty(), "{st:?}");
    assert_same(
        &dump_vfs(&v2),
        &dump_dir(&oracle),
        "resumed after a commit while mounted vs the oracle directory",
    );
    oracle.pop();
}

/// A staging written with the journal's earlier inode numbering (format
/// 1: indexes in the whole decoded image) is refused by name, and left as
/// it is for the wimfs that wrote it.
#[test]
fn a_staging_of_the_earlier_format_is_refused_untouched() {
    let Some(fx) = fixture(&[]) else { return };
    let staging = fx.root.join("format1");
    let (v, _) = open_rw(&fx.wim, &staging);
    some_changes(&v);
    drop(v);
    let id = staging.join("identity.json");
    let text = std::fs::read_to_string(&id).unwrap();
    assert!(text.contains("\"format\": 2"), "{text}");
    std::fs::write(&id, text.replace("\"format\": 2", "\"format\": 1")).unwrap();
    let journal = std::fs::read(staging.join("journal")).unwrap();
    let w = Arc::new(Wim::open(&fx.wim, &[]).unwrap());
    let err = Vfs::open_rw(
        w,
        1,
        Arc::new(ChunkCache::new(1 << 20)),
        VfsOptions::default(),
        &staging,
    )
    .err()
    .expect("a format-1 staging")
    .to_string();
    assert!(err.contains("staging format 1"), "{err}");
    assert_eq!(std::fs::read(staging.join("journal")).unwrap(), journal);
}
