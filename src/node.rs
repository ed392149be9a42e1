//! The platform-neutral vocabulary of the filesystem: inode numbers,
//! attributes, directory entries, errors and mount options.
//!
//! It sits below the overlay (and the vfs above it) because the overlay
//! answers in these terms; were they defined in `vfs`, the overlay would
//! import from the layer above it. `vfs` re-exports all of it, so the
//! adapters and the CLI keep naming them `vfs::…`.

use crate::error::Error;
use crate::image::{Special, UnixData};
use std::sync::Arc;

/// Inode number as the kernel sees it; the root is 1.
pub type Ino = u64;
pub const ROOT_INO: Ino = 1;

/// Errors in the vocabulary every platform has.
///
/// Nothing here logs: an error is logged once, by the adapter that turns
/// it into the platform's code (or by whoever handles it instead).
#[derive(Debug, Clone, thiserror::Error)]
pub enum VfsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("read-only file system")]
    ReadOnly,
    #[error("no such attribute")]
    NoAttr,
    #[error("buffer too small")]
    Range,
    #[error("value too large")]
    TooBig,
    #[error("invalid argument")]
    Invalid,
    #[error("not a symbolic link")]
    NotLink,
    #[error("file exists")]
    Exists,
    #[error("directory not empty")]
    NotEmpty,
    #[error("no space left on the staging device")]
    NoSpace,
    #[error("operation not permitted")]
    Perm,
    #[error("file name too long")]
    NameTooLong,
    #[error("operation not supported")]
    NotSupported,
    #[error("I/O error: {0}")]
    Io(#[source] IoCause),
}

/// What an [`VfsError::Io`] came from, kept for callers and logs. Shared
/// (`Arc`) so that the error stays `Clone`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IoCause {
    /// A library error: reading or checking the WIM, or a staged file.
    #[error(transparent)]
    Lib(Arc<Error>),
    /// The staging directory of a read-write mount failed.
    #[error(transparent)]
    Staging(Arc<std::io::Error>),
}

/// Equal kinds; two I/O errors are equal when they read the same (the
/// causes themselves cannot be compared).
impl PartialEq for VfsError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (VfsError::Io(a), VfsError::Io(b)) => a.to_string() == b.to_string(),
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Eq for VfsError {}

impl From<Error> for VfsError {
    fn from(e: Error) -> Self {
        VfsError::Io(IoCause::Lib(Arc::new(e)))
    }
}

impl VfsError {
    // Constructors for the write side's errors.
    pub fn exists() -> Self {
        VfsError::Exists
    }
    pub fn not_empty() -> Self {
        VfsError::NotEmpty
    }
    pub fn no_space() -> Self {
        VfsError::NoSpace
    }
    pub fn perm() -> Self {
        VfsError::Perm
    }
    pub fn name_too_long() -> Self {
        VfsError::NameTooLong
    }
    pub fn not_supported() -> Self {
        VfsError::NotSupported
    }
    /// An I/O error on the staging directory.
    pub fn from_io(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::StorageFull {
            return Self::no_space();
        }
        VfsError::Io(IoCause::Staging(Arc::new(e)))
    }
    /// A stream whose blob the WIM does not have (a split WIM's part
    /// missing, or a damaged blob table).
    pub fn missing_data() -> Self {
        Error::Other("data missing from WIM".into()).into()
    }
    /// A broken invariant of the overlay, reported rather than panicking.
    pub fn internal(what: &str) -> Self {
        Error::Other(format!("internal: {what}")).into()
    }
    pub(crate) fn from_lib(e: Error) -> Self {
        match e {
            Error::RawIo(io) | Error::Io { err: io, .. } => Self::from_io(io),
            other => other.into(),
        }
    }
}

pub type VfsResult<T> = std::result::Result<T, VfsError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    Regular,
    Symlink,
    /// A FIFO, device or socket: an empty file in the WIM whose UNIX data
    /// says what it is (shown as such where UNIX data is used).
    Special(Special),
}

/// Seconds and nanoseconds since the Unix epoch.
pub type Timestamp = (i64, u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub size: u64,
    pub blocks: u64,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub crtime: Timestamp,
    pub kind: FileKind,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    /// Windows attributes, for adapters that show them.
    pub attributes: u32,
}

