//! wimfs: read, mount and service Windows Imaging Format (WIM) files.
//!
//! Layers, bottom to top (arrows point down only):
//! - [`codec`]: XPRESS, LZX and LZMS chunk codecs, pure functions.
//! - [`wim`]: the on-disk format, I/O only through [`io::ReadAt`].
//! - [`cache`]: decompressed chunks shared by threads, parallel reads.
//! - [`image`]: an image as a tree of inodes.
//! - [`nt`]: Windows naming rules (what Windows cannot create).
//! - [`node`]: attributes, directory entries, errors and options the
//!   overlay and the vfs answer in (below the overlay, re-exported by `vfs`).
//! - [`newimage`]: the commit's input (new image, stream contents, landing
//!   record), built by the overlay and vfs, so it sits below them.
//! - [`vfs`]: the platform-neutral filesystem the user sees.
//! - [`ntvfs`]: the vfs in NT terms (handles, NTSTATUS, case-insensitive
//!   names, streams) for the WinFsp adapter.
//! - [`session`]: the mount lifecycle (daemon, registry, control protocol,
//!   live commit), reached by the platform adapters through a small trait.

pub mod cache;
pub mod codec;
pub mod error;
pub mod image;
pub mod io;
pub mod newimage;
pub mod node;
pub mod nt;
pub mod ntvfs;
pub mod wim;

pub use error::{Error, Result};
#[cfg(unix)]
pub mod apply;
pub mod commit;
pub mod overlay;
pub mod platform;
pub mod reparse;
pub mod session;
pub mod stream;
pub mod sys;
pub mod time;
pub mod verify;
pub mod vfs;

/// Below this many items (entries of a blob table or a directory tree) the
/// load of an image stays on the calling thread: starting the rayon pool
/// costs more than it saves, and it is most of a small image's mount time.
pub const PARALLEL_MIN: usize = 2048;
