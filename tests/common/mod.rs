//! Shared helpers for the integration tests: fixture lookup, running
//! commands (with a timeout and readable failure messages), temp dirs,
//! building WIMs with wimlib-imagex (from a directory or from an NTFS volume
//! filled through ntfs-3g), generating source trees, and a tree comparator.
//!
//! Every test binary includes this module and uses a different subset of it.
#![allow(dead_code)]

pub mod libwim;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsStr, OsString};
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Banners, fixtures, tools
// ---------------------------------------------------------------------------

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

/// True when `tool` is an executable on PATH (or in the sbin dirs).
pub fn have(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .any(|d| d.join(tool).is_file())
}

/// Check that external tools are installed. When one is missing: in CI
/// (`CI` set) that is a failure, because `scripts/test.sh` installs them;
/// elsewhere a loud banner and `false` (the caller skips).
pub fn require(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    if missing.is_empty() {
        return true;
    }
    skip(&format!(
        "missing tools {missing:?}: run scripts/test.sh (installs wimtools ntfs-3g fuse3 attr unzip)"
    ));
    false
}

/// Absolute path of `wimlib-imagex`'s sbin friends (mkntfs lives in /usr/sbin).
fn tool_path(tool: &str) -> PathBuf {
    for d in ["/usr/sbin", "/sbin"] {
        let p = Path::new(d).join(tool);
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(tool)
}

// ---------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------

/// What a finished (or killed) command produced.
pub struct Out {
    pub cmd: String,
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl Out {
    pub fn ok(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// Both streams, for keyword searches.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout_str(), self.stderr_str())
    }
    /// Multi-line description for failure messages (output trimmed).
    pub fn describe(&self) -> String {
        fn trim(b: &[u8]) -> String {
            let s = String::from_utf8_lossy(b);
            let s = s.replace('\r', "\n");
            if s.len() > 6000 {
                let mut cut = s.len() - 3000;
                while !s.is_char_boundary(cut) {
                    cut += 1;
                }
                let mut head = 3000;
                while !s.is_char_boundary(head) {
                    head -= 1;
                }
                format!(
                    "{}\n[... {} bytes cut ...]\n{}",
                    &s[..head],
                    s.len() - 6000,
                    &s[cut..]
                )
            } else {
                s
            }
        }
        let status = if self.timed_out {
            format!("TIMED OUT after {:.1?}", self.elapsed)
        } else {
            match self.status {
                Some(s) => match (s.code(), s.signal()) {
                    (Some(c), _) => format!("exit code {c}"),
                    (None, Some(sig)) => format!("killed by signal {sig}"),
                    _ => format!("{s}"),
                },
                None => "did not start".into(),
            }
        };
        let mut cmd = self.cmd.clone();
        if cmd.len() > 1000 {
            let mut cut = 1000;
            while !cmd.is_char_boundary(cut) {
                cut -= 1;
            }
            cmd.truncate(cut);
            cmd.push_str(" [...]");
        }
        format!(
            "command: {cmd}\nstatus: {status} ({:.2?})\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.elapsed,
            trim(&self.stdout),
            trim(&self.stderr)
        )
    }
}

fn cmd_string(c: &Command) -> String {
    let mut s = c.get_program().to_string_lossy().into_owned();
    for a in c.get_args() {
        let a = a.to_string_lossy();
        if a.contains(' ') || a.is_empty() {
            let _ = write!(s, " '{a}'");
        } else {
            let _ = write!(s, " {a}");
        }
    }
    s
}

/// Run `c` with stdin closed, collecting stdout/stderr; kill it after
/// `timeout`. Never panics on the command's behaviour (only if it cannot be
/// started, which is reported through `status: None`).
pub fn run_timeout(c: &mut Command, timeout: Duration) -> Out {
    let cmd = cmd_string(c);
    let start = Instant::now();
    let mut child = match c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(ch) => ch,
        Err(e) => {
            return Out {
                cmd,
                status: None,
                stdout: Vec::new(),
                stderr: format!("failed to start: {e}").into_bytes(),
                timed_out: false,
                elapsed: start.elapsed(),
            }
        }
    };
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let so = reader(Box::new(child.stdout.take().unwrap()));
    let se = reader(Box::new(child.stderr.take().unwrap()));
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(_) => break None,
        }
        if start.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Out {
        cmd,
        status,
        stdout: so.join().unwrap_or_default(),
        stderr: se.join().unwrap_or_default(),
        timed_out,
        elapsed: start.elapsed(),
    }
}

/// Default limit for any single command in the tests.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(300);

pub fn run(c: &mut Command) -> Out {
    run_timeout(c, CMD_TIMEOUT)
}

/// Run and panic with the full description unless it exits 0.
pub fn run_ok(c: &mut Command) -> Out {
    let o = run(c);
    assert!(o.ok(), "command failed:\n{}", o.describe());
    o
}

/// Build a `Command` from a program and arguments.
pub fn cmd<I, S>(prog: impl AsRef<OsStr>, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new(prog);
    c.args(args);
    c
}

/// Path of the `wimfs` binary under test.
pub fn wimfs_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wimfs"))
}

/// Run `wimfs ARGS...` (timeout [`CMD_TIMEOUT`]) and check it did not panic,
/// crash on a signal or hang; the exit status is left to the caller.
pub fn wimfs<I, S>(args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let o = run(&mut cmd(wimfs_bin(), args));
    assert_no_panic(&o);
    o
}

/// `wimfs ARGS...` must exit 0.
pub fn wimfs_ok<I, S>(args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let o = wimfs(args);
    assert!(o.ok(), "wimfs failed:\n{}", o.describe());
    o
}

/// No Rust panic, no death by signal, no timeout.
pub fn assert_no_panic(o: &Out) {
    assert!(!o.timed_out, "command hung (timeout):\n{}", o.describe());
    assert!(
        // stderr only: stdout may carry file data (`cat`) that contains anything.
        !o.stderr_str().contains("panicked at"),
        "command PANICKED:\n{}",
        o.describe()
    );
    if let Some(s) = o.status {
        assert!(
            s.signal().is_none(),
            "command died by a signal:\n{}",
            o.describe()
        );
        // 101 is the exit code of a Rust panic.
        assert_ne!(
            s.code(),
            Some(101),
            "command exited 101 (panic):\n{}",
            o.describe()
        );
    }
}

/// A clean failure: non-zero exit, no panic, and a message on stderr.
pub fn assert_clean_failure(o: &Out, what: &str) {
    assert_no_panic(o);
    assert!(
        !o.ok(),
        "{what}: expected failure, got success:\n{}",
        o.describe()
    );
    assert!(
        !o.stderr_str().trim().is_empty(),
        "{what}: failed without any message on stderr:\n{}",
        o.describe()
    );
}

