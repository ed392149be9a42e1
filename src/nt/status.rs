//! The NTSTATUS values the NT layer answers with, as the public
//! `ntstatus.h` defines them. A newtype rather than a bare `i32`, so a
//! status cannot be mixed up with a count or a length, and a failing test
//! prints its name rather than a number.

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NtStatus(pub u32);

/// Every named value: (status, name), for `Debug`/`Display` and tests.
macro_rules! statuses {
    ($($name:ident = $v:expr;)*) => {
        impl NtStatus {
            $(pub const $name: NtStatus = NtStatus($v);)*
            const NAMES: &'static [(u32, &'static str)] = &[$(($v, stringify!($name))),*];
        }
    };
}

statuses! {
    SUCCESS = 0x0000_0000;
    BUFFER_OVERFLOW = 0x8000_0005;
    NO_MORE_FILES = 0x8000_0006;
    NOT_IMPLEMENTED = 0xC000_0002;
    INVALID_HANDLE = 0xC000_0008;
    INVALID_PARAMETER = 0xC000_000D;
    INVALID_DEVICE_REQUEST = 0xC000_0010;
    END_OF_FILE = 0xC000_0011;
    ACCESS_DENIED = 0xC000_0022;
    BUFFER_TOO_SMALL = 0xC000_0023;
    OBJECT_NAME_INVALID = 0xC000_0033;
    OBJECT_NAME_NOT_FOUND = 0xC000_0034;
    OBJECT_NAME_COLLISION = 0xC000_0035;
    OBJECT_PATH_INVALID = 0xC000_0039;
    OBJECT_PATH_NOT_FOUND = 0xC000_003A;
    OBJECT_PATH_SYNTAX_BAD = 0xC000_003B;
    SHARING_VIOLATION = 0xC000_0043;
    DELETE_PENDING = 0xC000_0056;
    DISK_FULL = 0xC000_007F;
    INVALID_SECURITY_DESCR = 0xC000_0079;
    INSUFFICIENT_RESOURCES = 0xC000_009A;
    MEDIA_WRITE_PROTECTED = 0xC000_00A2;
    FILE_IS_A_DIRECTORY = 0xC000_00BA;
    NOT_SUPPORTED = 0xC000_00BB;
    NOT_SAME_DEVICE = 0xC000_00D4;
    DIRECTORY_NOT_EMPTY = 0xC000_0101;
    FILE_CORRUPT_ERROR = 0xC000_0102;
    NOT_A_DIRECTORY = 0xC000_0103;
    NAME_TOO_LONG = 0xC000_0106;
    CANNOT_DELETE = 0xC000_0121;
    FILE_DELETED = 0xC000_0123;
    IO_DEVICE_ERROR = 0xC000_0185;
    NOT_A_REPARSE_POINT = 0xC000_0275;
    FILE_TOO_LARGE = 0xC000_0904;
}

impl NtStatus {
    /// The value as WinFsp and the NT API take it (`NTSTATUS` is signed).
    pub fn as_i32(self) -> i32 {
        self.0 as i32
    }

    /// Severity "error" (the top two bits 11): the request failed.
    /// Warnings such as [`NtStatus::BUFFER_OVERFLOW`] return data.
    pub fn is_error(self) -> bool {
        self.0 >> 30 == 3
    }

    pub fn name(self) -> Option<&'static str> {
        Self::NAMES
            .iter()
            .find(|(v, _)| *v == self.0)
            .map(|(_, n)| *n)
    }
}

impl fmt::Debug for NtStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "STATUS_{n}"),
            None => write!(f, "NTSTATUS({:#010x})", self.0),
        }
    }
}

impl fmt::Display for NtStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?} ({:#010x})", self.0)
    }
}

impl std::error::Error for NtStatus {}

/// A result whose error is an NTSTATUS.
pub type NtResult<T> = Result<T, NtStatus>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_ntstatus_h() {
        assert_eq!(NtStatus::SUCCESS.0, 0);
        assert_eq!(
            NtStatus::OBJECT_NAME_NOT_FOUND.as_i32(),
            0xC000_0034u32 as i32
        );
        assert_eq!(NtStatus::OBJECT_NAME_NOT_FOUND.as_i32(), -1_073_741_772);
        assert_eq!(NtStatus::DIRECTORY_NOT_EMPTY.0, 0xC000_0101);
        assert_eq!(NtStatus::CANNOT_DELETE.0, 0xC000_0121);
        assert_eq!(NtStatus::MEDIA_WRITE_PROTECTED.0, 0xC000_00A2);
        assert_eq!(NtStatus::BUFFER_OVERFLOW.0, 0x8000_0005);
    }

    #[test]
    fn names_are_unique_and_printed() {
        let mut seen = std::collections::BTreeSet::new();
        for (v, n) in NtStatus::NAMES {
            assert!(seen.insert(*v), "{n} repeats a value");
        }
        assert_eq!(
            format!("{:?}", NtStatus::ACCESS_DENIED),
            "STATUS_ACCESS_DENIED"
        );
        assert_eq!(
            format!("{:?}", NtStatus(0xC000_9999)),
            "NTSTATUS(0xc0009999)"
        );
        assert!(NtStatus::DISK_FULL.to_string().contains("0xc000007f"));
    }

    #[test]
    fn severity() {
        assert!(NtStatus::ACCESS_DENIED.is_error());
        assert!(!NtStatus::SUCCESS.is_error());
        assert!(!NtStatus::BUFFER_OVERFLOW.is_error());
        assert!(!NtStatus::NO_MORE_FILES.is_error());
    }
}
