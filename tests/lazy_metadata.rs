//! A read-only mount decodes the image one directory at a time
//! (`image::lazy`, `Vfs::open_lazy`): opening decodes nothing but the root,
//! a lookup decodes only the directories on its path, and what the lazy
//! view shows equals the full decode (`Image::load`) and
//! `wimlib-imagex dir --detailed`; hard links across directories share one
//! inode number; a damaged directory is an error only when visited.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wimfs::cache::ChunkCache;
use wimfs::image::lazy::LazyImage;
use wimfs::image::Image;
use wimfs::vfs::{Attr, Cred, FileKind, Ino, Vfs, VfsError, VfsOptions, ROOT_INO};

const CRED: Cred = Cred { uid: 0, gid: 0 };
use wimfs::wim::Wim;

/// Depth of the one deep path, `d0/d1/.../file`.
const DEPTH: usize = 6;

/// A tree with many directories (siblings of the deep path, each with
/// files), one directory with hundreds of long names (a child list much
/// larger than the first window read), hard links across directories, a
/// symlink and a named-stream-free mix of sizes.
fn source_tree(root: &Path) {
    let mut d = root.to_path_buf();
    for i in 0..DEPTH {
        d = d.join(format!("d{i}"));
        std::fs::create_dir_all(&d).unwrap();
        for s in 0..4 {
            let side = d.with_file_name(format!("side{i}-{s}"));
            std::fs::create_dir_all(side.join("inner")).unwrap();
            std::fs::write(side.join("f.txt"), format!("side {i} {s}\n")).unwrap();
            std::fs::write(side.join("inner/g.bin"), vec![i as u8; 100 * s + 1]).unwrap();
        }
    }
    std::fs::write(d.join("file"), b"deep file\n").unwrap();
    let big = root.join("big");
    std::fs::create_dir(&big).unwrap();
    for n in 0..400 {
        std::fs::write(
            big.join(format!(
                "a-rather-long-file-name-to-fill-the-list-{n:04}.txt"
            )),
            format!("{n}\n"),
        )
        .unwrap();
    }
    std::fs::write(root.join("d0/linked.txt"), b"one file, three names\n").unwrap();
    std::fs::hard_link(
        root.join("d0/linked.txt"),
        root.join("d0/d1/d2/side3-1/inner/also.txt"),
    )
    .unwrap();
    std::fs::hard_link(root.join("d0/linked.txt"), root.join("big/third.txt")).unwrap();
    symlink("d0/d1", root.join("to-d1")).unwrap();
    std::fs::create_dir(root.join("bad")).unwrap();
    std::fs::write(root.join("bad/x"), b"x").unwrap();
    std::fs::write(root.join("bad/y"), b"y").unwrap();
    std::fs::create_dir(root.join("good")).unwrap();
    std::fs::write(root.join("good/z"), b"z").unwrap();
}

struct Fx {
    _t: tempfile::TempDir,
    /// XPRESS with 4 KiB chunks: the metadata spans many chunks.
    wim: PathBuf,
    /// Uncompressed: its metadata bytes can be damaged in place.
    raw: PathBuf,
    /// Solid (LZMS): blobs in a solid run, found through the lazy index.
    solid: PathBuf,
}

fn fixture() -> Option<Fx> {
    if !common::require(&["wimlib-imagex"]) {
        return None;
    }
    let t = common::tempdir();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    source_tree(&src);
    let wim = t.path().join("x.wim");
    common::wimlib_capture(&src, &wim, &["--compress=XPRESS", "--chunk-size=4096"]);
    let raw = t.path().join("raw.wim");
    common::wimlib_capture(&src, &raw, &["--compress=none"]);
    let solid = t.path().join("solid.wim");
    common::wimlib_capture(&src, &solid, &["--solid"]);
    Some(Fx {
        _t: t,
        wim,
        raw,
        solid,
    })
}

/// The view a read-only mount has: the WIM's blobs and the image's
/// directories both made as they are visited.
fn lazy_vfs(wim: &Path) -> Vfs {
    let w = Arc::new(Wim::open_lazy(wim, &[]).unwrap());
    assert!(w.blobs.is_empty(), "no blob is made at open");
    Vfs::open_lazy(
        w,
        1,
        Arc::new(ChunkCache::new(64 << 20)),
        VfsOptions::default(),
    )
    .unwrap()
}