// ---------------------------------------------------------------------------
// Temp dirs
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// wimlib-imagex
// ---------------------------------------------------------------------------

/// The compression settings every generated-WIM test goes through:
/// (label, extra `wimlib-imagex capture` arguments).
pub const CAPTURE_VARIANTS: &[(&str, &[&str])] = &[
    ("none", &["--compress=none"]),
    ("xpress", &["--compress=XPRESS"]),
    ("xpress-4k", &["--compress=XPRESS", "--chunk-size=4096"]),
    ("xpress-64k", &["--compress=XPRESS", "--chunk-size=65536"]),
    ("lzx", &["--compress=LZX"]),
    ("lzx-2m", &["--compress=LZX", "--chunk-size=2097152"]),
    ("lzms", &["--compress=LZMS"]),
    ("lzms-1m", &["--compress=LZMS", "--chunk-size=1048576"]),
    ("solid", &["--solid"]),
    ("solid-1m", &["--solid", "--solid-chunk-size=1048576"]),
    (
        "solid-xpress",
        &[
            "--solid",
            "--solid-compress=XPRESS",
            "--solid-chunk-size=65536",
        ],
    ),
    ("lzx-integrity", &["--compress=LZX", "--check"]),
];

/// `wimlib-imagex capture SRC WIM [EXTRA...]`, panicking on failure.
/// `extra` takes e.g. `--compress=LZX`, `--solid`, `--chunk-size=N`, `--check`.
pub fn wimlib_capture(src: &Path, wim: &Path, extra: &[&str]) {
    let mut c = Command::new("wimlib-imagex");
    c.arg("capture").arg(src).arg(wim).args(extra);
    run_ok(&mut c);
}

/// `wimlib-imagex apply WIM IMAGE DIR [--ref=PART...]`.
pub fn wimlib_apply(wim: &Path, image: &str, dir: &Path, refs: &[PathBuf]) -> Out {
    let mut c = Command::new("wimlib-imagex");
    c.arg("apply").arg(wim).arg(image).arg(dir);
    for r in refs {
        let mut a = OsString::from("--ref=");
        a.push(r);
        c.arg(a);
    }
    run(&mut c)
}

/// `wimlib-imagex verify WIM [--ref=PART...]`.
pub fn wimlib_verify(wim: &Path, refs: &[PathBuf]) -> Out {
    let mut c = Command::new("wimlib-imagex");
    c.arg("verify").arg(wim);
    for r in refs {
        let mut a = OsString::from("--ref=");
        a.push(r);
        c.arg(a);
    }
    run(&mut c)
}

/// Image names from `wimlib-imagex info WIM`, in index order.
pub fn wimlib_image_names(wim: &Path) -> Vec<String> {
    let o = run_ok(Command::new("wimlib-imagex").arg("info").arg(wim));
    let s = o.stdout_str();
    let count: usize = s
        .lines()
        .find_map(|l| l.strip_prefix("Image Count:"))
        .map(|v| v.trim().parse().unwrap())
        .expect("Image Count in wimlib-imagex info");
    let names: Vec<String> = s
        .lines()
        .filter_map(|l| l.strip_prefix("Name:"))
        .map(|n| n.trim().to_string())
        .collect();
    assert_eq!(names.len(), count, "wimlib-imagex info output:\n{s}");
    names
}

