//! `wimfs mount` against oracles: the mounted tree must equal what
//! `wimlib-imagex apply` extracts from the same image (names, types, sizes,
//! contents, hard links and link counts, symlink targets, mtimes, xattrs),
//! for generated WIMs in every compression (solid too), an NTFS-sourced WIM
//! and the shared fixtures. Also: EROFS on every write, statfs, several
//! mounts of one WIM at once, `wimfs mounts`/`unmount`, clear errors, and
//! many threads reading random ranges with every byte checked.
//!
//! Every mount is held by a guard that unmounts (fusermount3 -u -z) when
//! dropped, so a failing assertion never leaves a mount behind. Without
//! /dev/fuse the tests are skipped with a banner (a failure on CI).
mod common;
#[path = "mount_support/mod.rs"]
mod mount_support;

use common::*;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Shared inputs
// ---------------------------------------------------------------------------

struct Source {
    dir: PathBuf,
    info: SourceInfo,
}

static SOURCE: Lazy<Source> = Lazy::new();

/// The generated source tree, plus user xattrs (kept by wimlib's
/// --unix-data) on a file and a directory.
fn source() -> &'static Source {
    SOURCE.get(|| {
        let dir = shared_dir("mount-src").join("src");
        std::fs::create_dir_all(&dir).unwrap();
        let info = make_source_tree(&dir);
        set_user_xattr(&dir.join("text.txt"), "user.comment", b"a linux xattr");
        set_user_xattr(&dir.join("text.txt"), "user.empty", b"");
        set_user_xattr(&dir.join("big"), "user.on-a-dir", &[0, 1, 2, 255]);
        Source { dir, info }
    })
}

static WIMS: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
static WIM_DIR: Lazy<PathBuf> = Lazy::new();

/// The source captured (with --unix-data) under `label`'s settings from
/// [`CAPTURE_VARIANTS`], once per test run.
fn captured(label: &str) -> PathBuf {
    let src = source();
    let dir = WIM_DIR.get(|| shared_dir("mount-wims"));
    let mut m = WIMS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = m.get(label) {
        return p.clone();
    }
    let extra = CAPTURE_VARIANTS
        .iter()
        .find(|(l, _)| *l == label)
        .map(|(_, e)| *e)
        .expect("known variant");
    let wim = dir.join(format!("{label}.wim"));
    let mut args: Vec<&str> = extra.to_vec();
    args.push("--unix-data");
    wimlib_capture(&src.dir, &wim, &args);
    m.insert(label.to_string(), wim.clone());
    wim
}

fn refs_for(fx: &Path, rel: &str) -> Vec<PathBuf> {
    if rel == "wimlib/Split.swm" {
        vec![fx.join("wimlib/Split2.swm")]
    } else {
        Vec::new()
    }
}

/// `wimlib-imagex apply WIM IMAGE DIR [--unix-data] [--ref=...]`.
fn wimlib_apply_with(
    wim: &Path,
    image: &str,
    dir: &Path,
    refs: &[PathBuf],
    unix_data: bool,
) -> Out {
    let mut c = std::process::Command::new("wimlib-imagex");
    c.arg("apply").arg(wim).arg(image).arg(dir);
    if unix_data {
        c.arg("--unix-data");
    }
    for r in refs {
        let mut a = std::ffi::OsString::from("--ref=");
        a.push(r);
        c.arg(a);
    }
    run(&mut c)
}

// ---------------------------------------------------------------------------
// Checks the shared comparator does not make
// ---------------------------------------------------------------------------

fn walk(root: &Path, rel: &str, out: &mut Vec<String>) {
    out.push(rel.to_string());
    let d = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let Ok(md) = std::fs::symlink_metadata(&d) else {
        return;
    };
    if md.is_dir() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                walk(
                    root,
                    &if rel.is_empty() {
                        n
                    } else {
                        format!("{rel}/{n}")
                    },
                    out,
                );
            }
        }
    }
}

