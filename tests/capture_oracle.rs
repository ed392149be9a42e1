//! `wimfs capture` and `wimfs append` against the oracles: a generated tree
//! (every file kind, hard links, symlinks in and out of the tree, a sparse
//! file, `user.*` xattrs, a FIFO, odd names, exact timestamps) is captured
//! by wimfs, then `wimlib-imagex verify` must pass, `wimlib-imagex apply`
//! must give back exactly the source tree (contents, hard links, symlink
//! targets, mtimes, xattrs and the FIFO with `--unix-data`), and `7zz`
//! must test it clean and list the same names and sizes. An append stores
//! only the new blobs and leaves both images intact. Sizes are compared
//! with `wimlib-imagex capture` of the same tree.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

fn have_tools() -> bool {
    require(&["wimlib-imagex"])
}

/// The assorted tree plus what `make_source_tree` lacks: a sparse file,
/// xattrs, a FIFO, a link to a directory.
fn source(dir: &Path, fifo: bool) {
    std::fs::create_dir_all(dir).unwrap();
    make_source_tree(dir);
    let sp = dir.join("sparse.bin");
    {
        let f = std::fs::File::create(&sp).unwrap();
        f.set_len(20 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"island", 7 << 20).unwrap();
    }
    set_user_xattr(
        &dir.join("text.txt"),
        "user.comment",
        b"captured as a stream",
    );
    set_user_xattr(&dir.join("big"), "user.on-a-dir", b"directory stream");
    std::os::unix::fs::symlink("big", dir.join("links-to-dir")).unwrap();
    if fifo {
        let c = cpath(&dir.join("fifo"));
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o640) }, 0);
    }
    // Stable times on what was added after make_source_tree set them.
    for (i, p) in ["sparse.bin", "links-to-dir", "text.txt", "big"]
        .iter()
        .enumerate()
    {
        set_mtime(&dir.join(p), 1_300_000_000 + i as i64, 555_555_500);
    }
    set_mtime(dir, 1_500_000_000, 987_654_321);
}

fn opts() -> CompareOpts {
    CompareOpts {
        mtime_granularity_ns: 100,
        ..CompareOpts::default()
    }
    .labels("source", "applied")
}

