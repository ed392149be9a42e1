//! What the NT view answers about a file and the volume, in NT's terms
//! (FILETIMEs, attributes as NTFS shows them, sizes rounded to clusters),
//! filled in one place from the vfs's attributes.

use crate::node::{Attr, FileKind};
use crate::nt::attrib;
use crate::time::unix_to_filetime;

/// Cluster size reported to NT callers (allocation sizes are multiples).
pub const CLUSTER: u64 = 4096;

/// FILE_*_INFORMATION as WinFsp's `FSP_FSCTL_FILE_INFO` holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileInfo {
    pub attributes: u32,
    /// The reparse tag (0 unless [`attrib::REPARSE_POINT`] is set).
    pub reparse_tag: u32,
    pub allocation_size: u64,
    pub file_size: u64,
    pub creation_time: u64,
    pub last_access_time: u64,
    pub last_write_time: u64,
    /// A WIM keeps no change time: the last write time stands in.
    pub change_time: u64,
    /// The stable file id: the inode number, the same for every hard link
    /// and for the life of the mount.
    pub index_number: u64,
    pub hard_links: u32,
}

/// Is `a` a directory to NT: one in the vfs, or a reparse point stored
/// with the directory bit (a junction, which the vfs shows as a link)?
pub fn is_dir(a: &Attr) -> bool {
    a.kind == FileKind::Directory || a.attributes & attrib::DIRECTORY != 0
}

impl FileInfo {
    /// The information of a file with attributes `a` and reparse tag
    /// `tag`; `size` is the size of the stream opened (the unnamed
    /// stream's for a file, 0 for a directory, a named stream's for a
    /// stream handle).
    pub fn of(a: &Attr, tag: Option<u32>, size: u64) -> FileInfo {
        let dir = is_dir(a);
        let ft = |(s, ns): (i64, u32)| unix_to_filetime(s, ns);
        let size = if dir { 0 } else { size };
        FileInfo {
            attributes: attrib::shown(a.attributes, dir),
            reparse_tag: if a.attributes & attrib::REPARSE_POINT != 0 {
                tag.unwrap_or(0)
            } else {
                0
            },
            allocation_size: size.div_ceil(CLUSTER) * CLUSTER,
            file_size: size,
            creation_time: ft(a.crtime),
            last_access_time: ft(a.atime),
            last_write_time: ft(a.mtime),
            change_time: ft(a.mtime),
            index_number: a.ino,
            hard_links: if dir { 1 } else { a.nlink },
        }
    }

    /// The size of the unnamed data stream as NT sees it: symlinks in the
    /// vfs report their target's length, but on NT a symlink is a
    /// reparse point whose data stream is empty.
    pub fn data_size(a: &Attr) -> u64 {
        match a.kind {
            FileKind::Regular => a.size,
            _ => 0,
        }
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirInfo {
    pub name: String,
    pub info: FileInfo,
}

/// FILE_FS_*_INFORMATION as WinFsp's `FSP_FSCTL_VOLUME_INFO` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub total_size: u64,
    pub free_size: u64,
    pub label: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{AttrFacts, VfsOptions};

    fn attr(kind: FileKind, attributes: u32, size: u64, names: u32) -> Attr {
        let f = AttrFacts {
            kind,
            data_size: size,
            link_len: 12,
            names,
            subdirs: 3,
            attributes,
            creation_time: 132_000_000_000_000_001,
            last_access_time: 132_000_000_000_000_002,
            last_write_time: 132_000_000_000_000_003,
            unix: None,
        };
        Attr::of(42, &f, &VfsOptions::default())
    }

    #[test]
    fn a_file() {
        let a = attr(FileKind::Regular, attrib::ARCHIVE, 5000, 2);
        let i = FileInfo::of(&a, None, FileInfo::data_size(&a));
        assert_eq!(
            i,
            FileInfo {
                attributes: attrib::ARCHIVE,
                reparse_tag: 0,
                allocation_size: 8192,
                file_size: 5000,
                // FILETIMEs survive the trip through the vfs exactly.
                creation_time: 132_000_000_000_000_001,
                last_access_time: 132_000_000_000_000_002,
                last_write_time: 132_000_000_000_000_003,
                change_time: 132_000_000_000_000_003,
                index_number: 42,
                hard_links: 2,
            }
        );
    }

    #[test]
    fn directories_links_and_empty_attributes() {
        let d = attr(FileKind::Directory, attrib::DIRECTORY, 0, 1);
        let i = FileInfo::of(&d, None, 0);
        assert_eq!(
            (i.attributes, i.hard_links, i.file_size),
            (attrib::DIRECTORY, 1, 0)
        );
        let f = attr(FileKind::Regular, 0, 0, 1);
        assert_eq!(FileInfo::of(&f, None, 0).attributes, attrib::NORMAL);
        // A junction: a link in the vfs, a directory reparse point to NT.
        let j = attr(
            FileKind::Symlink,
            attrib::DIRECTORY | attrib::REPARSE_POINT,
            0,
            1,
        );
        assert!(is_dir(&j));
        let i = FileInfo::of(&j, Some(0xA000_0003), FileInfo::data_size(&j));
        assert_eq!(i.attributes, attrib::DIRECTORY | attrib::REPARSE_POINT);
        assert_eq!((i.reparse_tag, i.file_size), (0xA000_0003, 0));
        // A symlink to a file: its data stream is empty, not the target's length.
        let l = attr(
            FileKind::Symlink,
            attrib::ARCHIVE | attrib::REPARSE_POINT,
            0,
            1,
        );
        let i = FileInfo::of(&l, Some(0xA000_000C), FileInfo::data_size(&l));
        assert_eq!((i.file_size, i.reparse_tag), (0, 0xA000_000C));
        // The tag only shows on reparse points.
        assert_eq!(FileInfo::of(&f, Some(7), 0).reparse_tag, 0);
    }
}
