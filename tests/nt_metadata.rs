//! The write side of Windows metadata: DOS attributes, the four times,
//! security descriptors and reparse points, set through the vfs (as the NT
//! layer does) and through ntfs-3g's `system.ntfs_*` xattrs on a real
//! read-write FUSE mount, then committed. Oracles: the committed metadata
//! parsed, `wimlib-imagex dir --detailed` and `verify`, and the image
//! applied by wimlib onto an NTFS volume whose xattrs ntfs-3g reads back.

mod common;

use common::{NtfsMount, RwMount};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use wimfs::cache::ChunkCache;
use wimfs::image::Image;
use wimfs::vfs::{Cred, FileKind, Ino, NtTimes, Vfs, VfsError, VfsOptions, ROOT_INO};
use wimfs::wim::Wim;

const CRED: Cred = Cred { uid: 0, gid: 0 };
const TAG_JUNCTION: u32 = 0xA000_0003;
const TAG_SYMLINK: u32 = 0xA000_000C;
/// An opaque tag (IO_REPARSE_TAG_DEDUP): kept as data, never decoded.
const TAG_OPAQUE: u32 = 0x8000_0013;

fn ft(unix_secs: i64) -> u64 {
    ((unix_secs + 11_644_473_600) * 10_000_000) as u64 + 1234567
}

/// A descriptor the NTFS-sourced image does not hold yet: the common
/// custom one with another access mask for Everyone.
fn new_descriptor(mask: u32) -> Vec<u8> {
    let mut sd = common::custom_security_descriptor();
    // First ACE's mask: header 20, owner 16, group 12, ACL header 8, ACE header 4.
    let at = 20 + 16 + 12 + 8 + 4;
    sd[at..at + 4].copy_from_slice(&mask.to_le_bytes());
    wimfs::nt::security::validate(&sd).unwrap();
    sd
}