/// The view a read-write mount has (the WIM opened as the mount opens
/// it), its changes in `staging`.
fn rw_vfs(
    wim: &Path,
    staging: &Path,
) -> Result<(Vfs, wimfs::overlay::StagingStatus), wimfs::overlay::StagingError> {
    Vfs::open_rw(
        Arc::new(Wim::open_lazy(wim, &[]).unwrap()),
        1,
        Arc::new(ChunkCache::new(16 << 20)),
        VfsOptions::default(),
        staging,
    )
}

fn full_vfs(wim: &Path) -> Vfs {
    let w = Arc::new(Wim::open(wim, &[]).unwrap());
    let img = Arc::new(Image::load(&w, 1).unwrap());
    Vfs::new(
        w,
        img,
        Arc::new(ChunkCache::new(64 << 20)),
        VfsOptions::default(),
    )
}

fn resolve(v: &Vfs, path: &str) -> Ino {
    let mut ino = ROOT_INO;
    for c in path.split('/').filter(|c| !c.is_empty()) {
        ino = v.lookup(ino, c).unwrap().ino;
    }
    ino
}

fn read_all(v: &Vfs, ino: Ino) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = v.read(ino, out.len() as u64, 1 << 16).unwrap();
        if b.is_empty() {
            return out;
        }
        out.extend_from_slice(&b);
    }
}

/// (name, kind, ino) of every entry of `ino`, `.` and `..` left out.
fn entries(v: &Vfs, ino: Ino) -> Vec<(String, FileKind, Ino)> {
    let mut out = Vec::new();
    let mut off = 0;
    loop {
        let es = v.readdir(ino, off, 5).unwrap();
        if es.is_empty() {
            return out;
        }
        for e in es {
            off = e.next;
            if e.name != "." && e.name != ".." {
                out.push((e.name, e.kind, e.ino));
            }
        }
    }
}

fn no_ino(a: Attr) -> Attr {
    Attr { ino: 0, ..a }
}

#[test]
fn a_lookup_decodes_only_the_directories_on_its_path() {
    let Some(fx) = fixture() else { return };
    let w = Arc::new(Wim::open(&fx.wim, &[]).unwrap());
    let img = LazyImage::open(w, 1).unwrap();
    assert_eq!(img.decoded_dirs(), 0, "opening decodes no directory");
    assert_eq!(img.decoded_entries(), 1, "only the root");
    let deep: String = (0..DEPTH).map(|i| format!("/d{i}")).collect::<String>() + "/file";
    let e = img.lookup(&deep).unwrap().expect("deep path");
    assert_eq!(e.name, "file");
    assert_eq!(e.inode.size(), 10);
    // The root and d0..d5: nothing else.
    assert_eq!(img.decoded_dirs(), DEPTH + 1);
    assert!(img.lookup("/d0/no-such").unwrap().is_none());
    assert_eq!(img.decoded_dirs(), DEPTH + 1, "d0 was decoded once");

    // The same through the vfs (lookup by lookup, as FUSE asks): looking
    // up a directory decodes it (its attributes count its subdirectories).
    let v = lazy_vfs(&fx.wim);
    let lazy = v.lazy_image().unwrap().clone();
    assert_eq!(lazy.decoded_dirs(), 0);
    let ino = resolve(&v, &deep);
    assert_eq!(read_all(&v, ino), b"deep file\n");
    assert_eq!(lazy.decoded_dirs(), DEPTH + 1);
    // Hard links in directories decoded in any order share a number, and
    // the first one's link count already counts all three (the census).
    let v2 = lazy_vfs(&fx.wim);
    let third = resolve(&v2, "/big/third.txt");
    assert_eq!(v2.getattr(third).unwrap().nlink, 3);
    assert_eq!(
        v2.lazy_image().unwrap().decoded_dirs(),
        2,
        "the root and big"
    );
    assert_eq!(resolve(&v2, "/d0/d1/d2/side3-1/inner/also.txt"), third);
    assert_eq!(resolve(&v2, "/d0/linked.txt"), third);
    assert_eq!(read_all(&v2, third), b"one file, three names\n");

    let before = lazy.decoded_entries();
    let full = Image::load(&Wim::open(&fx.wim, &[]).unwrap(), 1).unwrap();
    assert!(
        before * 4 < full.dentries.len(),
        "{before} of {} entries decoded",
        full.dentries.len()
    );
}

