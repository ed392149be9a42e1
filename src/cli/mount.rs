//! `wimfs mount`, `wimfs unmount` and `wimfs mounts`.
//!
//! `mount` returns once the mount is live. Unless `--foreground` is given it
//! starts the daemon as a fresh process (fork + exec of this binary, so no
//! thread of the parent, e.g. a rayon pool, is ever carried across a bare
//! fork) in a new session. The daemon reports readiness or the error on its
//! stdout, which is a pipe to the parent; the parent exits 0 only after
//! reading "ready", and prints the daemon's error otherwise.
//!
//! Each daemon records itself in a small JSON state file under /run/wimfs
//! (root) or $XDG_RUNTIME_DIR/wimfs, which `mounts` lists (pruning entries of
//! dead daemons) and `unmount` uses to wait for the daemon to exit.

use super::{image_arg, open, rw};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wimfs::cache::ChunkCache;
use wimfs::image::Image;
use wimfs::platform::linux::{self as fuse, MountConfig};
use wimfs::sys::{self, Access, PrivateDir};
use wimfs::vfs::{Vfs, VfsOptions};

const READY: &str = "wimfs-ready";
const FAILED: &str = "wimfs-error: ";
/// A message for the user from the daemon before it is ready.
const INFO: &str = "wimfs-info: ";

#[derive(Args, Debug)]
pub struct MountArgs {
    /// The WIM file.
    wim: PathBuf,
    /// IMAGE DIR, or just DIR when the WIM has one image. IMAGE is a 1-based
    /// index or an image name.
    #[arg(num_args = 1..=2, required = true, value_name = "[IMAGE] DIR")]
    args: Vec<String>,
    /// Memory in MiB the mount may use beyond the loaded image: the
    /// decompressed-chunk cache and the per-thread working memory.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    cache_size: u64,
    /// Let other users access the mount (needs user_allow_other in
    /// /etc/fuse.conf when not root).
    #[arg(long)]
    allow_other: bool,
    /// Other parts of a split WIM, or WIMs holding shared blobs.
    #[arg(long = "ref", value_name = "PART")]
    refs: Vec<PathBuf>,
    /// Stay in the foreground (Ctrl-C unmounts).
    #[arg(short, long)]
    foreground: bool,
    /// Owner of entries without UNIX data (default: you).
    #[arg(long)]
    uid: Option<u32>,
    /// Group of entries without UNIX data (default: your group).
    #[arg(long)]
    gid: Option<u32>,
    /// Octal mode of directories without UNIX data.
    #[arg(long, value_name = "MODE", default_value = "755")]
    dmode: String,
    /// Octal mode of files without UNIX data.
    #[arg(long, value_name = "MODE", default_value = "644")]
    fmode: String,
    /// Ignore the uid/gid/mode saved by `wimlib-imagex capture --unix-data`.
    #[arg(long)]
    no_unix_data: bool,
    /// Mount read-write: changes go to a staging directory until
    /// `wimfs commit` or `wimfs unmount --commit|--discard`.
    #[arg(long)]
    rw: bool,
    /// Where a read-write mount keeps its changes (default: a hidden
    /// directory beside the WIM, `.NAME.wimfs-staging-INDEX`).
    #[arg(long, value_name = "DIR", requires = "rw")]
    staging_dir: Option<PathBuf>,
    /// Keep owner, group and mode (chmod/chown, new files) in the
    /// UNIX-data tag, as `wimlib-imagex capture --unix-data` does. Accepted
    /// on a read-only mount too (as wimlib does), where it changes nothing:
    /// read-only mounts show the UNIX data anyway unless --no-unix-data.
    #[arg(long, conflicts_with = "no_unix_data")]
    unix_data: bool,
    /// Delete changes left in the staging by an earlier mount and start
    /// clean (otherwise they are resumed).
    #[arg(long, requires = "rw")]
    discard_staging: bool,
    /// Accept new names Windows cannot use (`a:b`, `CON`, `aux.txt`,
    /// `name.`, names differing only in case), for images only Linux will
    /// read. By default they are refused (EINVAL, or EEXIST for a case
    /// collision) and the daemon log names the rule.
    #[arg(long, requires = "rw")]
    posix_names: bool,
    /// Internal: run as the daemon started by `wimfs mount`.
    #[arg(long, hide = true)]
    daemon_child: bool,
}

#[derive(Args, Debug)]
pub struct UnmountArgs {
    /// The mount point.
    dir: PathBuf,
    /// Detach now even if files are open (umount -l).
    #[arg(short = 'z', long)]
    lazy: bool,
    /// Read-write mounts: commit the changes into the WIM, then unmount.
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

#[derive(Args, Debug)]
pub struct MountsArgs {
    #[arg(long)]
    json: bool,
}

/// What a daemon records about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MountState {
    pid: u32,
    wim: String,
    image: u32,
    image_name: Option<String>,
    mode: String,
    mountpoint: String,
    started: u64,
    /// Start time of the daemon (clock ticks after boot, from
    /// /proc/PID/stat): tells the daemon from a later process given the
    /// same pid.
    #[serde(default)]
    start_ticks: Option<u64>,
    /// Read-write mounts: the staging directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    staging: Option<String>,
    /// Read-write mounts: the daemon's control socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    socket: Option<String>,
    /// The mount's device (`major:minor` in /proc/self/mountinfo), so
    /// `unmount` can tell this mount from whatever is mounted there later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dev: Option<String>,
    /// The kernel's mount ID of the mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mount_id: Option<u64>,
}

