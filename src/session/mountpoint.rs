//! Where a mount may go, for each kind of adapter. FUSE mounts over an
//! existing directory. WinFsp mounts on a drive letter (`X:`) or on a
//! folder it creates itself (as a reparse point), which must therefore not
//! exist; DISM users give an existing empty folder (`/MountDir:C:\mnt`),
//! so one is accepted: the adapter removes it just before mounting and
//! puts it back after the unmount. A folder that is not empty is refused
//! as DISM refuses it (0xc1420114), so nothing in it is hidden or lost.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf, Prefix};

/// What an adapter can mount on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountPointRule {
    /// An existing directory (FUSE).
    ExistingDir,
    /// A free drive letter, or a folder the adapter creates (WinFsp).
    DriveOrNewFolder,
}

/// Where a [`MountPointRule::DriveOrNewFolder`] mount goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A drive letter, upper case.
    Drive(char),
    /// A folder, absolute; `was_empty_dir`: an empty directory is there
    /// now, to be removed before mounting and restored after.
    Folder { path: PathBuf, was_empty_dir: bool },
}

impl Target {
    /// The mount point as the registry records it and WinFsp takes it
    /// (`X:`, or the folder's path).
    pub fn mount_point(&self) -> PathBuf {
        match self {
            Target::Drive(c) => PathBuf::from(format!("{c}:")),
            Target::Folder { path, .. } => path.clone(),
        }
    }
}

/// `X:` (also `X:\` or `X:/`) as a drive letter, upper case.
pub fn drive_letter(s: &OsStr) -> Option<char> {
    let s = s.to_str()?;
    let mut c = s.chars();
    let letter = c.next().filter(|c| c.is_ascii_alphabetic())?;
    if c.next() != Some(':') {
        return None;
    }
    match c.as_str() {
        "" | "\\" | "/" => Some(letter.to_ascii_uppercase()),
        _ => None,
    }
}

/// `path` without a `\\?\` (verbatim) prefix where one is not needed
/// (`\\?\C:\mnt` is `C:\mnt`; `\\?\UNC\server\share` is
/// `\\server\share`): what canonicalization gives on Windows, but not what
/// users type, WinFsp takes, or `wimfs mounts` should show.
pub fn strip_verbatim(path: &Path) -> PathBuf {
    let s = path.to_string_lossy();
    if let Some(rest) = s.strip_prefix(r"\\?\UNC\") {
        return PathBuf::from(format!(r"\\{rest}"));
    }
    match s.strip_prefix(r"\\?\") {
        Some(rest) if drive_letter(OsStr::new(rest.get(..2).unwrap_or(""))).is_some() => {
            PathBuf::from(rest)
        }
        _ => path.to_path_buf(),
    }
}

/// Is `path` on a local drive (`C:\...`)? WinFsp cannot mount on a
/// network share's folder.
pub fn is_local_drive_path(path: &Path) -> bool {
    matches!(
        path.components().next(),
        Some(Component::Prefix(p))
            if matches!(p.kind(), Prefix::Disk(_) | Prefix::VerbatimDisk(_))
    )
}

/// Where a WinFsp-style mount of `dir` goes, or why it cannot: a drive
/// letter as given; otherwise a folder that does not exist yet (its parent
/// must be a directory), or an existing empty directory. `dir` is made
/// absolute against the current directory.
pub fn plan(dir: &Path) -> Result<Target, String> {
    if let Some(c) = drive_letter(dir.as_os_str()) {
        return Ok(Target::Drive(c));
    }
    let abs = std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let name = abs
        .file_name()
        .ok_or_else(|| format!("{} cannot be a mount point", dir.display()))?
        .to_os_string();
    let parent = abs
        .parent()
        .ok_or_else(|| format!("{} cannot be a mount point", dir.display()))?;
    let parent = parent.canonicalize().map_err(|e| {
        format!(
            "the folder {} that would hold the mount point does not exist ({e})",
            parent.display()
        )
    })?;
    if !parent.is_dir() {
        return Err(format!("{} is not a directory", parent.display()));
    }
    let path = strip_verbatim(&parent.join(name));
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Target::Folder {
            path,
            was_empty_dir: false,
        }),
        Err(e) => Err(format!(
            "cannot use {} as a mount point: {e}",
            path.display()
        )),
        Ok(m) if m.is_dir() => {
            let empty = std::fs::read_dir(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                .next()
                .is_none();
            if empty {
                Ok(Target::Folder {
                    path,
                    was_empty_dir: true,
                })
            } else {
                Err(format!(
                    "mount point {} is not empty: give an empty or a new folder, or a drive \
                     letter (X:)",
                    path.display()
                ))
            }
        }
        Ok(_) => Err(format!("mount point {} is not a directory", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drive_letters() {
        assert_eq!(drive_letter(OsStr::new("x:")), Some('X'));
        assert_eq!(drive_letter(OsStr::new("M:\\")), Some('M'));
        assert_eq!(drive_letter(OsStr::new("M:/")), Some('M'));
        for not in ["M", "MM:", "1:", "M:\\mnt", ":", "", "M:x"] {
            assert_eq!(drive_letter(OsStr::new(not)), None, "{not:?}");
        }
    }

    #[test]
    fn verbatim_prefixes_are_stripped_where_not_needed() {
        assert_eq!(
            strip_verbatim(Path::new(r"\\?\C:\mnt\img")),
            Path::new(r"C:\mnt\img")
        );
        assert_eq!(
            strip_verbatim(Path::new(r"\\?\UNC\srv\share\x")),
            Path::new(r"\\srv\share\x")
        );
        assert_eq!(
            strip_verbatim(Path::new(r"\\?\Volume{1234}\x")),
            Path::new(r"\\?\Volume{1234}\x")
        );
        assert_eq!(strip_verbatim(Path::new("/mnt/x")), Path::new("/mnt/x"));
    }

    #[test]
    fn folders_new_or_empty_are_accepted_others_refused() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        // New: the adapter creates it.
        assert_eq!(
            plan(&root.join("new")),
            Ok(Target::Folder {
                path: root.join("new"),
                was_empty_dir: false
            })
        );
        assert!(!root.join("new").exists(), "planning created something");
        // Existing and empty, as DISM users give it.
        std::fs::create_dir(root.join("empty")).unwrap();
        assert_eq!(
            plan(&root.join("empty")),
            Ok(Target::Folder {
                path: root.join("empty"),
                was_empty_dir: true
            })
        );
        assert!(root.join("empty").is_dir(), "planning removed the folder");
        // Not empty, a file, no parent.
        std::fs::create_dir(root.join("full")).unwrap();
        std::fs::write(root.join("full/f"), b"x").unwrap();
        let e = plan(&root.join("full")).unwrap_err();
        assert!(e.contains("is not empty"), "{e}");
        assert!(root.join("full/f").is_file());
        std::fs::write(root.join("file"), b"x").unwrap();
        assert!(plan(&root.join("file"))
            .unwrap_err()
            .contains("is not a directory"));
        assert!(plan(&root.join("no/such"))
            .unwrap_err()
            .contains("does not exist"));
        assert_eq!(plan(Path::new("q:")), Ok(Target::Drive('Q')));
        assert_eq!(Target::Drive('Q').mount_point(), Path::new("Q:"));
    }
}
