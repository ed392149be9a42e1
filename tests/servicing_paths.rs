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
