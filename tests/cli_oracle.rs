//! `wimfs info`, `dir` and `cat` against `wimlib-imagex` and known sources,
//! and bad command lines: always a non-zero exit with a message, no panic.
mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------
// info
// ---------------------------------------------------------------------------

/// Every fixture a plain `info` must work on (part 2 of the split set has
/// no metadata of its own and is left out).
fn info_fixtures(fx: &Path) -> Vec<String> {
    fixture_wims(fx)
        .into_iter()
        .filter(|r| r != "wimlib/Split2.swm")
        .collect()
}

/// Image names found in `wimfs info --json` output: the `name`-like
/// strings of the objects in an array under an `images`-like key, and a
/// count under an `image_count`-like key if there is one. The schema is
/// the CLI's own; this only assumes those words.
fn json_images(v: &Value) -> (Option<Vec<String>>, Option<u64>) {
    let mut names = None;
    let mut count = None;
    fn visit(v: &Value, names: &mut Option<Vec<String>>, count: &mut Option<u64>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let kl = k.to_lowercase();
                    if kl.contains("image") && kl.contains("count") {
                        if let Some(n) = x.as_u64() {
                            count.get_or_insert(n);
                        }
                    }
                    if kl.contains("images") {
                        if let Value::Array(a) = x {
                            let ns: Vec<String> = a
                                .iter()
                                .filter_map(|e| {
                                    e.as_object()?.iter().find_map(|(k, v)| {
                                        (k.eq_ignore_ascii_case("name"))
                                            .then(|| v.as_str().unwrap_or("").to_string())
                                    })
                                })
                                .collect();
                            if ns.len() == a.len() && names.is_none() {
                                *names = Some(ns);
                            }
                        }
                    }
                    visit(x, names, count);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| visit(x, names, count)),
            _ => {}
        }
    }
    visit(v, &mut names, &mut count);
    (names, count)
}

#[test]
fn info_matches_wimlib() {
    let Some(fx) = fixtures() else { return };
    if !require(&["wimlib-imagex"]) {
        return;
    }
    check_all(
        info_fixtures(&fx),
        |r| r.clone(),
        |rel| {
            let wim = fx.join(rel);
            let names = wimlib_image_names(&wim);
            // Text: every image name and the count appear.
            let o = wimfs_ok([Path::new("info"), &wim]);
            let text = o.stdout_str();
            for n in &names {
                assert!(
                    text.contains(n.as_str()),
                    "image name {n:?} missing from `wimfs info`:\n{text}"
                );
            }
            assert!(
                text.contains(&names.len().to_string()),
                "image count {} missing from `wimfs info`:\n{text}",
                names.len()
            );
            // JSON: parses, and holds the same names in order.
            let o = wimfs_ok([Path::new("info"), &wim, Path::new("--json")]);
            let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
                panic!("`wimfs info --json` is not JSON ({e}):\n{}", o.describe())
            });
            let (jn, jc) = json_images(&v);
            let jn = jn.unwrap_or_else(|| panic!("no images array with names in:\n{v:#}"));
            assert_eq!(jn, names, "image names in `wimfs info --json`");
            if let Some(c) = jc {
                assert_eq!(
                    c as usize,
                    names.len(),
                    "image count in `wimfs info --json`"
                );
            }
            // One image by index and by name.
            for (i, n) in names.iter().enumerate() {
                let idx = (i + 1).to_string();
                let o = wimfs_ok([Path::new("info"), &wim, Path::new(&idx)]);
                assert!(
                    o.stdout_str().contains(n.as_str()),
                    "`wimfs info WIM {idx}` lacks {n:?}:\n{}",
                    o.describe()
                );
            }
        },
    );
}

// ---------------------------------------------------------------------------
// dir
// ---------------------------------------------------------------------------

/// wimfs's listing as a set of absolute paths (a leading `/` is added if
/// the CLI prints paths relative to the root).
fn listing(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .map(|l| l.trim_end_matches(['\r', '\n']))
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            if l.starts_with('/') {
                l.to_string()
            } else {
                format!("/{l}")
            }
        })
        .collect();
    v.sort();
    v
}

