//! Commit against the oracles: a tree captured by wimlib is changed through
//! the commit API (files added, replaced, removed, a new image), and the
//! result must pass `wimlib-imagex verify`, apply with wimlib to exactly the
//! expected tree, and test clean and list the expected names and sizes
//! with `7zz`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use wimfs::commit::{self, CommitOptions, NewImage, StreamData, WimLock};
use wimfs::wim::metadata::attr;
use wimfs::wim::Wim;

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().expect("spawn");
    assert!(
        o.status.success(),
        "{:?} failed: {}{}",
        cmd,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every regular file under `dir` with its contents, by relative path.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                m.insert(format!("{rel}/"), Vec::new());
                stack.push(p);
            } else if ft.is_symlink() {
                m.insert(
                    format!("{rel}@"),
                    std::fs::read_link(&p)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                        .into_bytes(),
                );
            } else {
                m.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    m
}

fn source_tree(root: &Path) -> PathBuf {
    let src = root.join("src");
    std::fs::create_dir_all(src.join("dir/sub")).unwrap();
    std::fs::write(src.join("hello.txt"), b"hello world\n").unwrap();
    let big: Vec<u8> = (0..700_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 & 0x3f)
        .collect();
    std::fs::write(src.join("dir/big.bin"), &big).unwrap();
    std::fs::write(src.join("dir/sub/gone.txt"), b"to be deleted").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("../hello.txt", src.join("dir/link")).unwrap();
    // A directory symlink: a reparse point with the DIRECTORY attribute.
    std::os::unix::fs::symlink("sub", src.join("dir/dirlink")).unwrap();
    src
}

/// Change the image: replace hello.txt, add dir/new.bin (multi-chunk) and
/// new.txt, delete dir/sub/gone.txt.
fn change(img: &mut NewImage) -> BTreeMap<&'static str, Vec<u8>> {
    let name_of = |img: &NewImage, i: usize| img.records[i].name.clone();
    let find = |img: &NewImage, parent: u32, name: &str| {
        (1..img.records.len())
            .find(|&i| img.records[i].parent == parent && name_of(img, i) == name)
            .unwrap()
    };
    let mut exp = BTreeMap::new();
    let hello = find(img, 0, "hello.txt");
    let v = b"changed content\n".to_vec();
    img.streams[hello].data = Some(StreamData::New(Arc::new(v.clone())));
    exp.insert("hello.txt", v);
    let dir = find(img, 0, "dir") as u32;
    let newbin: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut rec = img.records[hello].clone();
    rec.name = "new.bin".into();
    rec.short_name.clear();
    rec.parent = dir;
    rec.link_group = 0;
    img.records.push(rec.clone());
    img.streams.push(commit::EntryStreams {
        data: Some(StreamData::New(Arc::new(newbin.clone()))),
        ..Default::default()
    });
    exp.insert("dir/new.bin", newbin);
    rec.name = "new.txt".into();
    rec.parent = 0;
    img.records.push(rec);
    img.streams.push(commit::EntryStreams {
        data: Some(StreamData::New(Arc::new(b"brand new\n".to_vec()))),
        ..Default::default()
    });
    exp.insert("new.txt", b"brand new\n".to_vec());
    // Delete gone.txt: drop its record and renumber parents.
    let sub = find(img, dir, "sub") as u32;
    let gone = find(img, sub, "gone.txt");
    img.records.remove(gone);
    img.streams.remove(gone);
    for r in img.records.iter_mut() {
        if r.parent as usize > gone {
            r.parent -= 1;
        }
    }
    assert!(img
        .records
        .iter()
        .all(|r| r.attributes & attr::DIRECTORY != 0 || r.name != "gone.txt"));
    exp
}

/// The expected map of [`files`] as 7-Zip lists it: `x/` keys are
/// directories, `x@` keys symlinks, the rest regular files of that length.
fn sevenzip_view(expected: &BTreeMap<String, Vec<u8>>) -> common::SevenZipImage {
    let mut v = common::SevenZipImage::default();
    for (k, data) in expected {
        if let Some(d) = k.strip_suffix('/') {
            v.dirs.insert(d.to_string());
        } else if let Some(l) = k.strip_suffix('@') {
            v.links.insert(l.to_string());
        } else {
            v.files.insert(k.clone(), data.len() as u64);
        }
    }
    v
}

