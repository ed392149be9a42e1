//! Servicing verbs that write WIMs: optimize and export.

use super::{open, progress};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use wimfs::commit::rebuild::{export_append, rebuild, ExportNames, Target};
use wimfs::wim::header::Compression;

#[derive(Args)]
pub struct OptimizeArgs {
    /// The WIM file to rewrite in place (a single file: join a split set
    /// with `export` first).
    wim: PathBuf,
    /// Write an integrity table.
    #[arg(long)]
    check: bool,
    /// Recompress everything with this codec (none, xpress, lzx, lzms).
    #[arg(long, value_name = "CODEC")]
    compress: Option<String>,
}

#[derive(Args)]
pub struct ExportArgs {
    /// The WIM to export from (.wim, .esd, or the first .swm of a split set).
    src: PathBuf,
    /// Image index or name, or "all"; may be left out when SRC has one image.
    image: Option<String>,
    /// The WIM to write: a new file, or an existing WIM to append the image to.
    dst: PathBuf,
    /// Codec of a new destination (none, xpress, lzx, lzms = solid like ESD).
    #[arg(long, value_name = "CODEC")]
    compress: Option<String>,
    /// Write an integrity table.
    #[arg(long)]
    check: bool,
    /// Another part of a split SRC (repeat for each part; all parts joins the set).
    #[arg(long = "ref", value_name = "PART")]
    refs: Vec<PathBuf>,
    /// Name of the exported image (one image only; default: its own name).
    #[arg(long)]
    name: Option<String>,
    /// Description of the exported image (one image only).
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
}

/// Give image `index` of `root` (a WIM's XML) a new name and/or
/// description.
fn rename_in_xml(
    root: &mut wimfs::wim::xml::Element,
    index: u32,
    name: Option<&str>,
    description: Option<&str>,
) {
    for n in root.children.iter_mut() {
        if let wimfs::wim::xml::Node::Elem(e) = n {
            if e.name.eq_ignore_ascii_case("IMAGE")
                && e.attr("INDEX").and_then(|s| s.trim().parse::<u32>().ok()) == Some(index)
            {
                if let Some(v) = name {
                    e.set_child_text("NAME", v);
                }
                if let Some(v) = description {
                    e.set_child_text("DESCRIPTION", v);
                }
            }
        }
    }
}

pub(crate) fn codec(s: &str) -> Result<Compression> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "none" => Compression::None,
        "xpress" | "fast" => Compression::Xpress,
        "lzx" | "maximum" => Compression::Lzx,
        "lzms" | "recovery" | "solid" => Compression::Lzms,
        _ => bail!("unknown compression {s:?} (use none, xpress, lzx or lzms)"),
    })
}

pub fn optimize(a: OptimizeArgs) -> Result<i32> {
    let w = open(&a.wim, &[])?;
    if w.header.total_parts != 1 {
        bail!(
            "{} is part of a split WIM: optimize rewrites one file in place; join the set \
             first (wimfs export {} all JOINED.wim --ref PART2 ...)",
            a.wim.display(),
            a.wim.display()
        );
    }
    let _lock = wimfs::commit::WimLock::acquire(&a.wim)?;
    let target = match &a.compress {
        Some(c) => Target::for_codec(codec(c)?),
        None => Target::same_as(&w),
    };
    let images: Vec<u32> = (1..=w.image_count()).collect();
    let total: u64 = w.blobs.values().map(|b| b.size).sum();
    let pb = progress(total, "optimize");
    let rep = rebuild(&w, &images, &a.wim, target, true, a.check, &|n| pb.inc(n))
        .with_context(|| format!("optimizing {}", a.wim.display()))?;
    pb.finish_and_clear();
    outln!(
        "{}: {} -> {} bytes ({} blobs copied as they were, {} recompressed)",
        a.wim.display(),
        rep.old_size,
        rep.new_size,
        rep.copied_raw,
        rep.recompressed
    );
    Ok(0)
}

pub fn export(a: ExportArgs) -> Result<i32> {
    // With IMAGE optional, `export SRC 2` (DST forgotten) would write a new
    // WIM named "2": a DST that reads as an image, and is not a file, is
    // taken for the mistake it almost surely is.
    if a.image.is_none() && !a.dst.exists() {
        let d = a.dst.to_string_lossy();
        if d.eq_ignore_ascii_case("all") || d.parse::<u32>().is_ok() {
            bail!(
                "{d:?} looks like an IMAGE, not a destination: wimfs export SRC [IMAGE] DST \
                 (to write a WIM named {d:?}, say ./{d})"
            );
        }
    }
    let mut w = open(&a.src, &a.refs)?;
    let spec = a.image.as_deref();
    let images: Vec<u32> = if spec.is_some_and(|s| s.eq_ignore_ascii_case("all")) {
        (1..=w.image_count()).collect()
    } else {
        vec![super::image_arg(&w, spec)?]
    };
    if images.len() > 1 && (a.name.is_some() || a.description.is_some()) {
        bail!("--name and --description need a single image, not all");
    }
    let total: u64 = w.blobs.values().map(|b| b.size).sum();
    let pb = progress(total, "export");
    if a.dst.exists() {
        if a.compress.is_some() {
            bail!(
                "{} exists: an export into it uses its own compression (drop --compress)",
                a.dst.display()
            );
        }
        let names = ExportNames {
            name: a.name.clone(),
            description: a.description.clone(),
        };
        let reps = export_append(&w, &images, &a.dst, a.check, &names, &|_, n| pb.inc(n))
            .with_context(|| format!("exporting into {}", a.dst.display()))?;
        pb.finish_and_clear();
        for r in reps {
            outln!(
                "exported as image {} of {} ({} new blobs, {} bytes added)",
                r.image,
                a.dst.display(),
                r.new_blobs,
                r.bytes_added
            );
        }
    } else {
        let target = match &a.compress {
            Some(c) => Target::for_codec(codec(c)?),
            None => Target::same_as(&w),
        };
        if let [i] = images[..] {
            if a.name.is_some() || a.description.is_some() {
                let root = w
                    .xml
                    .get_or_insert_with(|| wimfs::wim::xml::Element::new("WIM"));
                let has = root.elements().any(|e| {
                    e.name.eq_ignore_ascii_case("IMAGE")
                        && e.attr("INDEX").and_then(|s| s.trim().parse::<u32>().ok()) == Some(i)
                });
                if !has {
                    let mut e = wimfs::wim::xml::Element::new("IMAGE");
                    e.attrs.push(("INDEX".into(), i.to_string()));
                    root.children.push(wimfs::wim::xml::Node::Elem(e));
                }
                rename_in_xml(root, i, a.name.as_deref(), a.description.as_deref());
            }
        }
        let rep = rebuild(&w, &images, &a.dst, target, false, a.check, &|n| pb.inc(n))
            .with_context(|| format!("exporting to {}", a.dst.display()))?;
        pb.finish_and_clear();
        outln!(
            "{}: {} image(s), {} bytes",
            a.dst.display(),
            rep.images,
            rep.new_size
        );
    }
    Ok(0)
}
