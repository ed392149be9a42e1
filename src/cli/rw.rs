//! The read-write side of `wimfs mount`: the daemon's control channel, and
//! `wimfs commit`, `wimfs unmount --commit|--discard` and `wimfs recover`.
//!
//! A read-write daemon holds the WIM's lock for its whole life and listens
//! on a Unix socket beside its state file (`PID.sock`). The protocol is one
//! JSON request line and one JSON reply line per connection:
//!
//! - `{"op":"commit","check":B,"force":B,"new_image":B}`: commit now and
//!   stay mounted; the reply carries the [`CommitReport`].
//! - `{"op":"exit","action":"commit"|"discard",...}`: the client is about
//!   to unmount. `commit` commits first (as above); `discard` marks the
//!   staging to be deleted when the session ends.
//! - `{"op":"cancel"}`: the unmount failed; forget a pending discard.
//! - `{"op":"status"}`: open handles and the staging directory.

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use wimfs::commit::{self, CommitOptions, CommitReport, WimLock};
use wimfs::vfs::Vfs;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Request {
    pub op: String,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub check: bool,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub new_image: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Reply {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub report: Option<CommitReport>,
    #[serde(default)]
    pub open_files: usize,
    #[serde(default)]
    pub staging: Option<String>,
}

/// The default staging directory of image `index` of `wim`: a hidden
/// directory beside the WIM. The WIM's folder may be writable by others,
/// so the staging is trusted only if it is a real directory of this user's
/// that nobody else can write (created 0700 with 0600 files; see
/// `wimfs::overlay`): a directory or symlink planted under this name is
/// refused, never used.
pub(crate) fn default_staging(wim: &Path, index: u32) -> PathBuf {
    let dir = wim.parent().unwrap_or_else(|| Path::new("."));
    let name = wim
        .file_name()
        .map_or_else(|| "wim".into(), |n| n.to_string_lossy().into_owned());
    dir.join(format!(".{name}.wimfs-staging-{index}"))
}

/// What the daemon's control thread shares with the session.
pub(crate) struct Control {
    pub vfs: Arc<Vfs>,
    pub lock: WimLock,
    pub index: parking_lot::Mutex<u32>,
    pub staging: PathBuf,
    /// Delete the staging when the session ends (unmount --discard).
    pub discard_at_exit: AtomicBool,
    /// The mount's entry in the mounts registry, once written.
    pub state_file: parking_lot::Mutex<Option<PathBuf>>,
    /// The uid that mounted: with root, the only one whose requests are
    /// served.
    pub owner: u32,
}

impl Control {
    /// Commit the mount's changes into the WIM and carry on from the new
    /// image.
    pub fn commit(&self, check: bool, force: bool, new_image: bool) -> Result<CommitReport> {
        let mut index = self.index.lock();
        // The kernel sends RELEASE after close(2) has returned: give the
        // handles of files just closed a moment to arrive.
        let t = std::time::Instant::now();
        while self.vfs.open_handles() > 0 && t.elapsed() < std::time::Duration::from_secs(2) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let open = self.vfs.open_handles();
        if open > 0 && !force {
            bail!(
                "{open} file(s) are open in the mount; close them first, or pass --force to \
                 commit what has been written so far"
            );
        }
        self.vfs.sync().context("cannot sync the staging")?;
        let g = self.vfs.freeze()?;
        if self.vfs.is_unchanged() && !new_image && !check {
            let file_size = self
                .lock
                .file
                .metadata()
                .with_context(|| format!("cannot stat {}", self.lock.path.display()))?
                .len();
            log::info!("commit: no change since the last commit, nothing written");
            return Ok(CommitReport {
                image: *index,
                file_size,
                nothing_to_commit: true,
                ..CommitReport::default()
            });
        }
        let img = self
            .vfs
            .commit_tree()
            .context("cannot read the changed tree")?;
        let opts = CommitOptions {
            new_image,
            image_name: None,
            image_description: None,
            check,
        };
        let rep = commit::commit_with(&self.lock, *index, img, &opts, &|_, _| {}, &mut |l| {
            self.vfs.note_landing(l).map_err(|e| {
                wimfs::Error::Other(format!("cannot record the commit in the staging: {e}"))
            })
        });
        let rep = match rep {
            Ok(r) => r,
            Err(e @ wimfs::Error::WimReplaced { .. }) => {
                self.vfs.clear_landing();
                bail!("{e}; {}", self.kept());
            }
            Err(e) => {
                self.vfs.clear_landing();
                return Err(anyhow::Error::new(e)
                    .context(format!("commit to {} failed", self.lock.path.display())));
            }
        };
        if rep.nothing_to_commit {
            self.vfs.clear_landing();
            log::info!("commit: image {} is unchanged, nothing written", rep.image);
            return Ok(rep);
        }
        // The commit went into the locked file: if the path names another
        // one by now, the changes are not in the WIM the user will open, so
        // the staging must keep them.
        if let Err(e) = self.lock.still_at_path() {
            self.vfs.clear_landing();
            bail!(
                "{e}, but this commit went into the file that was there before (which no \
                 longer has a name); {}",
                self.kept()
            );
        }
        let wim = Arc::new(
            self.lock
                .open_wim()
                .with_context(|| format!("cannot reopen {}", self.lock.path.display()))?,
        );
        let new_name = wim.info(rep.image).and_then(|i| i.name.clone());
        self.vfs
            .after_commit(&g, wim, rep.image)
            .context("committed, but could not reset the staging")?;
        drop(g);
        if *index != rep.image {
            if let Some(p) = self.state_file.lock().as_ref() {
                super::mount::set_state_image(p, rep.image, new_name);
            }
        }
        *index = rep.image;
        log::info!(
            "committed image {}: {} new blobs, {} bytes added",
            rep.image,
            rep.new_blobs,
            rep.bytes_added
        );
        Ok(rep)
    }

    /// What becomes of the changes when a commit is refused because the
    /// WIM was replaced.
    fn kept(&self) -> String {
        format!(
            "every change is kept in the staging {} and still shown in the mount (copy out \
             what you need; `fusermount3 -u` on the mount point stops it and keeps the \
             staging, which `wimfs recover` then lists)",
            self.staging.display()
        )
    }

    fn handle(&self, req: &Request) -> Reply {
        let fail = |e: anyhow::Error| Reply {
            ok: false,
            error: Some(super::error_text(&e)),
            ..Reply::default()
        };
        let status = |report| Reply {
            ok: true,
            report,
            open_files: self.vfs.open_handles(),
            staging: Some(self.staging.display().to_string()),
            ..Reply::default()
        };
        match (req.op.as_str(), req.action.as_deref()) {
            ("commit", _) | ("exit", Some("commit")) => {
                match self.commit(req.check, req.force, req.new_image) {
                    Ok(r) => status(Some(r)),
                    Err(e) => fail(e),
                }
            }
            ("exit", Some("discard")) => {
                self.discard_at_exit.store(true, Ordering::SeqCst);
                status(None)
            }
            ("cancel", _) => {
                self.discard_at_exit.store(false, Ordering::SeqCst);
                status(None)
            }
            ("status", _) => status(None),
            (op, _) => fail(anyhow::anyhow!("unknown request {op:?}")),
        }
    }

    /// Serve control requests on `sock` (for the daemon's life).
    pub fn serve(self: Arc<Self>, listener: UnixListener) {
        let spawned = std::thread::Builder::new()
            .name("wimfs-control".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let me = self.clone();
                    let _ = std::thread::Builder::new()
                        .name("wimfs-control-conn".into())
                        .spawn(move || me.connection(conn));
                }
            });
        if let Err(e) = spawned {
            log::error!("cannot start the control thread: {e}");
        }
    }

    /// May the process at the other end of `conn` control this mount? Only
    /// the uid that mounted and root: the socket's mode already keeps
    /// others out, this holds even if the socket or its directory were
    /// opened up.
    fn peer_allowed(&self, conn: &UnixStream) -> std::result::Result<(), String> {
        match wimfs::sys::peer_uid(conn) {
            Ok(uid) if uid == self.owner || uid == 0 => Ok(()),
            Ok(uid) => Err(format!(
                "permission denied: uid {uid} may not control this mount (it belongs to uid {})",
                self.owner
            )),
            Err(e) => Err(format!("cannot check who is asking: {e}")),
        }
    }

    fn connection(&self, conn: UnixStream) {
        let mut line = String::new();
        let Ok(rd) = conn.try_clone() else { return };
        if BufReader::new(rd).read_line(&mut line).is_err() {
            return;
        }
        let reply = match self.peer_allowed(&conn) {
            Err(why) => {
                log::warn!("control request refused: {why}");
                Reply {
                    ok: false,
                    error: Some(why),
                    ..Reply::default()
                }
            }
            Ok(()) => match serde_json::from_str::<Request>(line.trim()) {
                Ok(r) => self.handle(&r),
                Err(e) => Reply {
                    ok: false,
                    error: Some(format!("bad request: {e}")),
                    ..Reply::default()
                },
            },
        };
        let mut w = conn;
        if let Ok(mut s) = serde_json::to_string(&reply) {
            s.push('\n');
            let _ = w.write_all(s.as_bytes());
        }
    }
}

