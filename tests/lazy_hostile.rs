//! Hostile metadata against the lazy read path (`image::lazy`, what a
//! read-only mount decodes): crafted WIMs whose directory lists are
//! damaged, shared, misaligned or deep, and blob tables whose hashes all
//! fall in one bucket. Each must give a clear error for the part that is
//! bad, in bounded work (counted in metadata bytes read), never a panic,
//! a hang or a wrong answer for the rest of the image.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use wimfs::image::lazy::{Entry, LazyImage};
use wimfs::wim::blob_table::{self, BlobEntry};
use wimfs::wim::header::{resflags, Header, ResHdr, HEADER_SIZE, MAGIC, VERSION_DEFAULT};
use wimfs::wim::metadata::{self, attr, DentryRecord};
use wimfs::wim::{BlobLoc, Sha1, Wim};

/// The first window a child list is read with (`image::lazy`).
const FIRST_WINDOW: u64 = 16 << 10;

fn rec(parent: u32, name: &str, attributes: u32) -> DentryRecord {
    DentryRecord {
        parent,
        name: name.into(),
        attributes,
        security_id: -1,
        ..DentryRecord::default()
    }
}

/// An uncompressed one-image WIM: header, the metadata resource as given,
/// `blobs` (hash, bytes) as raw resources, optional XML, then the blob
/// table (`extra` entries appended to it as they are).
fn wim_bytes(
    meta: &[u8],
    xml: Option<&str>,
    blobs: &[(Sha1, Vec<u8>)],
    extra: &[BlobEntry],
) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_SIZE];
    let mut entries = Vec::new();
    let raw = |out: &mut Vec<u8>, data: &[u8], flags: u8| {
        let r = ResHdr {
            size_in_wim: data.len() as u64,
            flags,
            offset: out.len() as u64,
            uncompressed_size: data.len() as u64,
        };
        out.extend_from_slice(data);
        r
    };
    entries.push(BlobEntry {
        reshdr: raw(&mut out, meta, resflags::METADATA),
        part_number: 1,
        refcount: 1,
        hash: [0xAB; 20],
    });
    for (h, data) in blobs {
        entries.push(BlobEntry {
            reshdr: raw(&mut out, data, 0),
            part_number: 1,
            refcount: 1,
            hash: *h,
        });
    }
    let xml = xml.map(|x| {
        let mut b = vec![0xFF, 0xFE];
        for u in x.encode_utf16() {
            b.extend_from_slice(&u.to_le_bytes());
        }
        raw(&mut out, &b, 0)
    });
    entries.extend_from_slice(extra);
    let table = raw(&mut out, &blob_table::write(&entries), 0);
    let h = Header {
        magic: *MAGIC,
        version: VERSION_DEFAULT,
        flags: 0,
        chunk_size: 0,
        guid: [7; 16],
        part_number: 1,
        total_parts: 1,
        image_count: 1,
        blob_table: table,
        xml: xml.unwrap_or_default(),
        boot_metadata: ResHdr::default(),
        boot_index: 0,
        integrity: ResHdr::default(),
    };
    out[..HEADER_SIZE].copy_from_slice(&h.write());
    out
}

fn open(wim: Vec<u8>) -> LazyImage {
    let src: Arc<dyn wimfs::io::ReadAt> = Arc::new(wim);
    let w = Wim::from_source_lazy(Path::new("hostile.wim"), src).unwrap();
    LazyImage::open(Arc::new(w), 1).unwrap()
}

/// Offsets of the records of an (undamaged) metadata resource by name.
fn offsets(buf: &[u8]) -> HashMap<String, u64> {
    metadata::parse(buf)
        .unwrap()
        .dentries
        .into_iter()
        .map(|d| (d.name, d.offset))
        .collect()
}

/// Point the directory entry at `off` at the child list `list`.
fn set_list(buf: &mut [u8], off: u64, list: u64) {
    let o = off as usize + 16;
    buf[o..o + 8].copy_from_slice(&list.to_le_bytes());
}

fn list_of(buf: &[u8], off: u64) -> u64 {
    let o = off as usize + 16;
    u64::from_le_bytes(buf[o..o + 8].try_into().unwrap())
}

fn kid(img: &LazyImage, dir: &Entry, name: &str) -> Arc<Entry> {
    img.child(dir, name)
        .unwrap()
        .unwrap_or_else(|| panic!("no {name:?}"))
}

