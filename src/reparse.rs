//! Reparse-point data: decoding symlink and junction targets and turning
//! them into POSIX symlink targets.

use crate::wim::bytes::utf16le_to_string;

pub const TAG_SYMLINK: u32 = 0xA000_000C;
pub const TAG_MOUNT_POINT: u32 = 0xA000_0003;
/// Symlink flag: the target is relative.
pub const SYMLINK_FLAG_RELATIVE: u32 = 1;
/// Dentry `rp_flags` bit: the target was NOT fixed up at capture.
pub const RP_NOT_FIXED: u16 = 1;

/// A decoded symlink or junction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTarget {
    pub substitute: String,
    pub print: String,
    pub relative: bool,
    pub junction: bool,
}

/// Decode reparse data (the stored stream: without the 8-byte header).
pub fn decode(tag: u32, data: &[u8]) -> Option<LinkTarget> {
    let u16at = |i: usize| {
        data.get(i..i + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let (base, flags) = match tag {
        TAG_SYMLINK => (
            12usize,
            u32::from_le_bytes(data.get(8..12)?.try_into().ok()?),
        ),
        TAG_MOUNT_POINT => (8usize, 0),
        _ => return None,
    };
    let name = |off: usize, len: usize| -> Option<String> {
        let s = base.checked_add(off)?;
        Some(utf16le_to_string(data.get(s..s.checked_add(len)?)?))
    };
    let substitute = name(u16at(0)?, u16at(2)?)?;
    let print = name(u16at(4)?, u16at(6)?)?;
    Some(LinkTarget {
        substitute,
        print,
        relative: tag == TAG_SYMLINK && flags & SYMLINK_FLAG_RELATIVE != 0,
        junction: tag == TAG_MOUNT_POINT,
    })
}

/// Encode a symlink's reparse data (without header), as Windows writes it.
pub fn encode_symlink(target_windows: &str, relative: bool) -> Vec<u8> {
    let sub: Vec<u8> = if relative {
        target_windows
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect()
    } else {
        format!("\\??\\{target_windows}")
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect()
    };
    let print: Vec<u8> = target_windows
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let mut o = Vec::new();
    o.extend_from_slice(&0u16.to_le_bytes());
    o.extend_from_slice(&(sub.len() as u16).to_le_bytes());
    o.extend_from_slice(&(sub.len() as u16).to_le_bytes());
    o.extend_from_slice(&(print.len() as u16).to_le_bytes());
    o.extend_from_slice(&(if relative { SYMLINK_FLAG_RELATIVE } else { 0 }).to_le_bytes());
    o.extend_from_slice(&sub);
    o.extend_from_slice(&print);
    o
}

/// The POSIX target for a link. Absolute Windows targets (`\??\C:\x\y`)
/// lose their prefix and drive letter; when the capture fixed them up to be
/// relative to the image root (`fixed`), they are placed under `root` (the
/// extraction or mount directory), as wimlib does.
pub fn posix_target(t: &LinkTarget, fixed: bool, root: &str) -> String {
    let mut s = if t.substitute.is_empty() {
        t.print.clone()
    } else {
        t.substitute.clone()
    };
    if t.relative {
        return s.replace('\\', "/");
    }
    for p in ["\\??\\", "\\\\?\\", "\\DosDevices\\"] {
        if let Some(r) = s.strip_prefix(p) {
            s = r.to_string();
            break;
        }
    }
    let b = s.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        s = s[2..].to_string();
    }
    let posix = s.replace('\\', "/");
    let posix = if posix.starts_with('/') {
        posix
    } else {
        format!("/{posix}")
    };
    if fixed {
        format!("{}{}", root.trim_end_matches('/'), posix)
    } else {
        posix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_round_trip() {
        let d = encode_symlink("C:\\Windows\\System32", false);
        let t = decode(TAG_SYMLINK, &d).unwrap();
        assert_eq!(t.substitute, "\\??\\C:\\Windows\\System32");
        assert!(!t.relative);
        assert_eq!(posix_target(&t, false, "/mnt"), "/Windows/System32");
        assert_eq!(posix_target(&t, true, "/mnt/"), "/mnt/Windows/System32");
        let r = decode(TAG_SYMLINK, &encode_symlink("..\\a\\b", true)).unwrap();
        assert_eq!(posix_target(&r, true, "/mnt"), "../a/b");
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(decode(TAG_SYMLINK, &[1, 2, 3]), None);
        assert_eq!(decode(TAG_SYMLINK, &[0xff; 12]), None);
        assert_eq!(decode(0x1234, &[0; 40]), None);
    }
}
