//! Running commands: tool lookup (`have`, `require`), a timeout on every
//! command, readable descriptions of what ran and what it printed, the
//! `wimfs` binary under test, and the "no panic, clean failure" checks.

use super::*;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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
pub fn tool_path(tool: &str) -> PathBuf {
    for d in ["/usr/sbin", "/sbin"] {
        let p = Path::new(d).join(tool);
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(tool)
}

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
