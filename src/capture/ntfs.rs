//! The xattrs of a capture source: `user.*` ones become named streams,
//! ntfs-3g's `system.ntfs_*` ones carry Windows metadata; and symlink
//! targets become reparse data.

use crate::error::{Error, Result};
use std::path::Path;

/// What the xattrs of one file say.
#[derive(Debug, Default)]
pub struct Xattrs {
    /// `user.NAME` values, by NAME (named streams).
    pub streams: Vec<(String, Vec<u8>)>,
    /// Every xattr but ntfs-3g's `system.*` ones (for wimlib's xattr item).
    pub linux: Vec<(String, Vec<u8>)>,
    /// `system.ntfs_attrib`.
    pub attributes: Option<u32>,
    /// `system.ntfs_acl`: a self-relative security descriptor.
    pub security: Option<Vec<u8>>,
    /// `system.ntfs_reparse_data`: (tag, data without its 8-byte header).
    pub reparse: Option<(u32, Vec<u8>)>,
    /// `system.ntfs_dos_name`.
    pub short_name: Option<String>,
    /// `system.ntfs_crtime` (a FILETIME).
    pub creation_time: Option<u64>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |err| Error::Io {
        path: path.display().to_string(),
        err,
    }
}

/// ntfs-3g's xattrs that carry Windows metadata. ntfs-3g answers for
/// them but does not list them, so on an ntfs-3g mount each is asked for.
const NTFS_XATTRS: [&str; 5] = [
    "system.ntfs_attrib",
    "system.ntfs_acl",
    "system.ntfs_reparse_data",
    "system.ntfs_dos_name",
    "system.ntfs_crtime",
];

/// Is `root` on an ntfs-3g mount (one that answers for its Windows
/// metadata)? Asked once per capture: elsewhere the five extra calls per
/// file would be wasted.
pub fn is_ntfs3g(root: &Path) -> bool {
    matches!(
        crate::sys::get_xattr_nofollow(root, "system.ntfs_attrib"),
        Ok(Some(v)) if v.len() == 4
    )
}

/// Read the xattrs of `path` (not following a symlink); with `ntfs`, also
/// ntfs-3g's Windows metadata.
pub fn read(path: &Path, ntfs: bool) -> Result<Xattrs> {
    let mut x = Xattrs::default();
    let mut names = crate::sys::list_xattrs_nofollow(path).map_err(io(path))?;
    if ntfs {
        for n in NTFS_XATTRS {
            if !names.iter().any(|m| m == n) {
                names.push(n.to_string());
            }
        }
    }
    for name in names {
        let wanted = name.starts_with("user.")
            || name.starts_with("trusted.")
            || name.starts_with("security.")
            || NTFS_XATTRS.contains(&name.as_str());
        if !wanted {
            continue;
        }
        // Gone since it was listed: nothing to store (ntfs-3g lists
        // `system.ntfs_reparse_data` on files that have none).
        let v = match crate::sys::get_xattr_nofollow(path, &name) {
            Ok(Some(v)) => v,
            Ok(None) => continue,
            // ntfs-3g refuses a DOS name on the root (it has none).
            Err(e)
                if name == "system.ntfs_dos_name"
                    && e.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                continue
            }
            Err(e) => return Err(io(path)(e)),
        };
        let u32_of = |v: &[u8]| {
            v.get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        match name.as_str() {
            "system.ntfs_attrib" => x.attributes = u32_of(&v),
            "system.ntfs_acl" if !v.is_empty() => x.security = Some(v),
            "system.ntfs_reparse_data" if v.len() >= 8 => {
                let tag = u32_of(&v).unwrap_or(0);
                let len = u16::from_le_bytes([v[4], v[5]]) as usize;
                let data = v[8..].get(..len).unwrap_or(&v[8..]).to_vec();
                x.reparse = Some((tag, data));
            }
            "system.ntfs_dos_name" => {
                let s = String::from_utf8_lossy(&v)
                    .trim_end_matches('\0')
                    .to_string();
                if !s.is_empty() {
                    x.short_name = Some(s);
                }
            }
            "system.ntfs_crtime" if v.len() >= 8 => {
                x.creation_time = Some(u64::from_le_bytes([
                    v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7],
                ]))
            }
            n if n.starts_with("system.") => {}
            n => {
                if let Some(s) = n.strip_prefix("user.") {
                    // A name Windows cannot hold as a stream name stays in
                    // the xattr item only.
                    if !s.is_empty() && !s.contains([':', '/', '\\']) {
                        x.streams.push((s.to_string(), v.clone()));
                    }
                }
                x.linux.push((name.clone(), v));
            }
        }
    }
    Ok(x)
}