/// A live read-write mount, as the client side needs it.
pub(crate) struct RwMount {
    pub pid: u32,
    pub wim: String,
    pub mountpoint: String,
    pub socket: String,
}

fn rw_of(m: MountState) -> Option<RwMount> {
    if m.mode != "rw" {
        return None;
    }
    Some(RwMount {
        pid: m.pid,
        wim: m.wim,
        mountpoint: m.mountpoint,
        socket: m.socket?,
    })
}

fn abs_dir(dir: &Path) -> PathBuf {
    dir.canonicalize()
        .or_else(|_| std::path::absolute(dir))
        .unwrap_or_else(|_| dir.to_path_buf())
}

/// The read-write mount at `dir`, or a clear error.
pub(crate) fn rw_mount_at(dir: &Path) -> Result<RwMount> {
    let abs = abs_dir(dir);
    // The daemon whose mount is the one there now (a dying daemon may
    // still be recorded at the same place).
    let dev = sys::mount_at(&abs).map(|m| format!("{}:{}", m.dev.0, m.dev.1));
    let Some(m) = live_mounts()
        .into_iter()
        .filter(|m| Path::new(&m.mountpoint) == abs)
        .find(|m| m.dev.is_none() || m.dev == dev)
    else {
        if let Some(t) = sys::mount_at(&abs).filter(|t| t.fstype == fuse::WIMLIB_FSTYPE) {
            bail!(
                "{} is mounted by wimlib (type {}), not by wimfs: use `wimlib-imagex unmount {} \
                 --commit` to commit its changes",
                abs.display(),
                t.fstype,
                abs.display()
            );
        }
        bail!("{} is not a wimfs mount", abs.display());
    };
    if m.mode != "rw" {
        bail!(
            "{} is a read-only mount; nothing to commit (mount with --rw to make changes)",
            abs.display()
        );
    }
    rw_of(m).with_context(|| format!("the mount at {} has no control socket", abs.display()))
}

/// A live read-write mount of the WIM at `wim` (canonical path), if any.
pub(crate) fn live_rw_mount_of(wim: &Path) -> Option<RwMount> {
    let w = wim.to_string_lossy();
    live_mounts()
        .into_iter()
        .filter(|m| m.wim == w)
        .find_map(rw_of)
}

/// Where this user's daemons record themselves (state, log, control
/// socket). Nothing here is shared between users: see [`state_private`].
fn state_dir() -> PathBuf {
    let euid = sys::euid();
    if euid == 0 {
        return PathBuf::from("/run/wimfs");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("wimfs"),
        _ => std::env::temp_dir().join(format!("wimfs-{euid}")),
    }
}

/// The state directory, created if needed, checked to be this user's own
/// (not a symlink, owned by us, mode 0700 whatever the umask). In a shared
/// /tmp another user could have made `/tmp/wimfs-UID` first to plant state
/// files, sockets or symlinks: that is refused, with what to do about it.
fn state_private() -> Result<PrivateDir> {
    let dir = state_dir();
    PrivateDir::create(&dir).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            format!(
                "; it is not a directory of yours: if someone else created it, remove it (as                  root: rm -r {}), or set XDG_RUNTIME_DIR to a private directory of yours",
                dir.display()
            )
        } else {
            String::new()
        };
        anyhow::anyhow!(
            "cannot use the wimfs state directory {}: {e}{hint}",
            dir.display()
        )
    })
}

/// The state directory for reading, if it exists and is this user's own;
/// a foreign one is reported once and ignored (nothing in it is trusted).
fn state_existing() -> Option<PrivateDir> {
    let dir = state_dir();
    match PrivateDir::open(&dir) {
        Ok(d) => Some(d),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            log::warn!("ignoring the wimfs state directory {}: {e}", dir.display());
            None
        }
    }
}

fn parse_mode(s: &str, what: &str) -> Result<u16> {
    let m = u16::from_str_radix(s.trim_start_matches("0o"), 8)
        .with_context(|| format!("--{what} {s:?} is not an octal mode"))?;
    if m > 0o7777 {
        bail!("--{what} {s:?} is not a mode (at most 7777)");
    }
    Ok(m)
}

fn is_mountpoint(dir: &Path) -> bool {
    sys::mount_at(dir).is_some()
}

