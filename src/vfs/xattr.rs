//! Extended attributes: named data streams as `user.NAME`, and Windows
//! metadata under the names ntfs-3g uses, so tools and habits carry over.

use super::{read_all, Ino, ReadView, Vfs, VfsError, VfsResult};
use crate::overlay::Data;
use crate::wim::metadata::tag;

pub const XATTR_STREAM_PREFIX: &str = "user.";
const NTFS_ATTRIB: &str = "system.ntfs_attrib";
const NTFS_ACL: &str = "system.ntfs_acl";
const NTFS_REPARSE: &str = "system.ntfs_reparse_data";
const NTFS_DOS_NAME: &str = "system.ntfs_dos_name";
const NTFS_CRTIME: &str = "system.ntfs_crtime";
/// Largest value the Linux xattr interface can return.
const XATTR_SIZE_MAX: u64 = 65536;

impl Vfs {
    pub fn listxattr(&self, ino: Ino) -> VfsResult<Vec<String>> {
        let mut v: Vec<String> = self
            .view
            .named_streams(ino)?
            .into_iter()
            .map(|(n, _)| format!("{XATTR_STREAM_PREFIX}{n}"))
            .collect();
        let m = self.view.win_meta(ino)?;
        if let Some((t, b)) = &m.xattrs {
            for (n, _) in parse_linux_xattrs(*t, b) {
                if !v.iter().any(|x| x == n) {
                    v.push(n.to_string());
                }
            }
        }
        v.push(NTFS_ATTRIB.into());
        v.push(NTFS_CRTIME.into());
        if m.security.is_some() {
            v.push(NTFS_ACL.into());
        }
        if m.reparse.is_some() {
            v.push(NTFS_REPARSE.into());
        }
        if m.short_name.is_some() {
            v.push(NTFS_DOS_NAME.into());
        }
        Ok(v)
    }

    /// A named stream (`user.NAME`), else a Linux xattr stored with
    /// `--unix-data`, else Windows metadata under ntfs-3g's names.
    pub fn getxattr(&self, ino: Ino, name: &str) -> VfsResult<Vec<u8>> {
        if let Some(sname) = name.strip_prefix(XATTR_STREAM_PREFIX) {
            if let Some(d) = self.view.named_stream(ino, sname)? {
                return self.data_bytes(&d, XATTR_SIZE_MAX);
            }
        }
        if let Some((t, b)) = self.view.linux_xattrs(ino)? {
            if let Some((_, v)) = parse_linux_xattrs(t, &b)
                .into_iter()
                .find(|(n, _)| *n == name)
            {
                return Ok(v.to_vec());
            }
        }
        if !matches!(
            name,
            NTFS_ATTRIB | NTFS_CRTIME | NTFS_ACL | NTFS_DOS_NAME | NTFS_REPARSE
        ) {
            // Asked for by tools on every file (ACLs, capabilities,
            // SELinux labels): answered without gathering the metadata.
            return Err(VfsError::NoAttr);
        }
        let m = self.view.win_meta(ino)?;
        match name {
            NTFS_ATTRIB => Ok(m.attributes.to_le_bytes().to_vec()),
            NTFS_CRTIME => Ok(m.creation_time.to_le_bytes().to_vec()),
            NTFS_ACL => m.security.ok_or(VfsError::NoAttr),
            NTFS_DOS_NAME => m.short_name.map(|s| s.into_bytes()).ok_or(VfsError::NoAttr),
            NTFS_REPARSE => match m.reparse {
                Some((tag, d)) => {
                    let data = match d {
                        Some(d) => self.data_bytes(&d, XATTR_SIZE_MAX - 8)?,
                        None => Vec::new(),
                    };
                    Ok(reparse_xattr(tag, &data))
                }
                None => Err(VfsError::NoAttr),
            },
            _ => Err(VfsError::NoAttr),
        }
    }

    /// All of a (small) stream's content.
    fn data_bytes(&self, d: &Data, max: u64) -> VfsResult<Vec<u8>> {
        match d {
            Data::Inline(v) if v.len() as u64 > max => Err(VfsError::TooBig),
            Data::Inline(v) => Ok(v.as_ref().clone()),
            Data::Base { blob: Some(b), .. } => read_all(&self.cache, b, max),
            Data::Base { .. } => Ok(Vec::new()),
            Data::Staged(s) => {
                if s.size() > max {
                    return Err(VfsError::TooBig);
                }
                let mut v = vec![0u8; s.size() as usize];
                let n = s.read(0, &mut v)?;
                v.truncate(n);
                Ok(v)
            }
        }
    }
}

/// The `system.ntfs_reparse_data` value: tag, length, reserved, data.
fn reparse_xattr(tag: u32, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + data.len());
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(&(data.len() as u16).to_le_bytes());
    v.extend_from_slice(&0u16.to_le_bytes());
    v.extend_from_slice(data);
    v
}

/// Linux xattrs that wimlib stored with `--unix-data` (name, value), from
/// either tagged-item format (`t`); a malformed entry ends the list.
fn parse_linux_xattrs(t: u32, b: &[u8]) -> Vec<(&str, &[u8])> {
    let t = &t;
    let mut out = Vec::new();
    let mut p = 0usize;
    if *t == tag::XATTRS {
        // u16 value_len, u8 name_len, u8 flags, name, NUL, value.
        while p + 4 <= b.len() {
            let vlen = u16::from_le_bytes([b[p], b[p + 1]]) as usize;
            let nlen = b[p + 2] as usize;
            let name_at = p + 4;
            let val_at = name_at + nlen + 1;
            let end = val_at + vlen;
            if nlen == 0 || end > b.len() || b[name_at + nlen] != 0 {
                break;
            }
            let Ok(n) = std::str::from_utf8(&b[name_at..name_at + nlen]) else {
                break;
            };
            out.push((n, &b[val_at..end]));
            p = end;
        }
    } else if *t == tag::LINUX_XATTRS {
        // u16 name_len, u16 reserved, u32 value_len, name, value, pad to 4.
        while p + 8 <= b.len() {
            let nlen = u16::from_le_bytes([b[p], b[p + 1]]) as usize;
            let vlen = u32::from_le_bytes([b[p + 4], b[p + 5], b[p + 6], b[p + 7]]) as usize;
            let name_at = p + 8;
            let val_at = name_at + nlen;
            let Some(end) = val_at.checked_add(vlen).filter(|&e| e <= b.len()) else {
                break;
            };
            if nlen == 0 {
                break;
            }
            let Ok(n) = std::str::from_utf8(&b[name_at..val_at]) else {
                break;
            };
            out.push((n, &b[val_at..end]));
            p = (end + 3) & !3;
        }
    }
    out
}
