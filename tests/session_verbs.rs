//! `wimfs cleanup` and `wimfs remount` (issue 10), the verbs DISM users
//! know as /Cleanup-Mountpoints and /Remount-Image, through real FUSE
//! mounts: a read-write mount's daemon is killed with SIGKILL; `cleanup`
//! clears its record and its dead mount but keeps the staging, and
//! `remount` brings the changes back, which then commit into a WIM that
//! wimlib verifies and applies with the exact bytes written.
//!
//! Needs /dev/fuse, fusermount3 and wimlib-imagex; skipped loudly
//! otherwise. Mounts are held by guards that detach them and kill their
//! daemon, also when an assertion fails.
mod common;

use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The tests of this file run one at a time: `cleanup` and `mounts` read
/// the whole registry.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn prerequisites() -> bool {
    if !fuse_available() {
        return false;
    }
    if !require(&["wimlib-imagex", "fusermount3"]) {
        skip("wimlib-imagex or fusermount3 missing");
        return false;
    }
    true
}

/// A WIM of one image: `a.txt` ("alpha\n") and `dir/b.txt`.
fn small_wim(root: &Path) -> PathBuf {
    let src = root.join("src");
    std::fs::create_dir_all(src.join("dir")).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(src.join("dir/b.txt"), b"beta\n").unwrap();
    let wim = root.join("t.wim");
    wimlib_capture(&src, &wim, &["--compress=LZX"]);
    wim
}

