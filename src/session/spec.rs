//! What to mount and how: the mount spec the CLI (or a Windows service)
//! fills in, and the names derived from it (default staging, source name).

use std::path::{Path, PathBuf};

/// A mount request, already checked for form (modes parsed, sizes
/// non-zero) by whoever built it.
#[derive(Debug, Clone)]
pub struct MountSpec {
    /// The WIM file as given.
    pub wim: PathBuf,
    /// Other parts of a split WIM, or WIMs holding shared blobs.
    pub refs: Vec<PathBuf>,
    /// The image: a 1-based index or a name; `None` when the WIM has one.
    pub image: Option<String>,
    /// The mount point as given.
    pub dir: PathBuf,
    /// MiB the mount may use beyond the loaded image.
    pub cache_mib: u64,
    /// Let other users in.
    pub allow_other: bool,
    /// Owner and group of entries without UNIX data (default: the caller).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Modes of directories and files without UNIX data.
    pub dir_mode: u16,
    pub file_mode: u16,
    /// Show the UNIX data stored in the image.
    pub use_unix_data: bool,
    /// Refuse new names Windows cannot create (read-write mounts).
    pub windows_names: bool,
    /// Read-write: changes go to a staging until committed or discarded.
    pub rw: Option<RwSpec>,
}

/// The read-write part of a [`MountSpec`].
#[derive(Debug, Clone, Default)]
pub struct RwSpec {
    /// Where the changes live (default: [`default_staging`]).
    pub staging_dir: Option<PathBuf>,
    /// Record chmod/chown and new files' owners in the UNIX-data tag.
    pub store_unix_data: bool,
    /// Throw away a staging left by an earlier mount instead of resuming.
    pub discard_staging: bool,
}

/// The default staging directory of image `index` of `wim`: a hidden
/// directory beside the WIM. The WIM's folder may be writable by others,
/// so the staging is trusted only if it is a real directory of this user's
/// that nobody else can write (created 0700 with 0600 files; see
/// `crate::overlay`): a directory or symlink planted under this name is
/// refused, never used.
pub fn default_staging(wim: &Path, index: u32) -> PathBuf {
    let dir = wim.parent().unwrap_or_else(|| Path::new("."));
    let name = wim
        .file_name()
        .map_or_else(|| "wim".into(), |n| n.to_string_lossy().into_owned());
    dir.join(format!(".{name}.wimfs-staging-{index}"))
}

/// The mount's source as the mount table shows it: `wimfs:WIM:IMAGE`, so a
/// wimfs mount says what it serves (commas and spaces would split the
/// mount options).
pub fn fsname(wim: &Path, index: u32) -> String {
    format!("wimfs:{}:{index}", wim.display()).replace([',', ' '], "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_and_source_names() {
        assert_eq!(
            default_staging(Path::new("/w/install.wim"), 3),
            Path::new("/w/.install.wim.wimfs-staging-3")
        );
        assert_eq!(
            fsname(Path::new("/w/my image,v2.wim"), 1),
            "wimfs:/w/my_image_v2.wim:1"
        );
    }
}