fn check_with_oracles(wim: &Path, image: u32, expected: &BTreeMap<String, Vec<u8>>, tmp: &Path) {
    // 7-Zip, a reader independent of wimlib: `7zz t` decompresses and
    // hashes every stream, and the listing of this image must hold the
    // expected names with the expected sizes.
    common::assert_sevenzip_image(wim, image as usize, &sevenzip_view(expected));
    let o = Command::new("wimlib-imagex")
        .arg("verify")
        .arg(wim)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "wimlib verify of {}: {err}",
        wim.display()
    );
    assert!(
        !err.contains("Ignoring children"),
        "wimlib finds children of a non-directory: {err}"
    );
    let out = tmp.join(format!("applied{image}"));
    run(Command::new("wimlib-imagex")
        .arg("apply")
        .arg(wim)
        .arg(image.to_string())
        .arg(&out));
    assert_eq!(
        &files(&out),
        expected,
        "wimlib apply of {} image {image} differs",
        wim.display()
    );
    let w = Wim::open(wim, &[]).unwrap();
    let rep = wimfs::verify::verify(&w, &|_| {});
    assert!(rep.ok(), "wimfs verify: {:?}", rep.problems);
}

#[test]
fn commit_in_every_compression() {
    if !common::require(&["wimlib-imagex"]) {
        return;
    }
    for args in [
        &["--compress=none"][..],
        &["--compress=XPRESS"],
        &["--compress=LZX"],
        &["--compress=LZX", "--chunk-size=131072"],
        &["--solid"],
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let src = source_tree(tmp.path());
        let wim = tmp.path().join("t.wim");
        run(Command::new("wimlib-imagex")
            .arg("capture")
            .arg(&src)
            .arg(&wim)
            .arg("T")
            .args(args));
        let before = std::fs::metadata(&wim).unwrap().len();
        let w = Wim::open(&wim, &[]).unwrap();
        let mut img = NewImage::from_image(&w, 1).unwrap();
        drop(w);
        let changes = change(&mut img);
        let mut expected = files(&src);
        expected.remove("dir/sub/gone.txt");
        for (k, v) in changes {
            expected.insert(k.to_string(), v);
        }
        let lock = WimLock::acquire(&wim).unwrap();
        // A second writer is refused while we hold the lock.
        assert!(WimLock::acquire(&wim).is_err(), "lock not exclusive");
        let rep =
            commit::append_image(&lock, 1, img, &CommitOptions::default(), &|_, _| {}).unwrap();
        drop(lock);
        assert_eq!(
            rep.new_blobs, 3,
            "{args:?}: only the three new contents are stored"
        );
        assert!(
            rep.bytes_added < 1_200_000,
            "{args:?}: appended {} bytes",
            rep.bytes_added
        );
        assert!(std::fs::metadata(&wim).unwrap().len() > before);
        check_with_oracles(&wim, 1, &expected, tmp.path());

        // The same tree again as a new image: nothing new to store.
        let w = Wim::open(&wim, &[]).unwrap();
        let img2 = NewImage::from_image(&w, 1).unwrap();
        drop(w);
        let lock = WimLock::acquire(&wim).unwrap();
        let opts = CommitOptions {
            new_image: true,
            check: true,
            ..Default::default()
        };
        let rep = commit::append_image(&lock, 0, img2, &opts, &|_, _| {}).unwrap();
        drop(lock);
        assert_eq!((rep.image, rep.new_blobs), (2, 0), "{args:?}");
        check_with_oracles(&wim, 2, &expected, tmp.path());
        let info = run(Command::new("wimlib-imagex").arg("info").arg(&wim));
        assert!(info.contains("Image Count:    2"), "{info}");
    }
}