/// Detaches whatever is mounted at `dir` and kills `pid` when dropped.
struct Guard {
    dir: PathBuf,
    pid: Option<u32>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = run(&mut cmd(
            "fusermount3",
            ["-u", "-z", &self.dir.display().to_string()],
        ));
        if let Some(pid) = self.pid.take() {
            if pid_alive(pid) {
                // SAFETY: plain kill(2) on a daemon this test started.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

/// `wimfs mount --rw WIM DIR`; the guard and the daemon's pid.
fn mount_rw(wim: &Path, dir: &Path) -> Guard {
    std::fs::create_dir_all(dir).unwrap();
    let o = wimfs([
        "mount".as_ref(),
        "--rw".as_ref(),
        wim.as_os_str(),
        dir.as_os_str(),
    ]);
    assert!(o.ok(), "mount --rw failed:\n{}", o.describe());
    let pid = daemon_pid(dir);
    assert!(pid.is_some(), "no daemon listed for {}", dir.display());
    Guard {
        dir: dir.to_path_buf(),
        pid,
    }
}

/// SIGKILL the daemon and wait until it is gone; its mount stays, dead.
fn kill9(g: &mut Guard) -> u32 {
    let pid = g.pid.take().expect("a daemon");
    // SAFETY: plain kill(2) on the daemon this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let t = Instant::now();
    while pid_alive(pid) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!pid_alive(pid), "daemon {pid} survived SIGKILL");
    pid
}

/// Is the mount at `dir` dead? Opening the directory asks the daemon (a
/// stat may be answered from the kernel's cache).
fn dead(dir: &Path) -> bool {
    matches!(
        std::fs::read_dir(dir)
            .map(|_| ())
            .map_err(|e| e.raw_os_error()),
        Err(Some(libc::ENOTCONN)) | Err(Some(libc::ECONNABORTED))
    )
}

/// Written through the mount and closed (or fsynced) before the kill.
fn write_changes(mnt: &Path) -> Vec<u8> {
    let mut rng = Rng::new(10);
    let data = text_bytes(&mut rng, 300_000);
    let mut f = std::fs::File::create(mnt.join("new.bin")).unwrap();
    f.write_all(&data).unwrap();
    f.sync_all().unwrap();
    drop(f);
    std::fs::write(mnt.join("a.txt"), b"changed before the kill\n").unwrap();
    std::fs::remove_file(mnt.join("dir/b.txt")).unwrap();
    data
}

fn check_changes(root: &Path, data: &[u8]) {
    assert_eq!(std::fs::read(root.join("new.bin")).unwrap(), data);
    assert_eq!(
        std::fs::read(root.join("a.txt")).unwrap(),
        b"changed before the kill\n"
    );
    assert!(!root.join("dir/b.txt").exists());
    assert!(root.join("dir").is_dir());
}

#[test]
fn cleanup_clears_a_killed_mount_and_its_record_keeps_the_staging_and_remount_resumes() {
    let _s = serial();
    if !prerequisites() {
        return;
    }
    let t = tempdir();
    let wim = small_wim(t.path());
    let mnt = t.path().join("m");
    let mut g = mount_rw(&wim, &mnt);
    let canon = mnt.canonicalize().unwrap();
    let data = write_changes(&mnt);
    let pid = kill9(&mut g);
    assert!(dead(&mnt), "the killed daemon's mount is not dead");
    let staging = t.path().join(".t.wim.wimfs-staging-1");
    assert!(staging.join("journal").is_file());

    // `mounts` names it as dead, with its staging and the way back.
    let o = wimfs(["mounts"]);
    assert!(o.ok(), "{}", o.describe());
    let out = o.stdout_str();
    let line = out
        .lines()
        .find(|l| l.starts_with("dead:") && l.contains(&canon.display().to_string()))
        .unwrap_or_else(|| panic!("no dead line for {}:\n{out}", canon.display()));
    assert!(line.contains(&format!("pid {pid} is gone")), "{line}");
    assert!(line.contains(&staging.display().to_string()), "{line}");

    // Cleanup: the dead mount and the record go, the staging stays.
    let o = wimfs(["cleanup"]);
    assert!(o.ok(), "cleanup failed:\n{}", o.describe());
    let out = o.stdout_str();
    for want in [
        format!("cleared the dead mount at {}", canon.display()),
        format!("removed the record of dead daemon {pid} (image 1 of "),
        format!("its changes are kept in {}", staging.display()),
    ] {
        assert!(out.contains(&want), "cleanup does not say {want:?}:\n{out}");
    }
    assert!(!is_mounted(&mnt), "the dead mount is still there");
    assert!(std::fs::read_dir(&mnt).unwrap().next().is_none());
    assert!(
        staging.join("journal").is_file(),
        "cleanup removed the staging"
    );
    // Nothing of it is left to clean up, and `mounts` no longer names it.
    let o = wimfs(["cleanup"]);
    assert!(o.ok(), "{}", o.describe());
    assert!(!o.stdout_str().contains(&canon.display().to_string()));
    assert!(!wimfs(["mounts"])
        .stdout_str()
        .contains(&canon.display().to_string()));

    // With the record gone, remount needs the WIM; the changes come back.
    let o = wimfs(["remount".as_ref(), wim.as_os_str(), mnt.as_os_str()]);
    assert!(o.ok(), "remount failed:\n{}", o.describe());
    assert!(o.all_output().contains("resuming"), "{}", o.describe());
    g.pid = daemon_pid(&mnt);
    assert!(g.pid.is_some());
    check_changes(&mnt, &data);

    // Committed, the WIM holds exactly those bytes (wimlib as the oracle).
    let o = wimfs(["unmount".as_ref(), "--commit".as_ref(), mnt.as_os_str()]);
    assert!(o.ok(), "unmount --commit failed:\n{}", o.describe());
    let t0 = Instant::now();
    while g.pid.is_some_and(pid_alive) && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    g.pid = None;
    let v = wimlib_verify(&wim, &[]);
    assert!(v.ok(), "{}", v.describe());
    let out = t.path().join("applied");
    let a = wimlib_apply(&wim, "1", &out, &[]);
    assert!(a.ok(), "{}", a.describe());
    check_changes(&out, &data);
}

#[test]
fn remount_by_directory_uses_the_dead_mounts_record_and_refuses_what_it_cannot_resume() {
    let _s = serial();
    if !prerequisites() {
        return;
    }
    let t = tempdir();
    let wim = small_wim(t.path());
    let mnt = t.path().join("m");
    let mut g = mount_rw(&wim, &mnt);

    // A live mount is not remounted.
    let o = wimfs(["remount".as_ref(), mnt.as_os_str()]);
    assert_clean_failure(&o, "remount of a live mount");
    assert!(
        o.stderr_str().contains("its daemon is alive"),
        "{}",
        o.describe()
    );

    let data = write_changes(&mnt);
    kill9(&mut g);
    assert!(dead(&mnt));
    // The directory alone is enough while the record is kept.
    let o = wimfs(["remount".as_ref(), mnt.as_os_str()]);
    assert!(o.ok(), "remount DIR failed:\n{}", o.describe());
    g.pid = daemon_pid(&mnt);
    assert!(g.pid.is_some());
    check_changes(&mnt, &data);
    // Killed again, cleared by hand and mounted with a plain `mount --rw`
    // (which resumes the staging): its dead record goes with it.
    kill9(&mut g);
    assert!(wimfs::session::dead::is_dead_mount(&mnt));
    let _ = run(&mut cmd(
        "fusermount3",
        ["-u", "-z", &mnt.display().to_string()],
    ));
    let o = wimfs([
        "mount".as_ref(),
        "--rw".as_ref(),
        wim.as_os_str(),
        mnt.as_os_str(),
    ]);
    assert!(
        o.ok(),
        "mount --rw after the kill failed:\n{}",
        o.describe()
    );
    g.pid = daemon_pid(&mnt);
    check_changes(&mnt, &data);
    // The records were used up: `mounts` shows the live mount only, and
    // cleanup has nothing of this mount.
    let o = wimfs(["mounts"]);
    let here = t.path().display().to_string();
    assert!(
        !o.stdout_str()
            .lines()
            .any(|l| l.starts_with("dead:") && l.contains(&here)),
        "{}",
        o.describe()
    );
    let o = wimfs(["cleanup"]);
    assert!(o.ok(), "{}", o.describe());
    assert!(!o.stdout_str().contains(&t.path().display().to_string()));

    let o = wimfs(["unmount".as_ref(), "--discard".as_ref(), mnt.as_os_str()]);
    assert!(o.ok(), "unmount --discard failed:\n{}", o.describe());
    let t0 = Instant::now();
    while g.pid.is_some_and(pid_alive) && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    g.pid = None;
    assert!(!t.path().join(".t.wim.wimfs-staging-1").exists());

    // No staging, nothing to bring back; an unknown directory needs the WIM.
    let o = wimfs(["remount".as_ref(), wim.as_os_str(), mnt.as_os_str()]);
    assert_clean_failure(&o, "remount without a staging");
    assert!(
        o.stderr_str().contains("no changes to bring back"),
        "{}",
        o.describe()
    );
    assert!(!is_mounted(&mnt));
    let o = wimfs(["remount".as_ref(), mnt.as_os_str()]);
    assert_clean_failure(&o, "remount of a directory never mounted");
    assert!(
        o.stderr_str()
            .contains("no dead read-write mount is recorded"),
        "{}",
        o.describe()
    );
    // The WIM is as captured.
    let out = t.path().join("applied");
    assert!(wimlib_apply(&wim, "1", &out, &[]).ok());
    assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"alpha\n");
    assert_eq!(std::fs::read(out.join("dir/b.txt")).unwrap(), b"beta\n");
}

/// A stand-in for an adapter whose mounts only their daemon can take down
/// (WinFsp): no FUSE needed.
mod through_daemon {
    use super::*;
    use std::io;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc, Mutex};
    use wimfs::session::control::{self, Request};
    use wimfs::session::{
        registry, Adapter, MountIdentity, MountOptions, MountSpec, MountedFs, Unmount,
    };
    use wimfs::vfs::Vfs;

