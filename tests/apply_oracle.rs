//! `wimfs apply` against oracles: `wimlib-imagex apply` of the same image,
//! and the known sources (ImageX's input files, generated trees, an NTFS
//! volume filled with streams, links and reparse points).
//!
//! Facts about wimlib-imagex 1.13.5 applying on Linux (found empirically,
//! and the reason for each comparison's settings):
//! - named data streams are dropped ("Ignoring named data streams of N
//!   files"), so ADS xattrs are checked against the known source instead;
//! - symlink and junction reparse points become symlinks; a link that was
//!   absolute and pointed into the captured tree (reparse-point fix-up, the
//!   WIM's RP_FIX flag) gets the absolute extraction dir as prefix, e.g.
//!   `C:\dir` -> `/abs/path/to/DIR/dir`; other absolute targets are kept
//!   without the drive letter. The comparator writes the extraction dir as
//!   `<ROOT>` on both sides, so `DIR/x` and `DIR2/x` compare equal;
//! - mtimes of files, directories (the root too) and symlinks are restored
//!   with 100 ns precision; hard links are restored; modes/owners are not
//!   (without --unix-data), so they are not compared.
mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------
// The comparator itself
// ---------------------------------------------------------------------------

/// Build a small tree with one of everything the comparator looks at.
fn sample_tree(d: &Path) {
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("a.txt"), b"alpha").unwrap();
    std::fs::write(d.join("sub/b.bin"), vec![1u8; 3000]).unwrap();
    std::fs::write(d.join("h1"), b"linked").unwrap();
    std::fs::hard_link(d.join("h1"), d.join("sub/h2")).unwrap();
    std::fs::write(d.join("solo"), b"linked").unwrap();
    std::os::unix::fs::symlink("a.txt", d.join("ln")).unwrap();
    let abs = d.canonicalize().unwrap().join("sub");
    std::os::unix::fs::symlink(&abs, d.join("abs-in")).unwrap();
    set_user_xattr(&d.join("a.txt"), "user.stream", b"value");
    for (i, p) in [
        "a.txt",
        "sub/b.bin",
        "h1",
        "solo",
        "ln",
        "abs-in",
        "sub",
        "",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&d.join(p), 1_000_000 + i as i64, 500 + i as i64);
    }
}

