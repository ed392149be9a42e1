//! The XML parser and the image-information extraction on top of it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = wimfs::wim::xml::decode(data);
    if let Ok(root) = wimfs::wim::xml::parse(&s) {
        let _ = wimfs::wim::xml::images(&root);
        let enc = wimfs::wim::xml::encode(&root);
        // What we write, we read back the same.
        let again = wimfs::wim::xml::parse(&wimfs::wim::xml::decode(&enc));
        assert!(again.is_ok());
    }
});
