//! Thin libc wrappers the tests call directly: errno, `statvfs(2)`, and
//! O_DIRECT reads (so a read reaches the FUSE daemon, not the page cache).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// errno of the last libc call.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `statvfs(2)` of a path.
pub fn statvfs(p: &Path) -> libc::statvfs {
    let c = cpath(p);
    // SAFETY: statvfs fills the zeroed struct we pass.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    assert_eq!(
        r,
        0,
        "statvfs {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    s
}

/// `pread` with O_DIRECT (so the read reaches the daemon, not the page
/// cache) of `len` bytes at `off`.
pub struct DirectFile {
    fd: libc::c_int,
}

impl DirectFile {
    pub fn open(p: &Path) -> std::io::Result<DirectFile> {
        let c = cpath(p);
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECT | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(DirectFile { fd })
    }

    pub fn pread(&self, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let r = unsafe {
                libc::pread(
                    self.fd,
                    buf[done..].as_mut_ptr().cast(),
                    buf.len() - done,
                    (off + done as u64) as i64,
                )
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if r == 0 {
                break;
            }
            done += r as usize;
        }
        Ok(done)
    }
}

impl Drop for DirectFile {
    fn drop(&mut self) {
        unsafe { libc::close(self.fd) };
    }
}