/// Walk the lazy and the full view side by side by name: every
/// attribute (but the inode number), entry, target, byte and xattr is the
/// same; the lazy numbers are unique per file and shared by hard links.
#[test]
fn the_lazy_view_equals_the_full_decode() {
    let Some(fx) = fixture() else { return };
    for wim in [&fx.wim, &fx.raw, &fx.solid] {
        let (lz, fu) = (lazy_vfs(wim), full_vfs(wim));
        // lazy ino -> full ino: a bijection (hard links map together).
        let mut map: HashMap<Ino, Ino> = HashMap::new();
        let mut back: HashMap<Ino, Ino> = HashMap::new();
        let mut stack = vec![(ROOT_INO, ROOT_INO, "/".to_string())];
        let mut seen = 0;
        while let Some((l, f, path)) = stack.pop() {
            seen += 1;
            assert_eq!(*map.entry(l).or_insert(f), f, "{path}: lazy number reused");
            assert_eq!(*back.entry(f).or_insert(l), l, "{path}: two lazy numbers");
            let a = lz.getattr(l).unwrap();
            assert_eq!(a.ino, l);
            assert_eq!(
                no_ino(a),
                no_ino(fu.getattr(f).unwrap()),
                "attributes of {path}"
            );
            let mut xl = lz.listxattr(l).unwrap();
            let mut xf = fu.listxattr(f).unwrap();
            xl.sort();
            xf.sort();
            assert_eq!(xl, xf, "xattr names of {path}");
            for n in &xl {
                assert_eq!(lz.getxattr(l, n), fu.getxattr(f, n), "xattr {n} of {path}");
            }
            assert_eq!(lz.readlink(l), fu.readlink(f), "target of {path}");
            match a.kind {
                FileKind::Directory => {
                    let (el, ef) = (entries(&lz, l), entries(&fu, f));
                    let names = |e: &[(String, FileKind, Ino)]| {
                        e.iter()
                            .map(|(n, k, _)| (n.clone(), *k))
                            .collect::<Vec<_>>()
                    };
                    assert_eq!(names(&el), names(&ef), "entries of {path}");
                    for ((n, _, ci), (_, _, cf)) in el.into_iter().zip(ef) {
                        let got = lz.lookup(l, &n).unwrap();
                        assert_eq!(got.ino, ci, "lookup and readdir of {path}{n}");
                        stack.push((ci, cf, format!("{path}{n}/")));
                    }
                    assert_eq!(
                        map.get(&lz.lookup(l, "..").unwrap().ino).copied(),
                        Some(fu.lookup(f, "..").unwrap().ino),
                        "{path}.."
                    );
                }
                FileKind::Regular => {
                    assert_eq!(read_all(&lz, l), read_all(&fu, f), "data of {path}")
                }
                _ => {}
            }
        }
        assert!(seen > 450, "walked {seen}");
        let linked = [
            "/d0/linked.txt",
            "/d0/d1/d2/side3-1/inner/also.txt",
            "/big/third.txt",
        ];
        let inos: Vec<Ino> = linked.iter().map(|p| resolve(&lz, p)).collect();
        assert!(inos.iter().all(|&i| i == inos[0]), "{inos:?}");
        assert_eq!(lz.getattr(inos[0]).unwrap().nlink, 3);
        assert_eq!(
            lz.lookup(ROOT_INO, "to-d1").unwrap().kind,
            FileKind::Symlink
        );
        assert_eq!(lz.readlink(resolve(&lz, "/to-d1")).unwrap(), "d0/d1");
    }
}