/// Link counts (files and directories), and with `owners` also mode, uid
/// and gid, of every path in `want` against `got`.
fn stat_diffs(want: &Path, got: &Path, owners: bool) -> Vec<String> {
    let mut all = Vec::new();
    walk(want, "", &mut all);
    let mut d = Vec::new();
    for rel in all {
        let p = |r: &Path| {
            if rel.is_empty() {
                r.to_path_buf()
            } else {
                r.join(&rel)
            }
        };
        let (Ok(a), Ok(b)) = (
            std::fs::symlink_metadata(p(want)),
            std::fs::symlink_metadata(p(got)),
        ) else {
            continue; // reported by the comparator
        };
        if a.nlink() != b.nlink() {
            d.push(format!(
                "link count of /{rel}: wimlib {} mount {}",
                a.nlink(),
                b.nlink()
            ));
        }
        if owners && !a.file_type().is_symlink() {
            if a.mode() != b.mode() {
                d.push(format!(
                    "mode of /{rel}: wimlib {:o} mount {:o}",
                    a.mode(),
                    b.mode()
                ));
            }
            if (a.uid(), a.gid()) != (b.uid(), b.gid()) {
                d.push(format!(
                    "owner of /{rel}: wimlib {}:{} mount {}:{}",
                    a.uid(),
                    a.gid(),
                    b.uid(),
                    b.gid()
                ));
            }
        }
    }
    d
}