/// wimlib's xattr tagged item: for each, u16 value length, u8 name length,
/// u8 flags (0), the name, a NUL, the value. `None` when there is nothing
/// to store or a name or value does not fit the format.
pub fn xattr_item(xattrs: &[(String, Vec<u8>)]) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    for (n, val) in xattrs {
        let (Ok(nl), Ok(vl)) = (u8::try_from(n.len()), u16::try_from(val.len())) else {
            log::warn!("xattr {n} is too long for the WIM's xattr item; left out");
            continue;
        };
        v.extend_from_slice(&vl.to_le_bytes());
        v.push(nl);
        v.push(0);
        v.extend_from_slice(n.as_bytes());
        v.push(0);
        v.extend_from_slice(val);
    }
    (!v.is_empty()).then_some(v)
}

/// Symlink reparse data (without its 8-byte header) for a Windows target,
/// each name followed by a NUL as Windows writes them: substitute name
/// `\??\C:\x` and print name `C:\x` for an absolute target, the target
/// itself twice for a relative one.
pub fn symlink_reparse(windows_target: &str, relative: bool) -> Vec<u8> {
    let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect() };
    let (sub, print) = if relative {
        (utf16(windows_target), utf16(windows_target))
    } else {
        (
            utf16(&format!("\\??\\{windows_target}")),
            utf16(windows_target),
        )
    };
    let mut o = Vec::with_capacity(12 + sub.len() + print.len() + 4);
    o.extend_from_slice(&0u16.to_le_bytes());
    o.extend_from_slice(&(sub.len() as u16).to_le_bytes());
    o.extend_from_slice(&(sub.len() as u16 + 2).to_le_bytes());
    o.extend_from_slice(&(print.len() as u16).to_le_bytes());
    let flags = if relative {
        crate::reparse::SYMLINK_FLAG_RELATIVE
    } else {
        0
    };
    o.extend_from_slice(&flags.to_le_bytes());
    o.extend_from_slice(&sub);
    o.extend_from_slice(&[0, 0]);
    o.extend_from_slice(&print);
    o.extend_from_slice(&[0, 0]);
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reparse::{decode, posix_target, TAG_SYMLINK};

    #[test]
    fn symlink_data_decodes_and_matches_wimlib_layout() {
        // What wimlib stores for a link to /d/f fixed to the image root:
        // 48 bytes, print name at 22.
        let d = symlink_reparse("C:\\d\\f", false);
        assert_eq!(d.len(), 48);
        assert_eq!(&d[..12], &[0, 0, 20, 0, 22, 0, 12, 0, 0, 0, 0, 0]);
        let t = decode(TAG_SYMLINK, &d).unwrap();
        assert_eq!(t.substitute, "\\??\\C:\\d\\f");
        assert_eq!(t.print, "C:\\d\\f");
        assert_eq!(posix_target(&t, true, "/x"), "/x/d/f");
        let r = symlink_reparse("..\\x", true);
        assert_eq!(r.len(), 32);
        assert_eq!(
            posix_target(&decode(TAG_SYMLINK, &r).unwrap(), true, "/"),
            "../x"
        );
    }

    #[test]
    fn xattr_item_layout() {
        let v = xattr_item(&[("user.foo".into(), b"bar".to_vec())]).unwrap();
        assert_eq!(v, b"\x03\x00\x08\x00user.foo\x00bar");
        assert_eq!(xattr_item(&[]), None);
    }
}
