//! Fault tests: a process writing a WIM is killed with SIGKILL at chosen
//! points of the write. The writer's test hook (`WIMFS_TEST_PAUSE_AT`, see
//! `src/commit/pause.rs`) stops it there and writes a marker, so every
//! trial proves it hit the window it names. The WIM must then verify with
//! wimlib and hold exactly the old images (killed before the new header)
//! or exactly the new ones (killed after it). Commits (exercised through
//! `wimfs export` into an existing WIM, which appends through the same
//! commit path) and rebuilds (`wimfs optimize`) are both covered.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type Images = Vec<(String, [u8; 20])>;

/// The images of a WIM: names (wimlib) and metadata resource hashes (the
/// blob table's metadata entries, in image order), which pin each image's
/// whole tree.
fn images(wim: &Path) -> Images {
    let names = common::wimlib_image_names(wim);
    let md: Vec<[u8; 20]> = common::blob_table(wim)
        .into_iter()
        .filter(|e| e.flags & 2 != 0)
        .map(|e| e.hash)
        .collect();
    assert_eq!(
        names.len(),
        md.len(),
        "{}: names vs metadata entries",
        wim.display()
    );
    names.into_iter().zip(md).collect()
}

/// Run `cmd` with the pause hook set to `point`, wait until the marker says
/// it got there, SIGKILL it. Panics if it finished or failed first.
fn kill_at(cmd: &mut Command, point: &str, marker: &Path, what: &str) {
    let _ = std::fs::remove_file(marker);
    let mut child = cmd
        .env("WIMFS_TEST_PAUSE_AT", point)
        .env("WIMFS_TEST_PAUSE_MARKER", marker)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if std::fs::read_to_string(marker).is_ok_and(|m| m.lines().any(|l| l == point)) {
            break;
        }
        if let Some(st) = child.try_wait().unwrap() {
            let mut e = String::new();
            let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut e);
            panic!("{what}: the writer never reached {point} (exited {st}): {e}");
        }
        if start.elapsed() > Duration::from_secs(50) {
            let _ = child.kill();
            panic!("{what}: the writer did not reach {point} within 50 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let st = child.wait().unwrap();
    assert!(!st.success(), "{what}: finished despite the kill");
}

fn ok(cmd: &mut Command) -> String {
    let o = cmd.output().expect("spawn");
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn make_source(dir: &Path, seed: u64) {
    let mut r = common::Rng::new(seed);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for i in 0..40 {
        let n = (r.next_u64() % 400_000) as usize;
        let v: Vec<u8> = (0..n).map(|_| (r.next_u64() % 7) as u8 + b'a').collect();
        std::fs::write(
            dir.join(if i % 2 == 0 {
                format!("f{i}")
            } else {
                format!("sub/g{i}")
            }),
            v,
        )
        .unwrap();
    }
}

#[test]
fn sigkill_during_commit_and_optimize_leaves_a_valid_wim() {
    if !common::require(&["wimlib-imagex"]) {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_wimfs");
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    make_source(&a, 1);
    make_source(&b, 2);
    let src = tmp.path().join("src.wim");
    ok(Command::new("wimlib-imagex")
        .arg("capture")
        .arg(&b)
        .arg(&src)
        .arg("B")
        .arg("--compress=LZX"));
    let marker = tmp.path().join("marker");
    // (point, rebuild?, does the kill leave the new images?)
    let points = [
        ("after-blobs", false, false),
        ("before-header", false, false),
        ("after-header", false, true),
        ("rebuild-after-blobs", true, false),
        ("rebuild-before-rename", true, false),
    ];
    for (t, &(point, optimize, landed)) in points.iter().enumerate() {
        let what = format!("trial {t} ({point})");
        let dst = tmp.path().join(format!("dst{t}.wim"));
        ok(Command::new("wimlib-imagex")
            .arg("capture")
            .arg(&a)
            .arg(&dst)
            .arg("A")
            .arg("--compress=LZX"));
        if optimize {
            // Something to shed first, then a rebuild to kill.
            ok(Command::new(bin).arg("export").arg(&src).arg("1").arg(&dst));
        }
        let old = images(&dst);
        // The new images: the same write, uninterrupted, on a copy.
        let copy = tmp.path().join(format!("copy{t}.wim"));
        std::fs::copy(&dst, &copy).unwrap();
        if optimize {
            ok(Command::new(bin).arg("optimize").arg(&copy));
        } else {
            ok(Command::new(bin)
                .arg("export")
                .arg(&src)
                .arg("1")
                .arg(&copy));
        }
        let new = images(&copy);
        if optimize {
            assert_eq!(new, old, "{what}: optimize changed the images");
        } else {
            assert_eq!(new.len(), old.len() + 1, "{what}");
        }
        let mut cmd = Command::new(bin);
        if optimize {
            cmd.arg("optimize").arg(&dst);
        } else {
            cmd.arg("export").arg(&src).arg("1").arg(&dst);
        }
        kill_at(&mut cmd, point, &marker, &what);
        // The WIM verifies and holds exactly the old or the new images.
        let v = common::wimlib_verify(&dst, &[]);
        assert!(
            v.ok(),
            "{what}: WIM invalid after the kill:\n{}",
            v.describe()
        );
        let after = images(&dst);
        if landed {
            assert_eq!(after, new, "{what}: not the new images");
        } else {
            assert_eq!(after, old, "{what}: not the old images");
        }
        // And a later commit still works on it (under another name: image
        // "B" may be there already, and names must be unique).
        ok(Command::new(bin)
            .arg("export")
            .arg(&src)
            .arg("1")
            .arg(&dst)
            .args(["--name", "again"]));
        ok(Command::new("wimlib-imagex").arg("verify").arg(&dst));
        assert_eq!(images(&dst).len(), after.len() + 1, "{what}: later export");
    }
}
