//! Test harness plumbing: loud banners, skip reporting (counted by
//! `scripts/test.sh`, failures under `CI`), root detection, running many
//! cases and reporting every failure, values built once per test binary.

use std::sync::OnceLock;

/// Print a message nobody can miss in `cargo test` output.
pub fn banner(msg: &str) {
    let bar = "!".repeat(78);
    eprintln!("\n{bar}\n!!! {msg}\n{bar}\n");
}

/// Record that (part of) a test was skipped for `reason`, so the skip is
/// seen: a loud banner, and a line in the skip log (`$WIMFS_SKIP_LOG`, set
/// by `scripts/test.sh`, which counts them in its closing line). Under `CI`
/// a skip is a failure: the CI run installs every prerequisite.
pub fn skip(reason: &str) {
    let line = skip_line(reason);
    if std::env::var_os("CI").is_some() {
        panic!("SKIPPED (not allowed in CI): {line}");
    }
    record_skip(&line);
}

/// [`skip`] for what CI cannot be asked to provide (the shared fixture
/// folder lives outside the repository): recorded and shown, never a
/// failure.
pub fn skip_optional(reason: &str) {
    record_skip(&skip_line(reason));
}

/// `BINARY::TEST: reason`: the test binary without cargo's hash suffix,
/// and the test's name (libtest names each test's thread after it).
fn skip_line(reason: &str) -> String {
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| s.rsplit_once('-').map_or(s.clone(), |(a, _)| a.to_string()))
        .unwrap_or_default();
    format!("{bin}::{test}: {reason}")
}

fn record_skip(line: &str) {
    banner(&format!("SKIPPED {line}"));
    if let Some(log) = std::env::var_os("WIMFS_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// True when this process runs as root (tests that play a second local
/// user need it).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Run `f` for each item and gather failures (panic messages) instead of
/// stopping at the first, then panic with all of them. Lets one test report
/// every failing WIM at once.
pub fn check_all<T, F>(items: impl IntoIterator<Item = T>, name: impl Fn(&T) -> String, f: F)
where
    F: Fn(&T),
{
    let mut fails = Vec::new();
    let mut n = 0;
    for it in items {
        n += 1;
        let label = name(&it);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&it)));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(non-string panic)".into());
            fails.push(format!("=== {label} ===\n{msg}"));
        }
    }
    if !fails.is_empty() {
        panic!(
            "{} of {n} cases failed:\n\n{}",
            fails.len(),
            fails.join("\n\n")
        );
    }
}

/// Shared, lazily built value (e.g. generated WIMs) for one test binary.
pub struct Lazy<T> {
    cell: OnceLock<T>,
}
impl<T> Lazy<T> {
    pub const fn new() -> Self {
        Lazy {
            cell: OnceLock::new(),
        }
    }
    pub fn get(&self, f: impl FnOnce() -> T) -> &T {
        self.cell.get_or_init(f)
    }
}
