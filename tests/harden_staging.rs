//! Hardening of what a read-write mount and a rebuild leave on disk
//! (issue 8, items 2, 5, 6, 9 and 10), attacked as another local user
//! would: a second user (created here with `useradd`) who can write the
//! WIM's folder plants symlinks and whole staging directories; root's
//! `wimfs` must refuse them and leave every file it does not own
//! byte-identical. Also: a fresh staging is private (0700/0600) whatever
//! the umask, a resume names the files whose unsynced data it drops, and
//! `recover --discard` deletes only a real staging.
//!
//! Needs root (to play the second user) and /dev/fuse; skipped loudly
//! otherwise. Every mount is held by a guard that detaches it and kills
//! its daemon, also when an assertion fails.
mod common;

use common::RwMount as Mnt;
use common::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// The second local user of this test file.
const USER: &str = "wimfs-hstage";

/// The tests of this file run one at a time: the mounts registry is read
/// by every `wimfs mounts`/`unmount` while other daemons write their
/// entries (a half-written entry read meanwhile is dropped), and that race
/// is not what these tests are about.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Root, the tools, and the second user (created if absent); `None` after
/// a loud skip.
fn prerequisites(fuse: bool) -> Option<(u32, u32)> {
    if !is_root() {
        skip("not root: cannot play a second local user");
        return None;
    }
    if !require(&["wimlib-imagex", "setpriv", "useradd"]) {
        skip("missing tools");
        return None;
    }
    if fuse && (!Path::new("/dev/fuse").exists() || !have("fusermount3")) {
        skip("no /dev/fuse or fusermount3: cannot mount");
        return None;
    }
    let id = |flag: &str| {
        let o = run(&mut cmd("id", [flag, USER]));
        o.ok()
            .then(|| o.stdout_str().trim().parse::<u32>().ok())
            .flatten()
    };
    if id("-u").is_none() {
        // Another test of this file may be creating it at the same time.
        let o = run(&mut cmd("useradd", ["-M", "-s", "/usr/sbin/nologin", USER]));
        assert!(
            o.ok() || id("-u").is_some(),
            "useradd failed:\n{}",
            o.describe()
        );
    }
    Some((id("-u")?, id("-g")?))
}

/// Run `prog ARGS` as the second user.
fn as_user(prog: &str, args: &[&str]) -> Out {
    let mut a: Vec<String> = vec![
        format!("--reuid={USER}"),
        format!("--regid={USER}"),
        "--init-groups".into(),
        prog.into(),
    ];
    a.extend(args.iter().map(|s| s.to_string()));
    run(&mut cmd("setpriv", a))
}