    pub struct Stand {
        pub unmounts: Arc<AtomicUsize>,
        pub seen: Arc<Mutex<Vec<String>>>,
    }

    struct StandMounted {
        dir: PathBuf,
        unmounts: Arc<AtomicUsize>,
        seen: Arc<Mutex<Vec<String>>>,
        stop: Arc<Mutex<Option<mpsc::Sender<()>>>>,
        stopped: mpsc::Receiver<()>,
    }

    struct StandUnmount {
        unmounts: Arc<AtomicUsize>,
        stop: Arc<Mutex<Option<mpsc::Sender<()>>>>,
    }

    impl Unmount for StandUnmount {
        fn unmount(&self) -> io::Result<bool> {
            self.unmounts.fetch_add(1, Ordering::SeqCst);
            Ok(self.stop.lock().unwrap().take().is_some())
        }
        fn still_ours(&self) -> bool {
            self.stop.lock().unwrap().is_some()
        }
    }

    impl Adapter for Stand {
        fn fstype(&self) -> &str {
            "stand-in-daemon-unmounts"
        }
        fn check_available(&self) -> Result<(), String> {
            Ok(())
        }
        fn mount(
            &self,
            _vfs: Arc<Vfs>,
            dir: &Path,
            _opts: &MountOptions,
        ) -> io::Result<Box<dyn MountedFs>> {
            let (tx, rx) = mpsc::channel();
            Ok(Box::new(StandMounted {
                dir: dir.to_path_buf(),
                unmounts: self.unmounts.clone(),
                seen: self.seen.clone(),
                stop: Arc::new(Mutex::new(Some(tx))),
                stopped: rx,
            }))
        }
        fn unmount_path(&self, _dir: &Path, _lazy: bool) -> io::Result<()> {
            Err(io::Error::other("only the daemon can unmount"))
        }
        fn unmount_through_daemon(&self) -> bool {
            true
        }
    }

