//! Starting a mount daemon and its readiness handshake.
//!
//! `mount` returns once the mount is live. Unless in the foreground the
//! daemon is a fresh process in a new session: a fork of the caller while
//! it has one thread (a full copy that may run anything, and a couple of
//! milliseconds sooner than starting the binary again, which is much of a
//! small image's mount time), else the binary run again (so no thread of
//! the parent, e.g. a rayon pool, is ever carried across a bare fork).
//! The daemon reports readiness or the error on its stdout, a pipe to the
//! parent, one line each: the parent returns only after reading "ready",
//! and the daemon's error otherwise. On Windows there is no fork: the
//! binary is always started again, detached from the console, with the
//! same handshake.

use super::adapter::Adapter;
use super::error::{Result, SessionError};
use super::spec::MountSpec;
use std::path::PathBuf;

/// The daemon's line once its mount is live.
pub const READY: &str = "wimfs-ready";
/// The daemon's line for the error that stopped it (newlines as `\n`).
pub const FAILED: &str = "wimfs-error: ";
/// A message for the user from the daemon before it is ready.
pub const INFO: &str = "wimfs-info: ";

/// Where a session's messages for the user go.
pub(crate) enum Voice<'a> {
    /// In the foreground: straight to the user.
    Terminal(&'a dyn Fn(&str)),
    /// A daemon: up the pipe to the process that started it, which says
    /// it to the user.
    #[cfg_attr(not(any(unix, windows)), allow(dead_code))]
    Pipe,
}

impl Voice<'_> {
    pub(crate) fn say(&self, m: &str) {
        match self {
            Voice::Terminal(tell) => tell(m),
            Voice::Pipe => {
                use std::io::Write;
                let mut out = std::io::stdout();
                let _ = writeln!(out, "{INFO}{m}");
                let _ = out.flush();
            }
        }
    }

    pub(crate) fn is_daemon(&self) -> bool {
        matches!(self, Voice::Pipe)
    }
}

/// What the daemon said on its pipe: ready, or the error it met. Its
/// messages for the user go to `tell` first. `wait` reaps the daemon and
/// says how it ended (asked only when it did not get ready).
pub fn daemon_word(msg: &str, wait: impl FnOnce() -> String, tell: &dyn Fn(&str)) -> Result<()> {
    for l in msg.lines().filter_map(|l| l.strip_prefix(INFO)) {
        tell(l);
    }
    if msg.lines().any(|l| l == READY) {
        return Ok(());
    }
    let status = wait();
    if let Some(err) = msg.lines().find_map(|l| l.strip_prefix(FAILED)) {
        return Err(SessionError::DaemonFailed(err.replace("\\n", "\n")));
    }
    Err(SessionError::DaemonExited(status))
}

/// Start the daemon for `spec` at `abs` (the mount point as checked by
/// [`super::check_mountpoint`]) and return once its mount is live.
/// `reexec`: the arguments that make this binary run as the daemon
/// ([`daemon_child`]), used when forking is not possible. `tell` says the
/// daemon's messages to the user.
#[cfg(unix)]
pub fn start(
    spec: &MountSpec,
    adapter: &dyn Adapter,
    abs: PathBuf,
    reexec: &[std::ffi::OsString],
    tell: &dyn Fn(&str),
) -> Result<()> {
    use crate::sys;
    use std::io::Read;
    let Ok((r, w)) = sys::pipe_cloexec() else {
        return spawn(reexec, tell);
    };
    let pid = match sys::fork_single_threaded() {
        Ok(sys::Forked::Parent(pid)) => pid,
        Ok(sys::Forked::Child) => {
            // The daemon: its stdout is the pipe, stdin and stderr /dev/null
            // (daemon_child sends stderr to its log).
            drop(r);
            let _ = sys::redirect_fd(&w, 1);
            drop(w);
            if let Ok(null) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                let _ = sys::redirect_fd(&null, 0);
                let _ = sys::redirect_fd(&null, 2);
            }
            let code = match daemon_child(spec, adapter, Some(abs)) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            std::process::exit(code);
        }
        Err(_) => return spawn(reexec, tell),
    };
    // The parent keeps only the read end.
    drop(w);
    let mut out = std::fs::File::from(r);
    let mut msg = String::new();
    let _ = out.read_to_string(&mut msg);
    daemon_word(&msg, || format!("status {}", sys::wait_child(pid)), tell)
}

