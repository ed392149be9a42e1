//! `delete`: take an image out of a WIM. By default the WIM is rebuilt
//! without it (as wimlib does), so the data only it used is gone; `soft`
//! only drops it from the blob table and XML (a quick append: the bytes
//! stay until an optimize).

use super::rebuild::{rebuild, Target};
use super::writer::WimWriter;
use super::WimLock;
use crate::error::{Error, Result};
use std::path::Path;

/// What a delete did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeleteReport {
    pub deleted: u32,
    pub images_left: u32,
    pub old_size: u64,
    pub new_size: u64,
}

/// Delete image `index` (1-based) of the WIM at `path`. Later images move
/// down by one; the boot index follows its image (and is cleared when the
/// boot image is the one deleted).
pub fn delete_image(
    path: &Path,
    index: u32,
    soft: bool,
    check: bool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<DeleteReport> {
    let lock = WimLock::acquire(path)?;
    let wim = lock.open_wim()?;
    let count = wim.image_count();
    if index == 0 || index > count {
        return Err(Error::NoSuchImage(format!(
            "{index} (this WIM has {count} image(s))"
        )));
    }
    let old_size = lock.file.metadata()?.len();
    let new_size = if soft {
        let mut w = WimWriter::append(&lock, check)?;
        w.drop_image(index)?;
        w.finish(&mut |_| Ok(()))?.file_size
    } else {
        let keep: Vec<u32> = (1..=count).filter(|&i| i != index).collect();
        rebuild(
            &wim,
            &keep,
            path,
            Target::same_as(&wim),
            true,
            check,
            progress,
        )?
        .new_size
    };
    Ok(DeleteReport {
        deleted: index,
        images_left: count - 1,
        old_size,
        new_size,
    })
}
