//! A mount's life in its daemon (or in the foreground): open the WIM and
//! the image, the staging and control channel of a read-write mount, mount
//! through the adapter, record the mount, serve until unmounted, then
//! clean up (discard or keep the staging, remove the record and socket,
//! keep the log only if something went wrong).

use super::adapter::{Adapter, MountOptions, MountedFs};
use super::control::Control;
use super::daemon::{self, Voice};
use super::error::{Result, SessionError};
use super::registry::{self, MountRecord};
use super::spec::{self, MountSpec, RwSpec};
use super::transport::Listener;
use crate::cache::ChunkCache;
use crate::sys;
use crate::vfs::{Vfs, VfsOptions};
use crate::wim::Wim;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Request threads: each answers its requests itself, and a read waiting
/// for a chunk holds only its own thread, so have plenty.
fn request_threads() -> usize {
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

/// Check the mount point and the platform's driver before doing any real
/// work, so the common mistakes get a clear message. Returns the mount
/// point resolved.
pub fn check_mountpoint(dir: &Path, adapter: &dyn Adapter) -> Result<PathBuf> {
    if adapter.mount_point_rule() == super::mountpoint::MountPointRule::DriveOrNewFolder {
        let abs = super::mountpoint::plan(dir)
            .map_err(SessionError::MountPoint)?
            .mount_point();
        if let Some(m) = adapter.mount_at(&abs) {
            return Err(SessionError::MountPoint(format!(
                "mount point {} is busy: {} is mounted there",
                abs.display(),
                m.source
            )));
        }
        adapter
            .check_available()
            .map_err(SessionError::Unavailable)?;
        return Ok(abs);
    }
    let md = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SessionError::MountPoint(format!(
                "mount point {} does not exist",
                dir.display()
            )))
        }
        Err(e) if sys::is_disconnected(&e) => {
            return Err(SessionError::MountPoint(format!(
                "mount point {} is a dead FUSE mount (transport endpoint is not connected); \
             clear it with `wimfs unmount {}`",
                dir.display(),
                dir.display()
            )))
        }
        Err(e) => {
            return Err(SessionError::failed(
                format!("cannot use mount point {}", dir.display()),
                e,
            ))
        }
    };
    if !md.is_dir() {
        return Err(SessionError::MountPoint(format!(
            "mount point {} is not a directory",
            dir.display()
        )));
    }
    let abs = dir.canonicalize().map_err(|e| {
        SessionError::failed(format!("cannot resolve mount point {}", dir.display()), e)
    })?;
    if adapter.mount_at(&abs).is_some() {
        let who = registry::live_mounts()
            .into_iter()
            .find(|m| Path::new(&m.mountpoint) == abs)
            .map(|m| format!(" (wimfs: image {} of {}, pid {})", m.image, m.wim, m.pid))
            .unwrap_or_default();
        return Err(SessionError::MountPoint(format!(
            "mount point {} is busy: something is already mounted there{who}",
            abs.display()
        )));
    }
    adapter
        .check_available()
        .map_err(SessionError::Unavailable)?;
    Ok(abs)
}

/// Serve `spec` in the foreground at `abs` (checked by
/// [`check_mountpoint`]) until it is unmounted (Ctrl-C does). `tell` says
/// things to the user.
pub fn run_foreground(
    spec: &MountSpec,
    adapter: &dyn Adapter,
    abs: &Path,
    tell: &dyn Fn(&str),
) -> Result<()> {
    serve(spec, adapter, abs, None, Voice::Terminal(tell))
}

/// Open the WIM, its blobs made as they are looked up
/// ([`Wim::open_lazy`]): both kinds of mount read only what is visited (a
/// commit opens the WIM whole, under its lock).
fn open_wim(path: &Path, refs: &[PathBuf]) -> Result<Wim> {
    let w = Wim::open_lazy(path, refs)
        .map_err(|e| SessionError::failed(format!("cannot open {}", path.display()), e))?;
    for warn in &w.warnings {
        log::warn!("{warn}");
    }
    Ok(w)
}

