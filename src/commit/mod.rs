//! Commit: turn a new image tree into bytes appended to the WIM.
//!
//! Only blobs the WIM lacks are stored (SHA-1 single-instance); existing
//! blobs are referenced, never re-read. The write is crash-safe: the header
//! is first rewritten with WRITE_IN_PROGRESS, everything new goes after the
//! old end of the file (so the old header keeps describing a valid WIM),
//! the data is fsynced, and only then is the new header written. Any error
//! truncates the file back and restores the old header.

mod lock;
mod pause;
pub mod rebuild;
mod write;

pub use crate::newimage::{Content, EntryStreams, Landing, NewImage, StreamData};
pub use lock::WimLock;

use crate::error::{Error, Result};
use crate::image::Image;
use crate::wim::blob_table::{self, BlobEntry};
use crate::wim::bytes::hex;
use crate::wim::header::{
    flags, resflags, Compression, Header, ResHdr, HEADER_SIZE, SOLID_RESOURCE_MAGIC, VERSION_SOLID,
};
use crate::wim::metadata::{self, DentryRecord, StreamRecord};
use crate::wim::{xml, Sha1, Wim, ZERO_HASH};
use rayon::prelude::*;
use sha1::Digest;
use std::collections::HashMap;
use std::sync::Arc;
use write::Appender;

/// Chunk size of the solid resources a commit appends to an LZMS WIM:
/// smaller than ESD's 64 MiB so that appends compress on all cores with
/// bounded memory.
pub const APPEND_SOLID_CHUNK: u32 = 4 << 20;
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