/// Hundreds of directories pointing at one damaged list, in a resource of
/// megabytes: each fails naming the damage after one window, instead of
/// widening its window to the resource's end (megabytes per directory:
/// quadratic over a walk).
#[test]
fn directories_pointing_at_a_damaged_list_fail_after_one_window() {
    const DIRS: usize = 300;
    let mut recs = vec![rec(0, "", attr::DIRECTORY)];
    let mut big = rec(0, "big", attr::ARCHIVE);
    // 2 MiB of 8-byte lengths 0x20 (too short for a directory entry).
    big.tagged
        .push((0x1234, 0x20u64.to_le_bytes().repeat(1 << 18)));
    recs.push(big);
    for i in 0..DIRS {
        recs.push(rec(0, &format!("d{i:03}"), attr::DIRECTORY));
    }
    let mut buf = metadata::write(&[], &recs);
    let at = offsets(&buf);
    // The tagged data of "big": after its 0x70-byte entry and the item's
    // 8-byte header.
    let bad = at["big"] + 0x70 + 8 + 8 * 16;
    for i in 0..DIRS {
        set_list(&mut buf, at[&format!("d{i:03}")], bad);
    }
    assert!(buf.len() > 2 << 20);
    let img = open(wim_bytes(&buf, None, &[], &[]));
    let root = img.root().clone();
    assert_eq!(img.children(&root).unwrap().kids.len(), DIRS + 1);
    let before = img.metadata_bytes_read();
    for i in 0..DIRS {
        let d = kid(&img, &root, &format!("d{i:03}"));
        let err = img.children(&d).err().unwrap().to_string();
        assert!(
            err.contains(&format!("/d{i:03}")) && err.contains("invalid length 32"),
            "{err}"
        );
    }
    let read = img.metadata_bytes_read() - before;
    assert!(
        read <= DIRS as u64 * FIRST_WINDOW,
        "{read} bytes read for {DIRS} damaged directories"
    );
    // The rest of the image is as it was.
    assert!(kid(&img, &root, "big").inode.xattrs.is_none());
    assert!(img.lookup("/big").unwrap().is_some());
}

/// Directories pointing into another directory's list (each at a later
/// entry of it), visited from the last: the first is a list like any
/// other, every later one a cycle found at its first window, before
/// anything of it is decoded (not after decoding the shared entries again
/// for each).
#[test]
fn directories_sharing_a_list_are_refused_at_the_first_shared_entry() {
    const FILES: usize = 2000;
    const DIRS: usize = 200;
    let mut recs = vec![rec(0, "", attr::DIRECTORY), rec(0, "big", attr::DIRECTORY)];
    for i in 0..FILES {
        recs.push(rec(1, &format!("file {i:04}"), attr::ARCHIVE));
    }
    for i in 0..DIRS {
        recs.push(rec(0, &format!("s{i:03}"), attr::DIRECTORY));
    }
    let mut buf = metadata::write(&[], &recs);
    let at = offsets(&buf);
    let files: Vec<u64> = (0..DIRS).map(|i| at[&format!("file {i:04}")]).collect();
    assert!(files.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(files[0], list_of(&buf, at["big"]));
    for (i, &f) in files.iter().enumerate() {
        set_list(&mut buf, at[&format!("s{i:03}")], f);
    }
    let img = open(wim_bytes(&buf, None, &[], &[]));
    let root = img.root().clone();
    let last = kid(&img, &root, &format!("s{:03}", DIRS - 1));
    let got = img.children(&last).unwrap();
    assert_eq!(got.kids.len(), FILES - (DIRS - 1));
    assert_eq!(got.kids[0].name, format!("file {:04}", DIRS - 1));
    let before = img.metadata_bytes_read();
    let mut names: Vec<String> = (0..DIRS - 1).rev().map(|i| format!("s{i:03}")).collect();
    names.push("big".into());
    for n in &names {
        let d = kid(&img, &root, n);
        let err = img.children(&d).err().unwrap().to_string();
        assert!(
            err.contains(&format!("directory /{n}:")) && err.contains("cycle"),
            "{err}"
        );
    }
    let read = img.metadata_bytes_read() - before;
    assert!(
        read <= names.len() as u64 * FIRST_WINDOW,
        "{read} bytes read for {} shared lists",
        names.len()
    );
    // Failures stay failures; the list that decoded stays decoded.
    assert!(img.children(&kid(&img, &root, "s000")).is_err());
    assert_eq!(img.children(&last).unwrap().kids.len(), FILES - (DIRS - 1));
}

/// A child list at an offset that is not a multiple of 8 (here a copy of
/// a real list, which would decode) is refused: entries are numbered
/// `offset / 8 + 1`, so unaligned entries could take another entry's
/// number and stand in for it (a directory showing another's children).
#[test]
fn a_misaligned_child_list_is_refused() {
    let mut recs = vec![
        rec(0, "", attr::DIRECTORY),
        rec(0, "a", attr::DIRECTORY),
        rec(0, "b", attr::DIRECTORY),
    ];
    for n in ["x", "y", "z"] {
        recs.push(rec(1, n, attr::ARCHIVE));
    }
    let mut buf = metadata::write(&[], &recs);
    let at = offsets(&buf);
    let a_list = list_of(&buf, at["a"]) as usize;
    let list_bytes = buf[a_list..].to_vec();
    let copy = buf.len() as u64 + 4;
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&list_bytes);
    set_list(&mut buf, at["b"], copy);
    // The copy is a list that decodes (from a window that starts at it).
    let mut w = Vec::new();
    let copied = metadata::parse_list(&buf[copy as usize..], copy, copy, &mut w).unwrap();
    assert_eq!(copied.len(), 3);
    let img = open(wim_bytes(&buf, None, &[], &[]));
    let root = img.root().clone();
    let err = img
        .children(&kid(&img, &root, "b"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("directory /b:") && err.contains("not 8-byte aligned"),
        "{err}"
    );
    let a = img.children(&kid(&img, &root, "a")).unwrap();
    let names: Vec<&str> = a.kids.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["x", "y", "z"]);
}