fn image_index(w: &Wim, spec: Option<&str>) -> Result<u32> {
    match spec {
        Some(s) => Ok(w.resolve_image(s)?),
        None if w.image_count() == 1 => Ok(1),
        None => Err(SessionError::Invalid(format!(
            "this WIM has {} images; say which one (a 1-based index or a name)",
            w.image_count()
        ))),
    }
}

/// The mount's life. `log`: the daemon's log file (a daemon), `None` in
/// the foreground.
pub(crate) fn serve(
    spec: &MountSpec,
    adapter: &dyn Adapter,
    abs: &Path,
    log: Option<PathBuf>,
    voice: Voice<'_>,
) -> Result<()> {
    let t0 = Instant::now();
    let wim = Arc::new(open_wim(&spec.wim, &spec.refs)?);
    let index = image_index(&wim, spec.image.as_deref())?;
    let t1 = Instant::now();
    let cannot_load = |e| SessionError::failed(format!("cannot load image {index}"), e);
    // A root whose entries do not decode would be a mount point that cannot
    // even be stat'ed (EIO on every access, left to be unmounted by hand):
    // both kinds of mount refuse it, naming the damage. Only the root's
    // directory is decoded for this.
    let root_lists = |lazy: &crate::image::lazy::LazyImage| {
        lazy.children(lazy.root()).map(drop).map_err(cannot_load)
    };
    // Both kinds of mount decode directories as they are visited.
    let t2 = Instant::now();
    let (uid, gid) = sys::real_ids();
    let opts = VfsOptions {
        uid: spec.uid.unwrap_or(uid),
        gid: spec.gid.unwrap_or(gid),
        dir_mode: spec.dir_mode,
        file_mode: spec.file_mode,
        use_unix_data: spec.use_unix_data,
        windows_names: spec.windows_names,
        mount_root: abs.to_string_lossy().into_owned(),
        ..VfsOptions::default()
    };
    let cache_total = spec.cache_mib.saturating_mul(1 << 20);
    // A read-write mount also holds small new files until their close
    // (`overlay::stage::mem_budget`): left out of the chunk cache too.
    let held = match &spec.rw {
        Some(_) => crate::overlay::stage::mem_budget(cache_total),
        None => 0,
    };
    let cache = Arc::new(ChunkCache::with_reserve(
        cache_total,
        (request_threads() + cores()) as u64 * PER_THREAD_BYTES + held,
    ));
    let wim_path = spec.wim.canonicalize().unwrap_or_else(|_| spec.wim.clone());
    let mut control = None;
    let vfs = if let Some(rw) = &spec.rw {
        // Checked before the staging is created or resumed.
        root_lists(&crate::image::lazy::LazyImage::open(wim.clone(), index).map_err(cannot_load)?)?;
        let (vfs, ctl) = open_rw(spec, rw, &wim, &wim_path, index, cache, opts, &voice)?;
        control = Some(ctl);
        // A resume decoded the whole image to replay its journal, and
        // kept only the tree.
        sys::release_free_memory();
        vfs
    } else {
        let vfs = Vfs::open_lazy(wim.clone(), index, cache, opts).map_err(cannot_load)?;
        if let Some(lazy) = vfs.lazy_image() {
            root_lists(&lazy)?;
        }
        Arc::new(vfs)
    };
    let t3 = Instant::now();
    let mopts = MountOptions {
        threads: request_threads(),
        allow_other: spec.allow_other,
        fsname: spec::fsname(&wim_path, index),
    };
    let mounted: Box<dyn MountedFs> = adapter
        .mount(vfs, abs, &mopts)
        .map_err(|e| mount_error(e, abs, adapter))?;
    log::debug!(
        "open {:?}, load image {:?}, vfs {:?}, mount {:?}",
        t1 - t0,
        t2 - t1,
        t3 - t2,
        t3.elapsed()
    );
    let unmounter = mounted.unmounter();
    daemon::unmount_on_signal(unmounter.clone());
    let ident = mounted.identity();

    let mut socket = None;
    if let Some((ctl, listener, path)) = control.take() {
        *ctl.unmounter.lock() = Some(unmounter.clone());
        ctl.clone().serve(listener);
        socket = Some((ctl, path));
    }
    // A read-only mount that only its daemon can take down (WinFsp) still
    // needs a channel for `wimfs unmount`.
    let ro_socket = if socket.is_none() && adapter.unmount_through_daemon() {
        unmount_channel(unmounter.clone())
    } else {
        None
    };
    let record = MountRecord {
        pid: std::process::id(),
        wim: wim_path.to_string_lossy().into_owned(),
        image: index,
        image_name: wim.info(index).and_then(|i| i.name.clone()),
        mode: if spec.rw.is_some() { "rw" } else { "ro" }.into(),
        mountpoint: abs.to_string_lossy().into_owned(),
        start_ticks: sys::process_start_ticks(std::process::id()),
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        staging: socket
            .as_ref()
            .map(|(c, _)| c.staging.display().to_string()),
        socket: socket
            .as_ref()
            .map(|(_, p)| p)
            .or(ro_socket.as_ref())
            .map(|p| p.display().to_string()),
        dev: Some(registry::dev_text(ident.dev)),
        mount_id: Some(ident.mount_id),
        restore_folder: mounted
            .replaced_folder()
            .map(|p| p.to_string_lossy().into_owned()),
    };
    let record_file = registry::write_record(&record);
    if let Some(st) = &record.staging {
        // Resumed: a dead mount of the same staging is no more.
        registry::forget_dead_of_staging(st);
    }
    if let (Some((ctl, _)), Some(p)) = (&socket, &record_file) {
        *ctl.record.lock() = Some(p.clone());
    }

    if voice.is_daemon() {
        daemon::ready();
    } else {
        voice.say(&format!(
            "image {index} of {} mounted at {} (Ctrl-C to unmount)",
            spec.wim.display(),
            abs.display()
        ));
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
    if let Some(sock) = &ro_socket {
        let _ = std::fs::remove_file(sock);
    }
    if let Some((ctl, sock)) = &socket {
        let _ = std::fs::remove_file(sock);
        if ctl
            .discard_at_exit
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            match crate::overlay::discard(&ctl.staging) {
                Ok(()) => log::info!("staging {} discarded", ctl.staging.display()),
                Err(e) => log::error!("cannot discard {}: {e}", ctl.staging.display()),
            }
        } else if let Err(e) = ctl.vfs.sync() {
            log::error!("cannot sync the staging at unmount: {e}");
        } else if staging_is_empty(&ctl.staging) {
            // Nothing changed since the mount or the last commit: nothing
            // to resume, so leave nothing behind.
            let _ = crate::overlay::discard(&ctl.staging);
        }
    }
    if let Some(p) = &record_file {
        let _ = std::fs::remove_file(p);
    }
    if let Some(l) = &log {
        // Keep the log only when something went wrong (fuser's own warning
        // about unmounting an already unmounted mount is not).
        if res.is_ok() && !registry::log_has_errors(l) {
            let _ = std::fs::remove_file(l);
        }
    }
    res.map_err(|e| SessionError::failed("the FUSE session ended with an error", e))
}

