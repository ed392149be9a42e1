//! `wimfs mount` and `wimfs mounts`: arguments and messages. The mount's
//! life (daemon, readiness, registry, control channel) is
//! [`wimfs::session`]'s; this wires in the platform's adapter ([`wimfs::platform::Native`]).

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use wimfs::platform::Native;
use wimfs::session::{self, registry, Adapter, MountSpec, RwSpec};
use wimfs::sys;

#[derive(Args, Debug)]
pub struct MountArgs {
    /// The WIM file.
    wim: PathBuf,
    /// Image (1-based index or name); may be left out when the WIM has one.
    image: Option<String>,
    /// The mount point (an existing directory).
    dir: PathBuf,
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
pub struct MountsArgs {
    /// Print the list as JSON (one object per mount: dir, wim, image, rw,
    /// pid, staging).
    #[arg(long)]
    json: bool,
}

fn parse_mode(s: &str, what: &str) -> Result<u16> {
    let m = u16::from_str_radix(s.trim_start_matches("0o"), 8)
        .with_context(|| format!("--{what} {s:?} is not an octal mode"))?;
    if m > 0o7777 {
        bail!("--{what} {s:?} is not a mode (at most 7777)");
    }
    Ok(m)
}

/// The session's description of what `a` asks for.
fn spec_of(a: &MountArgs, dir: PathBuf) -> Result<MountSpec> {
    Ok(MountSpec {
        wim: a.wim.clone(),
        refs: a.refs.clone(),
        image: a.image.clone(),
        dir,
        cache_mib: a.cache_size,
        allow_other: a.allow_other,
        uid: a.uid,
        gid: a.gid,
        dir_mode: parse_mode(&a.dmode, "dmode")?,
        file_mode: parse_mode(&a.fmode, "fmode")?,
        use_unix_data: !a.no_unix_data,
        windows_names: !a.posix_names,
        rw: a.rw.then(|| RwSpec {
            staging_dir: a.staging_dir.clone(),
            store_unix_data: a.unix_data,
            discard_staging: a.discard_staging,
        }),
    })
}

/// What the daemon (or the foreground session) has to say to the user.
fn tell(m: &str) {
    eprintln!("wimfs: {m}");
}

pub fn mount(a: MountArgs) -> Result<i32> {
    // This command again, as the daemon, should forking not be possible.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    mount_with(a, argv)
}

/// `wimfs mount` as parsed from `argv` (the arguments after the program
/// name, which run it again as the daemon when forking is not possible).
pub fn mount_with(a: MountArgs, argv: Vec<std::ffi::OsString>) -> Result<i32> {
    let dir = a.dir.clone();
    if a.daemon_child {
        // Run again as the daemon: the parent checked the arguments.
        let spec = spec_of(&a, dir)?;
        session::daemon::daemon_child(&spec, &Native, None)?;
        return Ok(0);
    }
    let abs = session::check_mountpoint(&dir, &Native)?;
    let spec = spec_of(&a, dir)?;
    if a.cache_size == 0 {
        bail!("--cache-size must be at least 1 (MiB)");
    }
    // Refuse a state directory that is not ours before doing anything.
    registry::state_private()?;
    if a.foreground {
        session::run_foreground(&spec, &Native, &abs, &tell)?;
        return Ok(0);
    }
    let mut reexec = argv;
    let at = reexec
        .iter()
        .position(|a| a == "--")
        .unwrap_or(reexec.len());
    reexec.insert(at, "--daemon-child".into());
    session::daemon::start(&spec, &Native, abs, &reexec, &tell)?;
    Ok(0)
}

pub fn mounts(a: MountsArgs) -> Result<i32> {
    let v = registry::live_mounts();
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    // wimlib's mounts look alike (`wimfs` in their type): name them, so
    // nobody takes them for ours.
    let wimlib: Vec<sys::MountEntry> = sys::mounts()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| Some(m.fstype.as_str()) == Native.wimlib_fstype())
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
    let dead = session::dead::dead_mounts();
    let print_dead = || {
        for m in &dead {
            outln!(
                "dead: image {} of {} at {} (pid {} is gone); its changes are in {}: \
                 `wimfs remount {}` brings them back, `wimfs cleanup` clears the mount",
                m.image,
                m.wim,
                m.mountpoint,
                m.pid,
                m.staging.as_deref().unwrap_or("?"),
                m.mountpoint
            );
        }
    };
    if v.is_empty() {
        outln!("No wimfs mounts.");
        print_dead();
        print_wimlib();
        return Ok(0);
    }
    let img = |m: &registry::MountRecord| match &m.image_name {
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
    print_dead();
    print_wimlib();
    Ok(0)
}