/// Full paths listed by `wimlib-imagex dir WIM IMAGE [--path=P]`.
pub fn wimlib_dir(wim: &Path, image: &str, refs: &[PathBuf], path: Option<&str>) -> Vec<String> {
    let mut c = Command::new("wimlib-imagex");
    c.arg("dir").arg(wim).arg(image);
    if let Some(p) = path {
        c.arg(format!("--path={p}"));
    }
    for r in refs {
        let mut a = OsString::from("--ref=");
        a.push(r);
        c.arg(a);
    }
    let o = run_ok(&mut c);
    o.stdout_str()
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// One field from `wimlib-imagex info --header WIM` (e.g. "Blob Table Offset").
pub fn wimlib_header_field(wim: &Path, field: &str) -> u64 {
    let o = run_ok(
        Command::new("wimlib-imagex")
            .arg("info")
            .arg("--header")
            .arg(wim),
    );
    let s = o.stdout_str();
    for l in s.lines() {
        if let Some((k, v)) = l.split_once('=') {
            if k.trim() == field {
                let v = v.trim();
                return if let Some(h) = v.strip_prefix("0x") {
                    u64::from_str_radix(h, 16).unwrap()
                } else {
                    v.parse().unwrap()
                };
            }
        }
    }
    panic!("no header field {field:?} in:\n{s}");
}

/// Where a file's unnamed stream is stored in the WIM, from
/// `wimlib-imagex dir --detailed`: (offset, stored size) of its resource
/// (for a blob in a solid resource: the whole solid resource).
pub fn wimlib_blob_location(wim: &Path, image: &str, path: &str) -> (u64, u64) {
    let o = run_ok(
        Command::new("wimlib-imagex")
            .args(["dir"])
            .arg(wim)
            .arg(image)
            .arg(format!("--path={path}"))
            .arg("--detailed"),
    );
    let s = o.stdout_str();
    let field = |name: &str| -> Option<String> {
        s.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    };
    let first_num = |v: &str| -> u64 { v.split_whitespace().next().unwrap().parse().unwrap() };
    if let Some(solid) = field("Solid resource") {
        // "488894 => 222704 bytes @ offset 208"
        let w: Vec<&str> = solid.split_whitespace().collect();
        return (w[w.len() - 1].parse().unwrap(), w[2].parse().unwrap());
    }
    let off = field("Offset in WIM").unwrap_or_else(|| panic!("no offset in:\n{s}"));
    let size = field("Compressed size").unwrap_or_else(|| panic!("no size in:\n{s}"));
    (first_num(&off), first_num(&size))
}

/// One entry of a WIM's blob table (read raw from the file).
#[derive(Debug, Clone)]
pub struct BlobEntry {
    /// Byte offset of the entry itself in the WIM file.
    pub entry_offset: u64,
    pub stored_size: u64,
    pub flags: u8,
    pub offset: u64,
    pub original_size: u64,
    pub hash: [u8; 20],
}

/// Parse the (uncompressed) blob table of a standalone WIM.
pub fn blob_table(wim: &Path) -> Vec<BlobEntry> {
    let data = std::fs::read(wim).unwrap();
    let off = wimlib_header_field(wim, "Blob Table Offset") as usize;
    let size = wimlib_header_field(wim, "Blob Table Size") as usize;
    let le = |b: &[u8]| b.iter().rev().fold(0u64, |a, &x| (a << 8) | x as u64);
    data[off..off + size]
        .chunks_exact(50)
        .enumerate()
        .map(|(i, e)| BlobEntry {
            entry_offset: (off + i * 50) as u64,
            stored_size: le(&e[0..7]),
            flags: e[7],
            offset: le(&e[8..16]),
            original_size: le(&e[16..24]),
            hash: e[30..50].try_into().unwrap(),
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Deterministic data and generated source trees
// ---------------------------------------------------------------------------

/// xorshift64*: deterministic pseudo-random bytes without a dependency.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// English-like text (compressible, with long repeats).
pub fn text_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the", "image", "window", "file", "stream", "chunk", "of", "and", "to", "compress",
        "header", "table", "resource", "a", "is", "in", "data", "blob", "hash", "metadata",
    ];
    let mut v = Vec::with_capacity(n + 16);
    while v.len() < n {
        v.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
        v.push(if rng.below(13) == 0 { b'\n' } else { b' ' });
    }
    v.truncate(n);
    v
}

/// x86-like machine code: the head of this very test executable (an ELF
/// with real x86-64 code, which exercises LZX's E8 call translation), padded
/// with synthetic `call rel32` sequences when shorter than `n`.
pub fn x86_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut v = std::env::current_exe()
        .ok()
        .and_then(|p| std::fs::read(p).ok())
        .unwrap_or_default();
    v.truncate(n);
    while v.len() < n {
        v.push(0xE8);
        v.extend_from_slice(&(rng.below(1 << 20) as u32).to_le_bytes());
        v.extend_from_slice(&[0x48, 0x89, 0xC7, 0x90]);
    }
    v.truncate(n);
    v
}

/// Set the timestamps (atime = mtime = `ns` since the epoch) of a path
/// without following symlinks.
pub fn set_mtime(p: &Path, secs: i64, nsec: i64) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let ts = [
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        },
    ];
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(
        r,
        0,
        "utimensat {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

/// What [`make_source_tree`] put where (relative paths with `/`).
#[derive(Default, Debug)]
pub struct SourceInfo {
    /// Regular files and their contents (every path of every hard link).
    pub files: BTreeMap<String, Vec<u8>>,
    /// Size of the largest file (to reason about chunk counts).
    pub largest: usize,
}

/// Fill `dir` (which must exist and be empty) with an assorted tree:
/// random, text, zeros, x86 code, a file spanning many chunks of any chunk
/// size used (3.5 MiB), sizes on chunk boundaries, an empty file, duplicate
/// contents, Unicode and odd names, nested and empty directories, hard
/// links, relative/absolute/dangling symlinks, and distinct nanosecond
/// mtimes everywhere. Deterministic.
pub fn make_source_tree(dir: &Path) -> SourceInfo {
    let mut rng = Rng::new(0x5EED);
    let mut info = SourceInfo::default();
    let add = |info: &mut SourceInfo, rel: &str, data: Vec<u8>| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &data).unwrap();
        info.largest = info.largest.max(data.len());
        info.files.insert(rel.to_string(), data);
    };
    add(&mut info, "random.bin", rng.bytes(100_000));
    add(&mut info, "text.txt", text_bytes(&mut rng, 300_000));
    add(&mut info, "zeros.bin", vec![0; 1 << 20]);
    add(&mut info, "code.x86", x86_bytes(&mut rng, 1_500_000));
    // Mixed content over 3.5 MiB: several chunks even at 2 MiB chunk size,
    // and more than one 1 MiB solid chunk.
    let mut big = Vec::new();
    while big.len() < 3_600_000 {
        let k = rng.below(4);
        let n = 20_000 + rng.below(200_000) as usize;
        big.extend(match k {
            0 => rng.bytes(n),
            1 => text_bytes(&mut rng, n),
            2 => vec![rng.below(256) as u8; n],
            _ => x86_bytes(&mut rng, n.min(1000)),
        });
    }
    add(&mut info, "big/multi-chunk.dat", big);
    add(&mut info, "empty", Vec::new());
    add(&mut info, "one-byte", vec![b'x']);
    for n in [
        4095usize, 4096, 4097, 32767, 32768, 32769, 65536, 131072, 131073,
    ] {
        let d = text_bytes(&mut rng, n);
        add(&mut info, &format!("sizes/{n}.txt"), d);
    }
    // Same content twice (one blob in the WIM, two files).
    let dup = rng.bytes(50_000);
    add(&mut info, "dup/a.bin", dup.clone());
    add(&mut info, "dup/b.bin", dup);
    add(
        &mut info,
        "names/ünïcødé ☃ file.txt",
        b"unicode name\n".to_vec(),
    );
    add(
        &mut info,
        "names/with space & (parens)",
        b"spaces\n".to_vec(),
    );
    add(&mut info, "names/UPPER.TXT", b"upper\n".to_vec());
    add(
        &mut info,
        "names/upper.txt",
        b"lower: differs only in case\n".to_vec(),
    );
    add(&mut info, "names/.hidden", b"dot file\n".to_vec());
    let mut deep = String::from("deep");
    for i in 0..12 {
        let _ = write!(deep, "/level{i}");
    }
    add(
        &mut info,
        &format!("{deep}/leaf.txt"),
        b"deep leaf\n".to_vec(),
    );
    std::fs::create_dir_all(dir.join("empty-dir")).unwrap();
    std::fs::create_dir_all(dir.join("nested/empty/inside")).unwrap();
    // Hard links: a group of three and a group of two.
    add(&mut info, "links/h1", text_bytes(&mut rng, 10_000));
    std::fs::hard_link(dir.join("links/h1"), dir.join("links/h2")).unwrap();
    std::fs::hard_link(dir.join("links/h1"), dir.join("names/h3-elsewhere")).unwrap();
    let h = info.files["links/h1"].clone();
    info.files.insert("links/h2".into(), h.clone());
    info.files.insert("names/h3-elsewhere".into(), h);
    add(&mut info, "links/g1", vec![7; 5000]);
    std::fs::hard_link(dir.join("links/g1"), dir.join("links/g2")).unwrap();
    info.files.insert("links/g2".into(), vec![7; 5000]);
    // Symlinks.
    let sl = |target: &str, link: &str| std::os::unix::fs::symlink(target, dir.join(link)).unwrap();
    sl("../text.txt", "links/rel-file");
    sl("../big", "links/rel-dir");
    sl("missing-target", "links/dangling");
    sl("/etc/hostname", "links/abs-outside");
    let inside = dir.canonicalize().unwrap().join("random.bin");
    sl(inside.to_str().unwrap(), "links/abs-inside");
    // mtimes: distinct, with nanoseconds (wimlib keeps 100 ns units).
    let mut all = Vec::new();
    walk_paths(dir, "", &mut all);
    // Children before parents so directory times stick.
    all.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    for (i, rel) in all.iter().enumerate() {
        let p = if rel.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(rel)
        };
        set_mtime(
            &p,
            1_000_000_000 + (i as i64) * 86_399,
            123_456_789 + i as i64 * 1000,
        );
    }
    set_mtime(dir, 1_500_000_000, 987_654_321);
    info
}