/// Check the mount point and FUSE before doing any real work, so the common
/// mistakes get a clear message.
fn check_mountpoint(dir: &Path) -> Result<PathBuf> {
    let md = match fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("mount point {} does not exist", dir.display())
        }
        Err(e) if sys::is_disconnected(&e) => {
            bail!(
                "mount point {} is a dead FUSE mount (transport endpoint is not connected); \
             clear it with `wimfs unmount {}`",
                dir.display(),
                dir.display()
            )
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot use mount point {}", dir.display()))
        }
    };
    if !md.is_dir() {
        bail!("mount point {} is not a directory", dir.display());
    }
    let abs = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve mount point {}", dir.display()))?;
    if is_mountpoint(&abs) {
        let who = live_mounts()
            .into_iter()
            .find(|m| Path::new(&m.mountpoint) == abs)
            .map(|m| format!(" (wimfs: image {} of {}, pid {})", m.image, m.wim, m.pid))
            .unwrap_or_default();
        bail!(
            "mount point {} is busy: something is already mounted there{who}",
            abs.display()
        );
    }
    match fs::metadata("/dev/fuse") {
        Ok(m) if m.file_type().is_char_device() => {}
        Ok(_) => bail!("FUSE is not available: /dev/fuse is not a character device"),
        Err(_) => bail!(
            "FUSE is not available: /dev/fuse does not exist (load the module: modprobe fuse)"
        ),
    }
    Ok(abs)
}

pub fn mount(a: MountArgs) -> Result<i32> {
    let dir = PathBuf::from(a.args.last().map(String::as_str).unwrap_or_default());
    if a.daemon_child {
        return daemon_child(a, None);
    }
    let abs = check_mountpoint(&dir)?;
    parse_mode(&a.dmode, "dmode")?;
    parse_mode(&a.fmode, "fmode")?;
    if a.cache_size == 0 {
        bail!("--cache-size must be at least 1 (MiB)");
    }
    // Refuse a state directory that is not ours before doing anything.
    state_private()?;
    if a.foreground {
        return serve(&a, &abs, None);
    }
    fork_daemon(a, abs)
}

/// Start this binary again as the daemon and wait for its word.
fn spawn_daemon() -> Result<i32> {
    let exe = std::env::current_exe().context("cannot find the wimfs executable")?;
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
    args.insert(at, "--daemon-child".into());
    let mut child = Command::new(exe)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the mount daemon")?;
    let mut msg = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut msg);
    }
    daemon_word(&msg, || {
        child
            .wait()
            .map_or_else(|e| format!("cannot wait: {e}"), |s| s.to_string())
    })
}

/// What the daemon said on its pipe: ready, or the error it met.
fn daemon_word(msg: &str, wait: impl FnOnce() -> String) -> Result<i32> {
    for l in msg.lines().filter_map(|l| l.strip_prefix(INFO)) {
        eprintln!("wimfs: {l}");
    }
    if msg.lines().any(|l| l == READY) {
        return Ok(0);
    }
    let status = wait();
    if let Some(err) = msg.lines().find_map(|l| l.strip_prefix(FAILED)) {
        bail!("{}", err.replace("\\n", "\n"));
    }
    bail!("the mount daemon exited ({status}) before the mount was ready")
}

/// Start the daemon as a fork of this process: a mount returns a couple of
/// milliseconds sooner than by running the binary again, which is much of
/// a small image's mount time. Only while the process has one thread
/// (`--threads` builds the worker pool up front): then the fork is a full
/// copy and may run anything. Otherwise, and if forking fails, the binary
/// is run again.
fn fork_daemon(a: MountArgs, abs: PathBuf) -> Result<i32> {
    let Ok((r, w)) = sys::pipe_cloexec() else {
        return spawn_daemon();
    };
    let pid = match sys::fork_single_threaded() {
        Ok(sys::Forked::Parent(pid)) => pid,
        Ok(sys::Forked::Child) => {
            // The daemon: its stdout is the pipe, stdin and stderr /dev/null
            // (daemon_child sends stderr to its log).
            drop(r);
            let _ = sys::redirect_fd(&w, 1);
            drop(w);
            if let Ok(null) = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                let _ = sys::redirect_fd(&null, 0);
                let _ = sys::redirect_fd(&null, 2);
            }
            let code = daemon_child(a, Some(abs)).unwrap_or(1);
            std::process::exit(code);
        }
        Err(_) => return spawn_daemon(),
    };
    // The parent keeps only the read end.
    drop(w);
    let mut out = fs::File::from(r);
    let mut msg = String::new();
    let _ = out.read_to_string(&mut msg);
    daemon_word(&msg, || format!("status {}", sys::wait_child(pid)))
}

/// FUSE threads: each answers its requests itself, and a read waiting for
/// a chunk holds only its own thread, so have plenty.
fn fuse_threads() -> usize {
    (2 * cores()).clamp(8, 32)
}

/// Cores to size things by. Not `rayon::current_num_threads()`: that starts
/// the pool, which a small image's mount does not otherwise need.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Memory each serving thread needs besides the cache, measured: its
/// allocator arena's share of the cache's bookkeeping and of the small
/// objects of every read (0.4 to 0.7 MiB each after a cat of all of /usr).
const PER_THREAD_BYTES: u64 = 768 << 10;

