//! Windows implementation of [`crate::sys`].
//!
//! The per-user protections come from where the state lives (under the
//! user's local app data, whose ACL admits only the user, SYSTEM and
//! administrators) rather than from mode bits; files are opened by path.
//! Reparse points (Windows' symlinks) in a private directory are refused.

use super::Access;
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::fs::MetadataExt;
use std::path::{Path, PathBuf};

const FILE_ATTRIBUTE_REPARSE_POINT: u32 = 0x400;

/// Windows has no uid; every caller is "this user".
pub fn euid() -> u32 {
    0
}

/// FIFOs, devices and sockets do not exist on Windows.
pub fn make_node(path: &Path, _mode: u32, _rdev: u64) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "{}: Windows has no FIFOs, devices or sockets",
            path.display()
        ),
    ))
}

fn refuse_reparse(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is a symbolic link or junction: refusing to follow it",
                path.display()
            ),
        )),
        _ => Ok(()),
    }
}

/// A directory of this user's, opened by path.
#[derive(Debug)]
pub struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    pub fn create(path: &Path) -> io::Result<PrivateDir> {
        match std::fs::create_dir(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        Self::open(path)
    }

    pub fn open(path: &Path) -> io::Result<PrivateDir> {
        refuse_reparse(path)?;
        if !std::fs::metadata(path)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a directory", path.display()),
            ));
        }
        Ok(PrivateDir {
            path: path.to_path_buf(),
        })
    }

    pub fn open_as_is(path: &Path) -> io::Result<PrivateDir> {
        Self::open(path)
    }

    pub fn narrow(&self) -> io::Result<()> {
        Ok(())
    }

    pub fn subdir_as_is(&self, name: impl AsRef<OsStr>, create: bool) -> io::Result<PrivateDir> {
        self.subdir(name, create)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.path.join(name.as_ref())
    }

    pub fn subdir(&self, name: impl AsRef<OsStr>, create: bool) -> io::Result<PrivateDir> {
        let p = self.join(name);
        if create {
            Self::create(&p)
        } else {
            Self::open(&p)
        }
    }

    pub fn open_file(&self, name: impl AsRef<OsStr>, access: Access) -> io::Result<File> {
        let p = self.join(name);
        refuse_reparse(&p)?;
        let mut o = OpenOptions::new();
        match access {
            Access::Read => o.read(true),
            Access::ReadWrite => o.read(true).write(true),
            Access::Create => o.read(true).write(true).create(true),
            Access::CreateNew => o.read(true).write(true).create_new(true),
            Access::Truncate => o.write(true).create(true).truncate(true),
            Access::Append => o.append(true).create(true),
        };
        o.open(&p)
    }

    pub fn exists(&self, name: impl AsRef<OsStr>) -> bool {
        std::fs::symlink_metadata(self.join(name)).is_ok()
    }

    pub fn remove_file(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        match std::fs::remove_file(self.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub fn rename(&self, from: impl AsRef<OsStr>, to: impl AsRef<OsStr>) -> io::Result<()> {
        std::fs::rename(self.join(from), self.join(to))
    }

    pub fn names(&self) -> io::Result<Vec<OsString>> {
        std::fs::read_dir(&self.path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect()
    }

    pub fn remove_tree(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        let p = self.join(name);
        match std::fs::symlink_metadata(&p) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
            // remove_dir_all does not follow reparse points.
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
            Ok(_) => std::fs::remove_file(&p),
        }
    }

    pub fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}

pub fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:016x}", h.finish())
}

/// Create `path` exclusively (fails if anything exists under the name).
pub fn create_exclusive(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
}

/// Volume serial and file index would be the identity; std does not expose
/// them on stable, so the creation time and size stand in.
pub fn file_id(f: &File) -> io::Result<(u64, u64)> {
    let m = f.metadata()?;
    Ok((m.creation_time(), m.file_size()))
}

pub fn path_id(path: &Path) -> io::Result<(u64, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.creation_time(), m.file_size()))
}

/// What is mounted where (Linux notion; WinFsp mounts are not listed here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_id: u64,
    pub dev: (u32, u32),
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// No mount table to read on Windows: nothing is listed.
pub fn mounts() -> io::Result<Vec<MountEntry>> {
    Ok(Vec::new())
}

pub fn mount_at(_path: &Path) -> Option<MountEntry> {
    None
}

pub fn unescape_mountinfo(s: &str) -> OsString {
    OsString::from(s)
}

/// WinFsp unmounts through its own API, not by path.
pub fn unmount(path: &Path, _lazy: bool) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!("cannot unmount {} this way on Windows", path.display()),
    ))
}

