//! `verify`: check every blob's SHA-1, the integrity table and each image's
//! metadata, reporting every problem rather than the first.

use crate::bulk::{for_each_blob, BlobSink};
use crate::error::{Error, Result, Section};
use crate::image::{Image, StreamKind};
use crate::wim::bytes::hex;
use crate::wim::integrity::{self, IntegrityStatus};
use crate::wim::{Blob, Wim, ZERO_HASH};
use sha1::{Digest, Sha1};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct VerifyReport {
    /// Every resource whose SHA-1 was checked: the blob table's file data
    /// blobs plus the images' metadata resources (`metadata_checked` of
    /// them), so `info`'s "Blobs" (file data only) is this minus those.
    pub blobs_checked: u64,
    /// How many of `blobs_checked` are image metadata resources.
    pub metadata_checked: u64,
    pub bytes_checked: u64,
    pub integrity: Option<bool>,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

struct HashSink<'a> {
    want: [u8; 20],
    h: Sha1,
    size: u64,
    seen: u64,
    progress: &'a (dyn Fn(u64) + Sync),
}

impl BlobSink for HashSink<'_> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.h.update(data);
        self.seen += data.len() as u64;
        (self.progress)(data.len() as u64);
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<()> {
        if self.seen != self.size {
            return Err(Error::corrupt(
                Section::Resource,
                None,
                format!("read {} of {} bytes", self.seen, self.size),
            ));
        }
        if self.h.finalize().as_slice() != self.want {
            return Err(crate::Error::HashMismatch(hex(&self.want)));
        }
        Ok(())
    }
}

/// Total bytes `verify` will hash (for a progress bar).
pub fn total_bytes(wim: &Wim) -> u64 {
    let integ = if wim.header.integrity.size_in_wim > 0 {
        wim.header.blob_table.offset + wim.header.blob_table.size_in_wim
    } else {
        0
    };
    wim.blobs.values().map(|b| b.size).sum::<u64>()
        + wim.metadata.iter().map(|b| b.size).sum::<u64>()
        + integ
}

