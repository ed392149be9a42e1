//! Readahead across files (issue 12, `cat` of a tree): on a read-only view,
//! a read that reaches the end of a file starts decoding, in the
//! background, the four compressed resources stored after that file's in
//! the WIM; a read that stops short of the end, or a read-write view,
//! starts nothing. The bytes read stay the source's. Stored order comes
//! from the oracle (`wimlib-imagex dir --detailed`), not from wimfs.
mod common;

use common::*;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wimfs::cache::ChunkCache;
use wimfs::image::Image;
use wimfs::vfs::{Vfs, VfsOptions, ROOT_INO};
use wimfs::wim::resource::Resource;
use wimfs::wim::{BlobLoc, Wim};

const FILES: usize = 10;

/// A WIM (LZX) of `FILES` distinct compressible files of 2-20 KB (one
/// chunk each). Returns the sources and the names in stored order, with
/// each file's resource.
struct Fixture {
    _t: tempfile::TempDir,
    wim: std::path::PathBuf,
    /// (name, source bytes, resource offset), by resource offset.
    stored: Vec<(String, Vec<u8>, u64)>,
}

fn fixture() -> Fixture {
    let t = tempdir();
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = Rng::new(1212);
    let mut files = Vec::new();
    for i in 0..FILES {
        let len = 2000 + rng.below(18_000) as usize;
        let body = text_bytes(&mut rng, len);
        let name = format!("f{i:02}.txt");
        std::fs::write(src.join(&name), &body).unwrap();
        files.push((name, body));
    }
    let wim = t.path().join("t.wim");
    wimlib_capture(&src, &wim, &["--compress=LZX"]);
    let mut stored: Vec<(String, Vec<u8>, u64)> = files
        .into_iter()
        .map(|(name, body)| {
            let (off, stored_size) = wimlib_blob_location(&wim, "1", &format!("/{name}"));
            assert!(
                stored_size < body.len() as u64,
                "{name} must be stored compressed"
            );
            (name, body, off)
        })
        .collect();
    stored.sort_by_key(|s| s.2);
    Fixture { _t: t, wim, stored }
}

fn sha1_of(b: &[u8]) -> [u8; 20] {
    use sha1::Digest;
    sha1::Sha1::digest(b).into()
}

/// The resource stored at `offset`.
fn resource_at(w: &Wim, offset: u64) -> Arc<Resource> {
    w.blobs
        .values()
        .find_map(|b| match &b.loc {
            BlobLoc::Whole(r) if r.reshdr.offset == offset => Some(r.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no resource at {offset}"))
}

fn read_whole(v: &Vfs, name: &str) -> Vec<u8> {
    let ino = v.lookup(ROOT_INO, name).unwrap().ino;
    let mut out = Vec::new();
    loop {
        let b = v.read(ino, out.len() as u64, 1 << 20).unwrap();
        if b.is_empty() {
            return out;
        }
        out.extend_from_slice(&b);
    }
}

/// Wait up to 10 s for `cond`.
fn eventually(cond: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

fn open(fx: &Fixture) -> (Arc<Wim>, Arc<Image>) {
    let w = Arc::new(Wim::open(&fx.wim, &[]).unwrap());
    let img = Arc::new(Image::load(&w, 1).unwrap());
    (w, img)
}

#[test]
fn reading_a_file_to_its_end_decodes_the_next_four_stored() {
    reads_ahead_across_files(false);
}

/// The same through the lazily decoded view read-only mounts use (blobs
/// made on lookup: the resources after a file are found by hash).
#[test]
fn the_lazy_view_of_a_mount_reads_ahead_across_files_too() {
    reads_ahead_across_files(true);
}

fn reads_ahead_across_files(lazy: bool) {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let fx = fixture();
    let cache = Arc::new(ChunkCache::new(64 << 20));
    let (w, v) = if lazy {
        let w = Arc::new(Wim::open_lazy(&fx.wim, &[]).unwrap());
        let v = Vfs::open_lazy(w.clone(), 1, cache.clone(), VfsOptions::default()).unwrap();
        (w, v)
    } else {
        let (w, img) = open(&fx);
        let v = Vfs::new(w.clone(), img, cache.clone(), VfsOptions::default());
        (w, v)
    };
    let res: Vec<Arc<Resource>> = fx
        .stored
        .iter()
        .map(|s| {
            let r = match w.blob(&sha1_of(&s.1)).map(|b| b.loc.clone()) {
                Some(BlobLoc::Whole(r)) => r,
                _ => panic!("no whole resource for {}", s.0),
            };
            assert_eq!(r.reshdr.offset, s.2, "{}", s.0);
            r
        })
        .collect();
    assert!(
        res.iter().all(|r| !cache.contains(r, 0)),
        "nothing cached yet"
    );

    // The third stored file, read to its end.
    let (name, body, _) = &fx.stored[2];
    assert_eq!(&read_whole(&v, name), body, "{name}");
    assert!(
        eventually(|| (3..7).all(|k| cache.contains(&res[k], 0))),
        "the four resources stored after {name} were not decoded"
    );
    // Nothing before it, nothing past the fourth.
    std::thread::sleep(Duration::from_millis(200));
    for k in [0, 1, 7, 8, 9] {
        assert!(!cache.contains(&res[k], 0), "resource {k} decoded");
    }
    let decoded = cache.stats().misses;
    assert_eq!(decoded, 5, "the file itself and the four after it");

    // Those four are then read from the cache, byte for byte the source.
    for (name, body, _) in &fx.stored[3..7] {
        let hits = cache.stats().hits;
        let ino = v.lookup(ROOT_INO, name).unwrap().ino;
        let got = v.read(ino, 0, 1 << 20).unwrap();
        assert_eq!(&got, body, "{name}");
        assert!(cache.stats().hits > hits, "{name} was not a cache hit");
    }
}

#[test]
fn a_read_short_of_the_end_or_a_read_write_view_decodes_nothing_more() {
    if !require(&["wimlib-imagex"]) {
        return;
    }
    let fx = fixture();
    let (w, img) = open(&fx);
    let res: Vec<Arc<Resource>> = fx.stored.iter().map(|s| resource_at(&w, s.2)).collect();

    // Read-only, the first 100 bytes of a file.
    let cache = Arc::new(ChunkCache::new(64 << 20));
    let v = Vfs::new(w.clone(), img.clone(), cache.clone(), VfsOptions::default());
    let (name, body, _) = &fx.stored[0];
    let ino = v.lookup(ROOT_INO, name).unwrap().ino;
    assert_eq!(v.read(ino, 0, 100).unwrap(), body[..100]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cache.stats().misses, 1, "only the file read was decoded");
    assert!((1..FILES).all(|k| !cache.contains(&res[k], 0)));

    // Read-write, a whole file.
    let t = tempdir();
    let cache = Arc::new(ChunkCache::new(64 << 20));
    let staging = t.path().join("staging");
    let (rw, _) = Vfs::open_rw(
        w.clone(),
        img.index,
        cache.clone(),
        VfsOptions::default(),
        Path::new(&staging),
    )
    .unwrap();
    assert_eq!(&read_whole(&rw, name), body);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        (1..FILES).all(|k| !cache.contains(&res[k], 0)),
        "a read-write view read ahead across files"
    );
}