/// The daemon side: a new session, logging to a file, then serve. Any error
/// before the mount is live goes back to the parent on stdout.
/// `abs`: the mount point as the parent checked it (a forked daemon does
/// not check again).
fn daemon_child(a: MountArgs, abs: Option<PathBuf>) -> Result<i32> {
    // Detach this fresh process (not a group leader) from the terminal's
    // session.
    let _ = sys::new_session();
    let log_name = format!("{}.log", std::process::id());
    let res = state_private().and_then(|sd| {
        // A log of this pid can only be a dead process's (or something
        // planted): replace it, creating the file afresh without following
        // a symlink.
        sd.remove_file(&log_name)
            .and_then(|_| sd.open_file(&log_name, Access::CreateNew))
            .map(|f| {
                // fd 2 then refers to the log file (our stderr was
                // /dev/null).
                let _ = sys::redirect_fd(&f, 2);
            })
            .with_context(|| {
                format!(
                    "cannot create the daemon log {}",
                    sd.join(&log_name).display()
                )
            })?;
        let dir = PathBuf::from(a.args.last().map(String::as_str).unwrap_or_default());
        let abs = match abs {
            Some(abs) => abs,
            None => check_mountpoint(&dir)?,
        };
        let res = serve(&a, &abs, Some(sd.join(&log_name)));
        if res.is_err() {
            let _ = sd.remove_file(&log_name);
        }
        res
    });
    if let Err(e) = &res {
        let one = super::error_text(e).replace('\n', "\\n");
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{FAILED}{one}");
        let _ = out.flush();
    }
    res
}

/// On SIGINT/SIGTERM/SIGHUP, unmount (which ends the session loop) instead
/// of dying and leaving a dead mount behind.
fn unmount_on_signal(unmounter: fuse::Unmounter) {
    let Some(waiter) = sys::install_stop_signals() else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("wimfs-signal".into())
        .spawn(move || {
            if waiter.wait() {
                log::info!("signal received: unmounting");
                match unmounter.unmount() {
                    Ok(true) => {}
                    Ok(false) => log::info!("the mount was already gone: nothing to unmount"),
                    Err(e) => log::error!("unmount failed: {e}"),
                }
            }
        });
}

fn serve(a: &MountArgs, abs: &Path, log: Option<PathBuf>) -> Result<i32> {
    let t0 = Instant::now();
    let wim = Arc::new(open(&a.wim, &a.refs)?);
    let spec = if a.args.len() == 2 {
        Some(a.args[0].as_str())
    } else {
        None
    };
    let index = image_arg(&wim, spec)?;
    let t1 = Instant::now();
    let image =
        Arc::new(Image::load(&wim, index).with_context(|| format!("cannot load image {index}"))?);
    let t2 = Instant::now();
    for w in &image.warnings {
        log::warn!("{w}");
    }
    let (uid, gid) = sys::real_ids();
    let opts = VfsOptions {
        uid: a.uid.unwrap_or(uid),
        gid: a.gid.unwrap_or(gid),
        dir_mode: parse_mode(&a.dmode, "dmode")?,
        file_mode: parse_mode(&a.fmode, "fmode")?,
        use_unix_data: !a.no_unix_data,
        windows_names: !a.posix_names,
        mount_root: abs.to_string_lossy().into_owned(),
        ..VfsOptions::default()
    };
    let cache = Arc::new(ChunkCache::with_reserve(
        a.cache_size.saturating_mul(1 << 20),
        (fuse_threads() + cores()) as u64 * PER_THREAD_BYTES,
    ));
    let wim_path = a.wim.canonicalize().unwrap_or_else(|_| a.wim.clone());
    let mut control = None;
    let vfs = if a.rw {
        let (vfs, ctl) = open_rw(a, &wim, &wim_path, index, image, cache, opts, log.is_some())?;
        control = Some(ctl);
        vfs
    } else {
        Arc::new(Vfs::new(wim.clone(), image, cache, opts))
    };
    let t3 = Instant::now();
    let cfg = MountConfig {
        threads: fuse_threads(),
        allow_other: a.allow_other,
        fsname: fsname(&wim_path, index),
    };
    let mounted = fuse::mount(vfs, abs, &cfg).map_err(|e| mount_error(e, abs))?;
    log::debug!(
        "open {:?}, load image {:?}, vfs {:?}, mount {:?}",
        t1 - t0,
        t2 - t1,
        t3 - t2,
        t3.elapsed()
    );
    let unmounter = mounted.unmounter();
    unmount_on_signal(unmounter.clone());
    let ident = mounted.identity().clone();

    let mut socket = None;
    if let Some((ctl, listener, path)) = control.take() {
        ctl.clone().serve(listener);
        socket = Some((ctl, path));
    }
    let state = MountState {
        pid: std::process::id(),
        wim: wim_path.to_string_lossy().into_owned(),
        image: index,
        image_name: wim.info(index).and_then(|i| i.name.clone()),
        mode: if a.rw { "rw" } else { "ro" }.into(),
        mountpoint: abs.to_string_lossy().into_owned(),
        start_ticks: start_ticks(std::process::id()),
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        staging: socket
            .as_ref()
            .map(|(c, _)| c.staging.display().to_string()),
        socket: socket.as_ref().map(|(_, p)| p.display().to_string()),
        dev: Some(format!("{}:{}", ident.dev.0, ident.dev.1)),
        mount_id: Some(ident.mount_id),
    };
    let state_file = write_state(&state);
    if let (Some((ctl, _)), Some(p)) = (&socket, &state_file) {
        *ctl.state_file.lock() = Some(p.clone());
    }

    if log.is_some() {
        // Tell the parent, then let go of its pipe and of the working
        // directory.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{READY}");
        let _ = out.flush();
        if let Ok(null) = fs::OpenOptions::new().write(true).open("/dev/null") {
            // fd 1 becomes /dev/null, closing the pipe.
            let _ = sys::redirect_fd(&null, 1);
        }
        let _ = std::env::set_current_dir("/");
    } else {
        eprintln!(
            "wimfs: image {index} of {} mounted at {} (Ctrl-C to unmount)",
            a.wim.display(),
            abs.display()
        );
    }

    let res = mounted.run();
    // The session is over: normally because the filesystem was unmounted
    // (by `wimfs unmount`, a signal, or from outside). Unmount only if the
    // mount point still holds this daemon's own mount (the session failed
    // while mounted); whatever else is mounted there now is left alone.
    if let Some(ms) = std::env::var("WIMFS_TEST_EXIT_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        // Tests: make "something else was mounted there meanwhile" certain.
        std::thread::sleep(Duration::from_millis(ms));
    }
    if let Err(e) = unmounter.unmount() {
        log::error!("cannot unmount {}: {e}", abs.display());
    }
    if let Some((ctl, sock)) = &socket {
        let _ = fs::remove_file(sock);
        if ctl
            .discard_at_exit
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            match wimfs::overlay::discard(&ctl.staging) {
                Ok(()) => log::info!("staging {} discarded", ctl.staging.display()),
                Err(e) => log::error!("cannot discard {}: {e}", ctl.staging.display()),
            }
        } else if let Err(e) = ctl.vfs.sync() {
            log::error!("cannot sync the staging at unmount: {e}");
        } else if staging_is_empty(&ctl.staging) {
            // Nothing changed since the mount or the last commit: nothing
            // to resume, so leave nothing behind.
            let _ = wimfs::overlay::discard(&ctl.staging);
        }
    }
    if let Some(p) = &state_file {
        let _ = fs::remove_file(p);
    }
    if let Some(l) = &log {
        // Keep the log only when something went wrong (fuser's own warning
        // about unmounting an already unmounted mount is not).
        if res.is_ok() && !log_has_errors(l) {
            let _ = fs::remove_file(l);
        }
    }
    res.context("the FUSE session ended with an error")?;
    Ok(0)
}

