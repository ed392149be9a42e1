//! A WIM from bytes opened as a read-only mount opens it (`Wim` with the
//! lazy blob index, a `LazyImage` per image through `Vfs::open_lazy`), then
//! the whole tree walked through the view: lookups, listings, attributes,
//! link counts (the census), xattrs and named streams, symlink targets, a
//! few bytes of every file, and blob lookups by every hash seen. Nothing
//! may panic, hang or allocate by an untrusted size; a directory reached
//! twice (a cycle the view did not catch) is a failure.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use wimfs::node::{FileKind, VfsOptions};
use wimfs::vfs::Vfs;

/// Entries visited per image at most (keeps one input's run short).
const MAX_VISITS: usize = 20_000;

fuzz_target!(|data: &[u8]| {
    let src: Arc<dyn wimfs::io::ReadAt> = Arc::new(data.to_vec());
    let Ok(wim) = wimfs::wim::Wim::from_source_lazy(Path::new("fuzz.wim"), src) else {
        return;
    };
    let wim = Arc::new(wim);
    let cache = Arc::new(wimfs::cache::ChunkCache::new(1 << 20));
    for index in 1..=wim.image_count().min(3) {
        let Ok(vfs) = Vfs::open_lazy(wim.clone(), index, cache.clone(), VfsOptions::default())
        else {
            continue;
        };
        walk(&vfs);
        if let Some(img) = vfs.lazy_image() {
            let _ = img.lookup("/a/b/c");
            let root = img.root().clone();
            let _ = img.nlink(&root);
            for s in &root.inode.streams {
                let _ = wim.blob(&s.hash);
            }
        }
    }
    // Blob lookups by hashes the input holds (a hostile bucket), and by
    // hashes it does not.
    for w in data.chunks(20).take(64) {
        if let Ok(h) = <[u8; 20]>::try_from(w) {
            let _ = wim.blob(&h);
        }
    }
    let _ = wim.blob(&[0u8; 20]);
    let _ = wim.blob(&[0xffu8; 20]);
});

fn walk(vfs: &Vfs) {
    let root = wimfs::image::lazy::ROOT_NO;
    let mut dirs_seen: HashSet<u64> = HashSet::new();
    let mut work: VecDeque<u64> = VecDeque::from([root]);
    let mut visits = 0usize;
    dirs_seen.insert(root);
    while let Some(dir) = work.pop_front() {
        let _ = vfs.getattr(dir);
        let _ = vfs.lookup(dir, "..");
        let _ = vfs.lookup(dir, "no such name");
        let mut offset = 0;
        loop {
            let Ok(batch) = vfs.readdir(dir, offset, 64) else {
                break;
            };
            let Some(last) = batch.last() else { break };
            assert!(last.next > offset, "readdir does not advance");
            offset = last.next;
            for e in batch {
                if e.name == "." || e.name == ".." {
                    continue;
                }
                visits += 1;
                if visits > MAX_VISITS {
                    return;
                }
                let Ok(a) = vfs.lookup(dir, &e.name) else {
                    continue;
                };
                assert_eq!(a.ino, e.ino, "lookup and readdir disagree on {:?}", e.name);
                visit(vfs, a.ino);
                if a.kind == FileKind::Directory {
                    assert!(
                        dirs_seen.insert(a.ino),
                        "directory {} reached twice (named {:?})",
                        a.ino,
                        e.name
                    );
                    work.push_back(a.ino);
                }
            }
        }
    }
}

/// Everything a reader can ask of one inode.
fn visit(vfs: &Vfs, ino: u64) {
    let _ = vfs.getattr(ino);
    let _ = vfs.readlink(ino);
    let _ = vfs.read(ino, 0, 64);
    let _ = vfs.read(ino, 1 << 20, 16);
    if let Ok(names) = vfs.listxattr(ino) {
        for n in names.iter().take(16) {
            let _ = vfs.getxattr(ino, n);
        }
    }
}