/// Send one request to a daemon's control socket and wait for the reply.
pub(crate) fn request(sock: &Path, req: &Request) -> Result<Reply> {
    let mut c = UnixStream::connect(sock)
        .with_context(|| format!("cannot reach the mount daemon at {}", sock.display()))?;
    // The other way round too: only a daemon of this user's (or root's)
    // may answer, so a planted socket cannot fake a "committed" reply.
    let me = wimfs::sys::euid();
    match wimfs::sys::peer_uid(&c) {
        Ok(uid) if uid == me || uid == 0 => {}
        Ok(uid) => bail!(
            "the control socket {} is served by uid {uid}, not by you (uid {me}): refusing to \
             talk to it",
            sock.display()
        ),
        Err(e) => bail!("cannot check who serves {}: {e}", sock.display()),
    }
    let mut s = serde_json::to_string(req)?;
    s.push('\n');
    c.write_all(s.as_bytes())
        .context("cannot talk to the mount daemon")?;
    let mut line = String::new();
    BufReader::new(c)
        .read_line(&mut line)
        .context("no answer from the mount daemon")?;
    if line.trim().is_empty() {
        bail!("the mount daemon closed the connection without answering");
    }
    let r: Reply = serde_json::from_str(line.trim()).context("bad answer from the mount daemon")?;
    Ok(r)
}

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
    let m = super::mount::rw_mount_at(&a.dir)?;
    let r = request(
        Path::new(&m.socket),
        &Request {
            op: "commit".into(),
            check: a.check,
            force: a.force,
            new_image: a.new_image,
            ..Request::default()
        },
    )?;
    if !r.ok {
        bail!("{}", r.error.unwrap_or_else(|| "commit failed".into()));
    }
    if let Some(rep) = &r.report {
        print_report(rep, &m.wim);
    }
    Ok(0)
}

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
        .unwrap_or_else(|| default_staging(&path, index));
    if let Some(m) = super::mount::live_rw_mount_of(&path) {
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
        let image = Arc::new(
            wimfs::image::Image::load(&wim, index)
                .with_context(|| format!("cannot load image {index}"))?,
        );
        let cache = Arc::new(wimfs::cache::ChunkCache::new(64 << 20));
        match Vfs::inspect_staging(wim.clone(), image, cache, &dir) {
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
