//! `wimfs capture` and `wimfs append`: a directory tree into a new WIM, or
//! into an existing one as a new image.

use super::progress;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use wimfs::capture::{CaptureConfig, CaptureOptions};
use wimfs::commit::capture::{self, CaptureReport, CaptureSpec};

#[derive(Args, Debug)]
pub struct CaptureArgs {
    /// The directory to capture (symlinks in it are stored, not followed).
    dir: PathBuf,
    /// The WIM to write (capture: a new file, which replaces one of that
    /// name once complete, as wimlib does; append: an existing WIM).
    wim: PathBuf,
    /// Image name (default: the directory's name).
    name: Option<String>,
    /// Image description.
    #[arg(long)]
    description: Option<String>,
    /// Edition ID stored as the image's FLAGS (e.g. Professional).
    #[arg(long)]
    flags: Option<String>,
    /// none, xpress, lzx (default) or lzms; an append uses the WIM's own.
    #[arg(long)]
    compress: Option<String>,
    /// Solid LZMS resources with 64 MiB chunks, like an ESD file.
    #[arg(long)]
    solid: bool,
    /// Chunk size in bytes (default 32768; 64 MiB with --solid).
    #[arg(long)]
    chunk_size: Option<u32>,
    /// Make the image the one the WIM boots.
    #[arg(long)]
    boot: bool,
    /// Write an integrity table.
    #[arg(long)]
    check: bool,
    /// A WimScript.ini: [ExclusionList], [ExclusionException],
    /// [CompressionExclusionList].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Store UNIX owners, modes, device numbers and xattrs (as wimlib's
    /// --unix-data), and FIFOs, devices and sockets.
    #[arg(long)]
    unix_data: bool,
}

fn spec(a: &CaptureArgs, appending: bool) -> Result<CaptureSpec> {
    let config = match &a.config {
        Some(p) => CaptureConfig::parse(
            &std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
        )
        .with_context(|| format!("in {}", p.display()))?,
        None => CaptureConfig::default(),
    };
    if appending && (a.compress.is_some() || a.solid || a.chunk_size.is_some()) {
        anyhow::bail!(
            "{} exists: an append uses its own compression and chunk size \
             (drop --compress, --solid and --chunk-size)",
            a.wim.display()
        );
    }
    Ok(CaptureSpec {
        name: a.name.clone(),
        description: a.description.clone(),
        flags: a.flags.clone(),
        compression: match &a.compress {
            Some(c) => super::service::codec(c)?,
            None => wimfs::wim::header::Compression::Lzx,
        },
        chunk_size: a.chunk_size,
        solid: a.solid,
        boot: a.boot,
        check: a.check,
        options: CaptureOptions {
            unix_data: a.unix_data,
            config,
            skip_files: Vec::new(),
        },
    })
}

/// A byte bar over hashing and writing (each file's data is read twice).
struct Bar(indicatif::ProgressBar);

impl capture::Progress for Bar {
    fn scanned(&self, cap: &wimfs::capture::Captured) {
        self.0.set_length(cap.bytes.saturating_mul(2));
    }
    fn bytes(&self, _phase: wimfs::commit::Phase, n: u64) {
        self.0.inc(n);
    }
}

fn print(r: &CaptureReport, wim: &std::path::Path, verb: &str) {
    outln!(
        "{verb} image {} \"{}\" of {}: {} directories, {} files, {} bytes of data; \
         {} bytes written (file now {} bytes)",
        r.image,
        r.name,
        wim.display(),
        r.dirs,
        r.files,
        r.bytes,
        r.bytes_added,
        r.file_size
    );
}

pub fn capture(a: CaptureArgs) -> Result<i32> {
    let s = spec(&a, false)?;
    let pb = Bar(progress(0, "capture"));
    let r = capture::capture(&a.dir, &a.wim, &s, &pb)
        .with_context(|| format!("capturing {} into {}", a.dir.display(), a.wim.display()))?;
    pb.0.finish_and_clear();
    print(&r, &a.wim, "captured");
    Ok(0)
}

pub fn append(a: CaptureArgs) -> Result<i32> {
    let s = spec(&a, true)?;
    let pb = Bar(progress(0, "append"));
    let r = capture::append(&a.dir, &a.wim, &s, &pb)
        .with_context(|| format!("appending {} to {}", a.dir.display(), a.wim.display()))?;
    pb.0.finish_and_clear();
    print(&r, &a.wim, "appended");
    Ok(0)
}