/// A message about a directory 300 levels deep names its deepest 256
/// parts (a path is built only for a message, and only so far: walking a
/// deep tree's whole path for every directory is quadratic).
#[test]
fn a_deep_directory_is_named_by_its_deepest_parts() {
    const DEPTH: u32 = 300;
    let mut recs = vec![rec(0, "", attr::DIRECTORY)];
    for i in 0..DEPTH {
        recs.push(rec(i, &format!("n{i}"), attr::DIRECTORY));
    }
    let mut buf = metadata::write(&[], &recs);
    let at = offsets(&buf);
    let deepest = at[&format!("n{}", DEPTH - 1)];
    let root_off = at[""];
    // Its list at the root entry's attributes: a length far past the end.
    set_list(&mut buf, deepest, root_off + 8);
    let img = open(wim_bytes(&buf, None, &[], &[]));
    let path: Vec<String> = (0..DEPTH).map(|i| format!("n{i}")).collect();
    let e = img.lookup(&path.join("/")).unwrap().unwrap();
    let err = img.children(&e).err().unwrap().to_string();
    let d = DEPTH as usize;
    let want = format!(
        "directory /\u{2026}/{}/n{}:",
        path[d - 257..d - 1].join("/"),
        DEPTH - 1
    );
    assert!(err.contains(&want), "{err}");
    assert!(
        err.contains("runs past the end of the metadata resource"),
        "{err}"
    );
    assert!(!err.contains("/n0/"), "{err}");
}

/// An image whose XML claims counts that overflow when added: the count
/// a mount reports saturates instead of panicking.
#[test]
fn xml_counts_that_overflow_saturate() {
    let buf = metadata::write(&[], &[rec(0, "", attr::DIRECTORY)]);
    let xml = format!(
        "<WIM><IMAGE INDEX=\"1\"><DIRCOUNT>{}</DIRCOUNT><FILECOUNT>5</FILECOUNT></IMAGE></WIM>",
        u64::MAX
    );
    let img = open(wim_bytes(&buf, Some(&xml), &[], &[]));
    assert_eq!(img.wim().info(1).unwrap().dir_count, Some(u64::MAX));
    assert_eq!(img.count_hint(), u64::MAX);
}

