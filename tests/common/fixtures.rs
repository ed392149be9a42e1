//! Where test data lives: the shared real WIMs in `../shared/fixtures`,
//! scratch directories under cargo's target tmp, and unpacking zips.

use super::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The shared fixture folder (`../shared/fixtures` from the project root, or
/// `$WIMFS_FIXTURES`). `None`, with a loud banner, when it is absent: the
/// fixture parts of the tests are then skipped.
pub fn fixtures() -> Option<PathBuf> {
    let p = std::env::var_os("WIMFS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    if p.join("README.md").is_file() {
        Some(p.canonicalize().unwrap_or(p))
    } else {
        skip_optional(&format!(
            "fixtures absent: {} not found, the fixture part of this test did not run",
            p.display()
        ));
        None
    }
}

/// Every `*.wim` / `*.swm` under the fixture folder, sorted, as paths
/// relative to it (e.g. `wimlib/LZX.wim`).
pub fn fixture_wims(fx: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![fx.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("wim" | "swm")) {
                out.push(p.strip_prefix(fx).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// Cargo's per-target scratch dir (`target/tmp`).
pub fn tmp_root() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// A fresh temp dir, deleted when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("wimfs-test-")
        .tempdir_in(tmp_root())
        .expect("create temp dir")
}

/// A directory shared by the tests of one test binary run (e.g. for WIMs
/// generated once). Stale ones from earlier runs with the same `name` are
/// removed. Not deleted at exit (statics are not dropped); the next run
/// cleans it.
pub fn shared_dir(name: &str) -> PathBuf {
    let root = tmp_root();
    let prefix = format!("shared-{name}-");
    if let Ok(rd) = std::fs::read_dir(&root) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let d = root.join(format!("{prefix}{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Unpack a zip into `dir` (with `unzip`, or python's zipfile).
pub fn unzip(zip: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    if have("unzip") {
        run_ok(
            Command::new("unzip")
                .arg("-q")
                .arg("-o")
                .arg(zip)
                .arg("-d")
                .arg(dir),
        );
    } else {
        run_ok(
            Command::new("python3")
                .arg("-c")
                .arg("import sys,zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])")
                .arg(zip)
                .arg(dir),
        );
    }
}
