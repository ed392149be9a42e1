//! Metadata resource: security descriptors followed by the dentry tree.
//!
//! Parsed into a flat list of records (parent links, names, streams, tagged
//! items). Everything is read from untrusted bytes: each length and offset is
//! checked against the buffer, directory lists are visited at most once (a
//! revisit is a cycle), and the walk is iterative so deep trees cannot
//! overflow the stack.

use super::bytes::{align8, utf16le_to_string, Le};
use crate::error::{Error, Result, Section};
use parking_lot::Mutex;
use rayon::prelude::*;
use std::collections::HashSet;
use std::hash::BuildHasherDefault;

/// Damage in a metadata resource, at `off` in its uncompressed bytes.
fn bad(off: Option<u64>, detail: impl Into<String>) -> Error {
    Error::corrupt(Section::Metadata, off, detail)
}

pub const DENTRY_FIXED_SIZE: usize = 0x66;
pub const STREAM_FIXED_SIZE: usize = 38;

pub mod attr {
    pub const READONLY: u32 = 0x1;
    pub const HIDDEN: u32 = 0x2;
    pub const SYSTEM: u32 = 0x4;
    pub const DIRECTORY: u32 = 0x10;
    pub const ARCHIVE: u32 = 0x20;
    pub const NORMAL: u32 = 0x80;
    pub const SPARSE_FILE: u32 = 0x200;
    pub const REPARSE_POINT: u32 = 0x400;
    pub const COMPRESSED: u32 = 0x800;
    pub const ENCRYPTED: u32 = 0x4000;
}

pub mod tag {
    pub const OBJECT_ID: u32 = 0x1;
    pub const XATTRS: u32 = 0x2;
    pub const UNIX_DATA: u32 = 0x337D_D873;
    pub const LINUX_XATTRS: u32 = 0x337D_D874;
}

/// A named or unnamed stream entry following a dentry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub name: String,
    pub hash: [u8; 20],
}

/// One directory entry as stored.
#[derive(Debug, Clone, Default)]
pub struct DentryRecord {
    /// Index of the parent record; the root is its own parent (index 0).
    pub parent: u32,
    pub offset: u64,
    pub name: String,
    pub short_name: String,
    pub attributes: u32,
    pub security_id: i32,
    pub creation_time: u64,
    pub last_access_time: u64,
    pub last_write_time: u64,
    pub hash: [u8; 20],
    pub reparse_tag: u32,
    pub rp_flags: u16,
    pub link_group: u64,
    pub streams: Vec<StreamRecord>,
    pub tagged: Vec<(u32, Vec<u8>)>,
}

impl DentryRecord {
    pub fn is_dir(&self) -> bool {
        self.attributes & attr::DIRECTORY != 0
    }
    pub fn is_reparse(&self) -> bool {
        self.attributes & attr::REPARSE_POINT != 0
    }
    pub fn tagged(&self, t: u32) -> Option<&[u8]> {
        self.tagged
            .iter()
            .find(|(k, _)| *k == t)
            .map(|(_, v)| v.as_slice())
    }
}

#[derive(Debug, Clone, Default)]
pub struct Metadata {
    pub security: Vec<Vec<u8>>,
    /// `dentries[0]` is the root.
    pub dentries: Vec<DentryRecord>,
    /// Problems that were tolerated (bad names, skipped entries).
    pub warnings: Vec<String>,
}

/// Parse the security data block; returns the descriptors and its length.
pub fn parse_security(buf: &[u8]) -> Result<(Vec<Vec<u8>>, u64)> {
    let le = Le::new(buf, Section::Metadata, "security data");
    let total = le.u32(0)? as u64;
    let n = le.u32(4)? as u64;
    let total = total.max(8);
    if total > buf.len() as u64 {
        return Err(bad(
            None,
            format!(
                "security data length {total} exceeds metadata resource size {}",
                buf.len()
            ),
        ));
    }
    let table_end = n
        .checked_mul(8)
        .and_then(|t| t.checked_add(8))
        .filter(|&t| t <= total)
        .ok_or_else(|| {
            bad(
                None,
                format!("security data claims {n} descriptors, more than fit"),
            )
        })?;
    let mut descs = Vec::with_capacity(n as usize);
    let mut p = table_end;
    for i in 0..n {
        let sz = le.u64(8 + 8 * i as usize)?;
        let end = p.checked_add(sz).filter(|&e| e <= total).ok_or_else(|| {
            bad(
                Some(p),
                format!("security descriptor {i} extends past the security data"),
            )
        })?;
        descs.push(buf[p as usize..end as usize].to_vec());
        p = end;
    }
    Ok((descs, align8(total)))
}

