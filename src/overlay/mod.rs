//! The change set of a read-write mount, over an image.
//!
//! On a read-write mount the image's tree becomes a mutable tree of nodes
//! (one per inode; inode number = index + 1, in the order inodes entered
//! the tree, never reused while mounted). Base inodes enter it when their
//! directory is first looked into, decoded from the image one directory
//! at a time ([`crate::image::lazy`]), so a mount costs the same whatever
//! the image's size; a resume and a commit load every directory. Stream
//! contents are not copied: an unchanged stream is a
//! reference to its blob in the WIM; a changed unnamed data stream is a
//! [`stage::Staged`] stream (copy-on-write blocks in a staging file over the
//! blob); named streams set whole (`user.*` xattrs) and reparse data are
//! small and kept inline, and a named stream written at an offset (the NT
//! layer's `file:stream`) is staged like the unnamed one. Security
//! descriptors set in the mount extend the image's table (deduplicated as
//! they are set; only those still used are written at commit).
//!
//! Every change is a [`journal::Record`], applied by one function
//! (`Tree::apply`) both live and when replaying the journal after a
//! crash, so a resumed mount is exactly the state the records describe.
//! Records name inodes by the journal's own numbers, not the tree's (see
//! [`JournalNumbers`]): base inodes by a dentry's offset in the metadata
//! resource, so any visiting order finds them.
//! Metadata records are written to the journal as they happen (one `write`,
//! so they survive the daemon being killed). Data records (dirty blocks,
//! sizes) are collected per stream and written at the next sync point
//! (fsync, release of a written handle, a size change without an open
//! writer, [`Overlay::sync`]): first the staging files are fsynced, then
//! the records and a metadata record of each written inode are appended and
//! the journal is fsynced. Hence data a record refers to is always durable
//! before the record.
//!
//! The staging directory holds `identity.json` (which WIM and image it
//! belongs to), `journal`, `data/<id>` (one sparse file per changed
//! stream that needs one) and `data/pack` (small new files, appended at
//! their close: see [`stage`]), and `commit.json` while a commit is
//! landing.
//!
//! # Security of the staging
//! The staging holds every byte written in the mount and decides what the
//! next commit writes into the image, so it is trusted only when nobody
//! else can have touched it. It is opened through [`crate::sys::PrivateDir`]:
//! - it is created 0700, its files 0600, its `data` subdirectory 0700,
//!   whatever the umask (so a file written as 0600 in the mount is not
//!   readable from the staging);
//! - an existing staging is refused when it is a symlink, is owned by
//!   another user, or is writable by group or others; every file in it is
//!   opened relative to the directory's descriptor without following a
//!   symlink, and must be a regular file of ours (a planted `journal`
//!   symlink is refused, never truncated through);
//! - a directory without `identity.json` is used (made a staging) only if
//!   it holds nothing but staging names and no staged data, and
//!   [`discard`] deletes only a real staging (identity present, nothing
//!   foreign in it), so `--staging-dir ~` can neither adopt nor delete a
//!   home directory's `journal` or `data/`.

pub mod journal;
pub mod stage;

use crate::cache::ChunkCache;
use crate::image::lazy::{self, LazyImage};
use crate::image::{Special, StreamKind, UnixData};
use crate::newimage::{EntryStreams, Landing, NewImage, StreamData};
use crate::node::{Attr, AttrFacts, DirEntry, FileKind, VfsError, VfsOptions, VfsResult};
use crate::nt::{names, upcase};
use crate::reparse;
use crate::sys::{Access, PrivateDir};
use crate::wim::metadata::{self, attr, tag, DentryRecord};
use crate::wim::{Blob, Sha1, Wim, ZERO_HASH};
use journal::{Journal, Meta, NewKind, Record};
use parking_lot::{Mutex, RwLock, RwLockWriteGuard};
use stage::{Area, StageCounters, Staged};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

const NONE: u32 = u32::MAX;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;
/// NTFS limit on a name, in UTF-16 units.
const MAX_NAME: usize = 255;
/// Largest named stream value (the Linux xattr limit).
pub const MAX_XATTR: usize = 65536;

/// Who is asking (for owner of new files when UNIX data is stored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cred {
    pub uid: u32,
    pub gid: u32,
}

/// How `rename` treats an existing target (RENAME_NOREPLACE and
/// RENAME_EXCHANGE in Linux terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameMode {
    /// Replace an existing target (plain rename(2)).
    Replace,
    /// Fail with `Exists` if the target exists.
    NoReplace,
    /// Swap source and target atomically; both must exist.
    Exchange,
}

impl RenameMode {
    fn code(self) -> u8 {
        match self {
            RenameMode::Replace => 0,
            RenameMode::NoReplace => 1,
            RenameMode::Exchange => 2,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => RenameMode::Replace,
            1 => RenameMode::NoReplace,
            2 => RenameMode::Exchange,
            _ => return None,
        })
    }
}

/// How `setxattr` treats an existing attribute (XATTR_CREATE/REPLACE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrMode {
    Any,
    Create,
    Replace,
}

/// What `setattr` changes; `None` leaves a field alone. Times are resolved
/// by the adapter ("now" becomes the current time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub size: Option<u64>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<(i64, u32)>,
    pub mtime: Option<(i64, u32)>,
}

/// Windows times to set, as FILETIMEs; `None` leaves one alone. The
/// change time is accepted (Windows and ntfs-3g hand over all four) but a
/// WIM has no field for it: it always shows as the last write time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NtTimes {
    pub creation: Option<u64>,
    pub last_access: Option<u64>,
    pub last_write: Option<u64>,
    pub change: Option<u64>,
}

/// The attributes a caller may set (FILE_ATTRIBUTE_VALID_SET_FLAGS:
/// read-only, hidden, system, archive, normal, temporary, offline, not
/// content indexed); the rest (directory, reparse point, compressed,
/// sparse, encrypted) follow what the file is.
pub const SETTABLE_ATTRIBUTES: u32 = 0x31A7;

/// Attributes after a caller asked for `asked` on a node that has `old`:
/// the settable bits from `asked`, the others kept, the directory bit as
/// the node is (`dir`). NORMAL means "none": it is stored only alone, on a
/// file with no other attribute (as Windows and ntfs-3g report it).
pub fn merge_attributes(old: u32, asked: u32, dir: bool) -> u32 {
    let mut a = (old & !SETTABLE_ATTRIBUTES) | (asked & SETTABLE_ATTRIBUTES & !attr::NORMAL);
    if dir {
        a |= attr::DIRECTORY;
    }
    if a == 0 {
        a = attr::NORMAL;
    }
    a
}

/// Largest reparse data (without its 8-byte header) NTFS accepts.
pub const MAX_REPARSE_DATA: usize = 16 * 1024 - 8;

/// Errors opening a staging directory.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error("staging directory {dir} belongs to a different or since-changed WIM: {what}. \
             If a commit completed, its changes are already in the WIM; otherwise mount the WIM it was made for. \
             Discard the staging to start afresh")]
    Mismatch { dir: String, what: String },
    #[error("staging directory {path}: {err}")]
    Io { path: String, err: io::Error },
    #[error("staging directory {0}")]
    Invalid(String),
    /// The staging (or something in it) is not safely ours: a symlink,
    /// another user's, writable by others, or a directory holding files
    /// that are not a staging's.
    #[error("{0}")]
    Refused(String),
}

/// An I/O error on the staging; the refusals of [`crate::sys`] (which
/// carry their own message naming the path) become [`StagingError::Refused`].
fn staging_err(path: &Path, err: io::Error) -> StagingError {
    if err.kind() == io::ErrorKind::PermissionDenied && err.raw_os_error().is_none() {
        StagingError::Refused(format!(
            "{err} as a staging directory (a staging must be a real directory owned by this \
             user that nobody else can write, holding only regular files of this user's; \
             check who made it, or pass another --staging-dir)"
        ))
    } else {
        StagingError::Io {
            path: path.display().to_string(),
            err,
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StagingError + '_ {
    move |err| staging_err(path, err)
}

const IDENTITY: &str = "identity.json";
const JOURNAL: &str = "journal";
const DATA: &str = "data";
/// Every file name a staging directory holds (besides [`DATA`]).
const STAGING_FILES: [&str; 5] = [
    JOURNAL,
    IDENTITY,
    "identity.json.tmp",
    LANDING,
    "commit.json.tmp",
];

/// Open the staging directory `dir` under the rules of the module
/// documentation, creating it (and missing parents, 0700) when absent and
/// `create`. An existing directory is checked as it is (owner, mode, not a
/// symlink, nothing in it that a staging does not hold) before anything in
/// it is changed, so a directory that is refused is left exactly as it was;
/// then it is narrowed to 0700.
fn open_staging(dir: &Path, create: bool) -> Result<PrivateDir, StagingError> {
    let d = match PrivateDir::open_as_is(dir) {
        Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                crate::sys::create_dir_all_private(parent).map_err(io_at(parent))?;
            }
            return PrivateDir::create(dir).map_err(io_at(dir));
        }
        r => r.map_err(io_at(dir))?,
    };
    if let Some(n) = foreign_name(&d)? {
        return Err(StagingError::Refused(format!(
            "{} is not a wimfs staging directory (it holds {n:?}); choose a new or empty directory",
            dir.display()
        )));
    }
    d.narrow().map_err(io_at(dir))?;
    Ok(d)
}

/// Is every name in `d` one a staging holds, and every name in its `data`
/// a staged stream's? Returns the first foreign name, if any. Changes
/// nothing.
fn foreign_name(d: &PrivateDir) -> Result<Option<String>, StagingError> {
    let names = d.names().map_err(io_at(d.path()))?;
    if let Some(n) = names
        .iter()
        .map(|n| n.to_string_lossy())
        .find(|n| n != DATA && !STAGING_FILES.contains(&n.as_ref()))
    {
        return Ok(Some(n.into_owned()));
    }
    if names.iter().any(|n| n == DATA) {
        let data = d.subdir_as_is(DATA, false).map_err(io_at(d.path()))?;
        for m in data.names().map_err(io_at(data.path()))? {
            if m != stage::PACK && m.to_str().and_then(|x| x.parse::<u64>().ok()).is_none() {
                return Ok(Some(format!("{DATA}/{}", m.to_string_lossy())));
            }
        }
    }
    Ok(None)
}

/// Does `d` hold staged data (anything in `data/`)?
fn has_data(d: &PrivateDir) -> bool {
    d.subdir_as_is(DATA, false)
        .and_then(|x| x.names())
        .is_ok_and(|n| !n.is_empty())
}

/// The staging's format: 2 since the journal numbers base inodes by
/// dentry offset (see [`JournalNumbers`]); format 1 numbered them by their
/// index in the whole decoded image.
const STAGING_FORMAT: u32 = 2;

/// Which WIM and image a staging directory belongs to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub format: u32,
    pub wim: String,
    pub guid: String,
    pub image: u32,
    /// SHA-1 of the image's metadata resource.
    pub metadata_sha1: String,
    pub blob_table_offset: u64,
    pub blob_table_size: u64,
    /// Informational only (a commit by us rewrites the identity).
    pub wim_size: u64,
}

impl Identity {
    pub fn of(wim: &Wim, image: u32) -> Identity {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        Identity {
            format: STAGING_FORMAT,
            wim: wim.path.display().to_string(),
            guid: hex(&wim.header.guid),
            image,
            metadata_sha1: wim
                .metadata
                .get((image as usize).wrapping_sub(1))
                .map_or(String::new(), |b| hex(&b.hash)),
            blob_table_offset: wim.header.blob_table.offset,
            blob_table_size: wim.header.blob_table.size_in_wim,
            wim_size: wim.parts.first().map_or(0, |p| p.source.len()),
        }
    }

    /// Why `self` (stored) does not fit `cur` (the WIM being mounted).
    fn mismatch(&self, cur: &Identity) -> Option<String> {
        if self.format != cur.format {
            return Some(format!(
                "staging format {} (this wimfs uses {}): it was written by another version of \
                 wimfs, which can still commit or discard it",
                self.format, cur.format
            ));
        }
        if self.guid != cur.guid {
            return Some(format!(
                "it was made for WIM {} (GUID {}), not this one (GUID {})",
                self.wim, self.guid, cur.guid
            ));
        }
        if self.image != cur.image {
            return Some(format!(
                "it was made for image {}, not image {}",
                self.image, cur.image
            ));
        }
        if self.metadata_sha1 != cur.metadata_sha1
            || self.blob_table_offset != cur.blob_table_offset
            || self.blob_table_size != cur.blob_table_size
        {
            return Some(format!(
                "{} has been written since the staging was made",
                cur.wim
            ));
        }
        None
    }
}

/// What opening a staging directory found.
#[derive(Debug, Clone, Default)]
pub struct StagingStatus {
    /// A staging with changes from an earlier mount was found and resumed.
    pub resumed: bool,
    pub records: usize,
    /// Bytes of a torn (unfinished) last record, dropped.
    pub torn_bytes: u64,
    pub warnings: Vec<String>,
    /// Files whose data was cut back: written after their last sync
    /// point (fsync, close), so the journal never recorded it.
    pub cut: Vec<CutFile>,
}

/// A file whose unsynced data a resume drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutFile {
    /// Its path in the image (the first name, for a hard-linked file).
    pub path: String,
    /// How far it had been written (its staged data's extent).
    pub written: u64,
    /// Its size as resumed: the size the journal records.
    pub resumed: u64,
    /// 64 KiB blocks changed after its last sync that revert to their
    /// earlier content.
    pub reverted_blocks: u64,
    /// Blocks the journal records that the staging no longer holds (they
    /// read as zeros).
    pub missing_blocks: u64,
}

impl CutFile {
    /// One line for the resume message and `wimfs recover`.
    pub fn describe(&self) -> String {
        let mut m = format!("{} was cut back: ", self.path);
        if self.written > self.resumed {
            m += &format!(
                "{} bytes had been written but only {} were recorded (synced or closed) when the mount stopped; it resumes with {} bytes",
                self.written, self.resumed, self.resumed
            );
        } else {
            m += &format!("it resumes with {} bytes", self.resumed);
        }
        if self.reverted_blocks > 0 {
            m += &format!(
                "; {} block(s) of 64 KiB written after its last sync revert to their earlier content",
                self.reverted_blocks
            );
        }
        if self.missing_blocks > 0 {
            m += &format!(
                "; {} recorded block(s) are missing from the staging and read as zeros",
                self.missing_blocks
            );
        }
        m
    }
}

/// Read a small JSON file of the staging (never through a symlink).
fn read_json<T: serde::de::DeserializeOwned>(d: &PrivateDir, name: &str) -> Option<T> {
    let mut b = Vec::new();
    d.open_file(name, Access::Read)
        .ok()?
        .take(1 << 20)
        .read_to_end(&mut b)
        .ok()?;
    serde_json::from_slice(&b).ok()
}

/// Does `dir` hold a wimfs staging that is safely ours? Returns its
/// identity (None also when the directory is refused: see the module
/// documentation).
pub fn probe(dir: &Path) -> Option<Identity> {
    read_json(&check_discardable(dir).ok()?, IDENTITY)
}

/// Check that `dir` is a staging directory that may be deleted: a real
/// directory of ours (not a symlink, nobody else's, not writable by
/// others) with its identity file and nothing that is not a staging's.
/// Returns it opened.
pub fn check_discardable(dir: &Path) -> Result<PrivateDir, StagingError> {
    let d = PrivateDir::open_as_is(dir).map_err(io_at(dir))?;
    if !d.exists(IDENTITY) {
        return Err(StagingError::Refused(format!(
            "{} holds no wimfs staging (no {IDENTITY}): refusing to delete anything in it",
            dir.display()
        )));
    }
    if let Some(n) = foreign_name(&d)? {
        return Err(StagingError::Refused(format!(
            "{} holds {n:?}, which is not part of a wimfs staging: refusing to delete anything in it",
            dir.display()
        )));
    }
    Ok(d)
}

/// Delete a staging directory's contents (identity, journal, data) and the
/// directory itself if then empty. Absent is fine; anything that is not a
/// real wimfs staging of ours is refused ([`check_discardable`]) and left
/// untouched.
pub fn discard(dir: &Path) -> Result<(), StagingError> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        _ => {}
    }
    let d = check_discardable(dir)?;
    discard_contents(&d).map_err(io_at(dir))?;
    drop(d);
    // Only an empty directory goes (whatever the name now names).
    let _ = std::fs::remove_dir(dir);
    Ok(())
}

/// Delete the staging's own files and its data (links are removed, never
/// followed).
fn discard_contents(d: &PrivateDir) -> io::Result<()> {
    for f in STAGING_FILES {
        d.remove_file(f)?;
    }
    d.remove_tree(DATA)
}

