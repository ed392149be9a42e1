//! Extended attributes: named data streams as `user.NAME`, and Windows
//! metadata under the names ntfs-3g uses, so tools and habits carry over.

use super::{read_all, Ino, NtTimes, ReadView, Vfs, VfsError, VfsResult};
use crate::overlay::Data;
use crate::wim::metadata::tag;

pub const XATTR_STREAM_PREFIX: &str = "user.";
const NTFS_ATTRIB: &str = "system.ntfs_attrib";
const NTFS_ACL: &str = "system.ntfs_acl";
const NTFS_REPARSE: &str = "system.ntfs_reparse_data";
const NTFS_DOS_NAME: &str = "system.ntfs_dos_name";
const NTFS_CRTIME: &str = "system.ntfs_crtime";
// Read and set, never listed (as ntfs-3g): the same values big-endian, and
// the four times at once.
const NTFS_ATTRIB_BE: &str = "system.ntfs_attrib_be";
const NTFS_CRTIME_BE: &str = "system.ntfs_crtime_be";
const NTFS_TIMES: &str = "system.ntfs_times";
const NTFS_TIMES_BE: &str = "system.ntfs_times_be";
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
            // A set, not a scan of `v` per name: an entry of a hostile WIM
            // may carry tens of thousands of streams and xattrs.
            let mut seen: std::collections::HashSet<String> = v.iter().cloned().collect();
            for (n, _) in parse_linux_xattrs(*t, b) {
                if seen.insert(n.to_string()) {
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
        if let Some(v) = self.get_ntfs_times(ino, name)? {
            return Ok(v);
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

    /// The big-endian and all-times variants, which need the times of
    /// [`Vfs::getattr`] (None for other names).
    fn get_ntfs_times(&self, ino: Ino, name: &str) -> VfsResult<Option<Vec<u8>>> {
        if !matches!(
            name,
            NTFS_ATTRIB_BE | NTFS_CRTIME_BE | NTFS_TIMES | NTFS_TIMES_BE
        ) {
            return Ok(None);
        }
        let a = self.getattr(ino)?;
        let ft = |(s, ns): (i64, u32)| crate::time::unix_to_filetime(s, ns);
        // ntfs-3g's order: creation, last write, last access, change (a
        // WIM keeps no change time: the last write time stands in).
        let times = [ft(a.crtime), ft(a.mtime), ft(a.atime), ft(a.mtime)];
        Ok(Some(match name {
            NTFS_ATTRIB_BE => a.attributes.to_be_bytes().to_vec(),
            NTFS_CRTIME_BE => times[0].to_be_bytes().to_vec(),
            NTFS_TIMES => times.iter().flat_map(|t| t.to_le_bytes()).collect(),
            _ => times.iter().flat_map(|t| t.to_be_bytes()).collect(),
        }))
    }

    /// Set Windows metadata through ntfs-3g's xattr names and value
    /// formats; None when `name` is not one of them. A value of the wrong
    /// size or shape is [`VfsError::Invalid`] and changes nothing.
    pub(super) fn set_ntfs_xattr(&self, ino: Ino, name: &str, v: &[u8]) -> Option<VfsResult<()>> {
        let u32_of = |be: bool| -> VfsResult<u32> {
            let b: [u8; 4] = v.try_into().map_err(|_| VfsError::Invalid)?;
            Ok(if be {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            })
        };
        let r = match name {
            NTFS_ATTRIB | NTFS_ATTRIB_BE => {
                u32_of(name == NTFS_ATTRIB_BE).and_then(|a| self.set_attributes(ino, a).map(drop))
            }
            NTFS_CRTIME | NTFS_CRTIME_BE | NTFS_TIMES | NTFS_TIMES_BE => {
                let be = name.ends_with("_be");
                parse_times(v, be, name.starts_with(NTFS_TIMES))
                    .and_then(|t| self.set_times(ino, &t).map(drop))
            }
            NTFS_ACL => self.set_security(ino, v),
            NTFS_REPARSE => match parse_reparse_xattr(v) {
                Some((tag, data)) => self.set_reparse(ino, tag, data),
                None => Err(VfsError::Invalid),
            },
            NTFS_DOS_NAME => Err(VfsError::not_supported()),
            _ => return None,
        };
        Some(r)
    }

    /// Remove Windows metadata under ntfs-3g's names: only reparse data
    /// can go (the others always exist). None for other names.
    pub(super) fn remove_ntfs_xattr(&self, ino: Ino, name: &str) -> Option<VfsResult<()>> {
        match name {
            NTFS_REPARSE => Some(self.delete_reparse(ino)),
            NTFS_ATTRIB | NTFS_ATTRIB_BE | NTFS_CRTIME | NTFS_CRTIME_BE | NTFS_TIMES
            | NTFS_TIMES_BE | NTFS_ACL | NTFS_DOS_NAME => Some(Err(VfsError::not_supported())),
            _ => None,
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

/// Times from `system.ntfs_crtime` (one FILETIME) or `system.ntfs_times`
/// (`all`: 8, 16, 24 or 32 bytes, setting that many of creation, last
/// write, last access and change, as ntfs-3g does); `be` for the `_be`
/// variants.
fn parse_times(v: &[u8], be: bool, all: bool) -> VfsResult<NtTimes> {
    let ok = if all {
        matches!(v.len(), 8 | 16 | 24 | 32)
    } else {
        v.len() == 8
    };
    if !ok {
        return Err(VfsError::Invalid);
    }
    let t: Vec<u64> = v
        .chunks_exact(8)
        .map(|c| {
            let b: [u8; 8] = c.try_into().unwrap_or_default();
            if be {
                u64::from_be_bytes(b)
            } else {
                u64::from_le_bytes(b)
            }
        })
        .collect();
    // A FILETIME past i64::MAX cannot be shown as a Unix time.
    if t.iter().any(|&x| x > i64::MAX as u64) {
        return Err(VfsError::Invalid);
    }
    Ok(NtTimes {
        creation: t.first().copied(),
        last_write: t.get(1).copied(),
        last_access: t.get(2).copied(),
        change: t.get(3).copied(),
    })
}

/// A `system.ntfs_reparse_data` value (REPARSE_DATA_BUFFER): tag, data
/// length, reserved, then exactly that much data. None when malformed.
fn parse_reparse_xattr(v: &[u8]) -> Option<(u32, &[u8])> {
    let tag = u32::from_le_bytes(v.get(0..4)?.try_into().ok()?);
    let len = u16::from_le_bytes(v.get(4..6)?.try_into().ok()?) as usize;
    let data = v.get(8..)?;
    (data.len() == len).then_some((tag, data))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntfs_value_formats() {
        let ft: Vec<u8> = [1u64, 2, 3, 4]
            .iter()
            .flat_map(|t| t.to_le_bytes())
            .collect();
        let t = parse_times(&ft, false, true).unwrap();
        assert_eq!(
            t,
            NtTimes {
                creation: Some(1),
                last_write: Some(2),
                last_access: Some(3),
                change: Some(4)
            }
        );
        let t = parse_times(&ft[..16], false, true).unwrap();
        assert_eq!(
            (t.creation, t.last_write, t.last_access),
            (Some(1), Some(2), None)
        );
        assert_eq!(
            parse_times(&5u64.to_be_bytes(), true, false)
                .unwrap()
                .creation,
            Some(5)
        );
        for n in [0, 4, 7, 9, 31, 33, 40] {
            let v = vec![0u8; n];
            assert_eq!(
                parse_times(&v, false, true),
                Err(VfsError::Invalid),
                "{n} bytes"
            );
        }
        assert_eq!(parse_times(&ft[..16], false, false), Err(VfsError::Invalid));
        assert_eq!(
            parse_times(&[0xff; 8], false, false),
            Err(VfsError::Invalid)
        );

        let rp = reparse_xattr(0xA000_0003, &[1, 2, 3]);
        assert_eq!(
            parse_reparse_xattr(&rp),
            Some((0xA000_0003, &[1u8, 2, 3][..]))
        );
        assert_eq!(parse_reparse_xattr(&rp[..rp.len() - 1]), None);
        let mut long = rp.clone();
        long.push(0);
        assert_eq!(parse_reparse_xattr(&long), None);
        assert_eq!(parse_reparse_xattr(&rp[..7]), None);
    }
}