/// Parse a whole metadata resource.
///
/// Two passes: a walk of the tree that reads only what it needs to find
/// every entry (lengths, the directory flag, child-list offsets, names
/// checked as raw UTF-16), then a parallel pass that decodes each entry in
/// full (names, streams, tagged items). The second pass is most of the
/// work and splits cleanly, which matters for mount time on /usr-sized
/// images (133k entries).
pub fn parse(buf: &[u8]) -> Result<Metadata> {
    let (security, root_off) = parse_security(buf)?;
    let mut warnings = Vec::new();
    let root = scan_dentry(buf, 0, root_off)?.ok_or_else(|| {
        bad(
            Some(root_off),
            "metadata resource has no root directory entry",
        )
    })?;
    if !root.is_dir {
        return Err(bad(
            Some(root_off),
            "root directory entry is not a directory",
        ));
    }
    // (offset, parent index) of every entry kept, parents before children.
    let mut found: Vec<(u64, u32)> = vec![(root_off, 0)];
    let mut visited: HashSet<u64, BuildHasherDefault<OffsetHasher>> = HashSet::default();
    visited.insert(root_off);
    // (parent index, offset of its child list)
    let mut work: Vec<(u32, u64)> = Vec::new();
    if root.subdir != 0 {
        work.push((0, root.subdir));
    }
    while let Some((parent, list_off)) = work.pop() {
        let mut p = list_off;
        loop {
            if !visited.insert(p) {
                let name = parse_dentry(buf, 0, found[parent as usize].0, 0, &mut Vec::new())
                    .ok()
                    .flatten()
                    .map(|(d, _)| d.name)
                    .unwrap_or_default();
                return Err(bad(
                    Some(p),
                    format!(
                        "directory cycle: entry at offset {p:#x} is reached twice (parent {name:?})"
                    ),
                ));
            }
            let Some(e) = scan_dentry(buf, 0, p)? else {
                break;
            };
            if e.bad_name {
                let name = |off: u64| {
                    parse_dentry(buf, 0, off, 0, &mut Vec::new())
                        .ok()
                        .flatten()
                        .map(|(d, _)| d.name)
                        .unwrap_or_default()
                };
                warnings.push(format!(
                    "skipping entry with invalid name {:?} in directory {:?}",
                    name(p),
                    name(found[parent as usize].0)
                ));
            } else {
                let idx = found.len() as u32;
                found.push((p, parent));
                if e.subdir != 0 {
                    work.push((idx, e.subdir));
                }
            }
            p = e.next;
        }
    }
    // Decoded straight into place (an indexed collect): no second copy of
    // ~30 MB of records. Warnings and the first error, both rare, go
    // through a lock.
    let side: Mutex<(Vec<String>, Option<Error>)> = Mutex::new((Vec::new(), None));
    let mut dentries = Vec::with_capacity(found.len());
    let decode = |&(off, parent): &(u64, u32)| {
        let mut w = Vec::new();
        let r = parse_dentry(buf, 0, off, parent, &mut w);
        if !w.is_empty() {
            side.lock().0.extend(w);
        }
        match r {
            Ok(Some((d, _))) => d,
            Ok(None) => {
                let e = bad(Some(off), format!("directory entry at {off:#x} vanished"));
                side.lock().1.get_or_insert(e);
                DentryRecord::default()
            }
            Err(e) => {
                side.lock().1.get_or_insert(e);
                DentryRecord::default()
            }
        }
    };
    if found.len() < crate::PARALLEL_MIN {
        dentries.extend(found.iter().map(decode));
    } else {
        found
            .par_iter()
            .with_min_len(256)
            .map(decode)
            .collect_into_vec(&mut dentries);
    }
    let (w, err) = side.into_inner();
    if let Some(e) = err {
        return Err(e);
    }
    warnings.extend(w);
    Ok(Metadata {
        security,
        dentries,
        warnings,
    })
}

