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
