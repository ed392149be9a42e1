//! `wimfs split` and `wimfs join`: a WIM into parts that fit FAT32 media,
//! and back.

use super::progress;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use wimfs::commit::split;

#[derive(Args, Debug)]
pub struct SplitArgs {
    /// The WIM to split.
    wim: PathBuf,
    /// The first part (e.g. install.swm); the others are install2.swm, ...
    out: PathBuf,
    /// Largest part in MiB (default 4095: fits FAT32's 4 GiB file limit).
    #[arg(long, default_value_t = split::DEFAULT_PART_MIB)]
    part_size: u64,
}

#[derive(Args, Debug)]
pub struct JoinArgs {
    /// The WIM to write.
    out: PathBuf,
    /// Every part of the split set, in any order.
    #[arg(required = true)]
    parts: Vec<PathBuf>,
    /// Write an integrity table.
    #[arg(long)]
    check: bool,
}

pub fn split(a: SplitArgs) -> Result<i32> {
    if a.part_size == 0 {
        anyhow::bail!("--part-size must be at least 1 (MiB)");
    }
    let size = std::fs::metadata(&a.wim)
        .with_context(|| format!("cannot open {}", a.wim.display()))?
        .len();
    let pb = progress(size, "split");
    let r = split::split(&a.wim, &a.out, a.part_size.saturating_mul(1 << 20), &|n| {
        pb.inc(n)
    })
    .with_context(|| format!("splitting {}", a.wim.display()))?;
    pb.finish_and_clear();
    for (p, s) in &r.parts {
        outln!("{}: {s} bytes", p.display());
    }
    outln!("{} split into {} part(s)", a.wim.display(), r.parts.len());
    Ok(0)
}

pub fn join(a: JoinArgs) -> Result<i32> {
    let total: u64 = a
        .parts
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let pb = progress(total, "join");
    let r = split::join(&a.parts, &a.out, a.check, &|n| pb.inc(n))
        .with_context(|| format!("joining into {}", a.out.display()))?;
    pb.finish_and_clear();
    outln!(
        "{}: {} image(s), {} bytes",
        a.out.display(),
        r.images,
        r.new_size
    );
    Ok(0)
}