fn as_user_ok(prog: &str, args: &[&str]) {
    let o = as_user(prog, args);
    assert!(o.ok(), "as {USER}: {prog} failed:\n{}", o.describe());
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// A work area: the test's temp dir opened to everyone (so the second
/// user can reach it), a folder `pub` the second user can write (mode
/// `pub_mode`) holding `t.wim` (root's), and a root-only secret file that
/// the attacks aim at.
struct Area {
    _t: tempfile::TempDir,
    root: PathBuf,
    pubdir: PathBuf,
    wim: PathBuf,
    secret: PathBuf,
}

const SECRET: &[u8] = b"root's secret, mode 0600: must stay exactly this\n";

fn area(pub_mode: u32) -> Area {
    let t = tempdir();
    let root = t.path().to_path_buf();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = root.join("src");
    std::fs::create_dir_all(src.join("dir")).unwrap();
    let mut rng = Rng::new(8);
    std::fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(src.join("dir/b.txt"), text_bytes(&mut rng, 200_000)).unwrap();
    let pubdir = root.join("pub");
    std::fs::create_dir(&pubdir).unwrap();
    std::fs::set_permissions(&pubdir, std::fs::Permissions::from_mode(pub_mode)).unwrap();
    let wim = pubdir.join("t.wim");
    wimlib_capture(&src, &wim, &["--compress=LZX"]);
    let secret = root.join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    Area {
        _t: t,
        root,
        pubdir,
        wim,
        secret,
    }
}

impl Area {
    fn staging(&self) -> PathBuf {
        self.pubdir.join(".t.wim.wimfs-staging-1")
    }
    fn assert_secret_intact(&self, what: &str) {
        let m = std::fs::symlink_metadata(&self.secret).unwrap();
        assert!(m.is_file(), "{what}: the secret is no longer a file");
        let now = std::fs::read(&self.secret).unwrap();
        assert!(
            now == SECRET,
            "{what}: root's secret file was changed ({} bytes now, starting {:?})",
            now.len(),
            String::from_utf8_lossy(&now[..now.len().min(16)])
        );
        assert_eq!(m.mode() & 0o7777, 0o600, "{what}: secret's mode changed");
    }
}

/// `wimfs mount --rw EXTRA... WIM DIR` under `umask` (when given). The
/// guard exists whenever the command succeeded.
fn mount_rw(wim: &Path, dir: &Path, extra: &[&str], umask: Option<u32>) -> (Option<Mnt>, Out) {
    std::fs::create_dir_all(dir).unwrap();
    let mut c = cmd(wimfs_bin(), ["mount", "--rw"]);
    c.args(extra).arg(wim).arg(dir);
    if let Some(m) = umask {
        // SAFETY: umask is async-signal-safe and only sets the child's mask.
        unsafe {
            c.pre_exec(move || {
                libc::umask(m as libc::mode_t);
                Ok(())
            });
        }
    }
    let o = run(&mut c);
    assert_no_panic(&o);
    if !o.ok() {
        return (None, o);
    }
    let pid = daemon_pid(dir);
    assert!(pid.is_some(), "no daemon listed for {}", dir.display());
    (
        Some(Mnt {
            dir: dir.to_path_buf(),
            pid,
        }),
        o,
    )
}

/// Every path under `dir` (symlinks not followed) with its kind, mode,
/// owner and content, for "byte-identical" checks.
fn snapshot(dir: &Path) -> BTreeMap<String, (String, u32, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let (kind, body) = if m.file_type().is_symlink() {
                (
                    "link",
                    std::fs::read_link(&p)
                        .unwrap()
                        .display()
                        .to_string()
                        .into_bytes(),
                )
            } else if m.is_dir() {
                stack.push(p.clone());
                ("dir", Vec::new())
            } else {
                ("file", std::fs::read(&p).unwrap())
            };
            out.insert(rel, (kind.to_string(), m.mode() & 0o7777, m.uid(), body));
        }
    }
    out
}

/// A real staging of `wim` with one synced change, left by a killed
/// daemon, at `staging` (given as --staging-dir).
fn make_staging(wim: &Path, staging: &Path, mnt: &Path) {
    let (m, o) = mount_rw(wim, mnt, &["--staging-dir", &s(staging)], None);
    let m = m.unwrap_or_else(|| panic!("mount --rw failed:\n{}", o.describe()));
    std::fs::write(mnt.join("planted.txt"), b"the attacker's file\n").unwrap();
    m.kill9();
    assert!(staging.join("identity.json").is_file());
}