/// A staging that holds no change: an empty journal and no staged data.
fn staging_is_empty(dir: &Path) -> bool {
    let journal_empty = fs::metadata(dir.join("journal"))
        .is_ok_and(|m| m.len() <= wimfs::overlay::journal::MAGIC.len() as u64);
    let no_data = fs::read_dir(dir.join("data")).map_or(true, |mut d| d.next().is_none());
    journal_empty && no_data
}

type ControlParts = (Arc<rw::Control>, std::os::unix::net::UnixListener, PathBuf);

/// A read-write vfs: the WIM's lock (held for the daemon's life), the
/// staging (resumed or fresh) and the control socket.
#[allow(clippy::too_many_arguments)]
fn open_rw(
    a: &MountArgs,
    wim: &Arc<wimfs::wim::Wim>,
    wim_path: &Path,
    index: u32,
    image: Arc<Image>,
    cache: Arc<ChunkCache>,
    mut opts: VfsOptions,
    daemon: bool,
) -> Result<(Arc<Vfs>, ControlParts)> {
    if !a.refs.is_empty() || wim.parts.len() > 1 {
        bail!("a split WIM (or one with --ref) cannot be mounted read-write; join it first");
    }
    let lock = wimfs::commit::WimLock::acquire(wim_path)?;
    lock.matches(wim)?;
    let staging = match &a.staging_dir {
        Some(d) => std::path::absolute(d).unwrap_or_else(|_| d.clone()),
        None => rw::default_staging(wim_path, index),
    };
    let say = |m: &str| {
        if daemon {
            let mut out = std::io::stdout();
            let _ = writeln!(out, "{INFO}{m}");
            let _ = out.flush();
        } else {
            eprintln!("wimfs: {m}");
        }
    };
    if a.discard_staging && wimfs::overlay::probe(&staging).is_some() {
        wimfs::overlay::discard(&staging)
            .with_context(|| format!("cannot discard the staging {}", staging.display()))?;
        say(&format!(
            "discarded the changes of an earlier mount in {}",
            staging.display()
        ));
    }
    opts.store_unix_data = a.unix_data;
    let (vfs, status) = Vfs::open_rw(wim.clone(), image, cache, opts, &staging).map_err(|e| {
        if matches!(e, wimfs::overlay::StagingError::Refused(_)) {
            // A staging that is not safely ours is never discarded or
            // resumed: the way round it is a directory of one's own.
            anyhow::anyhow!(
                "{e}\n(give a directory of your own with --staging-dir DIR, or have the \
                 owner remove {})",
                staging.display()
            )
        } else {
            anyhow::anyhow!(
                "{e}\n(see what it holds with `wimfs recover {} {index}`, or start clean with \
                 --discard-staging)",
                wim_path.display()
            )
        }
    })?;
    if status.resumed {
        say(&format!(
            "found staging with changes from an earlier mount, resuming ({} changes, in {})",
            status.records,
            staging.display()
        ));
    }
    for w in &status.warnings {
        say(&format!("staging: {w}"));
    }
    let vfs = Arc::new(vfs);
    let sd = state_private()?;
    let name = format!("{}.sock", std::process::id());
    let sock = sd.join(&name);
    // Mode 0600 in a 0700 directory: only this user (and root) can even
    // connect; the daemon checks each peer's uid as well.
    let listener = sys::bind_private_socket(&sd, &name)
        .with_context(|| format!("cannot create the control socket {}", sock.display()))?;
    let ctl = Arc::new(rw::Control {
        vfs: vfs.clone(),
        lock,
        index: parking_lot::Mutex::new(index),
        staging,
        discard_at_exit: std::sync::atomic::AtomicBool::new(false),
        state_file: parking_lot::Mutex::new(None),
        owner: sys::euid(),
    });
    Ok((vfs, (ctl, listener, sock)))
}

