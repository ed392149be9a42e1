//! Mounts whose daemon died: what DISM users know as orphaned mounts,
//! cleared by `/Cleanup-Mountpoints` and brought back by `/Remount-Image`.
//!
//! A daemon killed (or a machine stopped) leaves up to three things: its
//! record in the registry, a dead mount at the mount point (a FUSE mount
//! whose daemon is gone answers ENOTCONN; a WinFsp volume goes with its
//! process), and, for a read-write mount, the staging with every change
//! that was fsynced or closed. The registry keeps a dead read-write
//! mount's record (`dead-PID-STARTED.json`) while its staging holds
//! changes, so that:
//!
//! - [`cleanup`] clears dead mounts and those records, never the staging
//!   (the changes are the user's; `recover --discard` is how they go);
//! - [`plan_remount`] finds what a dead mount served (from its record, or
//!   from the WIM and image given) and clears the way for a new daemon that
//!   resumes the staging.

use super::adapter::Adapter;
use super::error::{Result, SessionError};
use super::registry::{self, MountRecord};
use crate::sys;
use std::path::{Path, PathBuf};

/// Is the mount at `dir` dead (its daemon gone: ENOTCONN/ECONNABORTED)?
/// A stat alone does not tell: the kernel answers it from attributes it
/// cached (for a year on a read-only mount) without asking the daemon, so
/// opening the directory, which always asks, is tried too.
pub fn is_dead_mount(dir: &Path) -> bool {
    let gone = |r: std::io::Result<()>| matches!(r, Err(e) if sys::is_disconnected(&e));
    gone(std::fs::metadata(dir).map(|_| ())) || gone(std::fs::read_dir(dir).map(|_| ()))
}

/// One thing [`cleanup`] did (or could not do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleared {
    /// A dead mount of ours was taken off its mount point.
    DeadMount { dir: PathBuf },
    /// A dead mount could not be taken off (the reason); `recorded`: one
    /// of this user's dead mounts (otherwise perhaps another user's, which
    /// only they or root can clear).
    DeadMountFailed {
        dir: PathBuf,
        reason: String,
        recorded: bool,
    },
    /// A dead daemon's record was removed; its staging (if any) is kept.
    Record {
        wim: String,
        image: u32,
        mountpoint: String,
        pid: u32,
        staging: Option<String>,
    },
    /// A dead daemon's record was removed because a live mount uses its
    /// staging now (it was remounted with `wimfs mount --rw`).
    Superseded { mountpoint: String, pid: u32 },
}

/// The dead read-write mounts the registry keeps (`wimfs mounts` shows
/// them, to be remounted or cleaned up).
pub fn dead_mounts() -> Vec<MountRecord> {
    registry::dead_records()
        .into_iter()
        .map(|(_, r)| r)
        .collect()
}

/// Clear dead mounts and dead daemons' records (`wimfs cleanup`, as DISM
/// /Cleanup-Mountpoints): every dead mount of ours in the mount table is
/// unmounted (lazily: nothing is served there, nothing can be lost), and
/// every kept record of a dead daemon is removed. Stagings are kept: what
/// was written in them is resumed by `wimfs remount` (or `mount --rw`).
pub fn cleanup(adapter: &dyn Adapter) -> Vec<Cleared> {
    let mut done = Vec::new();
    let dead = registry::dead_records();
    let live = registry::live_mounts();
    // Dead mounts in the mount table, recorded or not (a record of a
    // read-only mount is not kept, its dead mount is).
    let mut dirs: Vec<PathBuf> = sys::mounts()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.fstype == adapter.fstype())
        .map(|m| m.mount_point)
        .collect();
    let recorded: Vec<PathBuf> = dead
        .iter()
        .map(|(_, r)| PathBuf::from(&r.mountpoint))
        .collect();
    dirs.extend(recorded.iter().cloned());
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        if !is_dead_mount(&dir) {
            continue;
        }
        match adapter.unmount_path(&dir, true) {
            Ok(()) => done.push(Cleared::DeadMount { dir }),
            Err(e) => done.push(Cleared::DeadMountFailed {
                recorded: recorded.contains(&dir),
                dir,
                reason: e.to_string(),
            }),
        }
    }
    for (name, r) in dead {
        let in_use = live
            .iter()
            .any(|l| l.staging.is_some() && l.staging == r.staging);
        if let Err(e) = registry::remove_dead_record(&name) {
            log::warn!("cannot remove the record {}: {e}", name.to_string_lossy());
            continue;
        }
        done.push(if in_use {
            Cleared::Superseded {
                mountpoint: r.mountpoint,
                pid: r.pid,
            }
        } else {
            Cleared::Record {
                wim: r.wim,
                image: r.image,
                mountpoint: r.mountpoint,
                pid: r.pid,
                staging: r.staging,
            }
        });
    }
    done
}

