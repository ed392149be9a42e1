//! Taking a mount down from outside its daemon (`wimfs unmount`): which
//! mounts may be taken down, and the unmount itself, which waits until the
//! daemon (and with it the WIM's lock) is gone.

use super::adapter::Adapter;
use super::error::{Result, SessionError};
use super::registry::{self, MountRecord};
use std::path::Path;
use std::time::{Duration, Instant};

/// Is the mount at `abs` one `wimfs unmount` may take down? Yes for the
/// mount of a live daemon of this user's (the same mount it recorded:
/// `Some(record)`), and for a dead wimfs mount (its daemon gone: ENOTCONN),
/// which only needs clearing (`None`). Anything else is refused, naming
/// what it is and how to unmount it: a wimlib mount must go through
/// `wimlib-imagex unmount`, or a read-write one loses its changes.
pub fn check_ours(abs: &Path, adapter: &dyn Adapter) -> Result<Option<MountRecord>> {
    // The live daemons recorded at `abs` (a dying one may still be recorded
    // beside the one mounted there now).
    let entries: Vec<MountRecord> = registry::live_mounts()
        .into_iter()
        .filter(|m| Path::new(&m.mountpoint) == abs)
        .collect();
    let Some(m) = adapter.mount_at(abs) else {
        return Err(SessionError::NotMounted(abs.to_path_buf()));
    };
    let dev = registry::dev_text(m.dev);
    if let Some(e) = entries.into_iter().find(|e| match &e.dev {
        Some(d) => *d == dev,
        None => m.fstype.starts_with("fuse"),
    }) {
        return Ok(Some(e));
    }
    // ENOTCONN, or ECONNABORTED once the kernel aborted the connection
    // (the daemon was killed).
    let dead = super::dead::is_dead_mount(abs);
    if Some(m.fstype.as_str()) == adapter.wimlib_fstype() {
        let message = if dead {
            format!(
                "{} is a dead wimlib mount (type {}, daemon gone); clear it with \
                 `fusermount3 -u {}`",
                abs.display(),
                m.fstype,
                abs.display()
            )
        } else {
            format!(
                "{} is mounted by wimlib (type {}, source {}), not by wimfs: unmount it with \
                 `wimlib-imagex unmount {}` (add --commit to keep the changes of a read-write \
                 mount)",
                abs.display(),
                m.fstype,
                m.source,
                abs.display()
            )
        };
        return Err(SessionError::MountedByWimlib {
            dir: abs.to_path_buf(),
            message,
        });
    }
    if m.fstype == adapter.fstype() {
        if dead {
            return Ok(None);
        }
        return Err(SessionError::ForeignMount {
            dir: abs.to_path_buf(),
            message: format!(
                "{} is a wimfs mount ({}) without a live daemon of yours recorded for it \
                 (another user's mount?): unmount it as the user who mounted it",
                abs.display(),
                m.source
            ),
        });
    }
    Err(SessionError::NotAMount {
        dir: abs.to_path_buf(),
        message: format!(
            "{} is not a wimfs mount (type {}, source {}): refusing to unmount it; use umount",
            abs.display(),
            m.fstype,
            m.source
        ),
    })
}

/// Unmount `abs` (`lazy`: detach even if files are open), if it is still
/// the mount `entry` recorded, and wait for that daemon to be gone.
pub fn take_down(
    abs: &Path,
    entry: Option<&MountRecord>,
    lazy: bool,
    adapter: &dyn Adapter,
) -> Result<()> {
    // A commit may have taken a while: check again, right before, that
    // the mount there is still the daemon's.
    if let Some(d) = entry.and_then(|e| e.dev.as_ref()) {
        let now = adapter.mount_at(abs).map(|m| registry::dev_text(m.dev));
        if now.as_ref() != Some(d) {
            return Err(SessionError::Unmount {
                dir: abs.to_path_buf(),
                message: format!(
                    "{} is no longer the wimfs mount it was (unmounted from outside, or \
                     something else is mounted there now): not unmounting it",
                    abs.display()
                ),
            });
        }
    }
    if let Err(e) = adapter.unmount_path(abs, lazy) {
        let message = if e.kind() == std::io::ErrorKind::ResourceBusy {
            format!(
                "cannot unmount {}: it is busy (files open or a shell inside it?); try --lazy",
                abs.display()
            )
        } else {
            format!("cannot unmount {}: {e}", abs.display())
        };
        return Err(SessionError::Unmount {
            dir: abs.to_path_buf(),
            message,
        });
    }
    if let Some(m) = entry {
        let t = Instant::now();
        // Until every thread is gone: a daemon whose main thread has
        // exited (a zombie leader) while others still run keeps its files
        // open, and with them the WIM's lock, so a `mount --rw` right after
        // the unmount would find the WIM locked.
        while registry::daemon_alive(m) || registry::threads_left(m.pid) {
            if t.elapsed() > Duration::from_secs(30) {
                log::warn!("daemon {} has not exited 30 s after the unmount", m.pid);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}