#[test]
fn dir_matches_wimlib() {
    let Some(fx) = fixtures() else { return };
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let mut cases = Vec::new();
    for rel in info_fixtures(&fx) {
        let n = wimlib_image_names(&fx.join(&rel)).len();
        cases.extend((1..=n).map(|i| (rel.clone(), i)));
    }
    check_all(
        cases,
        |(r, i)| format!("{r} image {i}"),
        |(rel, i)| {
            let wim = fx.join(rel);
            let idx = i.to_string();
            let w = run(&mut cmd(
                "wimlib-imagex",
                [Path::new("dir"), &wim, Path::new(&idx)],
            ));
            let o = wimfs([Path::new("dir"), &wim, Path::new(&idx)]);
            if !w.ok() {
                assert_clean_failure(&o, &format!("wimfs dir {rel} (wimlib-imagex fails)"));
                return;
            }
            assert!(o.ok(), "{}", o.describe());
            let mut want = listing(&w.stdout_str());
            let mut got = listing(&o.stdout_str());
            // Listing the root itself is optional.
            if !got.contains(&"/".to_string()) {
                want.retain(|p| p != "/");
            }
            got.dedup();
            want.dedup();
            assert_eq!(got, want, "`wimfs dir {rel} {i}` vs `wimlib-imagex dir`");
        },
    );
}

// ---------------------------------------------------------------------------
// Generated WIMs for dir/cat
// ---------------------------------------------------------------------------

struct Gen {
    src: PathBuf,
    info: SourceInfo,
    xpress: PathBuf,
    lzx: PathBuf,
    solid: PathBuf,
}

static GEN: Lazy<Gen> = Lazy::new();

fn generated() -> &'static Gen {
    GEN.get(|| {
        let d = shared_dir("cli-gen");
        let src = d.join("src");
        std::fs::create_dir_all(&src).unwrap();
        let info = make_source_tree(&src);
        let xpress = d.join("xpress.wim");
        let lzx = d.join("lzx.wim");
        let solid = d.join("solid.wim");
        wimlib_capture(&src, &xpress, &["--compress=XPRESS"]);
        wimlib_capture(&src, &lzx, &["--compress=LZX"]);
        wimlib_capture(&src, &solid, &["--solid"]);
        Gen {
            src,
            info,
            xpress,
            lzx,
            solid,
        }
    })
}

#[test]
fn dir_of_generated_wim_and_subpath() {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let g = generated();
    for wim in [&g.xpress, &g.lzx, &g.solid] {
        let want = wimlib_dir(wim, "1", &[], None);
        let o = wimfs_ok([Path::new("dir"), wim, Path::new("1")]);
        let mut want = listing(&want.join("\n"));
        let got = listing(&o.stdout_str());
        if !got.contains(&"/".to_string()) {
            want.retain(|p| p != "/");
        }
        assert_eq!(got, want, "dir {}", wim.display());
        for sub in ["/big", "/names", "/deep/level0/level1"] {
            let want = listing(&wimlib_dir(wim, "1", &[], Some(sub)).join("\n"));
            let o = wimfs_ok([Path::new("dir"), wim, Path::new("1"), Path::new(sub)]);
            let got = listing(&o.stdout_str());
            // Accept paths relative to the listed directory as well.
            let got_abs: Vec<String> = if got.iter().all(|p| p.starts_with(sub)) {
                got.clone()
            } else {
                let mut v: Vec<String> = got.iter().map(|p| format!("{sub}{p}")).collect();
                v.sort();
                v
            };
            let want_sub: Vec<String> =
                want.iter().filter(|p| p.as_str() != sub).cloned().collect();
            let got_sub: Vec<String> = got_abs
                .iter()
                .filter(|p| p.as_str() != sub)
                .cloned()
                .collect();
            assert_eq!(
                got_sub,
                want_sub,
                "`wimfs dir WIM 1 {sub}` vs wimlib --path={sub}:\n{}",
                o.describe()
            );
        }
        let o = wimfs_ok([
            Path::new("dir"),
            wim,
            Path::new("1"),
            Path::new("--detailed"),
        ]);
        assert!(
            o.stdout.len() > 1000,
            "--detailed output is suspiciously short:\n{}",
            o.describe()
        );
    }
}