/// A stream's content.
#[derive(Clone)]
pub enum Data {
    /// Unchanged: a blob of the base WIM (`blob` None when it is missing).
    Base {
        hash: Sha1,
        size: u64,
        blob: Option<Arc<Blob>>,
    },
    /// Small content held in memory (named streams, symlink data).
    Inline(Arc<Vec<u8>>),
    /// Changed blocks over old content.
    Staged(Arc<Staged>),
}

impl Data {
    pub fn size(&self) -> u64 {
        match self {
            Data::Base { size, .. } => *size,
            Data::Inline(v) => v.len() as u64,
            Data::Staged(s) => s.size(),
        }
    }
    /// An image stream's content, unchanged.
    pub fn from_stream(s: &crate::image::Stream) -> Data {
        Data::Base {
            hash: s.hash,
            size: s.size,
            blob: s.blob.clone(),
        }
    }
    fn to_stream_data(&self) -> StreamData {
        match self {
            Data::Base { hash, size, .. } => {
                if *size == 0 || *hash == ZERO_HASH {
                    StreamData::Empty
                } else {
                    StreamData::Blob(*hash)
                }
            }
            Data::Inline(v) if v.is_empty() => StreamData::Empty,
            Data::Inline(v) => StreamData::New(Arc::new(v.as_ref().clone())),
            Data::Staged(s) if s.size() == 0 => StreamData::Empty,
            Data::Staged(s) => StreamData::New(s.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    idx: u32,
    /// The base dentry this name came from (short name, tagged items), or
    /// NONE for names made during the mount.
    dentry: u32,
}

struct Dir {
    parent: u32,
    entries: BTreeMap<String, Entry>,
    subdirs: u32,
    /// A directory of the base image whose entries are not in the tree
    /// yet: its entry in the lazily decoded image, to decode them from
    /// when the directory is first looked into ([`Tree::load`]).
    unloaded: Option<Arc<lazy::Entry>>,
    /// The entries' names by their upcased form (see
    /// [`crate::nt::upcase`]): built the first time this directory is
    /// asked for a case collision or a case-insensitive lookup, then kept
    /// up to date by `insert` and `remove`, so a create or an NT lookup
    /// costs one hash lookup rather than a scan of the directory, and
    /// directories nobody asks about cost nothing. Usually one name per
    /// key; more only in images captured on Linux.
    folded: OnceLock<HashMap<String, Vec<String>>>,
}

impl Dir {
    fn new(parent: u32, entries: BTreeMap<String, Entry>, subdirs: u32) -> Dir {
        Dir {
            parent,
            entries,
            subdirs,
            unloaded: None,
            folded: OnceLock::new(),
        }
    }

    /// Add or replace a name.
    fn insert(&mut self, name: String, e: Entry) {
        if let Some(f) = self.folded.get_mut() {
            if !self.entries.contains_key(&name) {
                f.entry(upcase::fold(&name)).or_default().push(name.clone());
            }
        }
        self.entries.insert(name, e);
    }

    fn remove(&mut self, name: &str) -> Option<Entry> {
        let e = self.entries.remove(name)?;
        if let Some(f) = self.folded.get_mut() {
            let key = upcase::fold(name);
            if let Some(v) = f.get_mut(&key) {
                v.retain(|n| n != name);
                if v.is_empty() {
                    f.remove(&key);
                }
            }
        }
        Some(e)
    }

    /// The folded index, built on first use.
    fn folded(&self) -> &HashMap<String, Vec<String>> {
        self.folded.get_or_init(|| {
            let mut m: HashMap<String, Vec<String>> = HashMap::with_capacity(self.entries.len());
            for k in self.entries.keys() {
                m.entry(upcase::fold(k)).or_default().push(k.clone());
            }
            m
        })
    }

    /// The entry NT semantics finds for `name`: the exact name if there
    /// is one, else the name equal but for case; of several such (an
    /// image captured on Linux), the first in NTFS collation order.
    fn lookup_ci(&self, name: &str) -> Option<(&str, Entry)> {
        if let Some((k, e)) = self.entries.get_key_value(name) {
            return Some((k.as_str(), *e));
        }
        let found = self
            .folded()
            .get(&upcase::fold(name))?
            .iter()
            .min_by(|a, b| upcase::collate(a, b))?;
        self.entries
            .get_key_value(found.as_str())
            .map(|(k, e)| (k.as_str(), *e))
    }

    /// Would adding `name` here give two names Windows sees as one? Names
    /// that do not count: `name` itself (it is replaced) and `leaving` (a
    /// rename's source in this directory, which goes away). Returns one of
    /// the names it would collide with (the first in name order).
    fn case_twin(&self, name: &str, leaving: Option<&str>) -> Option<String> {
        self.folded()
            .get(&upcase::fold(name))?
            .iter()
            .filter(|k| k.as_str() != name && Some(k.as_str()) != leaving)
            .min()
            .cloned()
    }
}

struct Node {
    /// The key ([`dentry_key`]) of the base dentry this inode was first
    /// found through, or [`NONE`] for an inode made in the mount.
    base: u32,
    /// What a commit keeps of a base inode that the tree does not change.
    extra: Option<Box<BaseExtra>>,
    meta: Meta,
    reparse_tag: u32,
    rp_flags: u16,
    data: Option<Data>,
    reparse: Option<Data>,
    named: Vec<(String, Data)>,
    link: Option<String>,
    nlink: u32,
    /// Boxed: most nodes are files, and a directory's bookkeeping is
    /// larger than the rest of a node.
    dir: Option<Box<Dir>>,
    open: u32,
    open_w: u32,
    live: bool,
}

impl Node {
    /// What the node is; `unix`: show FIFOs, devices and sockets as such
    /// (where UNIX data is used), not as the empty files they are in the
    /// WIM.
    fn kind(&self, unix: bool) -> FileKind {
        FileKind::classify(
            self.link.is_some(),
            self.dir.is_some(),
            self.special(),
            unix,
        )
    }

    /// The special file its UNIX data makes it (never a reparse point).
    fn special(&self) -> Option<Special> {
        if self.meta.attributes & attr::REPARSE_POINT != 0 || self.dir.is_some() {
            return None;
        }
        self.meta.unix.as_ref().and_then(UnixData::special)
    }
}

/// Context for applying records: where staging files go.
struct Ctx<'a> {
    area: &'a Arc<Area>,
    replaying: bool,
}

impl Ctx<'_> {
    /// The staging file a stream already has: one is found only when
    /// replaying (a live stream gets its file when it first needs it).
    fn existing_file(&self, id: u64) -> VfsResult<Option<std::fs::File>> {
        if !self.replaying {
            return Ok(None);
        }
        self.area.existing_file(id).map_err(VfsError::from_io)
    }
}

/// What a base inode had that the tree keeps only to give it back: its
/// short name, Linux xattrs (wimlib's tagged item) and UNIX data (a commit
/// keeps the stored tagged item of an inode whose UNIX data did not
/// change). Boxed and made only when there is something to keep.
#[derive(Default)]
struct BaseExtra {
    short_name: String,
    xattrs: Option<(u32, Vec<u8>)>,
    unix: Option<UnixData>,
}

impl BaseExtra {
    /// What base dentry `e` has to keep, if anything.
    fn of(e: &lazy::Entry) -> Option<Box<BaseExtra>> {
        let ino = &e.inode;
        (!e.short_name.is_empty() || ino.xattrs.is_some() || ino.unix.is_some()).then(|| {
            Box::new(BaseExtra {
                short_name: e.short_name.clone(),
                xattrs: ino.xattrs.clone(),
                unix: ino.unix,
            })
        })
    }
}

/// The key the tree and the journal know a base dentry by: from its
/// offset in the metadata resource (8-byte aligned, below 2 GiB: see
/// [`crate::wim::MAX_TABLE_SIZE`]), so the same whatever order
/// directories are decoded in.
fn dentry_key(offset: u64) -> u32 {
    u32::try_from(offset / 8 + 1).unwrap_or(NONE - 1)
}

/// The POSIX target of a base symlink or junction, as the read-only view
/// shows it (given by the vfs, which knows the mount point).
pub type LinkOf = Arc<dyn Fn(&lazy::Entry) -> Option<String> + Send + Sync>;

/// The mutable tree. Base inodes enter it as their directories are first
/// looked into (the base image is decoded one directory at a time, as a
/// read-only mount decodes it), so a mount costs the same whatever the
/// image's size; a resume and a commit load the rest.
struct Tree {
    wim: Arc<Wim>,
    /// The base image's index in `wim`.
    index: u32,
    lazy: Arc<LazyImage>,
    link_of: LinkOf,
    /// The base image's security descriptors (new ones are numbered after).
    security: Vec<Vec<u8>>,
    nodes: Vec<Node>,
    /// Base inodes in the tree by lazy number (hard links share one).
    by_lazy: HashMap<u64, u32>,
    jn: JournalNumbers,
    streams: HashMap<u64, Arc<Staged>>,
    next_stream: u64,
    /// Streams of freed inodes, deleted after the next journal sync.
    dead_streams: Vec<u64>,
    /// Security descriptors new to the image, set during the mount: the
    /// one with index `i` has the id `security.len() + i` (ids below that
    /// are the image's own table, so unchanged files keep theirs).
    new_security: Vec<Vec<u8>>,
}

/// How the journal numbers inodes: independent of the tree's own
/// numbers (which follow the order directories were visited in, and
/// which the kernel holds until unmount), so that a resume, which visits
/// them in another order, finds the same inodes.
///
/// A base inode is the key ([`dentry_key`]) of a dentry of its in the
/// image the staging belongs to (a resume knows every dentry's key, so
/// any of a hard link's names will do); a new inode counts up from above
/// every key. After a commit while mounted the staging belongs to the
/// committed image, and the numbers are those of its dentries.
struct JournalNumbers {
    /// The journal's number of each tree inode; [`NONE`] for inodes the
    /// staging's image does not have and that were not made since (open
    /// but unlinked across a commit): they have no name a resume could
    /// find, so nothing about them is journaled.
    of: Vec<u32>,
    /// Tree inode by journal number (every dentry key of the inodes in
    /// the tree, and the new inodes).
    by_num: HashMap<u32, u32>,
    /// The journal's number of the next new inode.
    next: u32,
    /// Staged streams of unjournaled inodes: their data records are not
    /// journaled either (a resume has no stream of that id).
    streams: std::collections::HashSet<u64>,
}

impl JournalNumbers {
    /// The journal's number of the first new inode over `lazy`: above the
    /// key of every dentry it can have.
    fn first_new(lazy: &LazyImage) -> u32 {
        dentry_key(lazy.metadata_size()).saturating_add(1)
    }

    fn new(lazy: &LazyImage) -> JournalNumbers {
        JournalNumbers {
            of: Vec::new(),
            by_num: HashMap::new(),
            next: Self::first_new(lazy),
            streams: Default::default(),
        }
    }
}

/// `r` with every inode number passed through `map` and every stream
/// checked by `keep`; `None` when one is refused.
fn renumber(
    r: &Record,
    mut map: impl FnMut(&mut u32) -> Option<()>,
    keep: impl Fn(u64) -> bool,
) -> Option<std::borrow::Cow<'_, Record>> {
    let mut out = r.clone();
    match &mut out {
        Record::NewNode { idx, .. }
        | Record::Meta { idx, .. }
        | Record::Xattr { idx, .. }
        | Record::Reparse { idx, .. }
        | Record::Stage { idx, .. }
        | Record::StageNamed { idx, .. } => map(idx)?,
        Record::Link { parent, idx, .. } => {
            map(parent)?;
            map(idx)?;
        }
        Record::Unlink { parent, .. } => map(parent)?,
        Record::Rename { from, to, .. } => {
            map(from)?;
            map(to)?;
        }
        Record::Data { id, .. } | Record::Size { id, .. } | Record::Packed { id, .. } => {
            if !keep(*id) {
                return None;
            }
        }
        Record::Security { .. } => {}
    }
    Some(std::borrow::Cow::Owned(out))
}

fn check_name(name: &str) -> VfsResult<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(VfsError::Invalid);
    }
    if name.encode_utf16().count() > MAX_NAME {
        return Err(VfsError::name_too_long());
    }
    Ok(())
}

impl Tree {
    fn new(wim: Arc<Wim>, lazy: Arc<LazyImage>, link_of: LinkOf) -> Tree {
        let mut t = Tree {
            index: lazy.index,
            security: lazy.security_table().to_vec(),
            jn: JournalNumbers::new(&lazy),
            wim,
            lazy,
            link_of,
            nodes: Vec::new(),
            by_lazy: HashMap::new(),
            streams: HashMap::new(),
            next_stream: 1,
            dead_streams: Vec::new(),
            new_security: Vec::new(),
        };
        let root = t.lazy.root().clone();
        let idx = t.materialize(&root, 0);
        let r = &mut t.nodes[idx as usize];
        r.nlink = r.nlink.max(1);
        if r.dir.is_none() {
            // A root that is not a directory is refused by the image
            // decoder; this keeps the tree sane should one get here.
            r.dir = Some(Box::new(Dir::new(0, BTreeMap::new(), 0)));
        }
        t
    }

    /// The tree inode for base dentry `e` (found in directory `parent`),
    /// made on first sight: hard links of one file share one.
    fn materialize(&mut self, e: &Arc<lazy::Entry>, parent: u32) -> u32 {
        let key = dentry_key(e.offset);
        if let Some(&idx) = self.by_lazy.get(&e.no) {
            self.jn.by_num.insert(key, idx);
            return idx;
        }
        let ino = &e.inode;
        let link = (self.link_of)(e);
        let mut data = None;
        let mut reparse = None;
        let mut named = Vec::new();
        for s in &ino.streams {
            if !s.name.is_empty() {
                named.push((s.name.clone(), Data::from_stream(s)));
            } else if s.kind == StreamKind::Reparse {
                reparse = Some(Data::from_stream(s));
            } else {
                data = Some(Data::from_stream(s));
            }
        }
        if data.is_none() && !ino.is_dir() && !ino.is_reparse() {
            data = Some(Data::Base {
                hash: ZERO_HASH,
                size: 0,
                blob: None,
            });
        }
        let dir = (ino.is_dir() && link.is_none()).then(|| {
            let mut d = Dir::new(parent, BTreeMap::new(), 0);
            d.unloaded = Some(e.clone());
            Box::new(d)
        });
        let idx = self.nodes.len() as u32;
        self.nodes.push(Node {
            base: key,
            extra: BaseExtra::of(e),
            meta: Meta {
                attributes: ino.attributes,
                security_id: ino.security_id,
                creation_time: ino.creation_time,
                last_access_time: ino.last_access_time,
                last_write_time: ino.last_write_time,
                unix: ino.unix,
            },
            reparse_tag: ino.reparse_tag,
            rp_flags: ino.rp_flags,
            data,
            reparse,
            named,
            link,
            nlink: self.lazy.nlink(e),
            dir,
            open: 0,
            open_w: 0,
            live: true,
        });
        self.by_lazy.insert(e.no, idx);
        self.jn.of.resize(idx as usize, NONE);
        self.jn.of.push(key);
        self.jn.by_num.insert(key, idx);
        idx
    }

    /// Is directory `idx` (if it is one) in the tree with its entries?
    fn is_loaded(&self, idx: u32) -> bool {
        self.nodes
            .get(idx as usize)
            .and_then(|n| n.dir.as_ref())
            .is_none_or(|d| d.unloaded.is_none())
    }

    /// Bring the entries of directory `idx` into the tree (decoding its
    /// child list) if they are not yet: a directory that does not decode
    /// is EIO, each time, and changes nothing.
    fn load(&mut self, idx: u32) -> VfsResult<()> {
        let Some(e) = self
            .nodes
            .get(idx as usize)
            .and_then(|n| n.dir.as_ref())
            .and_then(|d| d.unloaded.clone())
        else {
            return Ok(());
        };
        // (The image logs a list that does not decode, naming it.)
        let kids = self.lazy.children(&e).map_err(VfsError::from_lib)?;
        let mut entries = BTreeMap::new();
        let mut subdirs = 0;
        for k in &kids.kids {
            let c = self.materialize(k, idx);
            if self.is_dir_idx(c) {
                subdirs += 1;
            }
            entries.insert(
                k.name.clone(),
                Entry {
                    idx: c,
                    dentry: dentry_key(k.offset),
                },
            );
        }
        if let Some(d) = self.nodes[idx as usize].dir.as_mut() {
            d.entries = entries;
            d.subdirs = subdirs;
            d.unloaded = None;
            d.folded = OnceLock::new();
        }
        Ok(())
    }

