//! Read-write mounts end to end, with real FUSE mounts and ordinary tools:
//! `wimfs mount --rw`, changes made with std::fs, cp, mv, rm, ln, truncate
//! and setfattr, then `wimfs unmount --commit` (or `wimfs commit`, or
//! `--discard`), and the result checked by the oracles: `wimlib-imagex
//! verify`, `wimlib-imagex apply` compared with a plain directory where the
//! same operations were made, and `7zz l`. Also: a daemon killed with
//! SIGKILL leaves a staging that the next `mount --rw` resumes.
//!
//! Every mount is held by a guard that, when dropped, detaches the mount
//! (`fusermount3 -u -z`) and kills the daemon, so a failing assertion
//! never leaves a mount or a WIM lock behind. Without /dev/fuse the tests
//! are skipped with a banner.
mod common;

use common::RwMount as Mount;
use common::*;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn fuse_available() -> bool {
    if !Path::new("/dev/fuse").exists() {
        skip("no /dev/fuse: the read-write mount test did not run");
        return false;
    }
    require(&["wimlib-imagex", "fusermount3", "setfattr"])
}

/// The source tree every WIM here is captured from.
fn make_source(dir: &Path) {
    let mut rng = Rng::new(42);
    std::fs::create_dir_all(dir.join("docs/deep")).unwrap();
    std::fs::create_dir_all(dir.join("gone/sub")).unwrap();
    std::fs::write(dir.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(dir.join("del.txt"), b"to be deleted\n").unwrap();
    std::fs::write(dir.join("ren.txt"), text_bytes(&mut rng, 5000)).unwrap();
    std::fs::write(dir.join("trunc.txt"), text_bytes(&mut rng, 20000)).unwrap();
    std::fs::write(dir.join("docs/readme"), text_bytes(&mut rng, 3000)).unwrap();
    std::fs::write(dir.join("docs/deep/x.bin"), x86_bytes(&mut rng, 70000)).unwrap();
    std::fs::write(dir.join("gone/sub/y"), b"y").unwrap();
    std::fs::write(dir.join("gone/z"), text_bytes(&mut rng, 100)).unwrap();
    // A large file (several chunks and then some).
    let mut big = x86_bytes(&mut rng, 3 << 20);
    big.extend(text_bytes(&mut rng, 1 << 20));
    std::fs::write(dir.join("big.bin"), big).unwrap();
    std::fs::hard_link(dir.join("a.txt"), dir.join("docs/a-link")).unwrap();
    std::os::unix::fs::symlink("docs/readme", dir.join("readme-link")).unwrap();
}

fn sh(prog: &str, args: &[&str]) {
    run_ok(&mut cmd(prog, args));
}

fn p(root: &Path, rel: &str) -> String {
    root.join(rel).display().to_string()
}

/// The first batch of changes, with ordinary tools; the same on the mount
/// and on the plain directory.
fn changes_a(root: &Path) {
    let mut rng = Rng::new(7);
    std::fs::create_dir(root.join("newdir")).unwrap();
    for i in 0..20 {
        let n = 100 + rng.below(40000) as usize;
        std::fs::write(root.join(format!("newdir/f{i}")), text_bytes(&mut rng, n)).unwrap();
    }
    std::fs::write(root.join("newdir/empty"), b"").unwrap();
    // One byte changed in the middle of the large file.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("big.bin"))
        .unwrap();
    f.seek(SeekFrom::Start(1_500_001)).unwrap();
    f.write_all(b"#").unwrap();
    drop(f);
    sh("rm", &[&p(root, "del.txt")]);
    sh("rm", &["-r", &p(root, "gone")]);
    sh("mv", &[&p(root, "ren.txt"), &p(root, "newdir/renamed.txt")]);
    sh("ln", &[&p(root, "newdir/f3"), &p(root, "hardlink-f3")]);
    sh("ln", &["-s", "newdir/f1", &p(root, "sym-f1")]);
    sh("truncate", &["-s", "100", &p(root, "trunc.txt")]);
    sh(
        "cp",
        &[&p(root, "docs/deep/x.bin"), &p(root, "newdir/x-copy.bin")],
    );
    sh("mkdir", &["-p", &p(root, "newdir/a/b/c")]);
    std::fs::write(root.join("newdir/a/b/c/leaf"), b"leaf").unwrap();
    // Overwrite through a hard link: both names see it.
    std::fs::write(root.join("docs/a-link"), b"alpha changed\n").unwrap();
}

/// A second batch (for commit-then-change and discard).
fn changes_b(root: &Path) {
    std::fs::write(root.join("later.txt"), b"written after the commit\n").unwrap();
    sh("rm", &[&p(root, "newdir/f0")]);
    sh("mv", &[&p(root, "docs"), &p(root, "documents")]);
}

fn apply_check(wim: &Path, expected: &Path, work: &Path, what: &str) {
    let v = wimlib_verify(wim, &[]);
    assert!(
        v.ok(),
        "{what}: wimlib-imagex verify failed:\n{}",
        v.describe()
    );
    let out = work.join(format!("applied-{}", what.replace(' ', "-")));
    let _ = std::fs::remove_dir_all(&out);
    let a = wimlib_apply(wim, "1", &out, &[]);
    assert!(
        a.ok(),
        "{what}: wimlib-imagex apply failed:\n{}",
        a.describe()
    );
    let o = CompareOpts {
        mtime: false,
        xattrs: false,
        ..CompareOpts::default()
    }
    .labels("expected", "applied");
    assert_trees_equal(expected, &out, &o, what);
    if have("7zz") {
        let l = run(&mut cmd("7zz", ["l", &wim.display().to_string()]));
        assert!(l.ok(), "{what}: 7zz l failed:\n{}", l.describe());
    }
}

fn setup(label: &str, capture: &[&str]) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempdir();
    let src = t.path().join("src");
    make_source(&src);
    let wim = t.path().join(format!("{label}.wim"));
    wimlib_capture(&src, &wim, capture);
    let expected = t.path().join("expected");
    sh(
        "cp",
        &[
            "-a",
            &src.display().to_string(),
            &expected.display().to_string(),
        ],
    );
    (t, wim, expected)
}

