//! What an NT create (`NtCreateFile`, WinFsp's Create/Open/Overwrite)
//! does, decided from the request and whether the name exists: a pure
//! function, so every rule has a test and the adapter has no logic.
//!
//! Values are those of the public `wdm.h`/`ntifs.h` documentation.

use super::status::{NtResult, NtStatus};

/// Create dispositions.
pub mod disposition {
    /// Replace an existing file (new attributes), or create it.
    pub const SUPERSEDE: u32 = 0;
    /// Open an existing file; fail if it does not exist.
    pub const OPEN: u32 = 1;
    /// Create a new file; fail if it exists.
    pub const CREATE: u32 = 2;
    /// Open an existing file, or create it.
    pub const OPEN_IF: u32 = 3;
    /// Open and truncate an existing file; fail if it does not exist.
    pub const OVERWRITE: u32 = 4;
    /// Open and truncate an existing file, or create it.
    pub const OVERWRITE_IF: u32 = 5;
}

/// Create options (the subset the NT layer acts on).
pub mod options {
    pub const DIRECTORY_FILE: u32 = 0x0000_0001;
    pub const WRITE_THROUGH: u32 = 0x0000_0002;
    pub const NON_DIRECTORY_FILE: u32 = 0x0000_0040;
    pub const DELETE_ON_CLOSE: u32 = 0x0000_1000;
    pub const OPEN_BY_FILE_ID: u32 = 0x0000_2000;
    pub const OPEN_REPARSE_POINT: u32 = 0x0020_0000;
}

/// Access mask bits that matter here.
pub mod access {
    pub const FILE_READ_DATA: u32 = 0x0000_0001;
    pub const FILE_WRITE_DATA: u32 = 0x0000_0002;
    pub const FILE_APPEND_DATA: u32 = 0x0000_0004;
    pub const FILE_WRITE_EA: u32 = 0x0000_0010;
    pub const FILE_DELETE_CHILD: u32 = 0x0000_0040;
    pub const FILE_WRITE_ATTRIBUTES: u32 = 0x0000_0100;
    pub const DELETE: u32 = 0x0001_0000;
    pub const WRITE_DAC: u32 = 0x0004_0000;
    pub const WRITE_OWNER: u32 = 0x0008_0000;
    pub const GENERIC_ALL: u32 = 0x1000_0000;
    pub const GENERIC_WRITE: u32 = 0x4000_0000;
    pub const MAXIMUM_ALLOWED: u32 = 0x0200_0000;

    /// Bits that change the file, its metadata or its names.
    pub const MODIFYING: u32 = FILE_WRITE_DATA
        | FILE_APPEND_DATA
        | FILE_WRITE_EA
        | FILE_DELETE_CHILD
        | FILE_WRITE_ATTRIBUTES
        | DELETE
        | WRITE_DAC
        | WRITE_OWNER
        | GENERIC_ALL
        | GENERIC_WRITE;

    /// Bits that change the unnamed data (what a read-only attribute
    /// forbids).
    pub const DATA_WRITE: u32 = FILE_WRITE_DATA | FILE_APPEND_DATA | GENERIC_ALL | GENERIC_WRITE;
}

/// The `Information` an NT create returns: what it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Open the existing file as it is (FILE_OPENED).
    Open,
    /// Create a new file, a directory when `dir` (FILE_CREATED).
    Create { dir: bool },
    /// Truncate the existing file and merge attributes (FILE_OVERWRITTEN).
    Overwrite,
    /// Truncate the existing file and replace its attributes
    /// (FILE_SUPERSEDED).
    Supersede,
}

impl Action {
    /// The IO_STATUS_BLOCK `Information` value.
    pub fn information(self) -> u32 {
        match self {
            Action::Supersede => 0,
            Action::Open => 1,
            Action::Create { .. } => 2,
            Action::Overwrite => 3,
        }
    }
}

/// What exists at the name: nothing, or a file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    None,
    File,
    Dir,
}

