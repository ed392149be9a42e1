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

#[cfg(unix)]
mod capture;
#[cfg(any(target_os = "linux", windows))]
mod commit;
mod images;
mod inspect;
#[cfg(any(target_os = "linux", windows))]
mod mount;
#[cfg(any(target_os = "linux", windows))]
mod orphans;
#[cfg(any(target_os = "linux", windows))]
mod recover;
mod service;
mod split;
#[cfg(any(target_os = "linux", windows))]
mod unmount;
#[cfg(target_os = "linux")]
mod update;

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

/// Heading under which `wimfs help VERB` lists the options every verb
/// takes, apart from the verb's own.
const GLOBAL: &str = "Global options";

#[derive(Parser)]
#[command(
    name = "wimfs",
    version,
    about = "Mount, inspect and service Windows Imaging Format (WIM) images",
    after_help = "IMAGE is a 1-based index or an image name; it may be left out when the WIM \
                  has one image.\nSee `wimfs help VERB` for a verb's options and an example."
)]
struct Cli {
    /// Worker threads for decompression (default: all cores).
    #[arg(long, global = true, value_name = "N", help_heading = GLOBAL)]
    threads: Option<usize>,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show the header, images and compression of a WIM.
    #[command(
        after_help = "Examples:\n  wimfs info install.wim\n  wimfs info install.wim 3 --json\n  \
                            wimfs info win.swm --ref win2.swm --check"
    )]
    Info {
        /// The WIM file (.wim, .esd, or the first .swm of a split set).
        wim: PathBuf,
        /// Show only this image (1-based index or name); default: all.
        image: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Check the integrity table too.
        #[arg(long)]
        check: bool,
        /// Another part of a split WIM (repeat for each part).
        #[arg(long = "ref", value_name = "PART")]
        refs: Vec<PathBuf>,
        /// Set the image's name.
        #[arg(long)]
        name: Option<String>,
        /// Set the image's description.
        #[arg(long)]
        description: Option<String>,
        /// Set the image's FLAGS (edition ID, e.g. Professional).
        #[arg(long)]
        flags: Option<String>,
        /// Make the image the one the WIM boots.
        #[arg(long)]
        boot: bool,
    },
    /// List the files of an image.
    #[command(
        after_help = "A lone argument after WIM is the IMAGE if it names one, else the \
                            PATH (the WIM must then have one image).\n\nExamples:\n  \
                            wimfs dir install.wim 3 /Windows/System32 --detailed\n  \
                            wimfs dir boot.wim /sources"
    )]
    Dir {
        /// The WIM file (.wim, .esd, or the first .swm of a split set).
        wim: PathBuf,
        /// Image (1-based index or name); may be left out when the WIM has one.
        image: Option<String>,
        /// Directory or file to list, from the image's root (default: /).
        path: Option<String>,
        /// Attributes, sizes, hashes, streams, link counts, reparse targets.
        #[arg(long)]
        detailed: bool,
        /// Another part of a split WIM (repeat for each part).
        #[arg(long = "ref", value_name = "PART")]
        refs: Vec<PathBuf>,
    },
    /// Write a file (or `PATH:stream`) of an image to stdout.
    #[command(
        allow_missing_positional = true,
        after_help = "Examples:\n  wimfs cat install.wim 3 /Windows/win.ini\n  \
                      wimfs cat sample.wim /docs/report.txt:Zone.Identifier > zone.txt"
    )]
    Cat {
        /// The WIM file (.wim, .esd, or the first .swm of a split set).
        wim: PathBuf,
        /// Image (1-based index or name); may be left out when the WIM has one.
        image: Option<String>,
        /// File in the image, from its root; `PATH:NAME` for a named stream.
        #[arg(value_name = "PATH[:STREAM]")]
        path: String,
        /// Another part of a split WIM (repeat for each part).
        #[arg(long = "ref", value_name = "PART")]
        refs: Vec<PathBuf>,
    },
    /// Extract an image into a directory.
    #[command(
        allow_missing_positional = true,
        after_help = "DIR is created if missing; an existing DIR must be empty unless \
                      --overwrite is given.\n\nExamples:\n  wimfs apply install.wim 3 /srv/win\n  \
                      wimfs apply rootfs.wim ./out --unix-data"
    )]
    Apply {
        /// The WIM file (.wim, .esd, or the first .swm of a split set).
        wim: PathBuf,
        /// Image (1-based index or name); may be left out when the WIM has one.
        image: Option<String>,
        /// Directory to extract into.
        dir: PathBuf,
        /// Another part of a split WIM (repeat for each part).
        #[arg(long = "ref", value_name = "PART")]
        refs: Vec<PathBuf>,
        /// Restore uid/gid/mode saved with wimlib's --unix-data.
        #[arg(long)]
        unix_data: bool,
        /// Do not write named data streams as user.* xattrs.
        #[arg(long)]
        no_streams: bool,
        /// Extract into a non-empty DIR: what the image holds replaces what is there.
        #[arg(long)]
        overwrite: bool,
    },
    /// Check every blob's SHA-1, the integrity table and the metadata.
    #[command(after_help = "Examples:\n  wimfs verify install.wim\n  \
                            wimfs verify win.swm --ref win2.swm --json")]
    Verify {
        /// The WIM file (.wim, .esd, or the first .swm of a split set).
        wim: PathBuf,
        /// Another part of a split WIM (repeat for each part).
        #[arg(long = "ref", value_name = "PART")]
        refs: Vec<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Mount an image as a directory (FUSE), read-only or with --rw.
    #[cfg(any(target_os = "linux", windows))]
    #[command(
        allow_missing_positional = true,
        after_help = "Examples:\n  wimfs mount install.wim 3 /mnt/win\n  \
                      wimfs mount install.wim 3 /mnt/win --rw\n  \
                      wimfs mount boot.wim /mnt/boot --ref boot2.swm"
    )]
    Mount(mount::MountArgs),
    /// Unmount a directory mounted with `wimfs mount`.
    #[cfg(any(target_os = "linux", windows))]
    #[command(after_help = "Examples:\n  wimfs unmount /mnt/win\n  \
                            wimfs unmount /mnt/win --commit --check\n  \
                            wimfs unmount /mnt/win --discard")]
    Unmount(unmount::UnmountArgs),
    /// List what wimfs has mounted.
    #[cfg(any(target_os = "linux", windows))]
    #[command(after_help = "Examples:\n  wimfs mounts\n  wimfs mounts --json")]
    Mounts(mount::MountsArgs),
    /// Commit the changes of a read-write mount into the WIM and stay mounted.
    #[cfg(any(target_os = "linux", windows))]
    #[command(after_help = "Examples:\n  wimfs commit /mnt/win\n  \
                            wimfs commit /mnt/win --new-image --check")]
    Commit(commit::CommitArgs),
    /// Show (or discard) changes a read-write mount left in its staging.
    #[cfg(any(target_os = "linux", windows))]
    #[command(
        after_help = "Remount with `wimfs mount WIM IMAGE DIR --rw` to resume the changes.\n\n\
                            Examples:\n  wimfs recover install.wim 3\n  \
                            wimfs recover install.wim 3 --discard"
    )]
    Recover(recover::RecoverArgs),
    /// Mount a read-write mount whose daemon died again, resuming its
    /// changes (as DISM /Remount-Image).
    #[cfg(any(target_os = "linux", windows))]
    #[command(after_help = "Examples:\n  wimfs remount /mnt/win\n  \
                            wimfs remount install.wim 3 /mnt/win")]
    Remount(orphans::RemountArgs),
    /// Clear dead mounts and the records of dead mount daemons, keeping
    /// their changes (as DISM /Cleanup-Mountpoints).
    #[cfg(any(target_os = "linux", windows))]
    #[command(after_help = "Example:\n  wimfs cleanup")]
    Cleanup(orphans::CleanupArgs),
    /// Rewrite a WIM without the stale data that commits leave behind.
    #[command(after_help = "Examples:\n  wimfs optimize install.wim\n  \
                            wimfs optimize install.wim --compress lzms --check")]
    Optimize(service::OptimizeArgs),
    /// Copy an image into a new WIM, or into an existing one as a new image.
    #[command(
        allow_missing_positional = true,
        after_help = "Examples:\n  wimfs export install.wim 3 pro.wim\n  \
                      wimfs export install.wim all install.esd --compress lzms\n  \
                      wimfs export pro.wim other.wim --name \"Pro copy\""
    )]
    Export(service::ExportArgs),
    /// Change an image with add/delete/rename commands, without mounting.
    #[cfg(target_os = "linux")]
    #[command(after_help = "Examples:\n  \
                            wimfs update install.wim 3 --command \"add drivers /Windows/INF/mydrv\"\n  \
                            wimfs update install.wim 3 < commands.txt")]
    Update(update::UpdateArgs),
    /// Cut a WIM into parts (.swm) that fit FAT32 media.
    #[command(after_help = "Example:\n  wimfs split install.wim install.swm --part-size 3800")]
    Split(split::SplitArgs),
    /// Put a split WIM's parts back into one WIM.
    #[command(
        after_help = "Example:\n  wimfs join install.wim install.swm install2.swm install3.swm"
    )]
    Join(split::JoinArgs),
    /// Take an image out of a WIM (rebuilt without it unless --soft).
    #[command(
        after_help = "Examples:\n  wimfs delete install.wim 2\n  wimfs delete install.wim \"Windows 11 Home\" --soft"
    )]
    Delete(images::DeleteArgs),
    /// Capture a directory tree into a new WIM.
    #[cfg(unix)]
    #[command(
        after_help = "Examples:\n  wimfs capture ./rootfs rootfs.wim \"Root FS\"\n  \
                            wimfs capture /mnt/ntfs install.esd \"Windows\" --solid --config WimScript.ini"
    )]
    Capture(capture::CaptureArgs),
    /// Capture a directory tree as a new image of an existing WIM.
    #[cfg(unix)]
    #[command(
        after_help = "Example:\n  wimfs append ./drivers-added install.wim \"Pro with drivers\" --description \"Pro + NIC drivers\""
    )]
    Append(capture::CaptureArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell).
    #[command(after_help = "Examples:\n  \
                            wimfs completions bash > ~/.local/share/bash-completion/completions/wimfs\n  \
                            wimfs completions zsh > ~/.zfunc/_wimfs\n  \
                            wimfs completions fish > ~/.config/fish/completions/wimfs.fish")]
    Completions {
        /// The shell to write a completion script for.
        shell: clap_complete::Shell,
    },
    /// Write man pages (wimfs.1 and one per verb) into a directory.
    #[command(hide = true, after_help = "Example:\n  wimfs man target/man")]
    Man {
        /// Directory to write the pages into (created if missing).
        dir: PathBuf,
    },
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
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}{eta_when_known}",
        )
        .map(|s| {
            s.with_key(
                "eta_when_known",
                |st: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    if let Some(eta) = eta_text(st.elapsed(), st.fraction(), st.eta()) {
                        let _ = write!(w, " eta {eta}");
                    }
                },
            )
        })
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// The ETA once it means something: the first rate is measured over a
/// few milliseconds of start-up (opening files, the first solid chunk)
/// and gave estimates like "3w", so nothing is shown before 2 s and 1 %.
fn eta_text(
    elapsed: std::time::Duration,
    fraction: f32,
    eta: std::time::Duration,
) -> Option<String> {
    if elapsed < std::time::Duration::from_secs(2) || !(0.01..1.0).contains(&fraction) {
        return None;
    }
    Some(indicatif::HumanDuration(eta).to_string())
}

