//! Append an image to an existing WIM, or replace one of its images: what
//! a read-write mount's commit and an export into an existing WIM do.
//!
//! The policy lives here (hash the new contents, lay out the dentries'
//! stream entries as WIMGAPI does, store only the blobs the WIM lacks,
//! write nothing when nothing changed, fill the image's XML); the bytes are
//! written by [`WimWriter`], which keeps the old header valid until the new
//! one lands.

use super::image_xml::{fill_image_xml, image_stats};
use super::writer::{ImageMetadata, WimWriter};
use super::{CommitOptions, CommitReport, Phase, WimLock};
use crate::error::{Error, Result};
use crate::newimage::{Content, Landing, NewImage, StreamData};
use crate::wim::bytes::hex;
use crate::wim::metadata::StreamRecord;
use crate::wim::{xml, Sha1, ZERO_HASH};
use rayon::prelude::*;
use sha1::Digest;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// New contents up to this size are kept in memory once read for their
/// hash, so that storing them reads nothing again: a capture of /usr/share
/// (43,350 files) opened and read every file twice, and on this path the
/// system calls cost more than the copying.
const HOLD_MAX: u64 = 256 << 10;
/// Most bytes kept so, over all contents of one image, by a capture or an
/// append of a directory (the rest is read again when stored). A commit of
/// a mount keeps none: it runs in the mount's daemon, whose memory
/// `--cache-size` bounds, and its contents are the staging's, already in
/// memory or in the page cache.
pub(super) const HOLD_BUDGET: u64 = 128 << 20;

/// The bytes of small new contents read while hashing (see [`HOLD_MAX`]),
/// by content.
#[derive(Default)]
pub(super) struct Held(HashMap<usize, Vec<u8>>);

impl Held {
    /// What to store for `c`: its bytes if held, else `c` itself.
    pub(super) fn content<'a>(&'a self, c: &'a Arc<dyn Content>) -> &'a dyn Content {
        match self.0.get(&key(c)) {
            Some(v) => v,
            None => c.as_ref(),
        }
    }
}

fn key(c: &Arc<dyn Content>) -> usize {
    Arc::as_ptr(c) as *const u8 as usize
}

/// The hash and size of each new content, by content.
pub(super) type Hashes = HashMap<usize, (Sha1, u64)>;

/// One content hashed: its key, hash and size, and its bytes if held.
type HashedOne = (usize, (Sha1, u64), Option<Vec<u8>>);

/// Hash every distinct new content (in parallel); small ones are also
/// returned in memory ([`Held`]), `hold` bytes of them at most.
pub(super) fn hash_contents(
    img: &NewImage,
    hold: u64,
    progress: &(dyn Fn(Phase, u64) + Sync),
) -> Result<(Hashes, Held)> {
    let mut uniq: HashMap<usize, Arc<dyn Content>> = HashMap::new();
    let mut visit = |d: &StreamData| {
        if let StreamData::New(c) = d {
            uniq.entry(key(c)).or_insert_with(|| c.clone());
        }
    };
    for s in &img.streams {
        s.data
            .iter()
            .chain(s.reparse.iter())
            .chain(s.named.iter().map(|(_, d)| d))
            .for_each(&mut visit);
    }
    let budget = std::sync::atomic::AtomicU64::new(hold);
    let hashed: Vec<HashedOne> = uniq
        .into_par_iter()
        .map(|(k, c)| {
            let size = c.len();
            if size == 0 {
                return Ok((k, (ZERO_HASH, 0), None));
            }
            let mut h = sha1::Sha1::new();
            if size <= HOLD_MAX {
                let mut v = vec![0u8; size as usize];
                c.read_at(0, &mut v)?;
                h.update(&v);
                progress(Phase::Hashing, size);
                let kept = budget
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| b.checked_sub(size))
                    .is_ok();
                return Ok((k, (h.finalize().into(), size), kept.then_some(v)));
            }
            let mut buf = vec![0u8; (4u64 << 20).min(size) as usize];
            let mut p = 0;
            while p < size {
                let n = ((size - p) as usize).min(buf.len());
                c.read_at(p, &mut buf[..n])?;
                h.update(&buf[..n]);
                p += n as u64;
                progress(Phase::Hashing, n as u64);
            }
            Ok((k, (h.finalize().into(), size), None))
        })
        .collect::<Result<_>>()?;
    let mut map = HashMap::with_capacity(hashed.len());
    let mut held = Held::default();
    for (k, hs, v) in hashed {
        map.insert(k, hs);
        if let Some(v) = v {
            held.0.insert(k, v);
        }
    }
    Ok((map, held))
}

