//! Issue 8, items 11 and 17, end to end with real FUSE mounts and
//! `wimlib-imagex` as the oracle:
//!
//! - names Windows cannot create are refused in a read-write mount (EINVAL,
//!   EEXIST for a case collision; the daemon log names the rule), accepted
//!   and committed with `--posix-names`, and reported (as warnings, exit 0)
//!   by `wimfs verify` when a WIM already holds them;
//! - FIFOs, character and block devices and sockets stored in the UNIX-data
//!   tag (as `wimlib-imagex capture --unix-data` stores them) come out as
//!   what they are from `wimfs apply --unix-data` and in mounts, and `mknod`
//!   in a `--unix-data` read-write mount stores them so that `wimlib-imagex
//!   apply --unix-data` recreates them.
mod common;
#[path = "mount_support/mod.rs"]
mod mount_support;

use common::*;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Names Windows cannot create (each a single path component).
const BAD: &[&str] = &[
    "a:b",
    "CON",
    "con",
    "aux.txt",
    "NUL .txt",
    "com1",
    "LPT9.log",
    "trailing.",
    "trailing ",
    "back\\slash",
    "less<",
    "more>",
    "pipe|",
    "what?",
    "star*",
    "quote\"",
    "ctl\u{1}x",
    "tab\tx",
];

fn prerequisites() -> bool {
    if !fuse_available() {
        return false;
    }
    if !require(&["wimlib-imagex", "fusermount3"]) {
        skip("wimlib-imagex or fusermount3 missing");
        return false;
    }
    true
}

/// A WIM of a small tree: `x` (a file), `Readme`, `d/` (a directory).
fn small_wim(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("x"), b"x data").unwrap();
    fs::write(src.join("Readme"), b"read me").unwrap();
    let wim = dir.join("t.wim");
    wimlib_capture(&src, &wim, &[]);
    wim
}

/// `wimfs unmount --commit DIR`, which must succeed; the guard is then
/// disarmed.
fn unmount_commit(m: Mount) -> Out {
    unmount_rw(m, "--commit")
}

