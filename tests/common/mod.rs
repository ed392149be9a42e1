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
//! different subset of it, hence `allow(dead_code)`. `tests/mount_support`
//! re-exports [`mount`], [`xattr`] and [`sys`] for the files that include it.
#![allow(dead_code)]

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

// Each test binary uses some of these: the rest would warn as unused.
#[allow(unused_imports)]
pub use self::{
    compare::*, fixtures::*, harness::*, imagex::*, mount::*, ntfs::*, rng::*, run::*, sevenzip::*,
    sys::*, tree::*, xattr::*,
};
