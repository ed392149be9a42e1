//! Rebuild (optimize / export): write a fresh WIM holding only what the
//! chosen images reference, shedding the stale data that appends leave.
//!
//! Compressed resources are copied byte for byte when the target uses the
//! same codec and chunk size (no decompression at all); solid runs are
//! copied whole. Everything else is decompressed and compressed again,
//! chunk-parallel. The new file is written beside the target under a
//! temporary name, fsynced, and renamed into place, so a crash leaves either
//! the old file or the new one.

use super::write::{write_blob, write_blobs, write_solid, Appender};
use super::Content;
use crate::cache::ChunkCache;
use crate::error::{Error, Result};
use crate::wim::blob_table::{self, BlobEntry};
use crate::wim::header::{
    flags, resflags, Compression, Header, ResHdr, HEADER_SIZE, MAGIC, VERSION_DEFAULT,
    VERSION_SOLID,
};
use crate::wim::metadata;
use crate::wim::{xml, Blob, BlobLoc, Sha1, SolidRun, Wim, ZERO_HASH};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the new WIM should look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub compression: Compression,
    pub chunk_size: u32,
    /// Store blobs in solid resources (version 0xE00, like ESD files).
    pub solid: bool,
}

impl Target {
    /// The source WIM's own format.
    pub fn same_as(w: &Wim) -> Target {
        Target {
            compression: w.compression,
            chunk_size: w.chunk_size,
            solid: w.header.version == VERSION_SOLID,
        }
    }
    /// Defaults for a codec named on the command line.
    pub fn for_codec(c: Compression) -> Target {
        // LZMS goes solid (as ESD files are); the others use WIM's usual
        // 32 KiB chunks.
        let solid = c == Compression::Lzms;
        Target {
            compression: c,
            chunk_size: if solid { 131072 } else { 32768 },
            solid,
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RebuildReport {
    pub images: u32,
    pub blobs: u64,
    pub copied_raw: u64,
    pub recompressed: u64,
    pub old_size: u64,
    pub new_size: u64,
}

/// Reads a blob of a source WIM (for recompression).
struct BlobContent {
    cache: Arc<ChunkCache>,
    blob: Arc<Blob>,
}

impl Content for BlobContent {
    fn len(&self) -> u64 {
        self.blob.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let n = self.cache.read_blob(&self.blob, offset, buf)?;
        if n != buf.len() {
            return Err(Error::Invalid(format!(
                "blob {} is shorter than it claims",
                crate::wim::bytes::hex(&self.blob.hash)
            )));
        }
        Ok(())
    }
}

fn copy_raw(src: &Wim, part: u16, off: u64, len: u64, out: &mut Appender) -> Result<u64> {
    let s = src
        .part_source(part)
        .ok_or_else(|| Error::MissingBlob(format!("part {part}")))?;
    let at = out.pos;
    let mut buf = vec![0u8; (8u64 << 20).min(len.max(1)) as usize];
    let mut p = 0;
    while p < len {
        let n = ((len - p) as usize).min(buf.len());
        s.read_exact_at(&mut buf[..n], off + p)?;
        out.write(&buf[..n])?;
        p += n as u64;
    }
    Ok(at)
}

/// Write images `images` (1-based, in order) of `src` into a new WIM at
/// `dst` (replaced atomically if it exists). `keep_guid` keeps the source's
/// GUID (optimize); an export gets a new one.
pub fn rebuild(
    src: &Wim,
    images: &[u32],
    dst: &Path,
    target: Target,
    keep_guid: bool,
    check: bool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<RebuildReport> {
    // A whole split set (every part given with --ref) reads like one WIM:
    // resources are copied from the part that holds them, so export joins
    // a set. With parts missing, blobs would be missing from the result.
    if usize::from(src.header.total_parts) != src.parts.len() {
        return Err(Error::Unsupported(format!(
            "rebuilding a split WIM from {} of its {} parts (give the others with --ref)",
            src.parts.len(),
            src.header.total_parts
        )));
    }
    for &i in images {
        if i == 0 || i > src.image_count() {
            return Err(Error::NoSuchImage(format!(
                "{i} (this WIM has {} image(s))",
                src.image_count()
            )));
        }
    }
    // Referenced blobs, with reference counts.
    let mut refs: HashMap<Sha1, u32> = HashMap::new();
    let mut mds = Vec::new();
    for &i in images {
        let raw = src.read_metadata(i)?;
        let md = metadata::parse(&raw)
            .map_err(|e| Error::Invalid(format!("image {i} metadata: {e}")))?;
        for r in &md.dentries {
            for h in std::iter::once(&r.hash).chain(r.streams.iter().map(|s| &s.hash)) {
                if *h != ZERO_HASH {
                    *refs.entry(*h).or_default() += 1;
                }
            }
        }
        mds.push(raw);
    }
    let mut blobs: Vec<Arc<Blob>> = Vec::new();
    for h in refs.keys() {
        match src.blobs.get(h) {
            Some(b) => blobs.push(b.clone()),
            None => return Err(Error::MissingBlob(crate::wim::bytes::hex(h))),
        }
    }
    blobs.sort_by_key(|b| match &b.loc {
        BlobLoc::Whole(r) => (r.reshdr.offset, 0),
        BlobLoc::Solid { run, offset } => (
            run.resources.first().map_or(0, |r| r.reshdr.offset),
            *offset,
        ),
    });

    let dir = dst
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let (file, tmp) = create_temp(dst)?;
    remove_leftovers(dst, &tmp);
    let res = (|| -> Result<RebuildReport> {
        let mut out = Appender {
            file: &file,
            pos: HEADER_SIZE as u64,
            path: tmp.display().to_string(),
        };
        out.write_at(&[0u8; HEADER_SIZE], 0)?;
        let mut rep = RebuildReport {
            images: images.len() as u32,
            blobs: blobs.len() as u64,
            old_size: src.parts.iter().map(|p| p.source.len()).sum(),
            ..Default::default()
        };
        let src_solid = src.header.version == VERSION_SOLID;
        let same_codec = target.compression == src.compression
            && target.chunk_size == src.chunk_size
            && target.solid == src_solid;
        let mut table: Vec<BlobEntry> = Vec::new();
        let cache = Arc::new(ChunkCache::new(256 << 20));
        let mut recompress: Vec<Arc<Blob>> = Vec::new();
        let mut runs_done: HashSet<*const SolidRun> = HashSet::new();
        let live_runs = mostly_live_runs(&blobs);
        // Consecutive SOLID entries form one run whose blob offsets count
        // through all its resources: a run appended right after another
        // shifts its offsets by what precedes it.
        let mut trailing: u64 = 0;
        for b in &blobs {
            match &b.loc {
                BlobLoc::Whole(r) if same_codec => {
                    let at =
                        copy_raw(src, r.part, r.reshdr.offset, r.reshdr.size_in_wim, &mut out)?;
                    progress(b.size);
                    rep.copied_raw += 1;
                    trailing = 0;
                    table.push(BlobEntry {
                        reshdr: ResHdr {
                            offset: at,
                            flags: r.reshdr.flags & !resflags::METADATA,
                            ..r.reshdr
                        },
                        part_number: 1,
                        refcount: refs[&b.hash],
                        hash: b.hash,
                    });
                }
                BlobLoc::Solid { run, .. }
                    if same_codec && live_runs.contains(&Arc::as_ptr(run)) =>
                {
                    if !runs_done.insert(Arc::as_ptr(run)) {
                        continue;
                    }
                    // Copy the whole run; its blobs keep their offsets
                    // (plus any run it now follows).
                    let base = trailing;
                    trailing += run.total;
                    for r in &run.resources {
                        let at =
                            copy_raw(src, r.part, r.reshdr.offset, r.reshdr.size_in_wim, &mut out)?;
                        table.push(BlobEntry {
                            reshdr: ResHdr {
                                offset: at,
                                ..r.reshdr
                            },
                            part_number: 1,
                            refcount: 1,
                            hash: ZERO_HASH,
                        });
                    }
                    for ob in blobs.iter().filter(|x| matches!(&x.loc, BlobLoc::Solid { run: r2, .. } if Arc::ptr_eq(r2, run))) {
                        if let BlobLoc::Solid { offset, .. } = &ob.loc {
                            table.push(BlobEntry {
                                reshdr: ResHdr { size_in_wim: ob.size, flags: resflags::SOLID, offset: base + *offset, uncompressed_size: 0 },
                                part_number: 1,
                                refcount: refs[&ob.hash],
                                hash: ob.hash,
                            });
                            progress(ob.size);
                            rep.copied_raw += 1;
                        }
                    }
                }
                _ => recompress.push(b.clone()),
            }
        }
        if !recompress.is_empty() {
            rep.recompressed = recompress.len() as u64;
            let contents: Vec<BlobContent> = recompress
                .iter()
                .map(|b| BlobContent {
                    cache: cache.clone(),
                    blob: b.clone(),
                })
                .collect();
            let dyns: Vec<&dyn Content> = contents.iter().map(|c| c as &dyn Content).collect();
            if target.solid {
                let comp = if target.compression == Compression::None {
                    Compression::Lzms
                } else {
                    target.compression
                };
                // A separator keeps this run from joining a copied one.
                let (rh, offs) = write_solid(
                    &mut out,
                    &dyns,
                    comp,
                    target.chunk_size.max(super::APPEND_SOLID_CHUNK),
                    progress,
                )?;
                let base = trailing;
                table.push(BlobEntry {
                    reshdr: rh,
                    part_number: 1,
                    refcount: 1,
                    hash: ZERO_HASH,
                });
                for (b, off) in recompress.iter().zip(offs) {
                    table.push(BlobEntry {
                        reshdr: ResHdr {
                            size_in_wim: b.size,
                            flags: resflags::SOLID,
                            offset: base + off,
                            uncompressed_size: 0,
                        },
                        part_number: 1,
                        refcount: refs[&b.hash],
                        hash: b.hash,
                    });
                }
            } else {
                let rhs = write_blobs(
                    &mut out,
                    &dyns,
                    target.compression,
                    target.chunk_size,
                    progress,
                )?;
                for (b, rh) in recompress.iter().zip(rhs) {
                    table.push(BlobEntry {
                        reshdr: rh,
                        part_number: 1,
                        refcount: refs[&b.hash],
                        hash: b.hash,
                    });
                }
            }
        }
        super::pause::point("rebuild-after-blobs");
        // Metadata resources, in image order, after the data (a non-solid
        // entry between runs also keeps runs apart).
        let md_comp = if target.solid {
            Compression::None
        } else {
            target.compression
        };
        let mut md_entries = Vec::new();
        for raw in &mds {
            let hash: Sha1 = <sha1::Sha1 as sha1::Digest>::digest(raw).into();
            let mut rh = write_blob(&mut out, raw, md_comp, target.chunk_size, &|_| {})?;
            rh.flags |= resflags::METADATA;
            md_entries.push(BlobEntry {
                reshdr: rh,
                part_number: 1,
                refcount: 1,
                hash,
            });
        }
        // Metadata entries go first: image order is their order.
        let mut full = md_entries.clone();
        full.extend(table);
        let bt = blob_table::write(&full);
        let bt_off = out.write(&bt)?;
        // XML: the chosen images, renumbered.
        let mut root = xml::Element::new("WIM");
        let src_root = src.xml.clone().unwrap_or_else(|| xml::Element::new("WIM"));
        for (k, &i) in images.iter().enumerate() {
            let mut e = src_root
                .elements()
                .find(|e| {
                    e.name.eq_ignore_ascii_case("IMAGE")
                        && e.attr("INDEX").and_then(|s| s.trim().parse::<u32>().ok()) == Some(i)
                })
                .cloned()
                .unwrap_or_else(|| xml::Element::new("IMAGE"));
            e.attrs.retain(|(k2, _)| !k2.eq_ignore_ascii_case("INDEX"));
            e.attrs.insert(0, ("INDEX".into(), (k + 1).to_string()));
            root.children.push(xml::Node::Elem(e));
        }
        root.children.insert(
            0,
            xml::Node::Elem({
                let mut t = xml::Element::new("TOTALBYTES");
                t.children.push(xml::Node::Text(out.pos.to_string()));
                t
            }),
        );
        let xb = xml::encode(&root);
        let x_off = out.write(&xb)?;
        let i_rh = if check || src.header.integrity.size_in_wim > 0 {
            super::write::append_integrity(&mut out, bt_off + bt.len() as u64)?
        } else {
            ResHdr::default()
        };
        let mut fl = src.header.flags & (flags::RP_FIX | flags::READONLY);
        if target.compression != Compression::None {
            fl |= flags::COMPRESSION
                | match target.compression {
                    Compression::Xpress => flags::COMPRESS_XPRESS,
                    Compression::Lzx => flags::COMPRESS_LZX,
                    Compression::Lzms => flags::COMPRESS_LZMS,
                    Compression::None => 0,
                };
        }
        let boot = images
            .iter()
            .position(|&i| i == src.header.boot_index)
            .map_or(0, |p| p as u32 + 1);
        let guid = if keep_guid {
            src.header.guid
        } else {
            new_guid()
        };
        let h = Header {
            magic: *MAGIC,
            version: if target.solid {
                VERSION_SOLID
            } else {
                VERSION_DEFAULT
            },
            flags: fl,
            chunk_size: if target.compression == Compression::None {
                0
            } else {
                target.chunk_size
            },
            guid,
            part_number: 1,
            total_parts: 1,
            image_count: images.len() as u32,
            blob_table: ResHdr {
                size_in_wim: bt.len() as u64,
                flags: resflags::METADATA,
                offset: bt_off,
                uncompressed_size: bt.len() as u64,
            },
            xml: ResHdr {
                size_in_wim: xb.len() as u64,
                flags: 0,
                offset: x_off,
                uncompressed_size: xb.len() as u64,
            },
            boot_metadata: if boot > 0 {
                md_entries[boot as usize - 1].reshdr
            } else {
                ResHdr::default()
            },
            boot_index: boot,
            integrity: i_rh,
        };
        out.write_at(&h.write(), 0)?;
        file.sync_all()?;
        rep.new_size = out.pos;
        Ok(rep)
    })();
    match res {
        Ok(rep) => {
            super::pause::point("rebuild-before-rename");
            // The name must still be our file (in a directory others may
            // write, it could have been swapped for a symlink): the rename
            // then replaces the WIM's path name with it, never following
            // a symlink at either name.
            let ours = crate::sys::file_id(&file).ok();
            if ours.is_none() || crate::sys::link_id(&tmp).ok() != ours {
                let _ = std::fs::remove_file(&tmp);
                return Err(Error::Other(format!(
                    "{}: the temporary file was replaced by something else while it was \
                     written; {} is left as it was",
                    tmp.display(),
                    dst.display()
                )));
            }
            std::fs::rename(&tmp, dst).map_err(|e| Error::Io {
                path: dst.display().to_string(),
                err: e,
            })?;
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(rep)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Tag of the temporary files beside the target: `.NAME.wimfs-tmp-RANDOM`
/// (before the hardening work: `.NAME.wimfs-tmp-PID`).
const TMP_TAG: &str = "wimfs-tmp";

/// Create the temporary file for a rebuild of `dst`: exclusively, never
/// through a symlink, 0600, under an unguessable name (a predictable name
/// opened through symlinks let another user who can write the folder make
/// a root rebuild overwrite any file). It stays locked (flock) while it is
/// written, so a later rebuild can tell it from a killed run's leftover.
fn create_temp(dst: &Path) -> Result<(std::fs::File, PathBuf)> {
    let (file, tmp) = crate::sys::create_temp_beside(dst, TMP_TAG).map_err(|e| Error::Io {
        path: dst.display().to_string(),
        err: e,
    })?;
    if let Err(e) = crate::sys::try_lock(&file) {
        log::debug!("cannot lock {}: {e}", tmp.display());
    }
    Ok((file, tmp))
}

/// Remove the temporary files a killed rebuild of `dst` left beside it
/// (tens of MB each), except `ours`. Removed only when it is a regular file
/// of this user's (opened without following a symlink) that no running
/// rebuild holds locked; anything else is left alone (symlinks and other
/// users' files are counted in one warning: a folder others can write may
/// hold thousands). Removed files are named in a warning.
fn remove_leftovers(dst: &Path, ours: &Path) {
    let dir = dst
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(base) = dst.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!(".{base}.{TMP_TAG}-");
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut foreign: Vec<String> = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let p = e.path();
        if p == ours {
            continue;
        }
        let f = match crate::sys::open_own_file(&p) {
            Ok(f) => f,
            Err(err) => {
                foreign.push(err.to_string());
                continue;
            }
        };
        match crate::sys::try_lock(&f) {
            Ok(true) => {}
            // A rebuild still writing it (or a lock we cannot judge).
            Ok(false) | Err(_) => continue,
        }
        // Still the file we opened and locked (not swapped meanwhile)?
        let same = crate::sys::file_id(&f).ok();
        if same.is_none() || crate::sys::link_id(&p).ok() != same {
            continue;
        }
        let size = f.metadata().map_or(0, |m| m.len());
        match std::fs::remove_file(&p) {
            Ok(()) => log::warn!(
                "removed {} ({size} bytes), left by an interrupted optimize, export or rebuild",
                p.display()
            ),
            Err(err) => log::warn!("cannot remove leftover {}: {err}", p.display()),
        }
    }
    if let Some(first) = foreign.first() {
        log::warn!(
            "left alone {} file(s) named like the temporary file of a rebuild of {} that are \
             not this user's regular files (e.g. {first}); none was opened or followed",
            foreign.len(),
            dst.display()
        );
    }
}

/// Solid runs most of whose bytes are still referenced: those are copied
/// whole (no decompression); in the others the live blobs are recompressed,
/// so the stale ones are really shed.
fn mostly_live_runs(blobs: &[Arc<Blob>]) -> HashSet<*const SolidRun> {
    let mut live: HashMap<*const SolidRun, (u64, u64)> = HashMap::new();
    for b in blobs {
        if let BlobLoc::Solid { run, .. } = &b.loc {
            live.entry(Arc::as_ptr(run)).or_insert((0, run.total)).0 += b.size;
        }
    }
    live.into_iter()
        .filter(|(_, (l, t))| l.saturating_mul(10) >= t.saturating_mul(9))
        .map(|(k, _)| k)
        .collect()
}

/// A random GUID for a new WIM (no RNG crate: time, pid and an address
/// hashed together are unique enough for an identifier).
fn new_guid() -> [u8; 16] {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seed = format!("{}:{}:{:p}", t.as_nanos(), std::process::id(), &t);
    let d: [u8; 20] = <sha1::Sha1 as sha1::Digest>::digest(seed.as_bytes()).into();
    let mut g = [0u8; 16];
    g.copy_from_slice(&d[..16]);
    g
}

/// Name and description given to an exported image instead of its own.
#[derive(Debug, Clone, Default)]
pub struct ExportNames {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// Export images of `src` into an existing WIM `dst` as new images: only the
/// blobs `dst` lacks are stored (in `dst`'s own format). `names` (one
/// image only) replaces the image's name and description. An image whose
/// name `dst` already has is refused before anything is written, as
/// wimlib refuses it: two images of one name cannot be told apart by name.
pub fn export_append(
    src: &Wim,
    images: &[u32],
    dst: &Path,
    check: bool,
    names: &ExportNames,
    progress: &(dyn Fn(super::Phase, u64) + Sync),
) -> Result<Vec<super::CommitReport>> {
    if images.len() > 1 && (names.name.is_some() || names.description.is_some()) {
        return Err(Error::Other(
            "a name or description can only be given when exporting one image".into(),
        ));
    }
    let name_of = |i: u32| {
        names
            .name
            .clone()
            .or_else(|| src.info(i).and_then(|x| x.name.clone()))
            .filter(|n| !n.is_empty())
    };
    {
        let lock = super::WimLock::acquire(dst)?;
        let d = lock.open_wim()?;
        let mut taken: Vec<(String, u32)> = d
            .image_info
            .iter()
            .filter_map(|x| x.name.clone().map(|n| (n, x.index)))
            .collect();
        for (k, &i) in images.iter().enumerate() {
            let Some(n) = name_of(i) else { continue };
            if let Some((_, at)) = taken.iter().find(|(t, _)| *t == n) {
                return Err(Error::Other(format!(
                    "{} already has an image named \"{n}\" (image {at}); give the exported \
                     image another name with --name",
                    dst.display()
                )));
            }
            taken.push((n, d.image_count() + k as u32 + 1));
        }
    }
    let cache = Arc::new(ChunkCache::new(256 << 20));
    let mut reps = Vec::new();
    for &i in images {
        let lock = super::WimLock::acquire(dst)?;
        let have: HashSet<Sha1> = lock.open_wim()?.blobs.keys().copied().collect();
        let mut img = super::NewImage::from_image(src, i)?;
        let map = |d: &mut super::StreamData| {
            if let super::StreamData::Blob(h) = d {
                if !have.contains(h) {
                    if let Some(b) = src.blobs.get(h) {
                        *d = super::StreamData::New(Arc::new(BlobContent {
                            cache: cache.clone(),
                            blob: b.clone(),
                        }));
                    }
                }
            }
        };
        for s in &mut img.streams {
            s.data.iter_mut().for_each(map);
            s.reparse.iter_mut().for_each(map);
            s.named.iter_mut().for_each(|(_, d)| map(d));
        }
        let opts = super::CommitOptions {
            new_image: true,
            image_name: name_of(i),
            image_description: names
                .description
                .clone()
                .or_else(|| src.info(i).and_then(|x| x.description.clone())),
            check,
        };
        reps.push(super::commit(&lock, 0, img, &opts, progress)?);
    }
    Ok(reps)
}