fn verify(wim: &Path) {
    let v = wimlib_verify(wim, &[]);
    assert!(
        v.ok(),
        "wimlib-imagex verify {}:\n{}",
        wim.display(),
        v.describe()
    );
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

#[test]
fn captured_tree_applies_with_wimlib_to_the_source() {
    if !have_tools() {
        return;
    }
    let t = tempdir();
    let src = t.path().join("src");
    source(&src, true);
    let wim = t.path().join("c.wim");
    let o = wimfs_ok([
        "capture".as_ref(),
        src.as_os_str(),
        wim.as_os_str(),
        "Sample".as_ref(),
        "--description".as_ref(),
        "a generated tree".as_ref(),
        "--unix-data".as_ref(),
    ]);
    println!("{}", o.stdout_str());
    verify(&wim);
    assert_eq!(wimlib_image_names(&wim), vec!["Sample".to_string()]);
    // Everything, with UNIX data (owners, modes, xattrs, the FIFO).
    let out = t.path().join("out");
    let a = Command::new("wimlib-imagex")
        .arg("apply")
        .arg(&wim)
        .arg("1")
        .arg(&out)
        .arg("--unix-data")
        .output()
        .unwrap();
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert_trees_equal(&src, &out, &opts(), "wimlib's apply of wimfs's capture");
    // The sparse file is still sparse in the image's attributes.
    let dir = run_ok(
        Command::new("wimlib-imagex")
            .arg("dir")
            .arg(&wim)
            .arg("1")
            .arg("--path=/sparse.bin")
            .arg("--detailed"),
    )
    .stdout_str();
    assert!(dir.contains("FILE_ATTRIBUTE_SPARSE_FILE"), "{dir}");
    // Links to a directory are directory reparse points.
    let dir = run_ok(
        Command::new("wimlib-imagex")
            .arg("dir")
            .arg(&wim)
            .arg("1")
            .arg("--path=/links-to-dir")
            .arg("--detailed"),
    )
    .stdout_str();
    assert!(
        dir.contains("FILE_ATTRIBUTE_DIRECTORY") && dir.contains("FILE_ATTRIBUTE_REPARSE_POINT"),
        "{dir}"
    );
    // wimfs's own apply restores the named streams as user.* xattrs.
    let out2 = t.path().join("out2");
    wimfs_ok([
        "apply".as_ref(),
        wim.as_os_str(),
        "1".as_ref(),
        out2.as_os_str(),
        "--unix-data".as_ref(),
    ]);
    assert_eq!(
        user_xattrs(&out2.join("text.txt")).get("user.comment"),
        Some(&b"captured as a stream".to_vec())
    );
    // 7-Zip: tests clean, same names and sizes (the FIFO is an empty file
    // to it).
    let mut want = SevenZipImage::of_tree(&src);
    want.files.insert("fifo".into(), 0);
    assert_sevenzip_image(&wim, 1, &want);
}

#[test]
fn every_format_verifies_and_applies() {
    if !have_tools() {
        return;
    }
    let t = tempdir();
    let src = t.path().join("src");
    source(&src, false);
    let no_xattrs = CompareOpts {
        xattrs: false,
        ..opts()
    };
    for (label, args) in [
        ("none", &["--compress", "none"][..]),
        ("xpress", &["--compress", "xpress"][..]),
        ("lzx", &[][..]),
        ("lzms", &["--compress", "lzms"][..]),
        ("solid", &["--solid"][..]),
        ("lzx-64k-check", &["--chunk-size", "65536", "--check"][..]),
    ] {
        let wim = t.path().join(format!("{label}.wim"));
        let mut a = vec![
            "capture".to_string(),
            src.display().to_string(),
            wim.display().to_string(),
        ];
        a.extend(args.iter().map(|s| s.to_string()));
        wimfs_ok(&a);
        verify(&wim);
        let out = t.path().join(format!("out-{label}"));
        let o = wimlib_apply(&wim, "1", &out, &[]);
        assert!(o.ok(), "{label}: {}", o.describe());
        assert_trees_equal(&src, &out, &no_xattrs, label);
        let info = run_ok(
            Command::new("wimlib-imagex")
                .arg("info")
                .arg(&wim)
                .arg("--header"),
        )
        .stdout_str();
        match label {
            "solid" => {
                // ESD-style: version 0xE00, LZMS.
                assert!(info.contains("0xe00"), "{label}: {info}");
            }
            "lzx" => assert!(
                info.lines()
                    .any(|l| l.starts_with("Chunk Size") && l.contains("32768")),
                "{label}: {info}"
            ),
            _ => {}
        }
        assert_sevenzip_image(&wim, 1, &SevenZipImage::of_tree(&src));
    }
}

#[test]
fn append_stores_only_new_blobs_and_keeps_both_images() {
    if !have_tools() {
        return;
    }
    let t = tempdir();
    let a = t.path().join("a");
    source(&a, false);
    let b = t.path().join("b");
    source(&b, false);
    // B: one file changed, one added, one removed.
    std::fs::write(b.join("one-byte"), b"y").unwrap();
    let fresh: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(b.join("fresh.bin"), &fresh).unwrap();
    std::fs::remove_file(b.join("random.bin")).unwrap();
    set_mtime(&b, 1_500_000_000, 987_654_321);
    let wim = t.path().join("x.wim");
    wimfs_ok([
        "capture".as_ref(),
        a.as_os_str(),
        wim.as_os_str(),
        "A".as_ref(),
        "--boot".as_ref(),
        "--flags".as_ref(),
        "Professional".as_ref(),
    ]);
    let info = run_ok(Command::new("wimlib-imagex").arg("info").arg(&wim)).stdout_str();
    assert!(
        info.lines()
            .any(|l| l.starts_with("Boot Index:") && l.trim_end().ends_with(" 1")),
        "{info}"
    );
    assert!(
        info.lines()
            .any(|l| l.starts_with("Flags:") && l.contains("Professional")),
        "{info}"
    );
    let before = size(&wim);
    let o = wimfs_ok([
        "append".as_ref(),
        b.as_os_str(),
        wim.as_os_str(),
        "B".as_ref(),
    ]);
    println!("{}", o.stdout_str());
    let grew = size(&wim) - before;
    // New data (about 300 kB, compressible) plus metadata and tables; the
    // many megabytes of the rest were not stored again.
    assert!(grew < 400_000, "append grew the WIM by {grew} bytes");
    verify(&wim);
    assert_eq!(
        wimlib_image_names(&wim),
        vec!["A".to_string(), "B".to_string()]
    );
    let o = opts();
    let no_xattrs = CompareOpts { xattrs: false, ..o };
    for (img, src) in [("1", &a), ("2", &b)] {
        let out = t.path().join(format!("out{img}"));
        let r = wimlib_apply(&wim, img, &out, &[]);
        assert!(r.ok(), "{}", r.describe());
        assert_trees_equal(src, &out, &no_xattrs, &format!("image {img}"));
    }
    // The name is taken: refused, the WIM unchanged.
    let len = size(&wim);
    let r = wimfs([
        "append".as_ref(),
        b.as_os_str(),
        wim.as_os_str(),
        "B".as_ref(),
    ]);
    assert!(
        !r.ok() && r.stderr_str().contains("already has an image"),
        "{}",
        r.describe()
    );
    assert_eq!(size(&wim), len);
}

#[test]
fn sizes_against_wimlib_capture() {
    if !have_tools() {
        return;
    }
    let t = tempdir();
    let src = t.path().join("src");
    source(&src, false);
    for (label, ours, theirs, bound) in [
        ("lzx", &[][..], &["--compress=LZX"][..], 1.1),
        (
            "xpress",
            &["--compress", "xpress"][..],
            &["--compress=XPRESS"][..],
            1.1,
        ),
        ("solid", &["--solid"][..], &["--solid"][..], 1.3),
    ] {
        let w1 = t.path().join(format!("wimfs-{label}.wim"));
        let w2 = t.path().join(format!("wimlib-{label}.wim"));
        let mut a = vec![
            "capture".to_string(),
            src.display().to_string(),
            w1.display().to_string(),
        ];
        a.extend(ours.iter().map(|s| s.to_string()));
        let t0 = std::time::Instant::now();
        wimfs_ok(&a);
        let ours_t = t0.elapsed();
        let t0 = std::time::Instant::now();
        wimlib_capture(&src, &w2, theirs);
        let theirs_t = t0.elapsed();
        let (s1, s2) = (size(&w1), size(&w2));
        let ratio = s1 as f64 / s2 as f64;
        println!(
            "{label}: wimfs {s1} bytes in {ours_t:.2?}, wimlib {s2} bytes in {theirs_t:.2?}: \
             {ratio:.3}x its size"
        );
        assert!(ratio <= bound, "{label}: {ratio:.3}x wimlib's size");
    }
}

#[test]
fn config_excludes_and_stores_uncompressed() {
    if !have_tools() {
        return;
    }
    let t = tempdir();
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("logs")).unwrap();
    std::fs::create_dir_all(src.join("media")).unwrap();
    std::fs::write(src.join("pagefile.sys"), vec![1u8; 10_000]).unwrap();
    std::fs::write(src.join("logs/a.log"), b"log a").unwrap();
    std::fs::write(src.join("logs/keep.log"), b"kept").unwrap();
    std::fs::write(src.join("x.tmp"), b"temp").unwrap();
    std::fs::write(src.join("media/song.mp3"), vec![b'm'; 100_000]).unwrap();
    std::fs::write(src.join("media/text.txt"), vec![b't'; 100_000]).unwrap();
    let ini = t.path().join("wimscript.ini");
    std::fs::write(
        &ini,
        "[ExclusionList]\r\n\\pagefile.sys\r\n\\logs\\*\r\n*.tmp\r\n\
         [ExclusionException]\r\n\\logs\\keep.log\r\n\
         [CompressionExclusionList]\r\n*.mp3\r\n",
    )
    .unwrap();
    let wim = t.path().join("c.wim");
    wimfs_ok([
        "capture".as_ref(),
        src.as_os_str(),
        wim.as_os_str(),
        "--config".as_ref(),
        ini.as_os_str(),
    ]);
    verify(&wim);
    let mut names = wimlib_dir(&wim, "1", &[], None);
    names.sort();
    assert_eq!(
        names,
        [
            "/",
            "/logs",
            "/logs/keep.log",
            "/media",
            "/media/song.mp3",
            "/media/text.txt"
        ]
    );
    let flags = |p: &str| {
        run_ok(
            Command::new("wimlib-imagex")
                .arg("dir")
                .arg(&wim)
                .arg("1")
                .arg(format!("--path={p}"))
                .arg("--detailed"),
        )
        .stdout_str()
    };
    let mp3 = flags("/media/song.mp3");
    let txt = flags("/media/text.txt");
    assert!(!mp3.contains("WIM_RESHDR_FLAG_COMPRESSED"), "{mp3}");
    assert!(txt.contains("WIM_RESHDR_FLAG_COMPRESSED"), "{txt}");
    let out = t.path().join("out");
    assert!(wimlib_apply(&wim, "1", &out, &[]).ok());
    assert_eq!(
        std::fs::read(out.join("media/song.mp3")).unwrap(),
        vec![b'm'; 100_000]
    );
}