#[test]
fn comparator_accepts_equal_trees_and_detects_each_difference() {
    let t = tempdir();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    sample_tree(&a);
    sample_tree(&b);
    let o = CompareOpts::default().labels("a", "b");
    assert_eq!(
        compare_trees(&a, &b, &o),
        Vec::<String>::new(),
        "identical trees"
    );

    // Each mutation of a fresh copy of `b` must be reported with this text.
    type Mutation = fn(&Path);
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "extra file",
            |b| std::fs::write(b.join("new"), b"").unwrap(),
            "only in b: /new",
        ),
        (
            "missing file",
            |b| std::fs::remove_file(b.join("sub/b.bin")).unwrap(),
            "only in a: /sub/b.bin",
        ),
        (
            "renamed (case)",
            |b| std::fs::rename(b.join("a.txt"), b.join("A.txt")).unwrap(),
            "only in a: /a.txt",
        ),
        (
            "file became dir",
            |b| {
                std::fs::remove_file(b.join("solo")).unwrap();
                std::fs::create_dir(b.join("solo")).unwrap();
            },
            "file type differs: /solo",
        ),
        (
            "file became symlink",
            |b| {
                std::fs::remove_file(b.join("solo")).unwrap();
                std::os::unix::fs::symlink("h1", b.join("solo")).unwrap();
            },
            "file type differs: /solo",
        ),
        (
            "size",
            |b| std::fs::write(b.join("sub/b.bin"), vec![1u8; 3001]).unwrap(),
            "size differs: /sub/b.bin",
        ),
        (
            "content",
            |b| {
                let mut v = vec![1u8; 3000];
                v[2999] = 2;
                std::fs::write(b.join("sub/b.bin"), v).unwrap();
                set_mtime(&b.join("sub/b.bin"), 1_000_001, 501);
            },
            "content differs: /sub/b.bin: first differing byte at offset 2999",
        ),
        (
            "hard link broken",
            |b| {
                std::fs::remove_file(b.join("sub/h2")).unwrap();
                std::fs::write(b.join("sub/h2"), b"linked").unwrap();
                set_mtime(&b.join("sub/h2"), 1_000_002, 502);
                set_mtime(&b.join("sub"), 1_000_006, 506);
            },
            "hard-link grouping differs at /h1",
        ),
        (
            "hard link added",
            |b| {
                std::fs::remove_file(b.join("solo")).unwrap();
                std::fs::hard_link(b.join("h1"), b.join("solo")).unwrap();
            },
            "hard-link grouping differs",
        ),
        (
            "symlink target",
            |b| {
                std::fs::remove_file(b.join("ln")).unwrap();
                std::os::unix::fs::symlink("solo", b.join("ln")).unwrap();
                set_mtime(&b.join("ln"), 1_000_004, 504);
            },
            "symlink target differs: /ln",
        ),
        (
            "absolute symlink outside the root",
            |b| {
                std::fs::remove_file(b.join("abs-in")).unwrap();
                std::os::unix::fs::symlink("/sub", b.join("abs-in")).unwrap();
                set_mtime(&b.join("abs-in"), 1_000_005, 505);
            },
            "symlink target differs: /abs-in: a=\"<ROOT>/sub\" b=\"/sub\"",
        ),
        (
            "file mtime (1 ns)",
            |b| set_mtime(&b.join("a.txt"), 1_000_000, 501),
            "mtime differs: /a.txt",
        ),
        (
            "dir mtime",
            |b| set_mtime(&b.join("sub"), 1_000_000, 0),
            "mtime differs: /sub",
        ),
        ("root mtime", |b| set_mtime(b, 5, 0), "mtime differs: /:"),
        (
            "symlink mtime",
            |b| set_mtime(&b.join("ln"), 5, 0),
            "mtime differs: /ln",
        ),
        (
            "xattr value",
            |b| set_user_xattr(&b.join("a.txt"), "user.stream", b"other"),
            "user xattrs differ: /a.txt",
        ),
        (
            "xattr added",
            |b| set_user_xattr(&b.join("sub/b.bin"), "user.x", b""),
            "user xattrs differ: /sub/b.bin",
        ),
    ];
    for (what, mutate, expect) in cases {
        let b2 = t.path().join(format!("b-{}", what.replace(' ', "_")));
        sample_tree(&b2);
        mutate(&b2);
        let d = compare_trees(&a, &b2, &o);
        assert!(
            d.iter().any(|l| l.contains(expect)),
            "mutation {what:?}: expected a difference containing {expect:?}, got {d:#?}"
        );
    }

    // Options switch checks off.
    let b3 = t.path().join("b3");
    sample_tree(&b3);
    set_mtime(&b3.join("a.txt"), 1_000_000, 599); // same 100 ns unit as 500
    set_user_xattr(&b3.join("a.txt"), "user.stream", b"x");
    let lax = CompareOpts {
        xattrs: false,
        mtime_granularity_ns: 100,
        ..o.clone()
    };
    assert_eq!(compare_trees(&a, &b3, &lax), Vec::<String>::new());
    let ign = CompareOpts {
        ignore: vec!["sub".into()],
        ..o.clone()
    };
    let b4 = t.path().join("b4");
    sample_tree(&b4);
    std::fs::write(b4.join("sub/zzz"), b"").unwrap();
    let d = compare_trees(&a, &b4, &ign);
    assert!(
        d.iter().all(|l| !l.contains("/sub/zzz")),
        "ignored path reported: {d:?}"
    );
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `wimfs apply WIM IMAGE DIR [--ref PART...]` into `jail/out`; afterwards
/// nothing but `out` may exist in `jail` (nothing written outside DIR).
fn wimfs_apply_jailed(
    wim: &Path,
    image: Option<&str>,
    jail: &Path,
    refs: &[PathBuf],
) -> (PathBuf, Out) {
    std::fs::create_dir_all(jail).unwrap();
    let out = jail.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut args: Vec<std::ffi::OsString> = vec!["apply".into(), wim.into()];
    if let Some(i) = image {
        args.push(i.into());
    }
    args.push(out.clone().into());
    for r in refs {
        args.push("--ref".into());
        args.push(r.into());
    }
    let o = wimfs(&args);
    let extra: Vec<String> = std::fs::read_dir(jail)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "out")
        .collect();
    assert!(
        extra.is_empty(),
        "wimfs apply wrote outside DIR: {extra:?} in {}\n{}",
        jail.display(),
        o.describe()
    );
    (out, o)
}

