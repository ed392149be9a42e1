//! Shared helpers for the integration tests, one module per topic:
//!
//! - [`harness`]: banners, skip reporting, `check_all`, `Lazy`
//! - [`run`]: tools on PATH, running commands with a timeout, `wimfs` itself
//! - [`fixtures`]: the shared real WIMs, scratch directories, unzip
//! - [`imagex`]: `wimlib-imagex` as the oracle; [`sevenzip`]: `7zz` as a
//!   second reader; [`libwim`]: wimlib's codecs through libwim.so
//! - [`rng`]: the one deterministic generator and test data
//! - [`tree`]: generated source trees; [`compare`]: the tree comparator
//! - [`ntfs`]: WIMs captured from an NTFS volume filled through ntfs-3g
//! - [`mount`]: mount guards and daemon liveness; [`xattr`], [`sys`]: libc
//!   wrappers
//!
//! Everything is re-exported here, so `use common::*` and `common::name`
//! keep working. Every test binary includes this module and uses a
//! different subset of it, hence `allow(dead_code, unused_imports)`. `tests/mount_support`
//! re-exports [`mount`], [`xattr`] and [`sys`] for the files that include it.
#![allow(dead_code, unused_imports)]

pub mod compare;
pub mod fixtures;
pub mod harness;
pub mod imagex;
pub mod libwim;
pub mod mount;
pub mod ntfs;
pub mod rng;
pub mod run;
pub mod sevenzip;
pub mod sys;
pub mod tree;
pub mod xattr;

pub use compare::*;
pub use fixtures::*;
pub use harness::*;
pub use imagex::*;
pub use mount::*;
pub use ntfs::*;
pub use rng::*;
pub use run::*;
pub use sevenzip::*;
pub use sys::*;
pub use tree::*;
pub use xattr::*;

// The std names the topic modules share (each takes them with `use super::*`).
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsStr, OsString};
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