/// A blob table whose hashes all share their first four bytes (one
/// bucket of the lazy index), stored in descending hash order, with one
/// hash twice: every lookup finds its own entry (of the duplicate, the
/// first in table order), and hashes it lacks are missing.
#[test]
fn blobs_in_one_bucket_are_all_found() {
    const N: u32 = 5000;
    let hash = |i: u32| -> Sha1 {
        let mut h = [0u8; 20];
        h[4..8].copy_from_slice(&(i * 2 + 1).to_be_bytes());
        h[19] = 0x5A;
        h
    };
    let buf = metadata::write(&[], &[rec(0, "", attr::DIRECTORY)]);
    let data = b"0123456789".to_vec();
    // Every entry points at the data blob's bytes, at its own length.
    let data_at = HEADER_SIZE as u64 + buf.len() as u64;
    let entry = |h: Sha1, len: u64| BlobEntry {
        reshdr: ResHdr {
            size_in_wim: len,
            flags: 0,
            offset: data_at,
            uncompressed_size: len,
        },
        part_number: 1,
        refcount: 1,
        hash: h,
    };
    let mut extra: Vec<BlobEntry> = (1..N)
        .rev()
        .map(|i| entry(hash(i), 1 + u64::from(i % 9)))
        .collect();
    // A second entry for hash(7), later in the table: the first wins.
    extra.push(entry(hash(7), 10));
    let wim = wim_bytes(&buf, None, &[(hash(0), data)], &extra);
    let src: Arc<dyn wimfs::io::ReadAt> = Arc::new(wim);
    let w = Wim::from_source_lazy(Path::new("bucket.wim"), src).unwrap();
    for i in 0..N {
        let b = w
            .blob(&hash(i))
            .unwrap_or_else(|| panic!("blob {i} not found"));
        assert_eq!(b.hash, hash(i));
        let want = if i == 0 { 10 } else { 1 + u64::from(i % 9) };
        assert_eq!(b.size, want, "blob {i}");
        match &b.loc {
            BlobLoc::Whole(r) => assert_eq!(r.reshdr.offset, data_at),
            other => panic!("{other:?}"),
        }
        let mut missing = hash(i);
        missing[7] ^= 1; // an even number: never stored
        assert!(w.blob(&missing).is_none(), "{i}");
    }
}

/// An entry with the most stream entries a dentry can hold (65,535), one
/// name twice: decoded in well under a second (names are checked against
/// a set, not each against every earlier one: ~2 billion comparisons,
/// seconds for this one entry), the first of the duplicates kept.
#[test]
fn an_entry_with_65535_streams_decodes_quickly() {
    use wimfs::wim::metadata::StreamRecord;
    let mut f = rec(0, "many", attr::ARCHIVE);
    for i in 0..65_534u32 {
        f.streams.push(StreamRecord {
            name: format!("s{i:05}"),
            hash: [0; 20],
        });
    }
    f.streams.push(StreamRecord {
        name: "s00000".into(),
        hash: [9; 20],
    });
    let buf = metadata::write(&[], &[rec(0, "", attr::DIRECTORY), f]);
    let img = open(wim_bytes(&buf, None, &[], &[]));
    let t = std::time::Instant::now();
    let e = img.lookup("/many").unwrap().unwrap();
    let took = t.elapsed();
    let named: Vec<_> = e
        .inode
        .streams
        .iter()
        .filter(|s| !s.name.is_empty())
        .collect();
    assert_eq!(named.len(), 65_534);
    assert_eq!(named[0].name, "s00000");
    assert_eq!(named[0].hash, [0; 20]);
    assert!(
        took < std::time::Duration::from_secs(3),
        "decoding one entry took {took:?}"
    );
}

/// Times at and past 2^63 (no FILETIME has them) are shown, not a panic
/// (the conversion to UNIX time overflowed), through the view a mount
/// uses: lookup, getattr, readdir.
#[test]
fn times_past_2_pow_63_do_not_panic() {
    let mut f = rec(0, "f", attr::ARCHIVE);
    f.creation_time = 1 << 63;
    f.last_access_time = u64::MAX;
    f.last_write_time = (1 << 63) + 5;
    let buf = metadata::write(&[], &[rec(0, "", attr::DIRECTORY), f]);
    let src: Arc<dyn wimfs::io::ReadAt> = Arc::new(wim_bytes(&buf, None, &[], &[]));
    let w = Arc::new(Wim::from_source_lazy(Path::new("t.wim"), src).unwrap());
    let cache = Arc::new(wimfs::cache::ChunkCache::new(1 << 20));
    let v = wimfs::vfs::Vfs::open_lazy(w, 1, cache, wimfs::node::VfsOptions::default()).unwrap();
    let root = wimfs::image::lazy::ROOT_NO;
    let a = v.lookup(root, "f").unwrap();
    assert_eq!(v.getattr(a.ino).unwrap().size, 0);
    assert_eq!(
        wimfs::time::filetime_to_unix(u64::MAX),
        (-11_644_473_601, 999_999_900)
    );
    let names: Vec<String> = v
        .readdir(root, 0, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, [".", "..", "f"]);
}