    /// Load every directory (a resume, a commit): a directory that does
    /// not decode is an error naming it.
    fn load_all(&mut self) -> VfsResult<()> {
        let mut stack = vec![0u32];
        let mut seen = BTreeSet::new();
        while let Some(idx) = stack.pop() {
            if !seen.insert(idx) {
                continue;
            }
            self.load(idx)?;
            if let Some(d) = self.nodes.get(idx as usize).and_then(|n| n.dir.as_ref()) {
                stack.extend(
                    d.entries
                        .values()
                        .map(|e| e.idx)
                        .filter(|&i| self.is_dir_idx(i)),
                );
            }
        }
        self.forget_decoded();
        Ok(())
    }

    /// Once every directory is in the tree, the entries the lazy image
    /// decoded would only double the memory: a fresh one holds its root,
    /// and no hard link is left to find in a directory to come.
    fn forget_decoded(&mut self) {
        if self
            .nodes
            .iter()
            .all(|n| n.dir.as_ref().is_none_or(|d| d.unloaded.is_none()))
        {
            if let Ok(fresh) = LazyImage::open(self.wim.clone(), self.index) {
                self.lazy = Arc::new(fresh);
                self.by_lazy = HashMap::new();
            }
        }
    }

    /// The directories a record changes, loaded before it is applied (and
    /// its target when that is a directory whose emptiness counts).
    fn load_for(&mut self, r: &Record) -> VfsResult<()> {
        match r {
            Record::Link { parent, .. } => self.load(*parent),
            Record::Unlink { parent, name, .. } => {
                self.load(*parent)?;
                match self.dir(*parent)?.entries.get(name) {
                    Some(e) => self.load(e.idx),
                    None => Ok(()),
                }
            }
            Record::Rename {
                from, to, to_name, ..
            } => {
                self.load(*from)?;
                self.load(*to)?;
                match self.dir(*to)?.entries.get(to_name) {
                    Some(e) => self.load(e.idx),
                    None => Ok(()),
                }
            }
            Record::Reparse { idx, .. } => self.load(*idx),
            _ => Ok(()),
        }
    }

    /// Record `r` (just applied) as the journal must say it; `None`: it
    /// concerns only inodes the journal does not know, and is not
    /// journaled. Takes the journal's number for a new inode.
    fn for_journal<'r>(&mut self, r: &'r Record) -> Option<std::borrow::Cow<'r, Record>> {
        let j = &mut self.jn;
        match r {
            Record::NewNode { idx, .. } => {
                // Tree numbers of new inodes count up by one too.
                j.of.resize(*idx as usize, NONE);
                j.of.push(j.next);
                j.by_num.insert(j.next, *idx);
                j.next = j.next.saturating_add(1);
            }
            Record::Stage { idx, id } | Record::StageNamed { idx, id, .. }
                if j.of.get(*idx as usize).is_none_or(|&x| x == NONE) =>
            {
                j.streams.insert(*id);
            }
            _ => {}
        }
        self.translate(r)
    }

    /// Record `r` with the journal's inode numbers; `None`: it concerns an
    /// inode or stream the journal does not know.
    fn translate<'r>(&self, r: &'r Record) -> Option<std::borrow::Cow<'r, Record>> {
        let j = &self.jn;
        let map = |i: &mut u32| -> Option<()> {
            *i = j.of.get(*i as usize).copied().filter(|&x| x != NONE)?;
            Some(())
        };
        renumber(r, map, |id| !j.streams.contains(&id))
    }

    /// A journal record with the tree's inode numbers (replay); `None`: it
    /// names an inode the tree does not have (or a new one out of turn),
    /// so it does not apply.
    fn replayed(&mut self, r: &Record) -> Option<Record> {
        let j = &mut self.jn;
        if let Record::NewNode { idx, .. } = r {
            if *idx != j.next {
                return None;
            }
            let t = self.nodes.len() as u32;
            j.of.resize(t as usize, NONE);
            j.of.push(*idx);
            j.by_num.insert(*idx, t);
            j.next = j.next.saturating_add(1);
            let mut out = r.clone();
            if let Record::NewNode { idx, .. } = &mut out {
                *idx = t;
            }
            return Some(out);
        }
        let j = &self.jn;
        let map = |i: &mut u32| -> Option<()> {
            *i = *j.by_num.get(i)?;
            Some(())
        };
        renumber(r, map, |_| true).map(std::borrow::Cow::into_owned)
    }

    /// A path (from the root, `/`-separated) of each inode in `want` that
    /// has a name; for messages. Walks the whole tree once.
    fn paths_of(&self, want: &BTreeSet<u32>) -> HashMap<u32, String> {
        let mut out = HashMap::new();
        let mut stack: Vec<(u32, String)> = vec![(0, String::new())];
        let mut seen = BTreeSet::new();
        while let Some((idx, path)) = stack.pop() {
            if !seen.insert(idx) {
                continue;
            }
            let Some(d) = self.nodes.get(idx as usize).and_then(|n| n.dir.as_ref()) else {
                continue;
            };
            for (name, e) in &d.entries {
                let p = format!("{path}/{name}");
                if want.contains(&e.idx) {
                    out.entry(e.idx).or_insert_with(|| p.clone());
                }
                if self.is_dir_idx(e.idx) {
                    stack.push((e.idx, p));
                }
            }
        }
        out
    }

    fn node(&self, idx: u32) -> VfsResult<&Node> {
        self.nodes
            .get(idx as usize)
            .filter(|n| n.live)
            .ok_or(VfsError::NotFound)
    }

    fn node_mut(&mut self, idx: u32) -> VfsResult<&mut Node> {
        self.nodes
            .get_mut(idx as usize)
            .filter(|n| n.live)
            .ok_or(VfsError::NotFound)
    }

    fn dir(&self, idx: u32) -> VfsResult<&Dir> {
        self.node(idx)?.dir.as_deref().ok_or(VfsError::NotDir)
    }

    fn dir_mut(&mut self, idx: u32) -> VfsResult<&mut Dir> {
        self.node_mut(idx)?
            .dir
            .as_deref_mut()
            .ok_or(VfsError::NotDir)
    }

    fn attr(&self, idx: u32, opts: &VfsOptions) -> VfsResult<Attr> {
        let n = self.node(idx)?;
        let facts = AttrFacts {
            kind: n.kind(opts.shows_unix_data()),
            data_size: n.data.as_ref().map_or(0, |d| d.size()),
            link_len: n.link.as_ref().map_or(0, |s| s.len() as u64),
            names: n.nlink,
            subdirs: n.dir.as_ref().map_or(0, |d| d.subdirs),
            attributes: n.meta.attributes,
            creation_time: n.meta.creation_time,
            last_access_time: n.meta.last_access_time,
            last_write_time: n.meta.last_write_time,
            unix: n.meta.unix,
        };
        Ok(Attr::of(idx as u64 + 1, &facts, opts))
    }

    fn is_dir_idx(&self, idx: u32) -> bool {
        self.nodes
            .get(idx as usize)
            .is_some_and(|n| n.dir.is_some())
    }

    fn set_dir_time(&mut self, idx: u32, t: u64) {
        if let Some(n) = self.nodes.get_mut(idx as usize) {
            n.meta.last_write_time = t;
        }
    }

    /// Add a name; the caller checked it is free.
    fn add_entry(&mut self, parent: u32, name: String, e: Entry) -> VfsResult<()> {
        let child_dir = self.is_dir_idx(e.idx);
        let d = self.dir_mut(parent)?;
        d.insert(name, e);
        if child_dir {
            d.subdirs += 1;
        }
        let c = self.node_mut(e.idx)?;
        c.nlink += 1;
        if let Some(cd) = c.dir.as_mut() {
            cd.parent = parent;
        }
        Ok(())
    }

    /// Remove a name (no emptiness checks here).
    fn remove_entry(&mut self, parent: u32, name: &str, ctx: &Ctx) -> VfsResult<Entry> {
        let e = self
            .dir_mut(parent)?
            .remove(name)
            .ok_or(VfsError::NotFound)?;
        let child_dir = self.is_dir_idx(e.idx);
        if child_dir {
            let d = self.dir_mut(parent)?;
            d.subdirs = d.subdirs.saturating_sub(1);
        }
        if let Some(c) = self.nodes.get_mut(e.idx as usize) {
            c.nlink = c.nlink.saturating_sub(1);
        }
        if !ctx.replaying {
            self.maybe_free(e.idx);
        }
        Ok(e)
    }

    /// Free an inode with no names and no open handles.
    fn maybe_free(&mut self, idx: u32) {
        let Some(n) = self.nodes.get_mut(idx as usize) else {
            return;
        };
        if !n.live || n.nlink > 0 || n.open > 0 || idx == 0 {
            return;
        }
        n.live = false;
        if let Some(Data::Staged(s)) = n.data.take() {
            self.streams.remove(&s.id);
            self.dead_streams.push(s.id);
        }
        for (_, d) in n.named.drain(..) {
            if let Data::Staged(s) = d {
                self.streams.remove(&s.id);
                self.dead_streams.push(s.id);
            }
        }
        n.reparse = None;
        n.dir = None;
    }

    fn lookup(&self, parent: u32, name: &str) -> VfsResult<Entry> {
        let d = self.dir(parent)?;
        d.entries.get(name).copied().ok_or(VfsError::NotFound)
    }

    /// The path of directory `idx` in the mount, for messages (found by
    /// walking up and looking for each directory in its parent: slow, but
    /// only taken when a message is due).
    fn dir_path(&self, mut idx: u32) -> String {
        let mut parts = Vec::new();
        for _ in 0..4096 {
            let Some(d) = self.nodes.get(idx as usize).and_then(|n| n.dir.as_ref()) else {
                break;
            };
            if idx == 0 {
                break;
            }
            let name = self
                .nodes
                .get(d.parent as usize)
                .and_then(|p| p.dir.as_ref())
                .and_then(|p| p.entries.iter().find(|(_, e)| e.idx == idx))
                .map_or("?", |(k, _)| k.as_str());
            parts.push(name.to_string());
            idx = d.parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    /// Refuse a new name `name` in directory `parent` that Windows could
    /// not create (see [`crate::nt::names`]); `leaving` is a rename's
    /// source name when it is in the same directory (it goes away, so a
    /// change of case only is fine). Bad characters, trailing dots or
    /// spaces and device names are EINVAL (as ntfs-3g's `windows_names`
    /// answers); a case collision is EEXIST: to Windows that file exists.
    /// The daemon log names the path and the rule.
    fn check_windows_name(
        &mut self,
        parent: u32,
        name: &str,
        leaving: Option<&str>,
    ) -> VfsResult<()> {
        let rule = match names::check_name(name) {
            Err(r) => r,
            Ok(()) => match self.dir(parent)?.case_twin(name, leaving) {
                Some(other) => names::Rule::CaseCollision(other),
                None => return Ok(()),
            },
        };
        let dir = self.dir_path(parent);
        let sep = if dir.ends_with('/') { "" } else { "/" };
        log::warn!(
            "refused the name {dir}{sep}{name:?}: it {rule} (mount with --posix-names \
             for an image only Linux will read)"
        );
        Err(match rule {
            names::Rule::CaseCollision(_) => VfsError::exists(),
            _ => VfsError::Invalid,
        })
    }

    /// Is `anc` an ancestor of (or equal to) directory `idx`?
    fn is_ancestor(&self, anc: u32, mut idx: u32) -> bool {
        for _ in 0..100_000 {
            if idx == anc {
                return true;
            }
            match self.nodes.get(idx as usize).and_then(|n| n.dir.as_ref()) {
                Some(d) if idx != 0 => idx = d.parent,
                _ => return false,
            }
        }
        true
    }

    /// Apply one change. Validates first, so a failing record changes
    /// nothing.
    fn apply(&mut self, r: &Record, ctx: &Ctx) -> VfsResult<()> {
        self.load_for(r)?;
        match r {
            Record::NewNode {
                idx,
                kind,
                meta,
                reparse_tag,
                rp_flags,
                reparse,
                link,
            } => {
                if *idx as usize != self.nodes.len() {
                    return Err(VfsError::Invalid);
                }
                let (dir, data, rp, link) = match kind {
                    NewKind::Dir => (
                        Some(Box::new(Dir::new(0, BTreeMap::new(), 0))),
                        None,
                        None,
                        None,
                    ),
                    NewKind::File => (
                        None,
                        Some(Data::Base {
                            hash: ZERO_HASH,
                            size: 0,
                            blob: None,
                        }),
                        None,
                        None,
                    ),
                    NewKind::Symlink => (
                        None,
                        None,
                        Some(Data::Inline(Arc::new(reparse.clone()))),
                        Some(link.clone()),
                    ),
                };
                self.nodes.push(Node {
                    base: NONE,
                    extra: None,
                    meta: *meta,
                    reparse_tag: *reparse_tag,
                    rp_flags: *rp_flags,
                    data,
                    reparse: rp,
                    named: Vec::new(),
                    link,
                    nlink: 0,
                    dir,
                    open: 0,
                    open_w: 0,
                    live: true,
                });
            }
            Record::Link {
                parent,
                name,
                idx,
                t,
            } => {
                check_name(name)?;
                self.node(*idx)?;
                if self.dir(*parent)?.entries.contains_key(name) {
                    return Err(VfsError::exists());
                }
                self.add_entry(
                    *parent,
                    name.clone(),
                    Entry {
                        idx: *idx,
                        dentry: NONE,
                    },
                )?;
                self.set_dir_time(*parent, *t);
            }
            Record::Unlink { parent, name, t } => {
                let e = self.lookup(*parent, name)?;
                if let Some(d) = &self.node(e.idx)?.dir {
                    if !d.entries.is_empty() {
                        return Err(VfsError::not_empty());
                    }
                }
                self.remove_entry(*parent, name, ctx)?;
                self.set_dir_time(*parent, *t);
            }
            Record::Rename {
                from,
                from_name,
                to,
                to_name,
                mode,
                t,
            } => {
                let mode = RenameMode::from_code(*mode).ok_or(VfsError::Invalid)?;
                self.rename(*from, from_name, *to, to_name, mode, ctx)?;
                self.set_dir_time(*from, *t);
                self.set_dir_time(*to, *t);
            }
            Record::Meta { idx, meta } => {
                self.node_mut(*idx)?.meta = *meta;
            }
            Record::Xattr { idx, name, value } => {
                let n = self.node_mut(*idx)?;
                let pos = n.named.iter().position(|(k, _)| k == name);
                match (value, pos) {
                    (Some(v), Some(p)) => n.named[p].1 = Data::Inline(Arc::new(v.clone())),
                    (Some(v), None) => n
                        .named
                        .push((name.clone(), Data::Inline(Arc::new(v.clone())))),
                    (None, Some(p)) => {
                        n.named.remove(p);
                    }
                    (None, None) => return Err(VfsError::NoAttr),
                }
            }
            Record::Stage { idx, id } => {
                let n = self.node(*idx)?;
                let (base, size) = match &n.data {
                    Some(Data::Base { blob, size, .. }) => (blob.clone(), *size),
                    Some(Data::Inline(_)) | Some(Data::Staged(_)) | None => {
                        return Err(VfsError::Invalid)
                    }
                };
                let file = ctx.existing_file(*id)?;
                let s = Arc::new(Staged::open(*id, file, base, size, ctx.area.clone()));
                self.streams.insert(*id, s.clone());
                self.next_stream = self.next_stream.max(id + 1);
                self.node_mut(*idx)?.data = Some(Data::Staged(s));
            }
            Record::StageNamed { idx, name, id } => {
                let n = self.node(*idx)?;
                let cur = n
                    .named
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, d)| d.clone())
                    .ok_or(VfsError::NoAttr)?;
                let (base, size, inline) = match cur {
                    Data::Base { blob, size, .. } => (blob, size, None),
                    Data::Inline(v) => (None, 0, Some(v)),
                    Data::Staged(_) => return Err(VfsError::Invalid),
                };
                let file = ctx.existing_file(*id)?;
                let s = Staged::open(*id, file, base, size, ctx.area.clone());
                if let Some(v) = inline.filter(|v| !v.is_empty()) {
                    if ctx.replaying {
                        // Written and synced before the record was.
                        let blocks = (v.len() as u64).div_ceil(stage::BLOCK);
                        s.replay_data(&[(0, blocks)], v.len() as u64)
                            .map_err(VfsError::from_io)?;
                    } else {
                        // In a file of its own, synced: the record that
                        // follows names no other place for it.
                        s.force_file().map_err(VfsError::from_lib)?;
                        s.write(0, &v).map_err(VfsError::from_lib)?;
                        s.sync().map_err(VfsError::from_io)?;
                    }
                }
                let s = Arc::new(s);
                self.streams.insert(*id, s.clone());
                self.next_stream = self.next_stream.max(id + 1);
                let n = self.node_mut(*idx)?;
                if let Some(e) = n.named.iter_mut().find(|(k, _)| k == name) {
                    e.1 = Data::Staged(s);
                }
            }
            Record::Data { id, size, runs } => {
                let s = self.streams.get(id).ok_or(VfsError::Invalid)?;
                s.replay_data(runs, *size).map_err(VfsError::from_io)?;
            }
            Record::Size { id, size } => {
                let s = self.streams.get(id).ok_or(VfsError::Invalid)?;
                s.replay_size(*size);
            }
            Record::Packed { id, off, len, size } => {
                let s = self.streams.get(id).ok_or(VfsError::Invalid)?;
                s.replay_packed(stage::Packed {
                    off: *off,
                    len: *len,
                    size: *size,
                })
                .map_err(VfsError::from_io)?;
            }
            Record::Security { descriptor } => {
                let next = self.security.len() + self.new_security.len();
                if i32::try_from(next).is_err() {
                    return Err(VfsError::no_space());
                }
                self.new_security.push(descriptor.clone());
            }
            Record::Reparse {
                idx,
                tag,
                rp_flags,
                data,
                link,
            } => self.set_reparse(*idx, *tag, *rp_flags, data.as_deref(), link.as_deref())?,
        }
        Ok(())
    }

    /// The security descriptor with id `id`: the image's table, then the
    /// descriptors added during the mount.
    fn security(&self, id: i32) -> Option<&[u8]> {
        let i = usize::try_from(id).ok()?;
        let base = &self.security;
        match base.get(i) {
            Some(sd) => Some(sd),
            None => self.new_security.get(i - base.len()).map(Vec::as_slice),
        }
    }

    /// The id of a descriptor with exactly these bytes, if there is one
    /// (the image's entries first, so they are reused).
    fn find_security(&self, sd: &[u8]) -> Option<i32> {
        let base = &self.security;
        let i = match base.iter().position(|x| x == sd) {
            Some(i) => i,
            None => base.len() + self.new_security.iter().position(|x| x == sd)?,
        };
        i32::try_from(i).ok()
    }

    /// Make `idx` a reparse point (`data` Some) or an ordinary file or
    /// directory again (`data` None). Checks first, so a refusal changes
    /// nothing. A node whose reparse data decodes as a symlink or junction
    /// (`link`) shows as a symlink: a directory turning into one must be
    /// empty (as NTFS requires) and stops being a directory of the tree;
    /// one that stops being a link becomes an (empty) directory again if
    /// its attributes say it is one.
    fn set_reparse(
        &mut self,
        idx: u32,
        tag: u32,
        rp_flags: u16,
        data: Option<&[u8]>,
        link: Option<&str>,
    ) -> VfsResult<()> {
        if idx == 0 {
            return Err(VfsError::perm());
        }
        let n = self.node(idx)?;
        let is_dir_attr = n.meta.attributes & attr::DIRECTORY != 0;
        match data {
            Some(_) => {
                if n.dir.as_ref().is_some_and(|d| !d.entries.is_empty()) {
                    return Err(VfsError::not_empty());
                }
                // A WIM keeps the reparse tag where a hard link's group
                // id goes: a file with several names cannot be one.
                if n.dir.is_none() && n.nlink > 1 {
                    return Err(VfsError::not_supported());
                }
            }
            None if n.meta.attributes & attr::REPARSE_POINT == 0 => {
                return Err(VfsError::NoAttr);
            }
            None => {}
        }
        let parent = self.parent_of(idx);
        let was_dir = n.dir.is_some();
        let wants_dir = is_dir_attr && link.is_none();
        if was_dir != wants_dir {
            let p = parent.ok_or_else(|| VfsError::internal("directory without a parent"))?;
            let pd = self.dir_mut(p)?;
            pd.subdirs = if wants_dir {
                pd.subdirs + 1
            } else {
                pd.subdirs.saturating_sub(1)
            };
        }
        let n = self.node_mut(idx)?;
        if was_dir != wants_dir {
            n.dir = wants_dir.then(|| Box::new(Dir::new(parent.unwrap_or(0), BTreeMap::new(), 0)));
        }
        match data {
            Some(d) => {
                n.meta.attributes |= attr::REPARSE_POINT;
                n.reparse_tag = tag;
                n.rp_flags = rp_flags;
                n.reparse = Some(Data::Inline(Arc::new(d.to_vec())));
            }
            None => {
                n.meta.attributes &= !attr::REPARSE_POINT;
                n.reparse_tag = 0;
                n.rp_flags = 0;
                n.reparse = None;
            }
        }
        n.link = link.map(str::to_string);
        if n.data.is_none() && !is_dir_attr {
            // A symlink made in the mount had no data stream.
            n.data = Some(Data::Base {
                hash: ZERO_HASH,
                size: 0,
                blob: None,
            });
        }
        Ok(())
    }

    /// The directory holding `idx` (for a directory; a file's first
    /// name's): found by a scan, as only reparse changes need it.
    fn parent_of(&self, idx: u32) -> Option<u32> {
        if let Some(d) = self.nodes.get(idx as usize).and_then(|n| n.dir.as_ref()) {
            return Some(d.parent);
        }
        self.nodes.iter().enumerate().find_map(|(i, n)| {
            let d = n.dir.as_ref().filter(|_| n.live)?;
            d.entries.values().any(|e| e.idx == idx).then_some(i as u32)
        })
    }

    fn rename(
        &mut self,
        from: u32,
        fname: &str,
        to: u32,
        tname: &str,
        mode: RenameMode,
        ctx: &Ctx,
    ) -> VfsResult<()> {
        check_name(tname)?;
        let src = self.lookup(from, fname)?;
        self.dir(to)?;
        let dst = self.dir(to)?.entries.get(tname).copied();
        let src_dir = self.is_dir_idx(src.idx);
        if src_dir && self.is_ancestor(src.idx, to) {
            return Err(VfsError::Invalid);
        }
        match mode {
            RenameMode::Exchange => {
                let dst = dst.ok_or(VfsError::NotFound)?;
                if self.is_dir_idx(dst.idx) && self.is_ancestor(dst.idx, from) {
                    return Err(VfsError::Invalid);
                }
                if from == to && fname == tname {
                    return Ok(());
                }
                // Swap the two names' targets (short names stay with neither).
                let (a, b) = (
                    Entry {
                        idx: dst.idx,
                        dentry: NONE,
                    },
                    Entry {
                        idx: src.idx,
                        dentry: NONE,
                    },
                );
                let a_dir = self.is_dir_idx(a.idx);
                let b_dir = self.is_dir_idx(b.idx);
                self.dir_mut(from)?.insert(fname.to_string(), a);
                self.dir_mut(to)?.insert(tname.to_string(), b);
                if a_dir != b_dir && from != to {
                    let (gain, lose) = if a_dir { (from, to) } else { (to, from) };
                    self.dir_mut(gain)?.subdirs += 1;
                    let l = self.dir_mut(lose)?;
                    l.subdirs = l.subdirs.saturating_sub(1);
                }
                if let Some(d) = self.node_mut(a.idx)?.dir.as_mut() {
                    d.parent = from;
                }
                if let Some(d) = self.node_mut(b.idx)?.dir.as_mut() {
                    d.parent = to;
                }
                Ok(())
            }
            RenameMode::NoReplace | RenameMode::Replace => {
                if let Some(d) = dst {
                    if mode == RenameMode::NoReplace {
                        return Err(VfsError::exists());
                    }
                    if d.idx == src.idx {
                        // Same inode (or same name): POSIX does nothing.
                        return Ok(());
                    }
                    let dst_dir = self.is_dir_idx(d.idx);
                    match (src_dir, dst_dir) {
                        (true, false) => return Err(VfsError::NotDir),
                        (false, true) => return Err(VfsError::IsDir),
                        (true, true) if !self.dir(d.idx)?.entries.is_empty() => {
                            return Err(VfsError::not_empty());
                        }
                        _ => {}
                    }
                    self.remove_entry(to, tname, ctx)?;
                }
                let e = self.remove_entry_keep(from, fname)?;
                self.add_entry(
                    to,
                    tname.to_string(),
                    Entry {
                        idx: e.idx,
                        dentry: NONE,
                    },
                )?;
                Ok(())
            }
        }
    }

    /// Remove a name whose inode is about to get another one (rename).
    fn remove_entry_keep(&mut self, parent: u32, name: &str) -> VfsResult<Entry> {
        let e = self
            .dir_mut(parent)?
            .remove(name)
            .ok_or(VfsError::NotFound)?;
        if self.is_dir_idx(e.idx) {
            let d = self.dir_mut(parent)?;
            d.subdirs = d.subdirs.saturating_sub(1);
        }
        if let Some(c) = self.nodes.get_mut(e.idx as usize) {
            c.nlink = c.nlink.saturating_sub(1);
        }
        Ok(e)
    }
}