#[test]
fn rw_changes_commit_verify_apply() {
    if !fuse_available() {
        return;
    }
    for (label, capture) in [
        ("lzx", &["--compress=LZX"][..]),
        ("xpress", &["--compress=XPRESS"][..]),
        ("solid", &["--solid"][..]),
    ] {
        let (t, wim, expected) = setup(label, capture);
        let mnt = t.path().join("mnt");
        let (m, _) = Mount::rw(&wim, &mnt, &[]);
        let listed = wimfs(["mounts"]).stdout_str();
        assert!(
            listed.contains(" rw ") && listed.contains("staging:"),
            "{listed}"
        );
        changes_a(&mnt);
        changes_a(&expected);
        sh(
            "setfattr",
            &["-n", "user.ads", "-v", "stream value", &p(&mnt, "a.txt")],
        );
        // Plain unmount of a read-write mount is refused with a hint.
        let o = wimfs(["unmount", &mnt.display().to_string()]);
        assert!(
            !o.ok() && o.stderr_str().contains("--commit"),
            "{}",
            o.describe()
        );
        // The mounted tree already equals the plain directory.
        let o2 = CompareOpts {
            mtime: false,
            xattrs: false,
            ..CompareOpts::default()
        }
        .labels("expected", "mounted");
        assert_trees_equal(&expected, &mnt, &o2, &format!("{label} mounted"));
        let u = m.unmount(&["--commit"]);
        assert!(
            u.stdout_str().contains("committed image 1"),
            "{}",
            u.describe()
        );
        apply_check(&wim, &expected, t.path(), &format!("{label} commit"));
        // The named stream made with setfattr.
        let c = wimfs(["cat", &wim.display().to_string(), "1", "/a.txt:ads"]);
        assert!(c.ok(), "{}", c.describe());
        assert_eq!(c.stdout, b"stream value");
        // The staging is gone after the commit.
        let r = wimfs(["recover", &wim.display().to_string()]);
        assert!(r.stdout_str().contains("no staging"), "{}", r.describe());
    }
}

