//! The mount lifecycle as a library, the same for every platform adapter:
//!
//! - [`spec`]: what to mount and how ([`MountSpec`]), and derived names;
//! - [`daemon`]: starting the daemon and its readiness handshake;
//! - [`serve`]: the mount's life in the daemon, from opening the WIM to
//!   the cleanup after the unmount;
//! - [`registry`]: the per-user records of live mounts;
//! - [`control`]: the protocol a read-write mount is committed, discarded
//!   and queried by, server and client, over [`transport`];
//! - [`live`]: the live commit;
//! - [`unmount`]: taking a mount down from outside;
//! - [`dead`]: mounts whose daemon died: `cleanup` and `remount`;
//! - [`mountpoint`]: where each kind of adapter may mount (WinFsp: a
//!   drive letter, a new folder, or an existing empty one);
//! - [`adapter`]: what a session needs of a platform adapter (FUSE,
//!   WinFsp), so no fuser type appears here.
//!
//! OS calls come from [`crate::sys`]; errors are [`SessionError`].

pub mod adapter;
pub mod control;
pub mod daemon;
pub mod dead;
mod error;
pub mod live;
pub mod mountpoint;
pub mod registry;
pub mod serve;
pub mod spec;
pub mod transport;
pub mod unmount;

pub use adapter::{Adapter, MountIdentity, MountOptions, MountedFs, Unmount};
pub use error::{error_text, Result, SessionError};
pub use serve::{check_mountpoint, run_foreground};
pub use spec::{default_staging, MountSpec, RwSpec};
