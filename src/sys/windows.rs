//! Windows implementation of [`crate::sys`].
//!
//! The per-user protections come from ACLs rather than mode bits: every
//! directory [`PrivateDir::create`] makes gets an explicit, protected DACL
//! (the user, SYSTEM and administrators; nothing inherited), so a staging
//! beside a WIM in a shared folder is as private as the state directory
//! under the user's local app data. Files are opened by path; reparse
//! points (Windows' symlinks and junctions) in a private directory are
//! refused.
//!
//! "uid" on Windows: there is one, 0, standing for "this user"; a peer or
//! process is given uid 0 when its token's user is this user's SID or it
//! is an elevated administrator (root's counterpart), so the Unix rule
//! "the owner or root" reads the same on both platforms.

use super::Access;
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::os::windows::fs::MetadataExt;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};
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
        match create_dir_private(path) {
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

/// A file's identity: its volume's serial number and its file index
/// (GetFileInformationByHandle), as (dev, ino) are on Unix.
pub fn file_id(f: &File) -> io::Result<(u64, u64)> {
    use windows_sys::Win32::Storage::FileSystem::{
        GetFileInformationByHandle, BY_HANDLE_FILE_INFORMATION,
    };
    let mut i = BY_HANDLE_FILE_INFORMATION::default();
    // SAFETY: a valid handle and a writable struct of the right type.
    if unsafe { GetFileInformationByHandle(f.as_raw_handle(), &mut i) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((
        u64::from(i.dwVolumeSerialNumber),
        (u64::from(i.nFileIndexHigh) << 32) | u64::from(i.nFileIndexLow),
    ))
}

/// The identity ([`file_id`]) of what `path` names (a directory too).
pub fn path_id(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::windows::fs::OpenOptionsExt;
    use windows_sys::Win32::Storage::FileSystem::FILE_FLAG_BACKUP_SEMANTICS;
    let f = OpenOptions::new()
        .access_mode(0)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
        .open(path)?;
    file_id(&f)
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

/// The "uid" of the process at the other end of a named pipe `f` (0: this
/// user or an elevated administrator), from the other end's pid
/// (GetNamedPipeClientProcessId or ...ServerProcessId, as the kernel
/// recorded it) and its token. `server`: `f` is the server's end.
pub fn peer_uid(f: &File, server: bool) -> io::Result<u32> {
    use windows_sys::Win32::System::Pipes::{
        GetNamedPipeClientProcessId, GetNamedPipeServerProcessId,
    };
    let mut pid = 0u32;
    // SAFETY: a valid pipe handle and a writable u32.
    let ok = unsafe {
        if server {
            GetNamedPipeClientProcessId(f.as_raw_handle(), &mut pid)
        } else {
            GetNamedPipeServerProcessId(f.as_raw_handle(), &mut pid)
        }
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    let h = open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("cannot open process {pid} at the other end of the pipe"),
        )
    })?;
    if process_trusted(&h)? {
        Ok(0)
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("process {pid} runs as another user (not you, not an elevated administrator)"),
        ))
    }
}

/// 0 if process `pid` runs as this user (or is an elevated
/// administrator), 1 for anyone else; `None` if it cannot be asked.
pub fn process_uid(pid: u32) -> Option<u32> {
    let h = open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION)?;
    match process_trusted(&h) {
        Ok(true) => Some(0),
        Ok(false) => Some(1),
        Err(_) => None,
    }
}

/// The identity ([`file_id`]) of `path` itself: a symbolic link or
/// junction is not followed (FILE_FLAG_OPEN_REPARSE_POINT).
pub fn link_id(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::windows::fs::OpenOptionsExt;
    use windows_sys::Win32::Storage::FileSystem::{
        FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT,
    };
    let f = OpenOptions::new()
        .access_mode(0)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)?;
    file_id(&f)
}

