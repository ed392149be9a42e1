//! A whole WIM from bytes: open, then load and walk every image, read every
//! blob through the cache, and verify. Nothing may panic or hang.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let src: Arc<dyn wimfs::io::ReadAt> = Arc::new(data.to_vec());
    let Ok(wim) = wimfs::wim::Wim::from_source(Path::new("fuzz.wim"), src) else {
        return;
    };
    let cache = wimfs::cache::ChunkCache::new(1 << 20);
    for i in 1..=wim.image_count().min(4) {
        if let Ok(img) = wimfs::image::Image::load(&wim, i) {
            for d in img.walk() {
                let _ = img.path(d);
            }
        }
    }
    for b in wim.blobs.values().take(64) {
        let mut buf = vec![0u8; b.size.min(1 << 16) as usize];
        let _ = cache.read_blob(b, 0, &mut buf);
    }
    let _ = wimfs::verify::verify(&wim, &|_| {});
});