/// `wimfs unmount FLAG DIR` of a read-write mount (`--commit` or
/// `--discard`), which must succeed, and its daemon gone (with the WIM's
/// lock).
fn unmount_rw(mut m: Mount, flag: &str) -> Out {
    let o = wimfs([OsString::from("unmount"), flag.into(), m.dir.clone().into()]);
    assert!(o.ok(), "unmount {flag} failed:\n{}", o.describe());
    if let Some(pid) = m.pid {
        let t = std::time::Instant::now();
        while pid_alive(pid) && t.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    m.dir = PathBuf::new();
    m.pid = None;
    o
}

/// The daemon's log so far (its stderr, wherever the log file lives).
fn daemon_log(m: &Mount) -> String {
    let pid = m.pid.expect("daemon pid");
    fs::read(format!("/proc/{pid}/fd/2"))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn errno_of(r: std::io::Result<impl Sized>) -> Option<i32> {
    match r {
        Ok(_) => None,
        Err(e) => Some(e.raw_os_error().unwrap_or(-1)),
    }
}

fn create(p: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)
}

/// Names listed by `wimlib-imagex dir` at the root of image 1.
fn wim_root_names(wim: &Path) -> Vec<String> {
    wimlib_dir(wim, "1", &[], None)
        .into_iter()
        .filter_map(|l| l.strip_prefix('/').map(str::to_string))
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .collect()
}

#[test]
fn rw_mount_refuses_names_windows_cannot_use() {
    if !prerequisites() {
        return;
    }
    let tmp = tempdir();
    let wim = small_wim(tmp.path());
    let mnt = tmp.path().join("m");
    let m = Mount::ok(&wim, None, &mnt, &["--rw"]);
    for n in BAD {
        let p = mnt.join(n);
        assert_eq!(errno_of(create(&p)), Some(libc::EINVAL), "create {n:?}");
        assert_eq!(
            errno_of(fs::create_dir(&p)),
            Some(libc::EINVAL),
            "mkdir {n:?}"
        );
        assert_eq!(
            errno_of(std::os::unix::fs::symlink("x", &p)),
            Some(libc::EINVAL),
            "symlink {n:?}"
        );
        assert_eq!(
            errno_of(fs::hard_link(mnt.join("x"), &p)),
            Some(libc::EINVAL),
            "link {n:?}"
        );
        assert_eq!(
            errno_of(fs::rename(mnt.join("x"), &p)),
            Some(libc::EINVAL),
            "rename to {n:?}"
        );
        assert!(fs::symlink_metadata(&p).is_err(), "{n:?} exists");
    }
    // Also in a subdirectory, and with the shell's own tools.
    let o = run(&mut cmd("touch", [mnt.join("d/aux.c")]));
    assert!(!o.ok(), "touch d/aux.c succeeded");
    let o = run(&mut cmd("mv", [mnt.join("x"), mnt.join("NUL")]));
    assert!(!o.ok(), "mv x NUL succeeded");
    // Case: a second name that differs only in case is EEXIST, in every
    // create path, also for a name new in this mount.
    assert_eq!(errno_of(create(&mnt.join("README"))), Some(libc::EEXIST));
    assert_eq!(
        errno_of(fs::create_dir(mnt.join("rEADME"))),
        Some(libc::EEXIST)
    );
    assert_eq!(
        errno_of(fs::rename(mnt.join("x"), mnt.join("readme"))),
        Some(libc::EEXIST)
    );
    assert_eq!(
        errno_of(fs::hard_link(mnt.join("x"), mnt.join("X"))),
        Some(libc::EEXIST)
    );
    create(&mnt.join("new")).unwrap();
    let o = run(&mut cmd("touch", [mnt.join("NEW")]));
    assert!(!o.ok(), "touch NEW beside new succeeded");
    assert_eq!(
        errno_of(fs::create_dir(mnt.join("D"))),
        Some(libc::EEXIST),
        "mkdir D beside d"
    );
    // ... but non-ASCII case is folded too, and ß is not SS (as on NTFS).
    create(&mnt.join("Straße")).unwrap();
    assert_eq!(errno_of(create(&mnt.join("STRAßE"))), Some(libc::EEXIST));
    create(&mnt.join("STRASSE")).unwrap();
    // A change of case only, a rename onto the same name and a rename that
    // replaces a name are fine.
    fs::rename(mnt.join("Readme"), mnt.join("README")).unwrap();
    fs::rename(mnt.join("new"), mnt.join("new")).unwrap();
    fs::write(mnt.join("y"), b"y").unwrap();
    fs::rename(mnt.join("y"), mnt.join("new")).unwrap();
    // Once a name is gone, its case twin may be created.
    fs::remove_file(mnt.join("new")).unwrap();
    create(&mnt.join("NEW")).unwrap();
    // Named streams: reserved characters and case twins refused.
    create(&mnt.join("s")).unwrap();
    assert_eq!(lsetxattr(&mnt.join("s"), "user.Foo", b"1"), 0);
    assert_eq!(lsetxattr(&mnt.join("s"), "user.foo", b"2"), libc::EEXIST);
    assert_eq!(lsetxattr(&mnt.join("s"), "user.a<b", b"2"), libc::EINVAL);
    assert_eq!(lsetxattr(&mnt.join("s"), "user.Foo", b"3"), 0, "replace");
    // The daemon log names the name and the rule.
    let log = daemon_log(&m);
    for want in [
        "\"a:b\": it contains ':'",
        "\"CON\": it is the DOS device name CON",
        "\"aux.txt\": it is the DOS device name AUX",
        "\"trailing.\": it ends in a dot",
        "\"trailing \": it ends in a space",
        "\"back\\\\slash\": it contains '\\'",
        "\"ctl\\u{1}x\": it contains the control character U+0001",
        "/d/\"aux.c\"",
        "\"README\": it differs only in case from \"Readme\"",
        "\"a<b\"",
        "--posix-names",
    ] {
        assert!(log.contains(want), "log lacks {want:?}:\n{log}");
    }
    unmount_commit(m);
    let mut names = wim_root_names(&wim);
    names.sort();
    assert_eq!(
        names,
        ["NEW", "README", "STRASSE", "Straße", "d", "s", "x"],
        "committed root"
    );
    assert!(wimlib_verify(&wim, &[]).ok());
}

#[test]
fn posix_names_mount_accepts_and_commits_them() {
    if !prerequisites() {
        return;
    }
    let tmp = tempdir();
    let wim = small_wim(tmp.path());
    let mnt = tmp.path().join("m");
    // Only for read-write mounts.
    let o = wimfs([
        OsString::from("mount"),
        wim.clone().into(),
        mnt.clone().into(),
        "--posix-names".into(),
    ]);
    assert!(!o.ok(), "--posix-names accepted without --rw");
    let m = Mount::ok(&wim, None, &mnt, &["--rw", "--posix-names"]);
    for n in BAD.iter().filter(|n| !n.contains('\\')) {
        create(&mnt.join(n)).unwrap_or_else(|e| panic!("create {n:?}: {e}"));
    }
    // A backslash by rename, a case twin by mkdir.
    fs::rename(mnt.join("x"), mnt.join("back\\slash")).unwrap();
    fs::create_dir(mnt.join("README")).unwrap();
    assert_eq!(lsetxattr(&mnt.join("README"), "user.Foo", b"1"), 0);
    assert_eq!(lsetxattr(&mnt.join("README"), "user.foo", b"2"), 0);
    unmount_commit(m);
    let names = wim_root_names(&wim);
    for n in BAD.iter().chain(&["README", "Readme"]) {
        assert!(
            names.iter().any(|x| x == n),
            "{n:?} not committed: {names:?}"
        );
    }
    assert!(wimlib_verify(&wim, &[]).ok());
    // And verify warns about each of them, exit 0.
    let o = wimfs([OsString::from("verify"), wim.clone().into()]);
    assert!(o.ok(), "verify failed:\n{}", o.describe());
    let err = o.stderr_str();
    for n in BAD
        .iter()
        .filter(|n| !n.contains('\u{1}') && !n.contains('\t'))
    {
        let want = format!("{:?}: a name Windows cannot create", format!("/{n}"));
        assert!(err.contains(&want), "no warning {want:?}:\n{err}");
    }
    assert!(err.contains("\"/ctl\\u{1}x\": a name Windows cannot create: it contains the control character U+0001"), "{err}");
    assert!(
        err.contains(
            "\"/README:foo\": a name Windows cannot create: it differs only in case from \"Foo\""
        ) || err.contains(
            "\"/README:Foo\": a name Windows cannot create: it differs only in case from \"foo\""
        ),
        "{err}"
    );
}

#[test]
fn verify_warns_about_names_windows_cannot_use() {
    if !require(&["wimlib-imagex"]) {
        skip("wimlib-imagex missing");
        return;
    }
    let tmp = tempdir();
    // wimlib captures such names from a Linux directory without a word.
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    for n in [
        "a:b",
        "CON",
        "aux.txt",
        "trailing.",
        "trailing ",
        "back\\slash",
        "Readme",
        "README",
        "fine",
    ] {
        fs::write(src.join(n), n).unwrap();
    }
    fs::write(src.join("sub/q?"), b"").unwrap();
    fs::create_dir(src.join("sub/Dir")).unwrap();
    fs::create_dir(src.join("sub/dIR")).unwrap();
    let wim = tmp.path().join("bad.wim");
    wimlib_capture(&src, &wim, &[]);
    let o = wimfs([OsString::from("verify"), wim.clone().into()]);
    assert!(o.ok(), "verify must only warn:\n{}", o.describe());
    assert!(o.stdout_str().contains("OK"), "{}", o.describe());
    let err = o.stderr_str();
    for (path, rule) in [
        ("/a:b", "it contains ':', a character Windows reserves"),
        ("/CON", "it is the DOS device name CON on Windows"),
        ("/aux.txt", "it is the DOS device name AUX on Windows"),
        ("/trailing.", "it ends in a dot"),
        ("/trailing ", "it ends in a space"),
        ("/back\\slash", "it contains '\\'"),
        ("/sub/q?", "it contains '?'"),
        ("/Readme", "it differs only in case from \"README\""),
        ("/sub/dIR", "it differs only in case from \"Dir\""),
    ] {
        let want = format!("image 1: {path:?}: a name Windows cannot create: {rule}");
        assert!(err.contains(&want), "no warning {want:?}:\n{err}");
    }
    assert!(!err.contains("/fine"), "{err}");
    // A clean image: not a word about names.
    let clean = tmp.path().join("clean.wim");
    fs::remove_dir_all(&src).unwrap();
    fs::create_dir_all(src.join("Windows")).unwrap();
    fs::write(src.join("Windows/notepad.exe"), b"MZ").unwrap();
    wimlib_capture(&src, &clean, &[]);
    let o = wimfs([OsString::from("verify"), clean.into()]);
    assert!(o.ok(), "{}", o.describe());
    assert!(
        !o.stderr_str().contains("Windows cannot"),
        "{}",
        o.describe()
    );
}

// ----- item 17: FIFOs, devices, sockets ------------------------------------

/// Type letter and rdev of a path (`p` fifo, `c`/`b` devices, `s` socket,
/// `f` regular, `d` directory).
fn kind(p: &Path) -> (char, u64, u32) {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let ft = m.file_type();
    let c = if ft.is_fifo() {
        'p'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else if ft.is_socket() {
        's'
    } else if ft.is_dir() {
        'd'
    } else if ft.is_file() {
        'f'
    } else {
        '?'
    };
    (c, m.rdev(), m.mode() & 0o7777)
}

/// A tree holding every kind of special file (devices need root).
fn special_tree(src: &Path) {
    fs::create_dir_all(src).unwrap();
    fs::write(src.join("file"), b"data").unwrap();
    run_ok(&mut cmd("mkfifo", [src.join("fifo")]));
    let mknod = |name: &str, t: &str, major: &str, minor: &str| {
        let mut c = std::process::Command::new("mknod");
        c.arg(src.join(name)).args([t, major, minor]);
        run_ok(&mut c);
    };
    mknod("null", "c", "1", "3");
    mknod("loop", "b", "7", "200");
    // Beyond 8 bits of minor and 8 of major: the 32-bit rdev layout.
    mknod("big", "c", "300", "70000");
    let l = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    drop(l);
    fs::set_permissions(
        src.join("fifo"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
}

const SPECIALS: &[&str] = &["fifo", "null", "loop", "big", "sock", "file"];

fn special_prereqs() -> bool {
    if !is_root() {
        skip("not root: cannot mknod devices");
        return false;
    }
    if !require(&["wimlib-imagex", "mkfifo", "mknod"]) {
        skip("wimlib-imagex, mkfifo or mknod missing");
        return false;
    }
    true
}

fn assert_same_kinds(want: &Path, got: &Path, names: &[&str], what: &str) {
    for n in names {
        assert_eq!(kind(&got.join(n)), kind(&want.join(n)), "{what}: {n}");
    }
}

#[test]
fn apply_unix_data_recreates_special_files() {
    if !special_prereqs() {
        return;
    }
    let tmp = tempdir();
    let src = tmp.path().join("src");
    special_tree(&src);
    let wim = tmp.path().join("s.wim");
    wimlib_capture(&src, &wim, &["--unix-data"]);
    let out = tmp.path().join("out");
    let o = wimfs([
        OsString::from("apply"),
        wim.clone().into(),
        out.clone().into(),
        "--unix-data".into(),
    ]);
    assert!(o.ok(), "{}", o.describe());
    assert_same_kinds(&src, &out, SPECIALS, "wimfs apply --unix-data");
    // The same as wimlib's own apply.
    let wl = tmp.path().join("wl");
    let mut c = cmd(
        "wimlib-imagex",
        [
            OsString::from("apply"),
            wim.clone().into(),
            "1".into(),
            wl.clone().into(),
            "--unix-data".into(),
        ],
    );
    run_ok(&mut c);
    assert_same_kinds(&wl, &out, SPECIALS, "against wimlib-imagex apply");
    // Without --unix-data: empty regular files, as before.
    let plain = tmp.path().join("plain");
    let o = wimfs([OsString::from("apply"), wim.into(), plain.clone().into()]);
    assert!(o.ok(), "{}", o.describe());
    for n in ["fifo", "null", "loop", "big", "sock"] {
        assert_eq!(kind(&plain.join(n)).0, 'f', "{n} without --unix-data");
    }
}

#[test]
fn mounts_show_special_files() {
    if !special_prereqs() || !prerequisites() {
        return;
    }
    let tmp = tempdir();
    let src = tmp.path().join("src");
    special_tree(&src);
    let wim = tmp.path().join("s.wim");
    wimlib_capture(&src, &wim, &["--unix-data"]);
    // Read-only: UNIX data is shown by default.
    let mnt = tmp.path().join("m");
    let m = Mount::ok(&wim, None, &mnt, &[]);
    assert_same_kinds(&src, &mnt, SPECIALS, "read-only mount");
    let o = run(&mut cmd("ls", [OsString::from("-l"), mnt.clone().into()]));
    assert!(
        o.stdout_str()
            .lines()
            .any(|l| l.starts_with('p') && l.ends_with("fifo")),
        "{}",
        o.describe()
    );
    // The mount is nodev: the device is shown, not usable.
    assert!(
        fs::File::open(mnt.join("null")).is_err(),
        "device opened through the mount"
    );
    drop(m);
    // --no-unix-data: the empty files they are in the WIM.
    let m = Mount::ok(&wim, None, &mnt, &["--no-unix-data"]);
    assert_eq!(kind(&mnt.join("fifo")).0, 'f');
    drop(m);
    // Read-write (with --unix-data): the same.
    let m = Mount::ok(&wim, None, &mnt, &["--rw", "--unix-data"]);
    assert_same_kinds(&src, &mnt, SPECIALS, "read-write mount");
    unmount_rw(m, "--discard");
}

#[test]
fn mknod_in_unix_data_rw_mount_commits_special_files() {
    if !special_prereqs() || !prerequisites() {
        return;
    }
    let tmp = tempdir();
    let wim = small_wim(tmp.path());
    let mnt = tmp.path().join("m");
    // Without --unix-data there is nowhere to keep the type: refused.
    let m = Mount::ok(&wim, None, &mnt, &["--rw"]);
    let o = run(&mut cmd("mkfifo", [mnt.join("f")]));
    assert!(!o.ok(), "mkfifo without --unix-data succeeded");
    assert!(o.stderr_str().contains("not permitted"), "{}", o.describe());
    unmount_rw(m, "--discard");
    let m = Mount::ok(&wim, None, &mnt, &["--rw", "--unix-data"]);
    // The same tree made inside the mount, and as a reference outside.
    let refdir = tmp.path().join("ref");
    special_tree(&refdir);
    special_tree(&mnt.join("d/sp"));
    assert_same_kinds(
        &refdir,
        &mnt.join("d/sp"),
        SPECIALS,
        "rw mount before commit",
    );
    // They are in the journal: a daemon killed now resumes them.
    let pid = m.pid.expect("daemon pid");
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let t = std::time::Instant::now();
    while pid_alive(pid) && t.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(m);
    let m = Mount::ok(&wim, None, &mnt, &["--rw", "--unix-data"]);
    assert!(
        m.out.all_output().contains("resuming"),
        "{}",
        m.out.describe()
    );
    assert_same_kinds(&refdir, &mnt.join("d/sp"), SPECIALS, "resumed rw mount");
    unmount_commit(m);
    // wimlib recreates each from what was committed.
    let wl = tmp.path().join("wl");
    let mut c = cmd(
        "wimlib-imagex",
        [
            OsString::from("apply"),
            wim.clone().into(),
            "1".into(),
            wl.clone().into(),
            "--unix-data".into(),
        ],
    );
    run_ok(&mut c);
    assert_same_kinds(
        &refdir,
        &wl.join("d/sp"),
        SPECIALS,
        "wimlib-imagex apply --unix-data",
    );
    assert!(wimlib_verify(&wim, &[]).ok());
    // And a new mount of the committed image shows them.
    let m = Mount::ok(&wim, None, &mnt, &[]);
    assert_same_kinds(&refdir, &mnt.join("d/sp"), SPECIALS, "mount after commit");
    drop(m);
}