/// What `wimfs remount` mounts again: a read-write mount of `image` of
/// `wim` at `dir` resuming the staging `staging`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemountPlan {
    pub wim: PathBuf,
    pub image: u32,
    pub dir: PathBuf,
    pub staging: PathBuf,
}

/// Plan `wimfs remount` (DISM /Remount-Image): the dead read-write mount
/// at `dir` is mounted again on its staging. What it served comes from the
/// dead daemon's record, or from `wim` and `image` when given (after
/// `wimfs cleanup` removed the record); `staging_dir` overrides where the
/// changes are. Refused when a live mount is at `dir`, when there is no
/// staging with changes to bring back, or when the WIM given is not the
/// one recorded. On success the dead mount at `dir` is cleared and the
/// record removed: the caller then mounts as `mount --rw` does.
pub fn plan_remount(
    dir: &Path,
    wim: Option<&Path>,
    image: Option<&str>,
    staging_dir: Option<&Path>,
    adapter: &dyn Adapter,
) -> Result<RemountPlan> {
    let abs = registry::abs_dir(dir);
    if let Some(m) = registry::live_mounts()
        .into_iter()
        .find(|m| Path::new(&m.mountpoint) == abs)
    {
        return Err(SessionError::MountPoint(format!(
            "{} is mounted and its daemon is alive (pid {}, image {} of {}): nothing to remount",
            abs.display(),
            m.pid,
            m.image,
            m.wim
        )));
    }
    let wim_abs = wim.map(|w| w.canonicalize().unwrap_or_else(|_| w.to_path_buf()));
    let record = registry::dead_records().into_iter().rev().find(|(_, r)| {
        Path::new(&r.mountpoint) == abs && wim_abs.as_deref().is_none_or(|w| Path::new(&r.wim) == w)
    });
    let (wim_path, index) = match (&wim_abs, &record) {
        (Some(w), _) => {
            let opened = crate::wim::Wim::open(w, &[])
                .map_err(|e| SessionError::failed(format!("cannot open {}", w.display()), e))?;
            let index = match image {
                Some(i) => opened.resolve_image(i)?,
                None => match (&record, opened.image_count()) {
                    (Some((_, r)), _) => r.image,
                    (None, 1) => 1,
                    (None, n) => {
                        return Err(SessionError::Invalid(format!(
                            "this WIM has {n} images; say which one (a 1-based index or a name)"
                        )))
                    }
                },
            };
            (w.clone(), index)
        }
        (None, Some((_, r))) => (PathBuf::from(&r.wim), r.image),
        (None, None) => {
            return Err(SessionError::NotAMount {
                dir: abs.clone(),
                message: format!(
                    "no dead read-write mount is recorded at {}: give the WIM (and image) it \
                     served, `wimfs remount WIM [IMAGE] {}`",
                    abs.display(),
                    abs.display()
                ),
            })
        }
    };
    let recorded = record
        .as_ref()
        .filter(|(_, r)| r.image == index)
        .and_then(|(_, r)| r.staging.as_ref().map(PathBuf::from));
    let staging = staging_dir
        .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.to_path_buf()))
        .or(recorded)
        .unwrap_or_else(|| super::spec::default_staging(&wim_path, index));
    if crate::overlay::probe(&staging).is_none() {
        return Err(SessionError::Staging {
            refused: false,
            message: format!(
                "no changes to bring back: {} is not a staging of yours (mount the image with \
                 `wimfs mount --rw`)",
                staging.display()
            ),
        });
    }
    if is_dead_mount(&abs) {
        adapter
            .unmount_path(&abs, true)
            .map_err(|e| SessionError::Unmount {
                dir: abs.clone(),
                message: format!("cannot clear the dead mount at {}: {e}", abs.display()),
            })?;
    }
    if let Some((name, _)) = &record {
        let _ = registry::remove_dead_record(name);
    }
    Ok(RemountPlan {
        wim: wim_path,
        image: index,
        dir: abs,
        staging,
    })
}
