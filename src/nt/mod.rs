//! NT semantics with no Windows types, kept apart from any WIM structure
//! so every layer (the overlay's create paths, `verify`, the NT view over
//! the vfs) applies the same rules, and each is tested on Linux:
//! naming rules Windows imposes ([`names`]), case folding as NTFS
//! compares names ([`upcase`]), WinFsp path and stream parsing
//! ([`path`]), search patterns ([`pattern`]), NTSTATUS values
//! ([`status`]), create dispositions and options ([`create`]) and file
//! attributes ([`attrib`]).

pub mod attrib;
pub mod create;
pub mod names;
pub mod path;
pub mod pattern;
pub mod status;
pub mod upcase;

pub use status::{NtResult, NtStatus};
