//! The format defaults of ESD-style output (issue 11), checked on the bytes
//! and against the oracles: `capture --solid` and `export --compress lzms`
//! write solid LZMS resources with ESD's 64 MiB chunks, metadata resources
//! LZMS-compressed (as wimlib and DISM write them), the XML flagged 0x2
//! ("metadata", as ImageX and wimlib flag it), and every result verifies
//! and applies with wimlib to the source tree and tests clean with 7zz.
//! A small append keeps 4 MiB solid chunks. Split parts carry the same XML
//! flags as wimlib's own split.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const METADATA: u8 = 0x2;
const COMPRESSED: u8 = 0x4;
const SOLID: u8 = 0x10;

/// A tree with enough entries that its metadata resource is tens of KB,
/// plus text and binary-looking files.
fn source(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    make_source_tree(dir);
    let mut rng = Rng::new(11);
    let many = dir.join("many");
    std::fs::create_dir_all(&many).unwrap();
    for i in 0..300 {
        std::fs::write(
            many.join(format!("file-{i:04}.txt")),
            text_bytes(&mut rng, 100 + i * 7),
        )
        .unwrap();
    }
    set_mtime(&many, 1_400_000_000, 0);
}

fn opts() -> CompareOpts {
    CompareOpts {
        mtime_granularity_ns: 100,
        ..CompareOpts::default()
    }
    .labels("source", "applied")
}

fn le(b: &[u8]) -> u64 {
    b.iter().rev().fold(0u64, |a, &x| (a << 8) | x as u64)
}

/// Chunk size and compression format of every solid resource, read from
/// its 16-byte header (uncompressed size, chunk size, format).
fn solid_chunks(wim: &Path) -> Vec<(u64, u64)> {
    let data = std::fs::read(wim).unwrap();
    blob_table(wim)
        .iter()
        .filter(|e| e.flags & SOLID != 0 && e.original_size == 1 << 32)
        .map(|e| {
            let h = &data[e.offset as usize..e.offset as usize + 16];
            (le(&h[8..12]), le(&h[12..16]))
        })
        .collect()
}

/// wimlib verifies `wim`, applies it to exactly `src`, and 7zz tests it
/// clean and lists the same files.
fn check_with_oracles(wim: &Path, src: &Path, t: &Path, what: &str) {
    let v = wimlib_verify(wim, &[]);
    assert!(v.ok(), "wimlib-imagex verify ({what}):\n{}", v.describe());
    let out = t.join(format!("applied-{what}"));
    let a = wimlib_apply(wim, "1", &out, &[]);
    assert!(a.ok(), "wimlib-imagex apply ({what}):\n{}", a.describe());
    assert_trees_equal(src, &out, &opts(), what);
    assert_sevenzip_image(wim, 1, &SevenZipImage::of_tree(src));
}

/// Metadata resources: non-solid, LZMS-compressed, smaller than their
/// data, flagged metadata.
fn assert_metadata_compressed(wim: &Path) {
    let mds: Vec<_> = blob_table(wim)
        .into_iter()
        .filter(|e| e.flags & METADATA != 0)
        .collect();
    assert!(!mds.is_empty(), "no metadata resource in {}", wim.display());
    for e in mds {
        assert_eq!(
            e.flags,
            METADATA | COMPRESSED,
            "metadata resource flags in {}",
            wim.display()
        );
        assert!(
            e.stored_size < e.original_size,
            "metadata resource stored in {} bytes for {}",
            e.stored_size,
            e.original_size
        );
    }
}

fn capture_solid(src: &Path, wim: &Path) {
    wimfs_ok([
        "capture".as_ref(),
        src.as_os_str(),
        wim.as_os_str(),
        "--solid".as_ref(),
    ]);
}

