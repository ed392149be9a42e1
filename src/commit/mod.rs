//! Writing WIMs: one writer ([`writer::WimWriter`]: a new file, or an
//! append to an existing WIM) and one file per verb that uses it:
//! [`append_image`] (a mount's commit: a new or replaced image, only the
//! blobs the WIM lacks), [`rebuild`] (optimize: a fresh copy holding only
//! what the images reference) and [`export`] (images of one WIM into a new
//! or an existing one). Also the WIM's lock, held while a WIM is written.
//!
//! Appending is crash-safe: the header is first rewritten with
//! WRITE_IN_PROGRESS, everything new goes after the old end of the file (so
//! the old header keeps describing a valid WIM), the data is fsynced, and
//! only then is the new header written. Any error truncates the file back
//! and restores the old header.

mod add_image;
mod append_image;
#[cfg(unix)]
pub mod capture;
pub mod delete;
pub mod export;
pub mod image_xml;
mod lock;
mod pause;
pub mod properties;
pub mod rebuild;
pub mod split;
#[cfg(unix)]
pub mod update;
mod write;
pub mod writer;

pub use crate::newimage::{Content, EntryStreams, Landing, NewImage, StreamData};
pub use add_image::add_new_image;
pub use append_image::{append_image, append_image_with};
pub use lock::WimLock;
pub use writer::{Format, ImageMetadata, WimWriter};

use crate::error::Result;
use crate::image::Image;
use crate::wim::header::{ResHdr, HEADER_SIZE, SOLID_RESOURCE_MAGIC};
use crate::wim::metadata;
use crate::wim::{Sha1, Wim, ZERO_HASH};

/// Chunk size of the solid resources of a new solid WIM (`capture
/// --solid`, `export --compress lzms`, `optimize` of a solid WIM): ESD's,
/// the size Windows Setup is known to accept, and the one that compresses
/// best (LZMS matches reach back over the whole chunk).
pub const SOLID_CHUNK: u32 = 64 << 20;
/// Chunk size of the solid resources a small append (a mount's commit, an
/// update) adds to an LZMS WIM: smaller than ESD's 64 MiB so that it
/// compresses on all cores with bounded memory, and a read of one changed
/// file through a mount decodes 4 MiB, not 64.
pub const APPEND_SOLID_CHUNK: u32 = 4 << 20;

/// Chunk size for `bytes` of new data appended in solid resources: ESD's
/// [`SOLID_CHUNK`] once the data fills one such chunk per core (an append
/// of a whole image then comes out as small as a capture, with every core
/// busy), else [`APPEND_SOLID_CHUNK`] (a commit of a few files stays fast
/// and cheap to read back).
pub fn append_solid_chunk(bytes: u64) -> u32 {
    let cores = rayon::current_num_threads().max(1) as u64;
    if bytes >= SOLID_CHUNK as u64 * cores {
        SOLID_CHUNK
    } else {
        APPEND_SOLID_CHUNK
    }
}
/// Integrity-table chunk size (what DISM and wimlib use).
pub const INTEGRITY_CHUNK: u32 = 10 << 20;

#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Add the tree as a new image instead of replacing `index`.
    pub new_image: bool,
    /// Name of a new image (default: a unique "Image N").
    pub image_name: Option<String>,
    /// Description of a new image (none by default).
    pub image_description: Option<String>,
    /// Write an integrity table even if the WIM had none.
    pub check: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct CommitReport {
    pub image: u32,
    pub new_blobs: u64,
    pub new_bytes: u64,
    pub reused_blobs: u64,
    pub bytes_added: u64,
    pub file_size: u64,
    /// The image was unchanged: nothing was written.
    #[serde(default)]
    pub nothing_to_commit: bool,
}

/// Where the WIM ends by its header and blob table: the last byte of the
/// blob table, XML, integrity table or any resource. Anything after it
/// belongs to no image (an interrupted write's leftovers).
pub fn described_end(wim: &Wim) -> u64 {
    let h = &wim.header;
    let end = |r: &ResHdr| r.offset.saturating_add(r.size_in_wim);
    let tables = [h.blob_table, h.xml, h.integrity, h.boot_metadata]
        .iter()
        .map(end)
        .max()
        .unwrap_or(0);
    let resources = wim
        .entries
        .iter()
        .filter(|(part, e)| {
            *part == h.part_number
                // Blobs inside a solid resource give offsets into its
                // uncompressed data, not into the file.
                && (!e.reshdr.is_solid() || e.reshdr.uncompressed_size == SOLID_RESOURCE_MAGIC)
        })
        .map(|(_, e)| end(&e.reshdr))
        .max()
        .unwrap_or(0);
    tables.max(resources).max(HEADER_SIZE as u64)
}

/// Phases reported to the progress callback, with byte counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Hashing,
    Writing,
}

impl NewImage {
    /// The image as it stands, every stream referencing its existing blob
    /// (the starting point for exports and for tests).
    pub fn from_image(wim: &Wim, index: u32) -> Result<NewImage> {
        let raw = wim.read_metadata(index)?;
        let md = metadata::parse(&raw)?;
        let img = Image::from_metadata(wim, index, md.clone());
        let mut streams = Vec::with_capacity(md.dentries.len());
        for (i, r) in md.dentries.iter().enumerate() {
            let ino = img.inode_of(i as u32);
            let sd = |h: Sha1| {
                if h == ZERO_HASH {
                    StreamData::Empty
                } else {
                    StreamData::Blob(h)
                }
            };
            streams.push(EntryStreams {
                data: if r.is_dir() && !r.is_reparse() {
                    None
                } else {
                    Some(ino.data().map_or(StreamData::Empty, |s| sd(s.hash)))
                },
                reparse: if r.is_reparse() {
                    Some(ino.reparse().map_or(StreamData::Empty, |s| sd(s.hash)))
                } else {
                    None
                },
                named: ino.named().map(|s| (s.name.clone(), sd(s.hash))).collect(),
            });
        }
        Ok(NewImage {
            security: md.security,
            records: md.dentries,
            streams,
        })
    }
}
