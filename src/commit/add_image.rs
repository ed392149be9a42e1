//! Add a whole new image to a WIM being written, every stream hashed and
//! stored unless the WIM has it: what a capture (from
//! [`crate::newimage::ImageBuilder`]) and an append of a built image do.

use super::append_image::{hash_contents, lay_out_streams, resolve, HOLD_BUDGET};
use super::image_xml::{fill_image_xml, image_stats};
use super::writer::{ImageMetadata, WimWriter};
use super::Phase;
use crate::error::{Error, Result};
use crate::newimage::{Content, NewImage, StreamData};
use crate::wim::bytes::hex;
use crate::wim::{xml, Sha1, ZERO_HASH};
use std::collections::HashSet;

/// Add `img` to `w` as a new image named `name` (with `description`),
/// storing the blobs `w` lacks. Returns the image's index.
pub fn add_new_image(
    w: &mut WimWriter,
    mut img: NewImage,
    name: &str,
    description: Option<&str>,
    progress: &(dyn Fn(Phase, u64) + Sync),
) -> Result<u32> {
    if img.records.is_empty() || !img.records[0].is_dir() {
        return Err(Error::Other(
            "internal: new image has no root directory".into(),
        ));
    }
    let (hashes, held) = hash_contents(&img, HOLD_BUDGET, progress)?;
    lay_out_streams(&mut img, &hashes);
    let mut seen = HashSet::new();
    let mut list: Vec<(Sha1, &dyn Content)> = Vec::new();
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
                StreamData::New(c) => list.push((hash, held.content(c))),
                StreamData::Blob(_) if !w.has_blob(&hash) => {
                    return Err(Error::MissingBlob(hex(&hash)))
                }
                StreamData::Blob(_) | StreamData::Empty => {}
            }
        }
    }
    w.store_blobs(&list, &|n| progress(Phase::Writing, n))?;
    let (dirs, files, total, hard) = image_stats(&img.records, w.blob_sizes());
    let mut e = xml::Element::new("IMAGE");
    fill_image_xml(
        &mut e,
        dirs,
        files,
        total,
        hard,
        crate::time::now_filetime(),
        true,
    );
    e.set_child_text("NAME", name);
    if let Some(d) = description {
        e.set_child_text("DESCRIPTION", d);
    }
    let md = ImageMetadata::from_records(&img.security, &img.records);
    Ok(w.add_image(md, Some(e)))
}