#[test]
fn cat_matches_source() {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let g = generated();
    let picks = [
        "big/multi-chunk.dat",
        "code.x86",
        "zeros.bin",
        "empty",
        "one-byte",
        "sizes/32768.txt",
        "sizes/131073.txt",
        "dup/b.bin",
        "links/h2",
        "names/ünïcødé ☃ file.txt",
        "names/with space & (parens)",
        "deep/level0/level1/level2/level3/level4/level5/level6/level7/level8/level9/level10/level11/leaf.txt",
    ];
    check_all(
        picks
            .iter()
            .flat_map(|p| [(p, &g.xpress), (p, &g.lzx), (p, &g.solid)]),
        |(p, w)| format!("{} {p}", w.file_name().unwrap().to_string_lossy()),
        |(p, wim)| {
            let want = &g.info.files[**p];
            assert_eq!(&std::fs::read(g.src.join(p)).unwrap(), want);
            let o = wimfs_ok([
                Path::new("cat"),
                wim,
                Path::new("1"),
                Path::new(&format!("/{p}")),
            ]);
            assert!(
                &o.stdout == want,
                "`wimfs cat {p}`: {} bytes, expected {} (first difference at {:?})",
                o.stdout.len(),
                want.len(),
                o.stdout.iter().zip(want.iter()).position(|(a, b)| a != b)
            );
        },
    );
    let t = tempdir();
    for bad in ["/no/such/file", "/big", "/links/missing:stream"] {
        let o = wimfs([Path::new("cat"), &g.lzx, Path::new("1"), Path::new(bad)]);
        assert_clean_failure(&o, &format!("cat {bad}"));
    }
    drop(t);
}

#[test]
fn cat_imagex_fixtures() {
    let Some(fx) = fixtures() else { return };
    for n in 1..=5 {
        let want = std::fs::read(fx.join(format!("imagex/simple/simple{n}.dat"))).unwrap();
        for k in 0..3 {
            let wim = fx.join(format!("imagex/simple/simple{n}.dat.{k}.wim"));
            let o = wimfs_ok([
                Path::new("cat"),
                &wim,
                Path::new("1"),
                Path::new(&format!("/simple{n}.dat")),
            ]);
            assert!(
                o.stdout == want,
                "cat simple{n}.dat from {}: wrong bytes ({} vs {})",
                wim.display(),
                o.stdout.len(),
                want.len()
            );
        }
    }
}

