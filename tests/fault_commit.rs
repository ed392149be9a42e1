//! Fault tests: a process writing a WIM is killed with SIGKILL at random
//! moments. The WIM must always verify with wimlib and hold either the old
//! or the new set of images. Commits (exercised through `wimfs export` into
//! an existing WIM, which appends through the same commit path) and
//! rebuilds (`wimfs optimize`) are both covered.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

fn image_count(wim: &Path) -> u32 {
    let out = ok(Command::new("wimlib-imagex").arg("info").arg(wim));
    out.lines()
        .find_map(|l| l.strip_prefix("Image Count:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("image count")
}

/// A pseudo-random sequence without a crate (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn make_source(dir: &Path, seed: u64) {
    let mut r = Rng(seed | 1);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for i in 0..40 {
        let n = (r.next() % 400_000) as usize;
        let v: Vec<u8> = (0..n).map(|_| (r.next() % 7) as u8 + b'a').collect();
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
    let trials: u64 = std::env::var("WIMFS_FAULT_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut killed, mut finished) = (0, 0);
    for t in 0..trials {
        let dst = tmp.path().join(format!("dst{t}.wim"));
        ok(Command::new("wimlib-imagex")
            .arg("capture")
            .arg(&a)
            .arg(&dst)
            .arg("A")
            .arg("--compress=LZX"));
        let before = image_count(&dst);
        let optimize = t % 3 == 2;
        let mut cmd = Command::new(bin);
        if optimize {
            // Something to shed first, then a rebuild to kill.
            ok(Command::new(bin).arg("export").arg(&src).arg("1").arg(&dst));
            cmd.arg("optimize").arg(&dst);
        } else {
            cmd.arg("export").arg(&src).arg("1").arg(&dst);
        }
        let expect_before = image_count(&dst);
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = Duration::from_micros(rng.next() % 250_000);
        let start = Instant::now();
        while start.elapsed() < delay {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        let _ = child.kill();
        let st = child.wait().unwrap();
        if st.success() {
            finished += 1;
        } else {
            killed += 1;
        }
        // Whatever happened, the WIM verifies and holds old or new images.
        ok(Command::new("wimlib-imagex").arg("verify").arg(&dst));
        let after = image_count(&dst);
        if optimize {
            assert_eq!(
                after, expect_before,
                "trial {t}: optimize changed the image count"
            );
        } else {
            assert!(
                after == before || after == before + 1,
                "trial {t}: {before} -> {after} images"
            );
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
    }
    eprintln!("fault trials: {killed} killed mid-write, {finished} finished before the kill");
    assert!(
        killed > 0,
        "no trial was interrupted; the test did not test anything"
    );
}