/// Create `path` and missing parents; the ones made here get the private
/// DACL of [`PrivateDir::create`].
pub fn create_dir_all_private(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all_private(parent)?;
    }
    match create_dir_private(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        r => r,
    }
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

/// Take an exclusive lock on `f` without waiting (LockFileEx, fail
/// immediately): `Ok(false)` when another open file holds it. Windows byte
/// range locks are mandatory (a locked range cannot be read through any
/// other handle, even this process's own), so the lock covers one byte far
/// past any real end of file ([`LOCK_OFFSET`]): it excludes other lockers
/// (another wimfs mount or writer) and never blocks reading the WIM. The
/// lock goes with the handle, as flock's goes with the descriptor.
pub fn try_lock(f: &File) -> io::Result<bool> {
    use windows_sys::Win32::Foundation::ERROR_LOCK_VIOLATION;
    use windows_sys::Win32::Storage::FileSystem::{
        LockFileEx, LOCKFILE_EXCLUSIVE_LOCK, LOCKFILE_FAIL_IMMEDIATELY,
    };
    use windows_sys::Win32::System::IO::OVERLAPPED;
    let mut ov = OVERLAPPED::default();
    ov.Anonymous.Anonymous.Offset = LOCK_OFFSET as u32;
    ov.Anonymous.Anonymous.OffsetHigh = (LOCK_OFFSET >> 32) as u32;
    // SAFETY: a valid handle we own, a zeroed OVERLAPPED on the stack that
    // outlives this synchronous call.
    let ok = unsafe {
        LockFileEx(
            f.as_raw_handle(),
            LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY,
            0,
            1,
            0,
            &mut ov,
        )
    };
    if ok != 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(ERROR_LOCK_VIOLATION as i32) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Where [`try_lock`] locks: the last byte but one a file offset can
/// name, which no WIM reaches.
pub const LOCK_OFFSET: u64 = (i64::MAX - 1) as u64;

/// Free (available to this user, quotas counted) and total bytes of the
/// volume holding `dir` (GetDiskFreeSpaceExW); `None` when they cannot be
/// read.
pub fn fs_space(dir: &Path) -> Option<(u64, u64)> {
    use windows_sys::Win32::Storage::FileSystem::GetDiskFreeSpaceExW;
    let w = wide(dir.as_os_str());
    let (mut avail, mut total, mut free) = (0u64, 0u64, 0u64);
    // SAFETY: `w` is NUL-terminated; the out pointers are valid u64s.
    let ok = unsafe { GetDiskFreeSpaceExW(w.as_ptr(), &mut avail, &mut total, &mut free) };
    (ok != 0).then_some((avail, total))
}

/// Fresh committed read-write pages of `len` bytes (VirtualAlloc:
/// page-aligned, zero-filled), for the chunk cache's slabs. `None`, with a
/// warning, when Windows refuses (the cache then uses the heap).
pub fn map_anonymous(len: usize) -> Option<std::ptr::NonNull<u8>> {
    use windows_sys::Win32::System::Memory::{
        VirtualAlloc, MEM_COMMIT, MEM_RESERVE, PAGE_READWRITE,
    };
    // SAFETY: a fresh allocation at an address Windows chooses; no
    // existing memory is affected. The result is checked for null.
    let p = unsafe {
        VirtualAlloc(
            std::ptr::null(),
            len,
            MEM_RESERVE | MEM_COMMIT,
            PAGE_READWRITE,
        )
    };
    let p = std::ptr::NonNull::new(p.cast::<u8>());
    if p.is_none() {
        log::warn!(
            "cannot allocate {len} bytes of pages: {}",
            io::Error::last_os_error()
        );
    }
    p
}

/// Release a whole allocation made by [`map_anonymous`].
///
/// # Safety
/// As on Unix: `(p, len)` is an allocation from `map_anonymous` that
/// nothing uses any more.
pub unsafe fn unmap(p: std::ptr::NonNull<u8>, _len: usize) {
    use windows_sys::Win32::System::Memory::{VirtualFree, MEM_RELEASE};
    // SAFETY: the caller's promise; MEM_RELEASE frees the whole region
    // (size 0, as the call requires).
    unsafe { VirtualFree(p.as_ptr().cast(), 0, MEM_RELEASE) };
}

/// Give the pages of `len` bytes at `p` back while keeping the addresses:
/// decommitted, then committed again, they cost no memory until touched
/// and read back as zeros, as on Unix (MADV_DONTNEED).
///
/// # Safety
/// As on Unix: `p` is page-aligned, `(p, len)` lies inside an allocation
/// made by [`map_anonymous`], and nothing needs its contents.
pub unsafe fn discard_pages(p: std::ptr::NonNull<u8>, len: usize) {
    use windows_sys::Win32::System::Memory::{
        VirtualAlloc, VirtualFree, MEM_COMMIT, MEM_DECOMMIT, PAGE_READWRITE,
    };
    // SAFETY: the caller's promise: the range is inside our reservation,
    // page-aligned and unused.
    if unsafe { VirtualFree(p.as_ptr().cast(), len, MEM_DECOMMIT) } == 0 {
        // Still committed: zero it by hand, as the caller expects.
        // SAFETY: as above; the range is ours and writable.
        unsafe { std::ptr::write_bytes(p.as_ptr(), 0, len) };
        return;
    }
    for _ in 0..3 {
        // SAFETY: recommitting the range just decommitted.
        if !unsafe { VirtualAlloc(p.as_ptr().cast(), len, MEM_COMMIT, PAGE_READWRITE) }.is_null() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // The pages are gone and cannot come back (no commit charge left): a
    // later use would fault, so stop now. Nothing durable is lost: the
    // staging holds what was synced.
    log::error!(
        "cannot recommit {len} bytes of the chunk cache: {}",
        io::Error::last_os_error()
    );
    std::process::abort();
}

/// A process's creation time (FILETIME, 100 ns units since 1601): with
/// the pid it names one process, not a later one given the same pid.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    use windows_sys::Win32::Foundation::FILETIME;
    use windows_sys::Win32::System::Threading::GetProcessTimes;
    let h = open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION)?;
    let mut t = [FILETIME::default(); 4];
    let [c, e, k, u] = &mut t;
    // SAFETY: a valid process handle and four writable FILETIMEs.
    let ok = unsafe { GetProcessTimes(h.0, c, e, k, u) };
    (ok != 0).then(|| (u64::from(t[0].dwHighDateTime) << 32) | u64::from(t[0].dwLowDateTime))
}