#[test]
fn errors_name_the_path() {
    let t = tempdir();
    let wim = t.path().join("x.wim");
    let missing = t.path().join("no-such-dir");
    let o = wimfs(["capture".as_ref(), missing.as_os_str(), wim.as_os_str()]);
    assert!(!o.ok());
    assert!(o.stderr_str().contains("no-such-dir"), "{}", o.describe());
    assert!(!wim.exists(), "nothing written");
    // An unreadable file (as non-root only: root reads anything).
    if !is_root() {
        let src = t.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("secret"), b"x").unwrap();
        std::fs::set_permissions(
            src.join("secret"),
            std::os::unix::fs::PermissionsExt::from_mode(0o000),
        )
        .unwrap();
        let o = wimfs(["capture".as_ref(), src.as_os_str(), wim.as_os_str()]);
        assert!(
            !o.ok() && o.stderr_str().contains("secret"),
            "{}",
            o.describe()
        );
        assert!(!wim.exists());
    }
}

/// What one path of an image carries, for comparing two captures.
#[derive(Debug, PartialEq)]
struct Described {
    attributes: u32,
    short_name: String,
    security: Option<Vec<u8>>,
    creation_time: u64,
    last_write_time: u64,
    data: Option<[u8; 20]>,
    reparse: Option<(u32, [u8; 20])>,
    named: Vec<(String, [u8; 20])>,
    links: usize,
}