fn refs_for(fx: &Path, rel: &str) -> Vec<PathBuf> {
    if rel == "wimlib/Split.swm" {
        vec![fx.join("wimlib/Split2.swm")]
    } else {
        Vec::new()
    }
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// Every image of every fixture: where wimlib applies it, wimfs must give
/// the identical tree; where wimlib refuses (corrupt data, cycles), wimfs
/// must fail cleanly too.
#[test]
fn fixtures_apply_like_wimlib() {
    let Some(fx) = fixtures() else { return };
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let mut cases = Vec::new();
    for rel in fixture_wims(&fx) {
        if rel == "wimlib/Split2.swm" {
            continue; // part 2 of Split.swm, used through --ref
        }
        let n = wimlib_image_names(&fx.join(&rel)).len();
        for i in 1..=n {
            cases.push((rel.clone(), i));
        }
    }
    assert!(
        cases.len() >= 40,
        "expected the whole fixture set, got {cases:?}"
    );
    check_all(
        cases,
        |(rel, i)| format!("{rel} image {i}"),
        |(rel, i)| {
            let wim = fx.join(rel);
            let refs = refs_for(&fx, rel);
            let t = tempdir();
            let want = t.path().join("wimlib");
            let w = wimlib_apply(&wim, &i.to_string(), &want, &refs);
            let (got, o) =
                wimfs_apply_jailed(&wim, Some(&i.to_string()), &t.path().join("jail"), &refs);
            if !w.ok() {
                assert_clean_failure(&o, &format!("wimfs apply {rel} (wimlib-imagex refuses it)"));
                return;
            }
            assert!(
                o.ok(),
                "wimfs apply failed where wimlib-imagex succeeds:\n{}",
                o.describe()
            );
            let mut opts = CompareOpts::default().labels("wimlib", "wimfs");
            // wimlib drops Linux xattrs without --unix-data; wimfs may keep them.
            if rel.contains("linux_xattrs_old") {
                opts.xattrs = false;
            }
            assert_trees_equal(&want, &got, &opts, &format!("{rel} image {i}"));
        },
    );
}

/// ImageX's WIMs hold exactly the source files beside them.
#[test]
fn imagex_fixtures_equal_their_sources() {
    let Some(fx) = fixtures() else { return };
    let opts = CompareOpts {
        mtime: false,
        ..CompareOpts::default().labels("source", "wimfs")
    };
    let mut cases = Vec::new();
    for n in 1..=5 {
        for k in 0..3 {
            cases.push((
                format!("imagex/simple/simple{n}.dat"),
                format!("imagex/simple/simple{n}.dat.{k}.wim"),
            ));
        }
    }
    for n in 1..=3 {
        for k in 0..3 {
            cases.push((
                format!("imagex/multiple-files/archive{n}.zip"),
                format!("imagex/multiple-files/archive{n}.zip.{k}.wim"),
            ));
        }
    }
    check_all(
        cases,
        |(_, w)| w.clone(),
        |(src, wim)| {
            let t = tempdir();
            let expect = t.path().join("expect");
            std::fs::create_dir_all(&expect).unwrap();
            let src = fx.join(src);
            if src.extension().is_some_and(|e| e == "zip") {
                unzip(&src, &expect);
            } else {
                // simple3.dat is empty: ImageX wrote a METADATA_ONLY WIM
                // whose one file has no data; it still applies as empty.
                std::fs::copy(&src, expect.join(src.file_name().unwrap())).unwrap();
            }
            let (got, o) =
                wimfs_apply_jailed(&fx.join(wim), Some("1"), &t.path().join("jail"), &[]);
            assert!(o.ok(), "wimfs apply failed:\n{}", o.describe());
            assert_trees_equal(&expect, &got, &opts, wim);
        },
    );
}

/// The malformed images of wimlib's test suite: failures must be clean,
/// the damaged-but-usable ones must apply with a warning and skip the bad
/// entries, and nothing may land outside DIR.
#[test]
fn wimlib_edge_cases() {
    let Some(fx) = fixtures() else { return };
    let edge = fx.join("wimlib-edge");
    for (name, want_fail, keywords) in [
        (
            "corrupted_file_1.wim",
            true,
            &["sha", "hash", "digest", "corrupt", "mismatch"][..],
        ),
        (
            "corrupted_file_2.wim",
            true,
            &["decompress", "compressed", "lzx", "corrupt", "invalid"][..],
        ),
        (
            "cyclic.wim",
            true,
            &["cycl", "loop", "deep", "metadata", "invalid", "corrupt"][..],
        ),
        ("dotdot.wim", false, &["warn", ".."][..]),
        ("duplicate_names.wim", false, &["warn", "duplicate"][..]),
    ] {
        let t = tempdir();
        let (out, o) = wimfs_apply_jailed(&edge.join(name), Some("1"), &t.path().join("jail"), &[]);
        let all = o.all_output().to_lowercase();
        if want_fail {
            assert_clean_failure(&o, name);
        } else {
            assert!(
                o.ok(),
                "{name}: wimfs apply must succeed (skipping the bad entries):\n{}",
                o.describe()
            );
            let want = t.path().join("wimlib");
            assert!(wimlib_apply(&edge.join(name), "1", &want, &[]).ok());
            assert_trees_equal(
                &want,
                &out,
                &CompareOpts::default().labels("wimlib", "wimfs"),
                name,
            );
        }
        assert!(
            keywords.iter().any(|k| all.contains(k)),
            "{name}: expected the output to mention one of {keywords:?}:\n{}",
            o.describe()
        );
    }
}

/// The split WIM without its second part must fail cleanly (a blob is
/// missing), not crash.
#[test]
fn split_wim_without_ref_fails_cleanly() {
    let Some(fx) = fixtures() else { return };
    let t = tempdir();
    let (_, o) = wimfs_apply_jailed(
        &fx.join("wimlib/Split.swm"),
        Some("1"),
        &t.path().join("jail"),
        &[],
    );
    assert_clean_failure(&o, "apply Split.swm without --ref Split2.swm");
}

// ---------------------------------------------------------------------------
// Generated WIMs
// ---------------------------------------------------------------------------

struct Source {
    dir: PathBuf,
    info: SourceInfo,
}

static SOURCE: Lazy<Source> = Lazy::new();

fn source() -> &'static Source {
    SOURCE.get(|| {
        let dir = shared_dir("apply-src").join("src");
        std::fs::create_dir_all(&dir).unwrap();
        let info = make_source_tree(&dir);
        Source { dir, info }
    })
}

