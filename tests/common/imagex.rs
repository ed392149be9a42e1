//! `wimlib-imagex` as the oracle: capture, apply, verify, dir, info
//! (header fields, blob locations) and the raw blob table of a WIM.

use super::*;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The compression settings every generated-WIM test goes through:
/// (label, extra `wimlib-imagex capture` arguments).
pub const CAPTURE_VARIANTS: &[(&str, &[&str])] = &[
    ("none", &["--compress=none"]),
    ("xpress", &["--compress=XPRESS"]),
    ("xpress-4k", &["--compress=XPRESS", "--chunk-size=4096"]),
    ("xpress-64k", &["--compress=XPRESS", "--chunk-size=65536"]),
    ("lzx", &["--compress=LZX"]),
    ("lzx-2m", &["--compress=LZX", "--chunk-size=2097152"]),
    ("lzms", &["--compress=LZMS"]),
    ("lzms-1m", &["--compress=LZMS", "--chunk-size=1048576"]),
    ("solid", &["--solid"]),
    ("solid-1m", &["--solid", "--solid-chunk-size=1048576"]),
    (
        "solid-xpress",
        &[
            "--solid",
            "--solid-compress=XPRESS",
            "--solid-chunk-size=65536",
        ],
    ),
    ("lzx-integrity", &["--compress=LZX", "--check"]),
];

/// `wimlib-imagex capture SRC WIM [EXTRA...]`, panicking on failure.
/// `extra` takes e.g. `--compress=LZX`, `--solid`, `--chunk-size=N`, `--check`.
pub fn wimlib_capture(src: &Path, wim: &Path, extra: &[&str]) {
    let mut c = Command::new("wimlib-imagex");
    c.arg("capture").arg(src).arg(wim).args(extra);
    run_ok(&mut c);
}

/// `wimlib-imagex apply WIM IMAGE DIR [--ref=PART...]`.
pub fn wimlib_apply(wim: &Path, image: &str, dir: &Path, refs: &[PathBuf]) -> Out {
    let mut c = Command::new("wimlib-imagex");
    c.arg("apply").arg(wim).arg(image).arg(dir);
    for r in refs {
        let mut a = OsString::from("--ref=");
        a.push(r);
        c.arg(a);
    }
    run(&mut c)
}

/// `wimlib-imagex verify WIM [--ref=PART...]`.
pub fn wimlib_verify(wim: &Path, refs: &[PathBuf]) -> Out {
    let mut c = Command::new("wimlib-imagex");
    c.arg("verify").arg(wim);
    for r in refs {
        let mut a = OsString::from("--ref=");
        a.push(r);
        c.arg(a);
    }
    run(&mut c)
}

/// Image names from `wimlib-imagex info WIM`, in index order.
pub fn wimlib_image_names(wim: &Path) -> Vec<String> {
    let o = run_ok(Command::new("wimlib-imagex").arg("info").arg(wim));
    let s = o.stdout_str();
    let count: usize = s
        .lines()
        .find_map(|l| l.strip_prefix("Image Count:"))
        .map(|v| v.trim().parse().unwrap())
        .expect("Image Count in wimlib-imagex info");
    let names: Vec<String> = s
        .lines()
        .filter_map(|l| l.strip_prefix("Name:"))
        .map(|n| n.trim().to_string())
        .collect();
    assert_eq!(names.len(), count, "wimlib-imagex info output:\n{s}");
    names
}