fn describe(wim: &Path) -> std::collections::BTreeMap<String, Described> {
    let w = wimfs::wim::Wim::open(wim, &[]).unwrap();
    let img = wimfs::image::Image::load(&w, 1).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for d in img.walk() {
        let ino = img.inode_of(d);
        let mut named: Vec<(String, [u8; 20])> =
            ino.named().map(|s| (s.name.clone(), s.hash)).collect();
        named.sort();
        out.insert(
            img.path(d),
            Described {
                attributes: ino.attributes,
                short_name: img.dentries[d as usize].short_name.clone(),
                security: img.security_descriptor(ino.security_id).map(|s| s.to_vec()),
                creation_time: ino.creation_time,
                last_write_time: ino.last_write_time,
                data: ino.data().map(|s| s.hash).filter(|h| *h != [0; 20]),
                reparse: ino.reparse().map(|s| (ino.reparse_tag, s.hash)),
                named,
                links: ino.nlink() as usize,
            },
        );
    }
    out
}

/// An NTFS volume (security descriptors, short names, named streams,
/// reparse points, hard links, times) captured by wimfs through an ntfs-3g
/// mount with `streams_interface=xattr` must carry the same Windows
/// metadata as wimlib's own capture of the volume.
#[test]
fn ntfs3g_source_keeps_windows_metadata() {
    if !have_tools() || !require(&["mkntfs", "ntfs-3g"]) {
        return;
    }
    let t = tempdir();
    let Some(reference) = build_ntfs_wim(&t.path().join("ref"), &[]) else {
        return;
    };
    // The same volume again: wimlib applies its capture onto a fresh NTFS
    // image, which ntfs-3g then shows to wimfs.
    let raw = t.path().join("again.raw");
    std::fs::File::create(&raw)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    run_ok(
        Command::new(tool_path("mkntfs"))
            .args(["-F", "-f", "-q"])
            .arg(&raw),
    );
    let o = wimlib_apply(&reference.wim, "1", &raw, &[]);
    assert!(o.ok(), "{}", o.describe());
    let wim = t.path().join("ours.wim");
    {
        let m = match NtfsMount::mount(&raw, &t.path().join("mnt")) {
            Ok(m) => m,
            Err(e) => {
                skip(&format!("cannot mount NTFS with ntfs-3g: {e}"));
                return;
            }
        };
        let o = wimfs_ok(["capture".as_ref(), m.mnt.as_os_str(), wim.as_os_str()]);
        println!("{}", o.all_output());
    }
    verify(&wim);
    let theirs = describe(&reference.wim);
    let ours = describe(&wim);
    let mut diffs = Vec::new();
    for (p, want) in &theirs {
        if p == "/" {
            continue;
        }
        match ours.get(p) {
            None => diffs.push(format!("{p}: missing from wimfs's capture")),
            Some(got) if got != want => {
                diffs.push(format!("{p}:\n    wimlib {want:?}\n    wimfs  {got:?}"))
            }
            Some(_) => {}
        }
    }
    for p in ours.keys() {
        if !theirs.contains_key(p) {
            diffs.push(format!("{p}: only in wimfs's capture"));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    // What the reference says is there, by name.
    let acl = &ours["/acl.txt"];
    assert_eq!(
        acl.security.as_deref(),
        Some(&custom_security_descriptor()[..])
    );
    assert_eq!(
        ours["/Long File Name With Spaces.txt"].short_name,
        "LONGFI~1.TXT"
    );
    assert_eq!(ours["/hello.txt"].links, 3);
    assert!(ours["/junction"].reparse.is_some());
}

/// A WIM inside the tree it captures (written or appended to) is left out
/// of the image: it changes while the tree is read.
#[test]
fn the_wim_being_written_is_not_captured() {
    if !have_tools() {
        return;
    }
    let t = tempdir();
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/a.txt"), b"a file\n").unwrap();
    let wim = src.join("inside.wim");
    wimfs_ok([
        "capture".as_ref(),
        src.as_os_str(),
        wim.as_os_str(),
        "One".as_ref(),
    ]);
    // Again over the existing file, then an append: both times the WIM
    // exists inside the tree.
    wimfs_ok([
        "capture".as_ref(),
        src.as_os_str(),
        wim.as_os_str(),
        "One".as_ref(),
    ]);
    wimfs_ok([
        "append".as_ref(),
        src.as_os_str(),
        wim.as_os_str(),
        "Two".as_ref(),
    ]);
    let v = wimlib_verify(&wim, &[]);
    assert!(v.ok(), "{}", v.describe());
    for img in ["1", "2"] {
        let mut names = wimlib_dir(&wim, img, &[], None);
        names.sort();
        assert_eq!(names, ["/", "/d", "/d/a.txt"], "image {img}");
    }
}
