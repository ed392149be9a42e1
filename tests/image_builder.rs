//! An image built from scratch with `ImageBuilder` and written into a new
//! file by `WimWriter::create` (the base of the coming `capture`), checked
//! by wimlib: `verify`, `dir` and `apply` (bytes, hard links, symlinks),
//! in every format; then appended to and dropped from with
//! `WimWriter::append`.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use wimfs::commit::writer::{Format, WimWriter};
use wimfs::commit::{add_new_image, WimLock};
use wimfs::newimage::{ImageBuilder, NodeMeta, StreamData};
use wimfs::wim::header::Compression;

fn have_wimlib() -> bool {
    let ok = Command::new("wimlib-imagex")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: wimlib-imagex is not installed");
    }
    ok
}

/// The writer reads back what it wrote (for the integrity table).
fn rw_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .unwrap()
}

fn new(data: &[u8]) -> StreamData {
    StreamData::New(Arc::new(data.to_vec()))
}

/// Bytes that compress somewhat but not trivially.
fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 3 == 0 {
                b'a' + (x % 7) as u8
            } else {
                x as u8
            }
        })
        .collect()
}

/// Reparse data of a relative symbolic link to `target` (backslashes).
fn symlink_reparse(target: &str) -> Vec<u8> {
    let name: Vec<u8> = target
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let n = name.len() as u16;
    let mut v = Vec::new();
    v.extend_from_slice(&0u16.to_le_bytes()); // substitute name offset
    v.extend_from_slice(&n.to_le_bytes());
    v.extend_from_slice(&n.to_le_bytes()); // print name offset
    v.extend_from_slice(&n.to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes()); // relative
    v.extend_from_slice(&name);
    v.extend_from_slice(&name);
    v
}

/// Owner BUILTIN\Administrators, no DACL.
fn security_descriptor() -> Vec<u8> {
    let mut v = vec![1, 0];
    v.extend_from_slice(&0x8000u16.to_le_bytes()); // self-relative
    v.extend_from_slice(&20u32.to_le_bytes()); // owner
    v.extend_from_slice(&[0; 12]); // group, sacl, dacl
    v.extend_from_slice(&[1, 2, 0, 0, 0, 0, 0, 5]);
    v.extend_from_slice(&32u32.to_le_bytes());
    v.extend_from_slice(&544u32.to_le_bytes());
    v
}

struct Source {
    big: Vec<u8>,
    text: Vec<u8>,
}

fn build(src: &Source) -> wimfs::newimage::NewImage {
    let meta = NodeMeta {
        last_write_time: 132_000_000_000_000_000,
        creation_time: 131_000_000_000_000_000,
        last_access_time: 132_000_000_000_000_000,
        security: Some(security_descriptor()),
        ..Default::default()
    };
    let mut b = ImageBuilder::new(meta.clone());
    let root = b.root();
    let docs = b.add_dir(root, "docs", &meta).unwrap();
    let other = b.add_dir(root, "other", &NodeMeta::default()).unwrap();
    let a = b.add_file(docs, "a.txt", &meta, new(&src.text)).unwrap();
    b.add_file(docs, "empty.bin", &meta, StreamData::Empty)
        .unwrap();
    b.add_hard_link(other, "a-link.txt", a).unwrap();
    b.add_file(root, "big.bin", &meta, new(&src.big)).unwrap();
    // The same content under another name: stored once.
    b.add_file(other, "big-copy.bin", &meta, new(&src.big))
        .unwrap();
    let s = b
        .add_file(root, "streams.txt", &meta, new(b"main data"))
        .unwrap();
    b.add_named_stream(s, "extra", new(b"named stream data"))
        .unwrap();
    b.add_reparse_point(
        root,
        "sym",
        &meta,
        0xA000_000C,
        new(&symlink_reparse("docs\\a.txt")),
        false,
    )
    .unwrap();
    // Rules the builder keeps.
    assert!(b.add_file(docs, "a.txt", &meta, StreamData::Empty).is_err());
    assert!(b.add_file(a, "x", &meta, StreamData::Empty).is_err());
    assert!(b.add_dir(root, "bad/name", &meta).is_err());
    assert!(b.add_hard_link(root, "docs-link", docs).is_err());
    b.finish()
}

fn wimlib(args: &[&str]) -> String {
    let o = Command::new("wimlib-imagex").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "wimlib-imagex {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn check_applied(wim: &Path, image: &str, out: &Path, src: &Source) {
    use std::os::unix::fs::MetadataExt;
    wimlib(&["apply", wim.to_str().unwrap(), image, out.to_str().unwrap()]);
    assert_eq!(std::fs::read(out.join("docs/a.txt")).unwrap(), src.text);
    assert_eq!(
        std::fs::read(out.join("other/a-link.txt")).unwrap(),
        src.text
    );
    assert_eq!(std::fs::read(out.join("big.bin")).unwrap(), src.big);
    assert_eq!(
        std::fs::read(out.join("other/big-copy.bin")).unwrap(),
        src.big
    );
    assert_eq!(std::fs::read(out.join("docs/empty.bin")).unwrap(), b"");
    assert_eq!(
        std::fs::read(out.join("streams.txt")).unwrap(),
        b"main data"
    );
    let ino = |p: &str| std::fs::metadata(out.join(p)).unwrap().ino();
    assert_eq!(ino("docs/a.txt"), ino("other/a-link.txt"), "hard link");
    assert_ne!(ino("big.bin"), ino("other/big-copy.bin"));
    assert_eq!(
        std::fs::read_link(out.join("sym")).unwrap(),
        Path::new("docs/a.txt")
    );
}