pub(super) fn resolve(d: &StreamData, hashes: &Hashes) -> Sha1 {
    match d {
        StreamData::Empty => ZERO_HASH,
        StreamData::Blob(h) => *h,
        StreamData::New(c) => hashes.get(&key(c)).map_or(ZERO_HASH, |x| x.0),
    }
}

/// Fill each record's hash and stream entries the way WIMGAPI lays them out:
/// a plain file keeps its data hash in the dentry; a file with named streams
/// or a reparse point with data lists every stream as an extra entry
/// (reparse data first, then the unnamed data) with a zero dentry hash.
pub(super) fn lay_out_streams(img: &mut NewImage, hashes: &Hashes) {
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

/// Write `img` into the WIM `lock` holds as image `index` (1-based), or as
/// a new image. The caller holds the WIM's lock for the whole time.
pub fn append_image(
    lock: &WimLock,
    index: u32,
    img: NewImage,
    opts: &CommitOptions,
    progress: &(dyn Fn(Phase, u64) + Sync),
) -> Result<CommitReport> {
    append_image_with(lock, index, img, opts, progress, &mut |_| Ok(()))
}

/// [`append_image`], calling `before_header` with what the write will
/// land once everything but the header is written and synced. An error
/// from it aborts the write (the WIM is put back as it was).
pub fn append_image_with(
    lock: &WimLock,
    index: u32,
    mut img: NewImage,
    opts: &CommitOptions,
    progress: &(dyn Fn(Phase, u64) + Sync),
    before_header: &mut dyn FnMut(&Landing) -> Result<()>,
) -> Result<CommitReport> {
    let mut w = WimWriter::append(lock, opts.check)?;
    let count = w.image_count();
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
    let (hashes, held) = hash_contents(&img, 0, progress)?;
    lay_out_streams(&mut img, &hashes);
    let md = ImageMetadata::from_records(&img.security, &img.records);
    let md_hash = md.sha1();

    // 2. The other images' blob references (a damaged image fails here,
    // before anything is written).
    let (wim_has_integrity, unchanged) = {
        let wim = w
            .base()
            .ok_or_else(|| Error::Other("internal: no base WIM".into()))?;
        (
            wim.header.integrity.size_in_wim > 0,
            !opts.new_image
                && wim
                    .metadata
                    .get(target as usize - 1)
                    .is_some_and(|m| m.hash == md_hash),
        )
    };
    // An XML element already numbered like the new image (a stale one) is
    // updated instead of adding another.
    let stale = opts.new_image && w.update_image_xml(target, &mut |_| {});
    if opts.new_image {
        w.add_image(md, (!stale).then(|| xml::Element::new("IMAGE")));
    } else {
        w.replace_image(target, md)?;
    }
    w.prepare()?;

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
                StreamData::New(c) if !w.has_blob(&hash) => new_list.push((hash, c.clone())),
                StreamData::Blob(_) | StreamData::New(_) => {
                    if !w.has_blob(&hash) {
                        return Err(Error::MissingBlob(hex(&hash)));
                    }
                    reused += 1;
                }
                StreamData::Empty => {}
            }
        }
    }

    // Nothing changed: write nothing at all (not even a new XML).
    let adds_integrity = opts.check && !wim_has_integrity;
    if unchanged && new_list.is_empty() && !adds_integrity {
        return Ok(CommitReport {
            image: target,
            reused_blobs: reused,
            file_size: file_len(lock)?,
            nothing_to_commit: true,
            ..CommitReport::default()
        });
    }

    // 4. Store the new blobs, then the image's XML, then the rest.
    let wprog = |n: u64| progress(Phase::Writing, n);
    let list: Vec<(Sha1, &dyn Content)> = new_list
        .iter()
        .map(|(h, c)| (*h, held.content(c)))
        .collect();
    let new_bytes: u64 = list.iter().map(|(_, c)| c.len()).sum();
    w.store_blobs(&list, &wprog)?;
    let (dirs, files, total, hard) = image_stats(&img.records, w.blob_sizes());
    let now = crate::time::now_filetime();
    let described_as_new = opts.new_image && !stale;
    let found = w.update_image_xml(target, &mut |e| {
        fill_image_xml(e, dirs, files, total, hard, now, described_as_new)
    });
    let name = || {
        opts.image_name
            .clone()
            .unwrap_or_else(|| unused_name(&w, target))
    };
    if described_as_new {
        let name = name();
        w.update_image_xml(target, &mut |e| {
            e.set_child_text("NAME", &name);
            if let Some(d) = &opts.image_description {
                e.set_child_text("DESCRIPTION", d);
            }
        });
    } else if !found {
        // The WIM's XML lacks the replaced image: describe it as new.
        let mut e = xml::Element::new("IMAGE");
        fill_image_xml(&mut e, dirs, files, total, hard, now, true);
        e.set_child_text("NAME", &name());
        if let Some(d) = &opts.image_description {
            e.set_child_text("DESCRIPTION", d);
        }
        w.put_image_xml(target, e);
    }
    let done = w.finish(&mut |b| {
        before_header(&Landing {
            image: target,
            metadata_sha1: md_hash,
            blob_table: b.header.blob_table,
        })
    })?;
    Ok(CommitReport {
        image: target,
        new_blobs: new_list.len() as u64,
        new_bytes,
        reused_blobs: reused,
        bytes_added: done.file_size - done.start,
        file_size: done.file_size,
        nothing_to_commit: false,
    })
}

