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

/// The real user and group ids of this process.
pub fn real_ids() -> (u32, u32) {
    // SAFETY: getuid/getgid have no preconditions and cannot fail.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// Does a process with id `pid` exist (kill with signal 0; one we may not
/// signal, EPERM, exists too)? `false` for ids that are no valid pid.
pub fn process_exists(pid: u32) -> bool {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if p <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence.
    let r = unsafe { libc::kill(p, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
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

/// Take the result of an `open`/`openat` made with `O_NOFOLLOW` (shown as
/// `path`): a symlink and anything but a regular file are refused with a
/// message naming them.
fn regular_file(fd: libc::c_int, path: &Path) -> io::Result<(File, libc::stat)> {
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
    // SAFETY: fd was just returned by open/openat and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    let st = fstat(&file)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(denied(format!(
            "{} is not a regular file: refusing to use it",
            path.display()
        )));
    }
    Ok((file, st))
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
        let d = Self::open_as_is(path)?;
        d.narrow()?;
        Ok(d)
    }

    /// [`PrivateDir::open`] without narrowing the mode: for looking at a
    /// directory that may turn out not to be ours to change (a home
    /// directory given where a staging was expected).
    pub fn open_as_is(path: &Path) -> io::Result<PrivateDir> {
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
        Ok(PrivateDir { fd, path })
    }

    /// Make this directory 0700 if others may read or enter it.
    pub fn narrow(&self) -> io::Result<()> {
        let st = fstat(&self.fd)?;
        if st.st_mode & 0o077 != 0 {
            // SAFETY: fd is an open directory we own.
            if unsafe { libc::fchmod(self.fd.as_raw_fd(), 0o700) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
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
        let d = self.subdir_as_is(name, create)?;
        d.narrow()?;
        Ok(d)
    }

    /// [`PrivateDir::subdir`] without narrowing the mode.
    pub fn subdir_as_is(&self, name: impl AsRef<OsStr>, create: bool) -> io::Result<PrivateDir> {
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
        let (file, st) = regular_file(fd, &path)?;
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

/// Create `path` exclusively (O_EXCL, never through a symlink), mode 0600
/// whatever the umask.
pub fn create_exclusive(path: &Path) -> io::Result<File> {
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
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by open.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
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

/// One line of /proc/self/mountinfo: what is mounted where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The kernel's mount ID (unique while mounted, reused afterwards).
    pub mount_id: u64,
    /// Device of the mounted filesystem (`major:minor`); for FUSE the
    /// minor is also the connection number under /sys/fs/fuse/connections.
    pub dev: (u32, u32),
    /// Where it is mounted (octal escapes undone).
    pub mount_point: PathBuf,
    /// Filesystem type, e.g. `fuse.wimfs-rs`, `tmpfs`.
    pub fstype: String,
    /// Mount source (the FUSE `fsname`).
    pub source: String,
}

/// Undo the octal escapes (`\040` for a space...) of a mountinfo field.
pub fn unescape_mountinfo(s: &str) -> OsString {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    OsString::from(std::ffi::OsStr::from_bytes(&out))
}

fn parse_mountinfo_line(l: &str) -> Option<MountEntry> {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER
    let (left, right) = l.split_once(" - ")?;
    let f: Vec<&str> = left.split(' ').collect();
    let mount_id = f.first()?.parse().ok()?;
    let (maj, min) = f.get(2)?.split_once(':')?;
    let dev = (maj.parse().ok()?, min.parse().ok()?);
    let mount_point = PathBuf::from(unescape_mountinfo(f.get(4)?));
    let mut r = right.split(' ');
    let fstype = unescape_mountinfo(r.next()?).to_string_lossy().into_owned();
    let source = unescape_mountinfo(r.next().unwrap_or(""))
        .to_string_lossy()
        .into_owned();
    Some(MountEntry {
        mount_id,
        dev,
        mount_point,
        fstype,
        source,
    })
}

/// Every mount of this process's namespace, in the kernel's order (a mount
/// stacked on another comes after it).
pub fn mounts() -> io::Result<Vec<MountEntry>> {
    let s = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(s.lines().filter_map(parse_mountinfo_line).collect())
}

/// What is visible at `path` now: the topmost mount there, if any.
pub fn mount_at(path: &Path) -> Option<MountEntry> {
    mounts()
        .ok()?
        .into_iter()
        .rev()
        .find(|m| m.mount_point == path)
}

/// Is the FUSE connection behind `fd` (a /dev/fuse descriptor) still up?
/// The kernel reports POLLERR on it once the filesystem was unmounted or
/// the connection aborted (fuser 0.18's `is_mounted` reads this backwards).
pub fn fuse_connected(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    loop {
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let r = unsafe { libc::poll(&mut p, 1, 0) };
        if r < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        return p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) == 0;
    }
}

/// Unmount what is mounted at `path` (`lazy`: detach even if busy). Root
/// uses umount2 (never following a symlink at `path`); other users, whom
/// the kernel refuses, go through the setuid `fusermount3 -u`, which only
/// unmounts their own FUSE mounts. The caller checks first that the mount
/// is the one it means: this unmounts whatever is there.
pub fn unmount(path: &Path, lazy: bool) -> io::Result<()> {
    let c = cstr(path.as_os_str())?;
    let flags = libc::UMOUNT_NOFOLLOW | if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EPERM) {
        return Err(e);
    }
    let mut last = e;
    for bin in ["fusermount3", "fusermount"] {
        let mut cmd = std::process::Command::new(bin);
        cmd.arg(if lazy { "-uz" } else { "-u" })
            .arg("--")
            .arg(path)
            .stdin(std::process::Stdio::null());
        match cmd.output() {
            Ok(o) if o.status.success() => return Ok(()),
            Ok(o) => {
                return Err(io::Error::other(
                    String::from_utf8_lossy(&o.stderr).trim().to_string(),
                ))
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The uid of the process at the other end of a Unix socket, as the kernel
/// recorded it when that process connected (SO_PEERCRED): cannot be forged
/// by what the peer sends.
pub fn peer_uid(s: &std::os::unix::net::UnixStream) -> io::Result<u32> {
    // SAFETY: an all-zero ucred is valid to be overwritten.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: s is an open socket; cred and len are valid out pointers of
    // the size given.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Listen on a Unix socket `name` inside the private directory `dir`, mode
/// 0600 whatever the umask: the socket is created under a umask of 0177
/// (so it is never more open, not even for an instant) and chmod'ed to
/// 0600 after. A stale entry of that name is removed first.
pub fn bind_private_socket(
    dir: &PrivateDir,
    name: impl AsRef<OsStr>,
) -> io::Result<std::os::unix::net::UnixListener> {
    let name = name.as_ref();
    component(name)?;
    dir.remove_file(name)?;
    let path = dir.join(name);
    // SAFETY: umask only changes this process's file creation mask; it is
    // restored right after the bind.
    let old = unsafe { libc::umask(0o177) };
    let l = std::os::unix::net::UnixListener::bind(&path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let l = l?;
    let c = component(name)?;
    // SAFETY: dir.fd is an open directory, c a valid name.
    if unsafe { libc::fchmodat(dir.fd.as_raw_fd(), c.as_ptr(), 0o600, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(l)
}

/// The uid that owns process `pid` (from /proc), if it exists.
pub fn process_uid(pid: u32) -> Option<u32> {
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid())
}

/// Device and inode of `path` itself (a symlink is not followed): to check
/// that a name still names a file we hold open.
pub fn link_id(path: &Path) -> io::Result<(u64, u64)> {
    let m = std::fs::symlink_metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// Create `path` and any missing parents; directories created here are
/// 0700 (the umask can only narrow that). Existing ones are left as they
/// are.
pub fn create_dir_all_private(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Open an existing file of this user's for reading without following a
/// symlink: refused (with a message naming it) unless it is a regular file
/// owned by this user. For looking at leftovers in a shared directory.
pub fn open_own_file(path: &Path) -> io::Result<File> {
    let c = cstr(path.as_os_str())?;
    // SAFETY: c is a valid path; O_NOFOLLOW refuses a symlink, O_NONBLOCK
    // keeps a FIFO from hanging the open.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    let (file, st) = regular_file(fd, path)?;
    if st.st_uid != euid() {
        return Err(denied(format!(
            "{} is owned by uid {}, not by this user (uid {})",
            path.display(),
            st.st_uid,
            euid()
        )));
    }
    Ok(file)
}

/// Take an exclusive advisory lock (flock) on `f` without waiting:
/// `Ok(false)` when another open file holds it. The lock goes with the
/// process (and with `f`): a lock that can be taken marks a file nobody is
/// writing any more.
pub fn try_lock(f: &File) -> io::Result<bool> {
    // SAFETY: flock on a valid descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Free (available to unprivileged users) and total bytes of the
/// filesystem holding `dir`; `None` when they cannot be read. std has no
/// statvfs, hence libc.
pub fn fs_space(dir: &Path) -> Option<(u64, u64)> {
    let c = CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly
    // sized, writable statvfs.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let f = st.f_frsize as u64;
    Some((st.f_bavail as u64 * f, st.f_blocks as u64 * f))
}

/// A fresh private anonymous read-write mapping of `len` bytes
/// (page-aligned, zero-filled), for the chunk cache's slabs: std has no
/// mmap. `None`, with a warning, when the kernel refuses (the cache then
/// uses the heap).
pub fn map_anonymous(len: usize) -> Option<std::ptr::NonNull<u8>> {
    // SAFETY: a fresh private anonymous mapping; no existing memory is
    // affected. The result is checked against MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        log::warn!("cannot map {len} bytes for the chunk cache; using the heap");
        return None;
    }
    std::ptr::NonNull::new(p.cast())
}

/// Unmap a whole mapping made by [`map_anonymous`].
///
/// # Safety
/// `(p, len)` is exactly a mapping returned by `map_anonymous(len)` and no
/// reference into it is used afterwards.
pub unsafe fn unmap(p: std::ptr::NonNull<u8>, len: usize) {
    // SAFETY: guaranteed by the caller.
    unsafe { libc::munmap(p.as_ptr().cast(), len) };
}

/// Give the pages of `len` bytes at `p` back to the kernel while keeping
/// the mapping: they read back as zeros and cost no memory until touched.
///
/// # Safety
/// `p` is page-aligned, `(p, len)` lies inside a mapping made by
/// [`map_anonymous`], and its contents are no longer needed by anyone.
pub unsafe fn discard_pages(p: std::ptr::NonNull<u8>, len: usize) {
    // SAFETY: guaranteed by the caller.
    unsafe { libc::madvise(p.as_ptr().cast(), len, libc::MADV_DONTNEED) };
}

/// Set the extended attribute `name` (with its namespace, e.g.
/// `user.x`) of `path` to `val`, on a symlink itself rather than its
/// target (lsetxattr; std has no xattrs).
pub fn set_xattr_nofollow(path: &Path, name: &str, val: &[u8]) -> io::Result<()> {
    let c = cstr(path.as_os_str())?;
    let n = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid NUL-terminated strings and a buffer of `val.len()` bytes.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            val.as_ptr() as *const _,
            val.len(),
            0,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Set the access and modification times of `path`, each as Unix
/// (seconds, nanoseconds), on a symlink itself rather than its target
/// (utimensat with AT_SYMLINK_NOFOLLOW; std sets times only through an
/// open file, which a symlink cannot be).
pub fn set_times_nofollow(path: &Path, atime: (i64, i64), mtime: (i64, i64)) -> io::Result<()> {
    let c = cstr(path.as_os_str())?;
    let ts = |(s, ns): (i64, i64)| libc::timespec {
        tv_sec: s as libc::time_t,
        tv_nsec: ns as _,
    };
    let ts = [ts(atime), ts(mtime)];
    // SAFETY: valid path and a two-element timespec array.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A pipe whose two ends are close-on-exec (read end, write end), so that
/// neither leaks into a program the process runs later.
pub fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills the two-element array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and belong to nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Which side of a [`fork_single_threaded`] this is.
pub enum Forked {
    /// The new process.
    Child,
    /// The old process; the child's pid.
    Parent(i32),
}

/// Fork, but only in a process that has one thread: then the child is a
/// complete copy (no lock held by a vanished thread) and can go on running
/// any Rust code, which is why the daemon may be started this way.
/// `Err` if the process has other threads or fork(2) fails; the caller then
/// starts a fresh process instead.
pub fn fork_single_threaded() -> io::Result<Forked> {
    let one = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .is_some_and(|n| n.trim() == "1")
    });
    if !one {
        return Err(io::Error::other("the process has more than one thread"));
    }
    // SAFETY: the process has one thread (checked above), so the child is
    // a complete copy and can go on running Rust code.
    match unsafe { libc::fork() } {
        pid if pid < 0 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Make descriptor `target` (0, 1 or 2: stdin, stdout, stderr) refer to
/// what `f` refers to, as dup2(2) does; how a daemon points its standard
/// streams at a pipe, a log or /dev/null. `target` is replaced even if it
/// is a descriptor Rust code holds elsewhere, so only the standard ones are
/// meant.
pub fn redirect_fd(f: &impl AsRawFd, target: i32) -> io::Result<()> {
    // SAFETY: dup2 on a descriptor borrowed from a live owner; it changes
    // only which file `target` refers to.
    if unsafe { libc::dup2(f.as_raw_fd(), target) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Start a new session (setsid(2)), so that a daemon is detached from the
/// terminal's session and its signals (Ctrl-C, hangup).
pub fn new_session() -> io::Result<()> {
    // SAFETY: setsid has no memory-safety preconditions.
    if unsafe { libc::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Wait for child `pid` to end and give its raw wait status (0 if waiting
/// failed), for a message about a daemon that died before it reported.
pub fn wait_child(pid: i32) -> i32 {
    let mut st: libc::c_int = 0;
    // SAFETY: waits for our own child, writing the status into a local.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    st
}

/// Write end of the pipe the signal handler writes to (-1: none yet).
static SIGNAL_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// The signal handler: it may only do async-signal-safe things, so it just
/// writes one byte to the pipe a normal thread waits on.
extern "C" fn on_signal(_sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(std::sync::atomic::Ordering::Relaxed);
    if fd >= 0 {
        let b = 1u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is a local byte.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

/// The read end of the pipe [`install_stop_signals`] makes; a thread waits
/// on it with [`SignalWaiter::wait`]. It is never closed, like the write
/// end the handler uses.
pub struct SignalWaiter(i32);

impl SignalWaiter {
    /// Block until a stop signal arrives: true then, false if the read
    /// failed (interrupted, or the pipe broke).
    pub fn wait(&self) -> bool {
        let mut b = 0u8;
        // SAFETY: read(2) into a local byte from the pipe we created.
        let n = unsafe { libc::read(self.0, (&mut b as *mut u8).cast(), 1) };
        n == 1
    }
}

/// Catch SIGINT, SIGTERM and SIGHUP (with SA_RESTART) instead of dying, so
/// that a daemon can unmount cleanly rather than leave a dead mount behind.
/// The handler only writes a byte to a pipe; the returned waiter reads it.
/// `None` if the pipe cannot be made (the signals then keep their default).
pub fn install_stop_signals() -> Option<SignalWaiter> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills the two-element array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return None;
    }
    SIGNAL_PIPE.store(fds[1], std::sync::atomic::Ordering::Relaxed);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installs a handler that only calls write(2); the sigaction
        // struct is zeroed and then filled.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    Some(SignalWaiter(fds[0]))
}

/// umount2(2) of `path` as given, with MNT_DETACH if `lazy` and no other
/// flag (unlike [`unmount`], no UMOUNT_NOFOLLOW): the last resort of
/// `wimfs unmount` after fusermount failed, kept exactly as it was.
pub fn umount2_plain(path: &std::ffi::CStr, lazy: bool) -> io::Result<()> {
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: umount2 with a NUL-terminated path we borrow.
    if unsafe { libc::umount2(path.as_ptr(), flags) } == 0 {
        return Ok(());
    }
    Err(io::Error::last_os_error())
}

/// Whether `e` says a FUSE mount's daemon is gone: ENOTCONN, or
/// ECONNABORTED once the kernel aborted the connection.
pub fn is_disconnected(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOTCONN) | Some(libc::ECONNABORTED)
    )
}

/// Why a mount or unmount failed, as far as a hint to the user needs to
/// know (from the errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountErrorKind {
    /// EBUSY.
    Busy,
    /// EPERM or EACCES.
    Permission,
    /// ENODEV or ENOENT.
    NoDevice,
    /// Anything else.
    Other,
}

/// Classify `e` for [`MountErrorKind`] hints.
pub fn mount_error_kind(e: &io::Error) -> MountErrorKind {
    match e.raw_os_error() {
        Some(libc::EBUSY) => MountErrorKind::Busy,
        Some(libc::EPERM) | Some(libc::EACCES) => MountErrorKind::Permission,
        Some(libc::ENODEV) | Some(libc::ENOENT) => MountErrorKind::NoDevice,
        _ => MountErrorKind::Other,
    }
}

/// The Linux constants the FUSE adapter matches kernel requests against
/// (file type bits, open flags, setxattr and fallocate flags), so that the
/// adapter itself names no libc.
#[cfg(target_os = "linux")]
pub mod linux_consts {
    pub use libc::{FALLOC_FL_KEEP_SIZE, O_TRUNC, S_IFMT, S_IFREG, XATTR_CREATE, XATTR_REPLACE};
}

/// Start time (field 22 of /proc/PID/stat, clock ticks after boot) of a
/// running, non-zombie process: with the pid, it names one process, not a
/// later one given the same pid.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    if f.first() == Some(&"Z") {
        return None;
    }
    f.get(19)?.parse().ok()
}

/// Is process `pid` a zombie? `None` when it cannot be read (gone).
pub fn process_is_zombie(pid: u32) -> Option<bool> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .map(|s| s.contains(") Z"))
}

/// Threads of process `pid` (from /proc), 0 when it cannot be read.
pub fn process_thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// The kernel's name of process `pid` (`comm`: the executable's file
/// name, cut to 15 bytes).
pub fn process_comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end_matches('\n').to_string())
}

/// Does the command line of process `pid` hold `arg` after the program
/// name?
pub fn process_has_arg(pid: u32, arg: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|b| b.split(|c| *c == 0).skip(1).any(|a| a == arg.as_bytes()))
}

/// One positional read (`pread`): no shared cursor moves.
pub(super) fn pread(f: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(f, buf, pos)
}

/// One positional write (`pwrite`): no shared cursor moves.
pub(super) fn pwrite(f: &File, buf: &[u8], pos: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::write_at(f, buf, pos)
}

/// The names of the extended attributes of `path` itself (a symlink is not
/// followed), with their namespaces (`user.x`, `system.ntfs_acl`): a
/// capture stores them as named streams and Windows metadata.
pub fn list_xattrs_nofollow(path: &Path) -> io::Result<Vec<String>> {
    let c = cstr(path.as_os_str())?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: a valid path and a buffer of `buf.len()` bytes.
        let r = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr() as *mut _, buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    }
    Ok(buf
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect())
}

/// The value of the extended attribute `name` of `path` itself (a symlink
/// is not followed); `None` when it has none by that name (ntfs-3g lists
/// some it then has no value for).
pub fn get_xattr_nofollow(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let c = cstr(path.as_os_str())?;
    let n = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = Vec::new();
    loop {
        // The size first: ntfs-3g answers a too-small buffer for its
        // security descriptors with EIO, not ERANGE.
        // SAFETY: valid NUL-terminated strings and a null buffer of size 0.
        let need = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
        if need < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENODATA) => Ok(None),
                _ => Err(e),
            };
        }
        buf.resize(need as usize, 0);
        // SAFETY: valid NUL-terminated strings and a buffer of `buf.len()`
        // bytes.
        let r = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                n.as_ptr(),
                buf.as_mut_ptr() as *mut _,
                buf.len(),
            )
        };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENODATA) => return Ok(None),
            // It grew between the two calls: ask again.
            Some(libc::ERANGE) => continue,
            _ => return Err(e),
        }
    }
}