/// One entry of a directory's child list, as [`parse_list`] decodes it.
#[derive(Debug, Clone)]
pub struct ListEntry {
    /// The entry (`parent` is 0: the caller knows the directory).
    pub record: DentryRecord,
    /// Offset of its own child list (0: none; only directories have one).
    pub subdir: u64,
}

/// Decode the root entry at `root_off` from a window of the metadata
/// resource (`buf` holds its bytes from offset `base`): what a lazily
/// decoded image starts from.
pub fn parse_root(buf: &[u8], base: u64, root_off: u64) -> Result<ListEntry> {
    let scan = scan_dentry(buf, base, root_off)?.ok_or_else(|| {
        bad(
            Some(root_off),
            "metadata resource has no root directory entry",
        )
    })?;
    if !scan.is_dir {
        return Err(bad(
            Some(root_off),
            "root directory entry is not a directory",
        ));
    }
    let (record, _) = parse_dentry(buf, base, root_off, 0, &mut Vec::new())?
        .ok_or_else(|| bad(Some(root_off), "root directory entry vanished"))?;
    Ok(ListEntry {
        record,
        subdir: scan.subdir,
    })
}

/// Decode one directory's child list, which starts at `list_off` and runs
/// to its end-of-directory marker, from a window of the metadata resource
/// (`buf` holds its bytes from offset `base`). Entries whose names no
/// POSIX tree can hold are skipped with a warning, as [`parse`] skips them
/// (with their subtrees). Used to decode a mounted image one directory at
/// a time: a directory's list is contiguous, so only the chunks holding it
/// need decompressing. An entry past the window's end is an error like any
/// other; the caller widens the window and tries again while the resource
/// has more bytes.
pub fn parse_list(
    buf: &[u8],
    base: u64,
    list_off: u64,
    warnings: &mut Vec<String>,
) -> Result<Vec<ListEntry>> {
    let mut out = Vec::new();
    let mut p = list_off;
    while let Some(e) = scan_dentry(buf, base, p)? {
        if e.bad_name {
            let name = parse_dentry(buf, base, p, 0, &mut Vec::new())
                .ok()
                .flatten()
                .map(|(d, _)| d.name)
                .unwrap_or_default();
            warnings.push(format!("skipping entry with invalid name {name:?}"));
        } else {
            let (record, _) = parse_dentry(buf, base, p, 0, warnings)?
                .ok_or_else(|| bad(Some(p), format!("directory entry at {p:#x} vanished")))?;
            out.push(ListEntry {
                record,
                subdir: e.subdir,
            });
        }
        p = e.next;
    }
    Ok(out)
}

/// How much of the metadata resource a child list covers, as far as a
/// window of it shows (see [`list_extent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// The list, its end marker included, ends at this offset, inside the
    /// window: [`parse_list`] over the window reads nothing past it.
    Ends(u64),
    /// The window must reach at least this offset to show more of it.
    Needs(u64),
}