/// "Image N" for the first N from `from` that no image of the WIM is named.
fn unused_name(w: &WimWriter, from: u32) -> String {
    let taken = |cand: &str| {
        w.base()
            .is_some_and(|b| b.image_info.iter().any(|i| i.name.as_deref() == Some(cand)))
    };
    let mut k = from;
    loop {
        let cand = format!("Image {k}");
        if !taken(&cand) {
            return cand;
        }
        k += 1;
    }
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

#[cfg(test)]
mod held_tests {
    use super::{hash_contents, Held, HOLD_BUDGET, HOLD_MAX};
    use crate::newimage::{Content, ImageBuilder, NodeMeta, StreamData};
    use sha1::Digest;
    use std::sync::Arc;

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    }

    /// Contents up to [`HOLD_MAX`] come back in memory with exactly their
    /// bytes, larger ones do not; every hash is the SHA-1 of the bytes, and
    /// what is stored for a content reads the same bytes either way.
    #[test]
    fn small_contents_are_held_with_their_bytes() {
        let sizes = [1usize, 4096, HOLD_MAX as usize, HOLD_MAX as usize + 1];
        let mut b = ImageBuilder::new(NodeMeta::default());
        let root = b.root();
        let mut contents: Vec<(Arc<dyn Content>, Vec<u8>)> = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let v = bytes(n, i as u8);
            let c: Arc<dyn Content> = Arc::new(v.clone());
            b.add_file(
                root,
                &format!("f{i}"),
                &NodeMeta::default(),
                StreamData::New(c.clone()),
            )
            .unwrap();
            contents.push((c, v));
        }
        let img = b.finish();
        let (hashes, held): (_, Held) = hash_contents(&img, HOLD_BUDGET, &|_, _| {}).unwrap();
        for (c, v) in &contents {
            let (hash, size) = hashes[&super::key(c)];
            assert_eq!(size, v.len() as u64);
            let want: [u8; 20] = sha1::Sha1::digest(v).into();
            assert_eq!(hash, want);
            assert_eq!(
                held.0.contains_key(&super::key(c)),
                v.len() as u64 <= HOLD_MAX,
                "held or not, {} bytes",
                v.len()
            );
            let stored = held.content(c);
            let mut got = vec![0u8; v.len()];
            stored.read_at(0, &mut got).unwrap();
            assert_eq!(&got, v);
        }
        // A mount's commit holds nothing (its daemon's memory is bounded).
        let (_, none) = hash_contents(&img, 0, &|_, _| {}).unwrap();
        assert!(none.0.is_empty());
    }
}
