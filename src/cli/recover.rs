//! `wimfs recover`: what a staging left by an earlier read-write mount
//! holds, or delete it.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wimfs::commit::WimLock;
use wimfs::session::registry;
use wimfs::vfs::Vfs;

#[derive(Args, Debug)]
pub struct RecoverArgs {
    /// The WIM file.
    wim: PathBuf,
    /// Image index or name (default: the only image).
    image: Option<String>,
    /// The staging directory, if not the default one.
    #[arg(long, value_name = "DIR")]
    staging_dir: Option<PathBuf>,
    /// Delete the staging (its changes are lost).
    #[arg(long)]
    discard: bool,
}

fn dir_bytes(p: &Path) -> (u64, u64) {
    let mut files = 0;
    let mut bytes = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            // DirEntry::metadata does not follow symlinks.
            if let Ok(m) = e.metadata() {
                if m.is_file() {
                    files += 1;
                    bytes += m.len();
                } else if m.is_dir() {
                    let (f, b) = dir_bytes(&e.path());
                    files += f;
                    bytes += b;
                }
            }
        }
    }
    (files, bytes)
}

/// `wimfs recover`: what a staging left by an earlier mount holds (and
/// which files a resume would cut back), or delete it. Only a real
/// staging of ours is looked into or deleted: a symlink, another user's
/// directory, one writable by others, or a directory that holds anything
/// a staging does not (a home directory given as `--staging-dir`) is
/// refused and left untouched.
pub fn recover(a: RecoverArgs) -> Result<i32> {
    let wim = Arc::new(super::open(&a.wim, &[])?);
    let index = super::image_arg(&wim, a.image.as_deref())?;
    let path = a.wim.canonicalize().unwrap_or_else(|_| a.wim.clone());
    let dir = a
        .staging_dir
        .clone()
        .unwrap_or_else(|| wimfs::session::default_staging(&path, index));
    if let Some(m) = registry::live_rw_mount_of(&path) {
        bail!(
            "{} is mounted read-write at {} (pid {}) and that mount uses its staging; \
             unmount it with --commit or --discard instead",
            m.wim,
            m.mountpoint,
            m.pid
        );
    }
    if std::fs::symlink_metadata(&dir).is_err() {
        outln!(
            "no staging for image {index} of {} (looked in {})",
            path.display(),
            dir.display()
        );
        return Ok(0);
    }
    // A real staging of ours, or a refusal that names the reason.
    wimfs::overlay::check_discardable(&dir)?;
    let Some(id) = wimfs::overlay::probe(&dir) else {
        bail!("{}: cannot read its identity file", dir.display());
    };
    let journal = std::fs::symlink_metadata(dir.join("journal")).map_or(0, |m| m.len());
    let (files, bytes) = dir_bytes(&dir.join("data"));
    let cur = wimfs::overlay::Identity::of(&wim, index);
    let fits = id.guid == cur.guid
        && id.image == cur.image
        && id.metadata_sha1 == cur.metadata_sha1
        && id.blob_table_offset == cur.blob_table_offset
        && id.blob_table_size == cur.blob_table_size;
    outln!("staging {}:", dir.display());
    outln!("  made for image {} of {}", id.image, id.wim);
    outln!("  journal: {journal} bytes of recorded changes");
    outln!("  staged data: {files} file(s), {bytes} bytes");
    let landed = wimfs::overlay::landed_commit(&dir, &wim);
    if fits {
        outln!("  it fits the WIM as it is now");
        // Replay it read-only: name what a resume would cut back.
        let cache = Arc::new(wimfs::cache::ChunkCache::new(64 << 20));
        match Vfs::inspect_staging(wim.clone(), index, cache, &dir) {
            Ok(st) => {
                outln!("  {} change(s) would be resumed", st.records);
                if st.cut.is_empty() {
                    outln!("  no file was cut back: every write had been synced or closed");
                } else {
                    outln!(
                        "  {} file(s) were being written when the mount stopped and are cut \
                         back on resume (data after their last fsync or close is lost):",
                        st.cut.len()
                    );
                    for c in &st.cut {
                        outln!("    {}", c.describe());
                    }
                }
                for w in st
                    .warnings
                    .iter()
                    .filter(|w| !w.contains(" was cut back: "))
                {
                    outln!("  note: {w}");
                }
            }
            Err(e) => outln!("  cannot replay it: {e}"),
        }
    } else if let Some(i) = landed {
        outln!(
            "  its changes were committed (as image {i}) just before the mount stopped: they \
             are in the WIM; `wimfs mount --rw` starts afresh from it"
        );
    } else {
        outln!("  it does NOT fit the WIM as it is now (the WIM was written since)");
    }
    if a.discard {
        // Nobody may be using it: take the WIM's lock while deleting.
        let _lock = WimLock::acquire(&path)?;
        wimfs::overlay::discard(&dir)
            .with_context(|| format!("cannot delete {}", dir.display()))?;
        outln!("discarded");
    } else if fits {
        outln!(
            "mount it again with `wimfs mount --rw` to resume these changes (then commit or \
             discard them), or delete them with `wimfs recover {} {index} --discard`",
            a.wim.display()
        );
    } else {
        outln!(
            "delete it with `wimfs recover {} {index} --discard`",
            a.wim.display()
        );
    }
    Ok(0)
}