/// Mount `wim` image `image` and compare it with wimlib's extraction.
fn mount_like_wimlib(
    wim: &Path,
    image: &str,
    refs: &[PathBuf],
    unix_data: bool,
    opts: &CompareOpts,
) {
    let t = tempdir();
    let want = t.path().join("wimlib");
    let w = wimlib_apply_with(wim, image, &want, refs, unix_data);
    assert!(w.ok(), "wimlib-imagex apply failed:\n{}", w.describe());
    let mut extra: Vec<String> = Vec::new();
    for r in refs {
        extra.push("--ref".into());
        extra.push(r.to_string_lossy().into_owned());
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let m = Mount::ok(wim, Some(image), &t.path().join("mnt"), &extra);
    let mut d = compare_trees(&want, &m.dir, opts);
    d.extend(stat_diffs(&want, &m.dir, unix_data));
    if !d.is_empty() {
        panic!(
            "{} difference(s), wimlib apply vs mount:\n  {}",
            d.len(),
            d.join("\n  ")
        );
    }
}

// ---------------------------------------------------------------------------
// Generated WIMs
// ---------------------------------------------------------------------------

/// Every compression variant (XPRESS/LZX/LZMS at several chunk sizes, solid
/// LZMS and solid XPRESS, with an integrity table) mounts as wimlib applies
/// it, with --unix-data owners, modes and xattrs.
#[test]
fn generated_wims_mount_like_wimlib_apply() {
    if !fuse_available() || !require(&["wimlib-imagex"]) {
        return;
    }
    let opts = CompareOpts::default().labels("wimlib", "mount");
    check_all(
        CAPTURE_VARIANTS.iter().map(|(l, _)| *l),
        |l| l.to_string(),
        |label| mount_like_wimlib(&captured(label), "1", &[], true, &opts),
    );
}

/// The same images mounted without --unix-data fall back to the defaults
/// (and the options that set them).
#[test]
fn default_owner_and_modes_without_unix_data() {
    if !fuse_available() || !require(&["wimlib-imagex"]) {
        return;
    }
    let t = tempdir();
    let m = Mount::ok(
        &captured("none"),
        None,
        &t.path().join("mnt"),
        &[
            "--no-unix-data",
            "--uid",
            "1234",
            "--gid",
            "4321",
            "--dmode",
            "750",
            "--fmode",
            "0640",
        ],
    );
    let f = std::fs::symlink_metadata(m.dir.join("text.txt")).unwrap();
    assert_eq!((f.uid(), f.gid(), f.mode() & 0o7777), (1234, 4321, 0o640));
    let d = std::fs::symlink_metadata(m.dir.join("big")).unwrap();
    assert_eq!((d.uid(), d.gid(), d.mode() & 0o7777), (1234, 4321, 0o750));
    assert!(d.is_dir());
    let l = std::fs::symlink_metadata(m.dir.join("links/rel-file")).unwrap();
    assert!(l.file_type().is_symlink());
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// Every image of every fixture WIM: where wimlib applies it, the mount
/// shows the identical tree; where wimlib refuses (corrupt data, cycles),
/// the mount either fails cleanly or serves what it can without crashing.
#[test]
fn fixtures_mount_like_wimlib_apply() {
    if !fuse_available() {
        return;
    }
    let Some(fx) = fixtures() else { return };
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let mut cases = Vec::new();
    for rel in fixture_wims(&fx) {
        if rel == "wimlib/Split2.swm" {
            continue; // part 2 of Split.swm, used through --ref
        }
        let n = wimlib_image_names(&fx.join(&rel)).len();
        for i in 1..=n {
            cases.push((rel.clone(), i));
        }
    }
    assert!(
        cases.len() >= 40,
        "expected the whole fixture set, got {cases:?}"
    );
    check_all(
        cases,
        |(rel, i)| format!("{rel} image {i}"),
        |(rel, i)| {
            let wim = fx.join(rel);
            let refs = refs_for(&fx, rel);
            let image = i.to_string();
            let probe = tempdir();
            if !wimlib_apply_with(&wim, &image, &probe.path().join("x"), &refs, false).ok() {
                damaged_fixture_is_harmless(&wim, &image, &refs);
                return;
            }
            // wimlib restores old-format Linux xattrs only with --unix-data.
            let unix = rel.contains("linux_xattrs");
            let opts = CompareOpts::default().labels("wimlib", "mount");
            mount_like_wimlib(&wim, &image, &refs, unix, &opts);
        },
    );
}

/// A WIM wimlib cannot apply: `wimfs mount` fails with a clear message, or
/// mounts and answers every read (possibly with EIO) while staying alive.
fn damaged_fixture_is_harmless(wim: &Path, image: &str, refs: &[PathBuf]) {
    let t = tempdir();
    let mut extra = Vec::new();
    for r in refs {
        extra.push("--ref".to_string());
        extra.push(r.to_string_lossy().into_owned());
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    match Mount::new(wim, Some(image), &t.path().join("mnt"), &extra) {
        Err(o) => assert_clean_failure(&o, &format!("mount {}", wim.display())),
        Ok(m) => {
            let mut all = Vec::new();
            walk(&m.dir, "", &mut all);
            for rel in &all {
                let p = m.dir.join(rel);
                if p.symlink_metadata().is_ok_and(|md| md.is_file()) {
                    let _ = std::fs::read(&p);
                }
            }
            let pid = m.pid.expect("daemon listed");
            assert!(pid_alive(pid), "the daemon died serving a damaged WIM");
            assert!(std::fs::read_dir(&m.dir).is_ok(), "mount stopped answering");
        }
    }
}

// ---------------------------------------------------------------------------
// NTFS-sourced WIM
// ---------------------------------------------------------------------------

static NTFS: Lazy<Option<NtfsWim>> = Lazy::new();

#[test]
fn ntfs_sourced_wim_mounts_with_streams_links_and_windows_metadata() {
    if !fuse_available() {
        return;
    }
    let Some(n) = NTFS
        .get(|| build_ntfs_wim(&shared_dir("mount-ntfs"), &[]))
        .as_ref()
    else {
        return;
    };
    let t = tempdir();
    let want = t.path().join("wimlib");
    let w = wimlib_apply_with(&n.wim, "1", &want, &[], false);
    assert!(w.ok(), "{}", w.describe());
    let m = Mount::ok(&n.wim, Some("1"), &t.path().join("mnt"), &[]);
    let got = &m.dir;
    let mut problems = Vec::new();
    // wimlib drops named streams on Linux: compare everything else with it.
    let opts = CompareOpts {
        xattrs: false,
        ..CompareOpts::default().labels("wimlib", "mount")
    };
    problems.extend(compare_trees(&want, got, &opts));
    problems.extend(stat_diffs(&want, got, false));
    for (rel, data) in &n.files {
        match std::fs::read(got.join(rel)) {
            Ok(d) if &d == data => {}
            Ok(d) => problems.push(format!(
                "/{rel}: {} bytes, expected {}",
                d.len(),
                data.len()
            )),
            Err(e) => problems.push(format!("/{rel}: {e}")),
        }
    }
    // Named data streams as user.NAME xattrs, exactly these.
    let mut expect: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    for (rel, name, data) in &n.ads {
        expect
            .entry(rel.clone())
            .or_default()
            .insert(format!("user.{name}"), data.clone());
    }
    let mut all = Vec::new();
    walk(got, "", &mut all);
    for rel in &all {
        let have = user_xattrs(&got.join(rel));
        let want_x = expect.remove(rel).unwrap_or_default();
        if have != want_x {
            let f = |m: &BTreeMap<String, Vec<u8>>| {
                m.iter()
                    .map(|(k, v)| format!("{k}({} bytes)", v.len()))
                    .collect::<Vec<_>>()
            };
            problems.push(format!(
                "stream xattrs of /{rel}: expected {:?}, mount has {:?}",
                f(&want_x),
                f(&have)
            ));
        }
    }
    for rel in expect.keys() {
        problems.push(format!("streams: /{rel} missing from the mount"));
    }
    // Reparse points as symlinks, fixed up to the mount point.
    let root = got.canonicalize().unwrap();
    for (rel, target) in &n.symlinks {
        let want_t = target.replace("<ROOT>", root.to_str().unwrap());
        match std::fs::read_link(got.join(rel)) {
            Ok(t) if t == Path::new(&want_t) => {}
            Ok(t) => problems.push(format!("symlink /{rel}: -> {t:?}, expected {want_t:?}")),
            Err(e) => problems.push(format!("symlink /{rel}: not a symlink ({e})")),
        }
        match lgetxattr(&got.join(rel), "system.ntfs_reparse_data") {
            Ok(v)
                if v.len() > 8
                    && (v[..4] == 0xA000_000Cu32.to_le_bytes()
                        || v[..4] == 0xA000_0003u32.to_le_bytes()) => {}
            other => problems.push(format!("system.ntfs_reparse_data of /{rel}: {other:?}")),
        }
    }
    for (rel, (s, ns)) in &n.mtimes {
        let md = std::fs::symlink_metadata(got.join(rel)).unwrap();
        if (md.mtime(), md.mtime_nsec()) != (*s, *ns) {
            problems.push(format!(
                "mtime of /{rel}: {}.{:09}, expected {s}.{ns:09}",
                md.mtime(),
                md.mtime_nsec()
            ));
        }
    }
    // Windows metadata under ntfs-3g's names.
    for (rel, dos) in &n.short_names {
        match lgetxattr(&got.join(rel), "system.ntfs_dos_name") {
            Ok(v) if v == dos.as_bytes() => {}
            other => problems.push(format!(
                "system.ntfs_dos_name of /{rel}: {other:?}, expected {dos}"
            )),
        }
    }
    match lgetxattr(&got.join("acl.txt"), "system.ntfs_acl") {
        Ok(v) if v == custom_security_descriptor() => {}
        other => problems.push(format!("system.ntfs_acl of /acl.txt: {other:?}")),
    }
    match lgetxattr(&got.join("hello.txt"), "system.ntfs_attrib") {
        Ok(v) if v.len() == 4 => {}
        other => problems.push(format!("system.ntfs_attrib of /hello.txt: {other:?}")),
    }
    let names = llistxattr(&got.join("streams.txt"));
    for x in ["user.small", "user.big", "system.ntfs_attrib"] {
        if !names.iter().any(|n| n == x) {
            problems.push(format!("listxattr of /streams.txt lacks {x}: {names:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "NTFS-sourced WIM: {} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// Read-only, statfs, several mounts, listing, unmount
// ---------------------------------------------------------------------------

/// A two-image WIM (different trees), XPRESS.
fn two_image_wim(dir: &Path) -> PathBuf {
    let a = dir.join("a");
    let b = dir.join("b");
    std::fs::create_dir_all(a.join("sub")).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(a.join("only-in-a.txt"), b"image one\n").unwrap();
    std::fs::write(a.join("sub/f"), vec![b'a'; 100_000]).unwrap();
    std::fs::write(b.join("only-in-b.txt"), b"image two\n").unwrap();
    let wim = dir.join("two.wim");
    wimlib_capture(&a, &wim, &["--compress=XPRESS", "First"]);
    run_ok(
        std::process::Command::new("wimlib-imagex")
            .arg("append")
            .arg(&b)
            .arg(&wim)
            .arg("Second"),
    );
    wim
}

#[test]
fn read_only_statfs_and_several_mounts_of_one_wim() {
    if !fuse_available() || !require(&["wimlib-imagex"]) {
        return;
    }
    let t = tempdir();
    let wim = two_image_wim(t.path());
    let m1 = Mount::ok(&wim, Some("1"), &t.path().join("m1"), &[]);
    let m2 = Mount::ok(&wim, Some("Second"), &t.path().join("m2"), &[]);
    let m3 = Mount::ok(&wim, Some("1"), &t.path().join("m3"), &[]);
    assert_eq!(
        std::fs::read(m1.dir.join("only-in-a.txt")).unwrap(),
        b"image one\n"
    );
    assert_eq!(
        std::fs::read(m3.dir.join("sub/f")).unwrap(),
        vec![b'a'; 100_000]
    );
    assert_eq!(
        std::fs::read(m2.dir.join("only-in-b.txt")).unwrap(),
        b"image two\n"
    );
    assert!(!m2.dir.join("only-in-a.txt").exists());

    // `wimfs mounts` lists all three with WIM, image, mode and pid.
    let o = wimfs_ok(["mounts"]);
    let text = o.stdout_str();
    let canon = wim.canonicalize().unwrap();
    for (m, img) in [(&m1, "1 (First)"), (&m2, "2 (Second)"), (&m3, "1 (First)")] {
        let pid = m.pid.expect("daemon listed in mounts --json");
        let dir = m.dir.canonicalize().unwrap();
        let line = text
            .lines()
            .find(|l| l.ends_with(dir.to_str().unwrap()))
            .unwrap_or_else(|| panic!("{} not listed:\n{text}", dir.display()));
        for want in [canon.to_str().unwrap(), img, " ro ", &pid.to_string()] {
            assert!(line.contains(want), "listing line lacks {want:?}: {line}");
        }
    }
    assert_ne!(m1.pid, m3.pid, "each mount has its own daemon");

    // Every kind of write fails with EROFS.
    let d = &m1.dir;
    let erofs = |what: &str, r: std::io::Result<()>| match r {
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => {}
        other => panic!("{what}: expected EROFS, got {other:?}"),
    };
    erofs("create", std::fs::write(d.join("new"), b"x"));
    erofs("overwrite", std::fs::write(d.join("only-in-a.txt"), b"x"));
    erofs(
        "open for append",
        std::fs::OpenOptions::new()
            .append(true)
            .open(d.join("sub/f"))
            .map(|_| ()),
    );
    erofs("mkdir", std::fs::create_dir(d.join("newdir")));
    erofs("unlink", std::fs::remove_file(d.join("only-in-a.txt")));
    erofs("rmdir", std::fs::remove_dir(d.join("sub")));
    erofs(
        "rename",
        std::fs::rename(d.join("only-in-a.txt"), d.join("renamed")),
    );
    erofs("symlink", std::os::unix::fs::symlink("x", d.join("ln")));
    erofs(
        "hard link",
        std::fs::hard_link(d.join("only-in-a.txt"), d.join("hl")),
    );
    erofs(
        "chmod",
        std::fs::set_permissions(
            d.join("only-in-a.txt"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        ),
    );
    erofs(
        "truncate",
        std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("sub/f"))
            .and_then(|f| f.set_len(0)),
    );
    assert_eq!(
        lsetxattr(&d.join("only-in-a.txt"), "user.x", b"1"),
        libc::EROFS,
        "setxattr"
    );
    assert_eq!(
        std::fs::read(d.join("only-in-a.txt")).unwrap(),
        b"image one\n",
        "nothing changed"
    );

    // statfs answers: read-only, 4 KiB blocks, the WIM's size, the inodes.
    let s = statvfs(d);
    assert!(s.f_flag & libc::ST_RDONLY != 0, "ST_RDONLY not set");
    assert_eq!(s.f_bsize, 4096);
    assert_eq!(s.f_namemax, 255);
    assert_eq!(s.f_bfree, 0);
    let wim_len = std::fs::metadata(&wim).unwrap().len();
    assert_eq!(s.f_blocks * s.f_frsize, wim_len.div_ceil(4096) * 4096);
    assert!(s.f_files >= 4, "f_files {}", s.f_files);

    // Unmount one: gone from the listing, daemon exited, others unaffected.
    let pid2 = m2.pid.unwrap();
    let dir2 = m2.dir.clone();
    let o = m2.unmount();
    assert!(o.ok(), "wimfs unmount: {}", o.describe());
    assert!(!is_mounted(&dir2));
    assert!(
        !pid_alive(pid2),
        "daemon {pid2} still running after unmount"
    );
    assert!(!wimfs_ok(["mounts"])
        .stdout_str()
        .contains(dir2.to_str().unwrap()));
    assert_eq!(
        std::fs::read(m3.dir.join("only-in-a.txt")).unwrap(),
        b"image one\n"
    );
    drop(m1);
    drop(m3);
}

/// The mistakes users make get one clear line and leave nothing behind.
#[test]
fn mount_errors_are_clear() {
    if !fuse_available() || !require(&["wimlib-imagex"]) {
        return;
    }
    let t = tempdir();
    let wim = captured("none");
    // Each failure must give its own reason and name what it is about:
    // every listed piece must appear (case-insensitive).
    let expect_fail = |args: &[&OsStr], words: &[&str], what: &str| {
        let o = wimfs(args);
        assert_clean_failure(&o, what);
        let all = o.stderr_str().to_lowercase();
        let missing: Vec<&&str> = words
            .iter()
            .filter(|w| !all.contains(&w.to_lowercase()))
            .collect();
        assert!(
            missing.is_empty(),
            "{what}: {missing:?} missing from the error:\n{}",
            o.describe()
        );
    };
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let missing = t.path().join("no-such-dir");
    expect_fail(
        &[OsStr::new("mount"), wim.as_os_str(), missing.as_os_str()],
        &[&format!("mount point {} does not exist", s(&missing))],
        "missing mount point",
    );
    let file = t.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    expect_fail(
        &[OsStr::new("mount"), wim.as_os_str(), file.as_os_str()],
        &[&format!("mount point {} is not a directory", s(&file))],
        "file as mount point",
    );
    let bad = t.path().join("bad.wim");
    std::fs::write(&bad, vec![0x5a; 10_000]).unwrap();
    let mnt = t.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    // The reason (no "MSWIM" magic) and the file, not just any word.
    expect_fail(
        &[OsStr::new("mount"), bad.as_os_str(), mnt.as_os_str()],
        &[&s(&bad), "not a WIM file: bad magic"],
        "not a WIM",
    );
    assert!(!is_mounted(&mnt), "a failed mount left a mount behind");
    expect_fail(
        &[
            OsStr::new("mount"),
            wim.as_os_str(),
            OsStr::new("7"),
            mnt.as_os_str(),
        ],
        &["no such image: 7", "has 1 image"],
        "no such image",
    );
    expect_fail(
        &[
            OsStr::new("mount"),
            wim.as_os_str(),
            mnt.as_os_str(),
            OsStr::new("--staging-dir"),
            t.path().as_os_str(),
        ],
        &["required arguments were not provided", "--rw"],
        "--staging-dir without --rw",
    );
    expect_fail(
        &[OsStr::new("unmount"), mnt.as_os_str()],
        &[&format!("{} is not mounted", s(&mnt))],
        "unmount of a plain dir",
    );
    // Busy: something is already mounted there (and by whom).
    let m = Mount::ok(&wim, None, &mnt, &[]);
    expect_fail(
        &[OsStr::new("mount"), wim.as_os_str(), mnt.as_os_str()],
        &[
            &format!("mount point {} is busy", s(&mnt)),
            "already mounted there",
            &format!("image 1 of {}", s(&wim)),
        ],
        "mount point in use",
    );
    assert!(
        std::fs::read(m.dir.join("text.txt")).is_ok(),
        "the first mount still works"
    );
    drop(m);
    assert!(!is_mounted(&mnt));
}

// ---------------------------------------------------------------------------
// Stress
// ---------------------------------------------------------------------------

/// Many threads read random ranges of random files through O_DIRECT (so
/// every read reaches the daemon) with a tiny chunk cache (so chunks are
/// decoded again and again, concurrently); every byte is checked.
#[test]
fn stress_concurrent_random_reads() {
    if !fuse_available() || !require(&["wimlib-imagex"]) {
        return;
    }
    let src = source();
    let files: Vec<(&String, &Vec<u8>)> = src
        .info
        .files
        .iter()
        .filter(|(_, d)| !d.is_empty())
        .collect();
    for label in ["xpress-4k", "solid-1m", "lzx"] {
        let t = tempdir();
        let m = Mount::ok(
            &captured(label),
            None,
            &t.path().join("mnt"),
            &["--cache-size", "2"],
        );
        let deadline = Instant::now() + Duration::from_millis(2500);
        let reads = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for th in 0..16u64 {
                let (m, files, reads) = (&m, &files, &reads);
                s.spawn(move || {
                    let mut rng = Rng::new(0xC0FFEE + th);
                    let mut buf = vec![0u8; 1 << 18];
                    while Instant::now() < deadline {
                        let (rel, data) = files[rng.below(files.len() as u64) as usize];
                        let f = DirectFile::open(&m.dir.join(rel))
                            .unwrap_or_else(|e| panic!("{label} open /{rel}: {e}"));
                        for _ in 0..8 {
                            let off = rng.below(data.len() as u64 + 100);
                            let len = 1 + rng.below(buf.len() as u64) as usize;
                            let n = f
                                .pread(&mut buf[..len], off)
                                .unwrap_or_else(|e| panic!("{label} read /{rel}: {e}"));
                            let want = data
                                .get(off as usize..)
                                .map_or(&[][..], |d| &d[..d.len().min(len)]);
                            assert_eq!(n, want.len(), "{label} /{rel} @{off}+{len}: short read");
                            if buf[..n] != *want {
                                let i = buf[..n]
                                    .iter()
                                    .zip(want)
                                    .position(|(a, b)| a != b)
                                    .unwrap_or(0);
                                panic!(
                                    "{label} /{rel} @{off}+{len}: wrong byte at {}",
                                    off + i as u64
                                );
                            }
                            reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let n = reads.into_inner();
        eprintln!("stress {label}: {n} random reads checked");
        assert!(n > 100, "{label}: only {n} reads in the time given");
        assert!(m.pid.is_some_and(pid_alive), "{label}: daemon died");
    }
}

// ---------------------------------------------------------------------------
// What the CLI writes, read by 7-Zip
// ---------------------------------------------------------------------------

/// `wimfs unmount DIR EXTRA...` of a read-write mount; the guard is
/// disarmed only when it succeeded.
fn unmount_rw(mut m: Mount, extra: &[&str]) {
    let mut args: Vec<&OsStr> = vec![OsStr::new("unmount"), m.dir.as_os_str()];
    args.extend(extra.iter().map(OsStr::new));
    let o = wimfs(&args);
    assert!(o.ok(), "wimfs unmount {extra:?}:\n{}", o.describe());
    m.pid = None;
    m.dir = PathBuf::new();
}

/// Every WIM the CLI writes (`unmount --commit` of a read-write mount,
/// `--commit --new-image`, `optimize`, `export` into each compression and
/// into an existing WIM) is read by 7-Zip, a reader independent of wimfs
/// and wimlib: `7zz t` is clean and each image lists exactly the expected
/// names, file sizes, directories (empty ones too) and symlinks, derived
/// from the source tree plus the changes made (see `SevenZipImage`).
#[test]
fn cli_written_wims_read_by_7zip() {
    if !fuse_available() || !require(&["wimlib-imagex", "7zz"]) {
        return;
    }
    let base = SevenZipImage::of_tree(&source().dir);
    for label in ["none", "lzx", "solid"] {
        let t = tempdir();
        let wim = t.path().join("w.wim");
        std::fs::copy(captured(label), &wim).unwrap();
        // wimlib's own capture first: 7-Zip sees the source tree.
        assert_sevenzip_image(&wim, 1, &base);

        let mnt = t.path().join("mnt");
        let m = Mount::ok(&wim, None, &mnt, &["--rw"]);
        let mut want = base.clone();
        std::fs::write(mnt.join("text.txt"), b"replaced\n").unwrap();
        want.files.insert("text.txt".into(), 9);
        std::fs::remove_file(mnt.join("random.bin")).unwrap();
        want.files.remove("random.bin");
        std::fs::remove_file(mnt.join("links/h2")).unwrap();
        want.files.remove("links/h2");
        std::fs::create_dir_all(mnt.join("new-dir/empty")).unwrap();
        want.dirs.insert("new-dir".into());
        want.dirs.insert("new-dir/empty".into());
        let added: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(mnt.join("new-dir/added.bin"), &added).unwrap();
        want.files
            .insert("new-dir/added.bin".into(), added.len() as u64);
        std::os::unix::fs::symlink("../text.txt", mnt.join("new-dir/link")).unwrap();
        want.links.insert("new-dir/link".into());
        unmount_rw(m, &["--commit"]);
        assert_sevenzip_image(&wim, 1, &want);
        let v = wimlib_verify(&wim, &[]);
        assert!(
            v.ok(),
            "{label}: wimlib verify after commit:\n{}",
            v.describe()
        );

        // The changed tree plus one file, committed as a second image.
        let m = Mount::ok(&wim, Some("1"), &mnt, &["--rw"]);
        std::fs::write(mnt.join("second-only.txt"), b"image two\n").unwrap();
        let mut want2 = want.clone();
        want2.files.insert("second-only.txt".into(), 10);
        unmount_rw(m, &["--commit", "--new-image"]);
        let check_both = |w: &Path, what: &str| {
            let imgs = sevenzip_images(w).expect("7zz present");
            assert_eq!(imgs.len(), 2, "{label} {what}: 7zz image count");
            for (i, (g, e)) in imgs.iter().zip([&want, &want2]).enumerate() {
                let d = g.diff(e);
                assert!(
                    d.is_empty(),
                    "{label} {what}: image {}:\n  {}",
                    i + 1,
                    d.join("\n  ")
                );
            }
        };
        check_both(&wim, "after --new-image");

        let o = wimfs([Path::new("optimize"), &wim]);
        assert!(o.ok(), "{label}: optimize:\n{}", o.describe());
        check_both(&wim, "after optimize");

        if label == "solid" {
            for c in ["none", "xpress", "lzx", "lzms"] {
                let dst = t.path().join(format!("e-{c}.wim"));
                let o = wimfs([
                    Path::new("export"),
                    &wim,
                    Path::new("2"),
                    &dst,
                    Path::new("--compress"),
                    Path::new(c),
                ]);
                assert!(o.ok(), "export --compress {c}:\n{}", o.describe());
                assert_sevenzip_image(&dst, 1, &want2);
            }
            // Into an existing WIM as its second image.
            let dst = t.path().join("e-lzx.wim");
            let o = wimfs([
                Path::new("export"),
                &wim,
                Path::new("1"),
                &dst,
                Path::new("--name"),
                Path::new("appended"),
            ]);
            assert!(o.ok(), "export into an existing WIM:\n{}", o.describe());
            let imgs = sevenzip_images(&dst).expect("7zz present");
            assert_eq!(
                imgs.len(),
                2,
                "export into an existing WIM: 7zz image count"
            );
            for (i, (g, e)) in imgs.iter().zip([&want2, &want]).enumerate() {
                let d = g.diff(e);
                assert!(
                    d.is_empty(),
                    "exported image {}:\n  {}",
                    i + 1,
                    d.join("\n  ")
                );
            }
        }
    }
}