fn walk_paths(root: &Path, rel: &str, out: &mut Vec<String>) {
    let d = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if e.file_type().unwrap().is_dir() {
            walk_paths(root, &r, out);
        }
        out.push(r);
    }
}

/// Make a sparse file of `len` bytes with a few data islands (fast to
/// create; its uncompressed size can exceed 4 GiB).
pub fn make_sparse_file(p: &Path, len: u64) -> Vec<(u64, Vec<u8>)> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::File::create(p).unwrap();
    f.set_len(len).unwrap();
    let mut rng = Rng::new(42);
    let mut islands = Vec::new();
    for off in [
        0,
        1 << 20,
        (1u64 << 32) - 3,
        (1u64 << 32) + 12345,
        len - 1000,
    ] {
        if off + 1000 <= len {
            let d = rng.bytes(1000);
            f.seek(SeekFrom::Start(off)).unwrap();
            f.write_all(&d).unwrap();
            islands.push((off, d));
        }
    }
    islands
}

// ---------------------------------------------------------------------------
// Unzipping the ImageX sources
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// NTFS-sourced WIMs
// ---------------------------------------------------------------------------

/// An ntfs-3g mount of an image file; unmounted when dropped (also when the
/// test panics half-way).
pub struct NtfsMount {
    pub mnt: PathBuf,
    child: Option<Child>,
}