// ----- appended for issue 10 (the same API as windows.rs) ----------------

/// Unix files are sparse by nature: ranges never written take no space.
pub fn set_sparse(_f: &File) -> io::Result<()> {
    Ok(())
}

/// Make `len` bytes at `offset` read as zeros and give their space back
/// (a punched hole on Linux, zeros written where holes cannot be punched).
pub fn zero_range(f: &File, offset: u64, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        // SAFETY: fallocate on a valid descriptor we own.
        let r = unsafe {
            libc::fallocate(
                f.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off,
                n,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(e);
        }
    }
    let zeros = vec![0u8; 64 << 10];
    let end = offset.saturating_add(len).min(f.metadata()?.len());
    let mut at = offset;
    while at < end {
        let n = (end - at).min(zeros.len() as u64) as usize;
        std::os::unix::fs::FileExt::write_all_at(f, &zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Give memory freed by the allocator back to the system (glibc keeps it
/// otherwise): called once a read-write mount's tree is built, after the
/// decoded image it was built from is freed, so the daemon's resident
/// size is what it holds.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn mountinfo_lines_parse_with_optional_fields_and_escapes() {
        let l = "42 30 0:39 / /tmp/a\\040b rw,nosuid shared:7 master:1 - fuse.wimfs-rs \
                 wimfs:/x\\040y.wim:1 rw,user_id=0";
        let m = parse_mountinfo_line(l).unwrap();
        assert_eq!(m.mount_id, 42);
        assert_eq!(m.dev, (0, 39));
        assert_eq!(m.mount_point, Path::new("/tmp/a b"));
        assert_eq!(m.fstype, "fuse.wimfs-rs");
        assert_eq!(m.source, "wimfs:/x y.wim:1");
        assert!(parse_mountinfo_line("garbage").is_none());
        // This process's root is always mounted.
        assert!(mount_at(Path::new("/")).is_some());
    }

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
        for a in [
            Access::Truncate,
            Access::Create,
            Access::Append,
            Access::Read,
        ] {
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
        let (_f1, p1) = super::super::create_temp_beside(&target, "wimfs-tmp").unwrap();
        let (_f2, p2) = super::super::create_temp_beside(&target, "wimfs-tmp").unwrap();
        assert_ne!(p1, p2);
        assert_eq!(std::fs::metadata(&p1).unwrap().mode() & 0o777, 0o600);
        assert!(p1
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".x.wim.wimfs-tmp-"));
    }
}