#[test]
fn capture_solid_is_esd_shaped_and_applies_with_wimlib() {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let t = tempdir();
    let src = t.path().join("src");
    source(&src);
    let wim = t.path().join("s.esd");
    capture_solid(&src, &wim);
    assert_eq!(wimlib_header_field(&wim, "Version"), 0xe00);
    // LZMS is format 3 in a solid resource header.
    assert_eq!(solid_chunks(&wim), vec![(64 << 20, 3)]);
    assert_metadata_compressed(&wim);
    assert_eq!(wimlib_header_field(&wim, "XML Data Flags"), 0x2);
    check_with_oracles(&wim, &src, t.path(), "capture --solid");

    // wimlib's own --solid capture of the tree flags its metadata and XML
    // the same way.
    let theirs = t.path().join("wimlib.esd");
    wimlib_capture(&src, &theirs, &["--solid"]);
    let md_flags = |w: &Path| {
        blob_table(w)
            .iter()
            .filter(|e| e.flags & METADATA != 0)
            .map(|e| e.flags)
            .collect::<Vec<_>>()
    };
    assert_eq!(md_flags(&wim), md_flags(&theirs));
    assert_eq!(
        wimlib_header_field(&theirs, "XML Data Flags"),
        wimlib_header_field(&wim, "XML Data Flags")
    );

    // A small append into it: 4 MiB chunks (the append policy), still a
    // valid solid WIM with both images.
    let more = t.path().join("more");
    std::fs::create_dir_all(&more).unwrap();
    std::fs::write(more.join("new.txt"), text_bytes(&mut Rng::new(3), 50_000)).unwrap();
    wimfs_ok([
        "append".as_ref(),
        more.as_os_str(),
        wim.as_os_str(),
        "More".as_ref(),
    ]);
    assert_eq!(solid_chunks(&wim), vec![(64 << 20, 3), (4 << 20, 3)]);
    assert_metadata_compressed(&wim);
    let v = wimlib_verify(&wim, &[]);
    assert!(
        v.ok(),
        "wimlib-imagex verify after append:\n{}",
        v.describe()
    );
    let out = t.path().join("more-applied");
    let a = wimlib_apply(&wim, "2", &out, &[]);
    assert!(a.ok(), "{}", a.describe());
    assert_eq!(
        std::fs::read(out.join("new.txt")).unwrap(),
        std::fs::read(more.join("new.txt")).unwrap()
    );
}

#[test]
fn export_compress_lzms_writes_esd_chunks() {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let t = tempdir();
    let src = t.path().join("src");
    source(&src);
    let lzx = t.path().join("a.wim");
    wimfs_ok(["capture".as_ref(), src.as_os_str(), lzx.as_os_str()]);
    let esd = t.path().join("a.esd");
    wimfs_ok([
        "export".as_ref(),
        lzx.as_os_str(),
        "1".as_ref(),
        esd.as_os_str(),
        "--compress".as_ref(),
        "lzms".as_ref(),
    ]);
    assert_eq!(wimlib_header_field(&esd, "Version"), 0xe00);
    assert_eq!(solid_chunks(&esd), vec![(64 << 20, 3)]);
    assert_metadata_compressed(&esd);
    assert_eq!(wimlib_header_field(&esd, "XML Data Flags"), 0x2);
    check_with_oracles(&esd, &src, t.path(), "export --compress lzms");

    // Back to LZX: no solid resource, metadata LZX-compressed as before.
    let back = t.path().join("b.wim");
    wimfs_ok([
        "export".as_ref(),
        esd.as_os_str(),
        "1".as_ref(),
        back.as_os_str(),
        "--compress".as_ref(),
        "lzx".as_ref(),
    ]);
    assert!(solid_chunks(&back).is_empty());
    assert_metadata_compressed(&back);
    check_with_oracles(&back, &src, t.path(), "export --compress lzx");
}

fn parts_of(first: &Path) -> Vec<PathBuf> {
    let dir = first.parent().unwrap();
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "swm"))
        .collect();
    v.sort();
    v
}

#[test]
fn split_parts_flag_their_xml_as_wimlib_does() {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let t = tempdir();
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = Rng::new(5);
    for i in 0..4 {
        std::fs::write(src.join(format!("f{i}.bin")), rng.bytes(600_000)).unwrap();
    }
    let wim = t.path().join("x.wim");
    wimfs_ok(["capture".as_ref(), src.as_os_str(), wim.as_os_str()]);
    let ours = t.path().join("ours").join("x.swm");
    let theirs = t.path().join("theirs").join("x.swm");
    std::fs::create_dir_all(ours.parent().unwrap()).unwrap();
    std::fs::create_dir_all(theirs.parent().unwrap()).unwrap();
    wimfs_ok([
        "split".as_ref(),
        wim.as_os_str(),
        ours.as_os_str(),
        "--part-size".as_ref(),
        "1".as_ref(),
    ]);
    run_ok(
        Command::new("wimlib-imagex")
            .arg("split")
            .arg(&wim)
            .arg(&theirs)
            .arg("1"),
    );
    let (a, b) = (parts_of(&ours), parts_of(&theirs));
    assert!(a.len() >= 2 && b.len() >= 2, "{a:?} {b:?}");
    let flags = |parts: &[PathBuf]| {
        parts
            .iter()
            .map(|p| wimlib_header_field(p, "XML Data Flags"))
            .collect::<Vec<_>>()
    };
    assert!(
        flags(&b).iter().all(|&f| f == 0x2),
        "wimlib: {:?}",
        flags(&b)
    );
    assert!(
        flags(&a).iter().all(|&f| f == 0x2),
        "wimfs: {:?}",
        flags(&a)
    );
    let v = wimlib_verify(&ours, &a);
    assert!(v.ok(), "{}", v.describe());
}