/// `wimlib-imagex dir --detailed`: every path it lists resolves in the
/// lazy image with the same attributes, link count, data hash and size,
/// and the lazy image lists no other path.
#[test]
fn the_lazy_image_agrees_with_wimlib_dir_detailed() {
    let Some(fx) = fixture() else { return };
    let out = common::run_ok(
        std::process::Command::new("wimlib-imagex")
            .arg("dir")
            .arg(&fx.wim)
            .arg("1")
            .arg("--detailed"),
    )
    .stdout_str();
    let mut want: BTreeMap<String, HashMap<String, String>> = BTreeMap::new();
    for block in out.split("--------------------------------") {
        let mut f = HashMap::new();
        let mut in_data = false;
        for line in block.lines() {
            let line = line.trim();
            if line == "Unnamed data stream:" {
                in_data = true;
            }
            if let Some((k, v)) = line.split_once(" = ") {
                let k = if in_data && !k.starts_with("Full") {
                    format!("data {}", k.trim())
                } else {
                    k.trim().to_string()
                };
                f.entry(k).or_insert_with(|| v.trim().to_string());
            }
        }
        if let Some(p) = f.get("Full Path").cloned() {
            want.insert(p.trim_matches('"').to_string(), f);
        }
    }
    assert!(want.len() > 450, "wimlib lists {}", want.len());
    let img = LazyImage::open(Arc::new(Wim::open(&fx.wim, &[]).unwrap()), 1).unwrap();
    for (path, f) in &want {
        let e = img
            .lookup(path)
            .unwrap()
            .unwrap_or_else(|| panic!("{path} not found"));
        let i = &e.inode;
        assert_eq!(
            f["Attributes"].to_lowercase(),
            format!("0x{:08x}", i.attributes),
            "{path}"
        );
        assert_eq!(f["Link Count"], img.nlink(&e).to_string(), "{path}");
        let (hash, size) = i
            .data()
            .map(|s| {
                let h: String = s.hash.iter().map(|b| format!("{b:02x}")).collect();
                (format!("0x{h}"), format!("{} bytes", s.size))
            })
            .unwrap_or(("0x".to_string() + &"0".repeat(40), "0 bytes".into()));
        if let Some(h) = f.get("data Hash").filter(|_| !i.is_reparse()) {
            assert_eq!(h.to_lowercase(), hash, "hash of {path}");
            assert_eq!(f["data Uncompressed size"], size, "size of {path}");
        }
    }
    // Nothing more: walk the lazy image and count.
    let mut n = 0;
    let mut stack = vec![img.root().clone()];
    while let Some(e) = stack.pop() {
        n += 1;
        if e.inode.is_dir() {
            stack.extend(img.children(&e).unwrap().kids.iter().cloned());
        }
    }
    assert_eq!(n, want.len());
}

/// Damage the first entry of `/bad`'s child list in the uncompressed WIM:
/// the full decode refuses the image, the lazy one opens it, shows every
/// other directory, and reports `/bad` as an I/O error each time it is
/// looked into.
#[test]
fn a_damaged_directory_is_an_error_only_when_visited() {
    let Some(fx) = fixture() else { return };
    damage_bad(&fx.raw);

    let w = Arc::new(Wim::open(&fx.raw, &[]).unwrap());
    assert!(Image::load(&w, 1).is_err(), "the full decode refuses it");

    let v = Vfs::open_lazy(
        w,
        1,
        Arc::new(ChunkCache::new(16 << 20)),
        VfsOptions::default(),
    )
    .unwrap();
    let root = entries(&v, ROOT_INO);
    assert!(root.iter().any(|(n, _, _)| n == "bad"), "{root:?}");
    let good = v.lookup(ROOT_INO, "good").unwrap().ino;
    let z = v.lookup(good, "z").unwrap().ino;
    assert_eq!(read_all(&v, z), b"z");
    assert_eq!(
        read_all(&v, resolve(&v, "/d0/d1/d2/d3/d4/d5/file")),
        b"deep file\n"
    );
    for _ in 0..2 {
        match v.lookup(ROOT_INO, "bad") {
            Err(VfsError::Io(e)) => assert!(e.to_string().contains("/bad"), "{e}"),
            other => panic!("lookup of /bad: {other:?}"),
        }
    }
    let bad_ino = entries(&v, ROOT_INO)
        .into_iter()
        .find(|(n, _, _)| n == "bad")
        .unwrap()
        .2;
    assert!(matches!(v.readdir(bad_ino, 0, 10), Err(VfsError::Io(_))));
    // Still nothing else is affected.
    assert_eq!(read_all(&v, z), b"z");
}