/// The mount's source as /proc/mounts shows it: `wimfs:WIM:IMAGE`, so a
/// wimfs mount says what it serves (commas and spaces would split the
/// mount options).
fn fsname(wim: &Path, index: u32) -> String {
    format!("wimfs:{}:{index}", wim.display()).replace([',', ' '], "_")
}

/// Does a daemon log report a real error? (A reply to a request the kernel
/// already gave up on, e.g. during a lazy unmount, is not one.)
fn log_has_errors(p: &Path) -> bool {
    fs::read_to_string(p).is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("[ERROR") && !l.contains("Failed to send FUSE reply"))
    })
}

fn mount_error(e: std::io::Error, dir: &Path) -> anyhow::Error {
    let msg = e.to_string();
    let hint = match sys::mount_error_kind(&e) {
        sys::MountErrorKind::Busy => " (the mount point is busy)",
        sys::MountErrorKind::Permission => {
            " (permission denied: is fusermount3 installed and setuid?)"
        }
        sys::MountErrorKind::NoDevice => " (is the fuse module loaded and fusermount3 installed?)",
        sys::MountErrorKind::Other => "",
    };
    anyhow::anyhow!("cannot mount at {}: {msg}{hint}", dir.display())
}

/// After a commit made the mount serve another image (`--new-image`):
/// keep what `wimfs mounts` shows true.
pub(crate) fn set_state_image(path: &Path, image: u32, image_name: Option<String>) {
    let Some(mut s) = state_existing().and_then(|d| {
        let name = path.file_name()?;
        read_state(&d, name)
    }) else {
        return;
    };
    s.image = image;
    s.image_name = image_name;
    let _ = write_state(&s);
}

/// A state file of the private state directory (owner checked, no
/// symlink followed).
fn read_state(dir: &PrivateDir, name: &std::ffi::OsStr) -> Option<MountState> {
    let mut b = Vec::new();
    dir.open_file(name, Access::Read)
        .ok()?
        .read_to_end(&mut b)
        .ok()?;
    serde_json::from_slice(&b).ok()
}

fn write_state(s: &MountState) -> Option<PathBuf> {
    let dir = match state_private() {
        Ok(d) => d,
        Err(e) => {
            log::warn!("{e:#}; `wimfs mounts` will not list this mount");
            return None;
        }
    };
    let name = format!("{}.json", s.pid);
    let tmp = format!(".{}.json.tmp", s.pid);
    let path = dir.join(&name);
    let body = serde_json::to_vec_pretty(s).ok()?;
    let res = dir
        .remove_file(&tmp)
        .and_then(|_| dir.open_file(&tmp, Access::CreateNew))
        .and_then(|mut f| f.write_all(&body))
        .and_then(|_| dir.rename(&tmp, &name));
    if let Err(e) = res {
        log::warn!(
            "cannot write {}: {e}; `wimfs mounts` will not list this mount",
            path.display()
        );
        return None;
    }
    Some(path)
}

/// Start time (field 22 of /proc/PID/stat) of a running, non-zombie process.
fn start_ticks(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    if f.first() == Some(&"Z") {
        return None;
    }
    f.get(19)?.parse().ok()
}

/// Is the daemon that wrote `s` still running? A state file is only a
/// claim: the process must be this user's, a wimfs process, and the one
/// that started at the recorded time (not a later one given the same pid).
fn daemon_alive(s: &MountState) -> bool {
    alive(s.pid)
        && match s.start_ticks {
            Some(t) => start_ticks(s.pid) == Some(t),
            None => true,
        }
}

/// The name the kernel gives processes of this binary (`comm`: the file
/// name, cut to 15 bytes).
fn own_comm() -> String {
    let name = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "wimfs".into());
    name.chars().take(15).collect()
}

/// Was `pid` started as `wimfs ... mount ...` (a daemon's command line
/// is that of the `wimfs mount` it was forked or started from)?
fn is_mount_cmdline(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|b| b.split(|c| *c == 0).skip(1).any(|a| a == b"mount"))
}

/// Is process `pid` a zombie whose other threads still run? Only asked
/// of a process that was this user's daemon a moment ago.
fn threads_left(pid: u32) -> bool {
    let zombie = fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z"));
    match zombie {
        Err(_) => false,
        // Running normally: `alive` answers for that case.
        Ok(false) => false,
        Ok(true) => fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|d| d.count() > 1),
    }
}