/// Has process `pid` ended while something still holds it open (its exit
/// code is set)? `None` when it cannot be opened (gone, or not ours to
/// ask).
pub fn process_is_zombie(pid: u32) -> Option<bool> {
    process_running(pid).map(|r| !r)
}

/// Windows frees a process's threads with it: an ended process has none
/// left that could hold the WIM's lock.
pub fn process_thread_count(pid: u32) -> usize {
    usize::from(process_running(pid) == Some(true))
}

/// The file name of the process's executable (`wimfs.exe`), cut to 15
/// characters as the Unix `comm` is, so the same comparison works.
pub fn process_comm(pid: u32) -> Option<String> {
    use windows_sys::Win32::System::Threading::{QueryFullProcessImageNameW, PROCESS_NAME_WIN32};
    let h = open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION)?;
    let mut buf = vec![0u16; 32768];
    let mut len = buf.len() as u32;
    // SAFETY: a valid process handle; `buf` holds `len` u16s.
    let ok =
        unsafe { QueryFullProcessImageNameW(h.0, PROCESS_NAME_WIN32, buf.as_mut_ptr(), &mut len) };
    if ok == 0 {
        return None;
    }
    let path = PathBuf::from(OsString::from_wide(&buf[..len as usize]));
    let name = path.file_name()?.to_string_lossy().into_owned();
    Some(name.chars().take(15).collect())
}

