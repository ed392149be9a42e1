//! The WIM container format: header, blob table, resources (plain and
//! solid), XML, metadata and integrity table.
//!
//! [`Wim::open`] reads a WIM (and the other parts of a split set) into an
//! index of blobs by SHA-1. It knows where every blob's bytes lie; reading
//! them through a cache is the job of [`crate::cache`].

pub mod blob_table;
pub mod bytes;
pub mod header;
pub mod integrity;
pub mod metadata;
pub mod resource;
pub mod xml;

use crate::error::{Error, Result, Section};
use crate::io::{FileSource, ReadAt};
use blob_table::BlobEntry;
use bytes::hex;
use header::{flags, Compression, Header, HEADER_SIZE, SOLID_RESOURCE_MAGIC};
use rayon::prelude::*;
use resource::Resource;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest metadata, XML or blob table we will load into memory.
pub const MAX_TABLE_SIZE: u64 = 2 << 30;

pub type Sha1 = [u8; 20];
pub const ZERO_HASH: Sha1 = [0; 20];

/// Hasher for maps keyed by SHA-1: the key is already uniformly random,
/// so its first eight bytes are the hash (SipHash over 20 bytes for each of
/// a hundred thousand lookups shows up in mount time).
#[derive(Default, Clone, Copy)]
pub struct ShaHasher(u64);

impl std::hash::Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Arrays hash as a length prefix then the bytes: keep the first
        // eight key bytes (mixed with anything else written).
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
}

/// A map keyed by SHA-1.
pub type ShaMap<V> = HashMap<Sha1, V, std::hash::BuildHasherDefault<ShaHasher>>;

/// Solid resources listed one after another in the blob table; the blobs
/// after them give offsets into their concatenated uncompressed data.
#[derive(Debug)]
pub struct SolidRun {
    pub resources: Vec<Arc<Resource>>,
    /// Uncompressed start of each resource within the run.
    pub starts: Vec<u64>,
    pub total: u64,
}

/// Where a blob's bytes are.
#[derive(Debug, Clone)]
pub enum BlobLoc {
    /// The blob is the whole (non-solid) resource.
    Whole(Arc<Resource>),
    /// The blob is a range of a solid run.
    Solid { run: Arc<SolidRun>, offset: u64 },
}

/// A stored blob (a stream's content), addressed by its SHA-1.
#[derive(Debug, Clone)]
pub struct Blob {
    pub hash: Sha1,
    pub size: u64,
    pub loc: BlobLoc,
    pub refcount: u32,
    pub part: u16,
}

/// A contiguous piece of a blob inside one resource.
#[derive(Debug, Clone)]
pub struct Segment {
    pub resource: Arc<Resource>,
    /// Offset within the resource's uncompressed data.
    pub offset: u64,
    pub len: u64,
}

impl Blob {
    /// Map `[offset, offset+len)` of the blob to resource ranges.
    pub fn segments(&self, offset: u64, len: u64) -> Vec<Segment> {
        let len = len.min(self.size.saturating_sub(offset));
        if len == 0 {
            return Vec::new();
        }
        match &self.loc {
            BlobLoc::Whole(r) => vec![Segment {
                resource: r.clone(),
                offset,
                len,
            }],
            BlobLoc::Solid { run, offset: base } => {
                let mut out = Vec::new();
                let mut pos = base + offset;
                let end = pos + len;
                // First resource whose range contains pos.
                let mut i = run.starts.partition_point(|&s| s <= pos).saturating_sub(1);
                while pos < end && i < run.resources.len() {
                    let r = &run.resources[i];
                    let rs = run.starts[i];
                    let re = rs + r.uncompressed_size;
                    if pos < re {
                        let n = (end - pos).min(re - pos);
                        out.push(Segment {
                            resource: r.clone(),
                            offset: pos - rs,
                            len: n,
                        });
                        pos += n;
                    }
                    i += 1;
                }
                out
            }
        }
    }
}

/// What one blob-table entry turned into.
enum Made {
    /// Not a blob of its own (a solid resource entry, a blob in a part not
    /// given, an empty hash).
    Skip,
    Problem(String),
    Blob(Arc<Blob>),
}

/// The blob a table entry describes, with its resource.
fn make_blob(
    e: &BlobEntry,
    parts: &[Option<Arc<dyn ReadAt>>],
    run: Option<&Arc<SolidRun>>,
    solid_ok: bool,
    compression: Compression,
    chunk_size: u32,
    id: u64,
) -> Made {
    let rh = e.reshdr;
    let solid = solid_ok && rh.is_solid();
    if solid && rh.uncompressed_size == SOLID_RESOURCE_MAGIC {
        return Made::Skip;
    }
    let src = match parts
        .get((e.part_number as usize).wrapping_sub(1))
        .and_then(|p| p.as_ref())
    {
        Some(p) => p.clone(),
        // Blob lives in a part we were not given.
        None => return Made::Skip,
    };
    if e.hash == ZERO_HASH && !rh.is_metadata() {
        return Made::Skip;
    }
    let loc = if solid {
        let Some(ra) = run.cloned() else {
            return Made::Problem(format!(
                "blob {} is in an unreadable solid run",
                hex(&e.hash)
            ));
        };
        // Blobs in solid runs give their size in the size field (the
        // uncompressed-size field is 0).
        if rh
            .offset
            .checked_add(rh.size_in_wim)
            .is_none_or(|end| end > ra.total)
        {
            return Made::Problem(format!(
                "blob {} lies outside its solid resources",
                hex(&e.hash)
            ));
        }
        BlobLoc::Solid {
            run: ra,
            offset: rh.offset,
        }
    } else {
        match Resource::normal(id, src, e.part_number, rh, compression, chunk_size) {
            Ok(r) => BlobLoc::Whole(Arc::new(r)),
            Err(err) => return Made::Problem(format!("blob {}: {err}", hex(&e.hash))),
        }
    };
    Made::Blob(Arc::new(Blob {
        hash: e.hash,
        size: if solid {
            rh.size_in_wim
        } else {
            rh.uncompressed_size
        },
        loc,
        refcount: e.refcount,
        part: e.part_number,
    }))
}