impl NtfsMount {
    /// Mount `image` on `mnt` with `-o streams_interface=xattr` (named
    /// streams appear as `user.*` xattrs). `no_detach` keeps ntfs-3g our
    /// child, so unmounting can wait until it has flushed the image.
    pub fn mount(image: &Path, mnt: &Path) -> Result<NtfsMount, String> {
        std::fs::create_dir_all(mnt).unwrap();
        let child = Command::new("ntfs-3g")
            .arg("-o")
            .arg("streams_interface=xattr,no_detach")
            .arg(image)
            .arg(mnt)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run ntfs-3g: {e}"))?;
        let mut m = NtfsMount {
            mnt: mnt.to_path_buf(),
            child: Some(child),
        };
        let canon = mnt.canonicalize().unwrap();
        let start = Instant::now();
        loop {
            let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
            if mounts
                .lines()
                .any(|l| l.split(' ').nth(1) == Some(canon.to_str().unwrap()))
            {
                return Ok(m);
            }
            if let Some(Ok(Some(st))) = m.child.as_mut().map(|c| c.try_wait()) {
                m.child = None;
                return Err(format!(
                    "ntfs-3g exited with {st} before mounting (no FUSE?)"
                ));
            }
            if start.elapsed() > Duration::from_secs(20) {
                return Err("ntfs-3g did not mount within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Unmount and wait for ntfs-3g to finish writing the image.
    pub fn unmount(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let start = Instant::now();
        loop {
            let st = Command::new("umount")
                .arg(&self.mnt)
                .stderr(Stdio::null())
                .status();
            if st.is_ok_and(|s| s.success()) {
                break;
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let start = Instant::now();
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            if start.elapsed() > Duration::from_secs(30) {
                eprintln!("ntfs-3g did not exit after unmount; killing it");
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NtfsMount {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// Hex string `0x...` for setfattr.
fn hexv(b: &[u8]) -> String {
    let mut s = String::from("0x");
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// Reparse data of a Windows symbolic link (tag 0xA000000C).
pub fn reparse_symlink(substitute: &str, print: &str, relative: bool) -> Vec<u8> {
    let (s, p) = (utf16(substitute), utf16(print));
    let mut body = Vec::new();
    for v in [0u16, s.len() as u16, s.len() as u16, p.len() as u16] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    body.extend_from_slice(&(relative as u32).to_le_bytes());
    body.extend_from_slice(&s);
    body.extend_from_slice(&p);
    let mut out = Vec::new();
    out.extend_from_slice(&0xA000_000Cu32.to_le_bytes());
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reparse data of a junction / mount point (tag 0xA0000003).
pub fn reparse_junction(substitute: &str, print: &str) -> Vec<u8> {
    let (s, p) = (utf16(substitute), utf16(print));
    let mut body = Vec::new();
    for v in [0u16, s.len() as u16, s.len() as u16 + 2, p.len() as u16] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    body.extend_from_slice(&s);
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&p);
    body.extend_from_slice(&[0, 0]);
    let mut out = Vec::new();
    out.extend_from_slice(&0xA000_0003u32.to_le_bytes());
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A self-relative security descriptor: owner S-1-5-32-544
/// (Administrators), group S-1-5-18 (SYSTEM), DACL allowing Everyone read
/// and Administrators full control.
pub fn custom_security_descriptor() -> Vec<u8> {
    let sid = |auth: u8, subs: &[u32]| {
        let mut v = vec![1u8, subs.len() as u8, 0, 0, 0, 0, 0, auth];
        for s in subs {
            v.extend_from_slice(&s.to_le_bytes());
        }
        v
    };
    let owner = sid(5, &[32, 544]);
    let group = sid(5, &[18]);
    let ace = |mask: u32, sid: &[u8]| {
        let mut v = vec![0u8, 0]; // ACCESS_ALLOWED_ACE_TYPE, flags
        v.extend_from_slice(&((8 + sid.len()) as u16).to_le_bytes());
        v.extend_from_slice(&mask.to_le_bytes());
        v.extend_from_slice(sid);
        v
    };
    let aces = [ace(0x0012_0089, &sid(1, &[0])), ace(0x001F_01FF, &owner)];
    let acl_len: usize = 8 + aces.iter().map(Vec::len).sum::<usize>();
    let mut acl = vec![2u8, 0];
    acl.extend_from_slice(&(acl_len as u16).to_le_bytes());
    acl.extend_from_slice(&(aces.len() as u16).to_le_bytes());
    acl.extend_from_slice(&0u16.to_le_bytes());
    for a in &aces {
        acl.extend_from_slice(a);
    }
    let off_owner = 20u32;
    let off_group = off_owner + owner.len() as u32;
    let off_dacl = off_group + group.len() as u32;
    let mut sd = vec![1u8, 0];
    sd.extend_from_slice(&(0x8004u16).to_le_bytes()); // SE_SELF_RELATIVE | SE_DACL_PRESENT
    for v in [off_owner, off_group, 0, off_dacl] {
        sd.extend_from_slice(&v.to_le_bytes());
    }
    sd.extend_from_slice(&owner);
    sd.extend_from_slice(&group);
    sd.extend_from_slice(&acl);
    sd
}

/// What [`build_ntfs_wim`] produced and what the image is known to hold.
#[derive(Debug)]
pub struct NtfsWim {
    pub wim: PathBuf,
    /// Unnamed-stream contents of regular files, by relative path.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Named data streams: (relative path, stream name, contents).
    pub ads: Vec<(String, String, Vec<u8>)>,
    /// Hard-link groups (relative paths).
    pub hardlinks: Vec<Vec<String>>,
    /// Reparse points: relative path -> expected symlink target on Linux
    /// when applied to ROOT, with `<ROOT>` standing for the extraction dir.
    pub symlinks: BTreeMap<String, String>,
    /// Files given a custom mtime: path -> (secs, nsec).
    pub mtimes: BTreeMap<String, (i64, i64)>,
    /// Short names set: path -> DOS name.
    pub short_names: BTreeMap<String, String>,
}

fn setfattr(path: &Path, name: &str, value: &str) -> Result<(), String> {
    let o = run(Command::new("setfattr")
        .arg("-n")
        .arg(name)
        .arg("-v")
        .arg(value)
        .arg(path));
    if o.ok() {
        Ok(())
    } else {
        Err(o.describe())
    }
}

/// Build a WIM captured by wimlib from a real NTFS volume: `mkntfs` on a
/// sparse image file, filled through an `ntfs-3g` mount, then
/// `wimlib-imagex capture IMG WIM [EXTRA...]` (which reads the NTFS volume
/// directly, keeping named streams, reparse points, security descriptors
/// and short names). `None` (with a banner) when the tools or FUSE are
/// missing outside CI.
pub fn build_ntfs_wim(work: &Path, extra: &[&str]) -> Option<NtfsWim> {
    if !require(&[
        "mkntfs",
        "ntfs-3g",
        "setfattr",
        "getfattr",
        "wimlib-imagex",
        "umount",
    ]) {
        return None;
    }
    if !Path::new("/dev/fuse").exists() {
        skip("no /dev/fuse: cannot mount NTFS with ntfs-3g, the NTFS-sourced WIM was not built");
        return None;
    }
    std::fs::create_dir_all(work).unwrap();
    let img = work.join("ntfs.raw");
    {
        let f = std::fs::File::create(&img).unwrap();
        f.set_len(64 << 20).unwrap();
    }
    run_ok(
        Command::new(tool_path("mkntfs"))
            .args(["-F", "-f", "-q", "-L", "wimfs-test"])
            .arg(&img),
    );
    let mnt = work.join("mnt");
    let mut m = match NtfsMount::mount(&img, &mnt) {
        Ok(m) => m,
        Err(e) => {
            let msg = format!("cannot mount NTFS image: {e} -- SKIPPING the NTFS-sourced WIM");
            if std::env::var_os("CI").is_some() {
                panic!("{msg}");
            }
            banner(&msg);
            return None;
        }
    };
    let mut rng = Rng::new(7);
    let mut files = BTreeMap::new();
    let mut ads = Vec::new();
    let mut symlinks = BTreeMap::new();
    let mut mtimes = BTreeMap::new();
    let mut short_names = BTreeMap::new();
    let root = m.mnt.clone();
    let mut put = |rel: &str, data: Vec<u8>| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &data).unwrap();
        files.insert(rel.to_string(), data);
    };
    put("hello.txt", b"hello, ntfs\n".to_vec());
    let mut big = text_bytes(&mut rng, 200_000);
    big.extend(rng.bytes(150_000));
    put("multi-chunk.bin", big);
    put("empty.txt", Vec::new());
    put("dir/sub/file.txt", text_bytes(&mut rng, 5000));
    std::fs::create_dir_all(root.join("dir/emptydir")).unwrap();
    put(
        "Long File Name With Spaces.txt",
        b"short name test\n".to_vec(),
    );
    put("acl.txt", b"custom security descriptor\n".to_vec());
    put("streams.txt", b"file with named streams\n".to_vec());
    // Named data streams (ADS) through the xattr interface.
    // Linux caps an xattr value at 64 KiB; 60 000 bytes still spans two
    // 32 KiB chunks.
    let big_ads = text_bytes(&mut rng, 60_000);
    let ads_list: Vec<(&str, &str, Vec<u8>)> = vec![
        ("streams.txt", "small", b"stream data".to_vec()),
        ("streams.txt", "big", big_ads),
        (
            "hello.txt",
            "Zone.Identifier",
            b"[ZoneTransfer]\r\nZoneId=3\r\n".to_vec(),
        ),
        ("dir", "dirstream", b"a stream on a directory".to_vec()),
        ("empty.txt", "nonempty-stream", b"x".to_vec()),
    ];
    for (rel, name, data) in ads_list {
        if data.len() < 16 * 1024 {
            setfattr(&root.join(rel), &format!("user.{name}"), &hexv(&data)).unwrap();
        } else {
            // Too long for one command-line argument.
            set_user_xattr(&root.join(rel), &format!("user.{name}"), &data);
        }
        ads.push((rel.to_string(), name.to_string(), data));
    }
    // Hard links.
    std::fs::hard_link(root.join("hello.txt"), root.join("hello-link.txt")).unwrap();
    std::fs::hard_link(root.join("hello.txt"), root.join("dir/hello-link2.txt")).unwrap();
    files.insert("hello-link.txt".into(), files["hello.txt"].clone());
    files.insert("dir/hello-link2.txt".into(), files["hello.txt"].clone());
    // The linked file's streams belong to every name of the inode.
    for extra_name in ["hello-link.txt", "dir/hello-link2.txt"] {
        let s: Vec<_> = ads
            .iter()
            .filter(|(p, _, _)| p == "hello.txt")
            .map(|(_, n, d)| (extra_name.to_string(), n.clone(), d.clone()))
            .collect();
        ads.extend(s);
    }
    let hardlinks = vec![vec![
        "dir/hello-link2.txt".to_string(),
        "hello-link.txt".to_string(),
        "hello.txt".to_string(),
    ]];
    // Reparse points (ntfs-3g's own `ln -s` makes Interix links, not
    // reparse points, so write the reparse data directly).
    let mk = |rel: &str, dir: bool, data: Vec<u8>| {
        let p = root.join(rel);
        if dir {
            std::fs::create_dir(&p).unwrap();
        } else {
            std::fs::write(&p, b"").unwrap();
        }
        setfattr(&p, "system.ntfs_reparse_data", &hexv(&data))
    };
    mk(
        "link-rel-file",
        false,
        reparse_symlink("dir\\sub\\file.txt", "dir\\sub\\file.txt", true),
    )
    .unwrap();
    symlinks.insert("link-rel-file".into(), "dir/sub/file.txt".into());
    mk(
        "dir/link-up",
        false,
        reparse_symlink("..\\hello.txt", "..\\hello.txt", true),
    )
    .unwrap();
    symlinks.insert("dir/link-up".into(), "../hello.txt".into());
    mk(
        "link-rel-dir",
        true,
        reparse_symlink("dir\\sub", "dir\\sub", true),
    )
    .unwrap();
    symlinks.insert("link-rel-dir".into(), "dir/sub".into());
    mk(
        "link-abs",
        false,
        reparse_symlink(
            "\\??\\C:\\dir\\sub\\file.txt",
            "C:\\dir\\sub\\file.txt",
            false,
        ),
    )
    .unwrap();
    symlinks.insert("link-abs".into(), "<ROOT>/dir/sub/file.txt".into());
    mk(
        "junction",
        true,
        reparse_junction("\\??\\C:\\dir", "C:\\dir"),
    )
    .unwrap();
    symlinks.insert("junction".into(), "<ROOT>/dir".into());
    // Custom security descriptor and a short name.
    setfattr(
        &root.join("acl.txt"),
        "system.ntfs_acl",
        &hexv(&custom_security_descriptor()),
    )
    .unwrap();
    setfattr(
        &root.join("Long File Name With Spaces.txt"),
        "system.ntfs_dos_name",
        "LONGFI~1.TXT",
    )
    .unwrap();
    short_names.insert(
        "Long File Name With Spaces.txt".to_string(),
        "LONGFI~1.TXT".to_string(),
    );
    // Timestamps (NTFS keeps 100 ns units), files first, then directories.
    for (i, rel) in [
        "hello.txt",
        "multi-chunk.bin",
        "empty.txt",
        "dir/sub/file.txt",
        "streams.txt",
        "acl.txt",
    ]
    .iter()
    .enumerate()
    {
        let t = (
            1_100_000_000 + i as i64 * 1_000_003,
            123_456_700 + i as i64 * 100,
        );
        set_mtime(&root.join(rel), t.0, t.1);
        mtimes.insert(rel.to_string(), t);
    }
    for (i, rel) in ["dir/sub", "dir/emptydir", "dir"].iter().enumerate() {
        let t = (1_200_000_000 + i as i64 * 7, 987_654_300);
        set_mtime(&root.join(rel), t.0, t.1);
        mtimes.insert(rel.to_string(), t);
    }
    m.unmount();
    drop(m);
    let wim = work.join("ntfs.wim");
    wimlib_capture(&img, &wim, extra);
    let _ = std::fs::remove_file(&img);
    Some(NtfsWim {
        wim,
        files,
        ads,
        hardlinks,
        symlinks,
        mtimes,
        short_names,
    })
}

// ---------------------------------------------------------------------------
// Extended attributes
// ---------------------------------------------------------------------------

/// All `user.*` xattrs of a path (not following symlinks).
pub fn user_xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut out = BTreeMap::new();
    let n = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if n <= 0 {
        return out;
    }
    let mut buf = vec![0u8; n as usize + 256];
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return out;
    }
    buf.truncate(n as usize);
    for name in buf.split(|&b| b == 0).filter(|s| !s.is_empty()) {
        if !name.starts_with(b"user.") {
            continue;
        }
        let cn = CString::new(name).unwrap();
        let len = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), std::ptr::null_mut(), 0) };
        let mut v = vec![0u8; len.max(0) as usize];
        if len > 0 {
            let r =
                unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
            v.truncate(r.max(0) as usize);
        }
        out.insert(String::from_utf8_lossy(name).into_owned(), v);
    }
    out
}

/// Set a `user.*` xattr (used by the comparator's self-tests).
pub fn set_user_xattr(p: &Path, name: &str, value: &[u8]) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "lsetxattr {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

// ---------------------------------------------------------------------------
// Tree comparison
// ---------------------------------------------------------------------------

/// What to compare. Everything is on by default.
#[derive(Clone, Debug)]
pub struct CompareOpts {
    /// Names for the two sides in messages.
    pub labels: (String, String),
    pub contents: bool,
    pub hardlinks: bool,
    pub symlinks: bool,
    pub mtime: bool,
    /// Compare mtimes in units of this many ns (100 = NTFS/WIM precision,
    /// for a source tree vs an applied image).
    pub mtime_granularity_ns: i128,
    /// Also the mtime of the root directory itself.
    pub root_mtime: bool,
    /// Also directories' mtimes (not only files and symlinks).
    pub dir_mtime: bool,
    /// Also symlinks' own mtimes.
    pub symlink_mtime: bool,
    pub xattrs: bool,
    /// Relative paths (and everything below them) left out on both sides.
    pub ignore: Vec<String>,
}

impl Default for CompareOpts {
    fn default() -> Self {
        CompareOpts {
            labels: ("A".into(), "B".into()),
            contents: true,
            hardlinks: true,
            symlinks: true,
            mtime: true,
            mtime_granularity_ns: 1,
            root_mtime: true,
            dir_mtime: true,
            symlink_mtime: true,
            xattrs: true,
            ignore: Vec::new(),
        }
    }
}

impl CompareOpts {
    pub fn labels(mut self, a: &str, b: &str) -> Self {
        self.labels = (a.into(), b.into());
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Other(String),
}

#[derive(Debug, Clone)]
struct Entry {
    kind: Kind,
    size: u64,
    ino: (u64, u64),
    target: Option<String>,
    mtime: i128,
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// Normalise an absolute symlink target that points into the tree itself
/// (wimlib's reparse-point fix-up makes such links absolute to the
/// extraction dir): the tree's root becomes `<ROOT>`.
fn norm_target(t: &Path, roots: &[PathBuf]) -> String {
    for r in roots {
        if let Ok(rest) = t.strip_prefix(r) {
            return if rest.as_os_str().is_empty() {
                "<ROOT>".into()
            } else {
                format!("<ROOT>/{}", rest.to_string_lossy())
            };
        }
    }
    t.to_string_lossy().into_owned()
}

fn collect(root: &Path) -> Result<BTreeMap<String, Entry>, String> {
    let mut roots = vec![root.to_path_buf()];
    if let Ok(c) = root.canonicalize() {
        if c != root {
            roots.push(c);
        }
    }
    let mut out = BTreeMap::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let p = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let md = std::fs::symlink_metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let ft = md.file_type();
        let kind = if ft.is_file() {
            Kind::File
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else {
            Kind::Other(format!("{ft:?}"))
        };
        let target = if ft.is_symlink() {
            Some(norm_target(&std::fs::read_link(&p).unwrap(), &roots))
        } else {
            None
        };
        if ft.is_dir() {
            let rd = std::fs::read_dir(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                stack.push(if rel.is_empty() {
                    n
                } else {
                    format!("{rel}/{n}")
                });
            }
        }
        out.insert(
            rel,
            Entry {
                kind,
                size: if ft.is_file() { md.len() } else { 0 },
                ino: (md.dev(), md.ino()),
                target,
                mtime: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
                xattrs: user_xattrs(&p),
            },
        );
    }
    Ok(out)
}

fn show(rel: &str) -> String {
    format!("/{rel}")
}

/// First differing byte offset of two files of equal length, if any.
fn first_content_diff(a: &Path, b: &Path) -> std::io::Result<Option<u64>> {
    let mut fa = std::fs::File::open(a)?;
    let mut fb = std::fs::File::open(b)?;
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    let mut off = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            let i = ba[..na]
                .iter()
                .zip(&bb[..nb])
                .position(|(x, y)| x != y)
                .unwrap_or(na.min(nb));
            return Ok(Some(off + i as u64));
        }
        if na == 0 {
            return Ok(None);
        }
        off += na as u64;
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

fn fmt_time(ns: i128) -> String {
    format!(
        "{}.{:09}",
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000)
    )
}

/// Walk two trees and list every difference in names, file types, sizes,
/// contents, hard-link grouping, symlink targets, mtimes (ns) and `user.*`
/// xattrs, as readable lines. Empty means equal.
pub fn compare_trees(a: &Path, b: &Path, o: &CompareOpts) -> Vec<String> {
    let (la, lb) = (&o.labels.0, &o.labels.1);
    let mut diffs = Vec::new();
    let (ta, tb) = match (collect(a), collect(b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => return vec![format!("cannot walk trees: {e}")],
    };
    let ignored = |rel: &str| {
        o.ignore
            .iter()
            .any(|i| rel == i || rel.starts_with(&format!("{i}/")))
    };
    let keys: BTreeSet<&String> = ta.keys().chain(tb.keys()).filter(|k| !ignored(k)).collect();
    // Hard-link groups: for each inode, the sorted paths that share it.
    let groups = |t: &BTreeMap<String, Entry>| {
        let mut by_ino: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
        for (k, e) in t {
            if e.kind != Kind::Dir && !ignored(k) {
                by_ino.entry(e.ino).or_default().push(k.clone());
            }
        }
        let mut per_path = BTreeMap::new();
        for v in by_ino.into_values() {
            for k in &v {
                per_path.insert(k.clone(), v.clone());
            }
        }
        per_path
    };
    let (ga, gb) = (groups(&ta), groups(&tb));
    let mut reported_groups = BTreeSet::new();
    for k in keys {
        let (ea, eb) = match (ta.get(k), tb.get(k)) {
            (Some(x), Some(y)) => (x, y),
            (Some(x), None) => {
                diffs.push(format!("only in {la}: {} ({:?})", show(k), x.kind));
                continue;
            }
            (None, Some(y)) => {
                diffs.push(format!("only in {lb}: {} ({:?})", show(k), y.kind));
                continue;
            }
            (None, None) => unreachable!(),
        };
        if ea.kind != eb.kind {
            diffs.push(format!(
                "file type differs: {}: {la}={:?} {lb}={:?}",
                show(k),
                ea.kind,
                eb.kind
            ));
            continue;
        }
        if ea.kind == Kind::File {
            if ea.size != eb.size {
                diffs.push(format!(
                    "size differs: {}: {la}={} {lb}={}",
                    show(k),
                    ea.size,
                    eb.size
                ));
            } else if o.contents {
                match first_content_diff(&a.join(k), &b.join(k)) {
                    Ok(None) => {}
                    Ok(Some(off)) => diffs.push(format!(
                        "content differs: {}: first differing byte at offset {off} (size {})",
                        show(k),
                        ea.size
                    )),
                    Err(e) => diffs.push(format!("content unreadable: {}: {e}", show(k))),
                }
            }
            if o.hardlinks {
                let (x, y) = (&ga[k], &gb[k]);
                if x != y && reported_groups.insert((x.clone(), y.clone())) {
                    diffs.push(format!(
                        "hard-link grouping differs at {}: {la} links {:?}, {lb} links {:?}",
                        show(k),
                        x,
                        y
                    ));
                }
            }
        }
        if o.symlinks && ea.target != eb.target {
            diffs.push(format!(
                "symlink target differs: {}: {la}={:?} {lb}={:?}",
                show(k),
                ea.target.as_deref().unwrap_or(""),
                eb.target.as_deref().unwrap_or("")
            ));
        }
        let want_mtime = o.mtime
            && match ea.kind {
                Kind::Dir => {
                    if k.is_empty() {
                        o.root_mtime
                    } else {
                        o.dir_mtime
                    }
                }
                Kind::Symlink => o.symlink_mtime,
                _ => true,
            };
        if want_mtime {
            let g = o.mtime_granularity_ns.max(1);
            if ea.mtime.div_euclid(g) != eb.mtime.div_euclid(g) {
                diffs.push(format!(
                    "mtime differs: {}: {la}={} {lb}={} (delta {} ns)",
                    show(k),
                    fmt_time(ea.mtime),
                    fmt_time(eb.mtime),
                    eb.mtime - ea.mtime
                ));
            }
        }
        if o.xattrs && ea.xattrs != eb.xattrs {
            let fmt = |x: &BTreeMap<String, Vec<u8>>| {
                x.iter()
                    .map(|(n, v)| format!("{n}({} bytes)", v.len()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut detail = String::new();
            for (n, v) in &ea.xattrs {
                if let Some(w) = eb.xattrs.get(n) {
                    if v != w {
                        let _ = write!(detail, " [{n} values differ]");
                    }
                }
            }
            diffs.push(format!(
                "user xattrs differ: {}: {la}=[{}] {lb}=[{}]{detail}",
                show(k),
                fmt(&ea.xattrs),
                fmt(&eb.xattrs)
            ));
        }
    }
    diffs
}

/// Panic listing the differences (at most 60) when the trees differ.
pub fn assert_trees_equal(a: &Path, b: &Path, o: &CompareOpts, what: &str) {
    let d = compare_trees(a, b, o);
    if !d.is_empty() {
        let n = d.len();
        let shown: Vec<&String> = d.iter().take(60).collect();
        panic!(
            "{what}: {n} difference(s) between {} ({}) and {} ({}):\n  {}{}",
            o.labels.0,
            a.display(),
            o.labels.1,
            b.display(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  "),
            if n > 60 { "\n  ..." } else { "" }
        );
    }
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

// ---------------------------------------------------------------------------
// 7-Zip as an independent WIM reader
// ---------------------------------------------------------------------------

/// What 7-Zip's own WIM reader (`7zz l -slt`) sees in one image: a second
/// implementation besides wimlib, so a WIM both accept is not merely
/// "wimlib-compatible".
///
/// Compared: every path (relative, `/`-separated, the root itself is not
/// listed), the byte size of every regular file, which paths are
/// directories (7-Zip lists empty directories too) and which are reparse
/// points (symlinks; their 7-Zip "size" is the reparse data length, which
/// says nothing about the link target, so only their presence counts).
/// Named data streams are listed apart (`Alternate Stream = +`) and kept
/// out of these maps.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SevenZipImage {
    pub files: BTreeMap<String, u64>,
    pub dirs: BTreeSet<String>,
    pub links: BTreeSet<String>,
}

impl SevenZipImage {
    /// The same view of a directory on disk (e.g. the tree a WIM was
    /// captured from): regular files with their lengths, directories,
    /// symlinks.
    pub fn of_tree(root: &Path) -> SevenZipImage {
        fn walk(root: &Path, rel: &str, out: &mut SevenZipImage) {
            let d = if rel.is_empty() {
                root.to_path_buf()
            } else {
                root.join(rel)
            };
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let r = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let ft = e.file_type().unwrap();
                if ft.is_symlink() {
                    out.links.insert(r);
                } else if ft.is_dir() {
                    walk(root, &r, out);
                    out.dirs.insert(r);
                } else {
                    out.files.insert(r, e.metadata().unwrap().len());
                }
            }
        }
        let mut out = SevenZipImage::default();
        walk(root, "", &mut out);
        out
    }

    /// Differences from `want`, one line each (empty when equal).
    pub fn diff(&self, want: &SevenZipImage) -> Vec<String> {
        let mut d = Vec::new();
        for (p, s) in &want.files {
            match self.files.get(p) {
                None => d.push(format!("file {p:?} ({s} bytes) not listed by 7zz")),
                Some(g) if g != s => {
                    d.push(format!("file {p:?}: 7zz says {g} bytes, expected {s}"))
                }
                _ => {}
            }
        }
        for (p, s) in &self.files {
            if !want.files.contains_key(p) {
                d.push(format!("7zz lists an unexpected file {p:?} ({s} bytes)"));
            }
        }
        for (kind, g, w) in [
            ("directory", &self.dirs, &want.dirs),
            ("link", &self.links, &want.links),
        ] {
            for p in w.difference(g) {
                d.push(format!("{kind} {p:?} not listed by 7zz"));
            }
            for p in g.difference(w) {
                d.push(format!("7zz lists an unexpected {kind} {p:?}"));
            }
        }
        d
    }
}

/// Run `7zz t` (every stream decompressed and checked against its SHA-1;
/// must say "Everything is Ok") and `7zz l -slt` on `wim`, and return what
/// each image holds, in image order. With several images 7-Zip puts each
/// under a directory named by its index (`1/…`, `2/…`) and adds the XML
/// data as a `[1].xml` entry (checked with 7-Zip 26.02; with one image
/// neither appears); those are stripped here, so each
/// returned map is relative to its image's root. `None` when 7zz is
/// missing (the skip is recorded).
pub fn sevenzip_images(wim: &Path) -> Option<Vec<SevenZipImage>> {
    if !require(&["7zz"]) {
        return None;
    }
    let t = run(&mut cmd("7zz", [OsStr::new("t"), wim.as_os_str()]));
    assert!(
        t.ok() && t.stdout_str().contains("Everything is Ok"),
        "`7zz t {}` does not accept the WIM:\n{}",
        wim.display(),
        t.describe()
    );
    let l = run(&mut cmd(
        "7zz",
        [OsStr::new("l"), OsStr::new("-slt"), wim.as_os_str()],
    ));
    assert!(l.ok(), "`7zz l -slt {}`:\n{}", wim.display(), l.describe());
    let text = l.stdout_str();
    let (head, body) = text
        .split_once("\n----------\n")
        .unwrap_or_else(|| panic!("no entry list in `7zz l -slt`:\n{text}"));
    let images: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Images = "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `Images = N` in `7zz l -slt`:\n{head}"));
    let mut out = vec![SevenZipImage::default(); images];
    for block in body.split("\n\n") {
        let field = |k: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(" = "))
                .map(str::to_string)
        };
        let Some(path) = field("Path") else { continue };
        if field("Alternate Stream").as_deref() == Some("+") {
            continue;
        }
        let (idx, rel) = if images > 1 {
            if path.starts_with('[') && path.ends_with("].xml") {
                continue;
            }
            match path.split_once('/') {
                Some((i, r)) => (i.parse::<usize>().ok(), r.to_string()),
                // The per-image directory itself.
                None if path
                    .parse::<usize>()
                    .is_ok_and(|i| (1..=images).contains(&i)) =>
                {
                    continue
                }
                None => (None, path.clone()),
            }
        } else {
            (Some(1), path.clone())
        };
        let img = match idx {
            Some(i) if (1..=images).contains(&i) => &mut out[i - 1],
            _ => panic!(
                "7zz lists {path:?} outside the {images} image directories of {}",
                wim.display()
            ),
        };
        let attrs = field("Attributes").unwrap_or_default();
        let attrs = attrs.split(' ').next().unwrap_or("");
        if attrs.contains('L') {
            img.links.insert(rel);
        } else if field("Folder").as_deref() == Some("+") {
            img.dirs.insert(rel);
        } else {
            let size = field("Size")
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no size for {path:?} in `7zz l -slt`:\n{block}"));
            img.files.insert(rel, size);
        }
    }
    Some(out)
}

/// Assert that 7-Zip tests `wim` clean and that its image `image` (1-based)
/// holds exactly `want` (see [`SevenZipImage`] for what is compared).
pub fn assert_sevenzip_image(wim: &Path, image: usize, want: &SevenZipImage) {
    let Some(imgs) = sevenzip_images(wim) else {
        return;
    };
    assert!(
        (1..=imgs.len()).contains(&image),
        "7zz sees {} image(s) in {}, wanted image {image}",
        imgs.len(),
        wim.display()
    );
    let d = imgs[image - 1].diff(want);
    assert!(
        d.is_empty(),
        "7zz's view of {} image {image} differs:\n  {}",
        wim.display(),
        d.join("\n  ")
    );
}
