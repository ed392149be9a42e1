//! The registry of mounts: each daemon records itself in a small JSON file
//! (`PID.json`, beside its `PID.log` and `PID.sock`) in a per-user private
//! state directory, /run/wimfs (root) or $XDG_RUNTIME_DIR/wimfs
//! (`%LOCALAPPDATA%\wimfs` on Windows). Listing prunes the records of dead
//! daemons (a dead read-write mount's is kept for `remount` and `cleanup`,
//! see `super::dead`); a record counts only if its process
//! is this user's, a wimfs mount daemon, and the one that started when
//! recorded.

use super::adapter::Adapter;
use super::error::{Result, SessionError};
use crate::sys::{self, Access, PrivateDir};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a daemon records about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountRecord {
    pub pid: u32,
    pub wim: String,
    pub image: u32,
    pub image_name: Option<String>,
    pub mode: String,
    pub mountpoint: String,
    pub started: u64,
    /// Start time of the daemon (clock ticks after boot, from
    /// /proc/PID/stat): tells the daemon from a later process given the
    /// same pid.
    #[serde(default)]
    pub start_ticks: Option<u64>,
    /// Read-write mounts: the staging directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging: Option<String>,
    /// Read-write mounts: the daemon's control socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// The mount's device (`major:minor` in /proc/self/mountinfo), so
    /// `unmount` can tell this mount from whatever is mounted there later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    /// The kernel's mount ID of the mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_id: Option<u64>,
    /// An empty folder the mount took the place of (WinFsp makes its
    /// mount folder itself, so one a DISM user gave is removed first):
    /// put back once the daemon is gone, also when it was killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_folder: Option<String>,
}

impl MountRecord {
    pub fn is_rw(&self) -> bool {
        self.mode == "rw"
    }

    /// The read-write mount this record describes, if it is one with a
    /// control socket.
    pub fn rw(&self) -> Option<RwMount> {
        if !self.is_rw() {
            return None;
        }
        Some(RwMount {
            pid: self.pid,
            wim: self.wim.clone(),
            mountpoint: self.mountpoint.clone(),
            socket: self.socket.clone()?,
        })
    }
}

/// A live read-write mount, as a client needs it.
#[derive(Debug, Clone)]
pub struct RwMount {
    pub pid: u32,
    pub wim: String,
    pub mountpoint: String,
    pub socket: String,
}

/// `dir` made absolute (resolved when it can be: a dead FUSE mount cannot).
/// On Windows a drive letter stays `X:`, and only the parent is resolved:
/// a WinFsp mount folder is a reparse point into the mounted volume, and
/// records name it as the mount was asked for (see `mountpoint::plan`).
pub fn abs_dir(dir: &Path) -> PathBuf {
    use super::mountpoint::{drive_letter, strip_verbatim};
    if cfg!(windows) {
        if let Some(c) = drive_letter(dir.as_os_str()) {
            return PathBuf::from(format!("{c}:"));
        }
        let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        if let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) {
            if let Ok(p) = parent.canonicalize() {
                return strip_verbatim(&p.join(name));
            }
        }
        return strip_verbatim(&abs);
    }
    dir.canonicalize()
        .or_else(|_| std::path::absolute(dir))
        .unwrap_or_else(|_| dir.to_path_buf())
}

/// `major:minor` as records hold it.
pub(crate) fn dev_text(dev: (u32, u32)) -> String {
    format!("{}:{}", dev.0, dev.1)
}

/// The read-write mount at `dir`, or why there is none.
pub fn rw_mount_at(dir: &Path, adapter: &dyn Adapter) -> Result<RwMount> {
    let abs = abs_dir(dir);
    // The daemon whose mount is the one there now (a dying daemon may
    // still be recorded at the same place).
    let dev = adapter.mount_at(&abs).map(|m| dev_text(m.dev));
    let Some(m) = live_mounts()
        .into_iter()
        .filter(|m| Path::new(&m.mountpoint) == abs)
        .find(|m| m.dev.is_none() || m.dev == dev)
    else {
        if let Some(t) = adapter
            .mount_at(&abs)
            .filter(|t| Some(t.fstype.as_str()) == adapter.wimlib_fstype())
        {
            return Err(SessionError::MountedByWimlib {
                message: format!(
                    "{} is mounted by wimlib (type {}), not by wimfs: use `wimlib-imagex unmount \
                     {} --commit` to commit its changes",
                    abs.display(),
                    t.fstype,
                    abs.display()
                ),
                dir: abs,
            });
        }
        return Err(SessionError::NotAMount {
            message: format!("{} is not a wimfs mount", abs.display()),
            dir: abs,
        });
    };
    if !m.is_rw() {
        return Err(SessionError::ReadOnly(abs));
    }
    m.rw().ok_or_else(|| SessionError::NoControlSocket {
        message: format!("the mount at {} has no control socket", abs.display()),
        dir: abs,
    })
}

