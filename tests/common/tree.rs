//! Generated source trees: an assorted tree to capture (every file kind,
//! names, timestamps, streams), sparse files, timestamps set exactly.

use super::*;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Set the timestamps (atime = mtime = `ns` since the epoch) of a path
/// without following symlinks.
pub fn set_mtime(p: &Path, secs: i64, nsec: i64) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let ts = [
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        },
    ];
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(
        r,
        0,
        "utimensat {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

/// What [`make_source_tree`] put where (relative paths with `/`).
#[derive(Default, Debug)]
pub struct SourceInfo {
    /// Regular files and their contents (every path of every hard link).
    pub files: BTreeMap<String, Vec<u8>>,
    /// Size of the largest file (to reason about chunk counts).
    pub largest: usize,
}

/// Fill `dir` (which must exist and be empty) with an assorted tree:
/// random, text, zeros, x86 code, a file spanning many chunks of any chunk
/// size used (3.5 MiB), sizes on chunk boundaries, an empty file, duplicate
/// contents, Unicode and odd names, nested and empty directories, hard
/// links, relative/absolute/dangling symlinks, and distinct nanosecond
/// mtimes everywhere. Deterministic.
pub fn make_source_tree(dir: &Path) -> SourceInfo {
    let mut rng = Rng::new(0x5EED);
    let mut info = SourceInfo::default();
    let add = |info: &mut SourceInfo, rel: &str, data: Vec<u8>| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &data).unwrap();
        info.largest = info.largest.max(data.len());
        info.files.insert(rel.to_string(), data);
    };
    add(&mut info, "random.bin", rng.bytes(100_000));
    add(&mut info, "text.txt", text_bytes(&mut rng, 300_000));
    add(&mut info, "zeros.bin", vec![0; 1 << 20]);
    add(&mut info, "code.x86", x86_bytes(&mut rng, 1_500_000));
    // Mixed content over 3.5 MiB: several chunks even at 2 MiB chunk size,
    // and more than one 1 MiB solid chunk.
    let mut big = Vec::new();
    while big.len() < 3_600_000 {
        let k = rng.below(4);
        let n = 20_000 + rng.below(200_000) as usize;
        big.extend(match k {
            0 => rng.bytes(n),
            1 => text_bytes(&mut rng, n),
            2 => vec![rng.below(256) as u8; n],
            _ => x86_bytes(&mut rng, n.min(1000)),
        });
    }
    add(&mut info, "big/multi-chunk.dat", big);
    add(&mut info, "empty", Vec::new());
    add(&mut info, "one-byte", vec![b'x']);
    for n in [
        4095usize, 4096, 4097, 32767, 32768, 32769, 65536, 131072, 131073,
    ] {
        let d = text_bytes(&mut rng, n);
        add(&mut info, &format!("sizes/{n}.txt"), d);
    }
    // Same content twice (one blob in the WIM, two files).
    let dup = rng.bytes(50_000);
    add(&mut info, "dup/a.bin", dup.clone());
    add(&mut info, "dup/b.bin", dup);
    add(
        &mut info,
        "names/ünïcødé ☃ file.txt",
        b"unicode name\n".to_vec(),
    );
    add(
        &mut info,
        "names/with space & (parens)",
        b"spaces\n".to_vec(),
    );
    add(&mut info, "names/UPPER.TXT", b"upper\n".to_vec());
    add(
        &mut info,
        "names/upper.txt",
        b"lower: differs only in case\n".to_vec(),
    );
    add(&mut info, "names/.hidden", b"dot file\n".to_vec());
    let mut deep = String::from("deep");
    for i in 0..12 {
        let _ = write!(deep, "/level{i}");
    }
    add(
        &mut info,
        &format!("{deep}/leaf.txt"),
        b"deep leaf\n".to_vec(),
    );
    std::fs::create_dir_all(dir.join("empty-dir")).unwrap();
    std::fs::create_dir_all(dir.join("nested/empty/inside")).unwrap();
    // Hard links: a group of three and a group of two.
    add(&mut info, "links/h1", text_bytes(&mut rng, 10_000));
    std::fs::hard_link(dir.join("links/h1"), dir.join("links/h2")).unwrap();
    std::fs::hard_link(dir.join("links/h1"), dir.join("names/h3-elsewhere")).unwrap();
    let h = info.files["links/h1"].clone();
    info.files.insert("links/h2".into(), h.clone());
    info.files.insert("names/h3-elsewhere".into(), h);
    add(&mut info, "links/g1", vec![7; 5000]);
    std::fs::hard_link(dir.join("links/g1"), dir.join("links/g2")).unwrap();
    info.files.insert("links/g2".into(), vec![7; 5000]);
    // Symlinks.
    let sl = |target: &str, link: &str| std::os::unix::fs::symlink(target, dir.join(link)).unwrap();
    sl("../text.txt", "links/rel-file");
    sl("../big", "links/rel-dir");
    sl("missing-target", "links/dangling");
    sl("/etc/hostname", "links/abs-outside");
    let inside = dir.canonicalize().unwrap().join("random.bin");
    sl(inside.to_str().unwrap(), "links/abs-inside");
    // mtimes: distinct, with nanoseconds (wimlib keeps 100 ns units).
    let mut all = Vec::new();
    walk_paths(dir, "", &mut all);
    // Children before parents so directory times stick.
    all.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    for (i, rel) in all.iter().enumerate() {
        let p = if rel.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(rel)
        };
        set_mtime(
            &p,
            1_000_000_000 + (i as i64) * 86_399,
            123_456_789 + i as i64 * 1000,
        );
    }
    set_mtime(dir, 1_500_000_000, 987_654_321);
    info
}

fn walk_paths(root: &Path, rel: &str, out: &mut Vec<String>) {
    let d = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if e.file_type().unwrap().is_dir() {
            walk_paths(root, &r, out);
        }
        out.push(r);
    }
}

/// Make a sparse file of `len` bytes with a few data islands (fast to
/// create; its uncompressed size can exceed 4 GiB).
pub fn make_sparse_file(p: &Path, len: u64) -> Vec<(u64, Vec<u8>)> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::File::create(p).unwrap();
    f.set_len(len).unwrap();
    let mut rng = Rng::new(42);
    let mut islands = Vec::new();
    for off in [
        0,
        1 << 20,
        (1u64 << 32) - 3,
        (1u64 << 32) + 12345,
        len - 1000,
    ] {
        if off + 1000 <= len {
            let d = rng.bytes(1000);
            f.seek(SeekFrom::Start(off)).unwrap();
            f.write_all(&d).unwrap();
            islands.push((off, d));
        }
    }
    islands
}