    impl MountedFs for StandMounted {
        fn unmounter(&self) -> Arc<dyn Unmount> {
            Arc::new(StandUnmount {
                unmounts: self.unmounts.clone(),
                stop: self.stop.clone(),
            })
        }
        fn identity(&self) -> MountIdentity {
            MountIdentity {
                mount_point: self.dir.clone(),
                mount_id: 7,
                dev: (0, 7),
            }
        }
        /// Serve until unmounted, after asking, as `wimfs unmount` of a
        /// read-only WinFsp mount does, over the channel the record names.
        fn run(self: Box<Self>) -> io::Result<()> {
            let rec = registry::state_dir().join(format!("{}.json", std::process::id()));
            let rec: registry::MountRecord =
                serde_json::from_slice(&std::fs::read(&rec)?).map_err(io::Error::other)?;
            let mut seen = self.seen.lock().unwrap();
            seen.push(format!("mode {}", rec.mode));
            let sock = rec.socket.clone().unwrap_or_default();
            seen.push(format!("socket {}", !sock.is_empty()));
            let r = control::request(Path::new(&sock), &Request::commit(false, false, false))
                .map_err(io::Error::other)?;
            seen.push(format!("commit {} {}", r.ok, r.error.unwrap_or_default()));
            drop(seen);
            let r = control::request(Path::new(&sock), &Request::unmount())
                .map_err(io::Error::other)?;
            self.seen.lock().unwrap().push(format!("unmount {}", r.ok));
            // Served until the unmount arrived.
            let _ = self.stopped.recv_timeout(Duration::from_secs(10));
            Ok(())
        }
    }

    pub fn spec(wim: &Path, dir: &Path, rw: bool) -> MountSpec {
        MountSpec {
            wim: wim.to_path_buf(),
            refs: Vec::new(),
            image: None,
            dir: dir.to_path_buf(),
            cache_mib: 16,
            allow_other: false,
            uid: None,
            gid: None,
            dir_mode: 0o755,
            file_mode: 0o644,
            use_unix_data: true,
            windows_names: true,
            rw: rw.then(wimfs::session::RwSpec::default),
        }
    }
}

#[test]
fn a_read_only_mount_that_only_its_daemon_can_end_gets_an_unmount_channel() {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let seen = through_daemon_session(false);
    assert_eq!(seen[0], "mode ro");
    assert_eq!(seen[1], "socket true");
    assert!(
        seen[2].starts_with("commit false") && seen[2].contains("read-only mount"),
        "{seen:?}"
    );
    assert_eq!(seen[3], "unmount true");
}

#[test]
fn a_read_write_mount_that_only_its_daemon_can_end_is_unmounted_over_its_control_channel() {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let seen = through_daemon_session(true);
    assert_eq!(seen[0], "mode rw");
    assert_eq!(seen[1], "socket true");
    assert_eq!(seen[2], "commit true ", "{seen:?}");
    assert_eq!(seen[3], "unmount true");
}

/// A session of the stand-in adapter (`rw` or not) that asks for its own
/// unmount over the channel its record names; what it saw.
fn through_daemon_session(rw: bool) -> Vec<String> {
    // One session per process at a time: the record is named by the pid.
    let _s = serial();
    let t = tempdir();
    let wim = small_wim(t.path());
    let dir = t.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    let unmounts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let adapter = through_daemon::Stand {
        unmounts: unmounts.clone(),
        seen: seen.clone(),
    };
    let spec = through_daemon::spec(&wim, &dir, rw);
    wimfs::session::run_foreground(&spec, &adapter, &dir, &|_| {}).unwrap();
    let seen = seen.lock().unwrap().clone();
    // Once over the channel, once more by the session at its end (a no-op
    // then: the mount was already gone).
    assert_eq!(unmounts.load(std::sync::atomic::Ordering::SeqCst), 2);
    let pid = std::process::id();
    let sd = wimfs::session::registry::state_dir();
    assert!(!sd.join(format!("{pid}.json")).exists());
    assert!(!sd.join(format!("{pid}.sock")).exists());
    // Nothing changed: a read-write mount leaves no staging behind.
    let canon = wim.canonicalize().unwrap();
    assert!(!wimfs::session::default_staging(&canon, 1).exists());
    seen
}