/// Another process's command line is not readable on Windows without
/// undocumented calls (its PEB); the creation time recorded with a mount
/// ([`process_start_ticks`]) already tells its daemon from a later process
/// with the same pid, and [`process_comm`] that it is wimfs. So: true.
pub fn process_has_arg(_pid: u32, _arg: &str) -> bool {
    true
}

/// No Unix ids on Windows: the owner of what a mount shows is decided by
/// its security descriptors, not by a uid.
pub fn real_ids() -> (u32, u32) {
    (0, 0)
}

/// Is process `pid` running (OpenProcess, and GetExitCodeProcess says
/// STILL_ACTIVE)?
pub fn process_exists(pid: u32) -> bool {
    process_running(pid) == Some(true)
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

// ----- appended for issue 10 (Windows session and OS pieces) -------------

use windows_sys::Win32::System::Threading::PROCESS_QUERY_LIMITED_INFORMATION;

/// `s` as a NUL-terminated UTF-16 string for the W calls.
fn wide(s: &OsStr) -> Vec<u16> {
    s.encode_wide().chain(std::iter::once(0)).collect()
}

/// A kernel handle closed on drop.
struct Handle(windows_sys::Win32::Foundation::HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: a handle this module opened and nobody else closes.
        unsafe { windows_sys::Win32::Foundation::CloseHandle(self.0) };
    }
}

fn open_process(pid: u32, access: u32) -> Option<Handle> {
    use windows_sys::Win32::System::Threading::OpenProcess;
    // SAFETY: plain call; the result is checked.
    let h = unsafe { OpenProcess(access, 0, pid) };
    (!h.is_null()).then_some(Handle(h))
}

/// Is the process still running? `None` if it cannot be opened.
fn process_running(pid: u32) -> Option<bool> {
    use windows_sys::Win32::Foundation::STILL_ACTIVE;
    use windows_sys::Win32::System::Threading::GetExitCodeProcess;
    let h = open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION)?;
    let mut code = 0u32;
    // SAFETY: a valid process handle and a writable u32.
    if unsafe { GetExitCodeProcess(h.0, &mut code) } == 0 {
        return None;
    }
    Some(code == STILL_ACTIVE as u32)
}

/// A buffer of token information of class `class`.
fn token_info(token: &Handle, class: i32) -> io::Result<Vec<u64>> {
    use windows_sys::Win32::Security::GetTokenInformation;
    let mut len = 0u32;
    // SAFETY: a size query (null buffer, length 0).
    unsafe { GetTokenInformation(token.0, class, std::ptr::null_mut(), 0, &mut len) };
    if len == 0 {
        return Err(io::Error::last_os_error());
    }
    // u64s: the buffer holds pointers (SIDs) and must be aligned for them.
    let mut buf = vec![0u64; (len as usize).div_ceil(8)];
    // SAFETY: `buf` holds at least `len` bytes.
    let ok = unsafe { GetTokenInformation(token.0, class, buf.as_mut_ptr().cast(), len, &mut len) };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(buf)
}

fn process_token(process: &Handle) -> io::Result<Handle> {
    use windows_sys::Win32::Security::TOKEN_QUERY;
    use windows_sys::Win32::System::Threading::OpenProcessToken;
    let mut t = std::ptr::null_mut();
    // SAFETY: a valid process handle and a writable HANDLE.
    if unsafe { OpenProcessToken(process.0, TOKEN_QUERY, &mut t) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Handle(t))
}

/// This process's token-user buffer (a TOKEN_USER and its SID).
fn own_user() -> io::Result<Vec<u64>> {
    use windows_sys::Win32::Security::TokenUser;
    use windows_sys::Win32::System::Threading::GetCurrentProcess;
    // SAFETY: the pseudo handle needs no closing; wrap it without Drop.
    let me = std::mem::ManuallyDrop::new(Handle(unsafe { GetCurrentProcess() }));
    token_info(&process_token(&me)?, TokenUser)
}