/// Data records not yet in the journal, per stream, plus the inodes whose
/// metadata (mtime) must be written with them.
#[derive(Default)]
struct Pending {
    ops: BTreeMap<u64, (Arc<Staged>, Vec<Record>)>,
    meta: BTreeSet<u32>,
}

impl Pending {
    fn push(&mut self, s: &Arc<Staged>, idx: u32, r: Record) {
        self.meta.insert(idx);
        self.push_op(s, r);
    }

    /// A stream's record without its inode's metadata.
    fn push_op(&mut self, s: &Arc<Staged>, r: Record) {
        let ops = &mut self
            .ops
            .entry(s.id)
            .or_insert_with(|| (s.clone(), Vec::new()))
            .1;
        // Merge into a preceding data record of the same stream.
        if let (
            Some(Record::Data {
                size: ps, runs: pr, ..
            }),
            Record::Data { size, runs, .. },
        ) = (ops.last_mut(), &r)
        {
            *ps = *size;
            for &(b, n) in runs {
                match pr.last_mut() {
                    Some((s0, n0)) if *s0 + *n0 == b => *n0 += n,
                    _ => pr.push((b, n)),
                }
            }
            return;
        }
        ops.push(r);
    }
}

struct JState {
    journal: Journal,
    pending: Pending,
    /// Streams whose records were appended to the journal by a flush
    /// (close) without their staging file being fsynced: the next durable
    /// sync fsyncs them before the journal, so no record can become durable
    /// ahead of the data it names.
    unsynced: HashMap<u64, Arc<Staged>>,
}

/// Open handle bookkeeping.
struct Handle {
    idx: u32,
    write: bool,
}

/// A read-write overlay over one image.
pub struct Overlay {
    /// The staging directory, held open: everything in it is opened
    /// relative to this descriptor, never through a symlink.
    dir: PrivateDir,
    /// Its `data` subdirectory (one file per staged stream, the pack),
    /// shared with the streams.
    area: Arc<Area>,
    tree: RwLock<Tree>,
    js: Mutex<JState>,
    gate: RwLock<()>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    pub counters: Arc<StageCounters>,
    /// Journal the records of a written handle when it is released
    /// (default on; written, not fsynced: see [`Overlay::flush`]).
    pub sync_on_release: bool,
}

/// Proof that writers are held off (see [`Overlay::freeze`]).
pub struct Frozen<'a>(#[allow(dead_code)] RwLockWriteGuard<'a, ()>);

impl Overlay {
    /// Open (or create) the staging directory `dir` for `image` of `wim`
    /// and replay its journal. `links` are the POSIX targets of the image's
    /// symlinks by inode index (as the read-only vfs computed them).
    ///
    /// The directory is created 0700 (its files 0600) whatever the umask;
    /// an existing one is used only if it is a real directory of this
    /// user's that nobody else can write, and is opened by descriptor from
    /// then on (see the module documentation). Files whose data was written
    /// after their last sync point and is therefore lost are named in the
    /// returned status ([`StagingStatus::cut`] and a warning each).
    pub fn open(
        wim: Arc<Wim>,
        image: Arc<LazyImage>,
        cache: Arc<ChunkCache>,
        link_of: LinkOf,
        dir: &Path,
    ) -> Result<(Overlay, StagingStatus), StagingError> {
        let cur = Identity::of(&wim, image.index);
        // Refuses a directory holding anything a staging does not.
        let sdir = open_staging(dir, true)?;
        let mut stored: Option<Identity> = read_json(&sdir, IDENTITY);
        // Without an identity there is nothing to resume; a journal or
        // data there were not written by a staging (its identity is
        // written first): never adopt, truncate or delete them.
        if stored.is_none() && (has_data(&sdir) || sdir.exists(JOURNAL)) {
            return Err(StagingError::Invalid(format!(
                "{} holds a journal or data but no {IDENTITY}; not a wimfs staging directory (or a damaged one)",
                dir.display()
            )));
        }
        let landing = read_json::<LandingRecord>(&sdir, LANDING).map(|l| (l.landed_in(&wim), l));
        let mut status = StagingStatus::default();
        if let Some((landed, l)) = landing {
            if landed
                && stored
                    .as_ref()
                    .is_some_and(|id| id.mismatch(&cur).is_some())
            {
                // Killed between writing a commit's header and resetting
                // the staging: the changes are in the WIM already (as image
                // `l.image`). Start clean from it rather than refuse.
                log::warn!(
                    "{}: the last commit (image {}) had landed before the mount stopped; its changes are in the WIM, so the staging starts afresh",
                    dir.display(),
                    l.image
                );
                status.warnings.push(format!(
                    "the last commit (image {}) completed before the mount stopped; its changes are in the WIM and the staging was reset",
                    l.image
                ));
                discard_contents(&sdir).map_err(io_at(dir))?;
                stored = None;
            } else {
                // The commit did not land (the WIM was put back, or the
                // process died before its header): the staging still holds
                // the changes.
                clear_landing(&sdir);
            }
        }
        let data = sdir.subdir(DATA, true).map_err(io_at(dir))?;
        let data_path = data.path().to_path_buf();
        let counters = Arc::new(StageCounters::default());
        let area = Arc::new(Area::new(data, false, cache, counters.clone()));
        let mut tree = Tree::new(wim, image, link_of);
        let journal = match stored {
            Some(id) if sdir.exists(JOURNAL) => {
                if let Some(what) = id.mismatch(&cur) {
                    return Err(StagingError::Mismatch {
                        dir: dir.display().to_string(),
                        what,
                    });
                }
                let jpath = sdir.join(JOURNAL);
                let (mut j, out) = Journal::open(&sdir, JOURNAL).map_err(io_at(&jpath))?;
                let ctx = Ctx {
                    area: &area,
                    replaying: true,
                };
                load_for_replay(&mut tree, &out, dir)?;
                if let Some(cut) = replay(&mut tree, &out, &ctx, &mut status) {
                    drop(j);
                    let f = sdir
                        .open_file(JOURNAL, Access::ReadWrite)
                        .map_err(io_at(&jpath))?;
                    f.set_len(cut).map_err(io_at(&jpath))?;
                    f.sync_all().map_err(io_at(&jpath))?;
                    j = Journal::open(&sdir, JOURNAL).map_err(io_at(&jpath))?.0;
                }
                // Scrub the staging files of what is left (naming every
                // file whose unsynced data is dropped) and delete the rest.
                scan_cut(&tree, true, &mut status).map_err(io_at(&data_path))?;
                remove_unreferenced(area.dir(), &tree.streams);
                j
            }
            _ => {
                write_identity(&sdir, &cur)?;
                Journal::create(&sdir, JOURNAL).map_err(io_at(&sdir.join(JOURNAL)))?
            }
        };
        let ov = Overlay {
            dir: sdir,
            area,
            tree: RwLock::new(tree),
            js: Mutex::new(JState {
                journal,
                pending: Pending::default(),
                unsynced: HashMap::new(),
            }),
            gate: RwLock::new(()),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            counters,
            sync_on_release: true,
        };
        Ok((ov, status))
    }

    /// What resuming the staging `dir` would find, without changing
    /// anything in it (for `wimfs recover`): the records that replay, the
    /// torn tail, and the files whose unsynced data a resume would drop.
    /// Refused as [`Overlay::open`] refuses; a staging made for another WIM
    /// or image is a [`StagingError::Mismatch`].
    pub fn inspect(
        wim: Arc<Wim>,
        image: Arc<LazyImage>,
        cache: Arc<ChunkCache>,
        link_of: LinkOf,
        dir: &Path,
    ) -> Result<StagingStatus, StagingError> {
        let cur = Identity::of(&wim, image.index);
        let sdir = open_staging(dir, false)?;
        let id: Identity = read_json(&sdir, IDENTITY).ok_or_else(|| {
            StagingError::Invalid(format!("{} holds no {IDENTITY}", dir.display()))
        })?;
        if let Some(what) = id.mismatch(&cur) {
            return Err(StagingError::Mismatch {
                dir: dir.display().to_string(),
                what,
            });
        }
        let mut status = StagingStatus::default();
        if !sdir.exists(JOURNAL) {
            return Ok(status);
        }
        let data = sdir.subdir(DATA, false).map_err(io_at(dir))?;
        let data_path = data.path().to_path_buf();
        let out = Journal::read(&sdir, JOURNAL).map_err(io_at(&sdir.join(JOURNAL)))?;
        let area = Arc::new(Area::new(data, true, cache, Arc::default()));
        let mut tree = Tree::new(wim, image, link_of);
        let ctx = Ctx {
            area: &area,
            replaying: true,
        };
        load_for_replay(&mut tree, &out, dir)?;
        replay(&mut tree, &out, &ctx, &mut status);
        scan_cut(&tree, false, &mut status).map_err(io_at(&data_path))?;
        Ok(status)
    }