/// A root whose child list does not decode would be a mount point that
/// cannot even be stat'ed: both kinds of mount refuse it, naming the
/// root, leave nothing mounted and (read-write) no staging behind.
#[test]
fn a_damaged_root_refuses_the_mount() {
    let Some(fx) = fixture() else { return };
    if !common::fuse_available() {
        common::skip("no FUSE here: cannot try mounting a damaged root");
        return;
    }
    damage_list(&fx.raw, "");
    let dir = fx.raw.with_extension("mnt");
    for extra in [&[][..], &["--rw"][..]] {
        let out = match common::Mount::new(&fx.raw, None, &dir, extra) {
            Ok(_) => panic!("mount {extra:?} of a damaged root succeeded"),
            Err(out) => out,
        };
        let err = out.stderr_str();
        assert!(
            err.contains("cannot load image 1") && err.contains("directory /:"),
            "mount {extra:?}: {}",
            out.describe()
        );
        assert!(!common::is_mounted(&dir), "mount {extra:?} left a mount");
    }
    let parent = fx.raw.parent().unwrap();
    let left: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("staging"))
        .collect();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

/// The same damaged image mounted read-write: it mounts, the rest of it
/// can be changed, `/bad` is an I/O error; a commit (which needs the
/// whole tree) and a resume (which must find every inode its journal
/// names) refuse it, naming `/bad`, and the staging keeps every change.
#[test]
fn a_damaged_directory_in_a_read_write_mount() {
    let Some(fx) = fixture() else { return };
    damage_bad(&fx.raw);
    let staging = fx.raw.with_extension("staging");
    let open = || rw_vfs(&fx.raw, &staging);
    let (v, _) = open().unwrap();
    match v.lookup(ROOT_INO, "bad") {
        Err(VfsError::Io(e)) => assert!(e.to_string().contains("/bad"), "{e}"),
        other => panic!("lookup of /bad: {other:?}"),
    }
    let good = v.lookup(ROOT_INO, "good").unwrap().ino;
    let (a, fh) = v.create(good, "new", 0o644, CRED).unwrap();
    v.write(a.ino, 0, b"kept").unwrap();
    v.release(fh).unwrap();
    v.sync().unwrap();
    let err = v.to_new_image().err().expect("a commit of a damaged image");
    assert!(err.to_string().contains("/bad"), "{err}");
    drop(v);
    let err = open()
        .err()
        .expect("a resume of a damaged image")
        .to_string();
    assert!(err.contains("/bad") && err.contains("resume"), "{err}");
    let journal = std::fs::metadata(staging.join("journal")).unwrap().len();
    assert!(journal > 8, "journal emptied: {journal} bytes");
    assert!(std::fs::read_dir(staging.join("data")).unwrap().count() > 0);
}

/// A read-write mount decodes the directories it visits, as a read-only
/// one does; its changes (a new file, a hard link removed) resume after
/// the daemon is gone, which decodes the whole image to find them.
#[test]
fn a_read_write_mount_decodes_what_it_visits_and_a_resume_all() {
    let Some(fx) = fixture() else { return };
    let staging = fx.wim.with_extension("staging");
    let open = || rw_vfs(&fx.wim, &staging).unwrap();
    let (v, st) = open();
    assert!(!st.resumed);
    let lazy = v.lazy_image().unwrap();
    assert_eq!(lazy.decoded_dirs(), 0, "opening decodes no directory");
    let deep: String = (0..DEPTH).map(|i| format!("/d{i}")).collect::<String>() + "/file";
    assert_eq!(read_all(&v, resolve(&v, &deep)), b"deep file\n");
    assert_eq!(lazy.decoded_dirs(), DEPTH + 1);
    let full = Image::load(&Wim::open(&fx.wim, &[]).unwrap(), 1).unwrap();
    assert!(
        lazy.decoded_entries() * 4 < full.dentries.len(),
        "{} of {} entries decoded",
        lazy.decoded_entries(),
        full.dentries.len()
    );
    // A hard link's count needs the census (a walk of the whole image).
    let third = resolve(&v, "/big/third.txt");
    assert_eq!(v.getattr(third).unwrap().nlink, 3);
    assert_eq!(resolve(&v, "/d0/linked.txt"), third);
    let d0 = resolve(&v, "/d0");
    v.unlink(d0, "linked.txt").unwrap();
    assert_eq!(v.getattr(third).unwrap().nlink, 2);
    let (a, fh) = v.create(d0, "new.txt", 0o644, CRED).unwrap();
    v.write(a.ino, 0, b"new").unwrap();
    v.release(fh).unwrap();
    drop(v);
    let (v, st) = open();
    assert!(st.resumed && st.warnings.is_empty(), "{st:?}");
    // The resume loaded every directory into the tree, then let the
    // lazy image's copy of them go (it holds the root only again).
    assert_eq!(v.lazy_image().unwrap().decoded_entries(), 1);
    assert_eq!(read_all(&v, resolve(&v, "/d0/new.txt")), b"new");
    assert!(matches!(
        v.lookup(resolve(&v, "/d0"), "linked.txt"),
        Err(VfsError::NotFound)
    ));
    assert_eq!(v.getattr(resolve(&v, "/big/third.txt")).unwrap().nlink, 2);
}

