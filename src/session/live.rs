//! The live commit: a read-write mount's changes written into the WIM
//! while it stays mounted, after which the mount serves the new image.

use super::control::Control;
use super::error::{Result, SessionError};
use crate::commit::{self, CommitOptions, CommitReport};
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Control {
    /// Commit the mount's changes into the WIM and carry on from the new
    /// image.
    pub fn commit(&self, check: bool, force: bool, new_image: bool) -> Result<CommitReport> {
        let mut index = self.index.lock();
        // The kernel sends RELEASE after close(2) has returned: give the
        // handles of files just closed a moment to arrive.
        let t = Instant::now();
        while self.vfs.open_handles() > 0 && t.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let open = self.vfs.open_handles();
        if open > 0 && !force {
            return Err(SessionError::OpenFiles(open));
        }
        self.vfs
            .sync()
            .map_err(|e| SessionError::failed("cannot sync the staging", e))?;
        let g = self.vfs.freeze()?;
        if self.vfs.is_unchanged() && !new_image && !check {
            let file_size = self
                .lock
                .file
                .metadata()
                .map_err(|e| {
                    SessionError::failed(format!("cannot stat {}", self.lock.path.display()), e)
                })?
                .len();
            log::info!("commit: no change since the last commit, nothing written");
            return Ok(CommitReport {
                image: *index,
                file_size,
                nothing_to_commit: true,
                ..CommitReport::default()
            });
        }
        let img = self
            .vfs
            .to_new_image()
            .map_err(|e| SessionError::failed("cannot read the changed tree", e))?;
        let opts = CommitOptions {
            new_image,
            image_name: None,
            image_description: None,
            check,
        };
        let rep = commit::append_image_with(&self.lock, *index, img, &opts, &|_, _| {}, &mut |l| {
            self.vfs.note_landing(l).map_err(|e| {
                crate::Error::Other(format!("cannot record the commit in the staging: {e}"))
            })
        });
        let rep = match rep {
            Ok(r) => r,
            Err(e @ crate::Error::WimReplaced { .. }) => {
                self.vfs.clear_landing();
                return Err(SessionError::ChangesKept(format!("{e}; {}", self.kept())));
            }
            Err(e) => {
                self.vfs.clear_landing();
                return Err(SessionError::failed(
                    format!("commit to {} failed", self.lock.path.display()),
                    e,
                ));
            }
        };
        if rep.nothing_to_commit {
            self.vfs.clear_landing();
            log::info!("commit: image {} is unchanged, nothing written", rep.image);
            return Ok(rep);
        }
        // The commit went into the locked file: if the path names another
        // one by now, the changes are not in the WIM the user will open, so
        // the staging must keep them.
        if let Err(e) = self.lock.still_at_path() {
            self.vfs.clear_landing();
            return Err(SessionError::ChangesKept(format!(
                "{e}, but this commit went into the file that was there before (which no \
                 longer has a name); {}",
                self.kept()
            )));
        }
        let wim = Arc::new(self.lock.open_wim().map_err(|e| {
            SessionError::failed(format!("cannot reopen {}", self.lock.path.display()), e)
        })?);
        let new_name = wim.info(rep.image).and_then(|i| i.name.clone());
        self.vfs
            .after_commit(&g, wim, rep.image)
            .map_err(|e| SessionError::failed("committed, but could not reset the staging", e))?;
        drop(g);
        // The commit's snapshot and its walk of the committed image are
        // gone: give their pages back, so the daemon's resident size is
        // what it holds.
        crate::sys::release_free_memory();
        if *index != rep.image {
            if let Some(p) = self.record.lock().as_ref() {
                super::registry::set_image(p, rep.image, new_name);
            }
        }
        *index = rep.image;
        log::info!(
            "committed image {}: {} new blobs, {} bytes added",
            rep.image,
            rep.new_blobs,
            rep.bytes_added
        );
        Ok(rep)
    }

    /// What becomes of the changes when a commit is refused because the
    /// WIM was replaced.
    fn kept(&self) -> String {
        format!(
            "every change is kept in the staging {} and still shown in the mount (copy out \
             what you need; `fusermount3 -u` on the mount point stops it and keeps the \
             staging, which `wimfs recover` then lists)",
            self.staging.display()
        )
    }
}
