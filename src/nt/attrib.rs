//! FILE_ATTRIBUTE_* values (public `winnt.h`) and the rules NTFS applies
//! to them: what a file shows, what a caller may set, what a new or
//! overwritten file gets. Pure functions over the stored bits.

pub const READONLY: u32 = 0x0000_0001;
pub const HIDDEN: u32 = 0x0000_0002;
pub const SYSTEM: u32 = 0x0000_0004;
pub const DIRECTORY: u32 = 0x0000_0010;
pub const ARCHIVE: u32 = 0x0000_0020;
pub const DEVICE: u32 = 0x0000_0040;
pub const NORMAL: u32 = 0x0000_0080;
pub const TEMPORARY: u32 = 0x0000_0100;
pub const SPARSE_FILE: u32 = 0x0000_0200;
pub const REPARSE_POINT: u32 = 0x0000_0400;
pub const COMPRESSED: u32 = 0x0000_0800;
pub const OFFLINE: u32 = 0x0000_1000;
pub const NOT_CONTENT_INDEXED: u32 = 0x0000_2000;
pub const ENCRYPTED: u32 = 0x0000_4000;

/// What a caller may set (SetBasicInfo, a create's attributes): NTFS's
/// FILE_ATTRIBUTE_VALID_SET_FLAGS. The others (directory, reparse point,
/// sparse, compressed, encrypted) follow from what the file is and are
/// changed by their own requests.
pub const SETTABLE: u32 =
    READONLY | HIDDEN | SYSTEM | ARCHIVE | NORMAL | TEMPORARY | OFFLINE | NOT_CONTENT_INDEXED;

/// The attributes a file shows: the directory bit from what it is
/// (whatever was stored), NORMAL only when nothing else is set.
pub fn shown(stored: u32, is_dir: bool) -> u32 {
    let mut a = stored & !(NORMAL | DIRECTORY);
    if is_dir {
        a |= DIRECTORY;
    }
    if a == 0 {
        NORMAL
    } else {
        a
    }
}

/// What is stored after a caller sets `requested` on a file holding
/// `current`: the settable bits from the request (NORMAL means none),
/// the rest kept; TEMPORARY is not kept on directories.
pub fn set(current: u32, requested: u32, is_dir: bool) -> u32 {
    let mut keep = current & !SETTABLE & !NORMAL;
    let mut new = requested & SETTABLE & !NORMAL;
    if is_dir {
        new &= !TEMPORARY;
        keep |= DIRECTORY;
    }
    keep | new
}

/// What a new file or directory stores when created with `requested`:
/// the settable bits, plus ARCHIVE on files (NTFS marks every new file
/// for backup), the directory bit on directories.
pub fn for_create(requested: u32, is_dir: bool) -> u32 {
    let a = set(0, requested, is_dir);
    if is_dir {
        a
    } else {
        a | ARCHIVE
    }
}

/// What an overwritten file stores: FILE_OVERWRITE adds the requested
/// bits to the current ones, FILE_SUPERSEDE replaces them; both mark it
/// ARCHIVE.
pub fn on_overwrite(current: u32, requested: u32, supersede: bool) -> u32 {
    let req = requested & SETTABLE & !NORMAL;
    let base = if supersede {
        current & !SETTABLE
    } else {
        current & !NORMAL
    };
    base | req | ARCHIVE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_follows_the_kind() {
        assert_eq!(shown(0, false), NORMAL);
        assert_eq!(shown(NORMAL | ARCHIVE, false), ARCHIVE);
        assert_eq!(shown(0, true), DIRECTORY);
        assert_eq!(shown(DIRECTORY, false), NORMAL, "the bit follows the kind");
        assert_eq!(shown(HIDDEN | SYSTEM, true), HIDDEN | SYSTEM | DIRECTORY);
        assert_eq!(
            shown(ARCHIVE | REPARSE_POINT, false),
            ARCHIVE | REPARSE_POINT
        );
    }

    #[test]
    fn callers_set_only_settable_bits() {
        assert_eq!(set(ARCHIVE, HIDDEN | READONLY, false), HIDDEN | READONLY);
        assert_eq!(set(ARCHIVE | REPARSE_POINT, NORMAL, false), REPARSE_POINT);
        assert_eq!(set(ARCHIVE, DIRECTORY | COMPRESSED | HIDDEN, false), HIDDEN);
        assert_eq!(set(DIRECTORY, TEMPORARY | HIDDEN, true), DIRECTORY | HIDDEN);
        assert_eq!(set(SPARSE_FILE, 0, false), SPARSE_FILE);
    }

    #[test]
    fn create_and_overwrite() {
        assert_eq!(for_create(NORMAL, false), ARCHIVE);
        assert_eq!(for_create(0, false), ARCHIVE);
        assert_eq!(for_create(HIDDEN, false), HIDDEN | ARCHIVE);
        assert_eq!(for_create(NORMAL, true), DIRECTORY);
        assert_eq!(for_create(DIRECTORY | READONLY, true), DIRECTORY | READONLY);
        assert_eq!(on_overwrite(HIDDEN, NORMAL, false), HIDDEN | ARCHIVE);
        assert_eq!(on_overwrite(HIDDEN, NORMAL, true), ARCHIVE);
        assert_eq!(
            on_overwrite(HIDDEN | SPARSE_FILE, SYSTEM, true),
            SPARSE_FILE | SYSTEM | ARCHIVE
        );
        assert_eq!(on_overwrite(ARCHIVE, ARCHIVE, false), ARCHIVE);
    }
}
