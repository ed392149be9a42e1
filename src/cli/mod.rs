//! Argument parsing, messages and progress bars. Errors become one clear
//! line on stderr and a non-zero exit status.

/// `println!` that never panics: a reader that went away (`wimfs info |
/// head`) ends the program quietly, as SIGPIPE ends other tools, and any
/// other failure to write stdout (a full disk) is an error message.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($t)*) {
            $crate::cli::stdout_failed(e);
        }
    }};
}

#[cfg(any(target_os = "linux", windows))]
mod commit;
mod inspect;
#[cfg(any(target_os = "linux", windows))]
mod mount;
#[cfg(any(target_os = "linux", windows))]
mod orphans;
#[cfg(any(target_os = "linux", windows))]
mod recover;
mod service;
#[cfg(any(target_os = "linux", windows))]
mod unmount;

/// Where [`outln!`] goes when stdout cannot be written.
pub(crate) fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        // 128 + SIGPIPE, what a shell shows for a tool the signal ended.
        std::process::exit(141);
    }
    eprintln!("wimfs: error: cannot write to standard output: {e}");
    std::process::exit(1);
}

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use wimfs::wim::Wim;

#[derive(Parser)]
#[command(
    name = "wimfs",
    version,
    about = "Mount, inspect and service Windows Imaging Format (WIM) images"
)]
struct Cli {
    /// Worker threads for decompression (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show the header, images and compression of a WIM.
    Info {
        wim: PathBuf,
        image: Option<String>,
        #[arg(long)]
        json: bool,
        /// Check the integrity table too.
        #[arg(long)]
        check: bool,
        #[arg(long = "ref")]
        refs: Vec<PathBuf>,
    },
    /// List the files of an image.
    Dir {
        wim: PathBuf,
        image: String,
        path: Option<String>,
        /// Attributes, sizes, hashes, streams, link counts, reparse targets.
        #[arg(long)]
        detailed: bool,
        #[arg(long = "ref")]
        refs: Vec<PathBuf>,
    },
    /// Write a file (or `PATH:stream`) of an image to stdout.
    Cat {
        wim: PathBuf,
        image: String,
        path: String,
        #[arg(long = "ref")]
        refs: Vec<PathBuf>,
    },
    /// Extract an image into a directory.
    Apply {
        wim: PathBuf,
        /// IMAGE DIR, or just DIR when the WIM has one image.
        #[arg(num_args = 1..=2, required = true)]
        args: Vec<String>,
        #[arg(long = "ref")]
        refs: Vec<PathBuf>,
        /// Restore uid/gid/mode saved with wimlib's --unix-data.
        #[arg(long)]
        unix_data: bool,
        /// Do not write named data streams as user.* xattrs.
        #[arg(long)]
        no_streams: bool,
    },
    /// Check every blob's SHA-1, the integrity table and the metadata.
    Verify {
        wim: PathBuf,
        #[arg(long = "ref")]
        refs: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Mount an image as a directory (FUSE), read-only or with --rw.
    #[cfg(any(target_os = "linux", windows))]
    Mount(mount::MountArgs),
    /// Unmount a directory mounted with `wimfs mount`.
    #[cfg(any(target_os = "linux", windows))]
    Unmount(unmount::UnmountArgs),
    /// List what wimfs has mounted.
    #[cfg(any(target_os = "linux", windows))]
    Mounts(mount::MountsArgs),
    /// Commit the changes of a read-write mount into the WIM and stay mounted.
    #[cfg(any(target_os = "linux", windows))]
    Commit(commit::CommitArgs),
    /// Show (or discard) changes a read-write mount left in its staging.
    #[cfg(any(target_os = "linux", windows))]
    Recover(recover::RecoverArgs),
    /// Mount a read-write mount whose daemon died again, resuming its
    /// changes (as DISM /Remount-Image).
    #[cfg(any(target_os = "linux", windows))]
    Remount(orphans::RemountArgs),
    /// Clear dead mounts and the records of dead mount daemons, keeping
    /// their changes (as DISM /Cleanup-Mountpoints).
    #[cfg(any(target_os = "linux", windows))]
    Cleanup(orphans::CleanupArgs),
    /// Rewrite a WIM without the stale data that commits leave behind.
    Optimize(service::OptimizeArgs),
    /// Copy an image into a new WIM, or into an existing one as a new image.
    Export(service::ExportArgs),
}

pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let level = if cli.quiet {
        log::LevelFilter::Error
    } else {
        match cli.verbose {
            0 => log::LevelFilter::Warn,
            1 => log::LevelFilter::Info,
            _ => log::LevelFilter::Debug,
        }
    };
    let logger = env_logger::Builder::new()
        .filter_level(level)
        .format_target(false)
        .format_timestamp(None)
        .parse_default_env()
        .build();
    log::set_max_level(logger.filter());
    let _ = log::set_boxed_logger(Box::new(WarnOnce {
        inner: logger,
        seen: std::sync::Mutex::new(std::collections::HashSet::new()),
    }));
    if let Some(n) = cli.threads {
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global();
    }
    match dispatch(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wimfs: error: {}", error_text(&e));
            1
        }
    }
}

/// The logger: env_logger, except that a warning or error already shown
/// is not shown again. The same fact reaches the log from several layers
/// (opening the WIM, loading the image, the verify report); the user
/// needs it once.
const WARNINGS_REMEMBERED: usize = 4096;