/// Capture the shared source tree with `extra`, apply it with wimlib and
/// wimfs: identical trees, and both equal to the source (mtimes at 100 ns).
fn generated_case(label: &str, extra: &[&str]) {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let src = source();
    assert!(src.info.files.len() > 20);
    let t = tempdir();
    let wim = t.path().join(format!("{label}.wim"));
    wimlib_capture(&src.dir, &wim, extra);
    let want = t.path().join("wimlib");
    let w = wimlib_apply(&wim, "1", &want, &[]);
    assert!(w.ok(), "{}", w.describe());
    let (got, o) = wimfs_apply_jailed(&wim, Some("1"), &t.path().join("jail"), &[]);
    assert!(
        o.ok(),
        "wimfs apply of generated {label} WIM failed:\n{}",
        o.describe()
    );
    // The oracle itself must reproduce the source, or the test proves nothing.
    let vs_src = CompareOpts {
        mtime_granularity_ns: 100,
        ..CompareOpts::default().labels("source", "wimlib")
    };
    assert_trees_equal(
        &src.dir,
        &want,
        &vs_src,
        &format!("{label}: wimlib vs source (oracle sanity)"),
    );
    assert_trees_equal(
        &want,
        &got,
        &CompareOpts::default().labels("wimlib", "wimfs"),
        label,
    );
    let vs_src = CompareOpts {
        labels: ("source".into(), "wimfs".into()),
        ..vs_src
    };
    assert_trees_equal(
        &src.dir,
        &got,
        &vs_src,
        &format!("{label}: source vs wimfs"),
    );
}

macro_rules! generated_tests {
    ($($name:ident => $label:expr,)*) => {$(
        #[test]
        fn $name() {
            let (l, extra) = CAPTURE_VARIANTS.iter().find(|(l, _)| *l == $label).unwrap();
            generated_case(l, extra);
        }
    )*};
}