/// One part file of a (possibly split) WIM.
pub struct Part {
    pub path: PathBuf,
    pub header: Header,
    pub source: Arc<dyn ReadAt>,
}

/// An opened WIM.
pub struct Wim {
    pub path: PathBuf,
    pub header: Header,
    pub parts: Vec<Part>,
    /// Raw blob-table entries of every part, in order (for `info`/`verify`).
    pub entries: Vec<(u16, BlobEntry)>,
    pub blobs: ShaMap<Arc<Blob>>,
    /// Metadata resource of each image, in image order.
    pub metadata: Vec<Arc<Blob>>,
    pub xml: Option<xml::Element>,
    pub image_info: Vec<xml::ImageInfo>,
    pub warnings: Vec<String>,
    /// Inconsistencies found while opening that reading can live with but
    /// `verify` must report (image count, unreadable XML, bad entries).
    pub problems: Vec<String>,
    pub compression: Compression,
    pub chunk_size: u32,
    /// Opened by [`Wim::open_lazy`]: the blob table, looked up (and its
    /// blobs made) on demand; `blobs` and `entries` are then empty.
    index: Option<BlobIndex>,
}

/// A blob table kept sorted by hash, its blobs made when first asked for
/// (by [`Wim::blob`]): a read-only mount looks up only the blobs of the
/// directories it visits, so opening a WIM of a hundred thousand blobs
/// costs one read and sort of its table, not a hundred thousand resources.
/// A blob-table entry waiting in a [`BlobIndex`]: the entry, its resource
/// id, its solid run, and whether its part reads solid resources.
type IndexEntry = (BlobEntry, u64, Option<Arc<SolidRun>>, bool);

/// One part's blob table kept as stored, for a [`BlobIndex`].
struct RawTable {
    bytes: Vec<u8>,
    /// Resource id of its entry 0 (entry `i` has `base + i`).
    base: u64,
    solid_ok: bool,
}

struct BlobIndex {
    /// Entries of parts with solid runs, sorted by hash, then by id (table
    /// order).
    entries: Vec<IndexEntry>,
    /// The tables of the other parts, as stored (50 bytes an entry): only
    /// the entries looked up are ever parsed.
    raw: Vec<RawTable>,
    /// `order[starts[b]..starts[b + 1]]` are the raw entries (table, index)
    /// whose hash falls in bucket `b` (its first `bits` bits), in table
    /// order: a counting sort, no comparisons, at open.
    order: Vec<(u32, u32)>,
    starts: Vec<u32>,
    bits: u32,
    /// The source of each part by part number - 1 (`None`: not given).
    sources: Vec<Option<Arc<dyn ReadAt>>>,
    compression: Compression,
    chunk_size: u32,
    /// Blobs made so far (and hashes found missing).
    made: parking_lot::Mutex<ShaMap<Option<Arc<Blob>>>>,
}

impl BlobIndex {
    fn get(&self, h: &Sha1) -> Option<Arc<Blob>> {
        if let Some(b) = self.made.lock().get(h) {
            return b.clone();
        }
        // Every entry with this hash, in table order (ids grow with it): of
        // equal hashes the first that makes a blob wins, as in the eager
        // open.
        let first = self.entries.partition_point(|(e, ..)| e.hash < *h);
        let mut same: Vec<IndexEntry> = self.entries[first..]
            .iter()
            .take_while(|(e, ..)| e.hash == *h)
            .cloned()
            .collect();
        let b = bucket(h, self.bits) as usize;
        if let (Some(&s), Some(&e)) = (self.starts.get(b), self.starts.get(b + 1)) {
            // The bucket is sorted by hash: a hostile table that puts every
            // entry in one bucket costs a binary search, not a scan.
            let slot = self.order.get(s as usize..e as usize).unwrap_or_default();
            let hash_of = |&(t, i): &(u32, u32)| raw_hash(&self.raw, t, i);
            let first = slot.partition_point(|x| hash_of(x) < Some(&h[..]));
            for &(t, i) in slot[first..]
                .iter()
                .take_while(|x| hash_of(x) == Some(&h[..]))
            {
                let Some(tab) = self.raw.get(t as usize) else {
                    continue;
                };
                let at = i as usize * blob_table::ENTRY_SIZE;
                let Some(bytes) = tab.bytes.get(at..at + blob_table::ENTRY_SIZE) else {
                    continue;
                };
                if let Ok(e) = BlobEntry::parse(bytes) {
                    same.push((e, tab.base + u64::from(i), None, tab.solid_ok));
                }
            }
        }
        same.sort_by_key(|(_, id, ..)| *id);
        let mut found = None;
        for (e, id, run, solid_ok) in &same {
            let m = make_blob(
                e,
                &self.sources,
                run.as_ref(),
                *solid_ok,
                self.compression,
                self.chunk_size,
                *id,
            );
            match m {
                Made::Skip => {}
                Made::Problem(p) => log::warn!("{p}"),
                Made::Blob(b) => {
                    found = Some(b);
                    break;
                }
            }
        }
        self.made.lock().entry(*h).or_insert(found).clone()
    }
}