/// A live read-write mount of the WIM at `wim` (canonical path), if any.
pub fn live_rw_mount_of(wim: &Path) -> Option<RwMount> {
    let w = wim.to_string_lossy();
    live_mounts()
        .into_iter()
        .filter(|m| m.wim == w)
        .find_map(|m| m.rw())
}

/// Where this user's daemons record themselves (state, log, control
/// socket). Nothing here is shared between users: see [`state_private`].
pub fn state_dir() -> PathBuf {
    // Windows: `%LOCALAPPDATA%\wimfs`, created with a protected DACL of
    // its own (the user, SYSTEM, Administrators; see `sys::private_sddl`),
    // not relying on what it would inherit.
    #[cfg(windows)]
    {
        sys::local_app_data()
            .unwrap_or_else(std::env::temp_dir)
            .join("wimfs")
    }
    #[cfg(not(windows))]
    state_dir_unix()
}

#[cfg(not(windows))]
fn state_dir_unix() -> PathBuf {
    let euid = sys::euid();
    if euid == 0 {
        return PathBuf::from("/run/wimfs");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("wimfs"),
        _ => std::env::temp_dir().join(format!("wimfs-{euid}")),
    }
}

/// The state directory, created if needed, checked to be this user's own
/// (not a symlink, owned by us, mode 0700 whatever the umask). In a shared
/// /tmp another user could have made `/tmp/wimfs-UID` first to plant state
/// files, sockets or symlinks: that is refused, with what to do about it.
pub fn state_private() -> Result<PrivateDir> {
    let dir = state_dir();
    PrivateDir::create(&dir).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            format!(
                "; it is not a directory of yours: if someone else created it, remove it (as                  root: rm -r {}), or set XDG_RUNTIME_DIR to a private directory of yours",
                dir.display()
            )
        } else {
            String::new()
        };
        SessionError::failed(
            format!(
                "cannot use the wimfs state directory {}: {e}{hint}",
                dir.display()
            ),
            e,
        )
    })
}

/// The state directory for reading, if it exists and is this user's own;
/// a foreign one is reported once and ignored (nothing in it is trusted).
fn state_existing() -> Option<PrivateDir> {
    let dir = state_dir();
    match PrivateDir::open(&dir) {
        Ok(d) => Some(d),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            log::warn!("ignoring the wimfs state directory {}: {e}", dir.display());
            None
        }
    }
}

/// After a commit made the mount serve another image (`--new-image`):
/// keep what the registry shows true.
pub fn set_image(path: &Path, image: u32, image_name: Option<String>) {
    let Some(mut s) = state_existing().and_then(|d| {
        let name = path.file_name()?;
        read_record(&d, name)
    }) else {
        return;
    };
    s.image = image;
    s.image_name = image_name;
    let _ = write_record(&s);
}

/// A record of the private state directory (owner checked, no symlink
/// followed).
fn read_record(dir: &PrivateDir, name: &std::ffi::OsStr) -> Option<MountRecord> {
    let mut b = Vec::new();
    dir.open_file(name, Access::Read)
        .ok()?
        .read_to_end(&mut b)
        .ok()?;
    serde_json::from_slice(&b).ok()
}

/// Write (or replace) the record of daemon `s.pid`; its path, or `None`
/// (logged) when it cannot be written: the mount then works unlisted.
pub fn write_record(s: &MountRecord) -> Option<PathBuf> {
    let dir = match state_private() {
        Ok(d) => d,
        Err(e) => {
            log::warn!(
                "{}; `wimfs mounts` will not list this mount",
                super::error_text(&e)
            );
            return None;
        }
    };
    let name = format!("{}.json", s.pid);
    let tmp = format!(".{}.json.tmp", s.pid);
    let path = dir.join(&name);
    let body = serde_json::to_vec_pretty(s).ok()?;
    let res = dir
        .remove_file(&tmp)
        .and_then(|_| dir.open_file(&tmp, Access::CreateNew))
        .and_then(|mut f| f.write_all(&body))
        .and_then(|_| dir.rename(&tmp, &name));
    if let Err(e) = res {
        log::warn!(
            "cannot write {}: {e}; `wimfs mounts` will not list this mount",
            path.display()
        );
        return None;
    }
    Some(path)
}

