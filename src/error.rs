//! The library's error type: every failure names what was wrong and where.
//!
//! Callers branch on the variant, not on the text: a damaged file is
//! [`Error::Corrupt`] with the [`Section`] of the WIM that is damaged (and the
//! offset when one is known), a feature we do not read is
//! [`Error::Unsupported`], a bad image number or name is
//! [`Error::NoSuchImage`]. Errors that wrap another keep it as their
//! `source()`, so nothing below is lost; [`Error::section`] looks through the
//! wrappers. The text stays what it was before the variants were split
//! ("invalid WIM: ..."), because scripts and tests read it.

use crate::codec::CodecError;
use std::io;
use std::sync::Arc;
use thiserror::Error;

/// The section of a WIM file an [`Error::Corrupt`] is about (not called
/// `Part`: a part is one file of a split WIM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    /// The 208-byte file header and the resource headers in it.
    Header,
    /// The blob table (or its size as the header states it).
    BlobTable,
    /// A resource: its placement, chunk table, chunks or stored data.
    Resource,
    /// An image's metadata resource: security data, directory entries,
    /// stream entries, the directory tree.
    Metadata,
    /// The XML data.
    Xml,
    /// The integrity table.
    Integrity,
    /// The parts of a split WIM do not belong together.
    SplitSet,
    /// Raised through [`invalid!`](crate::invalid) by code that has not
    /// said which section it means.
    Unknown,
}

#[derive(Debug, Error)]
pub enum Error {
    #[error("I/O error on {path}: {err}")]
    Io {
        path: String,
        #[source]
        err: io::Error,
    },
    #[error("I/O error: {0}")]
    RawIo(#[from] io::Error),
    #[error("not a WIM file: {0}")]
    NotWim(String),
    /// The file is a WIM but `section` of it is damaged or inconsistent.
    /// `detail` names the problem and where (the offset is in it too);
    /// `offset`, when known, is where: in the file for the header, the
    /// tables and resources, in the uncompressed data for metadata.
    #[error("invalid WIM: {detail}")]
    Corrupt {
        section: Section,
        offset: Option<u64>,
        detail: String,
    },
    /// Reading `what` (in `section`) failed; `source` says why.
    #[error("invalid WIM: {what}: {source}")]
    Within {
        section: Section,
        what: String,
        #[source]
        source: Box<Error>,
    },
    /// Untyped "invalid WIM" still raised by the layers above `wim` (overlay,
    /// vfs, commit, cli, cache) until they move to [`Error::Corrupt`].
    #[error("invalid WIM: {0}")]
    Invalid(String),
    #[error("unsupported WIM feature: {0}")]
    Unsupported(String),
    #[error("corrupt compressed data in resource at offset {offset:#x}, chunk {chunk}: {err}")]
    Decompress {
        offset: u64,
        chunk: u64,
        #[source]
        err: CodecError,
    },
    #[error("SHA-1 mismatch for blob {0}")]
    HashMismatch(String),
    #[error("blob {0} is not in this WIM (a split WIM part may be missing: use --ref)")]
    MissingBlob(String),
    /// Handing the data of blob `hash` on (to a file being applied) failed.
    #[error("blob {hash}: {source}")]
    Blob {
        hash: String,
        #[source]
        source: Box<Error>,
    },
    /// Writing the data of blob `hash` out failed.
    #[error("writing {hash}: {err}")]
    WriteBlob {
        hash: String,
        #[source]
        err: io::Error,
    },
    /// One failure reported for several things (every blob a failed solid
    /// run was feeding gets the run's error).
    #[error(transparent)]
    Shared(Arc<Error>),
    #[error("no such image: {0}")]
    NoSuchImage(String),
    #[error("no such file or directory in image: {0}")]
    NotFound(String),
    #[error(
        "the WIM at {path} was {how} since wimfs locked it (another program, e.g. \
         wimlib-imagex optimize, wrote a new file in its place); nothing was written to it"
    )]
    WimReplaced { path: String, how: &'static str },
    /// `apply` into a directory that already holds files, without
    /// `overwrite`.
    #[error(
        "{0}: the directory is not empty; apply extracts into a new or empty one \
         (--overwrite replaces what the image also has)"
    )]
    TargetNotEmpty(String),
    /// A broken internal promise (a bug in wimfs, not in the WIM).
    #[error("internal: {0}")]
    Internal(String),
    /// Untyped failure still raised by the layers above `wim` until they
    /// get variants of their own.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// A damaged `section` of the WIM, at `offset` when one is known.
    pub fn corrupt(section: Section, offset: Option<u64>, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            section,
            offset,
            detail: detail.into(),
        }
    }

    /// The damaged section of the WIM, looking through the errors that wrap
    /// one (the outermost section named wins: a bad chunk while reading the
    /// XML is damage in the XML); `None` when the failure is not damage in
    /// the file (I/O, a missing image, an unsupported feature...). A decode
    /// failure is damage in a resource.
    pub fn section(&self) -> Option<Section> {
        match self {
            Error::Corrupt { section, .. } => Some(*section),
            Error::Within {
                section, source, ..
            } => source.section().map(|_| *section),
            Error::Blob { source, .. } => source.section(),
            Error::Shared(e) => e.section(),
            Error::Decompress { .. } => Some(Section::Resource),
            Error::Invalid(_) => Some(Section::Unknown),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Build an [`Error::Corrupt`] of an unnamed [`Section`] with a formatted
/// message (for code that has not moved to naming the section yet).
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => {
        $crate::error::Error::Corrupt {
            section: $crate::error::Section::Unknown,
            offset: None,
            detail: format!($($arg)*),
        }
    };
}
