//! `wimfs remount` and `wimfs cleanup`: mounts whose daemon died, as DISM
//! /Remount-Image and /Cleanup-Mountpoints handle them. The decisions are
//! [`wimfs::session::dead`]'s; this parses and prints.

use super::mount::{mount_with, MountArgs};
use anyhow::Result;
use clap::{Args, Parser};
use std::ffi::OsString;
use std::path::PathBuf;
use wimfs::platform::Native;
use wimfs::session::dead::{self, Cleared};

#[derive(Args, Debug)]
pub struct RemountArgs {
    /// DIR (a dead read-write mount still recorded), or WIM [IMAGE] DIR.
    #[arg(num_args = 1..=3, required = true, value_name = "[WIM [IMAGE]] DIR")]
    args: Vec<PathBuf>,
    /// Where the changes are, if not where the dead mount kept them.
    #[arg(long, value_name = "DIR")]
    staging_dir: Option<PathBuf>,
    /// Memory in MiB the mount may use beyond the loaded image.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    cache_size: u64,
    /// Let other users access the mount.
    #[arg(long)]
    allow_other: bool,
}

#[derive(Args, Debug)]
pub struct CleanupArgs {}

/// `wimfs mount ...` parsed on its own, to run a remount as a mount.
#[derive(Parser)]
#[command(name = "wimfs mount", allow_missing_positional = true)]
struct MountOnly {
    #[command(flatten)]
    a: MountArgs,
}

/// `wimfs remount`: mount a dead read-write mount again on its staging
/// (the changes written before the daemon died come back).
pub fn remount(a: RemountArgs) -> Result<i32> {
    let (wim, image, dir) = match a.args.as_slice() {
        [d] => (None, None, d),
        [w, d] => (Some(w.as_path()), None, d),
        [w, i, d] => (Some(w.as_path()), i.to_str(), d),
        _ => anyhow::bail!("usage: wimfs remount [WIM [IMAGE]] DIR"),
    };
    let plan = dead::plan_remount(dir, wim, image, a.staging_dir.as_deref(), &Native)?;
    eprintln!(
        "wimfs: remounting image {} of {} at {} on the staging {}",
        plan.image,
        plan.wim.display(),
        plan.dir.display(),
        plan.staging.display()
    );
    let mut argv: Vec<OsString> = vec![
        "mount".into(),
        "--rw".into(),
        "--staging-dir".into(),
        plan.staging.clone().into(),
        "--cache-size".into(),
        a.cache_size.to_string().into(),
    ];
    if a.allow_other {
        argv.push("--allow-other".into());
    }
    argv.extend([
        plan.wim.clone().into(),
        plan.image.to_string().into(),
        plan.dir.clone().into(),
    ]);
    let parsed = MountOnly::try_parse_from(
        std::iter::once(OsString::from("wimfs-mount")).chain(argv.iter().skip(1).cloned()),
    )?;
    mount_with(parsed.a, argv)
}

/// `wimfs cleanup`: clear dead mounts and dead daemons' records; keep
/// their stagings and say how to bring them back or throw them away.
pub fn cleanup(_a: CleanupArgs) -> Result<i32> {
    let done = dead::cleanup(&Native);
    if done.is_empty() {
        outln!("nothing to clean up: no dead wimfs mounts");
        return Ok(0);
    }
    let mut failed = false;
    for c in &done {
        match c {
            Cleared::DeadMount { dir } => outln!("cleared the dead mount at {}", dir.display()),
            Cleared::DeadMountFailed {
                dir,
                reason,
                recorded: true,
            } => {
                failed = true;
                eprintln!(
                    "wimfs: error: cannot clear the dead mount at {}: {reason}",
                    dir.display()
                );
            }
            Cleared::DeadMountFailed {
                dir,
                reason,
                recorded: false,
            } => outln!(
                "left the dead mount at {} (another user's? only they or root can clear it: \
                 {reason})",
                dir.display()
            ),
            Cleared::Superseded { mountpoint, pid } => outln!(
                "removed the record of dead daemon {pid} at {mountpoint} (its staging is \
                 mounted again)"
            ),
            Cleared::Record {
                wim,
                image,
                mountpoint,
                pid,
                staging,
            } => {
                outln!("removed the record of dead daemon {pid} (image {image} of {wim} at {mountpoint})");
                if let Some(s) = staging {
                    outln!(
                        "  its changes are kept in {s}: `wimfs remount {wim} {image} {mountpoint}` \
                         brings them back, `wimfs recover {wim} {image} --staging-dir {s} \
                         --discard` throws them away"
                    );
                }
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}