#[test]
fn cleanup_clears_the_dead_mount_of_a_killed_read_only_daemon() {
    let _s = serial();
    if !prerequisites() {
        return;
    }
    let t = tempdir();
    let wim = small_wim(t.path());
    let mnt = t.path().join("ro");
    std::fs::create_dir_all(&mnt).unwrap();
    let o = wimfs(["mount".as_ref(), wim.as_os_str(), mnt.as_os_str()]);
    assert!(o.ok(), "mount failed:\n{}", o.describe());
    let mut g = Guard {
        dir: mnt.clone(),
        pid: daemon_pid(&mnt),
    };
    assert!(g.pid.is_some());
    let canon = mnt.canonicalize().unwrap();
    assert_eq!(std::fs::read(mnt.join("a.txt")).unwrap(), b"alpha\n");
    kill9(&mut g);
    assert!(dead(&mnt));
    // Nothing to resume: no dead record is kept, `mounts` shows nothing.
    let o = wimfs(["mounts"]);
    assert!(
        !o.stdout_str().contains(&canon.display().to_string()),
        "{}",
        o.describe()
    );
    let o = wimfs(["cleanup"]);
    assert!(o.ok(), "cleanup failed:\n{}", o.describe());
    let out = o.stdout_str();
    assert!(
        out.contains(&format!("cleared the dead mount at {}", canon.display())),
        "{out}"
    );
    assert!(!out.contains("removed the record"), "{out}");
    assert!(!is_mounted(&mnt) && !dead(&mnt));
    // And it mounts again.
    let o = wimfs(["mount".as_ref(), wim.as_os_str(), mnt.as_os_str()]);
    assert!(o.ok(), "mount after cleanup failed:\n{}", o.describe());
    g.pid = daemon_pid(&mnt);
    assert_eq!(std::fs::read(mnt.join("dir/b.txt")).unwrap(), b"beta\n");
}

/// An adapter that mounts as WinFsp does: a drive letter or a folder it
/// creates itself.
struct FolderMaker;

impl wimfs::session::Adapter for FolderMaker {
    fn fstype(&self) -> &str {
        "stand-in-folder-maker"
    }
    fn check_available(&self) -> Result<(), String> {
        Ok(())
    }
    fn mount(
        &self,
        _vfs: std::sync::Arc<wimfs::vfs::Vfs>,
        _dir: &Path,
        _opts: &wimfs::session::MountOptions,
    ) -> std::io::Result<Box<dyn wimfs::session::MountedFs>> {
        Err(std::io::Error::other("not used"))
    }
    fn unmount_path(&self, _dir: &Path, _lazy: bool) -> std::io::Result<()> {
        Ok(())
    }
    fn mount_point_rule(&self) -> wimfs::session::mountpoint::MountPointRule {
        wimfs::session::mountpoint::MountPointRule::DriveOrNewFolder
    }
}

#[test]
fn a_winfsp_style_mount_point_is_a_new_or_empty_folder_as_dism_takes_it() {
    let t = tempdir();
    let root = t.path().canonicalize().unwrap();
    let check = |p: &Path| wimfs::session::check_mountpoint(p, &FolderMaker);
    // A folder that does not exist yet: the adapter creates it.
    assert_eq!(check(&root.join("new")).unwrap(), root.join("new"));
    assert!(!root.join("new").exists());
    // An existing empty folder, as DISM users give it: accepted, untouched.
    std::fs::create_dir(root.join("empty")).unwrap();
    assert_eq!(check(&root.join("empty")).unwrap(), root.join("empty"));
    assert!(root.join("empty").is_dir());
    let rel = root.join("sub");
    std::fs::create_dir(&rel).unwrap();
    // Not empty: refused as DISM refuses it, nothing in it touched.
    std::fs::write(rel.join("keep.txt"), b"keep").unwrap();
    let e = check(&rel).unwrap_err();
    assert!(
        matches!(e, wimfs::session::SessionError::MountPoint(_)),
        "{e:?}"
    );
    assert!(e.to_string().contains("is not empty"), "{e}");
    assert_eq!(std::fs::read(rel.join("keep.txt")).unwrap(), b"keep");
    // A FUSE-style adapter still wants the existing directory.
    let e = wimfs::session::check_mountpoint(
        &root.join("new"),
        &through_daemon::Stand {
            unmounts: Default::default(),
            seen: Default::default(),
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
}