/// Damage the first entry of `/bad`'s child list in the uncompressed WIM
/// `raw` (a length below the fixed part of an entry).
fn damage_bad(raw: &Path) {
    damage_list(raw, "bad");
}

/// Damage the first entry of the child list of the directory called `name`
/// ("" for the root) in the uncompressed WIM `raw`.
fn damage_list(raw: &Path, name: &str) {
    let w = Wim::open(raw, &[]).unwrap();
    let md = wimfs::wim::metadata::parse(&w.read_metadata(1).unwrap()).unwrap();
    let bad = md.dentries.iter().find(|d| d.name == name).unwrap();
    let res = match &w.metadata[0].loc {
        wimfs::wim::BlobLoc::Whole(r) => r.clone(),
        other => panic!("metadata in {other:?}"),
    };
    assert!(res.is_raw());
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(raw)
        .unwrap();
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut sub = [0u8; 8];
    f.seek(SeekFrom::Start(res.reshdr.offset + bad.offset + 16))
        .unwrap();
    f.read_exact(&mut sub).unwrap();
    let list = u64::from_le_bytes(sub);
    assert_ne!(list, 0);
    // A length below the fixed part of an entry: invalid.
    f.seek(SeekFrom::Start(res.reshdr.offset + list)).unwrap();
    f.write_all(&0x20u64.to_le_bytes()).unwrap();
    drop(f);
    drop(w);
}

/// Where a blob's bytes are, for comparing two opens of one WIM.
fn place(b: &wimfs::wim::Blob) -> (u64, u16, u64, u64, u64) {
    match &b.loc {
        wimfs::wim::BlobLoc::Whole(r) => (b.size, b.part, r.reshdr.offset, r.id, 0),
        wimfs::wim::BlobLoc::Solid { run, offset } => (
            b.size,
            b.part,
            run.resources[0].reshdr.offset,
            run.resources[0].id,
            *offset + 1,
        ),
    }
}

/// `Wim::open_lazy` finds every blob `Wim::open` makes, at the same place
/// (resource, solid offset, resource id for the chunk cache), the same
/// metadata resources, and nothing for a hash the WIM lacks: on the
/// generated WIMs (plain, uncompressed, solid) and every shared fixture
/// that opens.
#[test]
fn lazy_blob_lookups_match_the_eager_blob_table() {
    let Some(fx) = fixture() else { return };
    let mut wims = vec![fx.wim.clone(), fx.raw.clone(), fx.solid.clone()];
    if let Some(dir) = common::fixtures() {
        wims.extend(common::fixture_wims(&dir).iter().map(|w| dir.join(w)));
    }
    let mut checked = 0;
    for path in &wims {
        let Ok(eager) = Wim::open(path, &[]) else {
            assert!(Wim::open_lazy(path, &[]).is_err(), "{}", path.display());
            continue;
        };
        let lazy = Wim::open_lazy(path, &[]).unwrap();
        assert!(lazy.blobs.is_empty());
        assert_eq!(
            eager.metadata.len(),
            lazy.metadata.len(),
            "{}",
            path.display()
        );
        for (a, b) in eager.metadata.iter().zip(&lazy.metadata) {
            assert_eq!(place(a), place(b), "{}", path.display());
        }
        for (h, b) in &eager.blobs {
            let got = lazy
                .blob(h)
                .unwrap_or_else(|| panic!("{}: blob missing", path.display()));
            assert_eq!(got.hash, *h);
            assert_eq!(place(&got), place(b), "{}", path.display());
            assert_eq!(eager.blob(h).map(|b| place(&b)), Some(place(b)));
            checked += 1;
        }
        let mut absent = [0x5au8; 20];
        absent[0] = 0;
        assert!(lazy.blob(&absent).is_none() && eager.blob(&absent).is_none());
    }
    assert!(checked > 400, "{checked} blobs compared");
}

