//! `wimfs split` and `wimfs join` against wimlib: our parts verify and
//! apply with `wimlib-imagex verify/apply --ref`, hold every resource byte
//! for byte, respect the part size; wimlib's own split parts joined by us,
//! and ours joined by us, give back the images.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tree with several incompressible files of 300 kB to 1.5 MB, so a
/// 1 MiB part size gives several parts, one of them over-size.
fn source(dir: &Path) {
    let mut rng = Rng::new(99);
    std::fs::create_dir_all(dir.join("d")).unwrap();
    for (i, n) in [300_000usize, 700_000, 1_500_000, 400_000, 50_000]
        .iter()
        .enumerate()
    {
        std::fs::write(dir.join(format!("d/f{i}.bin")), rng.bytes(*n)).unwrap();
    }
    std::fs::write(dir.join("text.txt"), text_bytes(&mut rng, 200_000)).unwrap();
    std::fs::write(dir.join("empty"), b"").unwrap();
}

fn refs_glob(first: &Path) -> Vec<PathBuf> {
    let dir = first.parent().unwrap();
    let stem = first.file_stem().unwrap().to_string_lossy().into_owned();
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "swm")
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(stem.as_str())
        })
        .collect();
    v.sort();
    v
}

fn opts() -> CompareOpts {
    CompareOpts {
        mtime_granularity_ns: 100,
        xattrs: false,
        ..CompareOpts::default()
    }
}

/// Stored bytes of each resource of a standalone WIM or a part, by hash.
fn resources(wim: &Path) -> BTreeMap<[u8; 20], Vec<u8>> {
    let data = std::fs::read(wim).unwrap();
    blob_table(wim)
        .into_iter()
        // Metadata (flag 2) and solid blobs (4) aside: data resources.
        .filter(|e| e.flags & 0x6 == 0)
        .map(|e| {
            let s = e.offset as usize;
            (e.hash, data[s..s + e.stored_size as usize].to_vec())
        })
        .collect()
}

#[test]
fn our_parts_verify_apply_and_copy_resources_raw() {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let t = tempdir();
    let src = t.path().join("src");
    source(&src);
    let wim = t.path().join("x.wim");
    wimfs_ok(["capture".as_ref(), src.as_os_str(), wim.as_os_str()]);
    wimfs_ok([
        "append".as_ref(),
        src.join("d").as_os_str(),
        wim.as_os_str(),
    ]);
    let first = t.path().join("parts").join("x.swm");
    std::fs::create_dir_all(first.parent().unwrap()).unwrap();
    wimfs_ok([
        "split".as_ref(),
        wim.as_os_str(),
        first.as_os_str(),
        "--part-size".as_ref(),
        "1".as_ref(),
    ]);
    let parts = refs_glob(&first);
    assert!(parts.len() >= 3, "{parts:?}");
    assert!(parts.contains(&first.with_file_name("x2.swm")));
    let v = wimlib_verify(&first, &parts);
    assert!(v.ok(), "{}", v.describe());
    // Size limit: only a part holding a single over-size resource exceeds
    // it.
    let whole = resources(&wim);
    let mut seen = BTreeMap::new();
    for p in &parts {
        let size = std::fs::metadata(p).unwrap().len();
        let r = resources(p);
        if size > 1 << 20 {
            assert_eq!(r.len(), 1, "{}: {size} bytes", p.display());
        }
        seen.extend(r);
    }
    // Every resource, byte for byte.
    assert_eq!(seen.len(), whole.len());
    for (h, bytes) in &whole {
        assert!(seen.get(h) == Some(bytes), "resource not copied as it was");
    }
    let out = t.path().join("out");
    let o = wimlib_apply(&first, "1", &out, &parts);
    assert!(o.ok(), "{}", o.describe());
    assert_trees_equal(&src, &out, &opts(), "image 1 of the split set");
    // Join them back (parts in any order).
    let joined = t.path().join("joined.wim");
    let mut args: Vec<OsString> = vec!["join".into(), joined.clone().into()];
    args.extend(parts.iter().rev().map(|p| p.clone().into_os_string()));
    wimfs_ok(&args);
    assert!(wimlib_verify(&joined, &[]).ok());
    assert_eq!(resources(&joined), whole);
    for img in ["1", "2"] {
        let out = t.path().join(format!("j{img}"));
        assert!(wimlib_apply(&joined, img, &out, &[]).ok());
        let want = if img == "1" {
            src.clone()
        } else {
            src.join("d")
        };
        assert_trees_equal(&want, &out, &opts(), &format!("joined image {img}"));
    }
    // A split never overwrites.
    let o = wimfs([
        "split".as_ref(),
        wim.as_os_str(),
        first.as_os_str(),
        "--part-size".as_ref(),
        "1".as_ref(),
    ]);
    assert!(!o.ok(), "{}", o.describe());
}

#[test]
fn wimlib_parts_join_and_solid_wims_split() {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let t = tempdir();
    let src = t.path().join("src");
    source(&src);
    // wimlib's split, joined by us.
    let wim = t.path().join("w.wim");
    wimlib_capture(&src, &wim, &[]);
    let first = t.path().join("w.swm");
    run_ok(
        Command::new("wimlib-imagex")
            .arg("split")
            .arg(&wim)
            .arg(&first)
            .arg("1"),
    );
    let parts = refs_glob(&first);
    assert!(parts.len() >= 3, "{parts:?}");
    let joined = t.path().join("joined.wim");
    let mut args: Vec<OsString> = vec!["join".into(), joined.clone().into()];
    args.extend(parts.iter().map(|p| p.clone().into_os_string()));
    wimfs_ok(&args);
    assert!(wimlib_verify(&joined, &[]).ok());
    let out = t.path().join("out");
    assert!(wimlib_apply(&joined, "1", &out, &[]).ok());
    assert_trees_equal(&src, &out, &opts(), "wimlib's parts joined by wimfs");
    // A solid WIM: runs stay whole in one part.
    let solid = t.path().join("s.wim");
    wimfs_ok([
        "capture".as_ref(),
        src.as_os_str(),
        solid.as_os_str(),
        "--solid".as_ref(),
    ]);
    let sfirst = t.path().join("sp").join("s.swm");
    std::fs::create_dir_all(sfirst.parent().unwrap()).unwrap();
    wimfs_ok([
        "split".as_ref(),
        solid.as_os_str(),
        sfirst.as_os_str(),
        "--part-size".as_ref(),
        "1".as_ref(),
    ]);
    let sparts = refs_glob(&sfirst);
    let v = wimlib_verify(&sfirst, &sparts);
    assert!(v.ok(), "{}", v.describe());
    let out = t.path().join("sout");
    let o = wimlib_apply(&sfirst, "1", &out, &sparts);
    assert!(o.ok(), "{}", o.describe());
    assert_trees_equal(&src, &out, &opts(), "solid split set");
}
