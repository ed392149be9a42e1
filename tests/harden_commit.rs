//! Issue 8, the commit path hardened: a commit into a WIM that was replaced
//! while mounted is refused and loses nothing (item 1); a commit leaves no
//! stale bytes and reports the file's real size (12); leftovers of a killed
//! write are cut by the next writer (13); an empty commit writes nothing
//! (14); export refuses a duplicate image name and takes --name and
//! --description (15); messages say each thing once and name the files a
//! corrupt blob breaks (18). wimlib-imagex is the oracle throughout.
mod common;
mod mount_support;

use common::*;
use mount_support::{fuse_available, Mount};
use std::path::Path;

/// The end of the WIM as its header describes it (per wimlib-imagex): the
/// last of blob table, XML, integrity table and boot metadata.
fn header_end(wim: &Path) -> u64 {
    ["Blob Table", "XML Data", "Integrity", "Boot Metadata"]
        .iter()
        .map(|t| {
            let (off, size) = if *t == "Blob Table" {
                ("Blob Table Offset", "Blob Table Size")
            } else if *t == "XML Data" {
                ("XML Data Offset", "XML Data Size")
            } else if *t == "Integrity" {
                ("Integrity Offset", "Integrity Size")
            } else {
                ("Boot Metadata Offset", "Boot Metadata Size")
            };
            wimlib_header_field(wim, off) + wimlib_header_field(wim, size)
        })
        .max()
        .unwrap()
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

/// "(file now N bytes)" from a commit report.
fn reported_size(out: &str) -> u64 {
    let at = out
        .find("file now ")
        .unwrap_or_else(|| panic!("no size reported in:\n{out}"));
    out[at + 9..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn assert_verifies(wim: &Path) {
    let v = wimlib_verify(wim, &[]);
    assert!(
        v.ok(),
        "wimlib-imagex verify {}:\n{}",
        wim.display(),
        v.describe()
    );
}

/// A small source tree: text, and a file of random (incompressible) bytes.
fn source(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("hello.txt"), b"hello\n").unwrap();
    std::fs::write(dir.join("sub/text.txt"), "words ".repeat(5000)).unwrap();
    std::fs::write(dir.join("sub/random.bin"), Rng::new(7).bytes(200_000)).unwrap();
}

fn captured(work: &Path, extra: &[&str]) -> std::path::PathBuf {
    let src = work.join("src");
    source(&src);
    let wim = work.join("t.wim");
    wimlib_capture(&src, &wim, extra);
    wim
}

fn mount_prereqs() -> bool {
    if !fuse_available() {
        return false;
    }
    if !require(&["wimlib-imagex", "fusermount3"]) {
        skip("wimlib-imagex or fusermount3 missing");
        return false;
    }
    true
}

/// Item 1: `wimlib-imagex optimize` replaces the WIM (by rename) while it
/// is mounted read-write; `unmount --commit` must refuse, name the
/// problem, and keep the change (still in the mount, then in the staging,
/// and committed by the next mount).
#[test]
fn commit_into_replaced_wim_is_refused_and_keeps_changes() {
    if !mount_prereqs() {
        return;
    }
    let td = tempdir();
    let wim = captured(td.path(), &[]);
    let mnt = td.path().join("m");
    let m = Mount::ok(&wim, None, &mnt, &["--rw"]);
    std::fs::write(mnt.join("new.txt"), b"x\n").unwrap();
    let ino_before = std::fs::metadata(&wim).unwrap();
    run_ok(
        std::process::Command::new("wimlib-imagex")
            .arg("optimize")
            .arg(&wim),
    );
    use std::os::unix::fs::MetadataExt;
    assert_ne!(
        std::fs::metadata(&wim).unwrap().ino(),
        ino_before.ino(),
        "optimize did not replace the file: the test proves nothing"
    );
    let replaced = std::fs::read(&wim).unwrap();

    let o = wimfs(["unmount".as_ref(), "--commit".as_ref(), mnt.as_os_str()]);
    assert!(
        !o.ok(),
        "unmount --commit into a replaced WIM succeeded:\n{}",
        o.describe()
    );
    let err = o.stderr_str();
    assert!(
        err.contains("replaced") && err.contains(&wim.display().to_string()),
        "message does not name the problem and the WIM:\n{err}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    assert!(err.contains("kept in the staging"), "{err}");
    assert!(
        !o.stdout_str().contains("committed image"),
        "{}",
        o.describe()
    );
    // Nothing written to the WIM at the path, the change still in the mount.
    assert_eq!(
        std::fs::read(&wim).unwrap(),
        replaced,
        "the new WIM was written"
    );
    assert_eq!(std::fs::read(mnt.join("new.txt")).unwrap(), b"x\n");
    // `wimfs commit` while still mounted is refused the same way.
    let o = wimfs(["commit".as_ref(), mnt.as_os_str()]);
    assert!(
        !o.ok() && o.stderr_str().contains("replaced"),
        "{}",
        o.describe()
    );

    // Stop the daemon without committing or discarding: the staging keeps
    // the change, `wimfs recover` lists it.
    drop(m);
    let r = wimfs_ok(["recover".as_ref(), wim.as_os_str()]);
    assert!(
        r.stdout_str().contains("staged data: 1 file(s), 2 bytes"),
        "recover does not show the kept change:\n{}",
        r.describe()
    );
    // Mounting again resumes it (optimize kept the image), and a commit
    // now lands in the WIM at the path.
    let m = Mount::ok(&wim, None, &mnt, &["--rw"]);
    assert_eq!(std::fs::read(mnt.join("new.txt")).unwrap(), b"x\n");
    let o = wimfs(["unmount".as_ref(), "--commit".as_ref(), mnt.as_os_str()]);
    assert!(o.ok(), "{}", o.describe());
    drop(m);
    assert_verifies(&wim);
    let names = wimlib_dir(&wim, "1", &[], None);
    assert!(names.iter().any(|n| n == "/new.txt"), "{names:?}");
}

/// Item 12: incompressible data is stored raw after the compressed attempt
/// came out longer; the file must end where the header says and the
/// reported size must be the file's.
#[test]
fn commit_of_incompressible_data_leaves_no_stale_bytes() {
    if !mount_prereqs() {
        return;
    }
    let td = tempdir();
    // Small chunks: many chunk-table entries, so the compressed attempt
    // outgrows the raw copy by more than what follows it (metadata, blob
    // table, XML).
    let wim = captured(td.path(), &["--compress=XPRESS", "--chunk-size=4096"]);
    let mnt = td.path().join("m");
    let m = Mount::ok(&wim, None, &mnt, &["--rw"]);
    // 8 MiB of random bytes: 2048 chunks stored raw, and an 8 KiB chunk
    // table the raw copy does not need.
    std::fs::write(mnt.join("random2.bin"), Rng::new(99).bytes(8 << 20)).unwrap();
    let o = wimfs(["unmount".as_ref(), "--commit".as_ref(), mnt.as_os_str()]);
    assert!(o.ok(), "{}", o.describe());
    drop(m);
    let len = file_len(&wim);
    assert_eq!(
        len,
        header_end(&wim),
        "bytes after the end the header describes"
    );
    assert_eq!(reported_size(&o.stdout_str()), len, "{}", o.stdout_str());
    assert_verifies(&wim);
}

/// Item 13: garbage after the end of a valid WIM (what a killed commit or
/// export leaves) is cut by the next commit, and by an export into it.
#[test]
fn next_writer_cuts_leftovers_of_a_killed_write() {
    if !mount_prereqs() {
        return;
    }
    let td = tempdir();
    let wim = captured(td.path(), &["--compress=XPRESS"]);
    let end0 = header_end(&wim);
    assert_eq!(file_len(&wim), end0);
    let junk = Rng::new(3).bytes(300_000);
    let append = |p: &Path| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
        f.write_all(&junk).unwrap();
    };
    append(&wim);

    // A commit through a read-write mount.
    let mnt = td.path().join("m");
    let m = Mount::ok(&wim, None, &mnt, &["--rw"]);
    std::fs::write(mnt.join("after-crash.txt"), b"ok\n").unwrap();
    let o = wimfs(["unmount".as_ref(), "--commit".as_ref(), mnt.as_os_str()]);
    assert!(o.ok(), "{}", o.describe());
    drop(m);
    let len = file_len(&wim);
    assert_eq!(len, header_end(&wim), "leftovers kept or stale bytes");
    assert!(
        len < end0 + 100_000,
        "the commit appended after the leftovers ({len} bytes, was {end0})"
    );
    assert_eq!(reported_size(&o.stdout_str()), len);
    assert_verifies(&wim);

    // An export appending into it.
    append(&wim);
    let other = td.path().join("o.wim");
    wimlib_capture(&td.path().join("src/sub"), &other, &["--compress=XPRESS"]);
    wimfs_ok([
        "export".as_ref(),
        other.as_os_str(),
        "1".as_ref(),
        wim.as_os_str(),
        "--name".as_ref(),
        "second".as_ref(),
    ]);
    assert_eq!(
        file_len(&wim),
        header_end(&wim),
        "export kept the leftovers"
    );
    assert_verifies(&wim);
    assert_eq!(wimlib_image_names(&wim).len(), 2);
}

/// Item 14: a commit with nothing changed writes nothing (the file stays
/// byte-identical) and says so, for `wimfs commit` and `unmount --commit`,
/// also after an earlier real commit.
#[test]
fn empty_commit_writes_nothing() {
    if !mount_prereqs() {
        return;
    }
    let td = tempdir();
    let wim = captured(td.path(), &[]);
    let before = std::fs::read(&wim).unwrap();
    let mnt = td.path().join("m");
    let m = Mount::ok(&wim, None, &mnt, &["--rw"]);
    // Reading changes nothing.
    assert_eq!(std::fs::read(mnt.join("hello.txt")).unwrap(), b"hello\n");
    let o = wimfs_ok(["commit".as_ref(), mnt.as_os_str()]);
    assert!(
        o.stdout_str().contains("nothing to commit"),
        "{}",
        o.describe()
    );
    assert!(
        std::fs::read(&wim).unwrap() == before,
        "empty `wimfs commit` wrote"
    );
    // A real change, committed; then nothing more: unmount --commit.
    std::fs::write(mnt.join("one.txt"), b"1\n").unwrap();
    let o = wimfs_ok(["commit".as_ref(), mnt.as_os_str()]);
    assert!(
        o.stdout_str().contains("committed image 1"),
        "{}",
        o.describe()
    );
    let after = std::fs::read(&wim).unwrap();
    let o = wimfs(["unmount".as_ref(), "--commit".as_ref(), mnt.as_os_str()]);
    assert!(o.ok(), "{}", o.describe());
    drop(m);
    assert!(
        o.stdout_str().contains("nothing to commit"),
        "{}",
        o.describe()
    );
    assert!(
        std::fs::read(&wim).unwrap() == after,
        "empty unmount --commit wrote"
    );
    assert_verifies(&wim);
}

/// Item 15: exporting into a WIM that already has an image of that name is
/// refused (as wimlib refuses it) and writes nothing; --name and
/// --description name the exported image (seen by wimlib-imagex info), for
/// an export into an existing WIM and into a new one.
#[test]
fn export_refuses_duplicate_names_and_takes_name_and_description() {
    if !require(&["wimlib-imagex"]) {
        skip("wimlib-imagex missing");
        return;
    }
    let td = tempdir();
    let wim = captured(td.path(), &[]);
    let a = td.path().join("a.wim");
    let b = td.path().join("b.wim");
    run_ok(std::process::Command::new("wimlib-imagex").args([
        "capture".as_ref(),
        td.path().join("src/sub").as_os_str(),
        a.as_os_str(),
        "shared".as_ref(),
    ]));
    run_ok(std::process::Command::new("wimlib-imagex").args([
        "capture".as_ref(),
        td.path().join("src").as_os_str(),
        b.as_os_str(),
        "shared".as_ref(),
    ]));
    let before = std::fs::read(&a).unwrap();
    let o = wimfs([
        "export".as_ref(),
        b.as_os_str(),
        "1".as_ref(),
        a.as_os_str(),
    ]);
    assert!(!o.ok(), "duplicate name exported:\n{}", o.describe());
    assert!(
        o.stderr_str().contains("\"shared\"") && o.stderr_str().contains("already"),
        "{}",
        o.describe()
    );
    assert!(
        std::fs::read(&a).unwrap() == before,
        "a refused export wrote"
    );
    assert_eq!(wimlib_image_names(&a), ["shared"]);

    wimfs_ok([
        "export".as_ref(),
        b.as_os_str(),
        "1".as_ref(),
        a.as_os_str(),
        "--name".as_ref(),
        "other".as_ref(),
        "--description".as_ref(),
        "the second one".as_ref(),
    ]);
    assert_eq!(wimlib_image_names(&a), ["shared", "other"]);
    let info = run_ok(std::process::Command::new("wimlib-imagex").args([
        "info".as_ref(),
        a.as_os_str(),
        "2".as_ref(),
    ]))
    .stdout_str();
    assert!(
        info.lines()
            .any(|l| l.starts_with("Description:") && l.ends_with("the second one")),
        "{info}"
    );
    assert_verifies(&a);
    // --name again with the name just used: refused.
    let o = wimfs([
        "export".as_ref(),
        wim.as_os_str(),
        "1".as_ref(),
        a.as_os_str(),
        "--name".as_ref(),
        "other".as_ref(),
    ]);
    assert!(
        !o.ok() && o.stderr_str().contains("\"other\""),
        "{}",
        o.describe()
    );

    // Into a new WIM.
    let c = td.path().join("c.wim");
    wimfs_ok([
        "export".as_ref(),
        b.as_os_str(),
        "1".as_ref(),
        c.as_os_str(),
        "--name".as_ref(),
        "fresh".as_ref(),
        "--description".as_ref(),
        "new file".as_ref(),
    ]);
    assert_eq!(wimlib_image_names(&c), ["fresh"]);
    assert_verifies(&c);
}

/// Item 18: each thing said once. The OS reason of an I/O error appears
/// once (it used to be repeated by the error's source), the path once, and
/// a warning once (it was logged by every layer that saw it).
#[test]
fn messages_say_each_thing_once() {
    let td = tempdir();
    let count = |hay: &str, needle: &str| hay.matches(needle).count();

    let o = wimfs(["info", "/tmp"]);
    assert!(!o.ok());
    let e = o.stderr_str();
    assert_eq!(count(&e, "Is a directory"), 1, "{e}");
    assert_eq!(count(&e, "/tmp"), 1, "{e}");

    let missing = td.path().join("no-such.wim");
    let o = wimfs(["info".as_ref(), missing.as_os_str()]);
    let e = o.stderr_str();
    assert!(!o.ok() && e.contains("No such file or directory"), "{e}");
    assert_eq!(count(&e, &missing.display().to_string()), 1, "{e}");

    if !require(&["wimlib-imagex"]) {
        skip("wimlib-imagex missing");
        return;
    }
    // A WIM whose header says a write was interrupted: one warning.
    let wim = captured(td.path(), &[]);
    let mut b = std::fs::read(&wim).unwrap();
    b[16] |= 0x40; // WIM_HDR_FLAG_WRITE_IN_PROGRESS
    std::fs::write(&wim, &b).unwrap();
    for verb in [&["verify"][..], &["info"], &["dir", "1"]] {
        let mut args: Vec<&std::ffi::OsStr> = vec![verb[0].as_ref(), wim.as_os_str()];
        args.extend(verb[1..].iter().map(std::ffi::OsStr::new));
        let o = wimfs(&args);
        assert_eq!(
            count(&o.stderr_str(), "WRITE_IN_PROGRESS"),
            1,
            "wimfs {verb:?}:\n{}",
            o.describe()
        );
    }
}

/// Item 18: a corrupt blob is reported by the files that use it (image and
/// path, every hard link), with its SHA-1 kept for the expert.
#[test]
fn verify_names_the_files_of_a_corrupt_blob() {
    if !require(&["wimlib-imagex"]) {
        skip("wimlib-imagex missing");
        return;
    }
    let td = tempdir();
    let src = td.path().join("src");
    source(&src);
    std::fs::hard_link(src.join("sub/text.txt"), src.join("link.txt")).unwrap();
    let wim = td.path().join("t.wim");
    wimlib_capture(&src, &wim, &["--compress=none"]);
    let (off, size) = wimlib_blob_location(&wim, "1", "/sub/text.txt");
    assert_eq!(size, 30000);
    let entry = blob_table(&wim)
        .into_iter()
        .find(|e| e.offset == off)
        .expect("blob table entry of /sub/text.txt");
    let sha: String = entry.hash.iter().map(|b| format!("{b:02x}")).collect();
    let mut b = std::fs::read(&wim).unwrap();
    b[off as usize + 100] ^= 0x20;
    std::fs::write(&wim, &b).unwrap();
    assert!(!wimlib_verify(&wim, &[]).ok(), "the damage is not damage");

    let o = wimfs(["verify".as_ref(), wim.as_os_str()]);
    assert!(!o.ok(), "{}", o.describe());
    let e = o.stderr_str();
    let line = e
        .lines()
        .find(|l| l.contains("corrupt"))
        .unwrap_or_else(|| panic!("no corruption reported:\n{e}"));
    assert!(line.contains("image 1: /sub/text.txt"), "{line}");
    assert!(line.contains("image 1: /link.txt"), "{line}");
    assert!(line.to_ascii_lowercase().contains(&sha), "{line}");
    assert!(!line.contains("/hello.txt"), "{line}");
}

/// Item 1 in the library: a WIM replaced after the commit wrote its data
/// but before the header (the window the second check closes) gets no
/// header; the locked, now nameless file is put back as it was and the
/// new file at the path is untouched. A WIM moved away is refused before
/// anything is written.
#[test]
fn library_commit_checks_the_locked_file_is_still_at_its_path() {
    use std::io::{Read, Seek};
    use wimfs::commit::{
        append_image as commit, append_image_with as commit_with, CommitOptions, NewImage, WimLock,
    };
    if !require(&["wimlib-imagex"]) {
        skip("wimlib-imagex missing");
        return;
    }
    let td = tempdir();
    let wim = captured(td.path(), &[]);
    let original = std::fs::read(&wim).unwrap();
    let spare = td.path().join("spare.wim");
    std::fs::copy(&wim, &spare).unwrap();
    let opts = CommitOptions {
        new_image: true,
        ..Default::default()
    };

    let lock = WimLock::acquire(&wim).unwrap();
    lock.still_at_path().unwrap();
    let img = NewImage::from_image(&lock.open_wim().unwrap(), 1).unwrap();
    let r = commit_with(&lock, 0, img, &opts, &|_, _| {}, &mut |_| {
        std::fs::rename(&spare, &wim).unwrap();
        Ok(())
    });
    let e = r.expect_err("a commit into a replaced WIM succeeded");
    assert!(
        matches!(e, wimfs::Error::WimReplaced { .. }),
        "wrong error: {e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&wim.display().to_string()) && msg.contains("replaced"),
        "{msg}"
    );
    assert_eq!(std::fs::read(&wim).unwrap(), original, "new file written");
    let mut f = &lock.file;
    let mut old = Vec::new();
    f.rewind().unwrap();
    f.read_to_end(&mut old).unwrap();
    assert!(
        old == original,
        "the locked file was not put back as it was"
    );
    drop(lock);
    assert_verifies(&wim);

    // Moved away: refused, and the moved file is unchanged.
    let lock = WimLock::acquire(&wim).unwrap();
    let moved = td.path().join("moved.wim");
    std::fs::rename(&wim, &moved).unwrap();
    let img = NewImage::from_image(&lock.open_wim().unwrap(), 1).unwrap();
    let e = commit(&lock, 0, img, &opts, &|_, _| {}).expect_err("commit into a moved WIM");
    assert!(e.to_string().contains("moved or deleted"), "{e}");
    assert!(std::fs::read(&moved).unwrap() == original);
}

/// Item 1, at mount time: a WIM read by path and replaced before it was
/// locked is noticed (`WimLock::matches`, which `mount --rw` calls).
#[test]
fn lock_notices_a_wim_replaced_between_open_and_lock() {
    use wimfs::commit::WimLock;
    if !require(&["wimlib-imagex"]) {
        skip("wimlib-imagex missing");
        return;
    }
    let td = tempdir();
    let wim = captured(td.path(), &[]);
    let w = wimfs::wim::Wim::open(&wim, &[]).unwrap();
    WimLock::acquire(&wim).unwrap().matches(&w).unwrap();
    let other = td.path().join("other.wim");
    wimlib_capture(&td.path().join("src/sub"), &other, &[]);
    std::fs::rename(&other, &wim).unwrap();
    let e = WimLock::acquire(&wim)
        .unwrap()
        .matches(&w)
        .expect_err("a replaced WIM matched");
    assert!(
        e.to_string().contains(&wim.display().to_string()) && e.to_string().contains("changed"),
        "{e}"
    );
}
