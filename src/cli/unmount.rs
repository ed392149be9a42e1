//! `wimfs unmount`: which mount, what to do with a read-write mount's
//! changes, and what happened; the checks and the unmount itself are
//! [`wimfs::session::unmount`]'s.

use super::commit::print_report;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use wimfs::platform::Native;
use wimfs::session::control::{self, Request};
use wimfs::session::{registry, unmount, SessionError};

#[derive(Args, Debug)]
pub struct UnmountArgs {
    /// The mount point.
    dir: PathBuf,
    /// Detach now even if files are open (umount -l).
    #[arg(short = 'z', long)]
    lazy: bool,
    /// Read-write mounts: commit the changes into the WIM, then unmount.
    /// One of --commit and --discard is needed while there are changes;
    /// with nothing changed since the mount or its last commit, neither.
    #[arg(long, conflicts_with = "discard")]
    commit: bool,
    /// Read-write mounts: throw the changes away and unmount.
    #[arg(long)]
    discard: bool,
    /// With --commit: write an integrity table (accepted alone, and on a
    /// read-only mount, as wimlib does: then it changes nothing).
    #[arg(long)]
    check: bool,
    /// With --commit: commit even though files are open.
    #[arg(long, requires = "commit")]
    force: bool,
    /// With --commit: add the changed tree as a new image.
    #[arg(long, requires = "commit")]
    new_image: bool,
    /// With --commit: then rewrite the WIM without stale data (optimize).
    #[arg(long, requires = "commit")]
    rebuild: bool,
}

pub fn unmount(a: UnmountArgs) -> Result<i32> {
    // A dead FUSE mount cannot be canonicalized (ENOTCONN): fall back to
    // the absolute path as given.
    let abs = registry::abs_dir(&a.dir);
    let entry = unmount::check_ours(&abs, &Native)?;
    let rwm = entry.as_ref().and_then(|m| m.rw());
    if entry.as_ref().is_some_and(|m| m.is_rw()) && rwm.is_none() {
        bail!(
            "the read-write mount at {} has no control socket",
            abs.display()
        );
    }
    if rwm.is_none() && (a.commit || a.discard || a.check) {
        // As wimlib does: nothing to write, so the flags change nothing.
        let flag = if a.commit {
            "--commit"
        } else if a.discard {
            "--discard"
        } else {
            "--check"
        };
        eprintln!(
            "wimfs: note: {} is a read-only mount: {flag} has nothing to do; unmounting",
            abs.display()
        );
    } else if a.check && !a.commit {
        eprintln!("wimfs: note: --check only applies with --commit; ignored");
    }
    let mut report = None;
    // A read-write mount with nothing changed needs neither flag: the
    // daemon, once unmounted, removes a staging that holds nothing. A
    // change made between this question and the unmount is not lost: the
    // staging then stays, and is said so below.
    let mut unchanged_staging = None;
    if let Some(m) = &rwm {
        if !a.commit && !a.discard {
            let st = control::request(Path::new(&m.socket), &Request::status())?
                .accepted("the daemon refused")?;
            if !st.unchanged {
                bail!(
                    "{} is mounted read-write and has changes: say what to do with them, \
                 `wimfs unmount --commit {}` (write them into the WIM) or \
                 `wimfs unmount --discard {}` (throw them away); \
                 `wimfs commit {}` commits and stays mounted",
                    abs.display(),
                    abs.display(),
                    abs.display(),
                    abs.display()
                );
            }
            unchanged_staging = Some(st.staging.unwrap_or_default());
        } else {
            let req = Request::exit(a.commit, a.check, a.force, a.new_image);
            let r = match control::request(Path::new(&m.socket), &req)?
                .accepted("the daemon refused")
            {
                Ok(r) => r,
                Err(SessionError::Refused(why)) => bail!("{why}; still mounted"),
                Err(e) => return Err(e.into()),
            };
            report = r.report;
        }
    }
    let res = unmount::take_down(&abs, entry.as_ref(), a.lazy, &Native);
    if let Err(e) = res {
        if let Some(m) = &rwm {
            let _ = control::request(Path::new(&m.socket), &Request::cancel());
            if let Some(r) = &report {
                print_report(r, &m.wim);
                eprintln!("wimfs: the changes were committed, but the unmount failed");
            }
        }
        return Err(e.into());
    }
    if let Some(s) = unchanged_staging {
        if !s.is_empty() && Path::new(&s).exists() {
            eprintln!(
                "wimfs: note: changes made while unmounting were kept in {s}: `wimfs mount \
                 --rw` of the same image resumes them, `wimfs recover` shows them"
            );
        } else {
            outln!("nothing was changed; unmounted");
        }
    }
    if let Some(m) = &rwm {
        if let Some(r) = &report {
            print_report(r, &m.wim);
        }
        if a.discard {
            outln!("changes discarded");
        }
        if a.rebuild {
            let p = Path::new(&m.wim);
            let w = super::open(p, &[])?;
            let _lock = wimfs::commit::WimLock::acquire(p)?;
            let images: Vec<u32> = (1..=w.image_count()).collect();
            let rep = wimfs::commit::rebuild::rebuild(
                &w,
                &images,
                p,
                wimfs::commit::rebuild::Target::same_as(&w),
                true,
                a.check,
                &|_| {},
            )
            .with_context(|| format!("optimizing {}", p.display()))?;
            outln!(
                "rebuilt {}: {} -> {} bytes",
                p.display(),
                rep.old_size,
                rep.new_size
            );
        }
    }
    Ok(0)
}
