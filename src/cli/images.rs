//! `wimfs delete` and `wimfs info WIM IMAGE --name ...`: verbs that change
//! which images a WIM holds and what they are called.

use super::{open, progress};
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// The WIM file.
    wim: PathBuf,
    /// Image index or name.
    image: String,
    /// Only drop the image from the tables (fast; its data stays in the
    /// file until `wimfs optimize`). By default the WIM is rebuilt.
    #[arg(long)]
    soft: bool,
    /// Write an integrity table.
    #[arg(long)]
    check: bool,
}

pub fn delete(a: DeleteArgs) -> Result<i32> {
    let w = open(&a.wim, &[])?;
    let index = w.resolve_image(&a.image)?;
    let total: u64 = w.blobs.values().map(|b| b.size).sum();
    drop(w);
    let pb = progress(if a.soft { 0 } else { total }, "delete");
    let r = wimfs::commit::delete::delete_image(&a.wim, index, a.soft, a.check, &|n| pb.inc(n))
        .with_context(|| format!("deleting image {index} of {}", a.wim.display()))?;
    pb.finish_and_clear();
    outln!(
        "deleted image {} of {}: {} image(s) left, {} -> {} bytes{}",
        r.deleted,
        a.wim.display(),
        r.images_left,
        r.old_size,
        r.new_size,
        if a.soft {
            " (soft: run `wimfs optimize` to shed its data)"
        } else {
            ""
        }
    );
    Ok(0)
}

/// `wimfs info WIM IMAGE --name/--description/--flags/--boot`.
pub fn set_properties(
    wim: &std::path::Path,
    image: Option<&str>,
    props: &wimfs::commit::properties::ImageProperties,
) -> Result<i32> {
    let w = open(wim, &[])?;
    let Some(spec) = image else {
        anyhow::bail!("say which image to change (a 1-based index or a name)");
    };
    let index = w.resolve_image(spec)?;
    drop(w);
    wimfs::commit::properties::set_properties(wim, index, props, false)
        .with_context(|| format!("changing image {index} of {}", wim.display()))?;
    outln!("image {index} of {} changed", wim.display());
    Ok(0)
}