/// Item 5: a `journal` symlink planted in a staging directory the second
/// user made beside the WIM (or the staging name itself a symlink, or an
/// explicit --staging-dir of theirs): root's mount refuses, and the file
/// the symlink points at is untouched.
#[test]
fn planted_staging_symlinks_are_refused() {
    let _serial = serial();
    let Some(_) = prerequisites(true) else {
        return;
    };
    let a = area(0o1777);
    let mnt = a.root.join("mnt");
    let staging = a.staging();

    // (1) The staging directory is the user's; its journal a symlink.
    as_user_ok("mkdir", &[&s(&staging)]);
    as_user_ok("ln", &["-s", &s(&a.secret), &s(&staging.join("journal"))]);
    let (m, o) = mount_rw(&a.wim, &mnt, &[], None);
    drop(m);
    assert_clean_failure(&o, "mount --rw over a planted journal symlink");
    assert!(
        o.stderr_str().contains("refusing") && o.stderr_str().contains(&s(&staging)),
        "the refusal must say why and name the staging:\n{}",
        o.describe()
    );
    a.assert_secret_intact("planted journal symlink");
    as_user_ok("rm", &["-rf", &s(&staging)]);

    // (2) The staging name a symlink to the user's directory.
    let theirs = a.pubdir.join("theirs");
    as_user_ok("mkdir", &[&s(&theirs)]);
    as_user_ok("ln", &["-s", &s(&a.secret), &s(&theirs.join("journal"))]);
    as_user_ok("ln", &["-s", &s(&theirs), &s(&staging)]);
    let (m, o) = mount_rw(&a.wim, &mnt, &[], None);
    drop(m);
    assert_clean_failure(&o, "mount --rw over a staging symlink");
    assert!(o.stderr_str().contains("symbolic link"), "{}", o.describe());
    a.assert_secret_intact("staging symlink");

    // (3) --staging-dir given explicitly: the same rules.
    let (m, o) = mount_rw(&a.wim, &mnt, &["--staging-dir", &s(&theirs)], None);
    drop(m);
    assert_clean_failure(&o, "mount --rw --staging-dir of another user");
    assert!(o.stderr_str().contains("owned by uid"), "{}", o.describe());
    let (m, o) = mount_rw(&a.wim, &mnt, &["--staging-dir", &s(&staging)], None);
    drop(m);
    assert_clean_failure(&o, "mount --rw --staging-dir through a symlink");
    a.assert_secret_intact("explicit --staging-dir");
    // A group/world-writable staging of root's own is refused too.
    let open = a.root.join("open-staging");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (m, o) = mount_rw(&a.wim, &mnt, &["--staging-dir", &s(&open)], None);
    drop(m);
    assert_clean_failure(&o, "mount --rw --staging-dir world-writable");
    assert!(
        o.stderr_str().contains("writable by group or others"),
        "{}",
        o.describe()
    );
}

/// Item 5: a whole staging (identity and journal, made from the same WIM)
/// planted by the second user is not resumed: it is not root's.
#[test]
fn planted_staging_of_another_user_is_not_resumed() {
    let _serial = serial();
    let Some(_) = prerequisites(true) else {
        return;
    };
    let a = area(0o1777);
    let mnt = a.root.join("mnt");
    // The attacker's staging: a real one (same WIM, so its identity fits),
    // handed to the second user as if they had made it.
    let made = a.root.join("made");
    make_staging(&a.wim, &made, &mnt);
    let staging = a.staging();
    run_ok(&mut cmd("cp", ["-a", &s(&made), &s(&staging)]));
    run_ok(&mut cmd("chown", ["-R", &format!("{USER}:"), &s(&staging)]));
    let before = std::fs::read(&a.wim).unwrap();
    let (m, o) = mount_rw(&a.wim, &mnt, &[], None);
    let listed = m.as_ref().map(|_| mnt.join("planted.txt").exists());
    drop(m);
    assert_clean_failure(&o, "mount --rw over another user's staging");
    assert!(
        !o.all_output().contains("resuming") && listed.is_none(),
        "another user's staging was resumed:\n{}",
        o.describe()
    );
    assert!(
        o.stderr_str().contains("owned by uid") && o.stderr_str().contains(&s(&staging)),
        "{}",
        o.describe()
    );
    // The way out offered is a staging of one's own, not a discard that
    // would be refused too.
    assert!(
        o.stderr_str().contains("--staging-dir") && !o.stderr_str().contains("--discard-staging"),
        "{}",
        o.describe()
    );
    assert_eq!(std::fs::read(&a.wim).unwrap(), before, "the WIM changed");
    // Not deleted either: it is not root's to delete.
    assert!(staging.join("journal").is_file());
}

