//! The tree comparator: two directories compared name by name (kind,
//! size, content, mode, owner, timestamps, link targets, `user.*` xattrs),
//! every difference listed.

use super::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What to compare. Everything is on by default.
#[derive(Clone, Debug)]
pub struct CompareOpts {
    /// Names for the two sides in messages.
    pub labels: (String, String),
    pub contents: bool,
    pub hardlinks: bool,
    pub symlinks: bool,
    pub mtime: bool,
    /// Compare mtimes in units of this many ns (100 = NTFS/WIM precision,
    /// for a source tree vs an applied image).
    pub mtime_granularity_ns: i128,
    /// Also the mtime of the root directory itself.
    pub root_mtime: bool,
    /// Also directories' mtimes (not only files and symlinks).
    pub dir_mtime: bool,
    /// Also symlinks' own mtimes.
    pub symlink_mtime: bool,
    pub xattrs: bool,
    /// Relative paths (and everything below them) left out on both sides.
    pub ignore: Vec<String>,
}

impl Default for CompareOpts {
    fn default() -> Self {
        CompareOpts {
            labels: ("A".into(), "B".into()),
            contents: true,
            hardlinks: true,
            symlinks: true,
            mtime: true,
            mtime_granularity_ns: 1,
            root_mtime: true,
            dir_mtime: true,
            symlink_mtime: true,
            xattrs: true,
            ignore: Vec::new(),
        }
    }
}

