//! The layering rule, checked on the source: arrows point down only
//! (codec/io/sys -> error -> wim -> cache/image/stream/reparse -> node ->
//! overlay -> vfs -> ntvfs/commit/apply/verify -> session -> platform ->
//! cli), and OS calls (`libc::`) live in `src/sys`. An upward import or a
//! new file calling the OS directly fails this test with the file and the
//! import named.
//!
//! The imports that break the rule today are listed in `KNOWN_UPWARD` and
//! `KNOWN_OS_CALLS`, each with the issue that removes it: the list may only
//! shrink (an entry that no longer occurs fails too, so it gets deleted).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Rank of each top-level module: a module may use only modules of a lower
/// rank (or its own).
const LAYERS: &[(&str, u32)] = &[
    ("codec", 0),
    ("io", 0),
    ("sys", 0),
    ("time", 0),
    ("nt", 0),
    ("error", 1),
    ("wim", 2),
    ("cache", 3),
    ("image", 3),
    ("stream", 3),
    ("reparse", 3),
    ("node", 4),
    ("newimage", 4),
    ("overlay", 5),
    ("vfs", 6),
    ("ntvfs", 7),
    ("commit", 7),
    ("apply", 7),
    ("verify", 7),
    ("session", 8),
    ("platform", 9),
    ("cli", 10),
];

/// Upward imports that exist today (none since issue 9 moved the commit's
/// input types to `newimage`); the list may only shrink.
const KNOWN_UPWARD: &[(&str, &str)] = &[];

/// Files that still make OS calls outside `src/sys` (issue 9 moves them).
const KNOWN_OS_CALLS: &[&str] = &[];

fn rank(m: &str) -> Option<u32> {
    LAYERS.iter().find(|(n, _)| *n == m).map(|(_, r)| *r)
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a source file belongs to.
fn module_of(rel: &str) -> Option<String> {
    if rel.starts_with("platform/") {
        return Some("platform".into());
    }
    let r = rel.strip_prefix("src/")?;
    let first = r.split('/').next()?;
    let m = first.strip_suffix(".rs").unwrap_or(first);
    Some(m.to_string())
}

/// Code lines only: comment lines (`//`, `///`, `//!`) say what a module
/// is not allowed to use as often as what it uses.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.trim_start().starts_with("//"))
}

/// `crate::NAME` and `wimfs::NAME` (the binary's path to the library).
fn imports(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    for prefix in ["crate::", "wimfs::"] {
        let mut rest = line;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().next_back();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn arrows_point_down_and_os_calls_live_in_sys() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rs_files(&root.join("src"), &mut files);
    rs_files(&root.join("platform"), &mut files);
    files.sort();
    let mut upward = BTreeSet::new();
    let mut problems = Vec::new();
    let mut os_files = BTreeSet::new();
    for f in &files {
        let rel = f.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let Some(m) = module_of(&rel) else { continue };
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in code_lines(&text).enumerate() {
            if line.contains("libc::") && !rel.starts_with("src/sys/") {
                os_files.insert(rel.clone());
            }
            let Some(mine) = rank(&m) else { continue };
            for dep in imports(line) {
                if dep == m {
                    continue;
                }
                let Some(theirs) = rank(&dep) else { continue };
                if theirs >= mine {
                    if KNOWN_UPWARD.contains(&(m.as_str(), dep.as_str())) {
                        upward.insert((m.clone(), dep.clone()));
                    } else {
                        problems.push(format!(
                            "{rel} (code line {}): `{m}` uses `{dep}`, which is not below it",
                            n + 1
                        ));
                    }
                }
            }
        }
    }
    for (a, b) in KNOWN_UPWARD {
        if !upward.contains(&(a.to_string(), b.to_string())) {
            problems.push(format!(
                "`{a}` no longer uses `{b}`: delete the pair from KNOWN_UPWARD"
            ));
        }
    }
    for f in &os_files {
        if !KNOWN_OS_CALLS.contains(&f.as_str()) {
            problems.push(format!(
                "{f} calls libc directly: OS calls belong in src/sys (unix.rs / windows.rs)"
            ));
        }
    }
    for f in KNOWN_OS_CALLS {
        if !os_files.contains(*f) {
            problems.push(format!(
                "{f} no longer calls libc: delete it from KNOWN_OS_CALLS"
            ));
        }
    }
    for m in files
        .iter()
        .filter_map(|f| module_of(&f.strip_prefix(root).unwrap().to_string_lossy()))
    {
        if rank(&m).is_none() && !["lib", "main"].contains(&m.as_str()) {
            problems.push(format!(
                "module `{m}` has no layer: add it to LAYERS in tests/layering.rs"
            ));
        }
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "layering:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_checker_sees_an_upward_import() {
    assert_eq!(imports("use crate::vfs::Attr;"), vec!["vfs"]);
    assert_eq!(
        imports("    x: wimfs::commit::Foo, crate::wim::X"),
        vec!["wim", "commit"]
    );
    assert!(imports("use mycrate::vfs;").is_empty());
    assert_eq!(module_of("src/codec/lzx.rs").as_deref(), Some("codec"));
    assert_eq!(module_of("src/verify.rs").as_deref(), Some("verify"));
    assert_eq!(
        module_of("platform/linux/mod.rs").as_deref(),
        Some("platform")
    );
    assert!(rank("codec").unwrap() < rank("vfs").unwrap());
}