/// Item 6: every directory of a fresh staging is 0700 and every file 0600
/// whatever the umask (default staging and --staging-dir, whose missing
/// parents are created 0700 too).
#[test]
fn fresh_staging_is_private_whatever_the_umask() {
    let _serial = serial();
    let Some(_) = prerequisites(true) else {
        return;
    };
    let a = area(0o1777);
    let mnt = a.root.join("mnt");
    for umask in [0o000, 0o022] {
        for explicit in [false, true] {
            let what = format!("umask {umask:03o}, explicit {explicit}");
            let dir = if explicit {
                a.root.join(format!("new-parent-{umask}/staging"))
            } else {
                a.staging()
            };
            let sd = s(&dir);
            let extra: Vec<&str> = if explicit {
                vec!["--staging-dir", &sd]
            } else {
                vec![]
            };
            let (m, o) = mount_rw(&a.wim, &mnt, &extra, Some(umask));
            let m = m.unwrap_or_else(|| panic!("{what}: mount failed:\n{}", o.describe()));
            // Written as 0600 in the mount; also a new directory, a changed
            // file and one still open (data file without a sync).
            std::fs::write(mnt.join("private.txt"), b"root only\n").unwrap();
            std::fs::set_permissions(
                mnt.join("private.txt"),
                std::fs::Permissions::from_mode(0o600),
            )
            .ok();
            std::fs::create_dir(mnt.join("newdir")).unwrap();
            std::fs::write(mnt.join("dir/b.txt"), b"changed").unwrap();
            let mut open = std::fs::File::create(mnt.join("newdir/open.bin")).unwrap();
            open.write_all(&[7u8; 100_000]).unwrap();
            let mut seen = 0;
            let mut stack = vec![dir.clone()];
            assert_eq!(mode(&dir), 0o700, "{what}: {}", dir.display());
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap().flatten() {
                    let p = e.path();
                    let md = std::fs::symlink_metadata(&p).unwrap();
                    seen += 1;
                    if md.is_dir() {
                        assert_eq!(mode(&p), 0o700, "{what}: {}", p.display());
                        stack.push(p.clone());
                    } else {
                        assert!(md.is_file(), "{what}: {} is not a file", p.display());
                        assert_eq!(mode(&p), 0o600, "{what}: {}", p.display());
                    }
                    assert_eq!(md.uid(), 0, "{what}: {}", p.display());
                }
            }
            assert!(seen >= 4, "{what}: staging has only {seen} entries");
            if explicit {
                assert_eq!(mode(dir.parent().unwrap()), 0o700, "{what}: created parent");
            }
            // Nobody else can read what was staged.
            let o = as_user("cat", &[&s(&dir.join("journal"))]);
            assert!(!o.ok(), "{what}: {USER} could read the journal");
            drop(open);
            m.unmount(&["--discard"]);
            assert!(!dir.exists(), "{what}: staging left after --discard");
        }
    }
}

