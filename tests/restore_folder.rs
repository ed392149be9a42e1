//! A WinFsp mount on an existing empty folder (as DISM users give one)
//! removes the folder first, because WinFsp makes its mount folder
//! itself, and puts it back at unmount. If the daemon is killed, the
//! folder must still come back: the daemon's record names it, and the next
//! wimfs command that finds the record dead puts it back, creating only a
//! missing name (a file, folder or link that has taken the place since is
//! left alone, never followed). WinFsp cannot run here, so the records are
//! the ones such a daemon writes, with the pid of a process that has
//! exited; the code that reads them is the same on every platform.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A pid no process has now (a child that has exited and been reaped).
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// Where this user's daemons record themselves (root: /run/wimfs).
fn state_dir() -> Option<PathBuf> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let d = PathBuf::from("/run/wimfs");
    if !d.exists() {
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    Some(d)
}

fn write_record(state: &Path, pid: u32, mountpoint: &Path) -> PathBuf {
    let rec = serde_json::json!({
        "pid": pid,
        "wim": "C:\\images\\install.wim",
        "image": 3,
        "image_name": null,
        "mode": "ro",
        "mountpoint": mountpoint,
        "started": 1_700_000_000u64,
        "restore_folder": mountpoint,
    });
    let p = state.join(format!("{pid}.json"));
    std::fs::write(&p, serde_json::to_vec(&rec).unwrap()).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

#[test]
fn a_killed_daemons_replaced_folder_is_put_back() {
    let Some(state) = state_dir() else {
        skip("restore_folder: needs root (the registry of root is /run/wimfs)");
        return;
    };
    let t = tempdir();
    // Gone with the killed daemon: put back, empty.
    let gone = t.path().join("mnt");
    // Taken since by a symlink to a folder of someone else's: left as is,
    // nothing created through it.
    let target = t.path().join("elsewhere");
    std::fs::create_dir(&target).unwrap();
    let link = t.path().join("mnt-link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    // Taken since by a file: left as is.
    let file = t.path().join("mnt-file");
    std::fs::write(&file, b"not a folder").unwrap();

    let recs: Vec<PathBuf> = [&gone, &link, &file]
        .iter()
        .map(|p| write_record(&state, dead_pid(), p))
        .collect();
    wimfs_ok(["mounts"]);

    let m = std::fs::symlink_metadata(&gone).expect("the folder is back");
    assert!(m.is_dir(), "{gone:?} is not a folder");
    assert_eq!(std::fs::read_dir(&gone).unwrap().count(), 0);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    assert_eq!(std::fs::read(&file).unwrap(), b"not a folder");
    for r in &recs {
        assert!(!r.exists(), "the dead record {r:?} is still there");
    }
}
