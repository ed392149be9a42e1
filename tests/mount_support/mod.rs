//! Helpers for the tests that really mount. They live in `tests/common`
//! now (`mount`: the guards, FUSE check, daemon pid and liveness; `xattr`
//! and `sys`: the libc wrappers), written once; this module re-exports them
//! for the test files that include it.
#![allow(unused_imports)]

pub use crate::common::mount::*;
pub use crate::common::sys::*;
pub use crate::common::xattr::*;