/// Does `process` run as this user, or as an elevated administrator (the
/// Administrators group enabled in its token, which a filtered, not
/// elevated, token has only for deny)?
fn process_trusted(process: &Handle) -> io::Result<bool> {
    use windows_sys::Win32::Security::{
        CreateWellKnownSid, EqualSid, TokenGroups, TokenUser, WinBuiltinAdministratorsSid,
        TOKEN_GROUPS, TOKEN_USER,
    };
    const SE_GROUP_ENABLED: u32 = 4;
    let token = process_token(process)?;
    let theirs = token_info(&token, TokenUser)?;
    let mine = own_user()?;
    // SAFETY: both buffers were filled by GetTokenInformation(TokenUser),
    // which puts a TOKEN_USER at the start, its SID pointing inside.
    let same = unsafe {
        let a = &*(theirs.as_ptr() as *const TOKEN_USER);
        let b = &*(mine.as_ptr() as *const TOKEN_USER);
        EqualSid(a.User.Sid, b.User.Sid) != 0
    };
    if same {
        return Ok(true);
    }
    let mut admins = [0u64; 9]; // SECURITY_MAX_SID_SIZE (68) bytes
    let mut len = std::mem::size_of_val(&admins) as u32;
    // SAFETY: `admins` holds `len` bytes.
    let ok = unsafe {
        CreateWellKnownSid(
            WinBuiltinAdministratorsSid,
            std::ptr::null_mut(),
            admins.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    let groups = token_info(&token, TokenGroups)?;
    // SAFETY: a TOKEN_GROUPS filled by GetTokenInformation, followed by
    // its GroupCount entries.
    let found = unsafe {
        let g = &*(groups.as_ptr() as *const TOKEN_GROUPS);
        let entries = std::slice::from_raw_parts(g.Groups.as_ptr(), g.GroupCount as usize);
        entries.iter().any(|e| {
            e.Attributes & SE_GROUP_ENABLED != 0 && EqualSid(e.Sid, admins.as_mut_ptr().cast()) != 0
        })
    };
    Ok(found)
}

/// This user's SID as text (`S-1-5-21-...`): names the control pipes and
/// goes into the DACLs of private objects.
pub fn user_sid() -> io::Result<String> {
    use windows_sys::Win32::Foundation::LocalFree;
    use windows_sys::Win32::Security::Authorization::ConvertSidToStringSidW;
    use windows_sys::Win32::Security::TOKEN_USER;
    static SID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(s) = SID.get() {
        return Ok(s.clone());
    }
    let buf = own_user()?;
    let mut p = std::ptr::null_mut();
    // SAFETY: `buf` starts with a TOKEN_USER; `p` receives a LocalAlloc'd
    // NUL-terminated string, freed below.
    let s = unsafe {
        let tu = &*(buf.as_ptr() as *const TOKEN_USER);
        if ConvertSidToStringSidW(tu.User.Sid, &mut p) == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut n = 0;
        while *p.add(n) != 0 {
            n += 1;
        }
        let s = String::from_utf16_lossy(std::slice::from_raw_parts(p, n));
        LocalFree(p.cast());
        s
    };
    Ok(SID.get_or_init(|| s).clone())
}

/// A self-relative security descriptor made from SDDL, freed on drop.
struct Sd(windows_sys::Win32::Security::PSECURITY_DESCRIPTOR);

impl Sd {
    fn from_sddl(sddl: &str) -> io::Result<Sd> {
        use windows_sys::Win32::Security::Authorization::{
            ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
        };
        let w = wide(OsStr::new(sddl));
        let mut p = std::ptr::null_mut();
        // SAFETY: `w` is NUL-terminated; `p` receives a LocalAlloc'd
        // descriptor, freed on drop.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                w.as_ptr(),
                SDDL_REVISION_1,
                &mut p,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Sd(p))
    }

    fn attributes(&self) -> windows_sys::Win32::Security::SECURITY_ATTRIBUTES {
        windows_sys::Win32::Security::SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<windows_sys::Win32::Security::SECURITY_ATTRIBUTES>()
                as u32,
            lpSecurityDescriptor: self.0,
            bInheritHandle: 0,
        }
    }
}