generated_tests! {
    generated_none => "none",
    generated_xpress => "xpress",
    generated_xpress_4k => "xpress-4k",
    generated_xpress_64k => "xpress-64k",
    generated_lzx => "lzx",
    generated_lzx_2m => "lzx-2m",
    generated_lzms => "lzms",
    generated_lzms_1m => "lzms-1m",
    generated_solid_lzms => "solid",
    generated_solid_lzms_1m => "solid-1m",
    generated_solid_xpress => "solid-xpress",
    generated_lzx_integrity => "lzx-integrity",
}

/// Several images in one WIM (appended), each applied by index and by name.
#[test]
fn generated_multi_image_by_index_and_name() {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let t = tempdir();
    let wim = t.path().join("multi.wim");
    let s1 = t.path().join("s1");
    let s2 = t.path().join("s2");
    std::fs::create_dir_all(s1.join("d")).unwrap();
    std::fs::write(s1.join("d/one.txt"), b"first image").unwrap();
    std::fs::create_dir_all(&s2).unwrap();
    std::fs::write(s2.join("two.txt"), vec![b'2'; 100_000]).unwrap();
    std::fs::write(s2.join("shared.txt"), b"first image").unwrap();
    wimlib_capture(&s1, &wim, &["First Image", "--compress=LZX"]);
    run_ok(
        std::process::Command::new("wimlib-imagex")
            .arg("append")
            .arg(&s2)
            .arg(&wim)
            .arg("Second"),
    );
    for (sel, src) in [
        ("1", &s1),
        ("2", &s2),
        ("First Image", &s1),
        ("Second", &s2),
    ] {
        let j = t.path().join(format!("jail-{sel}"));
        let (got, o) = wimfs_apply_jailed(&wim, Some(sel), &j, &[]);
        assert!(o.ok(), "apply image {sel:?}:\n{}", o.describe());
        let opts = CompareOpts {
            mtime_granularity_ns: 100,
            root_mtime: false,
            ..CompareOpts::default()
        };
        assert_trees_equal(
            src,
            &got,
            &opts.labels("source", "wimfs"),
            &format!("image {sel}"),
        );
    }
}

/// An uncompressed size over 4 GiB (sparse source, mostly zeros): offsets
/// and sizes past 32 bits. Takes about a minute (4.5 GiB written and
/// read back), so it runs only when asked (`WIMFS_SLOW_TESTS=1
/// scripts/test.sh`, or `cargo test -- --ignored`).
#[test]
#[ignore = "slow (4.5 GiB written and read back): WIMFS_SLOW_TESTS=1 scripts/test.sh runs it"]
fn generated_file_over_4gib() {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let t = tempdir();
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let len = (4u64 << 30) + 300_000_123;
    let islands = make_sparse_file(&src.join("huge.bin"), len);
    std::fs::write(src.join("after.txt"), b"a file after the huge one").unwrap();
    let wim = t.path().join("huge.wim");
    wimlib_capture(&src, &wim, &["--compress=XPRESS"]);
    let (got, o) = wimfs_apply_jailed(&wim, Some("1"), &t.path().join("jail"), &[]);
    assert!(o.ok(), "{}", o.describe());
    let opts = CompareOpts {
        mtime_granularity_ns: 100,
        ..CompareOpts::default()
    };
    assert_trees_equal(&src, &got, &opts.labels("source", "wimfs"), "huge file");
    let _ = islands;
}

// ---------------------------------------------------------------------------
// NTFS-sourced WIM: streams, reparse points, links, ACLs, short names
// ---------------------------------------------------------------------------

static NTFS: Lazy<Option<NtfsWim>> = Lazy::new();

fn ntfs_wim() -> Option<&'static NtfsWim> {
    NTFS.get(|| build_ntfs_wim(&shared_dir("apply-ntfs"), &[]))
        .as_ref()
}