impl CompareOpts {
    pub fn labels(mut self, a: &str, b: &str) -> Self {
        self.labels = (a.into(), b.into());
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Other(String),
}

#[derive(Debug, Clone)]
struct Entry {
    kind: Kind,
    size: u64,
    ino: (u64, u64),
    target: Option<String>,
    mtime: i128,
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// Normalise an absolute symlink target that points into the tree itself
/// (wimlib's reparse-point fix-up makes such links absolute to the
/// extraction dir): the tree's root becomes `<ROOT>`.
fn norm_target(t: &Path, roots: &[PathBuf]) -> String {
    for r in roots {
        if let Ok(rest) = t.strip_prefix(r) {
            return if rest.as_os_str().is_empty() {
                "<ROOT>".into()
            } else {
                format!("<ROOT>/{}", rest.to_string_lossy())
            };
        }
    }
    t.to_string_lossy().into_owned()
}

fn collect(root: &Path) -> Result<BTreeMap<String, Entry>, String> {
    let mut roots = vec![root.to_path_buf()];
    if let Ok(c) = root.canonicalize() {
        if c != root {
            roots.push(c);
        }
    }
    let mut out = BTreeMap::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let p = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let md = std::fs::symlink_metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let ft = md.file_type();
        let kind = if ft.is_file() {
            Kind::File
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else {
            Kind::Other(format!("{ft:?}"))
        };
        let target = if ft.is_symlink() {
            Some(norm_target(&std::fs::read_link(&p).unwrap(), &roots))
        } else {
            None
        };
        if ft.is_dir() {
            let rd = std::fs::read_dir(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                stack.push(if rel.is_empty() {
                    n
                } else {
                    format!("{rel}/{n}")
                });
            }
        }
        out.insert(
            rel,
            Entry {
                kind,
                size: if ft.is_file() { md.len() } else { 0 },
                ino: (md.dev(), md.ino()),
                target,
                mtime: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
                xattrs: user_xattrs(&p),
            },
        );
    }
    Ok(out)
}

fn show(rel: &str) -> String {
    format!("/{rel}")
}

/// First differing byte offset of two files of equal length, if any.
fn first_content_diff(a: &Path, b: &Path) -> std::io::Result<Option<u64>> {
    let mut fa = std::fs::File::open(a)?;
    let mut fb = std::fs::File::open(b)?;
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    let mut off = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            let i = ba[..na]
                .iter()
                .zip(&bb[..nb])
                .position(|(x, y)| x != y)
                .unwrap_or(na.min(nb));
            return Ok(Some(off + i as u64));
        }
        if na == 0 {
            return Ok(None);
        }
        off += na as u64;
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

fn fmt_time(ns: i128) -> String {
    format!(
        "{}.{:09}",
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000)
    )
}

/// Walk two trees and list every difference in names, file types, sizes,
/// contents, hard-link grouping, symlink targets, mtimes (ns) and `user.*`
/// xattrs, as readable lines. Empty means equal.
pub fn compare_trees(a: &Path, b: &Path, o: &CompareOpts) -> Vec<String> {
    let (la, lb) = (&o.labels.0, &o.labels.1);
    let mut diffs = Vec::new();
    let (ta, tb) = match (collect(a), collect(b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => return vec![format!("cannot walk trees: {e}")],
    };
    let ignored = |rel: &str| {
        o.ignore
            .iter()
            .any(|i| rel == i || rel.starts_with(&format!("{i}/")))
    };
    let keys: BTreeSet<&String> = ta.keys().chain(tb.keys()).filter(|k| !ignored(k)).collect();
    // Hard-link groups: for each inode, the sorted paths that share it.
    let groups = |t: &BTreeMap<String, Entry>| {
        let mut by_ino: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
        for (k, e) in t {
            if e.kind != Kind::Dir && !ignored(k) {
                by_ino.entry(e.ino).or_default().push(k.clone());
            }
        }
        let mut per_path = BTreeMap::new();
        for v in by_ino.into_values() {
            for k in &v {
                per_path.insert(k.clone(), v.clone());
            }
        }
        per_path
    };
    let (ga, gb) = (groups(&ta), groups(&tb));
    let mut reported_groups = BTreeSet::new();
    for k in keys {
        let (ea, eb) = match (ta.get(k), tb.get(k)) {
            (Some(x), Some(y)) => (x, y),
            (Some(x), None) => {
                diffs.push(format!("only in {la}: {} ({:?})", show(k), x.kind));
                continue;
            }
            (None, Some(y)) => {
                diffs.push(format!("only in {lb}: {} ({:?})", show(k), y.kind));
                continue;
            }
            (None, None) => unreachable!(),
        };
        if ea.kind != eb.kind {
            diffs.push(format!(
                "file type differs: {}: {la}={:?} {lb}={:?}",
                show(k),
                ea.kind,
                eb.kind
            ));
            continue;
        }
        if ea.kind == Kind::File {
            if ea.size != eb.size {
                diffs.push(format!(
                    "size differs: {}: {la}={} {lb}={}",
                    show(k),
                    ea.size,
                    eb.size
                ));
            } else if o.contents {
                match first_content_diff(&a.join(k), &b.join(k)) {
                    Ok(None) => {}
                    Ok(Some(off)) => diffs.push(format!(
                        "content differs: {}: first differing byte at offset {off} (size {})",
                        show(k),
                        ea.size
                    )),
                    Err(e) => diffs.push(format!("content unreadable: {}: {e}", show(k))),
                }
            }
            if o.hardlinks {
                let (x, y) = (&ga[k], &gb[k]);
                if x != y && reported_groups.insert((x.clone(), y.clone())) {
                    diffs.push(format!(
                        "hard-link grouping differs at {}: {la} links {:?}, {lb} links {:?}",
                        show(k),
                        x,
                        y
                    ));
                }
            }
        }
        if o.symlinks && ea.target != eb.target {
            diffs.push(format!(
                "symlink target differs: {}: {la}={:?} {lb}={:?}",
                show(k),
                ea.target.as_deref().unwrap_or(""),
                eb.target.as_deref().unwrap_or("")
            ));
        }
        let want_mtime = o.mtime
            && match ea.kind {
                Kind::Dir => {
                    if k.is_empty() {
                        o.root_mtime
                    } else {
                        o.dir_mtime
                    }
                }
                Kind::Symlink => o.symlink_mtime,
                _ => true,
            };
        if want_mtime {
            let g = o.mtime_granularity_ns.max(1);
            if ea.mtime.div_euclid(g) != eb.mtime.div_euclid(g) {
                diffs.push(format!(
                    "mtime differs: {}: {la}={} {lb}={} (delta {} ns)",
                    show(k),
                    fmt_time(ea.mtime),
                    fmt_time(eb.mtime),
                    eb.mtime - ea.mtime
                ));
            }
        }
        if o.xattrs && ea.xattrs != eb.xattrs {
            let fmt = |x: &BTreeMap<String, Vec<u8>>| {
                x.iter()
                    .map(|(n, v)| format!("{n}({} bytes)", v.len()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut detail = String::new();
            for (n, v) in &ea.xattrs {
                if let Some(w) = eb.xattrs.get(n) {
                    if v != w {
                        let _ = write!(detail, " [{n} values differ]");
                    }
                }
            }
            diffs.push(format!(
                "user xattrs differ: {}: {la}=[{}] {lb}=[{}]{detail}",
                show(k),
                fmt(&ea.xattrs),
                fmt(&eb.xattrs)
            ));
        }
    }
    diffs
}

/// Panic listing the differences (at most 60) when the trees differ.
pub fn assert_trees_equal(a: &Path, b: &Path, o: &CompareOpts, what: &str) {
    let d = compare_trees(a, b, o);
    if !d.is_empty() {
        let n = d.len();
        let shown: Vec<&String> = d.iter().take(60).collect();
        panic!(
            "{what}: {n} difference(s) between {} ({}) and {} ({}):\n  {}{}",
            o.labels.0,
            a.display(),
            o.labels.1,
            b.display(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  "),
            if n > 60 { "\n  ..." } else { "" }
        );
    }
}