/// The `system.ntfs_reparse_data` value: tag, length, reserved, data.
fn reparse_value(tag: u32, data: &[u8]) -> Vec<u8> {
    let mut v = tag.to_le_bytes().to_vec();
    v.extend_from_slice(&(data.len() as u16).to_le_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(data);
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn open_rw(wim: &Path, staging: &Path) -> Vfs {
    let w = Arc::new(Wim::open(wim, &[]).unwrap());
    let img = Arc::new(Image::load(&w, 1).unwrap());
    let cache = Arc::new(ChunkCache::new(64 << 20));
    let opts = VfsOptions {
        use_unix_data: false,
        ..VfsOptions::default()
    };
    Vfs::open_rw(w, img.index, cache, opts, staging).unwrap().0
}

fn resolve(v: &Vfs, path: &str) -> Ino {
    let mut ino = ROOT_INO;
    for c in path.split('/').filter(|c| !c.is_empty()) {
        ino = v
            .lookup(ino, c)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .ino;
    }
    ino
}

/// What a committed file must show: attributes, (creation, last write,
/// last access) FILETIMEs, descriptor, reparse tag and data.
#[derive(Debug, Default, Clone)]
struct Expect {
    attributes: Option<u32>,
    times: Option<[u64; 3]>,
    security: Option<Vec<u8>>,
    reparse: Option<(u32, Vec<u8>)>,
}

/// Check the committed WIM against `want` with wimlib (verify, `dir
/// --detailed`), then apply it onto a fresh NTFS volume and read the same
/// metadata back through ntfs-3g.
fn check_committed(wim: &Path, work: &Path, want: &BTreeMap<&str, Expect>) {
    let v = common::wimlib_verify(wim, &[]);
    assert!(v.ok(), "wimlib verify:\n{}", v.describe());
    let d = common::wimlib_dir_detailed(wim);
    for (path, e) in want {
        let f = d
            .get(&format!("/{path}"))
            .unwrap_or_else(|| panic!("{path} not in wimlib's listing"));
        if let Some(a) = e.attributes {
            assert_eq!(f["Attributes"], format!("0x{a:08x}"), "{path}: attributes");
        }
        if let Some(sd) = &e.security {
            assert_eq!(f["Security Descriptor"], hex(sd), "{path}: descriptor");
        }
        if let Some([c, w, a]) = e.times {
            assert_eq!(
                f["Creation Time"],
                common::wimlib_time(c),
                "{path}: creation"
            );
            assert_eq!(
                f["Last Write Time"],
                common::wimlib_time(w),
                "{path}: write"
            );
            assert_eq!(
                f["Last Access Time"],
                common::wimlib_time(a),
                "{path}: access"
            );
        }
        if let Some((tag, _)) = &e.reparse {
            assert_eq!(
                f["Reparse Tag"],
                format!("0x{tag:08x}"),
                "{path}: reparse tag"
            );
        }
    }
    // Applied onto NTFS by wimlib, read back by ntfs-3g.
    let vol = work.join("applied.raw");
    std::fs::File::create(&vol)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    common::run_ok(Command::new("mkntfs").args(["-F", "-f", "-q"]).arg(&vol));
    common::run_ok(
        Command::new("wimlib-imagex")
            .arg("apply")
            .arg(wim)
            .arg("1")
            .arg(&vol),
    );
    let mnt = work.join("applied");
    let mut m = NtfsMount::mount(&vol, &mnt).expect("ntfs-3g mount of the applied volume");
    for (path, e) in want {
        let p = m.mnt.join(path);
        let get =
            |n: &str| common::lgetxattr(&p, n).unwrap_or_else(|e| panic!("{path}: {n}: errno {e}"));
        if let Some(a) = e.attributes {
            let got = u32::from_le_bytes(get("system.ntfs_attrib")[..4].try_into().unwrap());
            assert_eq!(got, a, "{path}: attributes on NTFS");
        }
        if let Some(sd) = &e.security {
            assert_eq!(
                hex(&get("system.ntfs_acl")),
                hex(sd),
                "{path}: descriptor on NTFS"
            );
        }
        if let Some(t) = e.times {
            let v = get("system.ntfs_times");
            let got: Vec<u64> = v
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            assert_eq!(
                got[..3],
                t,
                "{path}: times on NTFS (creation, write, access)"
            );
        }
        if let Some((tag, data)) = &e.reparse {
            assert_eq!(
                hex(&get("system.ntfs_reparse_data")),
                hex(&reparse_value(*tag, data)),
                "{path}: reparse data on NTFS"
            );
        }
    }
    m.unmount();
}

/// The committed image's security table and each path's security id.
fn security_table(wim: &Path) -> (Vec<Vec<u8>>, BTreeMap<String, i32>) {
    let w = Wim::open(wim, &[]).unwrap();
    let raw = w.read_metadata(1).unwrap();
    let md = wimfs::wim::metadata::parse(&raw).unwrap();
    let mut ids = BTreeMap::new();
    let mut paths: Vec<String> = Vec::with_capacity(md.dentries.len());
    for (i, r) in md.dentries.iter().enumerate() {
        let p = if i == 0 {
            String::new()
        } else {
            let parent = &paths[r.parent as usize];
            if parent.is_empty() {
                r.name.clone()
            } else {
                format!("{parent}/{}", r.name)
            }
        };
        ids.insert(p.clone(), r.security_id);
        paths.push(p);
    }
    (md.security, ids)
}

fn commit(v: &Vfs, wim: &Path) {
    let tree = v.to_new_image().unwrap();
    let lock = wimfs::commit::WimLock::acquire(wim).unwrap();
    wimfs::commit::append_image(&lock, 1, tree, &Default::default(), &|_, _| {}).unwrap();
}

/// Every setter through the vfs, as the NT layer calls them, on an image
/// captured from NTFS (it has a security table); refusals change nothing;
/// a new descriptor given to four files is stored once, an existing one is
/// reused; then wimlib and ntfs-3g see what was set.
#[test]
fn vfs_setters_commit_dedupe_and_oracles() {
    let tmp = common::tempdir();
    let Some(nw) = common::build_ntfs_wim(&tmp.path().join("src"), &[]) else {
        return;
    };
    let (base_table, base_ids) = security_table(&nw.wim);
    assert!(!base_table.is_empty(), "the NTFS image has descriptors");
    let v = open_rw(&nw.wim, &tmp.path().join("staging"));
    let acl_sd = v.security(resolve(&v, "acl.txt")).unwrap().unwrap();
    let sd = new_descriptor(0x0012_019f);
    assert!(!base_table.contains(&sd));

    let hello = resolve(&v, "hello.txt");
    let before = v.security(hello).unwrap();
    // Malformed descriptors: refused, nothing changes.
    let mut bad_rev = sd.clone();
    bad_rev[0] = 2;
    let mut bad_off = sd.clone();
    bad_off[16..20].copy_from_slice(&(sd.len() as u32 - 4).to_le_bytes());
    for bad in [&sd[..10], &bad_rev[..], &bad_off[..], &[][..]] {
        assert_eq!(v.set_security(hello, bad), Err(VfsError::Invalid));
        assert_eq!(
            v.create_with_security(ROOT_INO, "never.txt", 0o644, CRED, bad)
                .err(),
            Some(VfsError::Invalid)
        );
    }
    assert_eq!(v.security(hello).unwrap(), before);
    assert_eq!(
        v.lookup(ROOT_INO, "never.txt").err(),
        Some(VfsError::NotFound)
    );

    v.set_security(hello, &sd).unwrap();
    v.set_security(resolve(&v, "streams.txt"), &sd).unwrap();
    v.set_security(resolve(&v, "empty.txt"), &acl_sd).unwrap();
    let (a, fh) = v
        .create_with_security(ROOT_INO, "new.txt", 0o644, CRED, &sd)
        .unwrap();
    v.write(a.ino, 0, b"made with a descriptor\n").unwrap();
    v.release(fh).unwrap();
    v.mkdir_with_security(ROOT_INO, "newdir", 0o755, CRED, &sd)
        .unwrap();
    assert_eq!(v.security(hello).unwrap().as_deref(), Some(&sd[..]));

    // Attributes: settable bits only, the directory bit from the kind.
    let mc = resolve(&v, "multi-chunk.bin");
    let a = v
        .set_attributes(mc, 0x1 | 0x2 | 0x10 | 0x400 | 0x4000)
        .unwrap();
    assert_eq!(a.attributes, 0x3);
    // A descriptor set and then replaced is not stored at commit.
    v.set_security(mc, &new_descriptor(0x1)).unwrap();
    v.set_security(mc, &acl_sd).unwrap();
    let dir = resolve(&v, "dir");
    assert_eq!(v.set_attributes(dir, 0x2).unwrap().attributes, 0x12);
    assert_eq!(v.set_attributes(dir, 0).unwrap().attributes, 0x10);
    assert_eq!(v.set_attributes(dir, 0x2004).unwrap().attributes, 0x2014);

    // Times: all of them, and some of them.
    let times = NtTimes {
        creation: Some(ft(1_000_000_000)),
        last_access: Some(ft(1_000_100_000)),
        last_write: Some(ft(1_000_200_000)),
        change: Some(ft(1_000_300_000)),
    };
    let a = v.set_times(hello, &times).unwrap();
    assert_eq!(a.crtime.0, 1_000_000_000);
    assert_eq!((a.atime.0, a.mtime.0), (1_000_100_000, 1_000_200_000));
    let sub = resolve(&v, "dir/sub/file.txt");
    let old = v.getattr(sub).unwrap();
    let a = v
        .set_times(
            sub,
            &NtTimes {
                creation: Some(ft(900_000_000)),
                ..NtTimes::default()
            },
        )
        .unwrap();
    assert_eq!(
        (a.crtime.0, a.mtime, a.atime),
        (900_000_000, old.mtime, old.atime)
    );

    // Reparse points: a junction on an empty directory shows as a symlink,
    // an opaque tag on a file stays a file; a non-empty directory refuses.
    let junction = common::reparse_junction("\\??\\C:\\dir\\sub", "C:\\dir\\sub")[8..].to_vec();
    let empty_dir = resolve(&v, "dir/emptydir");
    v.set_reparse(empty_dir, TAG_JUNCTION, &junction).unwrap();
    assert_eq!(v.getattr(empty_dir).unwrap().kind, FileKind::Symlink);
    assert_eq!(v.readlink(empty_dir).unwrap(), "/dir/sub");
    assert_eq!(
        v.set_reparse(dir, TAG_JUNCTION, &junction),
        Err(VfsError::NotEmpty)
    );
    assert_eq!(
        v.set_reparse(resolve(&v, "hello.txt"), TAG_OPAQUE, b"x"),
        Err(VfsError::NotSupported),
        "a file with several names"
    );
    let opaque = b"opaque reparse data kept as it is".to_vec();
    let empty = resolve(&v, "empty.txt");
    v.set_reparse(empty, TAG_OPAQUE, &opaque).unwrap();
    assert_eq!(v.getattr(empty).unwrap().kind, FileKind::Regular);
    assert_eq!(
        v.getxattr(empty, "system.ntfs_reparse_data").unwrap(),
        reparse_value(TAG_OPAQUE, &opaque)
    );
    let link = resolve(&v, "link-rel-file");
    v.delete_reparse(link).unwrap();
    assert_eq!(v.getattr(link).unwrap().kind, FileKind::Regular);
    assert_eq!(v.delete_reparse(link), Err(VfsError::NoAttr));

    commit(&v, &nw.wim);

    // One new table entry for the four users of `sd`; `acl.txt`'s reused.
    let (table, ids) = security_table(&nw.wim);
    assert_eq!(table.len(), base_table.len() + 1, "one entry added");
    assert_eq!(
        table[..base_table.len()],
        base_table[..],
        "old entries kept in place"
    );
    let new_id = base_table.len() as i32;
    assert_eq!(table[new_id as usize], sd);
    for p in ["hello.txt", "streams.txt", "new.txt", "newdir"] {
        assert_eq!(ids[p], new_id, "{p}");
    }
    assert_eq!(ids["empty.txt"], base_ids["acl.txt"]);
    assert_eq!(ids["acl.txt"], base_ids["acl.txt"]);
    assert_eq!(ids["dir/sub/file.txt"], base_ids["dir/sub/file.txt"]);

    let t = |x: Option<u64>| x.unwrap();
    let mut want = BTreeMap::new();
    want.insert(
        "hello.txt",
        Expect {
            security: Some(sd.clone()),
            times: Some([t(times.creation), t(times.last_write), t(times.last_access)]),
            ..Expect::default()
        },
    );
    want.insert(
        "new.txt",
        Expect {
            security: Some(sd.clone()),
            ..Expect::default()
        },
    );
    want.insert(
        "multi-chunk.bin",
        Expect {
            attributes: Some(0x3),
            ..Expect::default()
        },
    );
    want.insert(
        "dir",
        Expect {
            attributes: Some(0x2014),
            ..Expect::default()
        },
    );
    want.insert(
        "dir/emptydir",
        Expect {
            reparse: Some((TAG_JUNCTION, junction.clone())),
            ..Expect::default()
        },
    );
    want.insert(
        "empty.txt",
        Expect {
            security: Some(acl_sd.clone()),
            reparse: Some((TAG_OPAQUE, opaque.clone())),
            ..Expect::default()
        },
    );
    check_committed(&nw.wim, tmp.path(), &want);
    let d = common::wimlib_dir_detailed(&nw.wim);
    assert!(
        !d["/link-rel-file"].contains_key("Reparse Tag"),
        "the deleted reparse point: {:?}",
        d["/link-rel-file"]
    );

    // The mount carries on after the commit (as after a live commit): the
    // descriptors have their committed ids, a committed one is reused and
    // a further new one goes after them.
    {
        let frozen = v.freeze().unwrap();
        let w = Arc::new(Wim::open(&nw.wim, &[]).unwrap());
        v.after_commit(&frozen, w, 1).unwrap();
    }
    assert_eq!(v.security(hello).unwrap().as_deref(), Some(&sd[..]));
    let sd3 = new_descriptor(0x0012_0116);
    v.set_security(resolve(&v, "dir/sub/file.txt"), &sd3)
        .unwrap();
    v.set_security(resolve(&v, "empty.txt"), &sd).unwrap();
    commit(&v, &nw.wim);
    let (table2, ids2) = security_table(&nw.wim);
    assert_eq!(table2.len(), table.len() + 1, "one more entry");
    assert_eq!(table2[..table.len()], table[..]);
    assert_eq!(table2[table.len()], sd3);
    assert_eq!(ids2["dir/sub/file.txt"], table.len() as i32);
    for p in ["hello.txt", "empty.txt", "newdir"] {
        assert_eq!(ids2[p], new_id, "{p}");
    }
}

/// A read-write FUSE mount; `None` (skipped loudly) without FUSE or tools.
fn can_mount() -> bool {
    if !common::require(&["wimlib-imagex", "mkntfs", "ntfs-3g", "fusermount3"]) {
        return false;
    }
    if !common::fuse_available() {
        common::skip("no FUSE: the ntfs xattr tests need a real mount");
        return false;
    }
    true
}

/// A WIM made by wimlib from a plain directory (no security table).
fn wimlib_made(dir: &Path) -> PathBuf {
    let src = dir.join("plain-src");
    std::fs::create_dir_all(src.join("d/e")).unwrap();
    std::fs::write(src.join("f.txt"), b"plain file\n").unwrap();
    std::fs::write(src.join("g.txt"), b"another\n").unwrap();
    std::fs::write(src.join("d/h.txt"), b"in a dir\n").unwrap();
    let wim = dir.join("plain.wim");
    common::wimlib_capture(&src, &wim, &[]);
    wim
}

fn set(p: &Path, name: &str, v: &[u8]) -> i32 {
    common::lsetxattr(p, name, v)
}

/// Set every ntfs-3g xattr on the mount, read each back, refuse bad values
/// (EINVAL, nothing changed), commit; returns what the WIM must show.
fn set_through_fuse(mnt: &Path) -> BTreeMap<&'static str, Expect> {
    let f = mnt.join("f.txt");
    let g = mnt.join("g.txt");
    let get = |p: &Path, n: &str| common::lgetxattr(p, n).unwrap();
    let mut want = BTreeMap::new();

    // Attributes, LE and BE.
    assert_eq!(set(&f, "system.ntfs_attrib", &0x2027u32.to_le_bytes()), 0);
    assert_eq!(get(&f, "system.ntfs_attrib"), 0x2027u32.to_le_bytes());
    assert_eq!(get(&f, "system.ntfs_attrib_be"), 0x2027u32.to_be_bytes());
    assert_eq!(
        set(&g, "system.ntfs_attrib_be", &0x0001u32.to_be_bytes()),
        0
    );
    assert_eq!(get(&g, "system.ntfs_attrib"), 1u32.to_le_bytes());
    // Times: all four, then the creation time alone.
    let t = [
        ft(1_111_111_111),
        ft(1_222_222_222),
        ft(1_333_333_333),
        ft(1_444_444_444),
    ];
    let tv: Vec<u8> = t.iter().flat_map(|x| x.to_le_bytes()).collect();
    assert_eq!(set(&f, "system.ntfs_times", &tv), 0);
    let back = get(&f, "system.ntfs_times");
    assert_eq!(back[..24], tv[..24], "creation, write, access read back");
    let md = std::fs::symlink_metadata(&f).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((md.mtime(), md.atime()), (1_222_222_222, 1_333_333_333));
    let crt = ft(1_011_111_111);
    assert_eq!(set(&g, "system.ntfs_crtime_be", &crt.to_be_bytes()), 0);
    assert_eq!(get(&g, "system.ntfs_crtime"), crt.to_le_bytes());
    // A security descriptor, on two files (stored once).
    let sd = new_descriptor(0x0012_00a9);
    assert_eq!(set(&f, "system.ntfs_acl", &sd), 0);
    assert_eq!(set(&g, "system.ntfs_acl", &sd), 0);
    assert_eq!(get(&f, "system.ntfs_acl"), sd);
    // Reparse points: a junction on a new empty directory, a symlink on a
    // new file; both then show as symlinks.
    std::fs::create_dir(mnt.join("j")).unwrap();
    let junction = common::reparse_junction("\\??\\C:\\d", "C:\\d");
    assert_eq!(
        set(&mnt.join("j"), "system.ntfs_reparse_data", &junction),
        0
    );
    let sym = common::reparse_symlink("d\\h.txt", "d\\h.txt", true);
    std::fs::write(mnt.join("s"), b"").unwrap();
    assert_eq!(set(&mnt.join("s"), "system.ntfs_reparse_data", &sym), 0);
    // The kernel keeps the old file type of a cached name until its entry
    // expires (1 s on a read-write mount); the adapter cannot reach it from
    // a setxattr reply.
    std::thread::sleep(std::time::Duration::from_millis(1300));
    assert_eq!(
        std::fs::read_link(mnt.join("s")).unwrap(),
        PathBuf::from("d/h.txt")
    );
    assert_eq!(std::fs::read(mnt.join("s")).unwrap(), b"in a dir\n");
    assert!(std::fs::symlink_metadata(mnt.join("j"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(get(&mnt.join("j"), "system.ntfs_reparse_data"), junction);

    // Bad values: EINVAL, nothing changed.
    let h = mnt.join("d/h.txt");
    let before: Vec<_> = [
        "system.ntfs_attrib",
        "system.ntfs_times",
        "system.ntfs_crtime",
    ]
    .iter()
    .map(|n| get(&h, n))
    .collect();
    let mut bad_sd = sd.clone();
    bad_sd[4..8].copy_from_slice(&9999u32.to_le_bytes());
    let mut bad_rp = sym.clone();
    bad_rp[4] ^= 1;
    for (n, val) in [
        ("system.ntfs_attrib", &[1u8, 0, 0][..]),
        ("system.ntfs_attrib_be", &[0u8; 5][..]),
        ("system.ntfs_crtime", &[0u8; 7][..]),
        ("system.ntfs_times", &[0u8; 12][..]),
        ("system.ntfs_times", &[0u8; 40][..]),
        ("system.ntfs_acl", &bad_sd[..]),
        ("system.ntfs_acl", &sd[..sd.len() - 1]),
        ("system.ntfs_reparse_data", &bad_rp[..]),
        ("system.ntfs_reparse_data", &[0u8; 6][..]),
    ] {
        assert_eq!(set(&h, n, val), libc::EINVAL, "{n} = {}", hex(val));
    }
    let after: Vec<_> = [
        "system.ntfs_attrib",
        "system.ntfs_times",
        "system.ntfs_crtime",
    ]
    .iter()
    .map(|n| get(&h, n))
    .collect();
    assert_eq!(before, after);
    assert_eq!(
        common::lgetxattr(&h, "system.ntfs_reparse_data"),
        Err(libc::ENODATA)
    );
    // A non-empty directory cannot become a junction.
    assert_eq!(
        set(&mnt.join("d"), "system.ntfs_reparse_data", &junction),
        libc::ENOTEMPTY
    );

    want.insert(
        "f.txt",
        Expect {
            attributes: Some(0x2027),
            times: Some([t[0], t[1], t[2]]),
            security: Some(sd.clone()),
            reparse: None,
        },
    );
    want.insert(
        "g.txt",
        Expect {
            attributes: Some(0x1),
            security: Some(sd.clone()),
            ..Expect::default()
        },
    );
    want.insert(
        "j",
        Expect {
            reparse: Some((TAG_JUNCTION, junction[8..].to_vec())),
            ..Expect::default()
        },
    );
    want.insert(
        "s",
        Expect {
            reparse: Some((TAG_SYMLINK, sym[8..].to_vec())),
            ..Expect::default()
        },
    );
    want
}

/// The ntfs-3g xattrs on a real read-write mount of a wimlib-made WIM and
/// of one captured from NTFS, committed by `unmount --commit`.
#[test]
fn fuse_ntfs_xattrs_commit_and_oracles() {
    if !can_mount() {
        return;
    }
    let tmp = common::tempdir();
    let plain = wimlib_made(tmp.path());
    let mut wims = vec![("wimlib-made", plain)];
    match common::build_ntfs_wim(&tmp.path().join("ntfs"), &[]) {
        Some(nw) => {
            // Give it the same names the checks use.
            let w = tmp.path().join("ntfs-based.wim");
            std::fs::copy(&nw.wim, &w).unwrap();
            wims.push(("ntfs-sourced", w));
        }
        None => return,
    }
    for (what, wim) in wims {
        let work = tmp.path().join(what);
        std::fs::create_dir_all(&work).unwrap();
        let mnt = work.join("mnt");
        let (m, _) = RwMount::rw(&wim, &mnt, &[]);
        if what == "ntfs-sourced" {
            // The names `set_through_fuse` works on.
            std::fs::create_dir_all(mnt.join("d/e")).unwrap();
            std::fs::write(mnt.join("f.txt"), b"plain file\n").unwrap();
            std::fs::write(mnt.join("g.txt"), b"another\n").unwrap();
            std::fs::write(mnt.join("d/h.txt"), b"in a dir\n").unwrap();
        }
        let want = set_through_fuse(&mnt);
        m.unmount(&["--commit"]);
        let (table, ids) = security_table(&wim);
        let sd = want["f.txt"].security.clone().unwrap();
        assert_eq!(
            table.iter().filter(|x| **x == sd).count(),
            1,
            "{what}: stored once"
        );
        assert_eq!(ids["f.txt"], ids["g.txt"], "{what}");
        check_committed(&wim, &work, &want);
    }
}

/// Metadata set on a mount survives the daemon being killed (-9): the
/// next read-write mount resumes it from the journal, and commits it.
#[test]
fn ntfs_xattrs_survive_kill9() {
    if !can_mount() {
        return;
    }
    let tmp = common::tempdir();
    let wim = wimlib_made(tmp.path());
    let mnt = tmp.path().join("mnt");
    let (m, _) = RwMount::rw(&wim, &mnt, &[]);
    let want = set_through_fuse(&mnt);
    let names = [
        "system.ntfs_attrib",
        "system.ntfs_times",
        "system.ntfs_acl",
        "system.ntfs_reparse_data",
    ];
    let snapshot = |mnt: &Path| -> BTreeMap<String, Result<Vec<u8>, i32>> {
        let mut out = BTreeMap::new();
        for p in want.keys() {
            for n in names {
                out.insert(format!("{p} {n}"), common::lgetxattr(&mnt.join(p), n));
            }
        }
        out
    };
    let before = snapshot(&mnt);
    m.kill9();
    let (m, _) = RwMount::rw(&wim, &mnt, &[]);
    assert_eq!(snapshot(&mnt), before, "resumed after kill -9");
    m.unmount(&["--commit"]);
    check_committed(&wim, tmp.path(), &want);
}

fn sha1_hex(b: &[u8]) -> String {
    use sha1::Digest;
    format!("0x{}", hex(&sha1::Sha1::digest(b)))
}

/// Every named stream of a file through the offset interface, whole.
fn read_all_streams(v: &Vfs, ino: Ino) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for wimfs::vfs::StreamInfo { name, size } in v.streams(ino).unwrap() {
        let mut buf = vec![0u8; size as usize + 10];
        // In pieces that do not line up with the staging's blocks.
        let mut got = 0;
        while got < buf.len() {
            let end = (got + 40_000).min(buf.len());
            let n = v
                .read_stream(ino, &name, got as u64, &mut buf[got..end])
                .unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        assert_eq!(got as u64, size, "{name}: read length");
        out.insert(name, buf);
    }
    out
}

/// Named streams as real streams: offset writes past 64 KiB into streams
/// of the image (a blob as base), into one set whole as an xattr, and into
/// a new one; truncation, delete, enumerate; resumed from the staging as
/// written; committed, with wimlib's hashes of each stream as the oracle.
#[test]
fn named_streams_offset_io_resume_and_commit() {
    let tmp = common::tempdir();
    let Some(nw) = common::build_ntfs_wim(&tmp.path().join("src"), &[]) else {
        return;
    };
    let staging = tmp.path().join("staging");
    let v = open_rw(&nw.wim, &staging);
    let st = resolve(&v, "streams.txt");
    let mut want: BTreeMap<String, Vec<u8>> = nw
        .ads
        .iter()
        .filter(|(p, _, _)| p == "streams.txt")
        .map(|(_, n, d)| (n.clone(), d.clone()))
        .collect();
    assert_eq!(
        read_all_streams(&v, st),
        want,
        "the image's streams, read at offsets"
    );

    let mut rng = common::Rng::new(11);
    // Past the end of a 60 000-byte stream of the WIM: a hole, then data.
    let tail = rng.bytes(100_000);
    assert_eq!(v.write_stream(st, "big", 200_000, &tail).unwrap(), 100_000);
    let big = want.get_mut("big").unwrap();
    big.resize(200_000, 0);
    big.extend_from_slice(&tail);
    // Inside the small one.
    v.write_stream(st, "small", 6, b"DATA!").unwrap();
    want.get_mut("small").unwrap()[6..11].copy_from_slice(b"DATA!");
    // A stream set whole (inline), then written at an offset.
    v.setxattr(st, "user.tiny", b"abcdef", wimfs::vfs::XattrMode::Create)
        .unwrap();
    v.write_stream(st, "tiny", 3, b"XYZW").unwrap();
    want.insert("tiny".into(), b"abcXYZW".to_vec());
    // A new stream, written out of order in pieces.
    v.create_stream(st, "new").unwrap();
    assert_eq!(v.create_stream(st, "new"), Err(VfsError::Exists));
    let body = rng.bytes(150_000);
    for (a, b) in [(100_000, 150_000), (0, 70_000), (70_000, 100_000)] {
        v.write_stream(st, "new", a as u64, &body[a..b]).unwrap();
    }
    want.insert("new".into(), body);
    // Truncated, and deleted.
    v.set_stream_size(st, "big", 250_000).unwrap();
    want.get_mut("big").unwrap().truncate(250_000);
    v.create_stream(st, "gone").unwrap();
    v.write_stream(st, "gone", 0, b"soon gone").unwrap();
    v.delete_stream(st, "gone").unwrap();
    assert_eq!(v.write_stream(st, "gone", 0, b"x"), Err(VfsError::NoAttr));
    assert_eq!(
        v.write_stream(st, "missing", 0, b"x"),
        Err(VfsError::NoAttr)
    );
    let sizes: Vec<(String, u64)> = want
        .iter()
        .map(|(k, d)| (k.clone(), d.len() as u64))
        .collect();
    let mut listed: Vec<(String, u64)> = v
        .streams(st)
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.size))
        .collect();
    listed.sort();
    assert_eq!(listed, sizes);
    assert_eq!(read_all_streams(&v, st), want);
    // Whole as an xattr, a big stream is past the xattr limit.
    assert_eq!(v.getxattr(st, "user.big"), Err(VfsError::TooBig));

    // Resumed from the staging after a sync, as written.
    v.sync().unwrap();
    drop(v);
    let v = open_rw(&nw.wim, &staging);
    let st = resolve(&v, "streams.txt");
    assert_eq!(
        read_all_streams(&v, st),
        want,
        "after resuming from the staging"
    );

    commit(&v, &nw.wim);
    drop(v);
    let o = common::wimlib_verify(&nw.wim, &[]);
    assert!(o.ok(), "wimlib verify:\n{}", o.describe());
    let d = common::wimlib_dir_detailed(&nw.wim);
    let f = &d["/streams.txt"];
    for (name, data) in &want {
        assert_eq!(f[&format!("stream {name}: Hash")], sha1_hex(data), "{name}");
        assert_eq!(
            f[&format!("stream {name}: Uncompressed size")],
            format!("{} bytes", data.len()),
            "{name}"
        );
    }
    assert!(!f.contains_key("stream gone: Hash"));
}

/// `system.ntfs_*` may be set only by the file's owner or root (as
/// ntfs-3g allows): another user gets EPERM and nothing changes; the owner
/// (kept in the UNIX data of a `--unix-data` mount) may.
#[test]
fn system_xattrs_owner_or_root_only() {
    if !can_mount() || !common::require(&["setpriv", "setfattr"]) {
        return;
    }
    if !common::is_root() {
        common::skip("not root: cannot act as another user");
        return;
    }
    let tmp = common::tempdir();
    let wim = wimlib_made(tmp.path());
    let mnt = tmp.path().join("mnt");
    let (m, _) = RwMount::rw(&wim, &mnt, &["--allow-other", "--unix-data"]);
    let as_nobody = |name: &str, value: &str, file: &str| {
        common::run(
            Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .args(["setfattr", "-n", name, "-v", value])
                .arg(mnt.join(file)),
        )
    };
    let attrib = |file: &str| common::lgetxattr(&mnt.join(file), "system.ntfs_attrib").unwrap();
    let before = attrib("f.txt");
    let o = as_nobody("system.ntfs_attrib", "0x21000000", "f.txt");
    assert!(!o.ok(), "another user set system.ntfs_attrib");
    assert!(
        o.stderr_str().contains("Operation not permitted"),
        "{}",
        o.describe()
    );
    assert_eq!(attrib("f.txt"), before);
    // The owner may.
    std::os::unix::fs::chown(mnt.join("g.txt"), Some(65534), Some(65534)).unwrap();
    let o = as_nobody("system.ntfs_attrib", "0x21000000", "g.txt");
    assert!(o.ok(), "the owner: {}", o.describe());
    assert_eq!(attrib("g.txt"), 0x21u32.to_le_bytes());
    m.unmount(&["--discard"]);
}
