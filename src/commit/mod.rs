//! Commit: turn a new image tree into bytes appended to the WIM.
//!
//! See [`tree`] for what a commit is given.

pub mod tree;

pub use tree::{Content, EntryStreams, NewImage, StreamData};
