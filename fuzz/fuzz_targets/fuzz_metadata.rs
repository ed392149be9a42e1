//! The metadata resource parser (security data + dentry tree).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(md) = wimfs::wim::metadata::parse(data) {
        assert!(!md.dentries.is_empty());
    }
});