pub fn verify(wim: &Wim, progress: &(dyn Fn(u64) + Sync)) -> VerifyReport {
    let mut rep = VerifyReport {
        warnings: wim.warnings.clone(),
        problems: wim.problems.clone(),
        ..Default::default()
    };
    // Integrity table.
    let ih = wim.header.integrity;
    if ih.size_in_wim > 0 {
        let p0 = wim.part_source(wim.header.part_number);
        let res = p0.and_then(|src| {
            let r = crate::wim::resource::Resource::normal(
                u64::MAX,
                src.clone(),
                wim.header.part_number,
                ih,
                wim.compression,
                wim.chunk_size,
            )
            .ok()?;
            Some((src.clone(), r))
        });
        match res.map(|(src, r)| {
            if r.uncompressed_size > crate::wim::MAX_TABLE_SIZE {
                return Err(Error::corrupt(
                    Section::Integrity,
                    Some(r.reshdr.offset),
                    "integrity table too large",
                ));
            }
            let t = integrity::parse(&r.read_all()?)?;
            integrity::check(&*src, &wim.header, &t, progress)
        }) {
            Some(Ok(IntegrityStatus::Ok)) => rep.integrity = Some(true),
            Some(Ok(IntegrityStatus::Mismatch(bad))) => {
                rep.integrity = Some(false);
                for (i, s, e) in bad.iter().take(10) {
                    rep.problems.push(format!(
                        "integrity table: chunk {i} (bytes {s:#x}..{e:#x}) does not match"
                    ));
                }
            }
            Some(Ok(IntegrityStatus::Absent)) => {}
            Some(Err(e)) => {
                rep.integrity = Some(false);
                rep.problems
                    .push(format!("integrity table unreadable: {e}"));
            }
            None => rep.problems.push("integrity table unreadable".into()),
        }
    }
    // Metadata: every image must parse and every referenced blob exist.
    let mut referenced = HashSet::new();
    for i in 1..=wim.image_count() {
        match Image::load(wim, i) {
            Ok(img) => {
                for w in &img.warnings {
                    if w.ends_with(crate::image::MISSING) {
                        rep.problems.push(format!("image {i}: {w}"));
                    } else {
                        rep.warnings.push(format!("image {i}: {w}"));
                    }
                }
                for (path, rule) in img.windows_name_problems() {
                    rep.warnings.push(format!(
                        "image {i}: {path:?}: a name Windows cannot create: it {rule}"
                    ));
                }
                for ino in &img.inodes {
                    for s in &ino.streams {
                        if s.hash != ZERO_HASH {
                            referenced.insert(s.hash);
                        }
                    }
                }
            }
            Err(e) => rep.problems.push(format!("image {i}: {e}")),
        }
    }
    let _ = referenced;
    // Every blob's SHA-1 (metadata resources included).
    let mut all: Vec<Arc<Blob>> = wim.blobs.values().cloned().collect();
    all.extend(wim.metadata.iter().filter(|b| b.hash != ZERO_HASH).cloned());
    rep.blobs_checked = all.len() as u64;
    rep.metadata_checked = (all.len() - wim.blobs.len()) as u64;
    rep.bytes_checked = all.iter().map(|b| b.size).sum();
    let errors = for_each_blob(&all, |b| {
        Ok(Box::new(HashSink {
            want: b.hash,
            h: Sha1::new(),
            size: b.size,
            seen: 0,
            progress,
        }) as Box<dyn BlobSink + '_>)
    });
    let bad: HashSet<[u8; 20]> = errors.iter().map(|(h, _)| *h).collect();
    let users = users_of(wim, &bad);
    for (h, e) in errors {
        let used_by = match users.get(&h) {
            Some((u, more)) if !u.is_empty() => {
                let extra = if *more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!(", used by {}{extra}", u.join(", "))
            }
            _ => ", used by no file".to_string(),
        };
        match e {
            crate::Error::HashMismatch(_) => rep.problems.push(format!(
                "corrupt data (SHA-1 mismatch){used_by} (blob {})",
                hex(&h)
            )),
            other => rep.problems.push(format!(
                "unreadable data: {other}{used_by} (blob {})",
                hex(&h)
            )),
        }
    }
    rep.problems.sort();
    rep
}

/// How many files a problem with one blob names (then "and N more").
const USERS_NAMED: usize = 10;

/// Who uses each of the `bad` blobs: "image I: PATH" (with ":STREAM" for a
/// named stream), a few per blob and a count of the rest, so that a
/// corrupt blob is reported by the files it breaks, not only by its SHA-1.
/// Only run when something is bad: the paths cost a pass over every image.
fn users_of(wim: &Wim, bad: &HashSet<[u8; 20]>) -> HashMap<[u8; 20], (Vec<String>, usize)> {
    let mut users: HashMap<[u8; 20], (Vec<String>, usize)> = HashMap::new();
    if bad.is_empty() {
        return users;
    }
    for (i, m) in wim.metadata.iter().enumerate() {
        if bad.contains(&m.hash) {
            let u = users.entry(m.hash).or_default();
            u.0.push(format!("the metadata of image {}", i + 1));
        }
    }
    for i in 1..=wim.image_count() {
        let Ok(img) = Image::load(wim, i) else {
            continue;
        };
        for ino in &img.inodes {
            for s in ino.streams.iter().filter(|s| bad.contains(&s.hash)) {
                let u = users.entry(s.hash).or_default();
                for &d in &ino.dentries {
                    if u.0.len() >= USERS_NAMED {
                        u.1 += 1;
                        continue;
                    }
                    let path = img.path(d);
                    u.0.push(match s.kind {
                        StreamKind::Reparse => format!("image {i}: {path} (reparse data)"),
                        _ if !s.name.is_empty() => format!("image {i}: {path}:{}", s.name),
                        _ => format!("image {i}: {path}"),
                    });
                }
            }
        }
    }
    users
}