/// Start this binary again as the daemon and wait for its word (on
/// Windows detached from the console: `DETACHED_PROCESS`, no window, a
/// process group of its own); its stdout is a pipe to this process
/// carrying the daemon's words.
fn spawn(reexec: &[std::ffi::OsString], tell: &dyn Fn(&str)) -> Result<()> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe()
        .map_err(|e| SessionError::failed("cannot find the wimfs executable", e))?;
    let mut cmd = Command::new(exe);
    cmd.args(reexec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        const DETACHED_PROCESS: u32 = 0x0000_0008;
        const CREATE_NO_WINDOW: u32 = 0x0800_0000;
        const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
        cmd.creation_flags(DETACHED_PROCESS | CREATE_NO_WINDOW | CREATE_NEW_PROCESS_GROUP);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| SessionError::failed("cannot start the mount daemon", e))?;
    let mut msg = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut msg);
    }
    daemon_word(
        &msg,
        || {
            child
                .wait()
                .map_or_else(|e| format!("cannot wait: {e}"), |s| s.to_string())
        },
        tell,
    )
}

/// The daemon side: a new session, logging to a file in the state
/// directory, then serve. Any error before the mount is live goes back to
/// the parent on stdout. `abs`: the mount point as the parent checked it
/// (a forked daemon does not check again).
#[cfg(any(unix, windows))]
pub fn daemon_child(spec: &MountSpec, adapter: &dyn Adapter, abs: Option<PathBuf>) -> Result<()> {
    use crate::sys::Access;
    use std::io::Write;
    // Detach this fresh process (not a group leader) from the terminal's
    // session (Windows: started detached already).
    #[cfg(unix)]
    let _ = crate::sys::new_session();
    let log_name = format!("{}.log", std::process::id());
    let res = super::registry::state_private().and_then(|sd| {
        // A log of this pid can only be a dead process's (or something
        // planted): replace it, creating the file afresh without following
        // a symlink.
        sd.remove_file(&log_name)
            .and_then(|_| sd.open_file(&log_name, Access::CreateNew))
            .and_then(|f| log_to(&f))
            .map_err(|e| {
                SessionError::failed(
                    format!(
                        "cannot create the daemon log {}",
                        sd.join(&log_name).display()
                    ),
                    e,
                )
            })?;
        let abs = match abs {
            Some(abs) => abs,
            None => super::serve::check_mountpoint(&spec.dir, adapter)?,
        };
        let res = super::serve::serve(spec, adapter, &abs, Some(sd.join(&log_name)), Voice::Pipe);
        if res.is_err() {
            let _ = sd.remove_file(&log_name);
        }
        res
    });
    if let Err(e) = &res {
        let one = super::error_text(e).replace('\n', "\\n");
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{FAILED}{one}");
        let _ = out.flush();
    }
    res
}

/// Point standard error at the daemon's log. On Unix fd 2 was /dev/null,
/// and a daemon that cannot redirect it still serves (as before); on
/// Windows the handle must be replaced for the log to exist at all.
#[cfg(unix)]
fn log_to(f: &std::fs::File) -> std::io::Result<()> {
    let _ = crate::sys::redirect_fd(f, 2);
    Ok(())
}

#[cfg(windows)]
fn log_to(f: &std::fs::File) -> std::io::Result<()> {
    crate::sys::redirect_stderr(f)
}

