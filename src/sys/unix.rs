//! Unix implementation of [`crate::sys`].

use super::Access;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The effective user id of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Create the FIFO, device or socket `path` (`mode`: file type bits and
/// permissions as in `st_mode`; `rdev`: the device number in Linux's
/// `dev_t` layout). Like `O_EXCL`, fails if anything, a symlink included,
/// exists under the name.
pub fn make_node(path: &Path, mode: u32, rdev: u64) -> io::Result<()> {
    let c = cstr(path.as_os_str())?;
    // SAFETY: a valid NUL-terminated path; mknod reads nothing else.
    let r = unsafe { libc::mknod(c.as_ptr(), mode as libc::mode_t, rdev as libc::dev_t) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn cstr(p: &OsStr) -> io::Result<CString> {
    CString::new(p.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} contains a NUL byte", p.to_string_lossy()),
        )
    })
}

fn denied(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, msg)
}

/// One component: no separator, not "." or "..", not empty.
fn component(name: &OsStr) -> io::Result<CString> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} is not a single file name", name),
        ));
    }
    cstr(name)
}

fn fstat(fd: &impl AsRawFd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is an open descriptor and st a valid out pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// Check that what `fd` refers to (shown as `path`) belongs to this user
/// and that nobody else may write it.
fn check_owned(st: &libc::stat, path: &Path) -> io::Result<()> {
    let me = euid();
    if st.st_uid != me {
        return Err(denied(format!(
            "{} is owned by uid {}, not by this user (uid {me}): refusing to use it",
            path.display(),
            st.st_uid
        )));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(denied(format!(
            "{} is writable by group or others (mode {:o}): refusing to use it",
            path.display(),
            st.st_mode & 0o7777
        )));
    }
    Ok(())
}

fn symlink_refused(path: &Path) -> io::Error {
    denied(format!(
        "{} is a symbolic link (or not a directory): refusing to follow it",
        path.display()
    ))
}

/// A directory that belongs to this user and that nobody else can enter,
/// held open: its files are opened relative to the descriptor, never
/// following a symlink.
#[derive(Debug)]
pub struct PrivateDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl PrivateDir {
    /// Create `path` (mode 0700 whatever the umask) if it does not exist,
    /// then open it as [`PrivateDir::open`] does. Parents are not created.
    pub fn create(path: &Path) -> io::Result<PrivateDir> {
        let c = cstr(path.as_os_str())?;
        // SAFETY: c is a valid NUL-terminated path.
        let r = unsafe { libc::mkdir(c.as_ptr(), 0o700) };
        if r != 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(e);
            }
        }
        Self::open(path)
    }

    /// Open an existing directory: refused when it is a symlink, owned by
    /// another user, or writable by group or others. A directory of ours
    /// that others can read or enter is narrowed to 0700.
    pub fn open(path: &Path) -> io::Result<PrivateDir> {
        let c = cstr(path.as_os_str())?;
        // SAFETY: c is a valid path; the flags ask for a directory only.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ELOOP) | Some(libc::ENOTDIR) => symlink_refused(path),
                _ => e,
            });
        }
        // SAFETY: fd was just returned by open and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Self::adopt(fd, path.to_path_buf())
    }

    fn adopt(fd: OwnedFd, path: PathBuf) -> io::Result<PrivateDir> {
        let st = fstat(&fd)?;
        check_owned(&st, &path)?;
        if st.st_mode & 0o077 != 0 {
            // SAFETY: fd is an open directory we own.
            if unsafe { libc::fchmod(fd.as_raw_fd(), 0o700) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(PrivateDir { fd, path })
    }

    /// The path this directory was opened by (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path()/name`, for messages and for handing to other programs.
    pub fn join(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.path.join(name.as_ref())
    }

    /// Open or create the subdirectory `name` under the same rules.
    pub fn subdir(&self, name: impl AsRef<OsStr>, create: bool) -> io::Result<PrivateDir> {
        let name = name.as_ref();
        let c = component(name)?;
        if create {
            // SAFETY: self.fd is an open directory, c a valid name.
            let r = unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), 0o700) };
            if r != 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::AlreadyExists {
                    return Err(e);
                }
            }
        }
        // SAFETY: as above; the flags ask for a directory, not following links.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        let path = self.path.join(name);
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ELOOP) | Some(libc::ENOTDIR) => symlink_refused(&path),
                _ => e,
            });
        }
        // SAFETY: fd was just returned by openat.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Self::adopt(fd, path)
    }

    /// Open the file `name` in this directory without following a
    /// symlink. A file it creates is 0600 whatever the umask; a file it
    /// finds must be a regular file owned by this user and not writable by
    /// group or others.
    pub fn open_file(&self, name: impl AsRef<OsStr>, access: Access) -> io::Result<File> {
        let name = name.as_ref();
        let c = component(name)?;
        let flags = match access {
            Access::Read => libc::O_RDONLY,
            Access::ReadWrite => libc::O_RDWR,
            Access::Create => libc::O_RDWR | libc::O_CREAT,
            Access::CreateNew => libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            Access::Truncate => libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            Access::Append => libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
        } | libc::O_NOFOLLOW
            | libc::O_CLOEXEC
            | libc::O_NONBLOCK;
        // SAFETY: self.fd is an open directory, c a valid name; mode is a
        // plain integer argument for O_CREAT.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                flags,
                0o600 as libc::c_uint,
            )
        };
        let path = self.path.join(name);
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ELOOP) => denied(format!(
                    "{} is a symbolic link: refusing to follow it",
                    path.display()
                )),
                _ => e,
            });
        }
        // SAFETY: fd was just returned by openat.
        let file = unsafe { File::from_raw_fd(fd) };
        let st = fstat(&file)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(denied(format!(
                "{} is not a regular file: refusing to use it",
                path.display()
            )));
        }
        check_owned(&st, &path)?;
        if st.st_mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        // Back to blocking I/O (O_NONBLOCK only kept a FIFO from hanging
        // the open).
        // SAFETY: fd is open; F_SETFL with plain flags.
        unsafe {
            let fl = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
            if fl >= 0 {
                libc::fcntl(file.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
            }
        }
        Ok(file)
    }

    /// Does `name` exist here (as anything, links not followed)?
    pub fn exists(&self, name: impl AsRef<OsStr>) -> bool {
        let Ok(c) = component(name.as_ref()) else {
            return false;
        };
        // SAFETY: an all-zero stat is valid to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd, name and out pointer.
        unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            ) == 0
        }
    }

    /// Remove the file (or symlink, not its target) `name`; absent is fine.
    pub fn remove_file(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        let c = component(name.as_ref())?;
        // SAFETY: valid fd and name.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) } != 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::NotFound {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Rename `from` to `to` inside this directory (atomic replace).
    pub fn rename(&self, from: impl AsRef<OsStr>, to: impl AsRef<OsStr>) -> io::Result<()> {
        let f = component(from.as_ref())?;
        let t = component(to.as_ref())?;
        let fd = self.fd.as_raw_fd();
        // SAFETY: valid fds and names.
        if unsafe { libc::renameat(fd, f.as_ptr(), fd, t.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Names in this directory (without "." and "..").
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        // Read through /proc/self/fd so the listing is of the directory we
        // hold, not of whatever the path names now.
        let via = PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()));
        let rd = match std::fs::read_dir(&via) {
            Ok(rd) => rd,
            Err(_) => std::fs::read_dir(&self.path)?,
        };
        rd.map(|e| e.map(|e| e.file_name())).collect()
    }

    /// Remove `name` and, if it is a directory, everything under it. Never
    /// follows a symlink: a link is removed, not what it points to.
    pub fn remove_tree(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        let name = name.as_ref();
        let c = component(name)?;
        // SAFETY: valid fd and name.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOENT) => return Ok(()),
            Some(libc::EISDIR) | Some(libc::EPERM) => {}
            _ => return Err(e),
        }
        // A directory: open it without following links (a non-owned
        // subdirectory is still ours to remove if it sits in our tree).
        // SAFETY: valid fd and name; the flags ask for a directory only.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by openat.
        let sub = PrivateDir {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: self.path.join(name),
        };
        for n in sub.names()? {
            sub.remove_tree(&n)?;
        }
        drop(sub);
        // SAFETY: valid fd and name.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) } != 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::NotFound {
                return Err(e);
            }
        }
        Ok(())
    }

    /// fsync the directory itself (so created and renamed names persist).
    pub fn sync(&self) -> io::Result<()> {
        // SAFETY: valid fd.
        if unsafe { libc::fsync(self.fd.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A fresh, unguessable file name suffix (hex), from the kernel's random
/// source.
pub fn random_suffix() -> String {
    let mut b = [0u8; 8];
    // SAFETY: b is a valid buffer of its length.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // Fall back on time and pid: still not predictable from outside
        // to the nanosecond, and the file is created O_EXCL anyway.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        b = (t ^ ((std::process::id() as u64) << 32)).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Create a new file beside `target` (same directory) with an unguessable
/// name starting `.NAME.{tag}-`, exclusively (O_EXCL, no symlink
/// followed), mode 0600. Returns the file and its path.
pub fn create_temp_beside(target: &Path, tag: &str) -> io::Result<(File, PathBuf)> {
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for _ in 0..16 {
        let path = dir.join(format!(".{base}.{tag}-{}", random_suffix()));
        let c = cstr(path.as_os_str())?;
        // SAFETY: c is a valid path; O_EXCL|O_NOFOLLOW never follows a link.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::AlreadyExists {
                continue;
            }
            return Err(e);
        }
        // SAFETY: fd was just returned by open.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        return Ok((file, path));
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("could not create a temporary file beside {}", target.display()),
    ))
}

/// Device and inode of an open file.
pub fn file_id(f: &File) -> io::Result<(u64, u64)> {
    let m = f.metadata()?;
    Ok((m.dev(), m.ino()))
}

/// Device and inode of what `path` names now (following symlinks, as the
/// user's path does).
pub fn path_id(path: &Path) -> io::Result<(u64, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn private_dir_is_0700_and_files_0600_whatever_the_umask() {
        let t = tempfile::tempdir().unwrap();
        // SAFETY: umask only changes this process's creation mask.
        let old = unsafe { libc::umask(0) };
        let d = PrivateDir::create(&t.path().join("d")).unwrap();
        let mut f = d.open_file("f", Access::CreateNew).unwrap();
        f.write_all(b"x").unwrap();
        let s = d.subdir("s", true).unwrap();
        // SAFETY: restore the mask.
        unsafe { libc::umask(old) };
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(d.path()), 0o700);
        assert_eq!(mode(&d.join("f")), 0o600);
        assert_eq!(mode(s.path()), 0o700);
        let mut got = String::new();
        d.open_file("f", Access::Read)
            .unwrap()
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(got, "x");
        assert!(d.open_file("f", Access::CreateNew).is_err());
    }

    #[test]
    fn symlinks_are_refused_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let d = PrivateDir::create(&t.path().join("d")).unwrap();
        std::os::unix::fs::symlink(&victim, d.join("link")).unwrap();
        for a in [Access::Truncate, Access::Create, Access::Append, Access::Read] {
            let e = d.open_file("link", a).unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{e}");
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        std::os::unix::fs::symlink(t.path(), t.path().join("dirlink")).unwrap();
        let e = PrivateDir::open(&t.path().join("dirlink")).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        // remove_tree removes the link, not the target.
        d.remove_tree("link").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    }

    #[test]
    fn group_writable_dir_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("d");
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = PrivateDir::open(&p).unwrap_err();
        assert!(e.to_string().contains("writable by group or others"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = PrivateDir::open(&p).unwrap();
        assert_eq!(std::fs::metadata(d.path()).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn remove_tree_removes_nested_dirs() {
        let t = tempfile::tempdir().unwrap();
        let d = PrivateDir::create(&t.path().join("d")).unwrap();
        let s = d.subdir("s", true).unwrap();
        s.open_file("a", Access::CreateNew).unwrap();
        s.subdir("t", true).unwrap();
        d.remove_tree("s").unwrap();
        assert!(!d.exists("s"));
    }

    #[test]
    fn temp_beside_is_exclusive_private_and_unpredictable() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("x.wim");
        let (_f1, p1) = create_temp_beside(&target, "wimfs-tmp").unwrap();
        let (_f2, p2) = create_temp_beside(&target, "wimfs-tmp").unwrap();
        assert_ne!(p1, p2);
        assert_eq!(std::fs::metadata(&p1).unwrap().mode() & 0o777, 0o600);
        assert!(p1
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".x.wim.wimfs-tmp-"));
    }
}
