//! The mounts registry is shared by every wimfs binary of a user: a
//! daemon started from a copy under another name (`wimfs-dev`, a
//! versioned install) is alive, and listing mounts with `wimfs` must not
//! take it for dead and delete its record (which left that mount
//! impossible to unmount with wimfs: "without a live daemon of yours").

mod common;

use common::*;
use std::process::Command;

#[test]
fn a_daemon_from_a_renamed_binary_keeps_its_record() {
    if !fuse_available() {
        skip("registry_names: /dev/fuse or fusermount3 missing");
        return;
    }
    if !have("wimlib-imagex") {
        skip("registry_names: wimlib-imagex missing");
        return;
    }
    let t = tempdir();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    let wim = t.path().join("a.wim");
    wimlib_capture(&src, &wim, &[]);
    // The same binary under another name.
    let other = t.path().join("wimfs-renamed");
    std::fs::copy(wimfs_bin(), &other).unwrap();
    let mnt = t.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run_ok(Command::new(&other).arg("mount").arg(&wim).arg(&mnt));
    let guard = scopeguard(&mnt);

    // `wimfs mounts` (the usual name) lists it and keeps its record.
    let listed = String::from_utf8_lossy(&wimfs_ok(["mounts", "--json"]).stdout).into_owned();
    assert!(
        listed.contains(&*mnt.to_string_lossy()),
        "wimfs mounts does not list the renamed binary's mount: {listed}"
    );
    let again = String::from_utf8_lossy(&wimfs_ok(["mounts", "--json"]).stdout).into_owned();
    assert!(
        again.contains(&*mnt.to_string_lossy()),
        "record deleted: {again}"
    );
    assert_eq!(std::fs::read(mnt.join("a.txt")).unwrap(), b"hello");

    // And `wimfs unmount` takes it down as one of ours.
    wimfs_ok(["unmount".as_ref(), mnt.as_os_str()]);
    assert!(!is_mounted(&mnt), "still mounted after wimfs unmount");
    drop(guard);
}

/// Lazily unmount `dir` when the test ends, also on failure.
fn scopeguard(dir: &std::path::Path) -> impl Drop + '_ {
    struct G<'a>(&'a std::path::Path);
    impl Drop for G<'_> {
        fn drop(&mut self) {
            if is_mounted(self.0) {
                let _ = Command::new("fusermount3")
                    .arg("-u")
                    .arg("-z")
                    .arg(self.0)
                    .status();
            }
        }
    }
    G(dir)
}
