//! Metadata resource: security descriptors followed by the dentry tree.
//!
//! Parsed into a flat list of records (parent links, names, streams, tagged
//! items). Everything is read from untrusted bytes: each length and offset is
//! checked against the buffer, directory lists are visited at most once (a
//! revisit is a cycle), and the walk is iterative so deep trees cannot
//! overflow the stack.

use super::bytes::{align8, utf16le_to_string, Le};
use crate::error::{Error, Result};
use std::collections::HashSet;

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
#[derive(Debug, Clone)]
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
        self.tagged.iter().find(|(k, _)| *k == t).map(|(_, v)| v.as_slice())
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
    let le = Le::new(buf, "security data");
    let total = le.u32(0)? as u64;
    let n = le.u32(4)? as u64;
    let total = total.max(8);
    if total > buf.len() as u64 {
        return Err(Error::Invalid(format!(
            "security data length {total} exceeds metadata resource size {}",
            buf.len()
        )));
    }
    let table_end = n
        .checked_mul(8)
        .and_then(|t| t.checked_add(8))
        .filter(|&t| t <= total)
        .ok_or_else(|| Error::Invalid(format!("security data claims {n} descriptors, more than fit")))?;
    let mut descs = Vec::with_capacity(n as usize);
    let mut p = table_end;
    for i in 0..n {
        let sz = le.u64(8 + 8 * i as usize)?;
        let end = p
            .checked_add(sz)
            .filter(|&e| e <= total)
            .ok_or_else(|| Error::Invalid(format!("security descriptor {i} extends past the security data")))?;
        descs.push(buf[p as usize..end as usize].to_vec());
        p = end;
    }
    Ok((descs, align8(total)))
}

/// Parse a whole metadata resource.
pub fn parse(buf: &[u8]) -> Result<Metadata> {
    let (security, root_off) = parse_security(buf)?;
    let mut md = Metadata { security, ..Default::default() };
    let (root, next) = parse_dentry(buf, root_off, 0, &mut md.warnings)?
        .ok_or_else(|| Error::Invalid("metadata resource has no root directory entry".into()))?;
    let _ = next;
    if !root.is_dir() {
        return Err(Error::Invalid("root directory entry is not a directory".into()));
    }
    let root_sub = subdir_offset(buf, root_off)?;
    md.dentries.push(root);
    let mut visited: HashSet<u64> = HashSet::new();
    visited.insert(root_off);
    // (parent index, offset of its child list)
    let mut work: Vec<(u32, u64)> = Vec::new();
    if root_sub != 0 {
        work.push((0, root_sub));
    }
    while let Some((parent, list_off)) = work.pop() {
        let mut p = list_off;
        loop {
            if !visited.insert(p) {
                return Err(Error::Invalid(format!(
                    "directory cycle: entry at offset {p:#x} is reached twice (parent {:?})",
                    md.dentries[parent as usize].name
                )));
            }
            let Some((mut d, next)) = parse_dentry(buf, p, parent, &mut md.warnings)? else {
                break;
            };
            let sub = if d.is_dir() { subdir_offset(buf, p)? } else { 0 };
            let bad_name = d.name.is_empty()
                || d.name == "."
                || d.name == ".."
                || d.name.contains('/')
                || d.name.contains('\0');
            if bad_name {
                md.warnings.push(format!(
                    "skipping entry with invalid name {:?} in directory {:?}",
                    d.name, md.dentries[parent as usize].name
                ));
            } else {
                d.parent = parent;
                let idx = md.dentries.len() as u32;
                md.dentries.push(d);
                if sub != 0 {
                    work.push((idx, sub));
                }
            }
            p = next;
        }
    }
    Ok(md)
}

fn subdir_offset(buf: &[u8], off: u64) -> Result<u64> {
    let le = Le::new(buf, "directory entry");
    le.u64(off as usize + 16)
}

/// Parse the dentry at `off`. `None` for an end-of-directory marker. Also
/// returns the offset just past the dentry and its stream entries.
fn parse_dentry(buf: &[u8], off: u64, parent: u32, warnings: &mut Vec<String>) -> Result<Option<(DentryRecord, u64)>> {
    let o = usize::try_from(off).map_err(|_| Error::Invalid("dentry offset overflow".into()))?;
    let le = Le::new(buf, "directory entry");
    let length = le.u64(o)?;
    if length <= 8 {
        return Ok(None);
    }
    if length < DENTRY_FIXED_SIZE as u64 || off.checked_add(length).is_none_or(|e| e > buf.len() as u64) {
        return Err(Error::Invalid(format!(
            "directory entry at offset {off:#x} has invalid length {length}"
        )));
    }
    let d = Le::new(&buf[o..o + length as usize], "directory entry");
    let attributes = d.u32(8)?;
    let security_id = d.u32(12)? as i32;
    let hash = d.sha1(0x40)?;
    let reparse_tag = d.u32(0x58)?;
    let rp_flags = d.u16(0x5E)?;
    let link_group = d.u64(0x58)?;
    let num_streams = d.u16(0x60)?;
    let sn_len = d.u16(0x62)? as usize;
    let fn_len = d.u16(0x64)? as usize;
    if fn_len % 2 != 0 || sn_len % 2 != 0 {
        return Err(Error::Invalid(format!("directory entry at {off:#x} has odd name length")));
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
            warnings.push(format!("directory entry {name:?}: truncated tagged item {tg:#x} ignored"));
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
        let qs = usize::try_from(q).map_err(|_| Error::Invalid("stream offset overflow".into()))?;
        let sl = le.u64(qs).map_err(|_| {
            Error::Invalid(format!("stream entry {i} of {name:?} at {q:#x} is past the end of the metadata"))
        })?;
        if sl < STREAM_FIXED_SIZE as u64 || q.checked_add(sl).is_none_or(|e| e > buf.len() as u64) {
            return Err(Error::Invalid(format!("stream entry {i} of {name:?} has invalid length {sl}")));
        }
        let s = Le::new(&buf[qs..qs + sl as usize], "stream entry");
        let nl = s.u16(36)? as usize;
        let sname = utf16le_to_string(s.bytes(STREAM_FIXED_SIZE, nl)?);
        streams.push(StreamRecord { name: sname, hash: s.sha1(16)? });
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
