//! Header, blob table, integrity table and reparse-data parsers.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wimfs::wim::header::Header::parse(data);
    let _ = wimfs::wim::blob_table::parse(data);
    let _ = wimfs::wim::integrity::parse(data);
    if data.len() >= 4 {
        let tag = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        let _ = wimfs::reparse::decode(tag | 0xA000_0000, &data[4..]);
    }
});
