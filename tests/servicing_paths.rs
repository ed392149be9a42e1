//! The everyday servicing paths made faster for issue 12, checked for what
//! they must still guarantee (their speed is measured by
//! `scripts/bench-servicing.sh`, never here):
//! - a close journals the file's changes without fsync, at FLUSH (which
//!   close(2) waits for), so a file is whole after a SIGKILL of the daemon
//!   right after its close;
//! - a read-only mount sends attributes with every directory reply: a
//!   directory larger than one reply lists and stats exactly as the source;
//! - the preferred I/O size shown (`st_blksize`) on each kind of mount.
mod common;

use common::RwMount;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn fuse_ok() -> bool {
    if !Path::new("/dev/fuse").exists() {
        skip("no /dev/fuse: the servicing path tests did not run");
        return false;
    }
    require(&["wimlib-imagex", "fusermount3"])
}

/// A WIM of a small tree: one directory with `n` files of varied sizes.
fn wim_of(t: &Path, n: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let src = t.join("src");
    std::fs::create_dir_all(src.join("many")).unwrap();
    let mut rng = Rng::new(12);
    for i in 0..n {
        let len = rng.below(3000) as usize;
        std::fs::write(
            src.join(format!("many/file-{i:05}.txt")),
            text_bytes(&mut rng, len),
        )
        .unwrap();
    }
    std::fs::write(src.join("top.txt"), b"top\n").unwrap();
    let wim = t.join("t.wim");
    wimlib_capture(&src, &wim, &["--compress=LZX"]);
    (src, wim)
}

#[test]
fn closed_files_survive_a_kill_right_after_close() {
    if !fuse_ok() {
        return;
    }
    let t = tempdir();
    let (_, wim) = wim_of(t.path(), 3);
    let mnt = t.path().join("mnt");
    let (m, _) = RwMount::rw(&wim, &mnt, &[]);
    let mut rng = Rng::new(99);
    let mut want = Vec::new();
    std::fs::create_dir(mnt.join("new")).unwrap();
    for i in 0..300 {
        let len = 1 + rng.below(200_000) as usize;
        let body = text_bytes(&mut rng, len);
        std::fs::write(mnt.join(format!("new/f{i}")), &body).unwrap();
        want.push(body);
    }
    // The last close has returned: kill at once, before a RELEASE (which
    // the kernel sends after close(2) returns) could be relied on.
    m.kill9();
    let (m, o) = RwMount::rw(&wim, &mnt, &[]);
    let msg = o.all_output();
    assert!(msg.contains("resuming"), "{}", o.describe());
    assert!(
        !msg.contains("cut back"),
        "a closed file was cut back:\n{msg}"
    );
    for (i, body) in want.iter().enumerate() {
        let got = std::fs::read(mnt.join(format!("new/f{i}"))).unwrap();
        assert!(
            got == *body,
            "new/f{i}: {} bytes back, {} written and closed",
            got.len(),
            body.len()
        );
    }
    m.unmount(&["--discard"]);
}

#[test]
fn large_directory_lists_and_stats_as_the_source() {
    if !fuse_ok() {
        return;
    }
    let t = tempdir();
    // Far more names than one 128 KiB directory reply with attributes holds.
    let (src, wim) = wim_of(t.path(), 2500);
    let mnt = t.path().join("mnt");
    let m = Mount::ok(&wim, None, &mnt, &[]);
    let names = |d: &Path| {
        let mut v: Vec<(String, u64)> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                // symlink_metadata: a stat of the name, as find does.
                let md = std::fs::symlink_metadata(e.path()).unwrap();
                (e.file_name().to_string_lossy().into_owned(), md.len())
            })
            .collect();
        v.sort();
        v
    };
    let a = names(&src.join("many"));
    let b = names(&mnt.join("many"));
    assert_eq!(a.len(), 2500);
    assert_eq!(a, b, "the mounted directory differs from the source");
    drop(m.unmount());
}

#[test]
fn preferred_io_size_per_kind_of_mount() {
    if !fuse_ok() {
        return;
    }
    let t = tempdir();
    let (_, wim) = wim_of(t.path(), 1);
    let mnt = t.path().join("mnt");
    let m = Mount::ok(&wim, None, &mnt, &[]);
    let ro = std::fs::metadata(mnt.join("top.txt")).unwrap().blksize();
    drop(m.unmount());
    let (m, _) = RwMount::rw(&wim, &mnt, &[]);
    let rw = std::fs::metadata(mnt.join("top.txt")).unwrap().blksize();
    std::fs::write(mnt.join("new.txt"), b"x").unwrap();
    let rw_new = std::fs::metadata(mnt.join("new.txt")).unwrap().blksize();
    m.unmount(&["--discard"]);
    assert_eq!(ro, 128 * 1024, "read-only st_blksize");
    assert_eq!(
        (rw, rw_new),
        (256 * 1024, 256 * 1024),
        "read-write st_blksize"
    );
}