impl FileKind {
    /// What an inode shows as: a decodable symlink or junction is a
    /// symlink whatever its attributes, then directories, then FIFOs,
    /// devices and sockets where UNIX data is shown (`unix`), else a file.
    pub fn classify(link: bool, dir: bool, special: Option<Special>, unix: bool) -> FileKind {
        if link {
            FileKind::Symlink
        } else if dir {
            FileKind::Directory
        } else if let Some(s) = special.filter(|_| unix) {
            FileKind::Special(s)
        } else {
            FileKind::Regular
        }
    }
}

/// What an inode's attributes are made from, whichever layer holds it
/// (the image, or the overlay over it): see [`Attr::of`].
#[derive(Debug, Clone, Copy)]
pub struct AttrFacts {
    pub kind: FileKind,
    /// Size of the unnamed data stream.
    pub data_size: u64,
    /// Length of the POSIX symlink target (symlinks).
    pub link_len: u64,
    /// Names (hard links) of the inode.
    pub names: u32,
    /// Subdirectories (directories).
    pub subdirs: u32,
    /// Windows attributes.
    pub attributes: u32,
    /// Windows FILETIMEs.
    pub creation_time: u64,
    pub last_access_time: u64,
    pub last_write_time: u64,
    pub unix: Option<UnixData>,
}

