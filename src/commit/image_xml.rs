//! The XML description of an image: the counts and times a WIM's XML
//! keeps for each image, computed from its dentries the way WIMGAPI counts
//! them. Every verb that writes a new or changed image fills them.

use crate::wim::metadata::DentryRecord;
use crate::wim::{xml, Sha1, ZERO_HASH};
use std::collections::HashMap;

/// XML statistics of an image: (directories, files, total bytes, bytes in
/// hard links beyond the first name), looked up in `sizes`.
pub fn image_stats(records: &[DentryRecord], sizes: &HashMap<Sha1, u64>) -> (u64, u64, u64, u64) {
    let (mut dirs, mut files, mut total, mut hard) = (0u64, 0u64, 0u64, 0u64);
    let mut seen_groups = std::collections::HashSet::new();
    for r in records.iter().skip(1) {
        if r.is_dir() {
            dirs += 1;
        } else {
            files += 1;
        }
        let data = if r.streams.is_empty() {
            if r.is_reparse() {
                ZERO_HASH
            } else {
                r.hash
            }
        } else {
            r.streams
                .iter()
                .filter(|s| s.name.is_empty())
                .nth(usize::from(r.is_reparse()))
                .map_or(ZERO_HASH, |s| s.hash)
        };
        let sz = sizes.get(&data).copied().unwrap_or(0);
        total += sz;
        if r.link_group != 0 && !r.is_reparse() && !r.is_dir() && !seen_groups.insert(r.link_group)
        {
            hard += sz;
        }
    }
    (dirs, files, total, hard)
}

fn set_filetime(e: &mut xml::Element, name: &str, ft: u64) {
    let mut t = xml::Element::new(name);
    t.set_child_text("HIGHPART", &format!("0x{:08X}", ft >> 32));
    t.set_child_text("LOWPART", &format!("0x{:08X}", ft & 0xFFFF_FFFF));
    if let Some(c) = e.child_mut(name) {
        *c = t;
    } else {
        e.children.push(xml::Node::Elem(t));
    }
}

/// Set the counts of an image's XML element and its modification time
/// (and creation time when `new`) to `now`.
pub fn fill_image_xml(
    e: &mut xml::Element,
    dirs: u64,
    files: u64,
    total: u64,
    hard: u64,
    now: u64,
    new: bool,
) {
    e.set_child_text("DIRCOUNT", &dirs.to_string());
    e.set_child_text("FILECOUNT", &files.to_string());
    e.set_child_text("TOTALBYTES", &total.to_string());
    e.set_child_text("HARDLINKBYTES", &hard.to_string());
    if new {
        set_filetime(e, "CREATIONTIME", now);
    }
    set_filetime(e, "LASTMODIFICATIONTIME", now);
}
