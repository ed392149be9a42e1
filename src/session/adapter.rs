//! The seam to the platform: what a session needs of a filesystem adapter
//! (FUSE on Linux, WinFsp on Windows). The adapter translates; everything
//! about the mount's life (daemon, registry, control, commit, cleanup)
//! stays here, so a second adapter reuses it instead of copying it.

use crate::vfs::Vfs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to mount: the few choices the command line exposes.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Request threads (each answers its requests itself).
    pub threads: usize,
    /// Let other users see the mount.
    pub allow_other: bool,
    /// Shown as the source in the mount table.
    pub fsname: String,
}

/// Which mount is a daemon's own, recorded right after mounting, so that
/// it (and `wimfs unmount`) can tell it from whatever is mounted at the
/// same path later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountIdentity {
    pub mount_point: PathBuf,
    pub mount_id: u64,
    pub dev: (u32, u32),
}

/// A platform's filesystem adapter.
pub trait Adapter: Send + Sync {
    /// The filesystem type this adapter's mounts have in the mount table.
    fn fstype(&self) -> &str;

    /// The filesystem type of wimlib's own mounts, which look alike and
    /// must be told apart (none where wimlib does not mount).
    fn wimlib_fstype(&self) -> Option<&str> {
        None
    }

    /// Is the platform's filesystem driver there? The error is the whole
    /// message for the user.
    fn check_available(&self) -> Result<(), String>;

    /// Mount `vfs` at `dir`; returns once the mount is usable.
    fn mount(
        &self,
        vfs: Arc<Vfs>,
        dir: &Path,
        opts: &MountOptions,
    ) -> io::Result<Box<dyn MountedFs>>;

    /// What a failed [`Adapter::mount`] likely means, as a hint appended
    /// to the error (` (the mount point is busy)`), or nothing.
    fn mount_error_hint(&self, _e: &io::Error) -> &'static str {
        ""
    }

    /// Take down the mount at `dir` from outside its daemon (`wimfs
    /// unmount`), `lazy` to detach it while files are open. A busy mount
    /// fails with [`io::ErrorKind::ResourceBusy`].
    fn unmount_path(&self, dir: &Path, lazy: bool) -> io::Result<()>;

    /// Can only the daemon take its mount down (WinFsp: the volume belongs
    /// to the process)? Then even a read-only mount gets a control channel,
    /// and [`Adapter::unmount_path`] asks the daemon over it.
    fn unmount_through_daemon(&self) -> bool {
        false
    }

    /// What this adapter can mount on (an existing directory by default).
    fn mount_point_rule(&self) -> super::mountpoint::MountPointRule {
        super::mountpoint::MountPointRule::ExistingDir
    }

    /// What is mounted at `dir`: the kernel's mount table by default. An
    /// adapter whose mounts the system lists nowhere (WinFsp) answers from
    /// its daemons' records, with the identity its [`MountedFs::identity`]
    /// reports, so the session's checks read the same on every platform.
    fn mount_at(&self, dir: &Path) -> Option<crate::sys::MountEntry> {
        crate::sys::mount_at(dir)
    }
}

/// A live mount, owned by its daemon.
pub trait MountedFs: Send {
    /// Something another thread (a signal) can use to end the mount.
    fn unmounter(&self) -> Arc<dyn Unmount>;

    /// The mount as the kernel identifies it.
    fn identity(&self) -> MountIdentity;

    /// Serve until the filesystem is unmounted (or the session fails).
    /// Unmounts nothing itself: [`Unmount::unmount`] after does, if the
    /// mount is still this one.
    fn run(self: Box<Self>) -> io::Result<()>;

    /// An empty folder this mount removed to take its place (WinFsp
    /// mounts on a folder it creates); the registry records it so that it
    /// is put back even if the daemon is killed. FUSE mounts over a folder
    /// and replaces none.
    fn replaced_folder(&self) -> Option<PathBuf> {
        None
    }
}

/// Ends a daemon's own mount, and nothing else.
pub trait Unmount: Send + Sync {
    /// Unmount if the mount point still holds this daemon's mount (checked
    /// immediately before); `Ok(false)` when it does not.
    fn unmount(&self) -> io::Result<bool>;

    /// Is the mount point still this daemon's mount (same identity, and
    /// the connection still up)?
    fn still_ours(&self) -> bool;
}