/// A read-write mount with nothing changed (since the mount, or since its
/// last commit) unmounts without --commit or --discard and leaves no
/// staging; one with changes still refuses, naming the two flags, and
/// stays mounted.
#[test]
fn rw_plain_unmount_needs_no_flag_when_nothing_changed() {
    if !fuse_available() {
        return;
    }
    let (t, wim, expected) = setup("plain-unmount", &["--compress=XPRESS"]);
    let before = std::fs::read(&wim).unwrap();
    let mnt = t.path().join("mnt");
    let staging = t.path().join(".plain-unmount.wim.wimfs-staging-1");
    let (m, _) = Mount::rw(&wim, &mnt, &[]);
    assert_eq!(std::fs::read(mnt.join("a.txt")).unwrap(), b"alpha\n");
    let u = m.unmount(&[]);
    assert!(
        u.stdout_str().contains("nothing was changed"),
        "{}",
        u.describe()
    );
    assert!(!staging.exists(), "staging left behind");
    assert!(
        std::fs::read(&wim).unwrap() == before,
        "the WIM was rewritten"
    );

    let (m, _) = Mount::rw(&wim, &mnt, &[]);
    changes_a(&mnt);
    changes_a(&expected);
    let o = wimfs(["unmount", &mnt.display().to_string()]);
    assert!(
        !o.ok() && o.stderr_str().contains("has changes") && o.stderr_str().contains("--discard"),
        "{}",
        o.describe()
    );
    assert_eq!(
        std::fs::read(mnt.join("docs/a-link")).unwrap(),
        b"alpha changed\n",
        "still mounted with the changes"
    );
    let o = wimfs(["commit", &mnt.display().to_string()]);
    assert!(o.ok(), "{}", o.describe());
    m.unmount(&[]);
    assert!(!staging.exists(), "staging left behind after a commit");
    apply_check(&wim, &expected, t.path(), "committed, then a plain unmount");
}

