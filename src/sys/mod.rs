//! OS calls, one file per platform: the one place for `unsafe` system calls.
//!
//! Everything above this module speaks in these functions and types, so the
//! security rules of the hardening work live in one place:
//! - every file and directory wimfs creates is private to its user (0700 /
//!   0600) whatever the umask;
//! - nothing is opened through a symlink wimfs did not make (the last path
//!   component is opened with `O_NOFOLLOW`, and the files of a private
//!   directory are opened relative to its descriptor, so swapping the
//!   directory for a symlink after the check reaches nothing);
//! - a directory or file owned by someone else, or writable by group or
//!   others, is refused with a message that names it.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

/// How [`PrivateDir::open_file`] opens a file inside a private directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read an existing file.
    Read,
    /// Read and write an existing file.
    ReadWrite,
    /// Read and write, creating the file (0600) when it is absent.
    Create,
    /// Create the file (0600); fail if anything exists under the name.
    CreateNew,
    /// Create or empty the file (0600), write only.
    Truncate,
    /// Append, creating the file (0600) when it is absent.
    Append,
}

/// Create a new file beside `target` (same directory) with an unguessable
/// name starting `.NAME.{tag}-`, exclusively ([`create_exclusive`]: no
/// symlink followed, private to the user). Returns the file and its path.
pub fn create_temp_beside(
    target: &std::path::Path,
    tag: &str,
) -> std::io::Result<(std::fs::File, std::path::PathBuf)> {
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let base = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for _ in 0..16 {
        let path = dir.join(format!(".{base}.{tag}-{}", random_suffix()));
        match create_exclusive(&path) {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!(
            "could not create a temporary file beside {}",
            target.display()
        ),
    ))
}

/// Read into `buf` at `pos` without moving any file cursor (several threads
/// share one descriptor); one call, retried on EINTR. Returns the bytes read
/// (0 at the end of the file).
pub fn read_at(f: &std::fs::File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    loop {
        match pread(f, buf, pos) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Write `buf` at `pos` without moving any file cursor; one call, retried on
/// EINTR. Returns the bytes written.
pub fn write_at(f: &std::fs::File, buf: &[u8], pos: u64) -> std::io::Result<usize> {
    loop {
        match pwrite(f, buf, pos) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Fill all of `buf` from `pos`; a file that ends first is `UnexpectedEof`.
pub fn read_exact_at(f: &std::fs::File, mut buf: &mut [u8], mut pos: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = read_at(f, buf, pos)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        pos += n as u64;
        buf = &mut buf[n..];
    }
    Ok(())
}

/// Write all of `data` at `pos`; a write that makes no progress is `WriteZero`.
pub fn write_all_at(f: &std::fs::File, mut data: &[u8], mut pos: u64) -> std::io::Result<()> {
    while !data.is_empty() {
        let n = write_at(f, data, pos)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "positional write returned 0",
            ));
        }
        pos += n as u64;
        data = &data[n..];
    }
    Ok(())
}

#[cfg(test)]
mod positional_tests {
    use super::*;

    #[test]
    fn positional_writes_and_reads_leave_no_cursor_and_report_eof() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        write_all_at(&f, b"world", 6).unwrap();
        write_all_at(&f, b"hello ", 0).unwrap();
        let mut buf = [0u8; 11];
        read_exact_at(&f, &mut buf, 0).unwrap();
        assert_eq!(&buf, b"hello world");
        let mut past = [0u8; 4];
        let e = read_exact_at(&f, &mut past, 9).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        assert_eq!(read_at(&f, &mut past, 11).unwrap(), 0);
    }
}

/// The DACL of every directory wimfs creates private on Windows, as SDDL:
/// protected (`P`: nothing inherited from a possibly shared parent), full
/// access for the user, SYSTEM and Administrators, inherited by what is
/// created inside (`OICI`). Text, so the decision is tested everywhere.
pub fn private_sddl(user_sid: &str) -> String {
    format!("D:P(A;OICI;FA;;;{user_sid})(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)")
}

/// The DACL of a mount's control pipe on Windows: only the user who
/// mounted and Administrators may open it (the Unix socket's 0600 in a
/// 0700 directory, with root as the administrators).
pub fn pipe_sddl(user_sid: &str) -> String {
    format!("D:P(A;;GA;;;{user_sid})(A;;GA;;;BA)")
}

/// The path of a control pipe on Windows, `\\.\pipe\wimfs-<SID>-<name>`:
/// the user's SID keeps different users' names apart (the DACL and the
/// peer checks keep them safe).
pub fn control_pipe_path(user_sid: &str, name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!(r"\\.\pipe\wimfs-{user_sid}-{name}"))
}

#[cfg(test)]
mod issue10_tests {
    use super::*;

    #[test]
    fn windows_dacls_admit_only_the_user_system_and_administrators() {
        let sid = "S-1-5-21-1-2-3-1001";
        assert_eq!(
            private_sddl(sid),
            "D:P(A;OICI;FA;;;S-1-5-21-1-2-3-1001)(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"
        );
        assert_eq!(
            pipe_sddl(sid),
            "D:P(A;;GA;;;S-1-5-21-1-2-3-1001)(A;;GA;;;BA)"
        );
        assert_eq!(private_sddl(sid).matches("(A;").count(), 3);
        assert_eq!(pipe_sddl(sid).matches("(A;").count(), 2);
        // No entry for Everyone (WD), Authenticated Users (AU) or Users (BU).
        for s in [private_sddl(sid), pipe_sddl(sid)] {
            for other in ["WD", "AU", "BU"] {
                assert!(!s.contains(&format!(";;;{other})")), "{s}");
            }
        }
        assert_eq!(
            control_pipe_path(sid, "4242.sock"),
            std::path::PathBuf::from(r"\\.\pipe\wimfs-S-1-5-21-1-2-3-1001-4242.sock")
        );
    }

    #[test]
    fn positional_io_and_zeroed_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("s"))
            .unwrap();
        set_sparse(&f).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8 + 1).collect();
        assert_eq!(write_at(&f, &data, 0).unwrap(), data.len());
        zero_range(&f, 70_000, 65_536).unwrap();
        let mut back = vec![0u8; data.len()];
        let mut at = 0;
        while at < back.len() {
            let n = read_at(&f, &mut back[at..], at as u64).unwrap();
            assert!(n > 0);
            at += n;
        }
        assert_eq!(f.metadata().unwrap().len(), data.len() as u64);
        assert_eq!(&back[..70_000], &data[..70_000]);
        assert!(back[70_000..135_536].iter().all(|&b| b == 0));
        assert_eq!(&back[135_536..], &data[135_536..]);
        assert_eq!(read_at(&f, &mut [0u8; 8], data.len() as u64).unwrap(), 0);
    }
}