/// The hash of entry `i` of raw table `t` (`None` sorts first: an entry
/// that is not there).
fn raw_hash(tables: &[RawTable], t: u32, i: u32) -> Option<&[u8]> {
    let at = i as usize * blob_table::ENTRY_SIZE;
    tables
        .get(t as usize)?
        .bytes
        .get(at + 30..at + blob_table::ENTRY_SIZE)
}

/// The bucket of a hash in a [`BlobIndex`]: its first `bits` bits.
fn bucket(h: &Sha1, bits: u32) -> u32 {
    u32::from_be_bytes([h[0], h[1], h[2], h[3]]) >> (32 - bits)
}

/// Bucket the non-metadata entries of raw tables by hash (a stable
/// counting sort, about one entry a bucket): (order, bucket starts, bits).
fn bucket_raw(tables: &[RawTable]) -> (Vec<(u32, u32)>, Vec<u32>, u32) {
    let es = blob_table::ENTRY_SIZE;
    let each = |f: &mut dyn FnMut(u32, u32, &[u8])| {
        for (t, tab) in tables.iter().enumerate() {
            for (i, e) in tab.bytes.chunks_exact(es).enumerate() {
                if e[7] & header::resflags::METADATA == 0 {
                    f(t as u32, i as u32, e);
                }
            }
        }
    };
    let mut n = 0usize;
    each(&mut |_, _, _| n += 1);
    let bits = (usize::BITS - n.leading_zeros()).clamp(4, 20);
    let key = |e: &[u8]| (u32::from_be_bytes([e[30], e[31], e[32], e[33]]) >> (32 - bits)) as usize;
    let mut starts = vec![0u32; (1 << bits) + 1];
    each(&mut |_, _, e| starts[key(e) + 1] += 1);
    for b in 1..starts.len() {
        starts[b] += starts[b - 1];
    }
    let mut next = starts.clone();
    let mut order = vec![(0u32, 0u32); n];
    each(&mut |t, i, e| {
        let slot = &mut next[key(e)];
        order[*slot as usize] = (t, i);
        *slot += 1;
    });
    // Each bucket sorted by hash (stably: equal hashes stay in table
    // order), so a lookup is a binary search even when a hostile table
    // puts every hash in one bucket. About one entry a bucket otherwise:
    // next to nothing to sort.
    for w in starts.windows(2) {
        if let Some(b) = order.get_mut(w[0] as usize..w[1] as usize) {
            if b.len() > 1 {
                b.sort_by(|x, y| raw_hash(tables, x.0, x.1).cmp(&raw_hash(tables, y.0, y.1)));
            }
        }
    }
    (order, starts, bits)
}

/// Keep a metadata resource's blob as an image (or say why not), as
/// WIMGAPI and wimlib do: an unreferenced metadata entry is not an image
/// (old WAIK WIMs have them), and one referenced more than once is invalid.
fn add_metadata(
    m: Made,
    e: &BlobEntry,
    metadata: &mut Vec<Arc<Blob>>,
    warnings: &mut Vec<String>,
    problems: &mut Vec<String>,
) {
    match m {
        Made::Skip => {}
        Made::Problem(p) => problems.push(p),
        Made::Blob(b) => match e.refcount {
            0 => warnings.push(format!(
                "ignoring unreferenced metadata resource {}",
                hex(&e.hash)
            )),
            1 => metadata.push(b),
            n => {
                problems.push(format!(
                    "metadata resource {} has reference count {n}, not 1",
                    hex(&e.hash)
                ));
                metadata.push(b);
            }
        },
    }
}

fn open_part(path: &Path) -> Result<Part> {
    let f = std::fs::File::open(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        err: e,
    })?;
    let src = FileSource::new(f).map_err(|e| Error::Io {
        path: path.display().to_string(),
        err: e,
    })?;
    part_from_source(path, Arc::new(src))
}

fn part_from_source(path: &Path, src: Arc<dyn ReadAt>) -> Result<Part> {
    let mut hb = vec![0u8; HEADER_SIZE.min(src.len() as usize)];
    src.read_exact_at(&mut hb, 0)?;
    let header = Header::parse(&hb).map_err(|e| match e {
        Error::NotWim(m) => Error::NotWim(format!("{}: {m}", path.display())),
        other => other,
    })?;
    Ok(Part {
        path: path.to_path_buf(),
        header,
        source: src,
    })
}

impl Wim {
    /// Open a WIM; `refs` are the other parts of a split set (`.swm`).
    pub fn open(path: &Path, refs: &[PathBuf]) -> Result<Wim> {
        let first = open_part(path)?;
        let others = refs
            .iter()
            .map(|r| open_part(r))
            .collect::<Result<Vec<_>>>()?;
        Self::from_parts(first, others, false)
    }