/// Is the daemon that wrote `s` still running? A record is only a claim:
/// the process must be this user's, a mount daemon, and the one that
/// started at the recorded time (not a later one given the same pid).
/// The start time identifies it; the program's name is asked only of a
/// record without one, because the same daemon may run from a binary
/// under another name (`wimfs-dev`, a versioned copy), and taking it for
/// dead would delete the record of a live mount.
pub fn daemon_alive(s: &MountRecord) -> bool {
    alive(s.pid)
        && match s.start_ticks {
            Some(t) => sys::process_start_ticks(s.pid) == Some(t),
            None => sys::process_comm(s.pid).is_some_and(|c| c == "wimfs" || c == own_comm()),
        }
}

/// The name the kernel gives processes of this binary (`comm`: the file
/// name, cut to 15 bytes).
fn own_comm() -> String {
    let name = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "wimfs".into());
    name.chars().take(15).collect()
}

/// Is process `pid` a zombie whose other threads still run? Only asked
/// of a process that was this user's daemon a moment ago.
pub fn threads_left(pid: u32) -> bool {
    match sys::process_is_zombie(pid) {
        None => false,
        // Running normally: `alive` answers for that case.
        Some(false) => false,
        Some(true) => sys::process_thread_count(pid) > 1,
    }
}

/// Is `pid` a live wimfs mount daemon of this user's? (A daemon's command
/// line is that of the `wimfs mount` or `wimfs remount` it was forked or
/// started from.)
fn alive(pid: u32) -> bool {
    if sys::process_uid(pid) != Some(sys::euid()) {
        return false;
    }
    if !sys::process_exists(pid) {
        return false;
    }
    // A recycled pid is told apart by its start time (`daemon_alive`).
    sys::process_is_zombie(pid) == Some(false)
        && (sys::process_has_arg(pid, "mount") || sys::process_has_arg(pid, "remount"))
}

/// Does a daemon log report a real error? (A reply to a request the kernel
/// already gave up on, e.g. during a lazy unmount, is not one.)
pub fn log_has_errors(p: &Path) -> bool {
    std::fs::read_to_string(p).is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("[ERROR") && !l.contains("Failed to send FUSE reply"))
    })
}

/// Mounts of live daemons; records of dead ones are removed. Only a state
/// directory of this user's is read (see [`state_existing`]).
pub fn live_mounts() -> Vec<MountRecord> {
    let Some(dir) = state_existing() else {
        return Vec::new();
    };
    let Ok(names) = dir.names() else {
        return Vec::new();
    };
    let mut v = Vec::new();
    for name in names {
        let p = Path::new(&name);
        let ext = p.extension().and_then(|x| x.to_str());
        let pid = p
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u32>().ok());
        if ext == Some("log") {
            // Logs of dead daemons are kept for a day, and only when they
            // report an error.
            let path = dir.join(&name);
            let old = std::fs::symlink_metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(24 * 3600));
            if pid.is_some_and(|pid| !alive(pid)) && (old || !log_has_errors(&path)) {
                let _ = dir.remove_file(&name);
            }
            continue;
        }
        if ext != Some("json") || is_dead_name(&name) {
            continue;
        }
        let Some(s) = read_record(&dir, &name) else {
            let _ = dir.remove_file(&name);
            continue;
        };
        if Some(s.pid) == pid && daemon_alive(&s) {
            v.push(s);
        } else {
            // A read-write mount whose daemon died keeps its record (as
            // `dead-PID-STARTED.json`, out of a later daemon's way) while
            // its staging holds the changes: `wimfs remount` and `wimfs
            // cleanup` read it (see `super::dead`).
            let keep = Some(s.pid) == pid
                && s.staging
                    .as_deref()
                    .is_some_and(|st| s.is_rw() && crate::overlay::probe(Path::new(st)).is_some());
            if !keep || dir.rename(&name, dead_name(&s)).is_err() {
                let _ = dir.remove_file(&name);
            }
            if let Some(folder) = &s.restore_folder {
                put_back_folder(Path::new(folder));
            }
            if let Some(pid) = pid.filter(|p| !alive(*p)) {
                let _ = dir.remove_file(format!("{pid}.log"));
                let _ = dir.remove_file(format!("{pid}.sock"));
            }
        }
    }
    v.sort_by(|a, b| a.mountpoint.cmp(&b.mountpoint));
    v
}