fn file_len(lock: &WimLock) -> Result<u64> {
    Ok(lock
        .file
        .metadata()
        .map_err(|e| Error::Io {
            path: lock.path.display().to_string(),
            err: e,
        })?
        .len())
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

/// Hash every distinct new content (in parallel).
fn hash_contents(
    img: &NewImage,
    progress: &(dyn Fn(Phase, u64) + Sync),
) -> Result<HashMap<usize, (Sha1, u64)>> {
    let mut uniq: HashMap<usize, Arc<dyn Content>> = HashMap::new();
    let mut visit = |d: &StreamData| {
        if let StreamData::New(c) = d {
            uniq.entry(Arc::as_ptr(c) as *const u8 as usize)
                .or_insert_with(|| c.clone());
        }
    };
    for s in &img.streams {
        s.data
            .iter()
            .chain(s.reparse.iter())
            .chain(s.named.iter().map(|(_, d)| d))
            .for_each(&mut visit);
    }
    uniq.into_par_iter()
        .map(|(k, c)| {
            let size = c.len();
            let mut h = sha1::Sha1::new();
            let mut buf = vec![0u8; (4u64 << 20).min(size) as usize];
            let mut p = 0;
            while p < size {
                let n = ((size - p) as usize).min(buf.len());
                c.read_at(p, &mut buf[..n])?;
                h.update(&buf[..n]);
                p += n as u64;
                progress(Phase::Hashing, n as u64);
            }
            let hash: Sha1 = h.finalize().into();
            Ok((k, (if size == 0 { ZERO_HASH } else { hash }, size)))
        })
        .collect()
}

fn resolve(d: &StreamData, hashes: &HashMap<usize, (Sha1, u64)>) -> Sha1 {
    match d {
        StreamData::Empty => ZERO_HASH,
        StreamData::Blob(h) => *h,
        StreamData::New(c) => hashes
            .get(&(Arc::as_ptr(c) as *const u8 as usize))
            .map_or(ZERO_HASH, |x| x.0),
    }
}

/// Fill each record's hash and stream entries the way WIMGAPI lays them out:
/// a plain file keeps its data hash in the dentry; a file with named streams
/// or a reparse point with data lists every stream as an extra entry
/// (reparse data first, then the unnamed data) with a zero dentry hash.
fn lay_out_streams(img: &mut NewImage, hashes: &HashMap<usize, (Sha1, u64)>) {
    for (r, s) in img.records.iter_mut().zip(&img.streams) {
        let data = s.data.as_ref().map(|d| resolve(d, hashes));
        let rp = s.reparse.as_ref().map(|d| resolve(d, hashes));
        r.streams.clear();
        let has_data = data.is_some_and(|h| h != ZERO_HASH);
        if s.named.is_empty() && !(r.is_reparse() && has_data) {
            r.hash = if r.is_reparse() {
                rp.unwrap_or(ZERO_HASH)
            } else {
                data.unwrap_or(ZERO_HASH)
            };
        } else {
            r.hash = ZERO_HASH;
            if r.is_reparse() {
                r.streams.push(StreamRecord {
                    name: String::new(),
                    hash: rp.unwrap_or(ZERO_HASH),
                });
            }
            if !r.is_dir() || r.is_reparse() {
                r.streams.push(StreamRecord {
                    name: String::new(),
                    hash: data.unwrap_or(ZERO_HASH),
                });
            }
            for (n, d) in &s.named {
                r.streams.push(StreamRecord {
                    name: n.clone(),
                    hash: resolve(d, hashes),
                });
            }
        }
    }
}

/// Every hash a set of records references, once per dentry stream.
fn count_refs(records: &[DentryRecord], refs: &mut HashMap<Sha1, u32>) {
    for r in records {
        for h in std::iter::once(&r.hash).chain(r.streams.iter().map(|s| &s.hash)) {
            if *h != ZERO_HASH {
                *refs.entry(*h).or_default() += 1;
            }
        }
    }
}

/// XML statistics of an image.
fn image_stats(records: &[DentryRecord], sizes: &HashMap<Sha1, u64>) -> (u64, u64, u64, u64) {
    let (mut dirs, mut files, mut total, mut hard) = (0u64, 0u64, 0u64, 0u64);
    let mut seen_groups = std::collections::HashSet::new();
    for r in records.iter().skip(1) {
        if r.is_dir() {
            dirs += 1;
        } else {
            files += 1;
        }
        let data = if r.streams.is_empty() {
            if r.is_reparse() {
                ZERO_HASH
            } else {
                r.hash
            }
        } else {
            r.streams
                .iter()
                .filter(|s| s.name.is_empty())
                .nth(usize::from(r.is_reparse()))
                .map_or(ZERO_HASH, |s| s.hash)
        };
        let sz = sizes.get(&data).copied().unwrap_or(0);
        total += sz;
        if r.link_group != 0 && !r.is_reparse() && !r.is_dir() && !seen_groups.insert(r.link_group)
        {
            hard += sz;
        }
    }
    (dirs, files, total, hard)
}

fn set_filetime(e: &mut xml::Element, name: &str, ft: u64) {
    let mut t = xml::Element::new(name);
    t.set_child_text("HIGHPART", &format!("0x{:08X}", ft >> 32));
    t.set_child_text("LOWPART", &format!("0x{:08X}", ft & 0xFFFF_FFFF));
    if let Some(c) = e.child_mut(name) {
        *c = t;
    } else {
        e.children.push(xml::Node::Elem(t));
    }
}

/// Commit `img` into the WIM at `lock.path` as image `index` (1-based), or
/// as a new image. The caller holds the WIM's lock for the whole time.
pub fn commit(
    lock: &WimLock,
    index: u32,
    img: NewImage,
    opts: &CommitOptions,
    progress: &(dyn Fn(Phase, u64) + Sync),
) -> Result<CommitReport> {
    commit_with(lock, index, img, opts, progress, &mut |_| Ok(()))
}

/// [`commit`], calling `before_header` with what the commit will land once
/// everything but the header is written and synced. An error from it
/// aborts the commit (the WIM is put back as it was).
pub fn commit_with(
    lock: &WimLock,
    index: u32,
    mut img: NewImage,
    opts: &CommitOptions,
    progress: &(dyn Fn(Phase, u64) + Sync),
    before_header: &mut dyn FnMut(&Landing) -> Result<()>,
) -> Result<CommitReport> {
    let path = lock.path.as_path();
    // Read what is locked, not whatever the path names by now.
    let wim = lock.open_wim()?;
    let h = wim.header.clone();
    if h.total_parts != 1 {
        return Err(Error::Unsupported(
            "committing to a split WIM; join it first".into(),
        ));
    }
    let count = wim.image_count();
    let target = if opts.new_image { count + 1 } else { index };
    if !opts.new_image && (index == 0 || index > count) {
        return Err(Error::NoSuchImage(format!(
            "{index} (this WIM has {count} image(s))"
        )));
    }
    if img.records.is_empty() || !img.records[0].is_dir() {
        return Err(Error::Other(
            "internal: commit tree has no root directory".into(),
        ));
    }
    // 1. Hash new contents; lay out the dentries' stream entries.
    let hashes = hash_contents(&img, progress)?;
    lay_out_streams(&mut img, &hashes);

    // 2. Reference counts over every image that will be in the WIM.
    let mut refs: HashMap<Sha1, u32> = HashMap::new();
    count_refs(&img.records, &mut refs);
    for i in 1..=count {
        if i == target {
            continue;
        }
        let raw = wim.read_metadata(i)?;
        let md = metadata::parse(&raw)
            .map_err(|e| Error::Invalid(format!("image {i} metadata: {e}")))?;
        count_refs(&md.dentries, &mut refs);
    }

    // 3. Which blobs are new?
    let mut new_list: Vec<(Sha1, Arc<dyn Content>)> = Vec::new();
    let mut seen: std::collections::HashSet<Sha1> = std::collections::HashSet::new();
    let mut reused = 0u64;
    for s in &img.streams {
        for d in s
            .data
            .iter()
            .chain(s.reparse.iter())
            .chain(s.named.iter().map(|(_, d)| d))
        {
            let hash = resolve(d, &hashes);
            if hash == ZERO_HASH || !seen.insert(hash) {
                continue;
            }
            match d {
                StreamData::New(c) if !wim.blobs.contains_key(&hash) => {
                    new_list.push((hash, c.clone()))
                }
                StreamData::Blob(_) | StreamData::New(_) => {
                    if !wim.blobs.contains_key(&hash) {
                        return Err(Error::MissingBlob(hex(&hash)));
                    }
                    reused += 1;
                }
                StreamData::Empty => {}
            }
        }
    }
    let mut sizes: HashMap<Sha1, u64> = wim.blobs.iter().map(|(k, b)| (*k, b.size)).collect();
    for (hsh, c) in &new_list {
        sizes.insert(*hsh, c.len());
    }

    // Nothing changed: write nothing at all (not even a new XML).
    let md = metadata::write(&img.security, &img.records);
    let md_hash: Sha1 = sha1::Sha1::digest(&md).into();
    let adds_integrity = opts.check && h.integrity.size_in_wim == 0;
    if !opts.new_image
        && new_list.is_empty()
        && !adds_integrity
        && wim
            .metadata
            .get(target as usize - 1)
            .is_some_and(|m| m.hash == md_hash)
    {
        return Ok(CommitReport {
            image: target,
            reused_blobs: reused,
            file_size: file_len(lock)?,
            nothing_to_commit: true,
            ..CommitReport::default()
        });
    }

    // 4. Mark the write in progress (old data stays valid), then append.
    lock.still_at_path()?;
    let file = &lock.file;
    // Bytes past the end the header describes are what a killed write
    // left: cut them off so they do not stay in the file forever.
    let file_now = file_len(lock)?;
    let old_len = described_end(&wim).min(file_now);
    if old_len < file_now {
        log::warn!(
            "{}: cutting {} bytes left after the end of the WIM by an interrupted write",
            path.display(),
            file_now - old_len
        );
        file.set_len(old_len).map_err(|e| Error::Io {
            path: path.display().to_string(),
            err: e,
        })?;
    }
    let mut old_hdr = vec![0u8; HEADER_SIZE];
    crate::io::FileSource::new(file.try_clone()?)?.read_exact_at_io(&mut old_hdr, 0)?;
    let mut out = Appender {
        file,
        pos: old_len,
        path: path.display().to_string(),
    };
    let mut wip = h.clone();
    wip.flags |= flags::WRITE_IN_PROGRESS;
    out.write_at(&wip.write(), 0)?;
    file.sync_all()?;

    let result = (|| -> Result<CommitReport> {
        let solid = h.version == VERSION_SOLID;
        let comp = wim.compression;
        let cs = wim.chunk_size;
        let wprog = |n: u64| progress(Phase::Writing, n);
        let contents: Vec<&dyn Content> = new_list.iter().map(|(_, c)| c.as_ref()).collect();
        let mut new_entries: Vec<BlobEntry> = Vec::new();
        let new_bytes: u64 = contents.iter().map(|c| c.len()).sum();
        if !contents.is_empty() {
            if solid {
                let scomp = if comp == Compression::None {
                    Compression::Lzms
                } else {
                    comp
                };
                let (rh, offs) =
                    write::write_solid(&mut out, &contents, scomp, APPEND_SOLID_CHUNK, &wprog)?;
                new_entries.push(BlobEntry {
                    reshdr: rh,
                    part_number: 1,
                    refcount: 1,
                    hash: ZERO_HASH,
                });
                for ((hash, c), off) in new_list.iter().zip(offs) {
                    new_entries.push(BlobEntry {
                        reshdr: ResHdr {
                            size_in_wim: c.len(),
                            flags: resflags::SOLID,
                            offset: off,
                            uncompressed_size: 0,
                        },
                        part_number: 1,
                        refcount: refs.get(hash).copied().unwrap_or(1),
                        hash: *hash,
                    });
                }
            } else {
                let rhs = write::write_blobs(&mut out, &contents, comp, cs, &wprog)?;
                for ((hash, _), rh) in new_list.iter().zip(rhs) {
                    new_entries.push(BlobEntry {
                        reshdr: rh,
                        part_number: 1,
                        refcount: refs.get(hash).copied().unwrap_or(1),
                        hash: *hash,
                    });
                }
            }
        }
        pause::point("after-blobs");
        // Metadata resource.
        let md_comp = if solid { Compression::None } else { comp };
        let mut md_rh = write::write_blob(&mut out, &md, md_comp, cs, &|_| {})?;
        md_rh.flags |= resflags::METADATA;
        let md_entry = BlobEntry {
            reshdr: md_rh,
            part_number: 1,
            refcount: 1,
            hash: md_hash,
        };

        // Blob table: old entries in their order with fresh refcounts
        // (unreferenced blobs dropped; solid resource entries always kept,
        // since blob offsets in a solid run count through all of its
        // resources), the replaced metadata in place, then the new entries.
        let mut table: Vec<BlobEntry> = Vec::new();
        let mut meta_seen = 0u32;
        let mut dup = std::collections::HashSet::new();
        let is_solid_res = |e: &BlobEntry| {
            solid && e.reshdr.is_solid() && e.reshdr.uncompressed_size == SOLID_RESOURCE_MAGIC
        };
        for (_, e) in &wim.entries {
            if is_solid_res(e) {
                table.push(e.clone());
                continue;
            }
            if e.reshdr.is_metadata() {
                meta_seen += 1;
                if meta_seen <= count {
                    table.push(if meta_seen == target {
                        md_entry.clone()
                    } else {
                        e.clone()
                    });
                }
                continue;
            }
            let rc = refs.get(&e.hash).copied().unwrap_or(0);
            if e.hash == ZERO_HASH || rc == 0 || !dup.insert(e.hash) {
                continue;
            }
            table.push(BlobEntry {
                refcount: rc,
                ..e.clone()
            });
        }
        if opts.new_image {
            table.push(md_entry.clone());
        }
        // A new solid run placed right after an old one joins it: its blob
        // offsets then count from the end of the old run's resources.
        if solid && !new_entries.is_empty() {
            let mut base = 0u64;
            for e in table.iter().rev() {
                if !(e.reshdr.is_solid()) {
                    break;
                }
                if is_solid_res(e) {
                    let src = wim
                        .part_source(1)
                        .ok_or_else(|| Error::Other("internal: no part 1".into()))?;
                    base += crate::wim::resource::Resource::solid(0, src.clone(), 1, e.reshdr)?
                        .uncompressed_size;
                }
            }
            for e in new_entries.iter_mut().filter(|e| !is_solid_res(e)) {
                e.reshdr.offset += base;
            }
        }
        table.extend(new_entries);
        let bt = blob_table::write(&table);
        let bt_off = out.write(&bt)?;
        let bt_rh = ResHdr {
            size_in_wim: bt.len() as u64,
            flags: resflags::METADATA,
            offset: bt_off,
            uncompressed_size: bt.len() as u64,
        };

        // XML.
        let mut root = wim.xml.clone().unwrap_or_else(|| xml::Element::new("WIM"));
        let (dirs, files, total, hard) = image_stats(&img.records, &sizes);
        let now = crate::time::now_filetime();
        let mut found = false;
        for n in root.children.iter_mut() {
            if let xml::Node::Elem(e) = n {
                if e.name.eq_ignore_ascii_case("IMAGE")
                    && e.attr("INDEX").and_then(|s| s.trim().parse::<u32>().ok()) == Some(target)
                {
                    found = true;
                    fill_image_xml(e, dirs, files, total, hard, now, false);
                }
            }
        }
        if !found {
            let mut e = xml::Element::new("IMAGE");
            e.attrs.push(("INDEX".into(), target.to_string()));
            let name = opts.image_name.clone().unwrap_or_else(|| {
                let mut k = target;
                loop {
                    let cand = format!("Image {k}");
                    if !wim
                        .image_info
                        .iter()
                        .any(|i| i.name.as_deref() == Some(cand.as_str()))
                    {
                        break cand;
                    }
                    k += 1;
                }
            });
            fill_image_xml(&mut e, dirs, files, total, hard, now, true);
            e.set_child_text("NAME", &name);
            if let Some(d) = &opts.image_description {
                e.set_child_text("DESCRIPTION", d);
            }
            root.children.push(xml::Node::Elem(e));
        }
        root.set_child_text("TOTALBYTES", &out.pos.to_string());
        let xb = xml::encode(&root);
        let x_off = out.write(&xb)?;
        let x_rh = ResHdr {
            size_in_wim: xb.len() as u64,
            flags: 0,
            offset: x_off,
            uncompressed_size: xb.len() as u64,
        };

        // Integrity table over header end .. blob table end.
        let i_rh = if h.integrity.size_in_wim > 0 || opts.check {
            write::append_integrity(&mut out, bt_off + bt.len() as u64)?
        } else {
            ResHdr::default()
        };
        // The file ends where the new header says it does.
        out.cut()?;
        file.sync_all()?;

        before_header(&Landing {
            image: target,
            metadata_sha1: md_hash,
            blob_table: bt_rh,
        })?;
        pause::point("before-header");

        // The new header, last.
        let mut nh: Header = h.clone();
        nh.flags &= !flags::WRITE_IN_PROGRESS;
        nh.image_count = if opts.new_image { count + 1 } else { count };
        nh.blob_table = bt_rh;
        nh.xml = x_rh;
        nh.integrity = i_rh;
        if nh.boot_index != 0 {
            let mut k = 0;
            for e in &table {
                if e.reshdr.is_metadata() {
                    k += 1;
                    if k == nh.boot_index {
                        nh.boot_metadata = e.reshdr;
                    }
                }
            }
        }
        // Replaced while this commit wrote? Then its header must not land
        // in a file nobody will open again (the error path restores it).
        lock.still_at_path()?;
        out.write_at(&nh.write(), 0)?;
        file.sync_all()?;
        pause::point("after-header");
        Ok(CommitReport {
            image: target,
            new_blobs: new_list.len() as u64,
            new_bytes,
            reused_blobs: reused,
            bytes_added: out.pos - old_len,
            file_size: out.pos,
            nothing_to_commit: false,
        })
    })();
    if result.is_err() {
        // Put the file back as it was.
        let _ = file.set_len(old_len);
        let _ = out.write_at(&old_hdr, 0);
        let _ = file.sync_all();
    }
    result
}

fn fill_image_xml(
    e: &mut xml::Element,
    dirs: u64,
    files: u64,
    total: u64,
    hard: u64,
    now: u64,
    new: bool,
) {
    e.set_child_text("DIRCOUNT", &dirs.to_string());
    e.set_child_text("FILECOUNT", &files.to_string());
    e.set_child_text("TOTALBYTES", &total.to_string());
    e.set_child_text("HARDLINKBYTES", &hard.to_string());
    if new {
        set_filetime(e, "CREATIONTIME", now);
    }
    set_filetime(e, "LASTMODIFICATIONTIME", now);
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