/// A staging that holds no change: an empty journal and no staged data.
fn staging_is_empty(dir: &Path) -> bool {
    let journal_empty = std::fs::metadata(dir.join("journal"))
        .is_ok_and(|m| m.len() <= crate::overlay::journal::MAGIC.len() as u64);
    let no_data = std::fs::read_dir(dir.join("data")).map_or(true, |mut d| d.next().is_none());
    journal_empty && no_data
}

type ControlParts = (Arc<Control>, Listener, PathBuf);

/// A read-write vfs: the WIM's lock (held for the daemon's life), the
/// staging (resumed or fresh) and the control channel.
#[allow(clippy::too_many_arguments)]
fn open_rw(
    spec: &MountSpec,
    rw: &RwSpec,
    wim: &Arc<Wim>,
    wim_path: &Path,
    index: u32,
    cache: Arc<ChunkCache>,
    mut opts: VfsOptions,
    voice: &Voice<'_>,
) -> Result<(Arc<Vfs>, ControlParts)> {
    if !spec.refs.is_empty() || wim.parts.len() > 1 {
        return Err(SessionError::Invalid(
            "a split WIM (or one with --ref) cannot be mounted read-write; join it first".into(),
        ));
    }
    let lock = crate::commit::WimLock::acquire(wim_path)?;
    lock.matches(wim)?;
    let staging = match &rw.staging_dir {
        Some(d) => std::path::absolute(d).unwrap_or_else(|_| d.clone()),
        None => spec::default_staging(wim_path, index),
    };
    if rw.discard_staging && crate::overlay::probe(&staging).is_some() {
        crate::overlay::discard(&staging).map_err(|e| {
            SessionError::failed(
                format!("cannot discard the staging {}", staging.display()),
                e,
            )
        })?;
        voice.say(&format!(
            "discarded the changes of an earlier mount in {}",
            staging.display()
        ));
    }
    opts.store_unix_data = rw.store_unix_data;
    let (vfs, status) = Vfs::open_rw(wim.clone(), index, cache, opts, &staging).map_err(|e| {
        if matches!(e, crate::overlay::StagingError::Refused(_)) {
            // A staging that is not safely ours is never discarded or
            // resumed: the way round it is a directory of one's own.
            SessionError::Staging {
                refused: true,
                message: format!(
                    "{e}\n(give a directory of your own with --staging-dir DIR, or have the \
                     owner remove {})",
                    staging.display()
                ),
            }
        } else {
            SessionError::Staging {
                refused: false,
                message: format!(
                    "{e}\n(see what it holds with `wimfs recover {} {index}`, or start clean \
                     with --discard-staging)",
                    wim_path.display()
                ),
            }
        }
    })?;
    if status.resumed {
        voice.say(&format!(
            "found staging with changes from an earlier mount, resuming ({} changes, in {})",
            status.records,
            staging.display()
        ));
    }
    for w in &status.warnings {
        voice.say(&format!("staging: {w}"));
    }
    let vfs = Arc::new(vfs);
    let sd = registry::state_private()?;
    let name = format!("{}.sock", std::process::id());
    let sock = Listener::address(&sd, &name)
        .map_err(|e| SessionError::failed(format!("cannot name the control channel {name}"), e))?;
    // Mode 0600 in a 0700 directory: only this user (and root) can even
    // connect; the daemon checks each peer's uid as well.
    let listener = Listener::bind(&sd, &name).map_err(|e| {
        SessionError::failed(
            format!("cannot create the control socket {}", sock.display()),
            e,
        )
    })?;
    let ctl = Arc::new(Control {
        vfs: vfs.clone(),
        lock,
        index: parking_lot::Mutex::new(index),
        staging,
        discard_at_exit: std::sync::atomic::AtomicBool::new(false),
        record: parking_lot::Mutex::new(None),
        owner: sys::euid(),
        unmounter: parking_lot::Mutex::new(None),
    });
    Ok((vfs, (ctl, listener, sock)))
}

