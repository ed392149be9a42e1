//! 7-Zip (`7zz`) as a second, independent WIM reader.

use super::*;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::Path;

/// What 7-Zip's own WIM reader (`7zz l -slt`) sees in one image: a second
/// implementation besides wimlib, so a WIM both accept is not merely
/// "wimlib-compatible".
///
/// Compared: every path (relative, `/`-separated, the root itself is not
/// listed), the byte size of every regular file, which paths are
/// directories (7-Zip lists empty directories too) and which are reparse
/// points (symlinks; their 7-Zip "size" is the reparse data length, which
/// says nothing about the link target, so only their presence counts).
/// Named data streams are listed apart (`Alternate Stream = +`) and kept
/// out of these maps.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SevenZipImage {
    pub files: BTreeMap<String, u64>,
    pub dirs: BTreeSet<String>,
    pub links: BTreeSet<String>,
}

impl SevenZipImage {
    /// The same view of a directory on disk (e.g. the tree a WIM was
    /// captured from): regular files with their lengths, directories,
    /// symlinks.
    pub fn of_tree(root: &Path) -> SevenZipImage {
        fn walk(root: &Path, rel: &str, out: &mut SevenZipImage) {
            let d = if rel.is_empty() {
                root.to_path_buf()
            } else {
                root.join(rel)
            };
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let r = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let ft = e.file_type().unwrap();
                if ft.is_symlink() {
                    out.links.insert(r);
                } else if ft.is_dir() {
                    walk(root, &r, out);
                    out.dirs.insert(r);
                } else {
                    out.files.insert(r, e.metadata().unwrap().len());
                }
            }
        }
        let mut out = SevenZipImage::default();
        walk(root, "", &mut out);
        out
    }

    /// Differences from `want`, one line each (empty when equal).
    pub fn diff(&self, want: &SevenZipImage) -> Vec<String> {
        let mut d = Vec::new();
        for (p, s) in &want.files {
            match self.files.get(p) {
                None => d.push(format!("file {p:?} ({s} bytes) not listed by 7zz")),
                Some(g) if g != s => {
                    d.push(format!("file {p:?}: 7zz says {g} bytes, expected {s}"))
                }
                _ => {}
            }
        }
        for (p, s) in &self.files {
            if !want.files.contains_key(p) {
                d.push(format!("7zz lists an unexpected file {p:?} ({s} bytes)"));
            }
        }
        for (kind, g, w) in [
            ("directory", &self.dirs, &want.dirs),
            ("link", &self.links, &want.links),
        ] {
            for p in w.difference(g) {
                d.push(format!("{kind} {p:?} not listed by 7zz"));
            }
            for p in g.difference(w) {
                d.push(format!("7zz lists an unexpected {kind} {p:?}"));
            }
        }
        d
    }
}

/// Run `7zz t` (every stream decompressed and checked against its SHA-1;
/// must say "Everything is Ok") and `7zz l -slt` on `wim`, and return what
/// each image holds, in image order. With several images 7-Zip puts each
/// under a directory named by its index (`1/…`, `2/…`) and adds the XML
/// data as a `[1].xml` entry (checked with 7-Zip 26.02; with one image
/// neither appears); those are stripped here, so each
/// returned map is relative to its image's root. `None` when 7zz is
/// missing (the skip is recorded).
pub fn sevenzip_images(wim: &Path) -> Option<Vec<SevenZipImage>> {
    if !require(&["7zz"]) {
        return None;
    }
    let t = run(&mut cmd("7zz", [OsStr::new("t"), wim.as_os_str()]));
    assert!(
        t.ok() && t.stdout_str().contains("Everything is Ok"),
        "`7zz t {}` does not accept the WIM:\n{}",
        wim.display(),
        t.describe()
    );
    let l = run(&mut cmd(
        "7zz",
        [OsStr::new("l"), OsStr::new("-slt"), wim.as_os_str()],
    ));
    assert!(l.ok(), "`7zz l -slt {}`:\n{}", wim.display(), l.describe());
    let text = l.stdout_str();
    let (head, body) = text
        .split_once("\n----------\n")
        .unwrap_or_else(|| panic!("no entry list in `7zz l -slt`:\n{text}"));
    let images: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Images = "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `Images = N` in `7zz l -slt`:\n{head}"));
    let mut out = vec![SevenZipImage::default(); images];
    for block in body.split("\n\n") {
        let field = |k: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(" = "))
                .map(str::to_string)
        };
        let Some(path) = field("Path") else { continue };
        if field("Alternate Stream").as_deref() == Some("+") {
            continue;
        }
        let (idx, rel) = if images > 1 {
            if path.starts_with('[') && path.ends_with("].xml") {
                continue;
            }
            match path.split_once('/') {
                Some((i, r)) => (i.parse::<usize>().ok(), r.to_string()),
                // The per-image directory itself.
                None if path
                    .parse::<usize>()
                    .is_ok_and(|i| (1..=images).contains(&i)) =>
                {
                    continue
                }
                None => (None, path.clone()),
            }
        } else {
            (Some(1), path.clone())
        };
        let img = match idx {
            Some(i) if (1..=images).contains(&i) => &mut out[i - 1],
            _ => panic!(
                "7zz lists {path:?} outside the {images} image directories of {}",
                wim.display()
            ),
        };
        let attrs = field("Attributes").unwrap_or_default();
        let attrs = attrs.split(' ').next().unwrap_or("");
        if attrs.contains('L') {
            img.links.insert(rel);
        } else if field("Folder").as_deref() == Some("+") {
            img.dirs.insert(rel);
        } else {
            let size = field("Size")
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no size for {path:?} in `7zz l -slt`:\n{block}"));
            img.files.insert(rel, size);
        }
    }
    Some(out)
}

/// Assert that 7-Zip tests `wim` clean and that its image `image` (1-based)
/// holds exactly `want` (see [`SevenZipImage`] for what is compared).
pub fn assert_sevenzip_image(wim: &Path, image: usize, want: &SevenZipImage) {
    let Some(imgs) = sevenzip_images(wim) else {
        return;
    };
    assert!(
        (1..=imgs.len()).contains(&image),
        "7zz sees {} image(s) in {}, wanted image {image}",
        imgs.len(),
        wim.display()
    );
    let d = imgs[image - 1].diff(want);
    assert!(
        d.is_empty(),
        "7zz's view of {} image {image} differs:\n  {}",
        wim.display(),
        d.join("\n  ")
    );
}