/// Decide a create. `trailing_sep`: the path ended in `\`; `stream`: a
/// named stream is asked for (`f:s`), in which case `existing` is the
/// stream's (a directory's named streams are not supported here).
///
/// The rules, as NTFS applies them:
/// - both DIRECTORY_FILE and NON_DIRECTORY_FILE, or an unknown
///   disposition: INVALID_PARAMETER;
/// - DIRECTORY_FILE allows only CREATE, OPEN and OPEN_IF
///   (INVALID_PARAMETER), and no stream;
/// - an existing name: CREATE is OBJECT_NAME_COLLISION; a directory with
///   NON_DIRECTORY_FILE is FILE_IS_A_DIRECTORY; a file with
///   DIRECTORY_FILE or a trailing `\` is NOT_A_DIRECTORY (trailing `\`:
///   OBJECT_NAME_INVALID); overwriting or superseding a directory is
///   FILE_IS_A_DIRECTORY;
/// - a missing name: OPEN and OVERWRITE are OBJECT_NAME_NOT_FOUND; a
///   trailing `\` creates only a directory (OBJECT_NAME_INVALID for a
///   file).
pub fn decide(
    disp: u32,
    opts: u32,
    existing: Existing,
    trailing_sep: bool,
    stream: bool,
) -> NtResult<Action> {
    use disposition::*;
    let want_dir = opts & options::DIRECTORY_FILE != 0;
    let want_file = opts & options::NON_DIRECTORY_FILE != 0;
    if (want_dir && want_file) || disp > OVERWRITE_IF {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    if want_dir && (stream || !matches!(disp, CREATE | OPEN | OPEN_IF)) {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    match existing {
        Existing::Dir | Existing::File if disp == CREATE => Err(NtStatus::OBJECT_NAME_COLLISION),
        Existing::Dir if want_file => Err(NtStatus::FILE_IS_A_DIRECTORY),
        Existing::File if trailing_sep => Err(NtStatus::OBJECT_NAME_INVALID),
        Existing::File if want_dir => Err(NtStatus::NOT_A_DIRECTORY),
        Existing::Dir | Existing::File => match disp {
            OPEN | OPEN_IF => Ok(Action::Open),
            _ if existing == Existing::Dir => Err(NtStatus::FILE_IS_A_DIRECTORY),
            SUPERSEDE => Ok(Action::Supersede),
            _ => Ok(Action::Overwrite),
        },
        Existing::None => match disp {
            OPEN | OVERWRITE => Err(NtStatus::OBJECT_NAME_NOT_FOUND),
            _ if trailing_sep && !want_dir => Err(NtStatus::OBJECT_NAME_INVALID),
            _ => Ok(Action::Create { dir: want_dir }),
        },
    }
}

/// DELETE_ON_CLOSE needs DELETE access (else INVALID_PARAMETER, as NT
/// answers).
pub fn check_delete_on_close(opts: u32, granted: u32) -> NtResult<()> {
    if opts & options::DELETE_ON_CLOSE != 0
        && granted & (access::DELETE | access::GENERIC_ALL | access::MAXIMUM_ALLOWED) == 0
    {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::disposition::*;
    use super::options::*;
    use super::*;
    use Existing as E;
    use NtStatus as S;

    #[test]
    fn every_disposition_on_a_file() {
        for (disp, none, file) in [
            (
                SUPERSEDE,
                Ok(Action::Create { dir: false }),
                Ok(Action::Supersede),
            ),
            (OPEN, Err(S::OBJECT_NAME_NOT_FOUND), Ok(Action::Open)),
            (
                CREATE,
                Ok(Action::Create { dir: false }),
                Err(S::OBJECT_NAME_COLLISION),
            ),
            (OPEN_IF, Ok(Action::Create { dir: false }), Ok(Action::Open)),
            (
                OVERWRITE,
                Err(S::OBJECT_NAME_NOT_FOUND),
                Ok(Action::Overwrite),
            ),
            (
                OVERWRITE_IF,
                Ok(Action::Create { dir: false }),
                Ok(Action::Overwrite),
            ),
        ] {
            assert_eq!(decide(disp, 0, E::None, false, false), none, "{disp} none");
            assert_eq!(decide(disp, 0, E::File, false, false), file, "{disp} file");
            let nd = NON_DIRECTORY_FILE;
            assert_eq!(decide(disp, nd, E::File, false, false), file, "{disp} nd");
        }
        assert_eq!(
            decide(6, 0, E::None, false, false),
            Err(S::INVALID_PARAMETER)
        );
    }

    #[test]
    fn directories() {
        let d = DIRECTORY_FILE;
        assert_eq!(
            decide(CREATE, d, E::None, false, false),
            Ok(Action::Create { dir: true })
        );
        assert_eq!(
            decide(OPEN_IF, d, E::None, true, false),
            Ok(Action::Create { dir: true })
        );
        assert_eq!(decide(OPEN, d, E::Dir, false, false), Ok(Action::Open));
        assert_eq!(decide(OPEN, 0, E::Dir, false, false), Ok(Action::Open));
        assert_eq!(
            decide(CREATE, d, E::Dir, false, false),
            Err(S::OBJECT_NAME_COLLISION)
        );
        assert_eq!(
            decide(OPEN, d, E::File, false, false),
            Err(S::NOT_A_DIRECTORY)
        );
        let nd = NON_DIRECTORY_FILE;
        assert_eq!(
            decide(OPEN, nd, E::Dir, false, false),
            Err(S::FILE_IS_A_DIRECTORY)
        );
        for disp in [SUPERSEDE, OVERWRITE, OVERWRITE_IF] {
            assert_eq!(
                decide(disp, d, E::None, false, false),
                Err(S::INVALID_PARAMETER)
            );
            assert_eq!(
                decide(disp, 0, E::Dir, false, false),
                Err(S::FILE_IS_A_DIRECTORY)
            );
        }
        assert_eq!(
            decide(OPEN, d | nd, E::Dir, false, false),
            Err(S::INVALID_PARAMETER)
        );
        // A stream cannot be a directory.
        assert_eq!(
            decide(OPEN_IF, d, E::None, false, true),
            Err(S::INVALID_PARAMETER)
        );
    }

    #[test]
    fn trailing_separator_means_directory() {
        assert_eq!(
            decide(OPEN, 0, E::File, true, false),
            Err(S::OBJECT_NAME_INVALID)
        );
        assert_eq!(decide(OPEN, 0, E::Dir, true, false), Ok(Action::Open));
        assert_eq!(
            decide(CREATE, 0, E::None, true, false),
            Err(S::OBJECT_NAME_INVALID)
        );
        assert_eq!(
            decide(CREATE, DIRECTORY_FILE, E::None, true, false),
            Ok(Action::Create { dir: true })
        );
    }

    #[test]
    fn information_values() {
        assert_eq!(Action::Supersede.information(), 0);
        assert_eq!(Action::Open.information(), 1);
        assert_eq!(Action::Create { dir: true }.information(), 2);
        assert_eq!(Action::Overwrite.information(), 3);
    }

    #[test]
    fn delete_on_close_needs_delete_access() {
        assert_eq!(
            check_delete_on_close(DELETE_ON_CLOSE, access::FILE_READ_DATA),
            Err(S::INVALID_PARAMETER)
        );
        assert_eq!(
            check_delete_on_close(DELETE_ON_CLOSE, access::DELETE),
            Ok(())
        );
        assert_eq!(check_delete_on_close(0, 0), Ok(()));
    }
}
