//! OS calls, one file per platform: the one place for `unsafe` system calls.
//!
//! Everything above this module speaks in these functions and types, so the
//! security rules of the hardening work live in one place:
//! - every file and directory wimfs creates is private to its user (0700 /
//!   0600) whatever the umask;
//! - nothing is opened through a symlink wimfs did not make (the last path
//!   component is opened with `O_NOFOLLOW`, and the files of a private
//!   directory are opened relative to its descriptor, so swapping the
//!   directory for a symlink after the check reaches nothing);
//! - a directory or file owned by someone else, or writable by group or
//!   others, is refused with a message that names it.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

/// How [`PrivateDir::open_file`] opens a file inside a private directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read an existing file.
    Read,
    /// Read and write an existing file.
    ReadWrite,
    /// Read and write, creating the file (0600) when it is absent.
    Create,
    /// Create the file (0600); fail if anything exists under the name.
    CreateNew,
    /// Create or empty the file (0600), write only.
    Truncate,
    /// Append, creating the file (0600) when it is absent.
    Append,
}

/// Create a new file beside `target` (same directory) with an unguessable
/// name starting `.NAME.{tag}-`, exclusively ([`create_exclusive`]: no
/// symlink followed, private to the user). Returns the file and its path.
pub fn create_temp_beside(
    target: &std::path::Path,
    tag: &str,
) -> std::io::Result<(std::fs::File, std::path::PathBuf)> {
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let base = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for _ in 0..16 {
        let path = dir.join(format!(".{base}.{tag}-{}", random_suffix()));
        match create_exclusive(&path) {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!(
            "could not create a temporary file beside {}",
            target.display()
        ),
    ))
}
