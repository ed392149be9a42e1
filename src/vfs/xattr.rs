//! Extended attributes: named data streams as `user.NAME`, and Windows
//! metadata under the names ntfs-3g uses, so tools and habits carry over.

use super::{read_all, Ino, Vfs, VfsError, VfsResult};
use crate::image::{Inode, StreamKind};
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
        if let Some(ov) = &self.rw {
            let mut v: Vec<String> = ov
                .named_streams(ino)?
                .into_iter()
                .map(|(n, _)| format!("{XATTR_STREAM_PREFIX}{n}"))
                .collect();
            let m = ov.win_meta(ino)?;
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
            return Ok(v);
        }
        let (idx, node) = self.inode(ino)?;
        let mut v: Vec<String> = node
            .named()
            .filter(|s| s.kind == StreamKind::Data)
            .map(|s| format!("{XATTR_STREAM_PREFIX}{}", s.name))
            .collect();
        for (n, _) in linux_xattrs(node) {
            if !v.iter().any(|x| x == n) {
                v.push(n.to_string());
            }
        }
        v.push(NTFS_ATTRIB.into());
        v.push(NTFS_CRTIME.into());
        if self.image.security_descriptor(node.security_id).is_some() {
            v.push(NTFS_ACL.into());
        }
        if node.is_reparse() {
            v.push(NTFS_REPARSE.into());
        }
        let d = self.dentry_of(idx);
        if !self.image.dentries[d as usize].short_name.is_empty() {
            v.push(NTFS_DOS_NAME.into());
        }
        Ok(v)
    }

    pub fn getxattr(&self, ino: Ino, name: &str) -> VfsResult<Vec<u8>> {
        if let Some(ov) = &self.rw {
            if let Some(sname) = name.strip_prefix(XATTR_STREAM_PREFIX) {
                if let Some((_, d)) = ov.named_streams(ino)?.into_iter().find(|(n, _)| n == sname) {
                    return self.data_bytes(&d, XATTR_SIZE_MAX);
                }
            }
            let m = ov.win_meta(ino)?;
            if let Some((t, b)) = &m.xattrs {
                if let Some((_, v)) = parse_linux_xattrs(*t, b)
                    .into_iter()
                    .find(|(n, _)| *n == name)
                {
                    return Ok(v.to_vec());
                }
            }
            return match name {
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
            };
        }
        let (idx, node) = self.inode(ino)?;
        if let Some(sname) = name.strip_prefix(XATTR_STREAM_PREFIX) {
            if let Some(s) = node.named().find(|s| s.name == sname) {
                return match &s.blob {
                    Some(b) => read_all(&self.cache, b, XATTR_SIZE_MAX),
                    None => Ok(Vec::new()),
                };
            }
        }
        if let Some((_, v)) = linux_xattrs(node).into_iter().find(|(n, _)| *n == name) {
            return Ok(v.to_vec());
        }
        match name {
            NTFS_ATTRIB => Ok(node.attributes.to_le_bytes().to_vec()),
            NTFS_CRTIME => Ok(node.creation_time.to_le_bytes().to_vec()),
            NTFS_ACL => self
                .image
                .security_descriptor(node.security_id)
                .map(|s| s.to_vec())
                .ok_or(VfsError::NoAttr),
            NTFS_DOS_NAME => {
                let d = self.dentry_of(idx);
                let s = &self.image.dentries[d as usize].short_name;
                if s.is_empty() {
                    Err(VfsError::NoAttr)
                } else {
                    Ok(s.as_bytes().to_vec())
                }
            }
            NTFS_REPARSE if node.is_reparse() => {
                let data = match node.reparse().and_then(|s| s.blob.clone()) {
                    Some(b) => read_all(&self.cache, &b, XATTR_SIZE_MAX - 8)?,
                    None => Vec::new(),
                };
                Ok(reparse_xattr(node.reparse_tag, &data))
            }
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
/// either tagged-item format; a malformed entry ends the list.
fn linux_xattrs(node: &Inode) -> Vec<(&str, &[u8])> {
    match &node.xattrs {
        Some((t, b)) => parse_linux_xattrs(*t, b),
        None => Vec::new(),
    }
}

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