struct WarnOnce {
    inner: env_logger::Logger,
    seen: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl log::Log for WarnOnce {
    fn enabled(&self, m: &log::Metadata) -> bool {
        self.inner.enabled(m)
    }
    fn log(&self, r: &log::Record) {
        if !self.inner.matches(r) {
            return;
        }
        if r.level() <= log::Level::Warn {
            // A long-lived mount daemon may warn about many different
            // things: remember a bounded number of them.
            let first = self.seen.lock().map_or(true, |mut s| {
                s.len() >= WARNINGS_REMEMBERED || s.insert(r.args().to_string())
            });
            if !first {
                return;
            }
        }
        self.inner.log(r)
    }
    fn flush(&self) {
        self.inner.flush()
    }
}

/// One line for an error and its causes, outermost first, each thing said
/// once. A cause whose text the line already holds is left out (an error
/// that shows its source in its own message, as `Error::RawIo` does, would
/// otherwise repeat the OS reason), and a path the line already names is
/// not named again by an inner cause ("cannot open X: I/O error on X: ..."
/// becomes "cannot open X: I/O error: ...").
pub(crate) fn error_text(e: &anyhow::Error) -> String {
    // The same text a daemon sends for its errors over the control channel.
    wimfs::session::error_text(&**e)
}

pub(crate) fn open(wim: &std::path::Path, refs: &[PathBuf]) -> Result<Wim> {
    let w = Wim::open(wim, refs).with_context(|| format!("cannot open {}", wim.display()))?;
    for warn in &w.warnings {
        log::warn!("{warn}");
    }
    Ok(w)
}

pub(crate) fn image_arg(w: &Wim, spec: Option<&str>) -> Result<u32> {
    match spec {
        Some(s) => Ok(w.resolve_image(s)?),
        None if w.image_count() == 1 => Ok(1),
        None => anyhow::bail!(
            "this WIM has {} images; say which one (a 1-based index or a name)",
            w.image_count()
        ),
    }
}

/// A byte progress bar on a terminal, hidden otherwise.
pub(crate) fn progress(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn dispatch(cmd: Cmd) -> Result<i32> {
    match cmd {
        Cmd::Info {
            wim,
            image,
            json,
            check,
            refs,
        } => inspect::info(&open(&wim, &refs)?, image.as_deref(), json, check),
        Cmd::Dir {
            wim,
            image,
            path,
            detailed,
            refs,
        } => inspect::dir(&open(&wim, &refs)?, &image, path.as_deref(), detailed),
        Cmd::Cat {
            wim,
            image,
            path,
            refs,
        } => inspect::cat(&open(&wim, &refs)?, &image, &path),
        Cmd::Apply {
            wim,
            args,
            refs,
            unix_data,
            no_streams,
        } => {
            let w = open(&wim, &refs)?;
            let (img, dir) = match args.as_slice() {
                [d] => (image_arg(&w, None)?, PathBuf::from(d)),
                [i, d] => (image_arg(&w, Some(i))?, PathBuf::from(d)),
                _ => anyhow::bail!("usage: wimfs apply WIM [IMAGE] DIR"),
            };
            inspect::apply(&w, img, &dir, unix_data, no_streams)
        }
        Cmd::Verify { wim, refs, json } => inspect::verify(&open(&wim, &refs)?, json),
        #[cfg(any(target_os = "linux", windows))]
        Cmd::Mount(a) => mount::mount(a),
        #[cfg(any(target_os = "linux", windows))]
        Cmd::Unmount(a) => unmount::unmount(a),
        #[cfg(any(target_os = "linux", windows))]
        Cmd::Mounts(a) => mount::mounts(a),
        #[cfg(any(target_os = "linux", windows))]
        Cmd::Commit(a) => commit::commit_cmd(a),
        #[cfg(any(target_os = "linux", windows))]
        Cmd::Recover(a) => recover::recover(a),
        #[cfg(any(target_os = "linux", windows))]
        Cmd::Remount(a) => orphans::remount(a),
        #[cfg(any(target_os = "linux", windows))]
        Cmd::Cleanup(a) => orphans::cleanup(a),
        Cmd::Optimize(a) => service::optimize(a),
        Cmd::Export(a) => service::export(a),
    }
}

#[cfg(test)]
mod tests {
    use super::error_text;
    use anyhow::Context;

    #[test]
    fn error_text_says_each_reason_and_path_once() {
        let io = || std::io::Error::from_raw_os_error(21);
        let e: anyhow::Result<()> = Err(wimfs::Error::RawIo(io())).context("cannot open /tmp");
        assert_eq!(
            error_text(&e.unwrap_err()),
            "cannot open /tmp: I/O error: Is a directory (os error 21)"
        );
        let e: anyhow::Result<()> = Err(wimfs::Error::Io {
            path: "/x/a.wim".into(),
            err: io(),
        })
        .context("cannot open /x/a.wim");
        assert_eq!(
            error_text(&e.unwrap_err()),
            "cannot open /x/a.wim: I/O error: Is a directory (os error 21)"
        );
        // Another path is kept.
        let e: anyhow::Result<()> = Err(wimfs::Error::Io {
            path: "/x/.a.wim.tmp".into(),
            err: io(),
        })
        .context("exporting to /x/a.wim");
        assert_eq!(
            error_text(&e.unwrap_err()),
            "exporting to /x/a.wim: I/O error on /x/.a.wim.tmp: Is a directory (os error 21)"
        );
    }
}