#[test]
fn rw_commit_while_mounted_then_discard() {
    if !fuse_available() {
        return;
    }
    let (t, wim, expected) = setup("commit-discard", &["--compress=LZX"]);
    let mnt = t.path().join("mnt");
    let (m, _) = Mount::rw(&wim, &mnt, &[]);
    changes_a(&mnt);
    changes_a(&expected);
    // An open file refuses the commit; --force would take it.
    let held = std::fs::File::open(mnt.join("a.txt")).unwrap();
    let o = wimfs(["commit", &mnt.display().to_string()]);
    assert!(
        !o.ok() && o.stderr_str().contains("open"),
        "{}",
        o.describe()
    );
    drop(held);
    let o = wimfs(["commit", &mnt.display().to_string()]);
    assert!(o.ok(), "{}", o.describe());
    assert!(o.stdout_str().contains("bytes added"), "{}", o.describe());
    apply_check(&wim, &expected, t.path(), "committed while mounted");
    // Still mounted and still writable, with the committed content.
    assert_eq!(
        std::fs::read(mnt.join("docs/a-link")).unwrap(),
        b"alpha changed\n"
    );
    changes_b(&mnt);
    assert!(mnt.join("later.txt").exists());
    // Committed as a new image, the mount serves that image, and the
    // mounts registry says so.
    let o = wimfs(["commit", "--new-image", &mnt.display().to_string()]);
    assert!(o.ok(), "{}", o.describe());
    let listed: serde_json::Value =
        serde_json::from_slice(&wimfs(["mounts", "--json"]).stdout).unwrap();
    let want = mnt.canonicalize().unwrap();
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["mountpoint"].as_str().map(Path::new) == Some(want.as_path()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(entry["image"].as_u64(), Some(2), "{listed}");
    // A second lock on the WIM is refused while mounted.
    let mnt2 = t.path().join("mnt2");
    std::fs::create_dir_all(&mnt2).unwrap();
    let o = wimfs([
        "mount",
        "--rw",
        &wim.display().to_string(),
        "1",
        &mnt2.display().to_string(),
    ]);
    assert!(
        !o.ok() && o.stderr_str().contains("locked"),
        "{}",
        o.describe()
    );
    let staging = t.path().join(".commit-discard.wim.wimfs-staging-1");
    assert!(staging.exists());
    let u = m.unmount(&["--discard"]);
    assert!(u.stdout_str().contains("discarded"), "{}", u.describe());
    assert!(!staging.join("journal").exists(), "staging left behind");
    // Only the first batch is in the WIM.
    apply_check(&wim, &expected, t.path(), "after discard");
}

#[test]
fn rw_kill9_then_resume() {
    if !fuse_available() {
        return;
    }
    let (t, wim, expected) = setup("resume", &["--compress=LZX"]);
    let mnt = t.path().join("mnt");
    let (m, _) = Mount::rw(&wim, &mnt, &[]);
    changes_a(&mnt);
    changes_a(&expected);
    // A file written and fsynced but still open at the kill.
    let mut f = std::fs::File::create(mnt.join("synced.txt")).unwrap();
    f.write_all(b"fsynced but never closed\n").unwrap();
    f.sync_all().unwrap();
    std::fs::write(expected.join("synced.txt"), b"fsynced but never closed\n").unwrap();
    m.kill9();
    drop(f);
    let r = wimfs(["recover", &wim.display().to_string()]);
    assert!(
        r.ok() && r.stdout_str().contains("journal"),
        "{}",
        r.describe()
    );
    let (m, o) = Mount::rw(&wim, &mnt, &[]);
    assert!(o.stderr_str().contains("resuming"), "{}", o.describe());
    let o2 = CompareOpts {
        mtime: false,
        xattrs: false,
        ..CompareOpts::default()
    }
    .labels("expected", "resumed");
    assert_trees_equal(&expected, &mnt, &o2, "resumed mount");
    m.unmount(&["--commit"]);
    apply_check(&wim, &expected, t.path(), "resumed then committed");

    // --discard-staging starts clean.
    let (m, _) = Mount::rw(&wim, &mnt, &[]);
    std::fs::write(mnt.join("lost.txt"), b"x").unwrap();
    m.kill9();
    let (m, o) = Mount::rw(&wim, &mnt, &["--discard-staging"]);
    assert!(!o.stderr_str().contains("resuming"), "{}", o.describe());
    assert!(!mnt.join("lost.txt").exists());
    m.unmount(&["--discard"]);
    apply_check(&wim, &expected, t.path(), "after discard-staging");
}

/// Changes made after a commit while mounted survive a killed daemon: the
/// staging then belongs to the committed image, which numbers inodes
/// otherwise than the mount still does, and the resume must apply every
/// record to the right file.
#[test]
fn rw_kill9_after_commit_while_mounted_resumes() {
    if !fuse_available() {
        return;
    }
    let (t, wim, expected) = setup("commit-kill", &["--compress=LZX"]);
    let mnt = t.path().join("mnt");
    let (m, _) = Mount::rw(&wim, &mnt, &[]);
    changes_a(&mnt);
    changes_a(&expected);
    let o = wimfs(["commit", &mnt.display().to_string()]);
    assert!(o.ok(), "{}", o.describe());
    changes_b(&mnt);
    changes_b(&expected);
    // Overwrite a file that the commit stored, and add under a directory
    // it made.
    std::fs::write(mnt.join("documents/a-link"), b"after the commit\n").unwrap();
    std::fs::write(expected.join("documents/a-link"), b"after the commit\n").unwrap();
    sh("sync", &[]);
    m.kill9();
    let (m, o) = Mount::rw(&wim, &mnt, &[]);
    assert!(o.stderr_str().contains("resuming"), "{}", o.describe());
    assert!(!o.stderr_str().contains("dropped"), "{}", o.describe());
    let o2 = CompareOpts {
        mtime: false,
        xattrs: false,
        ..CompareOpts::default()
    }
    .labels("expected", "resumed after a commit while mounted");
    assert_trees_equal(&expected, &mnt, &o2, "resumed after a commit while mounted");
    m.unmount(&["--commit"]);
    apply_check(
        &wim,
        &expected,
        t.path(),
        "resumed after a commit, then committed",
    );
}

/// SIGKILL the daemon while it commits, at chosen points of the write (the
/// writer's pause hook proves each was reached). The WIM must verify and
/// hold exactly the old tree or the new one, and no change is lost: either
/// the commit landed (the image holds it) or the staging still does and
/// the next mount resumes it.
#[test]
fn rw_kill9_during_commit_trials() {
    if !fuse_available() {
        return;
    }
    let (t, wim, expected) = setup("killcommit", &["--compress=LZX"]);
    let mnt = t.path().join("mnt");
    let marker = t.path().join("pause-marker");
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    // The daemon's commit is stopped by the writer's test hook at each
    // point (src/commit/pause.rs) and killed there: (point, has the commit
    // landed in the WIM by then?).
    let points = [
        ("after-blobs", false),
        ("before-header", false),
        ("after-header", true),
    ];
    for (trial, &(point, landed)) in points.iter().enumerate() {
        let what = format!("trial {trial} at {point}");
        let before = t.path().join(format!("before{trial}"));
        sh(
            "cp",
            &[
                "-a",
                &expected.display().to_string(),
                &before.display().to_string(),
            ],
        );
        let _ = std::fs::remove_file(&marker);
        let (m, _) = Mount::rw_env(
            &wim,
            &mnt,
            &[],
            &[
                ("WIMFS_TEST_PAUSE_AT", std::ffi::OsStr::new(point)),
                ("WIMFS_TEST_PAUSE_MARKER", marker.as_os_str()),
            ],
        );
        let name = format!("trial{trial}.bin");
        let data = x86_bytes(&mut rng, 4 << 20);
        std::fs::write(mnt.join(&name), &data).unwrap();
        std::fs::write(expected.join(&name), &data).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wimfs"))
            .arg("commit")
            .arg(&mnt)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let reached = loop {
            if std::fs::read_to_string(&marker).is_ok_and(|s| s.lines().any(|l| l == point)) {
                break true;
            }
            if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(50) {
                break false;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        m.kill9();
        let _ = child.kill();
        let st = child.wait().unwrap();
        assert!(reached, "{what}: the daemon's commit never reached {point}");
        assert!(
            !st.success(),
            "{what}: commit reported success despite the kill"
        );
        // The WIM verifies and holds exactly the old tree or the new one.
        apply_check(
            &wim,
            if landed { &expected } else { &before },
            t.path(),
            &format!("{what} killed"),
        );
        // No change is lost: the next mount shows them all (resumed from the
        // staging, or read from the WIM the commit landed in).
        let (m, o) = Mount::rw(&wim, &mnt, &[]);
        let opts = CompareOpts {
            mtime: false,
            xattrs: false,
            ..CompareOpts::default()
        }
        .labels("expected", "after the kill");
        assert_trees_equal(&expected, &mnt, &opts, &format!("{what}: {}", o.describe()));
        m.unmount(&["--commit"]);
        apply_check(&wim, &expected, t.path(), &format!("{what} resumed"));
    }
}
