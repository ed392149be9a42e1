//! What a commit is given: the new image as dentry records plus, for every
//! stream, either a blob the WIM already holds or new content to store.
//!
//! The overlay produces this; [`crate::commit::commit`] hashes the new
//! contents, stores only the blobs the WIM lacks, and writes the metadata.
//! It sits below the overlay (beside `node`) because it is the commit's
//! input built by the overlay and vfs: they name these types without
//! depending on the commit itself, so layering arrows point down only.

pub mod builder;

pub use builder::{ImageBuilder, NodeId, NodeMeta};

use crate::wim::header::ResHdr;
use crate::wim::metadata::DentryRecord;
use crate::wim::Sha1;
use std::sync::Arc;

/// New stream content, read on demand (it may live in a staging file, in
/// memory, or partly in the WIM itself).
pub trait Content: Send + Sync {
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fill all of `buf` from `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> crate::Result<()>;
}

impl Content for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> crate::Result<()> {
        let s =
            usize::try_from(offset).map_err(|_| crate::Error::Other("offset overflow".into()))?;
        let src = self
            .get(s..s + buf.len())
            .ok_or_else(|| crate::Error::Other("read past end of content".into()))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// One stream's data.
#[derive(Clone)]
pub enum StreamData {
    /// Zero length (stored as the all-zero hash).
    Empty,
    /// A blob the WIM already has (unchanged data).
    Blob(Sha1),
    /// Content to hash and, if new, store.
    New(Arc<dyn Content>),
}

/// The streams of one dentry. Hard-linked dentries (same `link_group`)
/// must carry the same streams.
#[derive(Clone, Default)]
pub struct EntryStreams {
    /// Unnamed data stream; `None` for directories.
    pub data: Option<StreamData>,
    /// Reparse data (without its 8-byte header) for reparse points.
    pub reparse: Option<StreamData>,
    /// Named data streams.
    pub named: Vec<(String, StreamData)>,
}

/// A whole image to write.
pub struct NewImage {
    pub security: Vec<Vec<u8>>,
    /// `records[0]` is the root; parents come before children. The `hash`
    /// and `streams` fields are ignored: they are rebuilt from `streams`.
    pub records: Vec<DentryRecord>,
    /// Parallel to `records`.
    pub streams: Vec<EntryStreams>,
}

/// What a commit is about to make the WIM say: handed to the caller just
/// before the new header is written, the one write that makes a commit
/// real. A mount's staging records it, so that a process killed right
/// after can be told apart, at the next mount, from one killed before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landing {
    /// The committed image's index.
    pub image: u32,
    /// SHA-1 of its new metadata resource.
    pub metadata_sha1: Sha1,
    /// Where the new blob table is.
    pub blob_table: ResHdr,
}