/// Find where the child list at `list_off` ends, reading only the length
/// fields that chain its entries (and their stream entries), from a window
/// of the metadata resource (`buf` holds its bytes from offset `base`).
/// `entry` is called with each entry's offset before it is followed, so a
/// caller can refuse one it has seen (a cycle) before decoding anything.
///
/// Why not widen a window until [`parse_list`] stops failing: a list that
/// is damaged (not merely cut by the window) would then be read again with
/// ever larger windows up to the resource's end, for every directory that
/// points at it, which makes a hostile image quadratic. This tells a short
/// window (`Needs`) from damage (an error) for the same bounds
/// [`scan_dentry`] checks.
pub fn list_extent(
    buf: &[u8],
    base: u64,
    list_off: u64,
    mut entry: impl FnMut(u64) -> Result<()>,
) -> Result<Extent> {
    let overflow = |at: u64| bad(Some(at), format!("child list at {list_off:#x} overflows"));
    let end = base
        .checked_add(buf.len() as u64)
        .ok_or_else(|| overflow(base))?;
    let field = |at: u64| -> Result<Option<u64>> {
        let fe = at.checked_add(8).ok_or_else(|| overflow(at))?;
        if fe > end {
            return Ok(None);
        }
        let o = at
            .checked_sub(base)
            .and_then(|o| usize::try_from(o).ok())
            .ok_or_else(|| bad(Some(at), "dentry offset overflow"))?;
        Le::new(buf, Section::Metadata, "directory entry")
            .u64(o)
            .map(Some)
    };
    let mut p = list_off;
    loop {
        let Some(length) = field(p)? else {
            return Ok(Extent::Needs(p + 8));
        };
        if length <= 8 {
            return Ok(Extent::Ends(p + 8));
        }
        if length < DENTRY_FIXED_SIZE as u64 {
            return Err(bad(
                Some(p),
                format!("directory entry at offset {p:#x} has invalid length {length}"),
            ));
        }
        entry(p)?;
        let e = p.checked_add(length).ok_or_else(|| overflow(p))?;
        if e > end {
            return Ok(Extent::Needs(e));
        }
        let o = (p - base) as usize;
        let num_streams = Le::new(buf, Section::Metadata, "directory entry").u16(o + 0x60)?;
        let mut q = p.checked_add(align8(length)).ok_or_else(|| overflow(p))?;
        for i in 0..num_streams {
            let Some(sl) = field(q)? else {
                return Ok(Extent::Needs(q + 8));
            };
            if sl < STREAM_FIXED_SIZE as u64 {
                return Err(bad(
                    Some(q),
                    format!("stream entry {i} of the entry at {p:#x} has invalid length {sl}"),
                ));
            }
            let se = q.checked_add(sl).ok_or_else(|| overflow(q))?;
            if se > end {
                return Ok(Extent::Needs(se));
            }
            q = q.checked_add(align8(sl)).ok_or_else(|| overflow(q))?;
        }
        p = q;
    }
}

/// The bytes of the directory entry at `off`, its length checked against
/// the buffer; `None` for an end-of-directory marker.
fn dentry_at(buf: &[u8], base: u64, off: u64) -> Result<Option<&[u8]>> {
    let o = off
        .checked_sub(base)
        .and_then(|o| usize::try_from(o).ok())
        .ok_or_else(|| bad(Some(off), "dentry offset overflow"))?;
    let length = Le::new(buf, Section::Metadata, "directory entry").u64(o)?;
    if length <= 8 {
        return Ok(None);
    }
    if length < DENTRY_FIXED_SIZE as u64
        || off
            .checked_add(length)
            .is_none_or(|e| e > base + buf.len() as u64)
    {
        return Err(bad(
            Some(off),
            format!("directory entry at offset {off:#x} has invalid length {length}"),
        ));
    }
    Ok(Some(&buf[o..o + length as usize]))
}

/// The bytes of stream entry `i` (at `q`) of the directory entry at `off`.
fn stream_entry_at(buf: &[u8], base: u64, q: u64, i: u16, off: u64) -> Result<&[u8]> {
    let qs = q
        .checked_sub(base)
        .and_then(|q| usize::try_from(q).ok())
        .ok_or_else(|| bad(Some(q), "stream offset overflow"))?;
    let sl = Le::new(buf, Section::Metadata, "stream entry")
        .u64(qs)
        .map_err(|_| {
            bad(
                Some(q),
                format!(
                    "stream entry {i} of the entry at {off:#x} is past the end of the metadata"
                ),
            )
        })?;
    if sl < STREAM_FIXED_SIZE as u64
        || q.checked_add(sl)
            .is_none_or(|e| e > base + buf.len() as u64)
    {
        return Err(bad(
            Some(q),
            format!("stream entry {i} of the entry at {off:#x} has invalid length {sl}"),
        ));
    }
    Ok(&buf[qs..qs + sl as usize])
}

