//! Extended attributes through libc, not following symlinks: the raw
//! `lgetxattr`/`llistxattr`/`lsetxattr` wrappers the mount tests call, and
//! the `user.*` map the tree comparator uses (built on them).

use super::*;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::Path;

/// An xattr of a path by its raw name, `Err(errno)` if absent.
fn lgetxattr_raw(p: &Path, name: &[u8]) -> Result<Vec<u8>, i32> {
    let c = cpath(p);
    let n = CString::new(name).unwrap();
    let len = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
    if len < 0 {
        return Err(errno());
    }
    let mut v = vec![0u8; len as usize];
    let r = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
    if r < 0 {
        return Err(errno());
    }
    v.truncate(r as usize);
    Ok(v)
}

/// Raw xattr names of a path (room for a few more than were there a moment
/// before, so one added in between does not fail the listing).
fn llistxattr_raw(p: &Path) -> Vec<Vec<u8>> {
    let c = cpath(p);
    let n = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if n <= 0 {
        return Vec::new();
    }
    let mut buf = vec![0u8; n as usize + 256];
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    buf.truncate(n.max(0) as usize);
    buf.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// An xattr of a path (not following symlinks), `Err(errno)` if absent.
pub fn lgetxattr(p: &Path, name: &str) -> Result<Vec<u8>, i32> {
    lgetxattr_raw(p, name.as_bytes())
}

/// All xattr names of a path (not following symlinks).
pub fn llistxattr(p: &Path) -> Vec<String> {
    llistxattr_raw(p)
        .iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// `lsetxattr(2)`: returns errno (0 on success).
pub fn lsetxattr(p: &Path, name: &str, v: &[u8]) -> i32 {
    let c = cpath(p);
    let n = CString::new(name).unwrap();
    let r = unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
    if r == 0 {
        0
    } else {
        errno()
    }
}

/// All `user.*` xattrs of a path (not following symlinks).
pub fn user_xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    llistxattr_raw(p)
        .into_iter()
        .filter(|name| name.starts_with(b"user."))
        .map(|name| {
            let v = lgetxattr_raw(p, &name).unwrap_or_default();
            (String::from_utf8_lossy(&name).into_owned(), v)
        })
        .collect()
}

/// Set a `user.*` xattr (used by the comparator's self-tests).
pub fn set_user_xattr(p: &Path, name: &str, value: &[u8]) {
    let e = lsetxattr(p, name, value);
    assert_eq!(
        e,
        0,
        "lsetxattr {}: {}",
        p.display(),
        std::io::Error::from_raw_os_error(e)
    );
}