    /// The lazily decoded base image (how much of it a mount decoded is
    /// tested through it).
    pub fn base_image(&self) -> Arc<LazyImage> {
        self.tree.read().lazy.clone()
    }

    pub fn staging_dir(&self) -> &Path {
        self.dir.path()
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            area: &self.area,
            replaying: false,
        }
    }

    /// Apply and journal metadata records with one write (tree lock held
    /// by the caller). Records after one that does not apply are neither
    /// applied nor journalled.
    fn journal_and_apply_all<const N: usize>(
        &self,
        t: &mut Tree,
        recs: [Record; N],
    ) -> VfsResult<()> {
        let mut buf = Vec::new();
        let mut res = Ok(());
        for r in &recs {
            if let Err(e) = t.apply(r, &self.ctx()) {
                res = Err(e);
                break;
            }
            if let Some(r) = t.for_journal(r) {
                journal::frame(&r, &mut buf);
            }
        }
        if !buf.is_empty() {
            if let Err(e) = self.js.lock().journal.append_raw(&buf) {
                log::error!("journal write failed: {e}");
                return Err(VfsError::from_io(e));
            }
        }
        res
    }

    /// Apply and journal a metadata record (tree lock held by the caller).
    fn journal_and_apply(&self, t: &mut Tree, r: Record) -> VfsResult<()> {
        t.apply(&r, &self.ctx())?;
        let Some(r) = t.for_journal(&r) else {
            return Ok(());
        };
        let mut js = self.js.lock();
        if let Err(e) = js.journal.append(&r) {
            log::error!("journal write failed: {e}");
            return Err(VfsError::from_io(e));
        }
        Ok(())
    }

    // ----- reads ---------------------------------------------------------

    pub fn getattr(&self, ino: u64, opts: &VfsOptions) -> VfsResult<Attr> {
        let idx = idx_of(ino)?;
        self.read_loaded(&[idx])?.attr(idx, opts)
    }

    pub fn lookup(&self, parent: u64, name: &str, opts: &VfsOptions) -> VfsResult<Attr> {
        let p = idx_of(parent)?;
        let find = |t: &Tree| -> VfsResult<u32> {
            let d = t.dir(p)?;
            Ok(match name {
                "." => p,
                ".." => d.parent,
                _ => d.entries.get(name).ok_or(VfsError::NotFound)?.idx,
            })
        };
        let t = self.read_loaded(&[p])?;
        let c = find(&t)?;
        if t.is_loaded(c) {
            return t.attr(c, opts);
        }
        // A directory's link count needs its entries.
        drop(t);
        let t = self.read_loaded(&[p, c])?;
        t.attr(find(&t)?, opts)
    }

    /// The tree for reading, with the directories `dirs` loaded first
    /// (under the write lock, once each).
    fn read_loaded(&self, dirs: &[u32]) -> VfsResult<parking_lot::RwLockReadGuard<'_, Tree>> {
        let t = self.tree.read();
        if dirs.iter().all(|&d| t.is_loaded(d)) {
            return Ok(t);
        }
        drop(t);
        let mut t = self.tree.write();
        for &d in dirs {
            t.load(d)?;
        }
        Ok(RwLockWriteGuard::downgrade(t))
    }

    /// [`Overlay::lookup`] under NT semantics: the exact name, else the
    /// one equal but for case (see `Dir::lookup_ci`); returns the name as
    /// stored with the attributes.
    pub fn lookup_ci(
        &self,
        parent: u64,
        name: &str,
        opts: &VfsOptions,
    ) -> VfsResult<(String, Attr)> {
        let p = idx_of(parent)?;
        let t = self.read_loaded(&[p])?;
        let (k, e) = t.dir(p)?.lookup_ci(name).ok_or(VfsError::NotFound)?;
        let (k, c) = (k.to_string(), e.idx);
        if t.is_loaded(c) {
            return Ok((k, t.attr(c, opts)?));
        }
        drop(t);
        Ok((k, self.read_loaded(&[c])?.attr(c, opts)?))
    }

    pub fn readdir(
        &self,
        ino: u64,
        offset: u64,
        max: usize,
        opts: &VfsOptions,
    ) -> VfsResult<Vec<DirEntry>> {
        let unix = opts.shows_unix_data();
        let t = self.read_loaded(&[idx_of(ino)?])?;
        let d = t.dir(idx_of(ino)?)?;
        let mut out = Vec::new();
        let mut off = offset;
        if off == 0 && out.len() < max {
            out.push(DirEntry {
                ino,
                kind: FileKind::Directory,
                name: ".".into(),
                next: 1,
            });
            off = 1;
        }
        if off == 1 && out.len() < max {
            out.push(DirEntry {
                ino: d.parent as u64 + 1,
                kind: FileKind::Directory,
                name: "..".into(),
                next: 2,
            });
            off = 2;
        }
        // Offsets past 2 count entries in name order; a concurrent change
        // can shift them (as on many filesystems).
        for (i, (name, e)) in d
            .entries
            .iter()
            .enumerate()
            .skip((off.saturating_sub(2)) as usize)
        {
            if out.len() >= max {
                break;
            }
            let kind = t
                .nodes
                .get(e.idx as usize)
                .map_or(FileKind::Regular, |n| n.kind(unix));
            out.push(DirEntry {
                ino: e.idx as u64 + 1,
                kind,
                name: name.clone(),
                next: i as u64 + 3,
            });
        }
        Ok(out)
    }

    pub fn readlink(&self, ino: u64) -> VfsResult<String> {
        let t = self.tree.read();
        t.node(idx_of(ino)?)?.link.clone().ok_or(VfsError::NotLink)
    }

    /// The unnamed data stream of a regular file (to read outside the lock).
    pub fn data(&self, ino: u64) -> VfsResult<Option<Data>> {
        let t = self.tree.read();
        let n = t.node(idx_of(ino)?)?;
        match n.kind(false) {
            FileKind::Directory => Err(VfsError::IsDir),
            _ => Ok(n.data.clone()),
        }
    }

    /// Named streams (name, content).
    pub fn named_streams(&self, ino: u64) -> VfsResult<Vec<(String, Data)>> {
        Ok(self.tree.read().node(idx_of(ino)?)?.named.clone())
    }

    /// Windows metadata for xattrs: attributes, creation time, security id,
    /// reparse tag and data, short name, base inode index.
    pub fn win_meta(&self, ino: u64) -> VfsResult<WinMeta> {
        let t = self.tree.read();
        let idx = idx_of(ino)?;
        let n = t.node(idx)?;
        let extra = n.extra.as_deref().filter(|_| n.base != NONE);
        let short_name = extra
            .map(|x| x.short_name.clone())
            .filter(|s| !s.is_empty() && n.nlink > 0);
        Ok(WinMeta {
            attributes: n.meta.attributes,
            creation_time: n.meta.creation_time,
            security: t.security(n.meta.security_id).map(|s| s.to_vec()),
            reparse: (n.meta.attributes & attr::REPARSE_POINT != 0)
                .then(|| (n.reparse_tag, n.reparse.clone())),
            short_name,
            xattrs: extra.and_then(|x| x.xattrs.clone()),
        })
    }

    /// Files and directories: the base image's (as its XML says, as the
    /// read-only view counts them: counting would decode every directory)
    /// and those made in the mount.
    pub fn inode_count(&self) -> u64 {
        let t = self.tree.read();
        let made = t.nodes.iter().filter(|n| n.base == NONE && n.live).count() as u64;
        t.lazy.count_hint().saturating_add(made)
    }

    /// True when nothing was changed since the mount started or the last
    /// commit: the journal holds no record and none is pending. (A change
    /// undone by hand still counts; commit then finds the tree equal.)
    pub fn is_unchanged(&self) -> bool {
        let js = self.js.lock();
        js.journal.is_empty() && js.pending.ops.is_empty() && js.pending.meta.is_empty()
    }

    /// Free and total bytes of the filesystem holding the staging.
    pub fn staging_space(&self) -> Option<(u64, u64)> {
        crate::sys::fs_space(self.dir.path())
    }

    pub fn wim(&self) -> Arc<Wim> {
        self.tree.read().wim.clone()
    }

    // ----- handles -------------------------------------------------------

    /// Open a file; `truncate` empties it (O_TRUNC). Returns a handle.
    pub fn open_handle(&self, ino: u64, write: bool, truncate: bool) -> VfsResult<u64> {
        let idx = idx_of(ino)?;
        {
            // Opens for reading do not wait for a commit.
            let _g = (write || truncate).then(|| self.gate.read());
            let mut t = self.tree.write();
            let n = t.node_mut(idx)?;
            if n.dir.is_some() && (write || truncate) {
                return Err(VfsError::IsDir);
            }
            n.open += 1;
            if write {
                n.open_w += 1;
            }
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, Handle { idx, write });
        if truncate && write {
            if let Err(e) = self.set_size(idx, 0, true) {
                let _ = self.release(fh);
                return Err(e);
            }
        }
        Ok(fh)
    }

    /// Close a handle; a written one is a sync point.
    pub fn release(&self, fh: u64) -> VfsResult<()> {
        let Some(h) = self.handles.lock().remove(&fh) else {
            return Ok(());
        };
        {
            let mut t = self.tree.write();
            if let Some(n) = t.nodes.get_mut(h.idx as usize) {
                n.open = n.open.saturating_sub(1);
                if h.write {
                    n.open_w = n.open_w.saturating_sub(1);
                }
            }
            t.maybe_free(h.idx);
        }
        // After the bookkeeping, so a failure here (a full disk) still
        // closes the handle; a freed file has nothing left to pack.
        let packed = if h.write {
            self.pack_node(h.idx)
        } else {
            Ok(())
        };
        if h.write && self.sync_on_release {
            self.flush()?;
        }
        packed
    }

    /// Number of open handles (commit refuses while files are open).
    pub fn open_handles(&self) -> usize {
        self.handles.lock().len()
    }

    // ----- changes -------------------------------------------------------

    fn new_meta(
        &self,
        t: &Tree,
        parent: u32,
        attributes: u32,
        unix: Option<UnixData>,
    ) -> VfsResult<Meta> {
        let now = crate::time::now_filetime();
        let p = t.node(parent)?;
        Ok(Meta {
            attributes,
            security_id: p.meta.security_id,
            creation_time: now,
            last_access_time: now,
            last_write_time: now,
            unix,
        })
    }

    fn unix_for(&self, opts: &VfsOptions, mode: u32, ftype: u32, cred: Cred) -> Option<UnixData> {
        opts.store_unix_data.then_some(UnixData {
            uid: cred.uid,
            gid: cred.gid,
            mode: ftype | (mode & 0o7777),
            rdev: 0,
        })
    }

    /// [`Self::make`] for a node with no reparse data (a file, a
    /// directory, a FIFO, device or socket).
    #[allow(clippy::too_many_arguments)]
    fn make_plain(
        &self,
        parent: u64,
        name: &str,
        kind: NewKind,
        attributes: u32,
        unix: Option<UnixData>,
        security: Option<&[u8]>,
        opts: &VfsOptions,
    ) -> VfsResult<u32> {
        self.make(parent, name, kind, security, opts, |me, t, idx| {
            Ok(Record::NewNode {
                idx,
                kind,
                meta: me.new_meta(t, idx_of(parent)?, attributes, unix)?,
                reparse_tag: 0,
                rp_flags: 0,
                reparse: Vec::new(),
                link: String::new(),
            })
        })
    }

    /// Make a new node named `name` in `parent`, with the security
    /// descriptor `security` if given (else the parent's, from `meta_of`).
    fn make(
        &self,
        parent: u64,
        name: &str,
        kind: NewKind,
        security: Option<&[u8]>,
        opts: &VfsOptions,
        meta_of: impl FnOnce(&Self, &Tree, u32) -> VfsResult<Record>,
    ) -> VfsResult<u32> {
        check_name(name)?;
        let p = idx_of(parent)?;
        let _g = self.gate.read();
        let mut t = self.tree.write();
        t.load(p)?;
        if t.dir(p)?.entries.contains_key(name) {
            return Err(VfsError::exists());
        }
        if opts.windows_names {
            t.check_windows_name(p, name, None)?;
        }
        let idx = u32::try_from(t.nodes.len())
            .ok()
            .filter(|&i| i < NONE - 1)
            .ok_or(VfsError::no_space())?;
        // Interned before the node is made: the descriptor's record (if
        // new) comes first in the journal, as replay needs.
        let sec = match security {
            Some(sd) => Some(self.intern_security(&mut t, sd)?),
            None => None,
        };
        let mut rec = meta_of(self, &t, idx)?;
        if let (Some(id), Record::NewNode { meta, .. }) = (sec, &mut rec) {
            meta.security_id = id;
        }
        debug_assert!(matches!(&rec, Record::NewNode { kind: k, .. } if *k == kind));
        let link = Record::Link {
            parent: p,
            name: name.to_string(),
            idx,
            t: crate::time::now_filetime(),
        };
        self.journal_and_apply_all(&mut t, [rec, link])?;
        Ok(idx)
    }

    pub fn create(
        &self,
        parent: u64,
        name: &str,
        mode: u32,
        cred: Cred,
        opts: &VfsOptions,
    ) -> VfsResult<(Attr, u64)> {
        self.create_with(parent, name, mode, cred, None, opts)
    }

    /// [`Self::create`] with the security descriptor `security` (validated)
    /// instead of the parent's.
    pub fn create_with(
        &self,
        parent: u64,
        name: &str,
        mode: u32,
        cred: Cred,
        security: Option<&[u8]>,
        opts: &VfsOptions,
    ) -> VfsResult<(Attr, u64)> {
        let unix = self.unix_for(opts, mode, S_IFREG, cred);
        let idx = self.make_plain(
            parent,
            name,
            NewKind::File,
            attr::ARCHIVE,
            unix,
            security,
            opts,
        )?;
        let fh = self.open_handle(idx as u64 + 1, true, false)?;
        Ok((self.getattr(idx as u64 + 1, opts)?, fh))
    }

    /// A FIFO, device or socket: an empty file (attributes 0, as
    /// `wimlib-imagex capture --unix-data` stores one) whose UNIX data
    /// holds its type, permissions and device number. Without stored UNIX
    /// data there is nowhere to keep what it is: refused (EPERM, as
    /// before).
    #[allow(clippy::too_many_arguments)]
    pub fn mknod(
        &self,
        parent: u64,
        name: &str,
        kind: Special,
        mode: u32,
        rdev: u32,
        cred: Cred,
        opts: &VfsOptions,
    ) -> VfsResult<Attr> {
        if !opts.store_unix_data {
            return Err(VfsError::perm());
        }
        let unix = UnixData {
            uid: cred.uid,
            gid: cred.gid,
            mode: kind.mode_bits() | (mode & 0o7777),
            rdev: if kind.is_device() { rdev } else { 0 },
        };
        let idx = self.make_plain(parent, name, NewKind::File, 0, Some(unix), None, opts)?;
        self.getattr(idx as u64 + 1, opts)
    }

    pub fn mkdir(
        &self,
        parent: u64,
        name: &str,
        mode: u32,
        cred: Cred,
        opts: &VfsOptions,
    ) -> VfsResult<Attr> {
        self.mkdir_with(parent, name, mode, cred, None, opts)
    }

    /// [`Self::mkdir`] with the security descriptor `security` (validated)
    /// instead of the parent's.
    pub fn mkdir_with(
        &self,
        parent: u64,
        name: &str,
        mode: u32,
        cred: Cred,
        security: Option<&[u8]>,
        opts: &VfsOptions,
    ) -> VfsResult<Attr> {
        let unix = self.unix_for(opts, mode, S_IFDIR, cred);
        let idx = self.make_plain(
            parent,
            name,
            NewKind::Dir,
            attr::DIRECTORY,
            unix,
            security,
            opts,
        )?;
        self.getattr(idx as u64 + 1, opts)
    }

    /// A symlink, stored as a Windows symlink reparse point: relative
    /// targets stay relative; absolute ones are stored as `\??\C:\...` and
    /// flagged not fixed up, so they read back unchanged.
    pub fn symlink(
        &self,
        parent: u64,
        name: &str,
        target: &str,
        cred: Cred,
        opts: &VfsOptions,
    ) -> VfsResult<Attr> {
        if target.is_empty() || target.contains('\0') || target.len() > 4096 {
            return Err(VfsError::Invalid);
        }
        let relative = !target.starts_with('/');
        let win = if relative {
            target.replace('/', "\\")
        } else {
            format!("C:{}", target.replace('/', "\\"))
        };
        let data = reparse::encode_symlink(&win, relative);
        if data.len() > 16 * 1024 {
            return Err(VfsError::name_too_long());
        }
        let idx = self.make(parent, name, NewKind::Symlink, None, opts, |me, t, idx| {
            let meta = me.new_meta(
                t,
                idx_of(parent)?,
                attr::ARCHIVE | attr::REPARSE_POINT,
                me.unix_for(opts, 0o777, S_IFLNK, cred),
            )?;
            Ok(Record::NewNode {
                idx,
                kind: NewKind::Symlink,
                meta,
                reparse_tag: reparse::TAG_SYMLINK,
                rp_flags: reparse::RP_NOT_FIXED,
                reparse: data,
                link: target.to_string(),
            })
        })?;
        self.getattr(idx as u64 + 1, opts)
    }

    pub fn link(&self, ino: u64, parent: u64, name: &str, opts: &VfsOptions) -> VfsResult<Attr> {
        check_name(name)?;
        let (idx, p) = (idx_of(ino)?, idx_of(parent)?);
        let _g = self.gate.read();
        let mut t = self.tree.write();
        t.load(p)?;
        let n = t.node(idx)?;
        // Directories cannot be hard-linked; a WIM cannot record a link
        // group for a reparse point (the fields overlap).
        if n.dir.is_some() || n.meta.attributes & attr::REPARSE_POINT != 0 || n.nlink == 0 {
            return Err(VfsError::perm());
        }
        if t.dir(p)?.entries.contains_key(name) {
            return Err(VfsError::exists());
        }
        if opts.windows_names {
            t.check_windows_name(p, name, None)?;
        }
        let now = crate::time::now_filetime();
        self.journal_and_apply(
            &mut t,
            Record::Link {
                parent: p,
                name: name.to_string(),
                idx,
                t: now,
            },
        )?;
        drop(t);
        self.getattr(ino, opts)
    }

    pub fn unlink(&self, parent: u64, name: &str) -> VfsResult<()> {
        let p = idx_of(parent)?;
        let _g = self.gate.read();
        let mut t = self.tree.write();
        t.load(p)?;
        let e = t.lookup(p, name)?;
        if t.is_dir_idx(e.idx) {
            return Err(VfsError::IsDir);
        }
        let now = crate::time::now_filetime();
        self.journal_and_apply(
            &mut t,
            Record::Unlink {
                parent: p,
                name: name.to_string(),
                t: now,
            },
        )
    }

    pub fn rmdir(&self, parent: u64, name: &str) -> VfsResult<()> {
        let p = idx_of(parent)?;
        let _g = self.gate.read();
        let mut t = self.tree.write();
        t.load(p)?;
        let e = t.lookup(p, name)?;
        if !t.is_dir_idx(e.idx) {
            return Err(VfsError::NotDir);
        }
        let now = crate::time::now_filetime();
        self.journal_and_apply(
            &mut t,
            Record::Unlink {
                parent: p,
                name: name.to_string(),
                t: now,
            },
        )
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &str,
        newparent: u64,
        newname: &str,
        mode: RenameMode,
        opts: &VfsOptions,
    ) -> VfsResult<()> {
        let (from, to) = (idx_of(parent)?, idx_of(newparent)?);
        let _g = self.gate.read();
        let mut t = self.tree.write();
        t.load(from)?;
        t.load(to)?;
        // Only a name that is new needs the check: an exchange swaps two
        // existing ones, and renaming onto the same name changes nothing.
        if opts.windows_names && mode != RenameMode::Exchange && !(from == to && name == newname) {
            // The source must exist first: a missing one is ENOENT, not a
            // complaint about the new name.
            t.lookup(from, name)?;
            t.check_windows_name(to, newname, (from == to).then_some(name))?;
        }
        let now = crate::time::now_filetime();
        let r = Record::Rename {
            from,
            from_name: name.to_string(),
            to,
            to_name: newname.to_string(),
            mode: mode.code(),
            t: now,
        };
        self.journal_and_apply(&mut t, r)
    }

    /// Make sure `idx`'s data stream is staged; returns it.
    fn staged(&self, t: &mut Tree, idx: u32) -> VfsResult<Arc<Staged>> {
        let n = t.node(idx)?;
        // A FIFO, device or socket has no data of its own (whether or not
        // this mount shows it as one).
        match n.kind(true) {
            FileKind::Directory => return Err(VfsError::IsDir),
            FileKind::Symlink | FileKind::Special(_) => return Err(VfsError::Invalid),
            FileKind::Regular => {}
        }
        if let Some(Data::Staged(s)) = &n.data {
            return Ok(s.clone());
        }
        let id = t.next_stream;
        t.next_stream += 1;
        self.journal_and_apply(t, Record::Stage { idx, id })?;
        match &t.node(idx)?.data {
            Some(Data::Staged(s)) => Ok(s.clone()),
            _ => Err(VfsError::internal("stream not staged")),
        }
    }

    pub fn write(&self, ino: u64, offset: u64, data: &[u8]) -> VfsResult<u32> {
        let idx = idx_of(ino)?;
        let _g = self.gate.read();
        let mut t = self.tree.write();
        let s = self.staged(&mut t, idx)?;
        self.write_staged(&mut t, idx, &s, offset, data)
    }

    /// Write into a staged stream of inode `idx` and queue what the
    /// journal must say (the tree is held for writing by the caller).
    fn write_staged(
        &self,
        t: &mut Tree,
        idx: u32,
        s: &Arc<Staged>,
        offset: u64,
        data: &[u8],
    ) -> VfsResult<u32> {
        let before = s.size();
        let runs = s.write(offset, data).map_err(VfsError::from_lib)?;
        let after = s.size();
        let n = t.node_mut(idx)?;
        n.meta.last_write_time = crate::time::now_filetime();
        n.meta.attributes |= attr::ARCHIVE;
        match runs {
            // In a staging file: journalled at the next sync point.
            Some(runs) if !runs.is_empty() || after != before => self.js.lock().pending.push(
                s,
                idx,
                Record::Data {
                    id: s.id,
                    size: after,
                    runs,
                },
            ),
            // Nothing new in the file, or held in memory until the
            // stream is packed (at the close).
            _ => {
                self.js.lock().pending.meta.insert(idx);
            }
        }
        Ok(data.len() as u32)
    }

    fn set_size(&self, idx: u32, size: u64, touch: bool) -> VfsResult<()> {
        let sync_now;
        {
            let _g = self.gate.read();
            let mut t = self.tree.write();
            let s = self.staged(&mut t, idx)?;
            if s.size() != size {
                s.set_size(size).map_err(VfsError::from_lib)?;
                self.js
                    .lock()
                    .pending
                    .push(&s, idx, Record::Size { id: s.id, size });
            }
            let n = t.node_mut(idx)?;
            if touch {
                n.meta.last_write_time = crate::time::now_filetime();
            }
            self.js.lock().pending.meta.insert(idx);
            sync_now = n.open_w == 0;
        }
        if sync_now {
            self.flush()?;
        }
        Ok(())
    }

    /// Extend with zeros (no space is reserved: staging files are sparse).
    pub fn fallocate(&self, ino: u64, offset: u64, len: u64, keep_size: bool) -> VfsResult<()> {
        let idx = idx_of(ino)?;
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= stage::MAX_SIZE)
            .ok_or(VfsError::TooBig)?;
        let cur = {
            let t = self.tree.read();
            let n = t.node(idx)?;
            if n.kind(true) != FileKind::Regular {
                return Err(if n.dir.is_some() {
                    VfsError::IsDir
                } else {
                    VfsError::Invalid
                });
            }
            n.data.as_ref().map_or(0, |d| d.size())
        };
        if keep_size || end <= cur {
            return Ok(());
        }
        self.set_size(idx, end, true)
    }

    pub fn setattr(&self, ino: u64, a: &SetAttr, opts: &VfsOptions) -> VfsResult<Attr> {
        let idx = idx_of(ino)?;
        if let Some(size) = a.size {
            if size > stage::MAX_SIZE {
                return Err(VfsError::TooBig);
            }
            self.set_size(idx, size, true)?;
        }
        if a.mode.is_some()
            || a.uid.is_some()
            || a.gid.is_some()
            || a.atime.is_some()
            || a.mtime.is_some()
        {
            let _g = self.gate.read();
            let mut t = self.tree.write();
            t.load(idx)?;
            let cur = t.attr(idx, opts)?;
            let n = t.node(idx)?;
            let mut meta = n.meta;
            let owner_change = a.mode.is_some_and(|m| m & 0o7777 != cur.perm as u32)
                || a.uid.is_some_and(|u| u != cur.uid)
                || a.gid.is_some_and(|g| g != cur.gid);
            if owner_change {
                if !opts.store_unix_data {
                    // Without UNIX data there is nowhere to keep them.
                    return Err(VfsError::perm());
                }
                let ftype = match cur.kind {
                    FileKind::Directory => S_IFDIR,
                    FileKind::Regular => S_IFREG,
                    FileKind::Symlink => S_IFLNK,
                    FileKind::Special(s) => s.mode_bits(),
                };
                let mut u = meta.unix.unwrap_or(UnixData {
                    uid: cur.uid,
                    gid: cur.gid,
                    mode: ftype | cur.perm as u32,
                    rdev: 0,
                });
                if let Some(m) = a.mode {
                    u.mode = (u.mode & !0o7777) | (m & 0o7777);
                }
                u.uid = a.uid.unwrap_or(u.uid);
                u.gid = a.gid.unwrap_or(u.gid);
                meta.unix = Some(u);
            }
            let ft = |(s, ns): (i64, u32)| crate::time::unix_to_filetime(s, ns);
            if let Some(x) = a.atime {
                meta.last_access_time = ft(x);
            }
            if let Some(x) = a.mtime {
                meta.last_write_time = ft(x);
            }
            if meta != n.meta {
                self.journal_and_apply(&mut t, Record::Meta { idx, meta })?;
            }
        }
        self.getattr(ino, opts)
    }

    /// Set a named stream (`user.NAME` xattr, NAME given here).
    pub fn set_stream(
        &self,
        ino: u64,
        name: &str,
        value: &[u8],
        mode: XattrMode,
        opts: &VfsOptions,
    ) -> VfsResult<()> {
        if name.is_empty()
            || name.contains(':')
            || name.contains('\0')
            || name.encode_utf16().count() > MAX_NAME
        {
            return Err(VfsError::Invalid);
        }
        if value.len() > MAX_XATTR {
            return Err(VfsError::TooBig);
        }
        let idx = idx_of(ino)?;
        let _g = self.gate.read();
        let mut t = self.tree.write();
        let exists = t.node(idx)?.named.iter().any(|(k, _)| k == name);
        if opts.windows_names && !exists {
            self.check_stream_name(&t, idx, name)?;
        }
        match (mode, exists) {
            (XattrMode::Create, true) => return Err(VfsError::exists()),
            (XattrMode::Replace, false) => return Err(VfsError::NoAttr),
            _ => {}
        }
        self.journal_and_apply(
            &mut t,
            Record::Xattr {
                idx,
                name: name.to_string(),
                value: Some(value.to_vec()),
            },
        )
    }

    /// Refuse a new named stream Windows could not create: reserved or
    /// control characters (EINVAL), or a name equal but for case to
    /// another stream of the file (EEXIST); the log names the rule.
    fn check_stream_name(&self, t: &Tree, idx: u32, name: &str) -> VfsResult<()> {
        let n = t.node(idx)?;
        let rule = match names::check_stream_name(name) {
            Err(r) => r,
            Ok(()) => match n.named.iter().find(|(k, _)| names::same_name(k, name)) {
                Some((k, _)) => names::Rule::CaseCollision(k.clone()),
                None => return Ok(()),
            },
        };
        log::warn!(
            "refused the named stream {name:?} (xattr user.{name}) of inode {}: it {rule} \
             (mount with --posix-names for an image only Linux will read)",
            idx as u64 + 1
        );
        Err(match rule {
            names::Rule::CaseCollision(_) => VfsError::exists(),
            _ => VfsError::Invalid,
        })
    }

    pub fn remove_stream(&self, ino: u64, name: &str) -> VfsResult<()> {
        let idx = idx_of(ino)?;
        let _g = self.gate.read();
        let mut t = self.tree.write();
        if !t.node(idx)?.named.iter().any(|(k, _)| k == name) {
            return Err(VfsError::NoAttr);
        }
        self.journal_and_apply(
            &mut t,
            Record::Xattr {
                idx,
                name: name.to_string(),
                value: None,
            },
        )
    }

    // ----- named streams as streams --------------------------------------

    /// Make sure named stream `name` of `idx` is staged; returns it.
    fn staged_named(&self, t: &mut Tree, idx: u32, name: &str) -> VfsResult<Arc<Staged>> {
        let n = t.node(idx)?;
        match n.named.iter().find(|(k, _)| k == name) {
            None => return Err(VfsError::NoAttr),
            Some((_, Data::Staged(s))) => return Ok(s.clone()),
            Some(_) => {}
        }
        let id = t.next_stream;
        t.next_stream += 1;
        self.journal_and_apply(
            t,
            Record::StageNamed {
                idx,
                name: name.to_string(),
                id,
            },
        )?;
        match t.node(idx)?.named.iter().find(|(k, _)| k == name) {
            Some((_, Data::Staged(s))) => Ok(s.clone()),
            _ => Err(VfsError::internal("named stream not staged")),
        }
    }

    /// Write `data` at `offset` of named stream `name` (which must exist:
    /// see [`Self::set_stream`] to create one), through the staging like
    /// the unnamed stream: no size limit but the staging's. Durable at the
    /// next sync point ([`Self::sync`]).
    pub fn write_stream(&self, ino: u64, name: &str, offset: u64, data: &[u8]) -> VfsResult<u32> {
        let idx = idx_of(ino)?;
        let _g = self.gate.read();
        let mut t = self.tree.write();
        let s = self.staged_named(&mut t, idx, name)?;
        self.write_staged(&mut t, idx, &s, offset, data)
    }

    /// Truncate or extend named stream `name` (with zeros). Durable at the
    /// next sync point.
    pub fn set_stream_size(&self, ino: u64, name: &str, size: u64) -> VfsResult<()> {
        if size > stage::MAX_SIZE {
            return Err(VfsError::TooBig);
        }
        let idx = idx_of(ino)?;
        let _g = self.gate.read();
        let mut t = self.tree.write();
        let s = self.staged_named(&mut t, idx, name)?;
        if s.size() != size {
            s.set_size(size).map_err(VfsError::from_lib)?;
            self.js
                .lock()
                .pending
                .push(&s, idx, Record::Size { id: s.id, size });
        }
        Ok(())
    }

    // ----- Windows metadata ------------------------------------------------

    /// Apply `change` to the node's metadata and journal it if it changed.
    fn change_meta(&self, ino: u64, change: impl FnOnce(&Node, &mut Meta)) -> VfsResult<()> {
        let idx = idx_of(ino)?;
        let _g = self.gate.read();
        let mut t = self.tree.write();
        let n = t.node(idx)?;
        let mut meta = n.meta;
        change(n, &mut meta);
        if meta != n.meta {
            self.journal_and_apply(&mut t, Record::Meta { idx, meta })?;
        }
        Ok(())
    }

    /// Set the DOS attributes (see [`merge_attributes`]: only the settable
    /// bits change; the directory bit follows what the node is).
    pub fn set_attributes(&self, ino: u64, attributes: u32) -> VfsResult<()> {
        self.change_meta(ino, |n, m| {
            let dir = n.dir.is_some() || m.attributes & attr::DIRECTORY != 0;
            m.attributes = merge_attributes(m.attributes, attributes, dir);
        })
    }

    /// Set any of the times (see [`NtTimes`] for the change time).
    pub fn set_times(&self, ino: u64, times: &NtTimes) -> VfsResult<()> {
        self.change_meta(ino, |_, m| {
            if let Some(t) = times.creation {
                m.creation_time = t;
            }
            if let Some(t) = times.last_access {
                m.last_access_time = t;
            }
            if let Some(t) = times.last_write {
                m.last_write_time = t;
            }
        })
    }

    /// The id of descriptor `sd`: an existing entry with the same bytes
    /// (the image's own, or one added earlier in the mount), else a new
    /// one, journaled. Refuses a malformed descriptor.
    fn intern_security(&self, t: &mut Tree, sd: &[u8]) -> VfsResult<i32> {
        if let Err(e) = crate::nt::security::validate(sd) {
            log::warn!("refused a security descriptor: {e}");
            return Err(VfsError::Invalid);
        }
        if let Some(id) = t.find_security(sd) {
            return Ok(id);
        }
        let id = i32::try_from(t.security.len() + t.new_security.len())
            .map_err(|_| VfsError::no_space())?;
        self.journal_and_apply(
            t,
            Record::Security {
                descriptor: sd.to_vec(),
            },
        )?;
        Ok(id)
    }

    /// Give the node the self-relative security descriptor `sd`
    /// (validated; refused with [`VfsError::Invalid`] and nothing changed
    /// when malformed). At commit it joins the image's security table,
    /// stored once however many files use it.
    pub fn set_security(&self, ino: u64, sd: &[u8]) -> VfsResult<()> {
        let idx = idx_of(ino)?;
        let _g = self.gate.read();
        let mut t = self.tree.write();
        t.node(idx)?;
        let id = self.intern_security(&mut t, sd)?;
        let n = t.node(idx)?;
        if n.meta.security_id != id {
            let meta = Meta {
                security_id: id,
                ..n.meta
            };
            self.journal_and_apply(&mut t, Record::Meta { idx, meta })?;
        }
        Ok(())
    }

    /// Make the node a reparse point with `tag` and `data` (the reparse
    /// data without its 8-byte header). A symlink or junction whose data
    /// decodes shows as a symlink to its POSIX target; other tags are kept
    /// opaque. A directory must be empty; a file with several names is
    /// refused (a WIM cannot record both). Stored as not fixed up, so it
    /// is applied as given.
    pub fn set_reparse(&self, ino: u64, tag: u32, data: &[u8], opts: &VfsOptions) -> VfsResult<()> {
        if data.len() > MAX_REPARSE_DATA || tag == 0 {
            return Err(VfsError::Invalid);
        }
        let link =
            reparse::decode(tag, data).map(|t| reparse::posix_target(&t, false, &opts.mount_root));
        let idx = idx_of(ino)?;
        let _g = self.gate.read();
        let mut t = self.tree.write();
        self.journal_and_apply(
            &mut t,
            Record::Reparse {
                idx,
                tag,
                rp_flags: reparse::RP_NOT_FIXED,
                data: Some(data.to_vec()),
                link,
            },
        )
    }

    /// Make the node an ordinary file or directory again ([`VfsError::NoAttr`]
    /// if it is not a reparse point). Its data stream stays as it was.
    pub fn delete_reparse(&self, ino: u64) -> VfsResult<()> {
        let idx = idx_of(ino)?;
        let _g = self.gate.read();
        let mut t = self.tree.write();
        self.journal_and_apply(
            &mut t,
            Record::Reparse {
                idx,
                tag: 0,
                rp_flags: 0,
                data: None,
                link: None,
            },
        )
    }

    /// Make every change so far durable, against a power loss too:
    /// staging files first, then the journal records that refer to them,
    /// then the journal.
    pub fn sync(&self) -> VfsResult<()> {
        {
            let t = self.tree.read();
            for s in t.streams.values() {
                self.pack_one(s)?;
            }
        }
        self.write_records(true)
    }

    /// A close(2) of handle `fh` (FUSE FLUSH): a stream it wrote that is
    /// still held in memory goes to the pack, then [`Overlay::flush`].
    pub fn flush_handle(&self, fh: u64) -> VfsResult<()> {
        let written = self
            .handles
            .lock()
            .get(&fh)
            .and_then(|h| h.write.then_some(h.idx));
        if let Some(idx) = written {
            self.pack_node(idx)?;
        }
        self.flush()
    }

    /// Pack the streams of inode `idx` that are held in memory.
    fn pack_node(&self, idx: u32) -> VfsResult<()> {
        let t = self.tree.read();
        let Some(n) = t.nodes.get(idx as usize) else {
            return Ok(());
        };
        for d in n.data.iter().chain(n.named.iter().map(|(_, d)| d)) {
            if let Data::Staged(s) = d {
                self.pack_one(s)?;
            }
        }
        Ok(())
    }

    /// Pack one stream if it is held in memory, queueing its record. The
    /// caller holds the tree (at least for reading), so no write to the
    /// stream (which takes it for writing) can queue a record between the
    /// packing and this one.
    fn pack_one(&self, s: &Arc<Staged>) -> VfsResult<()> {
        if let Some(p) = s.pack().map_err(VfsError::from_lib)? {
            self.js.lock().pending.push_op(
                s,
                Record::Packed {
                    id: s.id,
                    off: p.off,
                    len: p.len,
                    size: p.size,
                },
            );
        }
        Ok(())
    }

    /// Write the records of every change so far to the journal, one
    /// `write`, without fsync (a close). That is enough for them to
    /// survive the daemon being killed: the staging files' data and the
    /// journal are in the kernel once written. Only a power loss needs the
    /// fsyncs of [`Overlay::sync`] (fsync, sync, commit, unmount); a copy
    /// of many small files would otherwise pay two fsyncs per file.
    pub fn flush(&self) -> VfsResult<()> {
        self.write_records(false)
    }

    fn write_records(&self, durable: bool) -> VfsResult<()> {
        let t = self.tree.read();
        let mut js = self.js.lock();
        if !durable && js.pending.ops.is_empty() && js.pending.meta.is_empty() {
            return Ok(());
        }
        if durable {
            // Data whose records earlier flushes journalled goes first
            // (the pack too: a stream packed, then moved to a file of its
            // own, no longer syncs it).
            self.area.sync_pack().map_err(VfsError::from_io)?;
            for s in js.unsynced.values() {
                s.sync().map_err(VfsError::from_io)?;
            }
            js.unsynced.clear();
        }
        let pending = std::mem::take(&mut js.pending);
        let mut buf = Vec::new();
        for (s, recs) in pending.ops.values() {
            if durable {
                if let Err(e) = s.sync() {
                    js.pending = pending;
                    return Err(VfsError::from_io(e));
                }
            }
            for r in recs.iter().filter_map(|r| t.translate(r)) {
                journal::frame(&r, &mut buf);
            }
        }
        for &idx in &pending.meta {
            if let Some(n) = t.nodes.get(idx as usize).filter(|n| n.live) {
                if let Some(r) = t.translate(&Record::Meta { idx, meta: n.meta }) {
                    journal::frame(&r, &mut buf);
                }
            }
        }
        if let Err(e) = js.journal.append_raw(&buf) {
            js.pending = pending;
            return Err(VfsError::from_io(e));
        }
        if !durable {
            for (s, _) in pending.ops.values() {
                js.unsynced.insert(s.id, s.clone());
            }
            return Ok(());
        }
        js.journal.sync().map_err(VfsError::from_io)?;
        drop(js);
        drop(t);
        // Staging files of freed inodes can go now.
        let dead = std::mem::take(&mut self.tree.write().dead_streams);
        for id in dead {
            let _ = self.area.dir().remove_file(id.to_string());
        }
        Ok(())
    }

    // ----- commit --------------------------------------------------------

    /// Hold off every change (writes wait) until the guard is dropped.
    pub fn freeze(&self) -> Frozen<'_> {
        Frozen(self.gate.write())
    }

    /// The whole image as it now is, for commit. Unchanged files keep their
    /// dentry records (short names, tagged items, object IDs, attributes,
    /// timestamps) and their blobs; changed contents are
    /// [`StreamData::New`] readers of the merged view (staging over WIM).
    /// Call with writers frozen so the contents cannot change meanwhile.
    pub fn to_new_image(&self) -> crate::Result<NewImage> {
        let raw = {
            let t = self.tree.read();
            t.wim.read_metadata(t.index)?
        };
        let templates = match metadata::parse(&raw) {
            Ok(md) => md.dentries,
            Err(e) => {
                // The image's own damage stops the commit; the lazy decode
                // names the directory it is in, where it can.
                self.tree.write().load_all().map_err(|l| {
                    crate::Error::Other(format!("cannot read the image's directories: {l}"))
                })?;
                return Err(e);
            }
        };
        drop(raw);
        let keyed: HashMap<u32, usize> = templates
            .iter()
            .enumerate()
            .map(|(i, d)| (dentry_key(d.offset), i))
            .collect();
        // The base image's child lists, for directories the mount never
        // looked into: nothing in them can have changed, so their records
        // are copied from the base as they are.
        let mut tkids: Vec<Vec<u32>> = vec![Vec::new(); templates.len()];
        for (i, d) in templates.iter().enumerate().skip(1) {
            if let Some(k) = tkids.get_mut(d.parent as usize) {
                k.push(i as u32);
            }
        }
        let templates = Templates {
            records: &templates,
            keyed: &keyed,
        };
        let mut t = self.tree.read();
        // Hard-link groups of the base with a file in the tree: a name of
        // one in an unvisited directory is that file (its content may have
        // changed). Should one group have become two files (as a decoder
        // splits a group whose members differ), the copy cannot tell them
        // apart: the whole tree is loaded instead.
        let groups = match base_groups(&t, &templates) {
            Some(g) => g,
            None => {
                drop(t);
                self.tree.write().load_all().map_err(|e| {
                    crate::Error::Other(format!("cannot read the image's directories: {e}"))
                })?;
                t = self.tree.read();
                HashMap::new()
            }
        };
        let mut records: Vec<DentryRecord> = Vec::with_capacity(t.nodes.len());
        let mut streams: Vec<EntryStreams> = Vec::with_capacity(t.nodes.len());
        // Output count of names per inode, for link groups: keyed by the
        // tree's inode index, or (from `COPIED_GROUP` up) a group of the
        // base found only in unvisited directories.
        let mut names: HashMap<u64, u32> = HashMap::new();
        let mut copied_groups: HashMap<u64, u64> = HashMap::new();
        let mut warnings = Vec::new();
        // (dir idx, its record index) and (base record, its record index).
        let mut queue: Vec<(u32, u32)> = Vec::new();
        let mut copies: Vec<(u32, u32)> = Vec::new();
        let root = t
            .node(0)
            .map_err(|_| crate::Error::Other("overlay has no root".into()))?;
        let (r, s) = self.record_for(&templates, 0, root, "", root.base, 0);
        records.push(r);
        streams.push(s);
        queue.push((0, 0));
        let mut qi = 0;
        while qi < queue.len() || !copies.is_empty() {
            if let Some((ti, rec)) = copies.pop() {
                // Of names stored twice in one directory (a damaged
                // image), the first, as the decoders keep it.
                let mut seen = std::collections::HashSet::new();
                for &c in tkids.get(ti as usize).into_iter().flatten() {
                    let b = &templates.records[c as usize];
                    if !seen.insert(b.name.as_str()) {
                        continue;
                    }
                    let me = records.len() as u32;
                    let file = !b.is_dir() && !b.is_reparse() && b.link_group != 0;
                    let node = file
                        .then(|| groups.get(&b.link_group))
                        .flatten()
                        .and_then(|&i| Some((i, t.nodes.get(i as usize).filter(|n| n.live)?)));
                    if let Some((idx, n)) = node {
                        let (r, s) =
                            self.record_for(&templates, idx, n, &b.name, dentry_key(b.offset), rec);
                        records.push(r);
                        streams.push(s);
                        *names.entry(idx as u64).or_insert(0) += 1;
                        continue;
                    }
                    let mut r = b.clone();
                    r.parent = rec;
                    r.offset = 0;
                    r.hash = ZERO_HASH;
                    r.streams.clear();
                    r.link_group = if file {
                        let next = COPIED_GROUP + copied_groups.len() as u64;
                        let g = *copied_groups.entry(b.link_group).or_insert(next);
                        *names.entry(g).or_insert(0) += 1;
                        g
                    } else {
                        NO_GROUP
                    };
                    records.push(r);
                    streams.push(copied_streams(b, &mut warnings));
                    copies.push((c, me));
                }
                continue;
            }
            let (didx, rec) = queue[qi];
            qi += 1;
            let Some(dir) = t.nodes.get(didx as usize).and_then(|n| n.dir.as_ref()) else {
                continue;
            };
            if let Some(e) = &dir.unloaded {
                let ti = templates.keyed.get(&dentry_key(e.offset)).ok_or_else(|| {
                    crate::Error::Other("a directory of the base image has no record".into())
                })?;
                copies.push((*ti as u32, rec));
                continue;
            }
            for (name, e) in &dir.entries {
                let Some(n) = t.nodes.get(e.idx as usize).filter(|n| n.live) else {
                    continue;
                };
                let (r, s) = self.record_for(&templates, e.idx, n, name, e.dentry, rec);
                let me = records.len() as u32;
                records.push(r);
                streams.push(s);
                *names.entry(e.idx as u64).or_insert(0) += 1;
                if n.dir.is_some() {
                    queue.push((e.idx, me));
                }
            }
        }
        for w in warnings {
            log::warn!("{w}");
        }
        // Link groups: files with several names share a non-zero group id.
        // The record's link_group holds the key of `names` until here.
        for r in records.iter_mut().skip(1) {
            let key = r.link_group;
            let linked = key != NO_GROUP
                && !r.is_dir()
                && !r.is_reparse()
                && names.get(&key).copied().unwrap_or(0) > 1;
            r.link_group = if linked { key + 1 } else { 0 };
        }
        records[0].link_group = 0;
        // Descriptors set in the mount join the image's table, only those
        // still used, each once (they were deduplicated when set).
        let base = t.security.len();
        let mut security = t.security.clone();
        let mut added: HashMap<i32, i32> = HashMap::new();
        for r in records.iter_mut() {
            if usize::try_from(r.security_id).is_ok_and(|i| i >= base) {
                r.security_id = match added.get(&r.security_id) {
                    Some(&id) => id,
                    None => match t.security(r.security_id) {
                        Some(sd) => {
                            let id = i32::try_from(security.len()).map_err(|_| {
                                crate::Error::Other("too many security descriptors".into())
                            })?;
                            security.push(sd.to_vec());
                            added.insert(r.security_id, id);
                            id
                        }
                        None => -1,
                    },
                };
            }
        }
        Ok(NewImage {
            security,
            records,
            streams,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn record_for(
        &self,
        templates: &Templates<'_>,
        idx: u32,
        n: &Node,
        name: &str,
        dentry: u32,
        parent_rec: u32,
    ) -> (DentryRecord, EntryStreams) {
        // Template: this name's own dentry, else another dentry of the same
        // base inode (tagged items, object ID) without its short name.
        let own = templates.get(dentry);
        let other = templates.get(n.base);
        let mut r = match (own, other) {
            (Some(r), _) => r.clone(),
            (None, Some(r)) => DentryRecord {
                short_name: String::new(),
                ..r.clone()
            },
            (None, None) => DentryRecord {
                parent: 0,
                offset: 0,
                name: String::new(),
                short_name: String::new(),
                attributes: 0,
                security_id: -1,
                creation_time: 0,
                last_access_time: 0,
                last_write_time: 0,
                hash: ZERO_HASH,
                reparse_tag: 0,
                rp_flags: 0,
                link_group: 0,
                streams: Vec::new(),
                tagged: Vec::new(),
            },
        };
        r.parent = parent_rec;
        r.offset = 0;
        r.name = name.to_string();
        r.attributes = n.meta.attributes;
        r.security_id = n.meta.security_id;
        r.creation_time = n.meta.creation_time;
        r.last_access_time = n.meta.last_access_time;
        r.last_write_time = n.meta.last_write_time;
        r.reparse_tag = n.reparse_tag;
        r.rp_flags = n.rp_flags;
        r.link_group = idx as u64;
        r.hash = ZERO_HASH;
        r.streams.clear();
        let base_unix = (n.base != NONE).then(|| n.extra.as_ref().and_then(|x| x.unix));
        if base_unix.is_none_or(|u| n.meta.unix != u) {
            r.tagged.retain(|(k, _)| *k != tag::UNIX_DATA);
            if let Some(u) = n.meta.unix {
                let mut v = Vec::with_capacity(16);
                for x in [u.uid, u.gid, u.mode, u.rdev] {
                    v.extend_from_slice(&x.to_le_bytes());
                }
                r.tagged.push((tag::UNIX_DATA, v));
            }
        }
        let s = EntryStreams {
            data: if n.dir.is_some() {
                None
            } else {
                n.data.as_ref().map(Data::to_stream_data)
            },
            reparse: if r.is_reparse() {
                n.reparse.as_ref().map(Data::to_stream_data)
            } else {
                None
            },
            named: n
                .named
                .iter()
                .map(|(k, d)| (k.clone(), d.to_stream_data()))
                .collect(),
        };
        // A directory that is a reparse point keeps a data stream only if it had one.
        let s = if n.dir.is_some() && n.data.is_some() {
            EntryStreams {
                data: n.data.as_ref().map(Data::to_stream_data),
                ..s
            }
        } else {
            s
        };
        (r, s)
    }

    /// After a commit wrote image `index` of the reopened `wim`: switch the
    /// overlay's base to it and clear the staging. Inode numbers stay; each
    /// name is matched to the new image by path, and its streams become
    /// references to the committed blobs. Open-but-unlinked files keep
    /// their staged data until released. Call while still frozen.
    pub fn after_commit(
        &self,
        _frozen: &Frozen<'_>,
        wim: Arc<Wim>,
        index: u32,
    ) -> Result<(), StagingError> {
        let cannot = |e: &dyn std::fmt::Display| {
            StagingError::Invalid(format!("cannot load committed image: {e}"))
        };
        let image = Arc::new(LazyImage::open(wim.clone(), index).map_err(|e| cannot(&e))?);
        let mut t = self.tree.write();
        let mut js = self.js.lock();
        // Walk both trees by name (the directories the tree has loaded; one
        // it has not is unchanged, and loads from the new image later).
        let mut mapped = vec![false; t.nodes.len()];
        let mut of = vec![NONE; t.nodes.len()];
        let mut by_num = HashMap::new();
        let mut claimed: HashMap<u64, u32> = HashMap::new();
        let mut by_lazy = HashMap::new();
        let mut stack: Vec<(u32, Arc<lazy::Entry>)> = vec![(0, image.root().clone())];
        while let Some((idx, e)) = stack.pop() {
            let key = dentry_key(e.offset);
            by_num.insert(key, idx);
            if !mapped[idx as usize] {
                mapped[idx as usize] = true;
                // Two inodes of the mount stored as one file (never made
                // by our commit) cannot both have its number.
                match claimed.insert(e.no, idx) {
                    Some(other) if other != idx => log::warn!(
                        "after the commit, inodes {} and {} are one file of the committed image; \
                         changes to the second are not journaled",
                        other + 1,
                        idx + 1
                    ),
                    _ => of[idx as usize] = key,
                }
                if e.is_linked() {
                    by_lazy.insert(e.no, idx);
                }
                let inode = &e.inode;
                let n = &mut t.nodes[idx as usize];
                n.base = key;
                n.extra = BaseExtra::of(&e);
                // Descriptors added in the mount have their committed ids.
                n.meta.security_id = inode.security_id;
                for s in &inode.streams {
                    if !s.name.is_empty() {
                        if let Some(x) = n.named.iter_mut().find(|(k, _)| *k == s.name) {
                            x.1 = Data::from_stream(s);
                        }
                    } else if s.kind == StreamKind::Reparse {
                        n.reparse = Some(Data::from_stream(s));
                    } else if n.dir.is_none() {
                        n.data = Some(Data::from_stream(s));
                    }
                }
                if n.dir.is_none() && inode.data().is_none() && n.link.is_none() {
                    n.data = Some(Data::Base {
                        hash: ZERO_HASH,
                        size: 0,
                        blob: None,
                    });
                }
            }
            if let Some(dir) = t.nodes[idx as usize].dir.as_mut() {
                if dir.unloaded.is_some() {
                    dir.unloaded = Some(e.clone());
                    continue;
                }
            }
            let kids: Vec<(String, u32)> = match &t.nodes[idx as usize].dir {
                Some(dir) if !dir.entries.is_empty() => dir
                    .entries
                    .iter()
                    .map(|(k, e)| (k.clone(), e.idx))
                    .collect(),
                _ => continue,
            };
            let listed = image.children(&e).map_err(|e| cannot(&e))?;
            for (name, cidx) in kids {
                if let Some(c) = listed.child(&name) {
                    if let Some(dir) = t.nodes[idx as usize].dir.as_mut() {
                        if let Some(e) = dir.entries.get_mut(&name) {
                            e.dentry = dentry_key(c.offset);
                        }
                    }
                    stack.push((cidx, c.clone()));
                }
            }
        }
        // Drop staged streams that are now in the WIM.
        let mut keep = HashMap::new();
        for (i, n) in t.nodes.iter().enumerate() {
            if let Some(Data::Staged(s)) = &n.data {
                if n.live && !mapped[i] {
                    keep.insert(s.id, s.clone());
                }
            }
        }
        t.streams = keep;
        t.dead_streams.clear();
        // Nodes not in the commit (open but unlinked) lose descriptors
        // that existed only in the mount's table.
        let base = t.security.len();
        for (i, n) in t.nodes.iter_mut().enumerate() {
            if !mapped[i] && usize::try_from(n.meta.security_id).is_ok_and(|i| i >= base) {
                n.meta.security_id = -1;
            }
        }
        t.new_security.clear();
        // Every staged stream of an unjournaled inode (kept until its
        // release, or left over from before the commit).
        let mut unjournaled = std::collections::HashSet::new();
        for (_, n) in t.nodes.iter().enumerate().filter(|(i, _)| of[*i] == NONE) {
            for d in n.data.iter().chain(n.named.iter().map(|(_, d)| d)) {
                if let Data::Staged(s) = d {
                    unjournaled.insert(s.id);
                }
            }
        }
        // From now on the journal numbers inodes by the committed image's
        // dentries (what a resume finds): see `JournalNumbers`.
        t.jn = JournalNumbers {
            of,
            by_num,
            next: JournalNumbers::first_new(&image),
            streams: unjournaled,
        };
        t.wim = wim.clone();
        t.index = index;
        t.security = image.security_table().to_vec();
        // Directories not loaded yet decode from the committed image.
        t.lazy = image;
        t.by_lazy = by_lazy;
        t.forget_decoded();
        remove_unreferenced(self.area.dir(), &t.streams);
        if !t.streams.values().any(|s| s.is_packed()) {
            self.area
                .reset_pack()
                .map_err(io_at(self.area.dir().path()))?;
        }
        js.pending = Pending::default();
        js.journal = Journal::create(&self.dir, JOURNAL).map_err(io_at(&self.dir.join(JOURNAL)))?;
        write_identity(&self.dir, &Identity::of(&wim, index))?;
        clear_landing(&self.dir);
        Ok(())
    }

    /// Record, durably, what the commit in progress will make the WIM say
    /// (called just before its header is written). Until the staging is
    /// reset, this tells the next mount whether a commit interrupted at
    /// that point landed: see [`Overlay::open`].
    pub fn note_landing(&self, l: &Landing) -> Result<(), StagingError> {
        let rec = LandingRecord {
            image: l.image,
            metadata_sha1: hex(&l.metadata_sha1),
            blob_table_offset: l.blob_table.offset,
            blob_table_size: l.blob_table.size_in_wim,
        };
        let body =
            serde_json::to_vec_pretty(&rec).map_err(|e| StagingError::Invalid(e.to_string()))?;
        write_synced(&self.dir, LANDING, &body)
    }

    /// The commit failed and the WIM was put back: forget its landing.
    pub fn clear_landing(&self) {
        clear_landing(&self.dir);
    }
}

/// File in the staging naming the commit in progress.
const LANDING: &str = "commit.json";

/// What a commit in progress will make the WIM say.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct LandingRecord {
    image: u32,
    metadata_sha1: String,
    blob_table_offset: u64,
    blob_table_size: u64,
}

impl LandingRecord {
    /// Does `wim` show this commit landed?
    fn landed_in(&self, wim: &Wim) -> bool {
        wim.header.blob_table.offset == self.blob_table_offset
            && wim.header.blob_table.size_in_wim == self.blob_table_size
            && wim
                .metadata
                .get((self.image as usize).wrapping_sub(1))
                .is_some_and(|b| hex(&b.hash) == self.metadata_sha1)
    }
}

/// If the staging at `dir` records a commit that `wim` shows landed, the
/// image it landed as: the staging's changes are in the WIM already.
pub fn landed_commit(dir: &Path, wim: &Wim) -> Option<u32> {
    read_json::<LandingRecord>(&PrivateDir::open(dir).ok()?, LANDING)
        .filter(|l| l.landed_in(wim))
        .map(|l| l.image)
}

fn clear_landing(dir: &PrivateDir) {
    if let Err(e) = dir.remove_file(LANDING) {
        log::warn!("cannot remove {}: {e}", dir.join(LANDING).display())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Windows metadata of a node, for the `system.ntfs_*` xattrs.
pub struct WinMeta {
    pub attributes: u32,
    pub creation_time: u64,
    pub security: Option<Vec<u8>>,
    pub reparse: Option<(u32, Option<Data>)>,
    pub short_name: Option<String>,
    pub xattrs: Option<(u32, Vec<u8>)>,
}

/// Keys of link groups copied from unvisited directories start here
/// (above every tree inode index); [`NO_GROUP`] marks a copied record in
/// none.
const COPIED_GROUP: u64 = 1 << 33;
const NO_GROUP: u64 = u64::MAX;

/// Each base hard-link group with a live file in the tree, by the group
/// id stored in the base; `None` if one group is two files of the tree.
fn base_groups(t: &Tree, templates: &Templates<'_>) -> Option<HashMap<u64, u32>> {
    let mut out = HashMap::new();
    for (i, n) in t.nodes.iter().enumerate() {
        if !n.live || n.dir.is_some() {
            continue;
        }
        let Some(b) = templates.get(n.base) else {
            continue;
        };
        if b.link_group == 0 || b.is_dir() || b.is_reparse() {
            continue;
        }
        match out.insert(b.link_group, i as u32) {
            Some(other) if other != i as u32 => return None,
            _ => {}
        }
    }
    Some(out)
}

/// The streams of a base record copied as it is (every one a blob of the
/// base, or empty).
fn copied_streams(r: &DentryRecord, warnings: &mut Vec<String>) -> EntryStreams {
    let roles = crate::image::StreamRoles::of(r, warnings);
    let sd = |h: Sha1| {
        if h == ZERO_HASH {
            StreamData::Empty
        } else {
            StreamData::Blob(h)
        }
    };
    EntryStreams {
        data: if r.is_dir() && !r.is_reparse() {
            None
        } else {
            Some(roles.data.map_or(StreamData::Empty, sd))
        },
        reparse: r
            .is_reparse()
            .then(|| roles.reparse.map_or(StreamData::Empty, sd)),
        named: roles.named.into_iter().map(|(k, h)| (k, sd(h))).collect(),
    }
}

/// The base image's dentry records, by [`dentry_key`]: what a commit
/// starts each name's record from.
struct Templates<'a> {
    records: &'a [DentryRecord],
    keyed: &'a HashMap<u32, usize>,
}

impl Templates<'_> {
    fn get(&self, key: u32) -> Option<&DentryRecord> {
        if key == NONE {
            return None;
        }
        self.records.get(*self.keyed.get(&key)?)
    }
}

fn idx_of(ino: u64) -> VfsResult<u32> {
    ino.checked_sub(1)
        .and_then(|i| u32::try_from(i).ok())
        .ok_or(VfsError::NotFound)
}

fn write_identity(dir: &PrivateDir, id: &Identity) -> Result<(), StagingError> {
    let body = serde_json::to_vec_pretty(id).map_err(|e| StagingError::Invalid(e.to_string()))?;
    write_synced(dir, IDENTITY, &body)
}

/// Replace `dir/name` with `body` atomically and durably. The temporary
/// file is created afresh (whatever was under its name is unlinked, not
/// followed), 0600.
fn write_synced(dir: &PrivateDir, name: &str, body: &[u8]) -> Result<(), StagingError> {
    let tmp = format!("{name}.tmp");
    let write = || -> io::Result<()> {
        use std::io::Write;
        dir.remove_file(&tmp)?;
        let mut f = dir.open_file(&tmp, Access::CreateNew)?;
        f.write_all(body)?;
        f.sync_all()?;
        dir.rename(&tmp, name)?;
        dir.sync()
    };
    write().map_err(io_at(&dir.join(name)))
}

/// Delete staging files that no live stream uses.
fn remove_unreferenced(data: &PrivateDir, streams: &HashMap<u64, Arc<Staged>>) {
    let Ok(names) = data.names() else {
        return;
    };
    for n in names {
        let keep = n == stage::PACK
            || n.to_str()
                .and_then(|s| s.parse::<u64>().ok())
                .is_some_and(|id| streams.contains_key(&id));
        if !keep {
            let _ = data.remove_file(&n);
        }
    }
}

/// Before a replay: records name base inodes by any of their dentries, so
/// every directory is loaded. One that cannot be read stops the resume
/// (the staging is left as it is: nothing of it is dropped).
fn load_for_replay(
    tree: &mut Tree,
    out: &journal::ReadOutcome,
    dir: &Path,
) -> Result<(), StagingError> {
    if out.records.is_empty() {
        return Ok(());
    }
    tree.load_all().map_err(|e| {
        StagingError::Invalid(format!(
            "cannot resume {}: the image's directories could not all be read ({e})",
            dir.display()
        ))
    })
}

/// Apply a journal's records to `tree` (replay). A record that does not
/// apply ends the replay: it and the later ones are dropped, with a
/// warning, and the journal length to cut back to is returned. Inodes left
/// without names are freed.
fn replay(
    tree: &mut Tree,
    out: &journal::ReadOutcome,
    ctx: &Ctx,
    status: &mut StagingStatus,
) -> Option<u64> {
    status.torn_bytes = out.torn_bytes;
    if out.torn_bytes > 0 {
        status.warnings.push(format!(
            "dropped {} bytes of an unfinished journal record (changes not yet synced when the mount stopped)",
            out.torn_bytes
        ));
    }
    let mut applied = 0;
    let mut cut = None;
    for (i, r) in out.records.iter().enumerate() {
        let applies = match tree.replayed(r) {
            Some(r) => tree.apply(&r, ctx),
            None => Err(VfsError::Invalid),
        };
        if let Err(e) = applies {
            status.warnings.push(format!(
                "journal record {} of {} could not be applied ({e}); it and later ones are dropped",
                i + 1,
                out.records.len()
            ));
            cut = Some(
                out.ends
                    .get(i.wrapping_sub(1))
                    .copied()
                    .unwrap_or(journal::MAGIC.len() as u64),
            );
            break;
        }
        applied += 1;
    }
    status.records = applied;
    status.resumed = applied > 0;
    for i in 0..tree.nodes.len() as u32 {
        tree.maybe_free(i);
    }
    tree.dead_streams.clear();
    cut
}

/// Compare every staged stream of the replayed `tree` with its staging
/// file ([`Staged::scan`]; with `fix`, restore the staging invariants) and
/// name in `status` each file whose data a resume cuts back.
fn scan_cut(tree: &Tree, fix: bool, status: &mut StagingStatus) -> io::Result<()> {
    let mut cuts = Vec::new();
    for (i, n) in tree.nodes.iter().enumerate() {
        if let (true, Some(Data::Staged(s))) = (n.live, &n.data) {
            if let Some(c) = s.scan(fix)? {
                cuts.push((i as u32, None, c));
            }
        }
        for (name, d) in n.named.iter().filter(|_| n.live) {
            if let Data::Staged(s) = d {
                if let Some(c) = s.scan(fix)? {
                    cuts.push((i as u32, Some(name.as_str()), c));
                }
            }
        }
    }
    if cuts.is_empty() {
        return Ok(());
    }
    let paths = tree.paths_of(&cuts.iter().map(|c| c.0).collect());
    for (idx, stream, c) in cuts {
        let path = paths
            .get(&idx)
            .cloned()
            .unwrap_or_else(|| format!("(inode {})", idx + 1));
        let f = CutFile {
            path: match stream {
                Some(s) => format!("{path}:{s}"),
                None => path,
            },
            written: c.staged_len.max(c.size),
            resumed: c.size,
            reverted_blocks: c.unrecorded_blocks,
            missing_blocks: c.missing_blocks,
        };
        // Shown once, by the caller (the resume message, `recover`).
        log::info!("{}", f.describe());
        status.warnings.push(f.describe());
        status.cut.push(f);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(idx: u32) -> Entry {
        Entry { idx, dentry: NONE }
    }

    #[test]
    fn case_twins_follow_inserts_and_removes() {
        let mut d = Dir::new(0, BTreeMap::new(), 0);
        d.insert("Readme".into(), entry(1));
        assert_eq!(d.case_twin("README", None).as_deref(), Some("Readme"));
        // Replacing a name, or changing only the case of a rename's source.
        assert_eq!(d.case_twin("Readme", None), None);
        assert_eq!(d.case_twin("README", Some("Readme")), None);
        // The index, once built, follows later changes (replayed records,
        // --posix-names mounts).
        d.insert("readme".into(), entry(2));
        assert_eq!(
            d.case_twin("README", Some("Readme")).as_deref(),
            Some("readme")
        );
        d.remove("Readme");
        assert_eq!(d.case_twin("README", None).as_deref(), Some("readme"));
        d.remove("readme");
        assert_eq!(d.case_twin("README", None), None);
        d.insert("ÄB".into(), entry(3));
        assert_eq!(d.case_twin("äb", None).as_deref(), Some("ÄB"));
        assert_eq!(d.case_twin("AEB", None), None);
    }
}