fn check_listing(wim: &Path, image: &str) {
    let dir = wimlib(&["dir", wim.to_str().unwrap(), image]);
    let mut got: Vec<&str> = dir.lines().collect();
    got.sort_unstable();
    let mut want = vec![
        "/",
        "/big.bin",
        "/docs",
        "/docs/a.txt",
        "/docs/empty.bin",
        "/other",
        "/other/a-link.txt",
        "/other/big-copy.bin",
        "/streams.txt",
        "/sym",
    ];
    want.sort_unstable();
    assert_eq!(got, want);
    let detailed = wimlib(&["dir", wim.to_str().unwrap(), image, "--detailed"]);
    assert!(
        detailed.contains("extra"),
        "named stream listed: {detailed}"
    );
}

#[test]
fn built_image_written_from_scratch_is_valid_for_wimlib() {
    if !have_wimlib() {
        return;
    }
    let src = Source {
        big: pseudo_random(300_000, 7),
        text: b"hello, hard-linked world\n".repeat(5000),
    };
    let formats = [
        ("none", Compression::None, 32768, false),
        ("xpress", Compression::Xpress, 32768, false),
        ("lzx", Compression::Lzx, 32768, false),
        ("lzms", Compression::Lzms, 131072, true),
    ];
    for (label, compression, chunk_size, solid) in formats {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{label}.wim"));
        let file = rw_file(&path);
        let format = Format {
            compression,
            chunk_size,
            solid,
            solid_chunk_size: chunk_size.max(wimfs::commit::APPEND_SOLID_CHUNK),
        };
        let mut w = WimWriter::create(&file, &path, format, [7; 16], true).unwrap();
        let i = add_new_image(
            &mut w,
            build(&src),
            "Built",
            Some("from scratch"),
            &|_, _| {},
        )
        .unwrap();
        assert_eq!(i, 1);
        let done = w.finish(&mut |_| Ok(())).unwrap();
        drop(file);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), done.file_size);
        let p = path.to_str().unwrap();
        wimlib(&["verify", p]);
        let info = wimlib(&["info", p]);
        assert!(
            info.contains("Built") && info.contains("from scratch"),
            "{info}"
        );
        check_listing(&path, "1");
        check_applied(&path, "1", &dir.path().join("out1"), &src);

        // Append a second image (every blob is there already), then drop
        // the first.
        {
            let lock = WimLock::acquire(&path).unwrap();
            let mut w = WimWriter::append(&lock, false).unwrap();
            let before = std::fs::metadata(&path).unwrap().len();
            assert_eq!(
                add_new_image(&mut w, build(&src), "Again", None, &|_, _| {}).unwrap(),
                2
            );
            let done = w.finish(&mut |_| Ok(())).unwrap();
            // Metadata, tables and XML only: no blob stored again.
            assert!(
                done.file_size - before < 20_000,
                "{label}: {}",
                done.file_size - before
            );
        }
        wimlib(&["verify", p]);
        check_listing(&path, "2");
        {
            let lock = WimLock::acquire(&path).unwrap();
            let mut w = WimWriter::append(&lock, false).unwrap();
            w.drop_image(1).unwrap();
            w.finish(&mut |_| Ok(())).unwrap();
        }
        wimlib(&["verify", p]);
        let info = wimlib(&["info", p]);
        assert!(
            info.lines()
                .any(|l| l.starts_with("Image Count:") && l.trim_end().ends_with(" 1")),
            "{label}: {info}"
        );
        assert!(info.contains("Again") && !info.contains("Built"), "{info}");
        check_applied(&path, "1", &dir.path().join("out2"), &src);
    }
}

#[test]
fn a_failing_hook_leaves_the_appended_wim_as_it_was() {
    if !have_wimlib() {
        return;
    }
    let src = Source {
        big: pseudo_random(100_000, 3),
        text: b"text".repeat(100),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.wim");
    let file = rw_file(&path);
    let format = Format {
        compression: Compression::Lzx,
        chunk_size: 32768,
        solid: false,
        solid_chunk_size: 32768,
    };
    let mut w = WimWriter::create(&file, &path, format, [1; 16], false).unwrap();
    add_new_image(&mut w, build(&src), "One", None, &|_, _| {}).unwrap();
    w.finish(&mut |_| Ok(())).unwrap();
    drop(file);
    let before = std::fs::read(&path).unwrap();
    {
        let lock = WimLock::acquire(&path).unwrap();
        let mut w = WimWriter::append(&lock, false).unwrap();
        let other = Source {
            big: pseudo_random(50_000, 9),
            text: b"other".repeat(10),
        };
        add_new_image(&mut w, build(&other), "Two", None, &|_, _| {}).unwrap();
        let err = w.finish(&mut |_| Err(wimfs::Error::Other("hook says no".into())));
        assert!(err.is_err());
    }
    assert_eq!(std::fs::read(&path).unwrap(), before);
    wimlib(&["verify", path.to_str().unwrap()]);
}
