//! The exclusive lock held on a WIM while it is mounted read-write or being
//! written. It is a `flock` on the file itself, the same lock wimlib takes,
//! so wimfs and wimlib never write one WIM at the same time.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

pub struct WimLock {
    pub file: File,
    pub path: PathBuf,
}

impl WimLock {
    /// Open `path` read-write and lock it, failing at once if another
    /// process holds the lock.
    pub fn acquire(path: &Path) -> Result<WimLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::Io {
                path: path.display().to_string(),
                err: e,
            })?;
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            // SAFETY: flock on a valid descriptor we own.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    return Err(Error::Other(format!(
                        "{} is locked by another process (a read-write mount or a running write, \
                         by wimfs or wimlib); unmount or wait for it first",
                        path.display()
                    )));
                }
                return Err(Error::Io {
                    path: path.display().to_string(),
                    err: e,
                });
            }
        }
        Ok(WimLock {
            file,
            path: path.to_path_buf(),
        })
    }
}
