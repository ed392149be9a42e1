//! `wimfs info`, `dir` and `cat` against `wimlib-imagex` and known sources,
//! and bad command lines: always a non-zero exit with a message, no panic.
mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
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

/// The `Key: value` lines of an `info` text: the WIM part (everything
/// before the first `Index:` line) and one map per image (from each
/// `Index:` line on). Values are trimmed; lines without a colon are left
/// out.
type Fields = BTreeMap<String, String>;
fn info_blocks(text: &str) -> (Fields, Vec<Fields>) {
    let mut wim = Fields::new();
    let mut images: Vec<Fields> = Vec::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_string(), v.trim().to_string());
        if k == "Index" {
            images.push(Fields::new());
        }
        match images.last_mut() {
            Some(img) => img.insert(k, v),
            None => wim.insert(k, v),
        };
    }
    (wim, images)
}

/// wimlib's time (`Fri Feb 16 17:50:11 2018 UTC`) as `2018-02-16 17:50:11`.
fn wimlib_time(s: &str) -> String {
    let w: Vec<&str> = s.split_whitespace().collect();
    assert!(w.len() == 6 && w[5] == "UTC", "odd wimlib time {s:?}");
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = months.iter().position(|m| *m == w[1]).expect("month") + 1;
    let d: u32 = w[2].parse().expect("day");
    format!("{}-{m:02}-{d:02} {}", w[4], w[3])
}