impl Drop for Sd {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorTo...W.
        unsafe { windows_sys::Win32::Foundation::LocalFree(self.0) };
    }
}

/// Create the directory `path` with [`super::private_sddl`]'s DACL (not by
/// inheritance: a staging beside a WIM may sit in a shared folder).
pub fn create_dir_private(path: &Path) -> io::Result<()> {
    use windows_sys::Win32::Storage::FileSystem::CreateDirectoryW;
    let sd = Sd::from_sddl(&super::private_sddl(&user_sid()?))?;
    let sa = sd.attributes();
    let w = wide(path.as_os_str());
    // SAFETY: `w` NUL-terminated, `sa` valid for the call.
    if unsafe { CreateDirectoryW(w.as_ptr(), &sa) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The per-user state directory's parent: the user's local app data
/// (`%LOCALAPPDATA%`, FOLDERID_LocalAppData), private to the user.
pub fn local_app_data() -> Option<PathBuf> {
    use windows_sys::Win32::System::Com::CoTaskMemFree;
    use windows_sys::Win32::UI::Shell::{FOLDERID_LocalAppData, SHGetKnownFolderPath};
    let mut p = std::ptr::null_mut();
    // SAFETY: `p` receives a CoTaskMemAlloc'd NUL-terminated string (freed
    // below, also on failure as the API asks).
    let hr =
        unsafe { SHGetKnownFolderPath(&FOLDERID_LocalAppData, 0, std::ptr::null_mut(), &mut p) };
    let out = if hr >= 0 && !p.is_null() {
        // SAFETY: a NUL-terminated string from the call above.
        unsafe {
            let mut n = 0;
            while *p.add(n) != 0 {
                n += 1;
            }
            Some(PathBuf::from(OsString::from_wide(
                std::slice::from_raw_parts(p, n),
            )))
        }
    } else {
        None
    };
    // SAFETY: freeing what SHGetKnownFolderPath allocated (null is fine).
    unsafe { CoTaskMemFree(p.cast()) };
    out.or_else(|| std::env::var_os("LOCALAPPDATA").map(PathBuf::from))
}

/// Mark `f` sparse (FSCTL_SET_SPARSE): ranges never written (or zeroed by
/// [`zero_range`]) take no space, as on Unix filesystems.
pub fn set_sparse(f: &File) -> io::Result<()> {
    use windows_sys::Win32::System::Ioctl::{FILE_SET_SPARSE_BUFFER, FSCTL_SET_SPARSE};
    let b = FILE_SET_SPARSE_BUFFER { SetSparse: true };
    ioctl_in(f, FSCTL_SET_SPARSE, &b)
}

/// Make `len` bytes at `offset` read as zeros and give their space back
/// (FSCTL_SET_ZERO_DATA on a sparse file).
pub fn zero_range(f: &File, offset: u64, len: u64) -> io::Result<()> {
    use windows_sys::Win32::System::Ioctl::{FILE_ZERO_DATA_INFORMATION, FSCTL_SET_ZERO_DATA};
    let end = offset
        .checked_add(len)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let z = FILE_ZERO_DATA_INFORMATION {
        FileOffset: i64::try_from(offset)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        BeyondFinalZero: i64::try_from(end)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
    };
    ioctl_in(f, FSCTL_SET_ZERO_DATA, &z)
}

fn ioctl_in<T>(f: &File, code: u32, input: &T) -> io::Result<()> {
    use windows_sys::Win32::System::IO::DeviceIoControl;
    let mut ret = 0u32;
    // SAFETY: a valid handle; `input` is a properly sized struct of the
    // control code's input type; no output; synchronous.
    let ok = unsafe {
        DeviceIoControl(
            f.as_raw_handle(),
            code,
            (input as *const T).cast(),
            std::mem::size_of::<T>() as u32,
            std::ptr::null_mut(),
            0,
            &mut ret,
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// End process `pid` (a read-only mount daemon, which has nothing to
/// save): WinFsp takes its volume down when the process is gone.
pub fn terminate_process(pid: u32) -> io::Result<()> {
    use windows_sys::Win32::System::Threading::{TerminateProcess, PROCESS_TERMINATE};
    let h = open_process(pid, PROCESS_TERMINATE).ok_or_else(io::Error::last_os_error)?;
    // SAFETY: a valid process handle opened for termination.
    if unsafe { TerminateProcess(h.0, 1) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The name of a control pipe: `\\.\pipe\wimfs-<user SID>-<name>`. The
/// SID makes names of different users distinct; the pipe's DACL and
/// both ends' peer checks make them safe.
pub fn pipe_path(name: &str) -> io::Result<PathBuf> {
    Ok(super::control_pipe_path(&user_sid()?, name))
}

/// Create one instance of the named pipe `path` (byte mode, local clients
/// only), whose DACL admits only this user and Administrators.
/// `first`: the first instance, which fails if anyone (a squatter) already
/// has the name.
pub fn pipe_create(path: &Path, first: bool) -> io::Result<File> {
    use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
    use windows_sys::Win32::Storage::FileSystem::{
        FILE_FLAG_FIRST_PIPE_INSTANCE, PIPE_ACCESS_DUPLEX,
    };
    use windows_sys::Win32::System::Pipes::{
        CreateNamedPipeW, PIPE_READMODE_BYTE, PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE,
        PIPE_UNLIMITED_INSTANCES, PIPE_WAIT,
    };
    let sid = user_sid()?;
    let sd = Sd::from_sddl(&super::pipe_sddl(&sid))?;
    let sa = sd.attributes();
    let w = wide(path.as_os_str());
    let mode = PIPE_ACCESS_DUPLEX
        | if first {
            FILE_FLAG_FIRST_PIPE_INSTANCE
        } else {
            0
        };
    // SAFETY: `w` NUL-terminated, `sa` valid for the call; the handle is
    // checked and then owned by the File.
    let h = unsafe {
        CreateNamedPipeW(
            w.as_ptr(),
            mode,
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
            PIPE_UNLIMITED_INSTANCES,
            4096,
            4096,
            0,
            &sa,
        )
    };
    if h == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh handle nobody else owns.
    Ok(File::from(unsafe {
        OwnedHandle::from_raw_handle(h as RawHandle)
    }))
}

/// Wait for a client on a pipe instance from [`pipe_create`].
pub fn pipe_accept(f: &File) -> io::Result<()> {
    use windows_sys::Win32::Foundation::ERROR_PIPE_CONNECTED;
    use windows_sys::Win32::System::Pipes::ConnectNamedPipe;
    // SAFETY: a valid pipe handle, synchronous (no OVERLAPPED).
    if unsafe { ConnectNamedPipe(f.as_raw_handle(), std::ptr::null_mut()) } != 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    // A client that connected between create and connect is connected.
    if e.raw_os_error() == Some(ERROR_PIPE_CONNECTED as i32) {
        Ok(())
    } else {
        Err(e)
    }
}

/// Open the client end of the pipe `path`, waiting up to 5 s while every
/// instance is busy.
pub fn pipe_connect(path: &Path) -> io::Result<File> {
    use std::os::windows::fs::OpenOptionsExt;
    use windows_sys::Win32::Foundation::ERROR_PIPE_BUSY;
    use windows_sys::Win32::System::Pipes::WaitNamedPipeW;
    // The server may identify this client but never act as it
    // (impersonate), should the name belong to a squatter after all.
    const SECURITY_IDENTIFICATION: u32 = 1 << 16;
    let w = wide(path.as_os_str());
    for _ in 0..5 {
        match OpenOptions::new()
            .read(true)
            .write(true)
            .security_qos_flags(SECURITY_IDENTIFICATION)
            .open(path)
        {
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32) => {
                // SAFETY: `w` is NUL-terminated.
                unsafe { WaitNamedPipeW(w.as_ptr(), 1000) };
            }
            r => return r,
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{} stayed busy", path.display()),
    ))
}

/// Point this process's standard error at `f` (the daemon's log): the
/// logger writes to stderr, which std looks up at each write.
pub fn redirect_stderr(f: &File) -> io::Result<()> {
    use windows_sys::Win32::System::Console::{SetStdHandle, STD_ERROR_HANDLE};
    let dup = f.try_clone()?;
    let h = OwnedHandle::from(dup);
    // SAFETY: a valid handle, leaked on purpose: it stays the process's
    // standard error until exit.
    let raw = std::os::windows::io::IntoRawHandle::into_raw_handle(h);
    if unsafe { SetStdHandle(STD_ERROR_HANDLE, raw) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Close this process's standard output (the readiness pipe to the
/// process that started the daemon, which reads until end of file) and
/// leave it unset.
pub fn close_stdout() {
    use windows_sys::Win32::System::Console::{GetStdHandle, SetStdHandle, STD_OUTPUT_HANDLE};
    // SAFETY: the handle is this process's standard output, closed once
    // after the slot is cleared so nothing writes to a closed handle.
    unsafe {
        let h = GetStdHandle(STD_OUTPUT_HANDLE);
        SetStdHandle(STD_OUTPUT_HANDLE, std::ptr::null_mut());
        if !h.is_null() && h != windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE {
            windows_sys::Win32::Foundation::CloseHandle(h);
        }
    }
}

/// The bytes of a buffer WinFsp hands over as `c_void`s (a security
/// descriptor on create).
pub fn void_bytes(v: &[std::ffi::c_void]) -> &[u8] {
    // SAFETY: c_void is one byte wide; same pointer, same length, and the
    // borrow keeps the buffer alive.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), v.len()) }
}

/// Copy `src` into a buffer WinFsp hands over as `c_void`s; the bytes
/// copied (all of `src` only if it fits).
pub fn copy_to_void(dst: &mut [std::ffi::c_void], src: &[u8]) -> usize {
    let n = src.len().min(dst.len());
    // SAFETY: `dst` holds at least `n` bytes (c_void is one byte wide) and
    // cannot overlap the shared borrow `src`.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<u8>(), n) };
    n
}

/// The bytes of the descriptor a WinFsp SetSecurity request carries
/// (self-relative: WinFsp marshals it through its request buffer); `None`
/// when Windows does not call it a valid descriptor.
pub fn modification_bytes(d: &winfsp::filesystem::ModificationDescriptor) -> Option<Vec<u8>> {
    use windows_sys::Win32::Security::{GetSecurityDescriptorLength, IsValidSecurityDescriptor};
    let p = d.as_mut_ptr();
    if p.is_null() {
        return None;
    }
    // SAFETY: WinFsp hands a descriptor that stays valid for the whole
    // callback; its length is asked only once Windows calls it valid, and
    // exactly that many bytes are copied out of it.
    unsafe {
        if IsValidSecurityDescriptor(p) == 0 {
            return None;
        }
        let len = GetSecurityDescriptorLength(p) as usize;
        Some(std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec())
    }
}

/// Give memory freed by the allocator back to the system: the Windows
/// heap decommits freed pages itself, so nothing to do.
pub fn release_free_memory() {}
