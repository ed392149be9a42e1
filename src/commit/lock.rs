//! The exclusive lock held on a WIM while it is mounted read-write or being
//! written. It is a `flock` on the file itself, the same lock wimlib takes,
//! so wimfs and wimlib never write one WIM at the same time.

use crate::error::{Error, Result};
use crate::wim::Wim;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
        // On Windows `sys::try_lock` takes no lock yet (see there).
        match crate::sys::try_lock(&file) {
            Ok(true) => {}
            Ok(false) => {
                return Err(Error::Other(format!(
                    "{} is locked by another process (a read-write mount or a running write, \
                     by wimfs or wimlib); unmount or wait for it first",
                    path.display()
                )));
            }
            Err(e) => {
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

    /// Fail unless the locked file is still the one `path` names (same
    /// device and inode). Another program (wimlib-imagex optimize, a copy
    /// over it, a rename) may have put a new file at the path while a
    /// mount held the lock on the old one: the lock then protects nothing,
    /// and a commit through the locked descriptor would land in a file that
    /// nobody will ever open again. Called before a commit writes anything
    /// and again before the caller forgets the changes it committed.
    pub fn still_at_path(&self) -> Result<()> {
        let locked = crate::sys::file_id(&self.file).map_err(|e| Error::Io {
            path: self.path.display().to_string(),
            err: e,
        })?;
        match crate::sys::path_id(&self.path) {
            Ok(now) if now == locked => Ok(()),
            Ok(_) => Err(Error::WimReplaced {
                path: self.path.display().to_string(),
                how: "replaced by another file",
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::WimReplaced {
                path: self.path.display().to_string(),
                how: "moved or deleted",
            }),
            Err(e) => Err(Error::Io {
                path: self.path.display().to_string(),
                err: e,
            }),
        }
    }

    /// Fail unless the locked file still has the header `wim` was read
    /// with: a WIM opened by path and locked afterwards may have been
    /// replaced or rewritten in between, and a mount over the old one would
    /// later commit a tree whose blobs the locked file may not have.
    pub fn matches(&self, wim: &Wim) -> Result<()> {
        let mut hb = vec![0u8; crate::wim::header::HEADER_SIZE];
        let io = |e| Error::Io {
            path: self.path.display().to_string(),
            err: e,
        };
        let src = crate::io::FileSource::new(self.file.try_clone().map_err(io)?).map_err(io)?;
        let same = src
            .read_exact_at_io(&mut hb, 0)
            .ok()
            .and_then(|()| crate::wim::header::Header::parse(&hb).ok())
            .is_some_and(|h| h.write() == wim.header.write());
        if same {
            Ok(())
        } else {
            Err(Error::Other(format!(
                "{} changed while it was being opened (another program wrote or replaced \
                 it); try again",
                self.path.display()
            )))
        }
    }

    /// The WIM as the locked file holds it, read through the locked
    /// descriptor (never through the path, which may by now name another
    /// file).
    pub fn open_wim(&self) -> Result<Wim> {
        let f = self.file.try_clone().map_err(|e| Error::Io {
            path: self.path.display().to_string(),
            err: e,
        })?;
        let src = crate::io::FileSource::new(f).map_err(|e| Error::Io {
            path: self.path.display().to_string(),
            err: e,
        })?;
        Wim::from_source(&self.path, Arc::new(src))
    }
}