/// A commit of a mount that visited little: directories it never looked
/// into are copied from the base, and the other names of a hard link it
/// changed through one name (in directories never visited) follow the
/// change: one file, new content. The image verifies and applies with
/// wimlib to the source tree with the same changes; after the commit the
/// mount goes on from the committed image, and a directory it loads then
/// finds the same file.
#[test]
fn a_commit_copies_what_the_mount_never_visited() {
    let Some(fx) = fixture() else { return };
    let root = fx._t.path();
    let staging = fx.wim.with_extension("staging");
    let (v, _) = rw_vfs(&fx.wim, &staging).unwrap();
    let third = resolve(&v, "/big/third.txt");
    let fh = v.open_file(third, true, true).unwrap();
    v.write(third, 0, b"changed through one name\n").unwrap();
    v.release(fh).unwrap();
    let good = resolve(&v, "/good");
    let (a, fh) = v.create(good, "new.txt", 0o644, CRED).unwrap();
    v.write(a.ino, 0, b"new\n").unwrap();
    v.release(fh).unwrap();
    let lazy = v.lazy_image().unwrap();
    let visited = lazy.decoded_dirs();
    assert_eq!(visited, 3, "the root, big and good");
    {
        let g = v.freeze().unwrap();
        let tree = v.to_new_image().unwrap();
        assert_eq!(
            lazy.decoded_dirs(),
            visited,
            "the commit loaded a directory"
        );
        let lock = wimfs::commit::WimLock::acquire(&fx.wim).unwrap();
        let rep = wimfs::commit::append_image_with(
            &lock,
            1,
            tree,
            &Default::default(),
            &|_, _| {},
            &mut |_| Ok(()),
        )
        .unwrap();
        let w = Arc::new(lock.open_wim().unwrap());
        v.after_commit(&g, w, rep.image).unwrap();
    }
    // The same changes in a copy of the source (cp -a keeps hard links).
    let expected = root.join("expected");
    let o = std::process::Command::new("cp")
        .arg("-a")
        .arg(root.join("src"))
        .arg(&expected)
        .status()
        .unwrap();
    assert!(o.success());
    std::fs::write(
        expected.join("big/third.txt"),
        b"changed through one name\n",
    )
    .unwrap();
    std::fs::write(expected.join("good/new.txt"), b"new\n").unwrap();
    let v_out = common::wimlib_verify(&fx.wim, &[]);
    assert!(v_out.ok(), "wimlib verify: {}", v_out.describe());
    let applied = root.join("applied");
    let ap = common::wimlib_apply(&fx.wim, "1", &applied, &[]);
    assert!(ap.ok(), "wimlib apply: {}", ap.describe());
    let opts = common::CompareOpts {
        mtime: false,
        xattrs: false,
        ..common::CompareOpts::default()
    }
    .labels("expected", "applied");
    common::assert_trees_equal(&expected, &applied, &opts, "committed image");
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &str| std::fs::metadata(applied.join(p)).unwrap().ino();
    assert_eq!(ino("d0/linked.txt"), ino("big/third.txt"));
    assert_eq!(ino("d0/d1/d2/side3-1/inner/also.txt"), ino("big/third.txt"));
    // The mount goes on: d0, loaded now from the committed image, holds
    // the same file under its other name.
    assert_eq!(resolve(&v, "/d0/linked.txt"), third);
    assert_eq!(v.getattr(third).unwrap().nlink, 3);
    assert_eq!(
        read_all(&v, resolve(&v, "/d0/d1/d2/side3-1/inner/also.txt")),
        b"changed through one name\n"
    );
}
