//! Capture: turn a Linux directory tree into a [`NewImage`], the input the
//! WIM writer takes (`wimfs capture` and `wimfs append` then write it with
//! [`crate::commit::capture`]).
//!
//! What a tree holds and how it lands in the image:
//! - directories, regular files (empty ones have no blob; sparse ones are
//!   read as the zeros they hold and marked SPARSE_FILE, as wimlib does),
//!   hard links (one link group, one blob read once);
//! - symbolic links become symlink reparse points: a relative target stays
//!   relative; an absolute one pointing into the captured tree is made
//!   absolute to the image root (the header says RP_FIX, so an apply puts
//!   it back under its target directory); other absolute targets are kept
//!   as they are and marked not fixed. A link to a directory is a directory
//!   reparse point;
//! - `user.*` xattrs become named data streams (wimfs shows and applies
//!   named streams as `user.*` xattrs, so they round-trip);
//! - on an ntfs-3g mount made with `streams_interface=xattr`, the Windows
//!   metadata ntfs-3g shows as xattrs: `system.ntfs_acl` (security
//!   descriptor), `system.ntfs_attrib`, `system.ntfs_reparse_data`,
//!   `system.ntfs_dos_name`, `system.ntfs_crtime`;
//! - with `unix_data`, owner, group, mode and device number in wimlib's
//!   UNIX-data tagged item, and every non-`system.` xattr in wimlib's
//!   xattr item, so `wimlib-imagex apply --unix-data` restores them too;
//!   FIFOs, devices and sockets are then stored as empty files whose mode
//!   says what they are (without it they are left out with a warning).
//!
//! Nothing below the root is followed through a symlink. The walk is
//! sequential (directory reads are cheap); file contents are read later,
//! in parallel, when the writer hashes and compresses them.

pub mod config;
mod ntfs;
mod walk;

pub use config::CaptureConfig;
pub use walk::scan;

use crate::newimage::NewImage;

/// How to capture.
#[derive(Debug, Clone, Default)]
pub struct CaptureOptions {
    /// Store UNIX owner, group, mode, device numbers and xattrs as wimlib's
    /// `--unix-data` does.
    pub unix_data: bool,
    /// Exclusions and compression exclusions (`--config`).
    pub config: CaptureConfig,
    /// Files left out by identity (device, inode): the WIM being written
    /// when it lies inside the captured tree (it changes while it is read).
    pub skip_files: Vec<(u64, u64)>,
}

/// A scanned tree.
pub struct Captured {
    pub image: NewImage,
    /// Files matched by `[CompressionExclusionList]`: their contents are
    /// stored uncompressed.
    pub uncompressed: Vec<std::sync::Arc<dyn crate::newimage::Content>>,
    pub dirs: u64,
    /// Files (every name of a hard-linked file counts).
    pub files: u64,
    /// Bytes of file data (each hard-linked file once).
    pub bytes: u64,
    /// Paths left out (special files without `unix_data`), for the report.
    pub skipped: Vec<String>,
}
