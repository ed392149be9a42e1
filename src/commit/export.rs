//! Export: images of one WIM into another. Into a new file it is a
//! [`rebuild`](super::rebuild::rebuild) of the chosen images; into an
//! existing WIM each image is appended as a new one, storing only the blobs
//! the target lacks, read from the source.

use super::rebuild::BlobContent;
use crate::cache::ChunkCache;
use crate::error::{Error, Result};
use crate::wim::{Sha1, Wim};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

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
        reps.push(super::append_image(&lock, 0, img, &opts, progress)?);
    }
    Ok(reps)
}