/// Small files written in a mount share the staging's pack (no staging
/// file each: thousands of new inodes cost quadratic time on ext4 without
/// a journal); a large file and a packed file written again get files of
/// their own. After a SIGKILL right after the closes, the resume shows
/// every file whole, and the commit applies with wimlib to exactly the
/// tree the same edits make in a plain directory.
#[test]
fn small_files_share_the_pack_and_survive_a_kill() {
    if !fuse_ok() {
        return;
    }
    let t = tempdir();
    let (_, wim) = wim_of(t.path(), 3);
    let expected = t.path().join("expected");
    let o = wimlib_apply(&wim, "1", &expected, &[]);
    assert!(o.ok(), "{}", o.describe());
    let mnt = t.path().join("mnt");
    let staging = t.path().join("staging");
    let st = staging.display().to_string();
    let (m, _) = RwMount::rw(&wim, &mnt, &["--staging-dir", &st]);
    let edit = |root: &Path, rng: &mut Rng| {
        std::fs::create_dir(root.join("new")).unwrap();
        for i in 0..200 {
            let len = rng.below(20_000) as usize;
            std::fs::write(root.join(format!("new/f{i}")), text_bytes(rng, len)).unwrap();
        }
        std::fs::write(root.join("new/empty"), b"").unwrap();
        // Over the in-memory limit: a staging file of its own.
        std::fs::write(root.join("big.bin"), text_bytes(rng, 3 << 20)).unwrap();
        // A packed file written again: moves into a file of its own.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(root.join("new/f5"))
            .unwrap();
        std::io::Write::write_all(&mut f, b"appended after the close\n").unwrap();
        drop(f);
        // An image file emptied and rewritten (O_TRUNC): packed too.
        std::fs::write(root.join("many/file-00001.txt"), b"rewritten\n").unwrap();
    };
    edit(&mnt, &mut Rng::new(5));
    edit(&expected, &mut Rng::new(5));
    let mut numbered: Vec<String> = std::fs::read_dir(staging.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    numbered.sort();
    assert!(
        numbered.iter().any(|n| n == "pack"),
        "no pack in the staging: {numbered:?}"
    );
    numbered.retain(|n| n != "pack");
    assert_eq!(
        numbered.len(),
        2,
        "expected staging files for big.bin and the rewritten new/f5 only: {numbered:?}"
    );
    m.kill9();
    let (m, o) = RwMount::rw(&wim, &mnt, &["--staging-dir", &st]);
    let msg = o.all_output();
    assert!(msg.contains("resuming"), "{}", o.describe());
    assert!(
        !msg.contains("cut back"),
        "a closed file was cut back:\n{msg}"
    );
    let opts = CompareOpts {
        mtime: false,
        xattrs: false,
        ..CompareOpts::default()
    };
    assert_trees_equal(
        &expected,
        &mnt,
        &opts.clone().labels("expected", "resumed"),
        "resumed mount",
    );
    m.unmount(&["--commit"]);
    let applied = t.path().join("applied");
    let o = wimlib_apply(&wim, "1", &applied, &[]);
    assert!(o.ok(), "{}", o.describe());
    assert_trees_equal(
        &expected,
        &applied,
        &opts.labels("expected", "committed"),
        "committed image applied by wimlib",
    );
}

/// A staging on a filesystem that fills up: copying small files in fails
/// with a clear error for the files that did not fit (at their close,
/// where a file held in the daemon reaches the staging; `cp` reports
/// it), never a hang or a dead daemon; every file whose copy succeeded
/// reads back whole, then and after a resume.
#[test]
fn a_full_staging_fails_copies_cleanly() {
    if !fuse_ok() {
        return;
    }
    let t = tempdir();
    let (_, wim) = wim_of(t.path(), 2);
    let small = t.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let m = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&small)
        .output();
    if !m.as_ref().is_ok_and(|o| o.status.success()) {
        skip("cannot mount a small tmpfs (not root?): the full-staging test did not run");
        return;
    }
    struct Umount(std::path::PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _guard = Umount(small.clone());
    let src = t.path().join("copy-src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = Rng::new(77);
    let bodies: Vec<Vec<u8>> = (0..24).map(|_| rng.bytes(100_000)).collect();
    for (i, b) in bodies.iter().enumerate() {
        std::fs::write(src.join(format!("f{i}")), b).unwrap();
    }
    let mnt = t.path().join("mnt");
    let st = small.join("staging").display().to_string();
    let (m, _) = RwMount::rw(&wim, &mnt, &["--staging-dir", &st]);
    let mut copied = Vec::new();
    let mut failed = Vec::new();
    for i in 0..bodies.len() {
        let o = run(std::process::Command::new("cp")
            .arg(src.join(format!("f{i}")))
            .arg(mnt.join(format!("f{i}"))));
        if o.ok() {
            copied.push(i);
        } else {
            assert!(
                o.stderr_str().contains("No space left"),
                "f{i}: cp failed without naming the full disk:\n{}",
                o.describe()
            );
            failed.push(i);
        }
    }
    assert!(!copied.is_empty(), "nothing fitted in the staging");
    assert!(!failed.is_empty(), "2.4 MB fitted in a 1 MiB staging");
    let check = |what: &str| {
        for &i in &copied {
            let got = std::fs::read(mnt.join(format!("f{i}"))).unwrap();
            assert!(got == bodies[i], "f{i} ({what}): {} bytes back", got.len());
        }
    };
    check("mounted");
    m.kill9();
    let (m, o) = RwMount::rw(&wim, &mnt, &["--staging-dir", &st]);
    assert!(o.all_output().contains("resuming"), "{}", o.describe());
    check("resumed");
    m.unmount(&["--discard"]);
}