/// Is `pid` a live wimfs process of this user's?
fn alive(pid: u32) -> bool {
    if sys::process_uid(pid) != Some(sys::euid()) {
        return false;
    }
    if !sys::process_exists(pid) {
        return false;
    }
    // Guard against a recycled pid.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            !s.contains(") Z")
                && fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| {
                    let c = c.trim_end_matches('\n');
                    c == "wimfs" || c == own_comm()
                })
                && is_mount_cmdline(pid)
        }
        Err(_) => false,
    }
}

/// Mounts of live daemons; state files of dead ones are removed. Only a
/// state directory of this user's is read (see [`state_existing`]).
fn live_mounts() -> Vec<MountState> {
    let Some(dir) = state_existing() else {
        return Vec::new();
    };
    let Ok(names) = dir.names() else {
        return Vec::new();
    };
    let mut v = Vec::new();
    for name in names {
        let p = Path::new(&name);
        let ext = p.extension().and_then(|x| x.to_str());
        let pid = p
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u32>().ok());
        if ext == Some("log") {
            // Logs of dead daemons are kept for a day, and only when they
            // report an error.
            let path = dir.join(&name);
            let old = fs::symlink_metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(24 * 3600));
            if pid.is_some_and(|pid| !alive(pid)) && (old || !log_has_errors(&path)) {
                let _ = dir.remove_file(&name);
            }
            continue;
        }
        if ext != Some("json") {
            continue;
        }
        let Some(s) = read_state(&dir, &name) else {
            let _ = dir.remove_file(&name);
            continue;
        };
        if Some(s.pid) == pid && daemon_alive(&s) {
            v.push(s);
        } else {
            let _ = dir.remove_file(&name);
            if let Some(pid) = pid.filter(|p| !alive(*p)) {
                let _ = dir.remove_file(format!("{pid}.log"));
                let _ = dir.remove_file(format!("{pid}.sock"));
            }
        }
    }
    v.sort_by(|a, b| a.mountpoint.cmp(&b.mountpoint));
    v
}

pub fn mounts(a: MountsArgs) -> Result<i32> {
    let v = live_mounts();
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    // wimlib's mounts look alike (`wimfs` in their type): name them, so
    // nobody takes them for ours.
    let wimlib: Vec<sys::MountEntry> = sys::mounts()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.fstype == fuse::WIMLIB_FSTYPE)
        .collect();
    let print_wimlib = || {
        for m in &wimlib {
            outln!(
                "not wimfs's: {} is a wimlib mount (type {}); unmount it with \
                 `wimlib-imagex unmount {}`",
                m.mount_point.display(),
                m.fstype,
                m.mount_point.display()
            );
        }
    };
    if v.is_empty() {
        outln!("No wimfs mounts.");
        print_wimlib();
        return Ok(0);
    }
    let img = |m: &MountState| match &m.image_name {
        Some(n) => format!("{} ({n})", m.image),
        None => m.image.to_string(),
    };
    let ww = v.iter().map(|m| m.wim.len()).max().unwrap_or(0).max(3);
    let iw = v.iter().map(|m| img(m).len()).max().unwrap_or(0).max(5);
    outln!(
        "{:<ww$}  {:<iw$}  MODE  {:>7}  MOUNT POINT",
        "WIM",
        "IMAGE",
        "PID"
    );
    for m in &v {
        outln!(
            "{:<ww$}  {:<iw$}  {:<4}  {:>7}  {}",
            m.wim,
            img(m),
            m.mode,
            m.pid,
            m.mountpoint
        );
        if let Some(s) = &m.staging {
            outln!("{:<ww$}  {:<iw$}  staging: {s}", "", "");
        }
    }
    print_wimlib();
    Ok(0)
}