    /// Open a WIM for reading its images' files (a read-only mount): the
    /// blob table is kept sorted by hash and each blob is made when
    /// [`Wim::blob`] first asks for it, so opening costs the same small
    /// time whatever the number of blobs. `blobs` and `entries` stay empty:
    /// the verbs that list or check every blob open with [`Wim::open`].
    pub fn open_lazy(path: &Path, refs: &[PathBuf]) -> Result<Wim> {
        let first = open_part(path)?;
        let others = refs
            .iter()
            .map(|r| open_part(r))
            .collect::<Result<Vec<_>>>()?;
        Self::from_parts(first, others, true)
    }

    /// The blob whose hash is `h`, if the WIM (the parts given) has it.
    pub fn blob(&self, h: &Sha1) -> Option<Arc<Blob>> {
        match &self.index {
            Some(ix) => ix.get(h),
            None => self.blobs.get(h).cloned(),
        }
    }

    /// The compressed, non-solid blob resources of the WIM as (part,
    /// offset, hash), sorted by where they are stored: what reading ahead
    /// across files follows. A lazily opened WIM answers from its tables as
    /// stored, making no blob (they are made when the readahead asks for
    /// one by hash); a damaged entry is left out.
    pub fn stored_order(&self) -> Vec<(u16, u64, Sha1)> {
        let wanted = |e: &BlobEntry| {
            e.reshdr.is_compressed() && !e.reshdr.is_solid() && !e.reshdr.is_metadata()
        };
        let mut v: Vec<(u16, u64, Sha1)> = match &self.index {
            None => self
                .blobs
                .iter()
                .filter_map(|(h, b)| match &b.loc {
                    BlobLoc::Whole(r) if !r.is_raw() => Some((r.part, r.reshdr.offset, *h)),
                    _ => None,
                })
                .collect(),
            Some(ix) => {
                let from_raw = ix.raw.iter().flat_map(|t| {
                    t.bytes
                        .chunks_exact(blob_table::ENTRY_SIZE)
                        .filter_map(|b| BlobEntry::parse(b).ok())
                });
                let from_runs = ix.entries.iter().map(|(e, ..)| e.clone());
                from_raw
                    .chain(from_runs)
                    .filter(wanted)
                    .map(|e| (e.part_number, e.reshdr.offset, e.hash))
                    .collect()
            }
        };
        v.sort_unstable();
        v.dedup_by_key(|x| (x.0, x.1));
        v
    }

    /// Open a WIM held in memory or any other [`ReadAt`] source (tests,
    /// fuzzing).
    pub fn from_source(name: &Path, src: Arc<dyn ReadAt>) -> Result<Wim> {
        Self::from_parts(part_from_source(name, src)?, Vec::new(), false)
    }

    /// [`Wim::open_lazy`] over any [`ReadAt`] source: what a read-only
    /// mount opens, from memory (tests, the `fuzz_lazy_image` target).
    pub fn from_source_lazy(name: &Path, src: Arc<dyn ReadAt>) -> Result<Wim> {
        Self::from_parts(part_from_source(name, src)?, Vec::new(), true)
    }

    fn from_parts(first: Part, others: Vec<Part>, lazy: bool) -> Result<Wim> {
        let path = first.path.clone();
        let path = path.as_path();
        let header = first.header.clone();
        let mut warnings = Vec::new();
        let mut problems: Vec<String> = Vec::new();
        let ih = header.integrity;
        if (ih.size_in_wim == 0) != (ih.offset == 0)
            || (ih.size_in_wim == 0) != (ih.uncompressed_size == 0)
        {
            problems.push(format!(
                "integrity table entry is malformed (offset {:#x}, size {}, uncompressed size {})",
                ih.offset, ih.size_in_wim, ih.uncompressed_size
            ));
        }
        if header.flags & flags::WRITE_IN_PROGRESS != 0 {
            warnings.push(format!(
                "{}: the WRITE_IN_PROGRESS flag is set: a write to this WIM may have been interrupted",
                path.display()
            ));
        }
        let compression = header.compression()?;
        let chunk_size = header.effective_chunk_size()?;
        let total = header.total_parts as usize;
        let mut parts: Vec<Option<Part>> = (0..total).map(|_| None).collect();
        let pn = header.part_number as usize;
        parts[pn - 1] = Some(first);
        for p in others {
            let r = p.path.clone();
            if p.header.guid != header.guid {
                return Err(Error::corrupt(
                    Section::SplitSet,
                    None,
                    format!(
                        "{} is not part of the same split WIM (GUID differs)",
                        r.display()
                    ),
                ));
            }
            let i = p.header.part_number as usize;
            if i == 0 || i > total {
                return Err(Error::corrupt(
                    Section::SplitSet,
                    None,
                    format!("{}: part number {i} out of range 1..{total}", r.display()),
                ));
            }
            if parts[i - 1].is_some() {
                warnings.push(format!("{}: part {i} given twice; ignored", r.display()));
                continue;
            }
            parts[i - 1] = Some(p);
        }
        let missing: Vec<usize> = parts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_none())
            .map(|(i, _)| i + 1)
            .collect();
        if !missing.is_empty() {
            warnings.push(format!(
                "split WIM part(s) {missing:?} of {total} not given (use --ref); their blobs are unavailable"
            ));
        }
        // Read XML from the first part.
        let p0 = parts[pn - 1]
            .as_ref()
            .ok_or_else(|| Error::Internal("first part missing".into()))?;
        let xml_doc = if header.xml.size_in_wim > 0 {
            let raw = read_small(
                p0,
                &header.xml,
                compression,
                chunk_size,
                Section::Xml,
                "XML data",
            )?;
            match xml::parse(&xml::decode(&raw)) {
                Ok(x) => Some(x),
                Err(e) => {
                    warnings.push(format!("XML data unreadable: {e}"));
                    problems.push(format!("XML data unreadable: {e}"));
                    None
                }
            }
        } else {
            None
        };
        if let Some(esd) = xml_doc.as_ref().and_then(|x| x.child("ESD")) {
            if esd.child("ENCRYPTED").is_some() || esd.child("KEY").is_some() {
                return Err(Error::Unsupported(format!(
                    "{} is an encrypted ESD; its blob table and resources are encrypted. \
                     Decrypt it first (for example with esddecrypt or DISM /Export-Image)",
                    path.display()
                )));
            }
        }
        let image_info = xml_doc.as_ref().map(xml::images).unwrap_or_default();