fn dispatch(cmd: Cmd) -> Result<i32> {
    match cmd {
        Cmd::Info {
            wim,
            image,
            json,
            check,
            refs,
            name,
            description,
            flags,
            boot,
        } => {
            let props = wimfs::commit::properties::ImageProperties {
                name,
                description,
                flags,
                boot,
            };
            if props.is_empty() {
                inspect::info(&open(&wim, &refs)?, image.as_deref(), json, check)
            } else {
                images::set_properties(&wim, image.as_deref(), &props)
            }
        }
        Cmd::Dir {
            wim,
            image,
            path,
            detailed,
            refs,
        } => {
            let w = open(&wim, &refs)?;
            let (img, path) = dir_args(&w, image, path)?;
            inspect::dir(&w, img, path.as_deref(), detailed)
        }
        Cmd::Cat {
            wim,
            image,
            path,
            refs,
        } => {
            let w = open(&wim, &refs)?;
            let img = image_arg(&w, image.as_deref())?;
            inspect::cat(&w, img, &path)
        }
        Cmd::Apply {
            wim,
            image,
            dir,
            refs,
            unix_data,
            no_streams,
            overwrite,
        } => {
            let w = open(&wim, &refs)?;
            let img = image_arg(&w, image.as_deref())?;
            let how = inspect::ApplyHow {
                unix_data,
                no_streams,
                overwrite,
            };
            inspect::apply(&w, img, &dir, how)
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
        Cmd::Delete(a) => images::delete(a),
        #[cfg(target_os = "linux")]
        Cmd::Update(a) => update::update(a),
        Cmd::Split(a) => split::split(a),
        Cmd::Join(a) => split::join(a),
        #[cfg(unix)]
        Cmd::Capture(a) => capture::capture(a),
        #[cfg(unix)]
        Cmd::Append(a) => capture::append(a),
        Cmd::Completions { shell } => completions(shell),
        Cmd::Man { dir } => man_pages(&dir),
    }
}

/// `dir WIM [IMAGE] [PATH]` with one of the two left out: a lone argument
/// is the image when it names one, and otherwise the path in the WIM's
/// only image, so `wimfs dir boot.wim /sources` works as the README says.
fn dir_args(w: &Wim, image: Option<String>, path: Option<String>) -> Result<(u32, Option<String>)> {
    match (image, path) {
        (Some(i), Some(p)) => Ok((image_arg(w, Some(&i))?, Some(p))),
        (None, _) => Ok((image_arg(w, None)?, None)),
        (Some(lone), None) => match w.resolve_image(&lone) {
            Ok(i) => Ok((i, None)),
            // A number is always meant as an image; a path on a WIM of
            // several images gets the error that says to name one.
            Err(_)
                if !lone.is_empty()
                    && lone.parse::<i64>().is_err()
                    && (w.image_count() == 1 || lone.starts_with(['/', '\\'])) =>
            {
                Ok((image_arg(w, None)?, Some(lone)))
            }
            Err(e) => Err(e.into()),
        },
    }
}

/// `wimfs completions SHELL`: the script, generated from the same clap
/// definition as the parser, so it never lags behind a new flag.
fn completions(shell: clap_complete::Shell) -> Result<i32> {
    use clap::CommandFactory;
    use std::io::Write as _;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "wimfs", &mut script);
    if let Err(e) = std::io::stdout().write_all(&script) {
        stdout_failed(e);
    }
    Ok(0)
}

/// `wimfs man DIR` (hidden; `scripts/man.sh` calls it): one page for
/// wimfs and one per verb, from the clap definition.
fn man_pages(dir: &std::path::Path) -> Result<i32> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
    outln!("man pages written to {}", dir.display());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::{error_text, eta_text};
    use anyhow::Context;
    use std::time::Duration;

    #[test]
    fn eta_waits_for_two_seconds_and_one_percent() {
        let eta = Duration::from_secs(90);
        assert_eq!(eta_text(Duration::from_millis(300), 0.5, eta), None);
        assert_eq!(eta_text(Duration::from_secs(5), 0.005, eta), None);
        assert_eq!(eta_text(Duration::from_secs(5), 1.0, eta), None);
        assert_eq!(
            eta_text(Duration::from_secs(2), 0.01, eta).as_deref(),
            Some("2 minutes")
        );
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

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
