//! Extended attributes: named data streams as `user.NAME`, and Windows
//! metadata under the names ntfs-3g uses, so tools and habits carry over.

use super::{read_all, Ino, Vfs, VfsError, VfsResult};
use crate::image::StreamKind;

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
        let (idx, node) = self.inode(ino)?;
        let mut v: Vec<String> = node
            .named()
            .filter(|s| s.kind == StreamKind::Data)
            .map(|s| format!("{XATTR_STREAM_PREFIX}{}", s.name))
            .collect();
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
        let (idx, node) = self.inode(ino)?;
        if let Some(sname) = name.strip_prefix(XATTR_STREAM_PREFIX) {
            let s = node.named().find(|s| s.name == sname).ok_or(VfsError::NoAttr)?;
            return match &s.blob {
                Some(b) => read_all(&self.cache, b, XATTR_SIZE_MAX),
                None => Ok(Vec::new()),
            };
        }
        match name {
            NTFS_ATTRIB => Ok(node.attributes.to_le_bytes().to_vec()),
            NTFS_CRTIME => Ok(node.creation_time.to_le_bytes().to_vec()),
            NTFS_ACL => self.image.security_descriptor(node.security_id).map(|s| s.to_vec()).ok_or(VfsError::NoAttr),
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
                let mut v = Vec::with_capacity(8 + data.len());
                v.extend_from_slice(&node.reparse_tag.to_le_bytes());
                v.extend_from_slice(&(data.len() as u16).to_le_bytes());
                v.extend_from_slice(&0u16.to_le_bytes());
                v.extend_from_slice(&data);
                Ok(v)
            }
            _ => Err(VfsError::NoAttr),
        }
    }
}
