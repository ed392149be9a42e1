//! Rebuild (optimize / export): write a fresh WIM holding only what the
//! chosen images reference, shedding the stale data that appends leave.
//!
//! Compressed resources are copied byte for byte when the target uses the
//! same codec and chunk size (no decompression at all); solid runs are
//! copied whole. Everything else is decompressed and compressed again,
//! chunk-parallel. The new file is written beside the target under a
//! temporary name, fsynced, and renamed into place, so a crash leaves either
//! the old file or the new one.

pub use super::export::{export_append, ExportNames};
use super::writer::{Format, ImageMetadata, WimWriter};
use super::Content;
use crate::cache::ChunkCache;
use crate::error::{Error, Result};
use crate::wim::header::{flags, Compression, VERSION_SOLID};
use crate::wim::{xml, Blob, BlobLoc, Sha1, SolidRun, Wim};
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
pub(super) struct BlobContent {
    pub(super) cache: Arc<ChunkCache>,
    pub(super) blob: Arc<Blob>,
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
    if (1..=src.header.total_parts).any(|p| src.part_source(p).is_none()) {
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
        let md = ImageMetadata::from_raw(src.read_metadata(i)?)
            .map_err(|e| Error::Invalid(format!("image {i} metadata: {e}")))?;
        for h in md.references() {
            *refs.entry(*h).or_default() += 1;
        }
        mds.push(md);
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
        let format = Format {
            compression: target.compression,
            chunk_size: target.chunk_size,
            solid: target.solid,
            // A whole new file: ESD's chunks, as `capture --solid` writes.
            solid_chunk_size: super::SOLID_CHUNK,
        };
        let guid = if keep_guid {
            src.header.guid
        } else {
            new_guid()
        };
        let integrity = check || src.header.integrity.size_in_wim > 0;
        let mut w = WimWriter::create(&file, &tmp, format, guid, integrity)?;
        w.add_header_flags(src.header.flags & (flags::RP_FIX | flags::READONLY));
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
        let cache = Arc::new(ChunkCache::new(256 << 20));
        let mut recompress: Vec<Arc<Blob>> = Vec::new();
        let mut runs_done: HashSet<*const SolidRun> = HashSet::new();
        let live_runs = mostly_live_runs(&blobs);
        for b in &blobs {
            match &b.loc {
                BlobLoc::Whole(_) if same_codec => {
                    w.copy_resource(src, b)?;
                    progress(b.size);
                    rep.copied_raw += 1;
                }
                BlobLoc::Solid { run, .. }
                    if same_codec && live_runs.contains(&Arc::as_ptr(run)) =>
                {
                    if !runs_done.insert(Arc::as_ptr(run)) {
                        continue;
                    }
                    // Copy the whole run; its blobs keep their offsets
                    // (plus any run it now follows).
                    let members: Vec<&Blob> = blobs
                        .iter()
                        .filter(|x| {
                            matches!(&x.loc, BlobLoc::Solid { run: r2, .. } if Arc::ptr_eq(r2, run))
                        })
                        .map(|x| x.as_ref())
                        .collect();
                    w.copy_solid_run(src, run, &members)?;
                    for ob in members {
                        progress(ob.size);
                        rep.copied_raw += 1;
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
            let list: Vec<(Sha1, &dyn Content)> = recompress
                .iter()
                .zip(&contents)
                .map(|(b, c)| (b.hash, c as &dyn Content))
                .collect();
            w.store_blobs(&list, progress)?;
        }
        super::pause::point("rebuild-after-blobs");
        // The images, in order, with their XML renumbered.
        let src_root = src.xml.clone().unwrap_or_else(|| xml::Element::new("WIM"));
        for (&i, md) in images.iter().zip(mds) {
            let e = src_root
                .elements()
                .find(|e| {
                    e.name.eq_ignore_ascii_case("IMAGE")
                        && e.attr("INDEX").and_then(|s| s.trim().parse::<u32>().ok()) == Some(i)
                })
                .cloned()
                .unwrap_or_else(|| xml::Element::new("IMAGE"));
            w.add_image(md, Some(e));
        }
        let boot = images
            .iter()
            .position(|&i| i == src.header.boot_index)
            .map_or(0, |p| p as u32 + 1);
        w.set_boot_index(boot);
        let done = w.finish(&mut |_| Ok(()))?;
        rep.new_size = done.file_size;
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
pub(super) fn create_temp(dst: &Path) -> Result<(std::fs::File, PathBuf)> {
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
pub(super) fn new_guid() -> [u8; 16] {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seed = format!("{}:{}:{:p}", t.as_nanos(), std::process::id(), &t);
    let d: [u8; 20] = <sha1::Sha1 as sha1::Digest>::digest(seed.as_bytes()).into();
    let mut g = [0u8; 16];
    g.copy_from_slice(&d[..16]);
    g
}
