//! `wimfs commit`: ask a read-write mount's daemon to commit, and say what
//! the commit did. The protocol and the commit itself are
//! [`wimfs::session`]'s.

use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};
use wimfs::commit::CommitReport;
use wimfs::platform::Native;
use wimfs::session::control::{self, Request};
use wimfs::session::registry;

pub(crate) fn print_report(r: &CommitReport, wim: &str) {
    if r.nothing_to_commit {
        outln!(
            "nothing to commit: image {} of {} is unchanged (file not written, {} bytes)",
            r.image,
            wim,
            r.file_size
        );
        return;
    }
    outln!(
        "committed image {} of {}: {} new blob(s) ({} bytes of data), {} reused, {} bytes added \
         (file now {} bytes)",
        r.image,
        wim,
        r.new_blobs,
        r.new_bytes,
        r.reused_blobs,
        r.bytes_added,
        r.file_size
    );
}

#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Mount point of a read-write mount.
    dir: PathBuf,
    /// Write an integrity table.
    #[arg(long)]
    check: bool,
    /// Commit even though files are open (what they have written so far).
    #[arg(long)]
    force: bool,
    /// Commit as a new image (the mount then shows the new image).
    #[arg(long)]
    new_image: bool,
}

pub fn commit_cmd(a: CommitArgs) -> Result<i32> {
    let m = registry::rw_mount_at(&a.dir, &Native)?;
    let r = control::request(
        Path::new(&m.socket),
        &Request::commit(a.check, a.force, a.new_image),
    )?
    .accepted("commit failed")?;
    if let Some(rep) = &r.report {
        print_report(rep, &m.wim);
    }
    Ok(0)
}
