//! The mount lifecycle through `wimfs::session` with a stand-in adapter
//! (no FUSE): what a WinFsp adapter will rely on. The session opens the
//! WIM, the staging and the control channel, records the mount, hands the
//! vfs to the adapter and serves; a live commit over the control channel
//! lands in the WIM, and the session cleans up after itself.
//!
//! Needs wimlib-imagex (to build the WIM and read it back); skipped loudly
//! otherwise.

mod common;

use common::*;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use wimfs::overlay::Cred;
use wimfs::session::control::{self, Request};
use wimfs::session::{
    registry, Adapter, MountIdentity, MountOptions, MountSpec, MountedFs, RwSpec, Unmount,
};
use wimfs::vfs::{Vfs, ROOT_INO};

/// What the stand-in adapter saw.
#[derive(Default)]
struct Seen {
    fsname: Option<String>,
    report: Option<wimfs::commit::CommitReport>,
    unmounts: usize,
}

struct Stand {
    seen: Arc<Mutex<Seen>>,
}

struct StandMounted {
    vfs: Arc<Vfs>,
    dir: PathBuf,
    seen: Arc<Mutex<Seen>>,
}

struct StandUnmount(Arc<Mutex<Seen>>);

impl Unmount for StandUnmount {
    fn unmount(&self) -> io::Result<bool> {
        self.0.lock().unwrap().unmounts += 1;
        Ok(false)
    }
    fn still_ours(&self) -> bool {
        false
    }
}

impl Adapter for Stand {
    fn fstype(&self) -> &str {
        "stand-in"
    }
    fn check_available(&self) -> Result<(), String> {
        Ok(())
    }
    fn mount(
        &self,
        vfs: Arc<Vfs>,
        dir: &Path,
        opts: &MountOptions,
    ) -> io::Result<Box<dyn MountedFs>> {
        self.seen.lock().unwrap().fsname = Some(opts.fsname.clone());
        Ok(Box::new(StandMounted {
            vfs,
            dir: dir.to_path_buf(),
            seen: self.seen.clone(),
        }))
    }
    fn unmount_path(&self, _dir: &Path, _lazy: bool) -> io::Result<()> {
        Ok(())
    }
}

impl MountedFs for StandMounted {
    fn unmounter(&self) -> Arc<dyn Unmount> {
        Arc::new(StandUnmount(self.seen.clone()))
    }
    fn identity(&self) -> MountIdentity {
        MountIdentity {
            mount_point: self.dir.clone(),
            mount_id: 1,
            dev: (0, 1),
        }
    }
    /// "Serve": write a file through the vfs, as a user in the mount
    /// would, then commit over the control channel, as `wimfs commit`
    /// does, and end.
    fn run(self: Box<Self>) -> io::Result<()> {
        let cred = Cred { uid: 0, gid: 0 };
        let (attr, fh) = self
            .vfs
            .create(ROOT_INO, "added.txt", 0o644, cred)
            .map_err(io::Error::other)?;
        self.vfs
            .write(attr.ino, 0, b"written through the session\n")
            .map_err(io::Error::other)?;
        self.vfs.release(fh).map_err(io::Error::other)?;
        let rec = registry::state_dir().join(format!("{}.json", std::process::id()));
        let rec: registry::MountRecord =
            serde_json::from_slice(&std::fs::read(&rec)?).map_err(io::Error::other)?;
        assert_eq!(rec.mode, "rw");
        let sock = rec.socket.expect("a read-write mount records its socket");
        let r = control::request(Path::new(&sock), &Request::commit(false, false, false))
            .and_then(|r| r.accepted("commit failed"))
            .map_err(io::Error::other)?;
        self.seen.lock().unwrap().report = r.report;
        Ok(())
    }
}

#[test]
fn a_stand_in_adapter_mounts_commits_and_cleans_up() {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let t = tempdir();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"first\n").unwrap();
    let wim = t.path().join("s.wim");
    wimlib_capture(&src, &wim, &[]);
    let dir = t.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let spec = MountSpec {
        wim: wim.clone(),
        refs: Vec::new(),
        image: None,
        dir: dir.clone(),
        cache_mib: 16,
        allow_other: false,
        uid: None,
        gid: None,
        dir_mode: 0o755,
        file_mode: 0o644,
        use_unix_data: true,
        windows_names: true,
        rw: Some(RwSpec::default()),
    };
    let said = Mutex::new(Vec::new());
    let tell = |m: &str| said.lock().unwrap().push(m.to_string());
    let adapter = Stand { seen: seen.clone() };
    wimfs::session::run_foreground(&spec, &adapter, &dir, &tell).unwrap();

    let seen = seen.lock().unwrap();
    let canon = wim.canonicalize().unwrap();
    assert_eq!(
        seen.fsname.as_deref(),
        Some(wimfs::session::spec::fsname(&canon, 1).as_str())
    );
    let rep = seen.report.as_ref().expect("the commit reported");
    assert_eq!(rep.image, 1);
    assert!(!rep.nothing_to_commit && rep.new_blobs == 1, "{rep:?}");
    // The session asked the adapter to unmount its own mount at the end.
    assert_eq!(seen.unmounts, 1);
    assert!(said.lock().unwrap()[0].contains("mounted at"));
    // The commit is in the WIM.
    let names = wimlib_dir(&wim, "1", &[], None);
    assert!(names.iter().any(|n| n == "/added.txt"), "{names:?}");
    // Cleanup: no record, no socket, and the committed staging is gone.
    let pid = std::process::id();
    assert!(!registry::state_dir().join(format!("{pid}.json")).exists());
    assert!(!registry::state_dir().join(format!("{pid}.sock")).exists());
    assert!(!wimfs::session::default_staging(&canon, 1).exists());
}