/// What the tree walk needs to know of one entry.
struct Scan {
    /// Offset just past the entry and its stream entries.
    next: u64,
    is_dir: bool,
    /// Offset of a directory's child list (0: none).
    subdir: u64,
    /// Empty, ".", "..", or containing '/' or NUL: not a usable name.
    bad_name: bool,
}

/// Read the entry at `off` as far as the walk needs; `None` for an
/// end-of-directory marker. Checks the same bounds as [`parse_dentry`].
fn scan_dentry(buf: &[u8], base: u64, off: u64) -> Result<Option<Scan>> {
    let Some(raw) = dentry_at(buf, base, off)? else {
        return Ok(None);
    };
    let length = raw.len() as u64;
    let d = Le::new(raw, Section::Metadata, "directory entry");
    let is_dir = d.u32(8)? & attr::DIRECTORY != 0;
    let num_streams = d.u16(0x60)?;
    let fn_len = d.u16(0x64)? as usize;
    if !fn_len.is_multiple_of(2) || !d.u16(0x62)?.is_multiple_of(2) {
        return Err(bad(
            Some(off),
            format!("directory entry at {off:#x} has odd name length"),
        ));
    }
    let name = d.bytes(DENTRY_FIXED_SIZE, fn_len)?;
    let unit = |i: usize| u16::from_le_bytes([name[2 * i], name[2 * i + 1]]);
    let n = fn_len / 2;
    let bad_name = n == 0
        || (n == 1 && unit(0) == u16::from(b'.'))
        || (n == 2 && unit(0) == u16::from(b'.') && unit(1) == u16::from(b'.'))
        || (0..n).any(|i| matches!(unit(i), 0 | 0x2F));
    let mut q = off + align8(length);
    for i in 0..num_streams {
        q += align8(stream_entry_at(buf, base, q, i, off)?.len() as u64);
    }
    let subdir = if is_dir { d.u64(16)? } else { 0 };
    Ok(Some(Scan {
        next: q,
        is_dir,
        subdir,
        bad_name,
    }))
}

/// Hasher for entry offsets (trusted to be spread; SipHash over 133k of
/// them is measurable at mount).
#[derive(Default)]
struct OffsetHasher(u64);

impl std::hash::Hasher for OffsetHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
}

/// Parse the dentry at `off`. `None` for an end-of-directory marker. Also
/// returns the offset just past the dentry and its stream entries.
fn parse_dentry(
    buf: &[u8],
    base: u64,
    off: u64,
    parent: u32,
    warnings: &mut Vec<String>,
) -> Result<Option<(DentryRecord, u64)>> {
    let Some(raw) = dentry_at(buf, base, off)? else {
        return Ok(None);
    };
    let length = raw.len() as u64;
    let d = Le::new(raw, Section::Metadata, "directory entry");
    let attributes = d.u32(8)?;
    let security_id = d.u32(12)? as i32;
    let hash = d.sha1(0x40)?;
    let reparse_tag = d.u32(0x58)?;
    let rp_flags = d.u16(0x5E)?;
    let link_group = d.u64(0x58)?;
    let num_streams = d.u16(0x60)?;
    let sn_len = d.u16(0x62)? as usize;
    let fn_len = d.u16(0x64)? as usize;
    if !fn_len.is_multiple_of(2) || !sn_len.is_multiple_of(2) {
        return Err(bad(
            Some(off),
            format!("directory entry at {off:#x} has odd name length"),
        ));
    }
    let mut p = DENTRY_FIXED_SIZE;
    let name = utf16le_to_string(d.bytes(p, fn_len)?);
    if fn_len > 0 {
        p += fn_len + 2;
    }
    let short_name = utf16le_to_string(d.bytes(p, sn_len)?);
    if sn_len > 0 {
        p += sn_len + 2;
    }
    // Tagged items fill the rest of the dentry, starting 8-aligned.
    let mut tagged = Vec::new();
    let mut t = align8(p as u64) as usize;
    while t + 8 <= length as usize {
        let tg = d.u32(t)?;
        let tl = d.u32(t + 4)? as usize;
        let Ok(data) = d.bytes(t + 8, tl) else {
            warnings.push(format!(
                "directory entry {name:?}: truncated tagged item {tg:#x} ignored"
            ));
            break;
        };
        if tg != 0 || tl != 0 {
            tagged.push((tg, data.to_vec()));
        }
        t = align8((t + 8 + tl) as u64) as usize;
    }
    let mut q = off + align8(length);
    let mut streams = Vec::with_capacity(num_streams as usize);
    for i in 0..num_streams {
        let raw = stream_entry_at(buf, base, q, i, off)?;
        let sl = raw.len() as u64;
        let s = Le::new(raw, Section::Metadata, "stream entry");
        let nl = s.u16(36)? as usize;
        let sname = utf16le_to_string(s.bytes(STREAM_FIXED_SIZE, nl)?);
        streams.push(StreamRecord {
            name: sname,
            hash: s.sha1(16)?,
        });
        q += align8(sl);
    }
    Ok(Some((
        DentryRecord {
            parent,
            offset: off,
            name,
            short_name,
            attributes,
            security_id,
            creation_time: d.u64(0x28)?,
            last_access_time: d.u64(0x30)?,
            last_write_time: d.u64(0x38)?,
            hash,
            reparse_tag,
            rp_flags,
            link_group,
            streams,
            tagged,
        },
        q,
    )))
}

