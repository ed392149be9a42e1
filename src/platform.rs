//! Mount adapters. Each is a thin translation between its platform's
//! filesystem API and [`crate::vfs::Vfs`]; no WIM logic lives here.

#[cfg(target_os = "linux")]
#[path = "../platform/linux/mod.rs"]
pub mod linux;

/// The adapter of the platform this binary runs on: what `wimfs mount`
/// and the other mount verbs use.
#[cfg(target_os = "linux")]
pub use linux::Fuse as Native;

/// The WinFsp adapter's decisions, platform-neutral (tested on Linux).
#[path = "../platform/winfsp_rules.rs"]
pub mod winfsp_rules;

#[cfg(windows)]
#[path = "../platform/windows/mod.rs"]
pub mod windows;

#[cfg(windows)]
pub use windows::WinFsp as Native;