        let mut entries = Vec::new();
        let mut blobs: ShaMap<Arc<Blob>> = ShaMap::default();
        let sources: Vec<Option<Arc<dyn ReadAt>>> = parts
            .iter()
            .map(|p| p.as_ref().map(|p| p.source.clone()))
            .collect();
        let mut lazy_entries: Vec<IndexEntry> = Vec::new();
        let mut raw_tables: Vec<RawTable> = Vec::new();
        let mut metadata = Vec::new();
        let mut next_id = 0u64;
        for part in parts.iter().flatten() {
            let h = &part.header;
            blob_table::check_size(h.blob_table.size_in_wim, part.source.len())?;
            let raw = read_small(
                part,
                &h.blob_table,
                compression,
                chunk_size,
                Section::BlobTable,
                "blob table",
            )?;
            let solid_ok = h.version == header::VERSION_SOLID;
            let n = raw.len() / blob_table::ENTRY_SIZE;
            let flags_of = |k: usize| raw[k * blob_table::ENTRY_SIZE + 7];
            if lazy && !(solid_ok && (0..n).any(|k| flags_of(k) & header::resflags::SOLID != 0)) {
                // No solid run: the table stays as stored; only its
                // metadata entries are made now.
                let base = next_id;
                next_id += n as u64;
                for k in (0..n).filter(|&k| flags_of(k) & header::resflags::METADATA != 0) {
                    let at = k * blob_table::ENTRY_SIZE;
                    let e = BlobEntry::parse(&raw[at..at + blob_table::ENTRY_SIZE])?;
                    let m = make_blob(
                        &e,
                        &sources,
                        None,
                        solid_ok,
                        compression,
                        chunk_size,
                        base + k as u64,
                    );
                    add_metadata(m, &e, &mut metadata, &mut warnings, &mut problems);
                }
                if raw.len() % blob_table::ENTRY_SIZE != 0 {
                    log::warn!(
                        "blob table size {} is not a multiple of {}; ignoring {} trailing bytes",
                        raw.len(),
                        blob_table::ENTRY_SIZE,
                        raw.len() % blob_table::ENTRY_SIZE
                    );
                }
                raw_tables.push(RawTable {
                    bytes: raw,
                    base,
                    solid_ok,
                });
                continue;
            }
            let table = blob_table::parse(&raw)?;
            // A solid run is a maximal sequence of consecutive entries with
            // the SOLID flag (ignored in version-0x10D00 WIMs). Its resource
            // entries are concatenated, in order, into one logical stream,
            // and its blob entries give offsets into that stream.
            let is_solid = |e: &BlobEntry| solid_ok && e.reshdr.is_solid();
            let mut run_of: Vec<Option<Arc<SolidRun>>> = vec![None; table.len()];
            let mut i = 0;
            while i < table.len() {
                if !is_solid(&table[i]) {
                    i += 1;
                    continue;
                }
                let mut j = i;
                while j < table.len() && is_solid(&table[j]) {
                    j += 1;
                }
                let mut r = SolidRun {
                    resources: Vec::new(),
                    starts: Vec::new(),
                    total: 0,
                };
                let mut ok = true;
                for e in &table[i..j] {
                    if e.reshdr.uncompressed_size != SOLID_RESOURCE_MAGIC {
                        continue;
                    }
                    let Some(p) = parts
                        .get((e.part_number as usize).wrapping_sub(1))
                        .and_then(|p| p.as_ref())
                    else {
                        ok = false;
                        break;
                    };
                    match Resource::solid(next_id, p.source.clone(), e.part_number, e.reshdr) {
                        Ok(res) => {
                            next_id += 1;
                            r.starts.push(r.total);
                            r.total = r.total.saturating_add(res.uncompressed_size);
                            r.resources.push(Arc::new(res));
                        }
                        Err(err) => {
                            problems
                                .push(format!("solid resource at {:#x}: {err}", e.reshdr.offset));
                            ok = false;
                        }
                    }
                }
                if ok && !r.resources.is_empty() {
                    let arc = Arc::new(r);
                    for slot in &mut run_of[i..j] {
                        *slot = Some(arc.clone());
                    }
                }
                i = j;
            }
            // Resources and blobs are made in parallel (a /usr-sized image
            // has a hundred thousand); only the map inserts are serial.
            // Resource ids: solid ones were numbered above, the others take
            // `base + entry index`, unique without coordination.
            let base = next_id;
            next_id += table.len() as u64;
            if lazy {
                // Only the metadata resources are made now; the rest wait
                // in the index for `Wim::blob`.
                for (idx, e) in table.into_iter().enumerate() {
                    let id = base + idx as u64;
                    if !e.reshdr.is_metadata() {
                        lazy_entries.push((e, id, run_of[idx].take(), solid_ok));
                        continue;
                    }
                    let m = make_blob(
                        &e,
                        &sources,
                        run_of[idx].as_ref(),
                        solid_ok,
                        compression,
                        chunk_size,
                        id,
                    );
                    add_metadata(m, &e, &mut metadata, &mut warnings, &mut problems);
                }
                continue;
            }
            let make = |(idx, e): (usize, &BlobEntry)| {
                make_blob(
                    e,
                    &sources,
                    run_of[idx].as_ref(),
                    solid_ok,
                    compression,
                    chunk_size,
                    base + idx as u64,
                )
            };
            // A small table is not worth waking the thread pool (it is
            // much of a small image's mount time).
            let made: Vec<Made> = if table.len() < crate::PARALLEL_MIN {
                table.iter().enumerate().map(make).collect()
            } else {
                table
                    .par_iter()
                    .enumerate()
                    .with_min_len(1024)
                    .map(make)
                    .collect()
            };
            blobs.reserve(table.len());
            for (e, m) in table.iter().zip(made) {
                let blob = match m {
                    Made::Skip => continue,
                    Made::Problem(p) => {
                        problems.push(p);
                        continue;
                    }
                    Made::Blob(b) => b,
                };
                if e.reshdr.is_metadata() {
                    // As WIMGAPI and wimlib do: an unreferenced metadata
                    // entry is not an image (old WAIK WIMs have them), and
                    // one referenced more than once is invalid.
                    match e.refcount {
                        0 => warnings.push(format!(
                            "ignoring unreferenced metadata resource {}",
                            hex(&e.hash)
                        )),
                        1 => metadata.push(blob),
                        n => {
                            problems.push(format!(
                                "metadata resource {} has reference count {n}, not 1",
                                hex(&e.hash)
                            ));
                            metadata.push(blob);
                        }
                    }
                } else {
                    blobs.entry(e.hash).or_insert(blob);
                }
            }
            entries.extend(table.into_iter().map(|e| (h.part_number, e)));
        }
        // Metadata lives in part 1 only; a later part alone has none.
        if header.part_number == 1 && metadata.len() != header.image_count as usize {
            let msg = format!(
                "header says {} image(s) but the blob table has {} metadata resource(s)",
                header.image_count,
                metadata.len()
            );
            warnings.push(msg.clone());
            problems.push(msg);
            metadata.truncate(header.image_count as usize);
        }
        let parts: Vec<Part> = parts.into_iter().flatten().collect();
        let index = lazy.then(|| {
            lazy_entries.sort_by(|a, b| a.0.hash.cmp(&b.0.hash).then(a.1.cmp(&b.1)));
            let (order, starts, bits) = bucket_raw(&raw_tables);
            BlobIndex {
                entries: lazy_entries,
                raw: raw_tables,
                order,
                starts,
                bits,
                sources,
                compression,
                chunk_size,
                made: parking_lot::Mutex::new(ShaMap::default()),
            }
        });
        Ok(Wim {
            path: path.to_path_buf(),
            header,
            parts,
            entries,
            blobs,
            metadata,
            xml: xml_doc,
            image_info,
            warnings,
            problems,
            compression,
            chunk_size,
            index,
        })
    }

    pub fn image_count(&self) -> u32 {
        self.metadata.len() as u32
    }

    /// Resolve a user's image argument: a 1-based index or an image name.
    pub fn resolve_image(&self, spec: &str) -> Result<u32> {
        let n = self.image_count();
        if let Ok(i) = spec.trim().parse::<u32>() {
            if i >= 1 && i <= n {
                return Ok(i);
            }
            return Err(Error::NoSuchImage(format!(
                "{spec} (this WIM has {n} image(s))"
            )));
        }
        for info in &self.image_info {
            if info.name.as_deref() == Some(spec) && info.index >= 1 && info.index <= n {
                return Ok(info.index);
            }
        }
        Err(Error::NoSuchImage(format!(
            "no image named {spec:?} (this WIM has {n} image(s))"
        )))
    }

    /// Information about image `index` (1-based), if the XML has it.
    pub fn info(&self, index: u32) -> Option<&xml::ImageInfo> {
        self.image_info.iter().find(|i| i.index == index)
    }

    /// The raw metadata resource bytes of image `index` (1-based).
    pub fn read_metadata(&self, index: u32) -> Result<Vec<u8>> {
        let b = self
            .metadata
            .get((index as usize).wrapping_sub(1))
            .ok_or_else(|| Error::NoSuchImage(index.to_string()))?;
        if b.size > MAX_TABLE_SIZE {
            return Err(Error::corrupt(
                Section::Metadata,
                None,
                format!("metadata resource of image {index} claims {} bytes", b.size),
            ));
        }
        let mut out = Vec::with_capacity(b.size as usize);
        for s in b.segments(0, b.size) {
            if s.offset == 0 && s.len == s.resource.uncompressed_size {
                out.extend_from_slice(&s.resource.read_all()?);
            } else {
                // Metadata in a solid resource: read the covering chunks.
                let cs = s.resource.chunk_size as u64;
                let first = s.offset / cs;
                let last = (s.offset + s.len - 1) / cs;
                for c in first..=last {
                    let data = s.resource.read_chunk(c)?;
                    let cstart = c * cs;
                    let a = s.offset.max(cstart) - cstart;
                    let e = (s.offset + s.len).min(cstart + data.len() as u64) - cstart;
                    out.extend_from_slice(data.get(a as usize..e as usize).unwrap_or_default());
                }
            }
        }
        if out.len() as u64 != b.size {
            return Err(Error::corrupt(
                Section::Metadata,
                None,
                format!("metadata resource of image {index} is short"),
            ));
        }
        Ok(out)
    }

    pub fn part_source(&self, part: u16) -> Option<&Arc<dyn ReadAt>> {
        self.parts
            .iter()
            .find(|p| p.header.part_number == part)
            .map(|p| &p.source)
    }
}