#[test]
fn ntfs_wim_apply_like_wimlib_and_source() {
    let Some(n) = ntfs_wim() else { return };
    let t = tempdir();
    let want = t.path().join("wimlib");
    let w = wimlib_apply(&n.wim, "1", &want, &[]);
    assert!(w.ok(), "{}", w.describe());
    let (got, o) = wimfs_apply_jailed(&n.wim, Some("1"), &t.path().join("jail"), &[]);
    assert!(
        o.ok(),
        "wimfs apply of the NTFS-sourced WIM failed:\n{}",
        o.describe()
    );
    let mut problems = Vec::new();
    // Everything wimlib produces (wimlib ignores named streams: no xattrs).
    let opts = CompareOpts {
        xattrs: false,
        ..CompareOpts::default().labels("wimlib", "wimfs")
    };
    problems.extend(compare_trees(&want, &got, &opts));
    // Sanity of the oracle and of the builder.
    for (rel, data) in &n.files {
        match std::fs::read(want.join(rel)) {
            Ok(d) if &d == data => {}
            _ => problems.push(format!(
                "ORACLE/BUILDER: wimlib's {rel} differs from what was written"
            )),
        }
        match std::fs::read(got.join(rel)) {
            Ok(d) if &d == data => {}
            Ok(d) => problems.push(format!(
                "wimfs: /{rel}: {} bytes, expected {} (content differs)",
                d.len(),
                data.len()
            )),
            Err(e) => problems.push(format!("wimfs: /{rel}: {e}")),
        }
    }
    // Named data streams as user.NAME xattrs, exactly these and no others.
    let mut expect: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    // An ADS larger than the target filesystem lets an xattr be (ext4 without
    // ea_inode: one block) cannot be applied; wimfs must say so instead.
    let probe = t.path().join("xattr-probe");
    std::fs::write(&probe, b"").unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    for (rel, name, data) in &n.ads {
        let fits = xattr_fits(&probe, data.len());
        if !fits {
            if !stderr.contains(&format!("user.{name}")) {
                problems.push(format!("/{rel}:{name}: does not fit in an xattr here, and wimfs did not warn:\n{stderr}"));
            }
            continue;
        }
        expect
            .entry(rel.clone())
            .or_default()
            .insert(format!("user.{name}"), data.clone());
    }
    let mut all = Vec::new();
    walk(&got, "", &mut all);
    for rel in all {
        let have = user_xattrs(&got.join(&rel));
        let want_x = expect.remove(&rel).unwrap_or_default();
        if have != want_x {
            let f = |m: &BTreeMap<String, Vec<u8>>| {
                m.iter()
                    .map(|(k, v)| format!("{k}({} bytes)", v.len()))
                    .collect::<Vec<_>>()
            };
            problems.push(format!(
                "ADS xattrs of /{rel}: expected {:?}, wimfs has {:?}",
                f(&want_x),
                f(&have)
            ));
        }
    }
    for rel in expect.keys() {
        problems.push(format!("ADS: /{rel} missing from wimfs output"));
    }
    // Reparse points -> symlinks, with the fix-up to the extraction dir.
    let root = got.canonicalize().unwrap();
    for (rel, target) in &n.symlinks {
        let want_t = target.replace("<ROOT>", root.to_str().unwrap());
        match std::fs::read_link(got.join(rel)) {
            Ok(t) if t == Path::new(&want_t) => {}
            Ok(t) => problems.push(format!(
                "symlink /{rel}: wimfs -> {t:?}, expected {want_t:?}"
            )),
            Err(e) => problems.push(format!(
                "symlink /{rel}: not a symlink in wimfs output ({e})"
            )),
        }
    }
    // Timestamps set on the NTFS volume.
    for (rel, (s, ns)) in &n.mtimes {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::symlink_metadata(got.join(rel)).unwrap();
        if (md.mtime(), md.mtime_nsec()) != (*s, *ns) {
            problems.push(format!(
                "mtime of /{rel}: wimfs {}.{:09}, expected {s}.{ns:09}",
                md.mtime(),
                md.mtime_nsec()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "NTFS-sourced WIM: {} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

fn walk(root: &Path, rel: &str, out: &mut Vec<String>) {
    out.push(rel.to_string());
    let d = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    if std::fs::symlink_metadata(&d)
        .map(|m| m.is_dir())
        .unwrap_or(false)
    {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            walk(
                root,
                &if rel.is_empty() {
                    n
                } else {
                    format!("{rel}/{n}")
                },
                out,
            );
        }
    }
}

/// Can this filesystem hold an xattr value of `len` bytes?
fn xattr_fits(probe: &std::path::Path, len: usize) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(probe.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new("user.wimfs-probe").unwrap();
    let v = vec![0u8; len];
    // SAFETY: valid C strings and buffer.
    let r = unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), v.as_ptr() as *const _, v.len(), 0) };
    r == 0
}