/// Full paths listed by `wimlib-imagex dir WIM IMAGE [--path=P]`.
pub fn wimlib_dir(wim: &Path, image: &str, refs: &[PathBuf], path: Option<&str>) -> Vec<String> {
    let mut c = Command::new("wimlib-imagex");
    c.arg("dir").arg(wim).arg(image);
    if let Some(p) = path {
        c.arg(format!("--path={p}"));
    }
    for r in refs {
        let mut a = OsString::from("--ref=");
        a.push(r);
        c.arg(a);
    }
    let o = run_ok(&mut c);
    o.stdout_str()
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// One field from `wimlib-imagex info --header WIM` (e.g. "Blob Table Offset").
pub fn wimlib_header_field(wim: &Path, field: &str) -> u64 {
    let o = run_ok(
        Command::new("wimlib-imagex")
            .arg("info")
            .arg("--header")
            .arg(wim),
    );
    let s = o.stdout_str();
    for l in s.lines() {
        if let Some((k, v)) = l.split_once('=') {
            if k.trim() == field {
                let v = v.trim();
                return if let Some(h) = v.strip_prefix("0x") {
                    u64::from_str_radix(h, 16).unwrap()
                } else {
                    v.parse().unwrap()
                };
            }
        }
    }
    panic!("no header field {field:?} in:\n{s}");
}

/// Where a file's unnamed stream is stored in the WIM, from
/// `wimlib-imagex dir --detailed`: (offset, stored size) of its resource
/// (for a blob in a solid resource: the whole solid resource).
pub fn wimlib_blob_location(wim: &Path, image: &str, path: &str) -> (u64, u64) {
    let o = run_ok(
        Command::new("wimlib-imagex")
            .args(["dir"])
            .arg(wim)
            .arg(image)
            .arg(format!("--path={path}"))
            .arg("--detailed"),
    );
    let s = o.stdout_str();
    let field = |name: &str| -> Option<String> {
        s.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    };
    let first_num = |v: &str| -> u64 { v.split_whitespace().next().unwrap().parse().unwrap() };
    if let Some(solid) = field("Solid resource") {
        // "488894 => 222704 bytes @ offset 208"
        let w: Vec<&str> = solid.split_whitespace().collect();
        return (w[w.len() - 1].parse().unwrap(), w[2].parse().unwrap());
    }
    let off = field("Offset in WIM").unwrap_or_else(|| panic!("no offset in:\n{s}"));
    let size = field("Compressed size").unwrap_or_else(|| panic!("no size in:\n{s}"));
    (first_num(&off), first_num(&size))
}

/// One entry of a WIM's blob table (read raw from the file).
#[derive(Debug, Clone)]
pub struct BlobEntry {
    /// Byte offset of the entry itself in the WIM file.
    pub entry_offset: u64,
    pub stored_size: u64,
    pub flags: u8,
    pub offset: u64,
    pub original_size: u64,
    pub hash: [u8; 20],
}

/// Parse the (uncompressed) blob table of a standalone WIM.
pub fn blob_table(wim: &Path) -> Vec<BlobEntry> {
    let data = std::fs::read(wim).unwrap();
    let off = wimlib_header_field(wim, "Blob Table Offset") as usize;
    let size = wimlib_header_field(wim, "Blob Table Size") as usize;
    let le = |b: &[u8]| b.iter().rev().fold(0u64, |a, &x| (a << 8) | x as u64);
    data[off..off + size]
        .chunks_exact(50)
        .enumerate()
        .map(|(i, e)| BlobEntry {
            entry_offset: (off + i * 50) as u64,
            stored_size: le(&e[0..7]),
            flags: e[7],
            offset: le(&e[8..16]),
            original_size: le(&e[16..24]),
            hash: e[30..50].try_into().unwrap(),
        })
        .collect()
}

/// `wimlib-imagex dir WIM 1 --detailed` as path -> field -> value; the
/// fields of a named stream are keyed "stream NAME: FIELD".
pub fn wimlib_dir_detailed(
    wim: &Path,
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> {
    use std::collections::BTreeMap;
    let o = run_ok(
        Command::new("wimlib-imagex")
            .arg("dir")
            .arg(wim)
            .args(["1", "--detailed"]),
    );
    let mut out = BTreeMap::new();
    let mut cur: Option<(String, BTreeMap<String, String>)> = None;
    let mut prefix = String::new();
    for line in o.stdout_str().lines() {
        if line.starts_with("-----") {
            out.extend(cur.take());
            prefix.clear();
            continue;
        }
        if let Some(n) = line.trim().strip_prefix("Named data stream \"") {
            prefix = format!("stream {}: ", n.trim_end_matches("\":"));
            continue;
        }
        if line.trim() == "Unnamed data stream:" {
            prefix.clear();
            continue;
        }
        let Some((k, v)) = line.split_once(" = ") else {
            continue;
        };
        let (k, v) = (k.trim().to_string(), v.trim().to_string());
        if k == "Full Path" {
            out.extend(cur.take());
            cur = Some((v.trim_matches('"').to_string(), BTreeMap::new()));
        } else if let Some((_, m)) = cur.as_mut() {
            m.entry(format!("{prefix}{k}")).or_insert(v);
        }
    }
    out.extend(cur.take());
    out
}

/// How `wimlib-imagex dir` prints a FILETIME (seconds, UTC).
pub fn wimlib_time(t: u64) -> String {
    let o = run_ok(Command::new("date").args([
        "-u",
        "-d",
        &format!("@{}", (t / 10_000_000) as i64 - 11_644_473_600),
        "+%a %b %d %H:%M:%S %Y UTC",
    ]));
    o.stdout_str().trim().to_string()
}