fn utf16(s: &str) -> Vec<u8> {
    super::bytes::string_to_utf16le(s)
}

/// Encoded size of a dentry without its stream entries.
fn dentry_len(d: &DentryRecord) -> u64 {
    let mut n = DENTRY_FIXED_SIZE as u64;
    let nl = utf16(&d.name).len() as u64;
    let sl = utf16(&d.short_name).len() as u64;
    if nl > 0 {
        n += nl + 2;
    }
    if sl > 0 {
        n += sl + 2;
    }
    n = align8(n);
    for (_, data) in &d.tagged {
        n += align8(8 + data.len() as u64);
    }
    n
}

fn stream_len(s: &StreamRecord) -> u64 {
    let nl = utf16(&s.name).len() as u64;
    align8(STREAM_FIXED_SIZE as u64 + if nl > 0 { nl + 2 } else { 0 })
}

fn total_len(d: &DentryRecord) -> u64 {
    dentry_len(d) + d.streams.iter().map(stream_len).sum::<u64>()
}

/// Serialize security data and a dentry tree (records with parent links,
/// `dentries[0]` the root) into a metadata resource. Children are written
/// in record order; every directory gets a child list (an empty one is a
/// lone end-of-directory marker), so readers never see a dangling offset.
pub fn write(security: &[Vec<u8>], dentries: &[DentryRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    // Security data.
    let sec_len: u64 =
        8 + 8 * security.len() as u64 + security.iter().map(|s| s.len() as u64).sum::<u64>();
    let sec_total = align8(sec_len);
    out.extend_from_slice(&(sec_total as u32).to_le_bytes());
    out.extend_from_slice(&(security.len() as u32).to_le_bytes());
    for s in security {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    }
    for s in security {
        out.extend_from_slice(s);
    }
    out.resize(sec_total as usize, 0);
    if dentries.is_empty() {
        return out;
    }
    // Children of each record, in order.
    let mut kids: Vec<Vec<usize>> = vec![Vec::new(); dentries.len()];
    for (i, d) in dentries.iter().enumerate().skip(1) {
        if let Some(k) = kids.get_mut(d.parent as usize) {
            k.push(i);
        }
    }
    // Layout: root, terminator, then each directory's list (breadth-first).
    let mut subdir = vec![0u64; dentries.len()];
    let root_off = sec_total;
    let mut pos = root_off + total_len(&dentries[0]) + 8;
    let mut order: Vec<usize> = vec![0];
    let mut lists: Vec<usize> = Vec::new();
    let mut q = 0;
    while q < order.len() {
        let d = order[q];
        q += 1;
        // Reparse points (directory symlinks, junctions) are not directories
        // to readers: a child list there, even an empty one, makes wimlib
        // warn about "children of a non-directory".
        if !dentries[d].is_dir() || (dentries[d].is_reparse() && kids[d].is_empty()) {
            continue;
        }
        subdir[d] = pos;
        lists.push(d);
        for &c in &kids[d] {
            pos += total_len(&dentries[c]);
            order.push(c);
        }
        pos += 8;
    }
    out.reserve((pos - root_off) as usize);
    encode_dentry(&mut out, &dentries[0], subdir[0]);
    out.extend_from_slice(&[0u8; 8]);
    for &d in &lists {
        debug_assert_eq!(out.len() as u64, subdir[d]);
        for &c in &kids[d] {
            encode_dentry(&mut out, &dentries[c], subdir[c]);
        }
        out.extend_from_slice(&[0u8; 8]);
    }
    out
}

fn encode_dentry(out: &mut Vec<u8>, d: &DentryRecord, subdir: u64) {
    let start = out.len();
    let len = dentry_len(d);
    let name = utf16(&d.name);
    let short = utf16(&d.short_name);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&d.attributes.to_le_bytes());
    out.extend_from_slice(&d.security_id.to_le_bytes());
    out.extend_from_slice(&subdir.to_le_bytes());
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&d.creation_time.to_le_bytes());
    out.extend_from_slice(&d.last_access_time.to_le_bytes());
    out.extend_from_slice(&d.last_write_time.to_le_bytes());
    out.extend_from_slice(&d.hash);
    out.extend_from_slice(&0u32.to_le_bytes());
    if d.is_reparse() {
        out.extend_from_slice(&d.reparse_tag.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&d.rp_flags.to_le_bytes());
    } else {
        out.extend_from_slice(&d.link_group.to_le_bytes());
    }
    out.extend_from_slice(&(d.streams.len() as u16).to_le_bytes());
    out.extend_from_slice(&(short.len() as u16).to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    if !name.is_empty() {
        out.extend_from_slice(&name);
        out.extend_from_slice(&[0, 0]);
    }
    if !short.is_empty() {
        out.extend_from_slice(&short);
        out.extend_from_slice(&[0, 0]);
    }
    out.resize(start + align8((out.len() - start) as u64) as usize, 0);
    for (tag, data) in &d.tagged {
        let t = out.len();
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out.resize(t + align8(8 + data.len() as u64) as usize, 0);
    }
    debug_assert_eq!((out.len() - start) as u64, len);
    for s in &d.streams {
        let s0 = out.len();
        let sl = stream_len(s);
        let n = utf16(&s.name);
        out.extend_from_slice(&sl.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&s.hash);
        out.extend_from_slice(&(n.len() as u16).to_le_bytes());
        if !n.is_empty() {
            out.extend_from_slice(&n);
            out.extend_from_slice(&[0, 0]);
        }
        out.resize(s0 + sl as usize, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(parent: u32, name: &str, attributes: u32) -> DentryRecord {
        DentryRecord {
            parent,
            offset: 0,
            name: name.into(),
            short_name: String::new(),
            attributes,
            security_id: -1,
            creation_time: 1,
            last_access_time: 2,
            last_write_time: 3,
            hash: [0; 20],
            reparse_tag: 0,
            rp_flags: 0,
            link_group: 0,
            streams: Vec::new(),
            tagged: Vec::new(),
        }
    }

    fn sample() -> (Vec<Vec<u8>>, Vec<DentryRecord>) {
        let mut v = vec![rec(0, "", attr::DIRECTORY)];
        v.push(rec(0, "Windows", attr::DIRECTORY));
        let mut f = rec(1, "notepad.exe", attr::ARCHIVE);
        f.hash = [7; 20];
        f.short_name = "NOTEPAD.EXE".into();
        f.link_group = 42;
        f.streams.push(StreamRecord {
            name: "Zone.Identifier".into(),
            hash: [9; 20],
        });
        f.tagged.push((
            tag::UNIX_DATA,
            vec![1, 0, 0, 0, 2, 0, 0, 0, 0xa4, 0x81, 0, 0, 0, 0, 0, 0],
        ));
        v.push(f);
        v.push(rec(1, "empty dir ✓", attr::DIRECTORY));
        let mut l = rec(0, "link", attr::REPARSE_POINT);
        l.reparse_tag = 0xA000_000C;
        l.rp_flags = 1;
        l.hash = [3; 20];
        v.push(l);
        (vec![vec![1, 2, 3], vec![4; 20]], v)
    }

    #[test]
    fn unusable_names_are_skipped_with_their_subtrees() {
        let (sec, mut recs) = sample();
        // A directory named "..", with a child, and files named "a/b",
        // "." and "nul\0": none can appear in a POSIX tree.
        recs.push(rec(0, "..", attr::DIRECTORY));
        let dotdot = recs.len() as u32 - 1;
        recs.push(rec(dotdot, "hidden", attr::ARCHIVE));
        recs.push(rec(1, "a/b", attr::ARCHIVE));
        recs.push(rec(1, ".", attr::ARCHIVE));
        recs.push(rec(0, "nul\0", attr::ARCHIVE));
        recs.push(rec(1, "ascii and é ✓", attr::ARCHIVE));
        let md = parse(&write(&sec, &recs)).unwrap();
        let mut names: Vec<_> = md.dentries.iter().map(|d| d.name.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "",
                "Windows",
                "ascii and é ✓",
                "empty dir ✓",
                "link",
                "notepad.exe"
            ]
        );
        assert_eq!(md.warnings.len(), 4, "{:?}", md.warnings);
        assert!(md.warnings.iter().any(|w| w.contains("\"a/b\"")));
        // Parents still point at the right records after the skips.
        for d in &md.dentries[1..] {
            let p = &md.dentries[d.parent as usize];
            assert!(p.is_dir(), "{} under {}", d.name, p.name);
        }
    }

    #[test]
    fn write_then_parse_round_trips() {
        let (sec, recs) = sample();
        let buf = write(&sec, &recs);
        let md = parse(&buf).unwrap();
        assert_eq!(md.security, sec);
        assert!(md.warnings.is_empty(), "{:?}", md.warnings);
        assert_eq!(md.dentries.len(), recs.len());
        let mut names: Vec<_> = md.dentries.iter().map(|d| d.name.clone()).collect();
        names.sort();
        assert_eq!(
            names,
            vec!["", "Windows", "empty dir ✓", "link", "notepad.exe"]
        );
        let f = md
            .dentries
            .iter()
            .find(|d| d.name == "notepad.exe")
            .unwrap();
        let orig = &recs[2];
        assert_eq!(f.short_name, orig.short_name);
        assert_eq!(f.hash, orig.hash);
        assert_eq!(f.link_group, 42);
        assert_eq!(f.streams, orig.streams);
        assert_eq!(f.tagged, orig.tagged);
        assert_eq!(md.dentries[f.parent as usize].name, "Windows");
        let l = md.dentries.iter().find(|d| d.name == "link").unwrap();
        assert_eq!((l.reparse_tag, l.rp_flags), (0xA000_000C, 1));
    }

    #[test]
    fn truncations_never_panic() {
        let (sec, recs) = sample();
        let buf = write(&sec, &recs);
        // Every cut is reported, not read as a smaller tree: the child
        // lists and the end-of-list entries run to the very last byte.
        for n in 0..buf.len() {
            assert!(
                parse(&buf[..n]).is_err(),
                "cut at {n} of {} parsed",
                buf.len()
            );
        }
        let mut b = buf.clone();
        for i in 0..b.len() {
            b[i] ^= 0xFF;
            let _ = parse(&b);
            b[i] ^= 0xFF;
        }
    }

    #[test]
    fn cycle_is_rejected() {
        let (sec, recs) = sample();
        let mut buf = write(&sec, &recs);
        // Point the "empty dir" list back at the root's child list.
        let md = parse(&buf).unwrap();
        let root_sub = u64::from_le_bytes(
            buf[md.dentries[0].offset as usize + 16..][..8]
                .try_into()
                .unwrap(),
        );
        let e = md
            .dentries
            .iter()
            .find(|d| d.name == "empty dir ✓")
            .unwrap();
        buf[e.offset as usize + 16..e.offset as usize + 24]
            .copy_from_slice(&root_sub.to_le_bytes());
        let err = parse(&buf).unwrap_err().to_string();
        assert!(err.contains("cycle"), "{err}");
    }
}