#[test]
fn cat_named_streams_of_ntfs_wim() {
    let t = tempdir();
    let Some(n) = build_ntfs_wim(&t.path().join("ntfs"), &[]) else {
        return;
    };
    let mut problems = Vec::new();
    for (rel, name, data) in &n.ads {
        let spec = format!("/{rel}:{name}");
        let o = wimfs([Path::new("cat"), &n.wim, Path::new("1"), Path::new(&spec)]);
        if !o.ok() {
            problems.push(format!("cat {spec}: failed: {}", o.stderr_str().trim()));
        } else if &o.stdout != data {
            problems.push(format!(
                "cat {spec}: {} bytes, expected {}",
                o.stdout.len(),
                data.len()
            ));
        }
    }
    for (rel, data) in &n.files {
        let o = wimfs([
            Path::new("cat"),
            &n.wim,
            Path::new("1"),
            Path::new(&format!("/{rel}")),
        ]);
        if !o.ok() || &o.stdout != data {
            problems.push(format!(
                "cat /{rel}: wrong or failed: {}",
                o.stderr_str().trim()
            ));
        }
    }
    let o = wimfs([
        Path::new("cat"),
        &n.wim,
        Path::new("1"),
        Path::new("/hello.txt:no-such-stream"),
    ]);
    assert_no_panic(&o);
    if o.ok() {
        problems.push("cat /hello.txt:no-such-stream succeeded".into());
    }
    // --detailed mentions the streams.
    let o = wimfs([
        Path::new("dir"),
        &n.wim,
        Path::new("1"),
        Path::new("--detailed"),
    ]);
    for name in ["Zone.Identifier", "dirstream", "LONGFI~1.TXT"] {
        if !o.stdout_str().contains(name) {
            problems.push(format!("`dir --detailed` does not mention {name:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// Bad command lines
// ---------------------------------------------------------------------------

#[test]
fn bad_arguments_fail_cleanly() {
    let t = tempdir();
    let missing = t.path().join("missing.wim");
    let junk = t.path().join("junk.wim");
    std::fs::write(
        &junk,
        b"this is not a WIM file at all, just text that is long enough",
    )
    .unwrap();
    let out = t.path().join("out");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let mut cases: Vec<Vec<String>> = vec![
        vec![],
        vec!["no-such-command".into()],
        vec!["info".into()],
        vec!["info".into(), s(&missing)],
        vec!["info".into(), s(&junk)],
        vec!["info".into(), s(t.path())],
        vec!["dir".into(), s(&missing), "1".into()],
        vec!["dir".into(), s(&junk), "1".into()],
        vec!["cat".into(), s(&missing), "1".into(), "/x".into()],
        vec!["apply".into(), s(&missing), "1".into(), s(&out)],
        vec!["apply".into(), s(&junk), "1".into(), s(&out)],
        vec!["verify".into(), s(&missing)],
        vec!["verify".into(), s(&junk)],
    ];
    if require(&["wimlib-imagex"]) {
        let g = generated();
        let w = s(&g.lzx);
        for img in ["0", "2", "99", "-1", "4294967297", "no such image name", ""] {
            cases.push(vec!["info".into(), w.clone(), img.into()]);
            cases.push(vec!["dir".into(), w.clone(), img.into()]);
            cases.push(vec!["cat".into(), w.clone(), img.into(), "/empty".into()]);
            cases.push(vec!["apply".into(), w.clone(), img.into(), s(&out)]);
        }
        cases.push(vec!["cat".into(), w.clone(), "1".into()]);
        cases.push(vec![
            "dir".into(),
            w.clone(),
            "1".into(),
            "/no/such/dir".into(),
        ]);
        cases.push(vec![
            "verify".into(),
            w.clone(),
            "--ref".into(),
            s(&missing),
        ]);
    }
    if let Some(fx) = fixtures() {
        // More than one image: IMAGE is required.
        cases.push(vec![
            "apply".into(),
            s(&fx.join("wimlib/MultiImage.wim")),
            s(&out),
        ]);
    }
    let mut problems = Vec::new();
    for args in &cases {
        let o = wimfs(args);
        if o.ok() {
            problems.push(format!(
                "`wimfs {}` exited 0:\n{}",
                args.join(" "),
                o.describe()
            ));
        } else if o.stderr_str().trim().is_empty() {
            problems.push(format!(
                "`wimfs {}` failed without a message",
                args.join(" ")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} bad command line(s) mishandled:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn help_and_optional_image() {
    wimfs_ok(["--help"]);
    wimfs_ok(["--version"]);
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let g = generated();
    // One image: IMAGE may be left out; the result equals naming it.
    let t = tempdir();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    wimfs_ok([Path::new("apply"), &g.lzx, &a]);
    wimfs_ok([Path::new("apply"), &g.lzx, Path::new("1"), &b]);
    assert_trees_equal(
        &a,
        &b,
        &CompareOpts::default().labels("no IMAGE", "IMAGE 1"),
        "apply without IMAGE",
    );
    // By name (wimlib names a captured image after the source dir).
    let c = t.path().join("c");
    std::fs::create_dir_all(&c).unwrap();
    wimfs_ok([Path::new("apply"), &g.lzx, Path::new("src"), &c]);
    assert_trees_equal(
        &a,
        &c,
        &CompareOpts::default().labels("IMAGE 1", "IMAGE src"),
        "apply by name",
    );
    let names = BTreeSet::from(["src".to_string()]);
    assert_eq!(
        wimlib_image_names(&g.lzx)
            .into_iter()
            .collect::<BTreeSet<_>>(),
        names
    );
}