/// The control channel on Windows will be a named pipe whose ACL admits
/// only the user; no peer check is available here yet.
pub fn peer_uid<T>(_s: &T) -> io::Result<u32> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "peer credentials are not available on Windows",
    ))
}

/// No /proc: process ownership cannot be read this way.
pub fn process_uid(_pid: u32) -> Option<u32> {
    None
}

/// See the Unix version; Windows stands in creation time and size.
pub fn link_id(path: &Path) -> io::Result<(u64, u64)> {
    let m = std::fs::symlink_metadata(path)?;
    Ok((m.creation_time(), m.file_size()))
}

/// Create `path` and missing parents (protection comes from the ACL of
/// where they live).
pub fn create_dir_all_private(path: &Path) -> io::Result<()> {
    std::fs::create_dir_all(path)
}

/// Open an existing regular file for reading, refusing a reparse point.
pub fn open_own_file(path: &Path) -> io::Result<File> {
    refuse_reparse(path)?;
    let f = File::open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a regular file: refusing to use it",
                path.display()
            ),
        ));
    }
    Ok(f)
}

/// No advisory lock here: std's `File::try_lock` needs Rust 1.89, newer
/// than the MSRV (1.87), so this always reports the lock as taken. An open
/// file cannot be deleted on Windows anyway, so a live one survives a
/// cleanup; but a WIM being written by another process is not detected
/// (`WimLock` takes no real lock on Windows yet).
pub fn try_lock(_f: &File) -> io::Result<bool> {
    Ok(true)
}

/// Free and total bytes of the filesystem holding `dir`: not read on
/// Windows yet (std has no API for it), so always `None`.
pub fn fs_space(_dir: &Path) -> Option<(u64, u64)> {
    None
}

/// No mapped slabs on Windows yet: always `None`, so the chunk cache uses
/// the heap (silently; nothing failed).
pub fn map_anonymous(_len: usize) -> Option<std::ptr::NonNull<u8>> {
    None
}

/// Nothing to unmap: [`map_anonymous`] never maps anything here.
///
/// # Safety
/// As on Unix: `(p, len)` is a mapping from `map_anonymous`.
pub unsafe fn unmap(_p: std::ptr::NonNull<u8>, _len: usize) {}

/// Nothing to give back: [`map_anonymous`] never maps anything here.
///
/// # Safety
/// As on Unix: `(p, len)` lies inside a mapping from `map_anonymous`.
pub unsafe fn discard_pages(_p: std::ptr::NonNull<u8>, _len: usize) {}

/// No /proc: a process's start time cannot be read this way.
pub fn process_start_ticks(_pid: u32) -> Option<u64> {
    None
}

/// No /proc: unknown.
pub fn process_is_zombie(_pid: u32) -> Option<bool> {
    None
}

/// No /proc: unknown (0).
pub fn process_thread_count(_pid: u32) -> usize {
    0
}

/// No /proc: unknown.
pub fn process_comm(_pid: u32) -> Option<String> {
    None
}

/// No /proc: unknown (false).
pub fn process_has_arg(_pid: u32, _arg: &str) -> bool {
    false
}

/// No Unix ids on Windows: the owner of what a mount shows is decided by
/// its security descriptors, not by a uid.
pub fn real_ids() -> (u32, u32) {
    (0, 0)
}

/// Not checked this way on Windows yet (the mount registry's liveness
/// check is Unix-only for now).
pub fn process_exists(_pid: u32) -> bool {
    false
}

/// No FUSE connection on Windows.
pub fn is_disconnected(_e: &io::Error) -> bool {
    false
}

/// Why a mount or unmount failed, as far as a hint to the user needs to
/// know (the Unix version classifies errnos).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountErrorKind {
    Busy,
    Permission,
    NoDevice,
    Other,
}

/// No errno classification on Windows yet.
pub fn mount_error_kind(_e: &io::Error) -> MountErrorKind {
    MountErrorKind::Other
}

/// One positional read (`ReadFile` with an offset). Unlike `pread` it moves
/// the handle's cursor, which no caller relies on.
pub(super) fn pread(f: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(f, buf, pos)
}

/// One positional write (`WriteFile` with an offset).
pub(super) fn pwrite(f: &File, buf: &[u8], pos: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_write(f, buf, pos)
}

/// Extended attributes are a Linux capture source's; Windows has none.
pub fn list_xattrs_nofollow(_path: &Path) -> io::Result<Vec<String>> {
    Ok(Vec::new())
}

/// See [`list_xattrs_nofollow`].
pub fn get_xattr_nofollow(_path: &Path, _name: &str) -> io::Result<Option<Vec<u8>>> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}