/// Item 2: a daemon killed while a file is being written; the resume
/// message and `wimfs recover` name that file, with the size it had been
/// written to and the size it resumes with. A file closed before the kill
/// is not named and comes back whole.
#[test]
fn resume_names_files_cut_back() {
    let _serial = serial();
    let Some(_) = prerequisites(true) else {
        return;
    };
    let a = area(0o755);
    let mnt = a.root.join("mnt");
    let (m, o) = mount_rw(&a.wim, &mnt, &[], None);
    let m = m.unwrap_or_else(|| panic!("mount failed:\n{}", o.describe()));
    std::fs::write(mnt.join("closed.txt"), b"closed before the kill\n").unwrap();
    // Synced at 100 KiB (an fsync syncs every change so far), then 200 KiB
    // more that were not.
    let mut part = std::fs::File::create(mnt.join("partial.bin")).unwrap();
    part.write_all(&[1u8; 102_400]).unwrap();
    part.sync_all().unwrap();
    part.write_all(&[2u8; 204_800]).unwrap();
    // Being copied when the daemon dies: never synced, never closed.
    let mut big = std::fs::File::create(mnt.join("dir/big.bin")).unwrap();
    big.write_all(&vec![0xA5u8; 3 << 20]).unwrap();
    // An image file changed in place (same size) and left open.
    let mut inplace = std::fs::OpenOptions::new()
        .write(true)
        .open(mnt.join("dir/b.txt"))
        .unwrap();
    inplace.write_all(b"overwritten but never synced").unwrap();
    m.kill9();
    drop((big, part, inplace));

    let r = wimfs(["recover", &s(&a.wim)]);
    assert!(r.ok(), "recover failed:\n{}", r.describe());
    let out = r.stdout_str();
    for want in [
        "/dir/big.bin was cut back: 3145728 bytes had been written but only 0",
        "/partial.bin was cut back: 307200 bytes had been written but only 102400",
        "/dir/b.txt was cut back",
    ] {
        assert!(out.contains(want), "recover does not say {want:?}:\n{out}");
    }
    assert!(!out.contains("closed.txt"), "{out}");
    // recover changed nothing: the same report again.
    let r2 = wimfs(["recover", &s(&a.wim)]);
    assert_eq!(r2.stdout_str(), out, "recover is not read-only");

    let (m, o) = mount_rw(&a.wim, &mnt, &[], None);
    let m = m.unwrap_or_else(|| panic!("resume failed:\n{}", o.describe()));
    let msg = o.all_output();
    assert!(msg.contains("resuming"), "{}", o.describe());
    for want in [
        "/dir/big.bin was cut back: 3145728 bytes had been written but only 0",
        "/partial.bin was cut back: 307200 bytes had been written but only 102400",
        "/dir/b.txt was cut back",
    ] {
        assert!(msg.contains(want), "resume does not say {want:?}:\n{msg}");
    }
    assert!(!msg.contains("closed.txt"), "{msg}");
    assert_eq!(
        std::fs::read(mnt.join("closed.txt")).unwrap(),
        b"closed before the kill\n"
    );
    assert_eq!(std::fs::metadata(mnt.join("dir/big.bin")).unwrap().len(), 0);
    assert_eq!(
        std::fs::read(mnt.join("partial.bin")).unwrap(),
        vec![1u8; 102_400]
    );
    m.unmount(&["--discard"]);
}

/// Item 9: a symlink spray of the rebuild's old predictable temporary
/// names (`.t.wim.wimfs-tmp-PID` for the next pids) and of guessed ones,
/// all pointing at root's 0600 file, in a folder the second user can
/// write: `wimfs optimize` leaves that file byte-identical and the WIM a
/// regular file that wimlib verifies. A killed run's leftover (ours, not
/// locked) is removed; one a running rebuild holds, and the second user's
/// files, are left.
#[test]
fn optimize_ignores_a_symlink_spray_and_cleans_leftovers() {
    let _serial = serial();
    let Some((uid, gid)) = prerequisites(false) else {
        return;
    };
    let a = area(0o777);
    let names = |n: &str| a.pubdir.join(format!(".t.wim.wimfs-tmp-{n}"));
    // The second user's own leftover-looking file: not ours to delete.
    as_user_ok("touch", &[&s(&names("ffffffffffffffff"))]);
    // A killed run's leftover (old and new pattern) and a live one.
    std::fs::write(names("99999999"), vec![0u8; 1 << 20]).unwrap();
    std::fs::write(names("0123456789abcdef"), vec![0u8; 1 << 20]).unwrap();
    let live = std::fs::File::create(names("live")).unwrap();
    // SAFETY: flock on a descriptor this test holds open.
    assert_eq!(
        unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&live),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        },
        0
    );
    // The spray: created right before the run, for the next 3000 pids,
    // then handed to the second user (lchown: the state is exactly theirs;
    // done from here so that making it does not use up the pids).
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1);
    let guessed = ["0000000000000000", "deadbeefdeadbeef", "1", "tmp"];
    let spray: Vec<PathBuf> = (last + 1..last + 3000)
        .map(|p| names(&p.to_string()))
        .chain(guessed.iter().map(|g| names(g)))
        .collect();
    for p in &spray {
        std::os::unix::fs::symlink(&a.secret, p).unwrap();
        std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    }
    let o = wimfs(["optimize", &s(&a.wim)]);
    assert!(o.ok(), "optimize failed:\n{}", o.describe());
    a.assert_secret_intact("optimize through a symlink spray");
    let m = std::fs::symlink_metadata(&a.wim).unwrap();
    assert!(
        m.file_type().is_file(),
        "the WIM path is not a regular file"
    );
    let v = wimlib_verify(&a.wim, &[]);
    assert!(v.ok(), "wimlib-imagex verify:\n{}", v.describe());
    for p in &spray {
        assert!(std::fs::symlink_metadata(p)
            .unwrap()
            .file_type()
            .is_symlink());
    }
    // Leftovers: ours removed (and named), the live one and theirs kept.
    for n in ["99999999", "0123456789abcdef"] {
        assert!(!names(n).exists(), "leftover {n} not removed");
        assert!(o.stderr_str().contains(&s(&names(n))), "{}", o.describe());
    }
    assert!(
        names("live").is_file(),
        "a locked (live) temporary file was removed"
    );
    assert!(
        names("ffffffffffffffff").is_file(),
        "another user's file was removed"
    );
    let ours: Vec<String> = std::fs::read_dir(&a.pubdir)
        .unwrap()
        .flatten()
        .filter(|e| {
            let m = e.metadata().unwrap();
            m.is_file() && m.uid() == 0
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".t.wim.wimfs-tmp-") && n != ".t.wim.wimfs-tmp-live")
        .collect();
    assert!(ours.is_empty(), "temporary files left: {ours:?}");
    drop(live);
}

