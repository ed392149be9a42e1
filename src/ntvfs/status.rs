//! The one place a [`VfsError`] becomes an NTSTATUS.
//!
//! Name-related errors depend on where they arise (an intermediate
//! directory that is missing is OBJECT_PATH_NOT_FOUND, the last name
//! OBJECT_NAME_NOT_FOUND): the NT view decides those while it walks a
//! path and maps only what the vfs answers here.

use crate::error::Error;
use crate::node::{IoCause, VfsError};
use crate::nt::NtStatus;

/// The NTSTATUS for a vfs error.
pub fn from_vfs(e: &VfsError) -> NtStatus {
    match e {
        VfsError::NotFound => NtStatus::OBJECT_NAME_NOT_FOUND,
        // A named stream that is not there.
        VfsError::NoAttr => NtStatus::OBJECT_NAME_NOT_FOUND,
        VfsError::NotDir => NtStatus::NOT_A_DIRECTORY,
        VfsError::IsDir => NtStatus::FILE_IS_A_DIRECTORY,
        VfsError::ReadOnly => NtStatus::MEDIA_WRITE_PROTECTED,
        VfsError::Range => NtStatus::BUFFER_TOO_SMALL,
        VfsError::TooBig => NtStatus::FILE_TOO_LARGE,
        VfsError::Invalid => NtStatus::INVALID_PARAMETER,
        VfsError::NotLink => NtStatus::NOT_A_REPARSE_POINT,
        VfsError::Exists => NtStatus::OBJECT_NAME_COLLISION,
        VfsError::NotEmpty => NtStatus::DIRECTORY_NOT_EMPTY,
        VfsError::NoSpace => NtStatus::DISK_FULL,
        VfsError::Perm => NtStatus::ACCESS_DENIED,
        // NT has no "name too long" for a path component: it is invalid.
        VfsError::NameTooLong => NtStatus::OBJECT_NAME_INVALID,
        VfsError::NotSupported => NtStatus::NOT_SUPPORTED,
        VfsError::Io(IoCause::Lib(e)) if is_damage(e) => NtStatus::FILE_CORRUPT_ERROR,
        VfsError::Io(_) => NtStatus::IO_DEVICE_ERROR,
    }
}

/// Is the library error damage in the WIM (rather than a failing read)?
/// Windows shows FILE_CORRUPT_ERROR as "the file or directory is
/// corrupted and unreadable", which is what a user should be told.
fn is_damage(e: &Error) -> bool {
    match e {
        Error::HashMismatch(_) | Error::MissingBlob(_) => true,
        Error::Shared(inner) => is_damage(inner),
        Error::Blob { source, .. } => is_damage(source),
        other => other.section().is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Section;
    use std::sync::Arc;

    #[test]
    fn every_kind_maps() {
        use NtStatus as S;
        for (e, want) in [
            (VfsError::NotFound, S::OBJECT_NAME_NOT_FOUND),
            (VfsError::NoAttr, S::OBJECT_NAME_NOT_FOUND),
            (VfsError::NotDir, S::NOT_A_DIRECTORY),
            (VfsError::IsDir, S::FILE_IS_A_DIRECTORY),
            (VfsError::ReadOnly, S::MEDIA_WRITE_PROTECTED),
            (VfsError::Range, S::BUFFER_TOO_SMALL),
            (VfsError::TooBig, S::FILE_TOO_LARGE),
            (VfsError::Invalid, S::INVALID_PARAMETER),
            (VfsError::NotLink, S::NOT_A_REPARSE_POINT),
            (VfsError::Exists, S::OBJECT_NAME_COLLISION),
            (VfsError::NotEmpty, S::DIRECTORY_NOT_EMPTY),
            (VfsError::NoSpace, S::DISK_FULL),
            (VfsError::Perm, S::ACCESS_DENIED),
            (VfsError::NameTooLong, S::OBJECT_NAME_INVALID),
            (VfsError::NotSupported, S::NOT_SUPPORTED),
        ] {
            assert_eq!(from_vfs(&e), want, "{e:?}");
        }
    }

    #[test]
    fn damage_is_corrupt_and_the_rest_is_device_error() {
        let corrupt = VfsError::from(Error::Corrupt {
            section: Section::Resource,
            offset: Some(10),
            detail: "bad chunk".into(),
        });
        assert_eq!(from_vfs(&corrupt), NtStatus::FILE_CORRUPT_ERROR);
        let hash = VfsError::from(Error::HashMismatch("blob".into()));
        assert_eq!(from_vfs(&hash), NtStatus::FILE_CORRUPT_ERROR);
        let shared = VfsError::from(Error::Shared(Arc::new(Error::MissingBlob("x".into()))));
        assert_eq!(from_vfs(&shared), NtStatus::FILE_CORRUPT_ERROR);
        let staging = VfsError::from_io(std::io::Error::other("disk on fire"));
        assert_eq!(from_vfs(&staging), NtStatus::IO_DEVICE_ERROR);
        let other = VfsError::from(Error::Other("something".into()));
        assert_eq!(from_vfs(&other), NtStatus::IO_DEVICE_ERROR);
        // A full staging disk is DISK_FULL, however it arrives.
        let full = VfsError::from_io(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert_eq!(from_vfs(&full), NtStatus::DISK_FULL);
    }
}