impl Attr {
    /// The attributes of inode `ino`: the one place their rules live, so
    /// a read-only and a read-write mount cannot show the same inode
    /// differently. Size is the data's for files, the target's length for
    /// symlinks and 0 otherwise; a directory has 2 + its subdirectories
    /// links; owner and mode come from the UNIX data where it is shown,
    /// else from the mount options; ctime is the last write time (a WIM
    /// keeps no change time).
    pub fn of(ino: Ino, f: &AttrFacts, opts: &VfsOptions) -> Attr {
        let size = match f.kind {
            FileKind::Symlink => f.link_len,
            FileKind::Directory | FileKind::Special(_) => 0,
            FileKind::Regular => f.data_size,
        };
        let (mut perm, mut uid, mut gid, mut rdev) = match f.kind {
            FileKind::Directory => (opts.dir_mode, opts.uid, opts.gid, 0),
            FileKind::Regular | FileKind::Special(_) => (opts.file_mode, opts.uid, opts.gid, 0),
            FileKind::Symlink => (0o777, opts.uid, opts.gid, 0),
        };
        if opts.shows_unix_data() {
            if let Some(u) = f.unix {
                perm = (u.mode & 0o7777) as u16;
                uid = u.uid;
                gid = u.gid;
                rdev = u.rdev;
            }
        }
        let ft = crate::time::filetime_to_unix;
        Attr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: ft(f.last_access_time),
            mtime: ft(f.last_write_time),
            ctime: ft(f.last_write_time),
            crtime: ft(f.creation_time),
            kind: f.kind,
            perm,
            nlink: if f.kind == FileKind::Directory {
                2 + f.subdirs
            } else {
                f.names
            },
            uid,
            gid,
            rdev,
            attributes: f.attributes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    pub kind: FileKind,
    pub name: String,
    /// Offset to pass to continue after this entry.
    pub next: u64,
}

/// One page of a directory listing, as every view pages it: `.` at offset
/// 0, `..` at 1, then child `i` at `i + 2`; at most `max` entries from
/// `offset`. `child(i)` gives child `i`'s inode, kind and name, asked only
/// for the children on the page.
pub fn list_page(
    ino: Ino,
    parent: Ino,
    count: usize,
    offset: u64,
    max: usize,
    mut child: impl FnMut(usize) -> (Ino, FileKind, String),
) -> Vec<DirEntry> {
    let total = count as u64 + 2;
    let mut out = Vec::new();
    let mut off = offset;
    while off < total && out.len() < max {
        let (ino, kind, name) = match off {
            0 => (ino, FileKind::Directory, ".".to_string()),
            1 => (parent, FileKind::Directory, "..".to_string()),
            n => child((n - 2) as usize),
        };
        out.push(DirEntry {
            ino,
            kind,
            name,
            next: off + 1,
        });
        off += 1;
    }
    out
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
}

/// Ownership and permissions for entries without UNIX data.
#[derive(Debug, Clone)]
pub struct VfsOptions {
    pub uid: u32,
    pub gid: u32,
    pub dir_mode: u16,
    pub file_mode: u16,
    /// Use the UNIX-data tag (uid/gid/mode) where the image has it.
    pub use_unix_data: bool,
    /// Absolute mount point: symlinks fixed up at capture point inside it.
    pub mount_root: String,
    /// Bytes to decompress ahead of a sequential reader.
    pub readahead: u64,
    /// Read-write mounts: keep owner, group and mode (chmod/chown, and of
    /// new files) in the UNIX-data tag. Without it chmod/chown that would
    /// change anything fail with a permission error (a WIM has nowhere
    /// else to keep them) and new files show the default owner and mode.
    pub store_unix_data: bool,
    /// Read-write mounts: refuse new names Windows cannot use (reserved
    /// characters, trailing dot or space, DOS device names, a name equal
    /// but for case to another in the directory; see [`crate::nt::names`]),
    /// as ntfs-3g's `windows_names` does, so the mistake shows where it is
    /// made rather than when Windows applies the image. Off
    /// (`--posix-names`) for images only Linux will read.
    pub windows_names: bool,
}

impl VfsOptions {
    /// Whether owner, mode and special file types come from the UNIX-data
    /// tag: where it is used, or where changes store it (a read-write
    /// mount's new owner and mode must show as set).
    pub fn shows_unix_data(&self) -> bool {
        self.use_unix_data || self.store_unix_data
    }
}

impl Default for VfsOptions {
    fn default() -> Self {
        VfsOptions {
            uid: 0,
            gid: 0,
            dir_mode: 0o755,
            file_mode: 0o644,
            use_unix_data: true,
            mount_root: "/".into(),
            readahead: 4 << 20,
            store_unix_data: false,
            windows_names: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn io_errors_keep_their_cause() {
        let e = VfsError::from_io(std::io::Error::other("disk on fire"));
        assert_eq!(e.to_string(), "I/O error: disk on fire");
        let src = e.source().expect("a source");
        assert_eq!(src.to_string(), "disk on fire");
        assert!(matches!(e, VfsError::Io(IoCause::Staging(_))));

        let e = VfsError::from(Error::Invalid("bad chunk".into()));
        assert_eq!(e.to_string(), "I/O error: invalid WIM: bad chunk");
        assert!(matches!(&e, VfsError::Io(IoCause::Lib(w)) if matches!(**w, Error::Invalid(_))));

        // The staging's I/O through the library error keeps its kind.
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert_eq!(VfsError::from_lib(Error::RawIo(full)), VfsError::NoSpace);
        assert_eq!(VfsError::missing_data(), VfsError::missing_data());
        assert_ne!(VfsError::missing_data(), VfsError::NotFound);
    }

    #[test]
    fn attributes_follow_one_set_of_rules() {
        let opts = VfsOptions::default();
        let mut f = AttrFacts {
            kind: FileKind::Regular,
            data_size: 1000,
            link_len: 7,
            names: 3,
            subdirs: 4,
            attributes: 0x20,
            creation_time: 0,
            last_access_time: 0,
            last_write_time: 0,
            unix: None,
        };
        let a = Attr::of(9, &f, &opts);
        assert_eq!(
            (a.ino, a.size, a.blocks, a.nlink, a.perm),
            (9, 1000, 2, 3, 0o644)
        );
        f.kind = FileKind::Symlink;
        let a = Attr::of(9, &f, &opts);
        assert_eq!((a.size, a.nlink, a.perm), (7, 3, 0o777));
        f.kind = FileKind::Directory;
        let a = Attr::of(9, &f, &opts);
        assert_eq!((a.size, a.nlink, a.perm), (0, 6, 0o755));
        f.unix = Some(UnixData {
            uid: 5,
            gid: 6,
            mode: 0o40700,
            rdev: 0,
        });
        let a = Attr::of(9, &f, &opts);
        assert_eq!((a.uid, a.gid, a.perm), (5, 6, 0o700));
        let hidden = VfsOptions {
            use_unix_data: false,
            ..VfsOptions::default()
        };
        assert_eq!(Attr::of(9, &f, &hidden).perm, 0o755);
        assert_eq!(
            FileKind::classify(true, true, None, true),
            FileKind::Symlink,
            "a decodable link wins over the directory bit"
        );
        let fifo = Some(Special::Fifo);
        assert_eq!(
            FileKind::classify(false, false, fifo, true),
            FileKind::Special(Special::Fifo)
        );
        assert_eq!(
            FileKind::classify(false, false, fifo, false),
            FileKind::Regular
        );
    }
}