/// A FILETIME (100 ns since 1601) as `YYYY-MM-DD HH:MM:SS` UTC, computed
/// here independently of the CLI (days-to-civil on the proleptic
/// Gregorian calendar).
fn filetime_str(ft: u64) -> String {
    let secs = (ft / 10_000_000) as i64 - 11_644_473_600;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Image fields wimlib prints in another format (times: compared after
/// conversion) or that wimfs does not show (WIMBoot).
const IMAGE_FIELDS_APART: &[&str] = &[
    "Creation Time",
    "Last Modification Time",
    "WIMBoot compatible",
];

/// One image of `wimfs info` against the same image of `wimlib-imagex
/// info`: every field wimlib prints must be there with the same value
/// (index, name, description, directory/file counts, total and hard-link
/// bytes, the Windows fields when present), and both times to the second.
fn compare_image(what: &str, got: &Fields, want: &Fields, problems: &mut Vec<String>) {
    for (k, w) in want {
        if IMAGE_FIELDS_APART.contains(&k.as_str()) {
            continue;
        }
        match got.get(k) {
            Some(g) if g == w => {}
            g => problems.push(format!("{what}: {k}: wimfs {g:?}, wimlib {w:?}")),
        }
    }
    for k in ["Creation Time", "Last Modification Time"] {
        if let Some(w) = want.get(k) {
            let w = wimlib_time(w);
            match got.get(k) {
                Some(g) if g.starts_with(&w) && g.ends_with("UTC") => {}
                g => problems.push(format!("{what}: {k}: wimfs {g:?}, wimlib {w:?}")),
            }
        }
    }
}

/// The WIM part of `wimfs info` against wimlib's, field by field: path,
/// GUID, version, image count, compression, chunk size (only when
/// compressed: wimlib shows the header field, which ImageX leaves 0 in
/// uncompressed WIMs, wimfs the effective 32768), part number, boot index,
/// integrity / RP_FIX / METADATA_ONLY flags. wimlib's "Size" is not the
/// file size (it is smaller for every fixture), so wimfs's is checked
/// against the file's length instead.
fn compare_wim(what: &str, wim: &Path, got: &Fields, want: &Fields, problems: &mut Vec<String>) {
    let mut eq = |k: &str, g: Option<String>, w: Option<String>| {
        if g.is_none() || g != w {
            problems.push(format!("{what}: {k}: wimfs {g:?}, wimlib {w:?}"));
        }
    };
    let f = |m: &Fields, k: &str| m.get(k).cloned();
    for k in [
        "Path",
        "Image Count",
        "Compression",
        "Part Number",
        "Boot Index",
    ] {
        eq(k, f(got, k), f(want, k));
    }
    let hex = |s: Option<String>| s.map(|s| s.trim_start_matches("0x").to_lowercase());
    eq("GUID", hex(f(got, "GUID")), hex(f(want, "GUID")));
    eq(
        "Version",
        f(got, "Version").and_then(|v| {
            u64::from_str_radix(v.trim_start_matches("0x"), 16)
                .ok()
                .map(|v| v.to_string())
        }),
        f(want, "Version"),
    );
    if f(want, "Compression").as_deref() != Some("None") {
        eq("Chunk Size", f(got, "Chunk Size"), f(want, "Chunk Size"));
    }
    let len = std::fs::metadata(wim).unwrap().len();
    eq("Size", f(got, "Size"), Some(format!("{len} bytes")));
    let wattrs = f(want, "Attributes").unwrap_or_default();
    let gattrs = f(got, "Attributes").unwrap_or_default();
    let gflags: BTreeSet<&str> = gattrs.split(',').map(str::trim).collect();
    eq(
        "Integrity",
        f(got, "Integrity Info"),
        Some(
            if wattrs.contains("Integrity info") {
                "yes"
            } else {
                "no"
            }
            .into(),
        ),
    );
    for (wl, flag) in [
        ("Relative path junction", "RP_FIX"),
        ("Metadata only", "METADATA_ONLY"),
    ] {
        eq(
            flag,
            Some(gflags.contains(flag).to_string()),
            Some(wattrs.contains(wl).to_string()),
        );
    }
}

/// The JSON of `wimfs info --json` against wimlib's text, field by field.
fn compare_json(
    what: &str,
    v: &Value,
    want: &Fields,
    wimgs: &[Fields],
    problems: &mut Vec<String>,
) {
    let mut eq = |k: &str, g: Option<String>, w: Option<String>| {
        if g.is_none() || g != w {
            problems.push(format!("{what} --json: {k}: wimfs {g:?}, wimlib {w:?}"));
        }
    };
    let num = |x: &Value| x.as_u64().map(|n| n.to_string());
    let w = |k: &str| want.get(k).cloned();
    let bytes = |k: &str| {
        want.get(k)
            .map(|s| s.trim_end_matches(" bytes").to_string())
    };
    eq("image_count", num(&v["image_count"]), w("Image Count"));
    eq("boot_index", num(&v["boot_index"]), w("Boot Index"));
    eq(
        "compression",
        v["compression"].as_str().map(str::to_string),
        w("Compression"),
    );
    if w("Compression").as_deref() != Some("None") {
        eq("chunk_size", num(&v["chunk_size"]), bytes("Chunk Size"));
    }
    eq(
        "guid",
        v["guid"].as_str().map(str::to_lowercase),
        w("GUID").map(|g| g.trim_start_matches("0x").to_lowercase()),
    );
    let imgs = v["images"].as_array().cloned().unwrap_or_default();
    eq(
        "images.len",
        Some(imgs.len().to_string()),
        Some(wimgs.len().to_string()),
    );
    for (j, wi) in imgs.iter().zip(wimgs) {
        let idx = wi.get("Index").cloned();
        let s = |k: &str| match &j[k] {
            Value::Null => Some(String::new()),
            x => x.as_str().map(str::to_string),
        };
        eq("index", num(&j["index"]), idx.clone());
        eq("name", s("name"), wi.get("Name").cloned());
        eq(
            "description",
            s("description"),
            wi.get("Description").cloned(),
        );
        for (jk, wk) in [
            ("dir_count", "Directory Count"),
            ("file_count", "File Count"),
            ("total_bytes", "Total Bytes"),
            ("hard_link_bytes", "Hard Link Bytes"),
        ] {
            // null: the XML lacks the element (7-Zip's WIMs have no
            // HARDLINKBYTES); wimlib shows that as 0.
            let g = if j[jk].is_null() {
                Some("0".into())
            } else {
                num(&j[jk])
            };
            eq(jk, g, wi.get(wk).cloned());
        }
        for (jk, wk) in [
            ("creation_time", "Creation Time"),
            ("last_modification_time", "Last Modification Time"),
        ] {
            eq(
                jk,
                j[jk].as_u64().map(filetime_str),
                wi.get(wk).map(|t| wimlib_time(t)),
            );
        }
    }
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
            let mut problems = Vec::new();
            let w = run_ok(&mut cmd("wimlib-imagex", [Path::new("info"), &wim]));
            let (wwim, wimgs) = info_blocks(&w.stdout_str());
            assert!(!wimgs.is_empty() || wwim.get("Image Count").is_some_and(|c| c == "0"));
            // Text: the WIM fields and every image, field by field.
            let o = wimfs_ok([Path::new("info"), &wim]);
            let (gwim, gimgs) = info_blocks(&o.stdout_str());
            compare_wim(rel, &wim, &gwim, &wwim, &mut problems);
            if gimgs.len() != wimgs.len() {
                problems.push(format!(
                    "{} image blocks, wimlib {}",
                    gimgs.len(),
                    wimgs.len()
                ));
            }
            for (i, (g, w)) in gimgs.iter().zip(&wimgs).enumerate() {
                compare_image(&format!("{rel} image {}", i + 1), g, w, &mut problems);
            }
            // JSON: the same facts.
            let o = wimfs_ok([Path::new("info"), &wim, Path::new("--json")]);
            let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
                panic!("`wimfs info --json` is not JSON ({e}):\n{}", o.describe())
            });
            compare_json(rel, &v, &wwim, &wimgs, &mut problems);
            // One image by index and by name: that image's block, the
            // same as wimlib's `info WIM IMAGE`.
            for (i, wi) in wimgs.iter().enumerate() {
                let idx = (i + 1).to_string();
                let w = run_ok(&mut cmd(
                    "wimlib-imagex",
                    [Path::new("info"), &wim, Path::new(&idx)],
                ));
                let (_, want) = info_blocks(&w.stdout_str());
                assert_eq!(want.len(), 1, "wimlib info {rel} {idx}:\n{}", w.describe());
                let mut sel = vec![Path::new(&idx).to_path_buf()];
                if let Some(n) = wi.get("Name").filter(|n| !n.is_empty()) {
                    sel.push(PathBuf::from(n));
                }
                for s in sel {
                    let o = wimfs_ok([Path::new("info"), &wim, &s]);
                    let (_, got) = info_blocks(&o.stdout_str());
                    let what = format!("`wimfs info {rel} {}`", s.display());
                    if got.len() != 1 {
                        problems.push(format!(
                            "{what}: {} image blocks:\n{}",
                            got.len(),
                            o.stdout_str()
                        ));
                        continue;
                    }
                    compare_image(&what, &got[0], &want[0], &mut problems);
                }
            }
            assert!(
                problems.is_empty(),
                "`wimfs info` differs from `wimlib-imagex info`:\n  {}",
                problems.join("\n  ")
            );
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
            let (d, _) = detailed_diffs(&wim, &idx);
            assert!(
                d.is_empty(),
                "`wimfs dir {rel} {i} --detailed` vs wimlib's:\n  {}",
                d.join("\n  ")
            );
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

/// One entry of a `dir --detailed` listing: its `Key = value` fields and
/// its streams (kind -> (size, SHA-1 hex)).
#[derive(Default, Debug)]
struct Detail {
    fields: BTreeMap<String, String>,
    streams: BTreeMap<String, (u64, String)>,
}

/// Entries of `wimfs dir --detailed` by full path. wimfs prints a stream as
/// `  KIND  size N  sha1 HEX`.
fn wimfs_details(text: &str) -> BTreeMap<String, Detail> {
    let mut out = BTreeMap::new();
    for block in text.split("\n---") {
        let mut d = Detail::default();
        for line in block.lines() {
            if let Some((k, v)) = line.split_once(" = ") {
                d.fields.insert(k.trim().into(), v.trim().into());
            } else if let Some((kind, rest)) = line.split_once(" size ") {
                let w: Vec<&str> = rest.split_whitespace().collect();
                if let [n, "sha1", h] = w[..] {
                    d.streams
                        .insert(kind.trim().into(), (n.parse().unwrap(), h.to_lowercase()));
                }
            }
        }
        if let Some(p) = d.fields.get("Full Path").cloned() {
            out.insert(p, d);
        }
    }
    out
}

/// Entries of `wimlib-imagex dir --detailed` by full path. wimlib prints
/// a stream as a tab-indented `KIND stream:` line followed by `Hash = 0x…`
/// and `Uncompressed size = N bytes`; its kinds are mapped to wimfs's
/// names (unnamed data -> `data`, reparse point -> `reparse data`).
fn wimlib_details(text: &str) -> BTreeMap<String, Detail> {
    let mut out = BTreeMap::new();
    for block in text.split("\n---") {
        let mut d = Detail::default();
        let mut kind: Option<String> = None;
        let mut hash = String::new();
        for line in block.lines() {
            if line.starts_with('\t') && line.ends_with(':') {
                kind = match line.trim().trim_end_matches(':') {
                    "Unnamed data stream" => Some("data".into()),
                    "Reparse point stream" => Some("reparse data".into()),
                    _ => None,
                };
            } else if let Some((k, v)) = line.split_once(" = ") {
                let (k, v) = (k.trim(), v.trim());
                match (&kind, k) {
                    (Some(_), "Hash") => hash = v.trim_start_matches("0x").to_lowercase(),
                    (Some(kd), "Uncompressed size") => {
                        let n = v.trim_end_matches(" bytes").parse().unwrap();
                        d.streams.insert(kd.clone(), (n, hash.clone()));
                    }
                    (None, _) => {
                        d.fields.insert(k.into(), v.into());
                    }
                    _ => {}
                }
            }
        }
        if let Some(p) = d.fields.get("Full Path").cloned() {
            out.insert(p, d);
        }
    }
    out
}

/// `wimfs dir WIM IMAGE --detailed` against wimlib's, entry by entry: the
/// same paths; attributes (the hex value), short name, link count, reparse
/// tag, the three times to the second; the unnamed data stream and the
/// reparse data with the same size and SHA-1 (an empty stream may be left
/// out). Security and object IDs are shown differently and not compared.
/// Also returns how many non-empty streams were compared.
fn detailed_diffs(wim: &Path, image: &str) -> (Vec<String>, usize) {
    let w = run_ok(&mut cmd(
        "wimlib-imagex",
        [
            Path::new("dir"),
            wim,
            Path::new(image),
            Path::new("--detailed"),
        ],
    ));
    let o = wimfs_ok([
        Path::new("dir"),
        wim,
        Path::new(image),
        Path::new("--detailed"),
    ]);
    let want = wimlib_details(&w.stdout_str());
    let got = wimfs_details(&o.stdout_str());
    let mut d = Vec::new();
    let (wk, gk): (BTreeSet<&String>, BTreeSet<&String>) =
        (want.keys().collect(), got.keys().collect());
    for p in wk.symmetric_difference(&gk) {
        d.push(format!(
            "{p}: only in {}",
            if want.contains_key(*p) {
                "wimlib"
            } else {
                "wimfs"
            }
        ));
    }
    if want.is_empty() {
        d.push("wimlib lists no entries".into());
    }
    let mut compared = 0;
    let first =
        |s: Option<&String>| s.and_then(|s| s.split_whitespace().next().map(str::to_string));
    for (p, w) in &want {
        let Some(g) = got.get(p) else { continue };
        let mut eq = |k: &str, gv: Option<String>, wv: Option<String>| {
            if gv != wv {
                d.push(format!("{p}: {k}: wimfs {gv:?}, wimlib {wv:?}"));
            }
        };
        eq(
            "Attributes",
            first(g.fields.get("Attributes")),
            first(w.fields.get("Attributes")),
        );
        let sn = |m: &Detail| m.fields.get("Short Name").filter(|s| *s != "\"\"").cloned();
        eq("Short Name", sn(g), sn(w));
        eq(
            "Link Count",
            g.fields.get("Link Count").cloned(),
            w.fields.get("Link Count").cloned(),
        );
        eq(
            "Reparse Tag",
            g.fields.get("Reparse Tag").cloned(),
            w.fields.get("Reparse Tag").cloned(),
        );
        for k in ["Creation Time", "Last Write Time", "Last Access Time"] {
            let wv = w.fields.get(k).map(|t| wimlib_time(t));
            let gv = g.fields.get(k).and_then(|t| {
                wv.as_ref()
                    .filter(|wv| t.starts_with(wv.as_str()))
                    .cloned()
                    .or(Some(t.clone()))
            });
            eq(k, gv, wv);
        }
        for (kind, ws) in &w.streams {
            let gs = g.streams.get(kind);
            if gs.is_none() && ws.0 == 0 {
                continue;
            }
            compared += usize::from(ws.0 > 0);
            eq(kind, gs.map(|s| format!("{s:?}")), Some(format!("{ws:?}")));
        }
    }
    (d, compared)
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
        let (d, n) = detailed_diffs(wim, "1");
        // 30-odd files with data, every one compared.
        assert!(n > 30, "only {n} streams compared in {}", wim.display());
        assert!(
            d.is_empty(),
            "`wimfs dir {} 1 --detailed` vs wimlib's:\n  {}",
            wim.display(),
            d.join("\n  ")
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

/// `--help` names every subcommand and `--version` the crate version;
/// IMAGE may be left out of `apply` for a one-image WIM and may be a
/// name. Each result is compared with `wimlib-imagex apply` of image 1,
/// not with another wimfs run.
#[test]
fn help_and_optional_image() {
    let o = wimfs_ok(["--help"]);
    let help = o.stdout_str();
    for sub in [
        "info", "dir", "cat", "apply", "verify", "mount", "unmount", "mounts", "commit", "recover",
        "optimize", "export",
    ] {
        assert!(
            help.lines()
                .any(|l| l.split_whitespace().next() == Some(sub)),
            "`wimfs --help` does not list the {sub:?} command:\n{help}"
        );
    }
    let o = wimfs_ok(["--version"]);
    assert_eq!(
        o.stdout_str().trim(),
        format!("wimfs {}", env!("CARGO_PKG_VERSION")),
        "`wimfs --version`"
    );
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let g = generated();
    let t = tempdir();
    let want = t.path().join("wimlib");
    let w = wimlib_apply(&g.lzx, "1", &want, &[]);
    assert!(w.ok(), "{}", w.describe());
    // wimlib names a captured image after the source directory.
    assert_eq!(wimlib_image_names(&g.lzx), ["src"]);
    for (label, image) in [("no IMAGE", None), ("IMAGE src", Some("src"))] {
        let got = t.path().join(label.replace(' ', "-"));
        std::fs::create_dir_all(&got).unwrap();
        let mut args = vec![Path::new("apply"), g.lzx.as_path()];
        args.extend(image.map(Path::new));
        args.push(&got);
        wimfs_ok(args);
        assert_trees_equal(
            &want,
            &got,
            &CompareOpts::default().labels("wimlib image 1", label),
            &format!("wimfs apply with {label}"),
        );
    }
}

/// A reader that goes away (`wimfs dir ... | head`) ends wimfs quietly,
/// as SIGPIPE ends other tools: no panic message, status 141.
#[test]
fn closed_stdout_ends_quietly() {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let t = tempdir();
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..2000 {
        std::fs::write(src.join(format!("file-{i:04}.txt")), b"x").unwrap();
    }
    let wim = t.path().join("t.wim");
    wimlib_capture(&src, &wim, &[]);
    let mut child = cmd(wimfs_bin(), ["dir".as_ref(), wim.as_os_str(), "1".as_ref()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before wimfs has opened the WIM.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked"),
        "wimfs panicked on a closed stdout:\n{err}"
    );
    assert_eq!(out.status.code(), Some(141), "stderr: {err}");
    assert!(
        err.is_empty(),
        "a closed stdout is not an error to report: {err}"
    );
}