/// The `unmount`-only control channel of a read-only mount whose adapter
/// unmounts through its daemon: where it listens, or `None` (logged: the
/// mount then ends only with its process).
fn unmount_channel(unmounter: std::sync::Arc<dyn super::adapter::Unmount>) -> Option<PathBuf> {
    let name = format!("{}.sock", std::process::id());
    let made = registry::state_private().and_then(|sd| {
        let path = Listener::address(&sd, &name)
            .map_err(|e| SessionError::failed("cannot name the control channel", e))?;
        let l = Listener::bind(&sd, &name).map_err(|e| {
            SessionError::failed(
                format!("cannot create the control channel {}", path.display()),
                e,
            )
        })?;
        Ok((l, path))
    });
    match made {
        Ok((l, path)) => {
            super::control::serve_unmount_only(l, sys::euid(), unmounter);
            Some(path)
        }
        Err(e) => {
            log::warn!(
                "{}; `wimfs unmount` will have to end the process",
                super::error_text(&e)
            );
            None
        }
    }
}

/// A refused mount, with the adapter's hint at the likely cause.
fn mount_error(e: std::io::Error, dir: &Path, adapter: &dyn Adapter) -> SessionError {
    let hint = adapter.mount_error_hint(&e);
    SessionError::MountFailed(format!("cannot mount at {}: {e}{hint}", dir.display()))
}
