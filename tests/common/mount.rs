//! Mount guards for the tests that really mount: [`Mount`] (read-only or
//! any `wimfs mount`, detached when dropped, then waits for the daemon) and
//! [`RwMount`] (`mount --rw`, with `unmount ARGS` and `kill9`), the FUSE
//! availability check, the daemon's pid and liveness, and whether a
//! directory is a mount point. Both guards always unmount, also when the
//! test panics.

use super::*;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Can this machine mount FUSE filesystems? Loud skip when not (a failure
/// on CI, where /dev/fuse must exist).
pub fn fuse_available() -> bool {
    if Path::new("/dev/fuse").exists() {
        return true;
    }
    skip("no /dev/fuse: cannot mount");
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

/// A live `wimfs mount --rw`: detached (lazily) and its daemon killed when
/// dropped, so a failing test leaves no mount behind. `unmount` and
/// `kill9` end it on purpose; the fields are public so a test with its own
/// way of starting the daemon (a umask, an environment) can build one.
pub struct RwMount {
    pub dir: PathBuf,
    pub pid: Option<u32>,
}

impl RwMount {
    /// `wimfs mount --rw EXTRA... WIM DIR`, which must succeed; returns the
    /// mount and the command's output.
    pub fn rw(wim: &Path, dir: &Path, extra: &[&str]) -> (RwMount, Out) {
        RwMount::rw_env(wim, dir, extra, &[])
    }

    /// [`RwMount::rw`] with extra environment variables for the daemon.
    pub fn rw_env(
        wim: &Path,
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> (RwMount, Out) {
        std::fs::create_dir_all(dir).unwrap();
        let mut args: Vec<String> = vec!["mount".into(), "--rw".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(wim.display().to_string());
        args.push(dir.display().to_string());
        let mut c = cmd(wimfs_bin(), &args);
        c.envs(env.iter().copied());
        let o = run(&mut c);
        assert!(o.ok(), "mount --rw failed:\n{}", o.describe());
        let pid = daemon_pid(dir);
        assert!(pid.is_some(), "no daemon listed for {}", dir.display());
        (
            RwMount {
                dir: dir.to_path_buf(),
                pid,
            },
            o,
        )
    }

    /// `wimfs unmount ARGS... DIR` (must succeed); waits for the daemon to
    /// be gone.
    pub fn unmount(mut self, args: &[&str]) -> Out {
        let mut a: Vec<String> = vec!["unmount".into()];
        a.extend(args.iter().map(|s| s.to_string()));
        a.push(self.dir.display().to_string());
        let o = wimfs(&a);
        assert!(o.ok(), "unmount failed:\n{}", o.describe());
        if let Some(pid) = self.pid.take() {
            let t = Instant::now();
            while pid_alive(pid) && t.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(!pid_alive(pid), "daemon {pid} still running after unmount");
        }
        o
    }

    /// SIGKILL the daemon and clear the dead mount.
    pub fn kill9(mut self) {
        if let Some(pid) = self.pid.take() {
            // SAFETY: plain kill(2) on the daemon's pid.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let t = Instant::now();
            while pid_alive(pid) && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = run(&mut cmd(
            "fusermount3",
            ["-u", "-z", &self.dir.display().to_string()],
        ));
    }
}

impl Drop for RwMount {
    fn drop(&mut self) {
        let _ = run(&mut cmd(
            "fusermount3",
            ["-u", "-z", &self.dir.display().to_string()],
        ));
        if let Some(pid) = self.pid.take() {
            if pid_alive(pid) {
                // SAFETY: plain kill(2) on the daemon's pid.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}