/// Put back the empty folder a dead daemon's mount replaced, unless
/// something (a folder, a file, a link, a new mount) has taken its place
/// since: only a missing name is created, so nothing is ever replaced or
/// followed. Whether it was put back.
pub(crate) fn put_back_folder(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::create_dir(path) {
            Ok(()) => {
                log::info!(
                    "put back the empty folder {} a dead mount had replaced",
                    path.display()
                );
                true
            }
            Err(e) => {
                log::warn!(
                    "cannot put back the empty folder {} a dead mount had replaced: {e}",
                    path.display()
                );
                false
            }
        },
        _ => false,
    }
}

/// The name a dead daemon's record is kept under (see [`live_mounts`]).
pub(crate) fn dead_name(s: &MountRecord) -> String {
    format!("{DEAD_PREFIX}{}-{}.json", s.pid, s.started)
}

const DEAD_PREFIX: &str = "dead-";

/// Is `name` the record of a dead daemon, kept for remount and cleanup?
pub(crate) fn is_dead_name(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| n.starts_with(DEAD_PREFIX) && n.ends_with(".json"))
}

/// The records of dead daemons kept by [`live_mounts`] (which it calls
/// first, so the newly dead are among them): their file names in the state
/// directory and what they say.
pub(crate) fn dead_records() -> Vec<(std::ffi::OsString, MountRecord)> {
    let _ = live_mounts();
    let Some(dir) = state_existing() else {
        return Vec::new();
    };
    let mut v: Vec<_> = dir
        .names()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| is_dead_name(n))
        .filter_map(|n| read_record(&dir, &n).map(|r| (n, r)))
        .collect();
    v.sort_by(|a, b| {
        a.1.mountpoint
            .cmp(&b.1.mountpoint)
            .then(a.1.started.cmp(&b.1.started))
    });
    v
}

/// Forget the records of dead daemons whose staging is `staging`: a new
/// mount (this process) resumed it, so there is nothing left to remount or
/// clean up. Records of daemons that died since anyone last listed are
/// still under their pid; any other live daemon with this staging cannot
/// exist (the WIM's lock keeps a second read-write mount out).
pub(crate) fn forget_dead_of_staging(staging: &str) {
    let Some(dir) = state_existing() else {
        return;
    };
    let me = std::process::id();
    for n in dir.names().unwrap_or_default() {
        if Path::new(&n).extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let Some(r) = read_record(&dir, &n) else {
            continue;
        };
        if r.pid == me || r.staging.as_deref() != Some(staging) {
            continue;
        }
        if is_dead_name(&n) || !daemon_alive(&r) {
            let _ = dir.remove_file(&n);
        }
    }
}

/// Forget the dead daemon's record `name` (from [`dead_records`]).
pub(crate) fn remove_dead_record(name: &std::ffi::OsStr) -> std::io::Result<()> {
    match state_existing() {
        Some(dir) if is_dead_name(name) => dir.remove_file(name),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod dead_record_tests {
    use super::*;

    #[test]
    fn dead_records_have_names_no_live_record_can_take() {
        let r = MountRecord {
            pid: 4242,
            wim: "/w/a.wim".into(),
            image: 2,
            image_name: None,
            mode: "rw".into(),
            mountpoint: "/mnt".into(),
            started: 1_700_000_000,
            start_ticks: None,
            staging: Some("/w/.a.wim.wimfs-staging-2".into()),
            socket: None,
            dev: None,
            mount_id: None,
            restore_folder: None,
        };
        let n = dead_name(&r);
        assert_eq!(n, "dead-4242-1700000000.json");
        assert!(is_dead_name(std::ffi::OsStr::new(&n)));
        // A live daemon's record, log and socket are not dead records.
        for live in [
            "4242.json",
            "4242.log",
            "4242.sock",
            "dead-4242.log",
            ".4242.json.tmp",
        ] {
            assert!(!is_dead_name(std::ffi::OsStr::new(live)), "{live}");
        }
        // And a dead record's stem is no pid: the live listing skips it.
        let stem = Path::new(&n).file_stem().and_then(|s| s.to_str()).unwrap();
        assert!(stem.parse::<u32>().is_err());
    }
}