pub fn unmount(a: UnmountArgs) -> Result<i32> {
    // A dead FUSE mount cannot be canonicalized (ENOTCONN): fall back to
    // the absolute path as given.
    let abs = a
        .dir
        .canonicalize()
        .or_else(|_| std::path::absolute(&a.dir))
        .unwrap_or_else(|_| a.dir.clone());
    let entries: Vec<MountState> = live_mounts()
        .into_iter()
        .filter(|m| Path::new(&m.mountpoint) == abs)
        .collect();
    let entry = check_ours(&abs, entries)?;
    let rwm = entry.clone().and_then(rw_of);
    if entry.as_ref().is_some_and(|m| m.mode == "rw") && rwm.is_none() {
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
    if let Some(m) = &rwm {
        if !a.commit && !a.discard {
            bail!(
                "{} is mounted read-write: say what to do with the changes, \
                 `wimfs unmount --commit {}` (write them into the WIM) or \
                 `wimfs unmount --discard {}` (throw them away); \
                 `wimfs commit {}` commits and stays mounted",
                abs.display(),
                abs.display(),
                abs.display(),
                abs.display()
            );
        }
        let req = rw::Request {
            op: "exit".into(),
            action: Some(if a.commit { "commit" } else { "discard" }.into()),
            check: a.check,
            force: a.force,
            new_image: a.new_image,
        };
        let r = rw::request(Path::new(&m.socket), &req)?;
        if !r.ok {
            bail!(
                "{}; still mounted",
                r.error.unwrap_or_else(|| "the daemon refused".into())
            );
        }
        report = r.report;
    }
    let res = do_unmount(&a, &abs, entry.as_ref());
    if let Err(e) = res {
        if let Some(m) = &rwm {
            let _ = rw::request(
                Path::new(&m.socket),
                &rw::Request {
                    op: "cancel".into(),
                    ..rw::Request::default()
                },
            );
            if let Some(r) = &report {
                rw::print_report(r, &m.wim);
                eprintln!("wimfs: the changes were committed, but the unmount failed");
            }
        }
        return Err(e);
    }
    if let Some(m) = &rwm {
        if let Some(r) = &report {
            rw::print_report(r, &m.wim);
        }
        if a.discard {
            outln!("changes discarded");
        }
        if a.rebuild {
            let p = Path::new(&m.wim);
            let w = open(p, &[])?;
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

/// Is the mount at `abs` one `wimfs unmount` may take down? Yes for the
/// mount of a live daemon of this user's (the same mount it recorded), and
/// for a dead wimfs mount (its daemon gone: ENOTCONN), which only needs
/// clearing. Anything else is refused, naming what it is and how to
/// unmount it: a wimlib mount must go through `wimlib-imagex unmount`,
/// or a read-write one loses its changes.
/// `entries`: the live daemons recorded at `abs` (a dying one may still be
/// recorded beside the one mounted there now).
fn check_ours(abs: &Path, entries: Vec<MountState>) -> Result<Option<MountState>> {
    let Some(m) = sys::mount_at(abs) else {
        bail!("{} is not mounted", abs.display());
    };
    let dev = format!("{}:{}", m.dev.0, m.dev.1);
    if let Some(e) = entries.into_iter().find(|e| match &e.dev {
        Some(d) => *d == dev,
        None => m.fstype.starts_with("fuse"),
    }) {
        return Ok(Some(e));
    }
    // ENOTCONN, or ECONNABORTED once the kernel aborted the connection
    // (the daemon was killed).
    let dead = matches!(fs::metadata(abs), Err(e) if sys::is_disconnected(&e));
    if m.fstype == fuse::WIMLIB_FSTYPE {
        if dead {
            bail!(
                "{} is a dead wimlib mount (type {}, daemon gone); clear it with \
                 `fusermount3 -u {}`",
                abs.display(),
                m.fstype,
                abs.display()
            );
        }
        bail!(
            "{} is mounted by wimlib (type {}, source {}), not by wimfs: unmount it with \
             `wimlib-imagex unmount {}` (add --commit to keep the changes of a read-write \
             mount)",
            abs.display(),
            m.fstype,
            m.source,
            abs.display()
        );
    }
    if m.fstype == fuse::FSTYPE {
        if dead {
            return Ok(None);
        }
        bail!(
            "{} is a wimfs mount ({}) without a live daemon of yours recorded for it (another \
             user's mount?): unmount it as the user who mounted it",
            abs.display(),
            m.source
        );
    }
    bail!(
        "{} is not a wimfs mount (type {}, source {}): refusing to unmount it; use umount",
        abs.display(),
        m.fstype,
        m.source
    )
}

fn do_unmount(a: &UnmountArgs, abs: &Path, entry: Option<&MountState>) -> Result<()> {
    // A commit may have taken a while: check again, right before, that
    // the mount there is still the daemon's.
    if let Some(d) = entry.and_then(|e| e.dev.as_ref()) {
        let now = sys::mount_at(abs).map(|m| format!("{}:{}", m.dev.0, m.dev.1));
        if now.as_ref() != Some(d) {
            bail!(
                "{} is no longer the wimfs mount it was (unmounted from outside, or something \
                 else is mounted there now): not unmounting it",
                abs.display()
            );
        }
    }
    let mut last_err = String::new();
    let mut done = false;
    for bin in ["fusermount3", "fusermount"] {
        let mut c = Command::new(bin);
        c.arg(if a.lazy { "-uz" } else { "-u" }).arg("--").arg(abs);
        match c.output() {
            Ok(o) if o.status.success() => {
                done = true;
                break;
            }
            Ok(o) => {
                last_err = String::from_utf8_lossy(&o.stderr).trim().to_string();
                break;
            }
            Err(e) => last_err = format!("cannot run {bin}: {e}"),
        }
    }
    if !done {
        let p = std::ffi::CString::new(abs.to_string_lossy().as_bytes())
            .context("bad mount point path")?;
        match sys::umount2_plain(&p, a.lazy) {
            Ok(()) => done = true,
            Err(e) => {
                if sys::mount_error_kind(&e) == sys::MountErrorKind::Busy {
                    bail!(
                    "cannot unmount {}: it is busy (files open or a shell inside it?); try --lazy",
                    abs.display()
                );
                }
                if last_err.is_empty() {
                    last_err = e.to_string();
                }
            }
        }
    }
    if !done {
        bail!("cannot unmount {}: {last_err}", abs.display());
    }
    if let Some(m) = entry {
        let t = Instant::now();
        // Until every thread is gone: a daemon whose main thread has
        // exited (a zombie leader) while others still run keeps its files
        // open, and with them the WIM's lock, so a `mount --rw` right after
        // the unmount would find the WIM locked.
        while daemon_alive(m) || threads_left(m.pid) {
            if t.elapsed() > Duration::from_secs(30) {
                log::warn!("daemon {} has not exited 30 s after the unmount", m.pid);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}