/// The daemon has its mount: tell the parent, then let go of its pipe and
/// of the working directory.
#[cfg(unix)]
pub(crate) fn ready() {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{READY}");
    let _ = out.flush();
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        // fd 1 becomes /dev/null, closing the pipe.
        let _ = crate::sys::redirect_fd(&null, 1);
    }
    let _ = std::env::set_current_dir("/");
}

/// Windows: start this binary again as the daemon, detached from the
/// console (`DETACHED_PROCESS`, no window), its stdout a pipe to this
/// process carrying the same words as on Unix; return once it said
/// "ready" (or why not).
#[cfg(windows)]
pub fn start(
    _spec: &MountSpec,
    _adapter: &dyn Adapter,
    _abs: PathBuf,
    reexec: &[std::ffi::OsString],
    tell: &dyn Fn(&str),
) -> Result<()> {
    spawn(reexec, tell)
}

/// Windows: the mount is live: say so, then close the pipe (the parent
/// reads to its end) and let go of the working directory.
#[cfg(windows)]
pub(crate) fn ready() {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{READY}");
    let _ = out.flush();
    crate::sys::close_stdout();
    let _ = std::env::set_current_dir("\\");
}

#[cfg(not(any(unix, windows)))]
const NO_DAEMON: &str = "a background mount daemon is not supported on this platform";

#[cfg(not(any(unix, windows)))]
pub fn start(
    _spec: &MountSpec,
    _adapter: &dyn Adapter,
    _abs: PathBuf,
    _reexec: &[std::ffi::OsString],
    _tell: &dyn Fn(&str),
) -> Result<()> {
    Err(SessionError::Unsupported(NO_DAEMON))
}

#[cfg(not(any(unix, windows)))]
pub fn daemon_child(
    _spec: &MountSpec,
    _adapter: &dyn Adapter,
    _abs: Option<PathBuf>,
) -> Result<()> {
    Err(SessionError::Unsupported(NO_DAEMON))
}

#[cfg(not(any(unix, windows)))]
pub(crate) fn ready() {}

/// On SIGINT/SIGTERM/SIGHUP, unmount (which ends the session loop) instead
/// of dying and leaving a dead mount behind.
#[cfg(unix)]
pub(crate) fn unmount_on_signal(unmounter: std::sync::Arc<dyn super::adapter::Unmount>) {
    let Some(waiter) = crate::sys::install_stop_signals() else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("wimfs-signal".into())
        .spawn(move || {
            if waiter.wait() {
                log::info!("signal received: unmounting");
                match unmounter.unmount() {
                    Ok(true) => {}
                    Ok(false) => log::info!("the mount was already gone: nothing to unmount"),
                    Err(e) => log::error!("unmount failed: {e}"),
                }
            }
        });
}

/// Stop signals are the adapter's business where there are none.
#[cfg(not(unix))]
pub(crate) fn unmount_on_signal(_unmounter: std::sync::Arc<dyn super::adapter::Unmount>) {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn daemon_word_reads_ready_info_and_errors() {
        let said = RefCell::new(Vec::new());
        let tell = |m: &str| said.borrow_mut().push(m.to_string());
        let msg = format!("{INFO}resuming\n{READY}\n");
        assert!(daemon_word(&msg, || unreachable!(), &tell).is_ok());
        assert_eq!(*said.borrow(), ["resuming"]);

        let msg = format!("{INFO}x\n{FAILED}cannot open a\\nsecond line\n");
        match daemon_word(&msg, || "status 1".into(), &tell) {
            Err(SessionError::DaemonFailed(m)) => assert_eq!(m, "cannot open a\nsecond line"),
            other => panic!("{other:?}"),
        }
        match daemon_word("", || "signal 9".into(), &tell) {
            Err(e @ SessionError::DaemonExited(_)) => assert_eq!(
                e.to_string(),
                "the mount daemon exited (signal 9) before the mount was ready"
            ),
            other => panic!("{other:?}"),
        }
    }
}
