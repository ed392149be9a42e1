//! Helpers for the tests that really mount: a guard that always unmounts
//! (also when the test panics), the FUSE availability check, and small
//! libc wrappers for the system calls the tests make on a mount.
#![allow(dead_code)]

use crate::common::{wimfs, Out};
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Can this machine mount FUSE filesystems? Loud skip when not (a failure
/// on CI, where /dev/fuse must exist).
pub fn fuse_available() -> bool {
    if Path::new("/dev/fuse").exists() {
        return true;
    }
    crate::common::skip("no /dev/fuse: cannot mount");
    false
}

/// A live `wimfs mount`; unmounted (lazily, so an open file or a failing
/// test cannot keep it) when dropped, then waits for the daemon to exit.
pub struct Mount {
    pub dir: PathBuf,
    pub pid: Option<u32>,
    pub out: Out,
}

/// Daemon pid serving `dir`, from `wimfs mounts --json`.
pub fn daemon_pid(dir: &Path) -> Option<u32> {
    let o = wimfs(["mounts", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    let canon = dir.canonicalize().ok()?;
    v.as_array()?
        .iter()
        .find(|m| m["mountpoint"].as_str().map(Path::new) == Some(canon.as_path()))
        .and_then(|m| m["pid"].as_u64())
        .map(|p| p as u32)
}

/// Is the process still there, counting a zombie leader whose other
/// threads still run (they keep its files, and a WIM's lock, open)?
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z")) {
        Err(_) => false,
        Ok(false) => true,
        Ok(true) => std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|d| d.count() > 1),
    }
}

impl Mount {
    /// `wimfs mount WIM [IMAGE] DIR EXTRA...`; `Err` with the command's
    /// output when it fails (the directory is created first).
    pub fn new(wim: &Path, image: Option<&str>, dir: &Path, extra: &[&str]) -> Result<Mount, Out> {
        std::fs::create_dir_all(dir).unwrap();
        let mut args: Vec<OsString> = vec!["mount".into(), wim.into()];
        if let Some(i) = image {
            args.push(i.into());
        }
        args.push(dir.into());
        args.extend(extra.iter().map(OsString::from));
        let out = wimfs(&args);
        if !out.ok() {
            return Err(out);
        }
        let pid = daemon_pid(dir);
        Ok(Mount {
            dir: dir.to_path_buf(),
            pid,
            out,
        })
    }

    /// Like [`Mount::new`], panicking with the output on failure.
    pub fn ok(wim: &Path, image: Option<&str>, dir: &Path, extra: &[&str]) -> Mount {
        match Mount::new(wim, image, dir, extra) {
            Ok(m) => m,
            Err(o) => panic!("wimfs mount {} failed:\n{}", wim.display(), o.describe()),
        }
    }

    /// Unmount now through `wimfs unmount` (the guard then has nothing to do).
    pub fn unmount(mut self) -> Out {
        let o = wimfs([OsString::from("unmount"), self.dir.clone().into()]);
        if o.ok() {
            self.pid = None;
            self.dir = PathBuf::new();
        }
        o
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.dir.as_os_str().is_empty() {
            return;
        }
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(pid) = self.pid {
            let t = Instant::now();
            while pid_alive(pid) && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Is `dir` a mount point right now?
pub fn is_mounted(dir: &Path) -> bool {
    let Ok(c) = dir.canonicalize() else {
        return false;
    };
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(c.to_str().unwrap_or("")))
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// errno of the last libc call.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `statvfs(2)` of a path.
pub fn statvfs(p: &Path) -> libc::statvfs {
    let c = cpath(p);
    // SAFETY: statvfs fills the zeroed struct we pass.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    assert_eq!(
        r,
        0,
        "statvfs {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    s
}

/// An xattr of a path (not following symlinks), `Err(errno)` if absent.
pub fn lgetxattr(p: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let c = cpath(p);
    let n = CString::new(name).unwrap();
    let len = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
    if len < 0 {
        return Err(errno());
    }
    let mut v = vec![0u8; len as usize];
    let r = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
    if r < 0 {
        return Err(errno());
    }
    v.truncate(r as usize);
    Ok(v)
}

/// All xattr names of a path (not following symlinks).
pub fn llistxattr(p: &Path) -> Vec<String> {
    let c = cpath(p);
    let n = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if n <= 0 {
        return Vec::new();
    }
    let mut buf = vec![0u8; n as usize];
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    buf.truncate(n.max(0) as usize);
    buf.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// `lsetxattr(2)`: returns errno (0 on success).
pub fn lsetxattr(p: &Path, name: &str, v: &[u8]) -> i32 {
    let c = cpath(p);
    let n = CString::new(name).unwrap();
    let r = unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
    if r == 0 {
        0
    } else {
        errno()
    }
}

/// `pread` with O_DIRECT (so the read reaches the daemon, not the page
/// cache) of `len` bytes at `off`.
pub struct DirectFile {
    fd: libc::c_int,
}

impl DirectFile {
    pub fn open(p: &Path) -> std::io::Result<DirectFile> {
        let c = cpath(p);
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECT | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(DirectFile { fd })
    }

    pub fn pread(&self, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let r = unsafe {
                libc::pread(
                    self.fd,
                    buf[done..].as_mut_ptr().cast(),
                    buf.len() - done,
                    (off + done as u64) as i64,
                )
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if r == 0 {
                break;
            }
            done += r as usize;
        }
        Ok(done)
    }
}

impl Drop for DirectFile {
    fn drop(&mut self) {
        unsafe { libc::close(self.fd) };
    }
}