#[test]
fn failed_commit_leaves_the_wim_as_it_was() {
    if !common::require(&["wimlib-imagex"]) {
        return;
    }
    /// Fails on its `fail_at`-th read: 0 fails while hashing, a later one
    /// fails while the new data is being appended (after the header was
    /// already marked WRITE_IN_PROGRESS).
    struct Failing {
        reads: std::sync::atomic::AtomicUsize,
        fail_at: usize,
    }
    impl wimfs::commit::Content for Failing {
        fn len(&self) -> u64 {
            1 << 20
        }
        fn read_at(&self, off: u64, buf: &mut [u8]) -> wimfs::Result<()> {
            if self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= self.fail_at {
                return Err(wimfs::Error::Other("simulated read failure".into()));
            }
            buf.iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = ((off as usize + i) % 251) as u8);
            Ok(())
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = source_tree(tmp.path());
    let wim = tmp.path().join("t.wim");
    run(Command::new("wimlib-imagex")
        .arg("capture")
        .arg(&src)
        .arg(&wim)
        .arg("T")
        .arg("--compress=LZX"));
    let orig = std::fs::read(&wim).unwrap();
    // Hashing reads 1 MiB in one piece; the write pass reads it again.
    for fail_at in [0, 1] {
        let w = Wim::open(&wim, &[]).unwrap();
        let mut img = NewImage::from_image(&w, 1).unwrap();
        drop(w);
        let f = Failing {
            reads: Default::default(),
            fail_at,
        };
        img.streams[1].data = Some(StreamData::New(Arc::new(f)));
        let lock = WimLock::acquire(&wim).unwrap();
        let err =
            commit::append_image(&lock, 1, img, &CommitOptions::default(), &|_, _| {}).unwrap_err();
        assert!(err.to_string().contains("simulated"), "{err}");
        drop(lock);
        assert_eq!(
            std::fs::read(&wim).unwrap(),
            orig,
            "WIM changed by a commit failing at read {fail_at}"
        );
    }
    run(Command::new("wimlib-imagex").arg("verify").arg(&wim));
}

#[test]
fn optimize_and_export_shed_stale_data() {
    if !common::require(&["wimlib-imagex"]) {
        return;
    }
    use wimfs::commit::rebuild::{export_append, rebuild, ExportNames, Target};
    use wimfs::wim::header::Compression;
    for args in [
        &["--compress=LZX"][..],
        &["--solid"],
        &["--compress=XPRESS"],
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let src = source_tree(tmp.path());
        let wim = tmp.path().join("t.wim");
        run(Command::new("wimlib-imagex")
            .arg("capture")
            .arg(&src)
            .arg(&wim)
            .arg("T")
            .args(args));
        // Two commits leave stale data behind.
        let mut expected = files(&src);
        for round in 0..2 {
            let w = Wim::open(&wim, &[]).unwrap();
            let mut img = NewImage::from_image(&w, 1).unwrap();
            drop(w);
            let i = (1..img.records.len())
                .find(|&i| img.records[i].name == "big.bin")
                .unwrap();
            let v: Vec<u8> = (0..500_000u32)
                .map(|x| (x.wrapping_mul(31 + round) >> 3) as u8)
                .collect();
            img.streams[i].data = Some(StreamData::New(Arc::new(v.clone())));
            expected.insert("dir/big.bin".into(), v);
            let lock = WimLock::acquire(&wim).unwrap();
            commit::append_image(&lock, 1, img, &CommitOptions::default(), &|_, _| {}).unwrap();
        }
        let before = std::fs::metadata(&wim).unwrap().len();
        let w = Wim::open(&wim, &[]).unwrap();
        let rep = rebuild(&w, &[1], &wim, Target::same_as(&w), true, false, &|_| {}).unwrap();
        drop(w);
        let after = std::fs::metadata(&wim).unwrap().len();
        assert!(
            after < before,
            "{args:?}: optimize did not shrink ({before} -> {after})"
        );
        if args == ["--solid"] {
            // The original solid run is now mostly stale: its live blobs are
            // recompressed so the stale bytes really go.
            assert!(
                rep.recompressed > 0,
                "{args:?}: a mostly stale solid run was copied whole"
            );
            assert!(
                after * 2 < before,
                "{args:?}: stale solid data kept ({before} -> {after})"
            );
        } else {
            assert_eq!(
                rep.recompressed, 0,
                "{args:?}: optimize must copy resources raw"
            );
        }
        check_with_oracles(&wim, 1, &expected, tmp.path());

        // Export into every other format.
        let w = Wim::open(&wim, &[]).unwrap();
        for c in [
            Compression::None,
            Compression::Xpress,
            Compression::Lzx,
            Compression::Lzms,
        ] {
            let dst = tmp.path().join(format!("e-{c:?}.wim"));
            rebuild(&w, &[1], &dst, Target::for_codec(c), false, true, &|_| {}).unwrap();
            check_with_oracles(&dst, 1, &expected, tmp.path());
        }
        // Export as a second image into an existing WIM of another format
        // (under another name: the first image has this one).
        let dst = tmp.path().join("e-Xpress.wim");
        let names = ExportNames {
            name: Some("second".into()),
            description: None,
        };
        export_append(&w, &[1], &dst, false, &names, &|_, _| {}).unwrap();
        check_with_oracles(&dst, 2, &expected, tmp.path());
    }
}

#[test]
fn full_disk_during_commit_leaves_the_wim_as_it_was() {
    if !common::require(&["wimlib-imagex"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    // A 2 MiB filesystem (needs root, as CI has).
    let m = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&small)
        .output();
    if !m.as_ref().is_ok_and(|o| o.status.success()) {
        common::skip("cannot mount a small tmpfs (not root?): the full-disk test did not run");
        return;
    }
    struct Umount(PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _guard = Umount(small.clone());
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"some text\n").unwrap();
    let wim = small.join("t.wim");
    run(Command::new("wimlib-imagex")
        .arg("capture")
        .arg(&src)
        .arg(&wim)
        .arg("T")
        .arg("--compress=LZX"));
    let orig = std::fs::read(&wim).unwrap();
    let w = Wim::open(&wim, &[]).unwrap();
    let mut img = NewImage::from_image(&w, 1).unwrap();
    drop(w);
    // 3 MiB that will not compress: more than the filesystem holds.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..3 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let i = (1..img.records.len())
        .find(|&i| img.records[i].name == "a.txt")
        .unwrap();
    img.streams[i].data = Some(StreamData::New(Arc::new(noise)));
    let lock = WimLock::acquire(&wim).unwrap();
    let err =
        commit::append_image(&lock, 1, img, &CommitOptions::default(), &|_, _| {}).unwrap_err();
    drop(lock);
    let msg = err.to_string();
    assert!(
        msg.contains("No space") || msg.contains("space"),
        "unexpected error: {msg}"
    );
    assert_eq!(
        std::fs::read(&wim).unwrap(),
        orig,
        "a commit that ran out of space changed the WIM"
    );
    run(Command::new("wimlib-imagex").arg("verify").arg(&wim));
}

/// The ImageX-made fixtures (LZX, XPRESS, uncompressed), committed to with
/// a new file: wimlib verifies and applies the result, 7-Zip lists it, and
/// the original files are untouched.
#[test]
fn commit_into_imagex_fixtures() {
    if !common::require(&["wimlib-imagex"]) {
        return;
    }
    let Some(fx) = common::fixtures() else {
        return;
    };
    let dir = fx.join("imagex/multiple-files");
    assert!(
        dir.is_dir(),
        "{} is missing from the fixtures",
        dir.display()
    );
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "wim") {
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let before = tmp.path().join("before");
        run(Command::new("wimlib-imagex")
            .arg("apply")
            .arg(&p)
            .arg("1")
            .arg(&before));
        let wim = tmp.path().join("t.wim");
        std::fs::copy(&p, &wim).unwrap();
        let mut perm = std::fs::metadata(&wim).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(&wim, perm).unwrap();
        let w = Wim::open(&wim, &[]).unwrap();
        let mut img = NewImage::from_image(&w, 1).unwrap();
        drop(w);
        let mut rec = img.records[0].clone();
        rec.name = "new.txt".into();
        rec.attributes = attr::ARCHIVE;
        rec.parent = 0;
        rec.short_name.clear();
        img.records.push(rec);
        img.streams.push(commit::EntryStreams {
            data: Some(StreamData::New(Arc::new(b"added by wimfs\n".to_vec()))),
            ..Default::default()
        });
        let lock = WimLock::acquire(&wim).unwrap();
        commit::append_image(&lock, 1, img, &CommitOptions::default(), &|_, _| {}).unwrap();
        drop(lock);
        let mut expected = files(&before);
        expected.insert("new.txt".into(), b"added by wimfs\n".to_vec());
        check_with_oracles(&wim, 1, &expected, tmp.path());
        n += 1;
    }
    assert!(n >= 3, "only {n} ImageX WIMs found");
}