/// Read a small table-like resource (XML, blob table) fully.
fn read_small(
    part: &Part,
    rh: &header::ResHdr,
    comp: Compression,
    cs: u32,
    section: Section,
    what: &str,
) -> Result<Vec<u8>> {
    if rh.uncompressed_size > MAX_TABLE_SIZE {
        return Err(Error::corrupt(
            section,
            Some(rh.offset),
            format!("{what} claims {} bytes", rh.uncompressed_size),
        ));
    }
    rh.check_bounds(part.source.len(), section, what)?;
    let res = Resource::normal(
        u64::MAX,
        part.source.clone(),
        part.header.part_number,
        *rh,
        comp,
        cs,
    )?;
    res.read_all().map_err(|e| Error::Within {
        section,
        what: what.to_string(),
        source: Box::new(e),
    })
}

/// Callers branch on [`Error::section`] and the variant, not on message
/// text: each damaged structure must say which section it is.
#[cfg(test)]
mod error_tests {
    use super::header::{ResHdr, MAGIC, VERSION_DEFAULT};
    use super::*;

    /// A valid, empty, uncompressed one-part header: no images, no tables.
    fn header_bytes() -> Vec<u8> {
        let mut b = vec![0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        b[12..16].copy_from_slice(&VERSION_DEFAULT.to_le_bytes());
        b[40..42].copy_from_slice(&1u16.to_le_bytes());
        b[42..44].copy_from_slice(&1u16.to_le_bytes());
        b
    }

    fn section_of<T>(r: Result<T>) -> (Option<Section>, Error) {
        let e = r.err().unwrap();
        (e.section(), e)
    }

    #[test]
    fn damaged_headers_are_corrupt_header() {
        assert!(Header::parse(&header_bytes()).is_ok());
        let mut b = header_bytes();
        b[8] = 200;
        let (s, e) = section_of(Header::parse(&b));
        assert_eq!(s, Some(Section::Header));
        assert!(
            matches!(
                e,
                Error::Corrupt {
                    offset: Some(8),
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "invalid WIM: header size is 200, expected 208"
        );
        let mut b = header_bytes();
        b[40] = 2;
        let (s, e) = section_of(Header::parse(&b));
        assert_eq!(s, Some(Section::Header));
        assert!(e.to_string().contains("bad part number 2/1"), "{e}");
        // Too short to be a header at all, or not one: not a WIM.
        assert!(matches!(Header::parse(&b[..100]), Err(Error::NotWim(_))));
        // A version we do not read: unsupported, not damage.
        let mut b = header_bytes();
        b[12] = 7;
        let (s, e) = section_of(Header::parse(&b));
        assert_eq!(s, None);
        assert!(matches!(e, Error::Unsupported(_)), "{e:?}");
        // A resource header cut short.
        let (s, e) = section_of(ResHdr::parse(&[0u8; 10]));
        assert_eq!(s, Some(Section::Header));
        assert!(e.to_string().contains("resource header truncated"), "{e}");
    }

    #[test]
    fn a_resource_past_the_end_names_its_section_and_offset() {
        let rh = ResHdr {
            size_in_wim: 100,
            flags: 0,
            offset: 0x50,
            uncompressed_size: 100,
        };
        let e = rh.check_bounds(120, Section::Xml, "XML data").unwrap_err();
        assert!(
            matches!(
                e,
                Error::Corrupt {
                    section: Section::Xml,
                    offset: Some(0x50),
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn tables_and_xml_name_their_sections() {
        let (s, _) = section_of(blob_table::check_size(1000, 10));
        assert_eq!(s, Some(Section::BlobTable));
        let (s, _) = section_of(integrity::parse(&[1, 2, 3]));
        assert_eq!(s, Some(Section::Integrity));
        let (s, e) = section_of(xml::parse("<WIM><IMAGE></WIM>"));
        assert_eq!(s, Some(Section::Xml));
        assert!(e.to_string().starts_with("invalid WIM: XML data: "), "{e}");
        let (s, _) = section_of(metadata::parse(&[0u8; 4]));
        assert_eq!(s, Some(Section::Metadata));
    }

    #[test]
    fn wrappers_keep_the_section_and_the_source() {
        use std::error::Error as _;
        let chunk = || Error::corrupt(Section::Resource, Some(0x40), "raw chunk 0 has wrong size");
        // Damage met while reading the XML is damage in the XML, and the
        // resource's own error stays reachable as the source.
        let e = Error::Within {
            section: Section::Xml,
            what: "XML data".into(),
            source: Box::new(chunk()),
        };
        assert_eq!(e.section(), Some(Section::Xml));
        assert_eq!(
            e.to_string(),
            "invalid WIM: XML data: invalid WIM: raw chunk 0 has wrong size"
        );
        assert!(e
            .source()
            .is_some_and(|s| s.to_string().contains("raw chunk 0")));
        // An I/O failure while reading it is not damage.
        let e = Error::Within {
            section: Section::Xml,
            what: "XML data".into(),
            source: Box::new(Error::RawIo(std::io::ErrorKind::UnexpectedEof.into())),
        };
        assert_eq!(e.section(), None);
        // One failure shared by several blobs keeps its variant and text.
        let shared = Arc::new(chunk());
        let e = Error::Blob {
            hash: "ab".into(),
            source: Box::new(Error::Shared(shared.clone())),
        };
        assert_eq!(e.section(), Some(Section::Resource));
        assert_eq!(e.to_string(), format!("blob ab: {shared}"));
        assert_eq!(Error::Shared(shared).section(), Some(Section::Resource));
        // The macro the upper layers still use builds the typed variant.
        let e = crate::invalid!("x {}", 1);
        assert_eq!(e.section(), Some(Section::Unknown));
        assert_eq!(e.to_string(), "invalid WIM: x 1");
    }

    #[test]
    fn a_missing_image_is_no_such_image() {
        let mut b = header_bytes();
        // Leave room for nothing but the header: no tables, no images.
        b.truncate(HEADER_SIZE);
        let w = Wim::from_source(Path::new("mem.wim"), Arc::new(b)).unwrap();
        assert!(matches!(w.resolve_image("1"), Err(Error::NoSuchImage(_))));
        assert!(matches!(w.resolve_image("Pro"), Err(Error::NoSuchImage(_))));
        assert!(matches!(w.read_metadata(1), Err(Error::NoSuchImage(_))));
    }

    #[test]
    fn a_bad_chunk_table_is_the_same_typed_error_every_time() {
        // A solid resource of two 4 KiB XPRESS chunks whose first chunk
        // claims more stored bytes than it has data; solid resources keep
        // their table, so the failure is cached: ask twice.
        let mut solid = vec![0u8; 16];
        solid[0..8].copy_from_slice(&8192u64.to_le_bytes());
        solid[8..12].copy_from_slice(&4096u32.to_le_bytes());
        solid[12..16].copy_from_slice(&1u32.to_le_bytes());
        solid.extend_from_slice(&50_000u32.to_le_bytes());
        solid.extend_from_slice(&50_000u32.to_le_bytes());
        solid.extend_from_slice(&[0u8; 64]);
        let srh = ResHdr {
            size_in_wim: solid.len() as u64,
            flags: header::resflags::COMPRESSED | header::resflags::SOLID,
            offset: 0,
            uncompressed_size: 8192,
        };
        let r = Resource::solid(1, Arc::new(solid), 1, srh).unwrap();
        for _ in 0..2 {
            let e = r.chunk_table().err().unwrap();
            assert_eq!(e.section(), Some(Section::Resource), "{e:?}");
            assert!(
                e.to_string()
                    .starts_with("invalid WIM: resource at 0x0: chunk 0"),
                "{e}"
            );
        }
    }
}

#[cfg(test)]
mod index_tests {
    use super::*;

    /// Raw tables whose entries all fall in one bucket, stored in
    /// descending hash order with one hash twice: the bucket comes out
    /// sorted by hash (a lookup is a binary search, not a scan of a
    /// hostile bucket), equal hashes in table order.
    #[test]
    fn a_crowded_bucket_is_sorted_by_hash_in_table_order() {
        let entry = |last: u8, size: u64| {
            let mut hash = [0u8; 20];
            hash[19] = last;
            let e = BlobEntry {
                reshdr: header::ResHdr {
                    size_in_wim: size,
                    flags: 0,
                    offset: 0,
                    uncompressed_size: size,
                },
                part_number: 1,
                refcount: 1,
                hash,
            };
            let mut b = Vec::new();
            e.write(&mut b);
            b
        };
        let mut t0 = Vec::new();
        for last in (1..=200u8).rev() {
            t0.extend(entry(last, 1));
        }
        let mut t1 = entry(7, 2);
        t1.extend(entry(3, 3));
        let tables = [
            RawTable {
                bytes: t0,
                base: 0,
                solid_ok: false,
            },
            RawTable {
                bytes: t1,
                base: 200,
                solid_ok: false,
            },
        ];
        let (order, starts, bits) = bucket_raw(&tables);
        assert_eq!(bits, 8);
        assert_eq!((starts[0], starts[1]), (0, 202));
        let hashes: Vec<u8> = order
            .iter()
            .map(|&(t, i)| raw_hash(&tables, t, i).unwrap()[19])
            .collect();
        let mut want: Vec<u8> = (1..=200).collect();
        want.insert(3, 3);
        want.insert(8, 7);
        assert_eq!(hashes, want);
        // Of equal hashes, table 0's entry (stored first) comes first.
        let sevens: Vec<(u32, u32)> = order
            .iter()
            .copied()
            .filter(|&(t, i)| raw_hash(&tables, t, i).unwrap()[19] == 7)
            .collect();
        assert_eq!(sevens, [(0, 193), (1, 0)]);
    }
}