/// Item 10: `wimfs recover WIM --staging-dir DIR --discard` deletes only a
/// real staging: a home-like directory (with `data/` and `journal`, with
/// or without a planted identity), and a symlink to a real staging, are
/// refused and left byte-identical.
#[test]
fn recover_discard_deletes_only_a_real_staging() {
    let _serial = serial();
    let Some(_) = prerequisites(true) else {
        return;
    };
    let a = area(0o755);
    let mnt = a.root.join("mnt");
    let real = a.root.join("real-staging");
    make_staging(&a.wim, &real, &mnt);

    let home = a.root.join("home");
    std::fs::create_dir_all(home.join("data/projects")).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(home.join("data/projects/notes.txt"), b"my notes\n").unwrap();
    std::fs::write(home.join("data/1"), b"looks like staged data\n").unwrap();
    std::fs::write(home.join("journal"), b"dear diary\n").unwrap();
    std::fs::write(home.join(".bashrc"), b"alias ll='ls -l'\n").unwrap();
    let discard =
        |dir: &Path| wimfs(["recover", &s(&a.wim), "--staging-dir", &s(dir), "--discard"]);

    let before = snapshot(&home);
    let o = discard(&home);
    assert_clean_failure(&o, "recover --discard of a home directory");
    assert!(
        o.stderr_str().contains("no wimfs staging") && o.stderr_str().contains(&s(&home)),
        "{}",
        o.describe()
    );
    assert_eq!(snapshot(&home), before, "the home directory was changed");

    // With an identity planted in it: still not a staging (foreign files).
    std::fs::copy(real.join("identity.json"), home.join("identity.json")).unwrap();
    let before = snapshot(&home);
    let o = discard(&home);
    assert_clean_failure(&o, "recover --discard of a home directory with an identity");
    assert!(
        o.stderr_str().contains("not part of a wimfs staging"),
        "{}",
        o.describe()
    );
    assert_eq!(snapshot(&home), before, "the home directory was changed");

    // A symlink to a real staging: refused, the staging untouched.
    let link = a.root.join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let before = snapshot(&real);
    let o = discard(&link);
    assert_clean_failure(&o, "recover --discard through a symlink");
    assert!(o.stderr_str().contains("symbolic link"), "{}", o.describe());
    assert_eq!(
        snapshot(&real),
        before,
        "the staging was changed through a symlink"
    );

    // The real staging itself goes.
    let o = discard(&real);
    assert!(o.ok(), "{}", o.describe());
    assert!(!real.exists(), "the real staging was not discarded");
}
