//! `wimfs update` against `wimlib-imagex update`: the same command file run
//! by both on copies of one WIM must give images that apply to the same
//! tree; the result verifies; a failing command leaves the WIM as it was
//! and no staging behind.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};

fn wimfs_stdin(args: &[&std::ffi::OsStr], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut c = Command::new(wimfs_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("wimfs-update"))
        .collect()
}

/// How two applied images are compared: bytes, links, symlinks and file
/// times (to the 100 ns a WIM keeps); not directory times (directories the
/// edits touched get the time of the edit) nor xattrs.
fn same_image(a: &str, b: &str) -> CompareOpts {
    CompareOpts {
        mtime_granularity_ns: 100,
        dir_mtime: false,
        root_mtime: false,
        xattrs: false,
        ..CompareOpts::default()
    }
    .labels(a, b)
}

/// The base WIM (wimlib's LZX capture of the common source tree), the
/// folder the additions come from, and the command file that edits it: a
/// tree merged into an existing directory, a file replacing one, a file
/// under new directories, a delete, a recursive delete, a rename.
fn base_and_commands(t: &Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let src = t.join("src");
    std::fs::create_dir_all(&src).unwrap();
    make_source_tree(&src);
    let wim = t.join("base.wim");
    wimlib_capture(&src, &wim, &["--compress=LZX"]);
    let add = t.join("add");
    std::fs::create_dir_all(add.join("tree/inner")).unwrap();
    std::fs::write(add.join("tree/inner/new.txt"), b"added by update\n").unwrap();
    std::fs::write(add.join("tree/second.bin"), vec![9u8; 100_000]).unwrap();
    std::os::unix::fs::symlink("inner/new.txt", add.join("tree/link")).unwrap();
    std::fs::write(add.join("replacement.txt"), b"replaced\n").unwrap();
    for p in [
        "tree/inner/new.txt",
        "tree/second.bin",
        "tree/link",
        "replacement.txt",
    ] {
        set_mtime(&add.join(p), 1_234_567_890, 100);
    }
    let cmds = format!(
        "# an update file\n\
         add '{a}/tree' /big\n\
         add \"{a}/replacement.txt\" /text.txt\n\
         add {a}/replacement.txt /brand/new/dir/file.txt\n\
         delete /random.bin\n\
         delete --recursive /deep\n\
         rename /dup/a.bin /dup/renamed.bin\n",
        a = add.display()
    );
    (wim, add, cmds)
}

#[test]
fn update_matches_wimlib_update() {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let t = tempdir();
    let (wim, _add, cmds) = base_and_commands(t.path());
    let ours = t.path().join("ours.wim");
    let theirs = t.path().join("theirs.wim");
    std::fs::copy(&wim, &ours).unwrap();
    std::fs::copy(&wim, &theirs).unwrap();
    let o = wimfs_stdin(&["update".as_ref(), ours.as_os_str(), "1".as_ref()], &cmds);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new("wimlib-imagex")
        .arg("update")
        .arg(&theirs)
        .arg("1")
        .stdin(
            std::fs::File::open({
                let f = t.path().join("cmds");
                std::fs::write(&f, &cmds).unwrap();
                f
            })
            .unwrap(),
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = wimlib_verify(&ours, &[]);
    assert!(v.ok(), "{}", v.describe());
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    assert!(wimlib_apply(&ours, "1", &a, &[]).ok());
    assert!(wimlib_apply(&theirs, "1", &b, &[]).ok());
    let opts = same_image("wimfs update", "wimlib update");
    assert_trees_equal(&a, &b, &opts, "the same update by wimfs and wimlib");
    assert_eq!(
        std::fs::read(a.join("big/inner/new.txt")).unwrap(),
        b"added by update\n"
    );
    assert!(!a.join("random.bin").exists() && !a.join("deep").exists());
    assert_eq!(leftovers(t.path()), Vec::<String>::new());
    // --command, and a failing command: nothing written, no staging left.
    wimfs_ok([
        "update".as_ref(),
        ours.as_os_str(),
        "--command".as_ref(),
        "rename /one-byte /one-byte.renamed".as_ref(),
    ]);
    let names = wimlib_dir(&ours, "1", &[], None);
    assert!(names.iter().any(|n| n == "/one-byte.renamed"), "{names:?}");
    let before = std::fs::read(&ours).unwrap();
    let o = wimfs([
        "update".as_ref(),
        ours.as_os_str(),
        "--command".as_ref(),
        "delete /no/such/file".as_ref(),
    ]);
    assert!(
        !o.ok() && o.stderr_str().contains("/no/such/file"),
        "{}",
        o.describe()
    );
    assert!(std::fs::read(&ours).unwrap() == before, "the WIM changed");
    assert_eq!(leftovers(t.path()), Vec::<String>::new());
}

/// The issue's promise: `update` with a command file gives the same image
/// as the same edits made with ordinary tools in a read-write mount and
/// committed (both applied by wimlib and compared file by file: bytes,
/// links, symlink targets, file times).
#[test]
fn update_matches_the_same_edits_in_a_rw_mount() {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    if !fuse_available() {
        skip("update_oracle: /dev/fuse or fusermount3 missing");
        return;
    }
    let t = tempdir();
    let (wim, add, cmds) = base_and_commands(t.path());
    let updated = t.path().join("updated.wim");
    let mounted = t.path().join("mounted.wim");
    std::fs::copy(&wim, &updated).unwrap();
    std::fs::copy(&wim, &mounted).unwrap();
    let o = wimfs_stdin(
        &["update".as_ref(), updated.as_os_str(), "1".as_ref()],
        &cmds,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Both adds of replacement.txt name one source inode: update stores
    // them as one hard-link group, as wimlib's update does (the test above
    // compares link groups too), so in the mount the second is a link.
    let mnt = t.path().join("mnt");
    let (m, _) = RwMount::rw(&mounted, &mnt, &[]);
    let sh = |script: &str| {
        let o = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("A", &add)
            .env("M", &mnt)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    sh(r#"cp -a "$A/tree/." "$M/big/" &&
          cp --preserve=timestamps "$A/replacement.txt" "$M/text.txt" &&
          mkdir -p "$M/brand/new/dir" &&
          ln "$M/text.txt" "$M/brand/new/dir/file.txt" &&
          rm "$M/random.bin" && rm -r "$M/deep" &&
          mv "$M/dup/a.bin" "$M/dup/renamed.bin""#);
    m.unmount(&["--commit"]);

    for w in [&updated, &mounted] {
        let v = wimlib_verify(w, &[]);
        assert!(v.ok(), "{}", v.describe());
    }
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    assert!(wimlib_apply(&updated, "1", &a, &[]).ok());
    assert!(wimlib_apply(&mounted, "1", &b, &[]).ok());
    let opts = same_image("wimfs update", "rw mount + commit");
    assert_trees_equal(&a, &b, &opts, "the same edits by update and by a rw mount");
    assert_eq!(std::fs::read(a.join("text.txt")).unwrap(), b"replaced\n");
    assert!(a.join("dup/renamed.bin").exists() && !a.join("dup/a.bin").exists());
}
