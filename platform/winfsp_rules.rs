//! The decisions of the WinFsp adapter, in platform-neutral code so they
//! are tested on Linux: the volume it presents, how a security descriptor
//! is fitted into the buffer of WinFsp's first security query, and how
//! named streams are listed. `platform/windows` only copies these values
//! into WinFsp's structures.

/// The volume a WinFsp mount presents: NTFS-like, so Explorer, cmd,
/// robocopy and DISM's `/Image:` servicing treat it as they treat NTFS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeChoice {
    /// Bytes per sector and sectors per cluster (4 KiB clusters, as
    /// `ntvfs` rounds allocation sizes).
    pub sector_size: u16,
    pub sectors_per_allocation_unit: u16,
    /// Longest name component in UTF-16 units (NTFS: 255).
    pub max_component_length: u16,
    /// Names compare ignoring case (the NT layer folds them as NTFS does)
    /// and keep the case they were created with.
    pub case_sensitive_search: bool,
    pub case_preserved_names: bool,
    pub unicode_on_disk: bool,
    /// Security descriptors are stored per file (the image's security
    /// table), so Windows checks access against them.
    pub persistent_acls: bool,
    pub reparse_points: bool,
    /// Let Windows check access to reparse points as to files.
    pub reparse_points_access_check: bool,
    pub named_streams: bool,
    /// A read-only mount says so, so programs do not even try to write.
    pub read_only_volume: bool,
    /// The NT layer matches patterns itself (case-insensitive wildcards).
    pub pass_query_directory_pattern: bool,
    /// Cleanup is called only when a handle changed something (or asked
    /// for deletion): fewer round trips for the common read.
    pub post_cleanup_when_modified_only: bool,
    /// How long (ms) Windows may cache file, directory, volume and
    /// security information: a read-only image never changes, a
    /// read-write mount changes only through this adapter but hard links
    /// change other names' information, so 1 s.
    pub info_timeout_ms: u32,
    /// The file system name Windows shows (GetVolumeInformation,
    /// `fsutil fsinfo volumeinfo`): "NTFS", because programs decide from
    /// it whether to use NTFS features (streams, ACLs, hard links: robocopy
    /// /COPYALL, DISM's /Image: servicing); the volume label names the
    /// image.
    pub filesystem_name: &'static str,
}

/// The volume of a mount (`rw`: read-write).
pub fn volume(rw: bool) -> VolumeChoice {
    VolumeChoice {
        sector_size: 4096,
        sectors_per_allocation_unit: 1,
        max_component_length: 255,
        case_sensitive_search: false,
        case_preserved_names: true,
        unicode_on_disk: true,
        persistent_acls: true,
        reparse_points: true,
        reparse_points_access_check: false,
        named_streams: true,
        read_only_volume: !rw,
        pass_query_directory_pattern: true,
        post_cleanup_when_modified_only: true,
        info_timeout_ms: if rw { 1000 } else { u32::MAX },
        filesystem_name: "NTFS",
    }
}

/// What to hand WinFsp for its security query with a buffer of
/// `capacity` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityFit {
    /// The descriptor as stored fits.
    Whole,
    /// It does not, but without its SACL it does: the query is for an
    /// access check, which reads owner, group and DACL only (WinFsp checks
    /// ACCESS_SYSTEM_SECURITY against the caller's privilege, not the
    /// SACL). The SACL is still returned whole by the per-handle query.
    WithoutSacl(Vec<u8>),
    /// Even that does not fit: `needed` bytes.
    TooLarge { needed: usize },
}

/// Fit the self-relative security descriptor `sd` into `capacity` bytes.
///
/// Why: WinFsp's first GetSecurityByName offers 1,024 bytes and expects
/// STATUS_BUFFER_OVERFLOW with the needed size written back to retry with
/// a larger buffer; winfsp-rs 0.13 writes the size back only on success,
/// so a larger descriptor cannot ask for the retry (WinFsp would retry with
/// the same 1,024 bytes forever). Most large descriptors are large because
/// of audit entries, which an access check does not need.
pub fn fit_security(sd: &[u8], capacity: usize) -> SecurityFit {
    if sd.len() <= capacity {
        return SecurityFit::Whole;
    }
    match without_sacl(sd) {
        Some(t) if t.len() <= capacity => SecurityFit::WithoutSacl(t),
        Some(t) => SecurityFit::TooLarge { needed: t.len() },
        None => SecurityFit::TooLarge { needed: sd.len() },
    }
}

const SE_SACL_PRESENT: u16 = 0x0010;
const SE_SACL_DEFAULTED: u16 = 0x0008;
const SE_SACL_AUTO_INHERITED: u16 = 0x0800;
const SE_SACL_PROTECTED: u16 = 0x2000;
const SE_SELF_RELATIVE: u16 = 0x8000;
/// Revision, Sbz1, Control, and four offsets.
const SD_HEADER: usize = 20;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The SID at `off` (0: none), checked against the buffer.
fn sid_at(sd: &[u8], off: u32) -> Option<Option<&[u8]>> {
    if off == 0 {
        return Some(None);
    }
    let off = off as usize;
    let n = *sd.get(off + 1)? as usize;
    let len = 8 + 4 * n;
    sd.get(off..off + len).map(Some)
}

/// The ACL at `off` (0: none), checked against the buffer.
fn acl_at(sd: &[u8], off: u32) -> Option<Option<&[u8]>> {
    if off == 0 {
        return Some(None);
    }
    let off = off as usize;
    let len = u16_at(sd, off + 2)? as usize;
    if len < 8 {
        return None;
    }
    sd.get(off..off + len).map(Some)
}

/// `sd` (self-relative) without its SACL: owner, group and DACL copied
/// after a new header. `None` if `sd` is not a well-formed self-relative
/// descriptor (nothing read from an image is trusted).
pub fn without_sacl(sd: &[u8]) -> Option<Vec<u8>> {
    if sd.len() < SD_HEADER || sd[0] != 1 {
        return None;
    }
    let control = u16_at(sd, 2)?;
    if control & SE_SELF_RELATIVE == 0 {
        return None;
    }
    let owner = sid_at(sd, u32_at(sd, 4)?)?;
    let group = sid_at(sd, u32_at(sd, 8)?)?;
    let dacl = acl_at(sd, u32_at(sd, 16)?)?;
    let mut out = vec![0u8; SD_HEADER];
    out[0] = 1;
    let control = control
        & !(SE_SACL_PRESENT | SE_SACL_DEFAULTED | SE_SACL_AUTO_INHERITED | SE_SACL_PROTECTED);
    out[2..4].copy_from_slice(&control.to_le_bytes());
    let put = |part: Option<&[u8]>, field: usize, out: &mut Vec<u8>| {
        if let Some(p) = part {
            let at = out.len() as u32;
            out[field..field + 4].copy_from_slice(&at.to_le_bytes());
            out.extend_from_slice(p);
        }
    };
    put(owner, 4, &mut out);
    put(group, 8, &mut out);
    put(dacl, 16, &mut out);
    Some(out)
}

/// WinFsp's create options word carries the create disposition in its
/// top byte (as the kernel's IRP does); the NT layer takes the options
/// alone (and the disposition from which callback was called).
pub fn options_only(raw: u32) -> u32 {
    raw & 0x00ff_ffff
}

/// The entries of FileStreamInformation: the unnamed stream `::$DATA`
/// (files only) and each named one as `:NAME:$DATA`, with their sizes.
pub fn stream_entries(is_dir: bool, file_size: u64, named: &[(String, u64)]) -> Vec<(String, u64)> {
    let mut v = Vec::with_capacity(named.len() + 1);
    if !is_dir {
        v.push(("::$DATA".to_string(), file_size));
    }
    v.extend(named.iter().map(|(n, s)| (format!(":{n}:$DATA"), *s)));
    v
}

/// The normalized name of an open (the path with every name as stored)
/// in UTF-16 for WinFsp's response buffer of `capacity` bytes, or `None`
/// when it does not fit: WinFsp then keeps the name the caller typed,
/// which is still a correct (if differently cased) name of the file.
pub fn normalized_name(name: &str, capacity: u16) -> Option<Vec<u16>> {
    let units: Vec<u16> = name.encode_utf16().collect();
    (units.len() * 2 <= capacity as usize).then_some(units)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// S-1-5-32-544 (Administrators) and S-1-5-18 (SYSTEM) as bytes.
    fn sid(sub: &[u32]) -> Vec<u8> {
        let mut s = vec![1, sub.len() as u8, 0, 0, 0, 0, 0, 5];
        for a in sub {
            s.extend_from_slice(&a.to_le_bytes());
        }
        s
    }

    /// An ACL of `n` access-allowed ACEs for `who`.
    fn acl(n: usize, who: &[u8]) -> Vec<u8> {
        let ace_len = 8 + who.len();
        let size = 8 + n * ace_len;
        let mut a = vec![2, 0];
        a.extend_from_slice(&(size as u16).to_le_bytes());
        a.extend_from_slice(&(n as u16).to_le_bytes());
        a.extend_from_slice(&[0, 0]);
        for _ in 0..n {
            a.extend_from_slice(&[0, 0]);
            a.extend_from_slice(&(ace_len as u16).to_le_bytes());
            a.extend_from_slice(&0x001f_01ffu32.to_le_bytes());
            a.extend_from_slice(who);
        }
        a
    }

    /// A self-relative descriptor: header, SACL, DACL, owner, group (the
    /// order Windows writes them in).
    fn descriptor(sacl_aces: usize, dacl_aces: usize) -> Vec<u8> {
        let owner = sid(&[32, 544]);
        let group = sid(&[18]);
        let sacl = acl(sacl_aces, &owner);
        let dacl = acl(dacl_aces, &group);
        let mut sd = vec![1, 0];
        let control = SE_SELF_RELATIVE | 0x0004 | SE_SACL_PRESENT | SE_SACL_AUTO_INHERITED;
        sd.extend_from_slice(&control.to_le_bytes());
        let o_sacl = 20u32;
        let o_dacl = o_sacl + sacl.len() as u32;
        let o_owner = o_dacl + dacl.len() as u32;
        let o_group = o_owner + owner.len() as u32;
        for v in [o_owner, o_group, o_sacl, o_dacl] {
            sd.extend_from_slice(&v.to_le_bytes());
        }
        sd.extend(sacl);
        sd.extend(dacl);
        sd.extend(owner);
        sd.extend(group);
        sd
    }

    #[test]
    fn the_volume_is_ntfs_like_and_read_only_mounts_say_so() {
        let ro = volume(false);
        assert_eq!((ro.sector_size, ro.sectors_per_allocation_unit), (4096, 1));
        assert!(!ro.case_sensitive_search && ro.case_preserved_names && ro.unicode_on_disk);
        assert!(ro.persistent_acls && ro.reparse_points && ro.named_streams);
        assert!(ro.read_only_volume && ro.pass_query_directory_pattern);
        assert_eq!(ro.info_timeout_ms, u32::MAX);
        let rw = volume(true);
        assert!(!rw.read_only_volume);
        assert_eq!(rw.info_timeout_ms, 1000);
        assert_eq!(rw.max_component_length, 255);
        assert_eq!(rw.filesystem_name, "NTFS");
    }

    #[test]
    fn a_descriptor_that_fits_is_given_whole() {
        let sd = descriptor(2, 3);
        assert_eq!(fit_security(&sd, 1024), SecurityFit::Whole);
        assert_eq!(fit_security(&sd, sd.len()), SecurityFit::Whole);
    }

    #[test]
    fn a_large_sacl_is_left_out_of_the_first_query_exactly() {
        // 60 audit entries: 20 + 8 + 60 * 24 = far over 1,024 bytes.
        let sd = descriptor(60, 3);
        assert!(sd.len() > 1024);
        let SecurityFit::WithoutSacl(t) = fit_security(&sd, 1024) else {
            panic!("expected the SACL to be left out");
        };
        let owner = sid(&[32, 544]);
        let group = sid(&[18]);
        let dacl = acl(3, &group);
        // Header: revision 1, control without any SACL bit, owner after
        // the header, then group, no SACL, DACL last.
        let mut want = vec![1, 0];
        want.extend_from_slice(&(SE_SELF_RELATIVE | 0x0004).to_le_bytes());
        let o_owner = 20u32;
        let o_group = o_owner + owner.len() as u32;
        let o_dacl = o_group + group.len() as u32;
        for v in [o_owner, o_group, 0, o_dacl] {
            want.extend_from_slice(&v.to_le_bytes());
        }
        want.extend(owner);
        want.extend(group);
        want.extend(dacl);
        assert_eq!(t, want);
    }

    #[test]
    fn a_descriptor_too_large_even_without_sacl_says_how_large() {
        let sd = descriptor(0, 60);
        let t = without_sacl(&sd).unwrap();
        assert_eq!(
            fit_security(&sd, 1024),
            SecurityFit::TooLarge { needed: t.len() }
        );
        assert!(t.len() > 1024);
    }

    #[test]
    fn damaged_descriptors_are_not_trusted() {
        let sd = descriptor(60, 3);
        // Absolute (not self-relative), wrong revision, offsets past the
        // end, a truncated ACL.
        let mut abs = sd.clone();
        abs[3] &= 0x7f;
        assert_eq!(without_sacl(&abs), None);
        let mut rev = sd.clone();
        rev[0] = 2;
        assert_eq!(without_sacl(&rev), None);
        let mut far = sd.clone();
        far[4..8].copy_from_slice(&(sd.len() as u32).to_le_bytes());
        assert_eq!(without_sacl(&far), None);
        assert_eq!(without_sacl(&sd[..sd.len() - 3]), None);
        assert_eq!(without_sacl(&sd[..10]), None);
        assert_eq!(
            fit_security(&sd[..sd.len() - 3], 100),
            SecurityFit::TooLarge {
                needed: sd.len() - 3
            }
        );
    }

    #[test]
    fn create_options_lose_the_disposition_byte() {
        // FILE_OPEN_IF (3) << 24 | FILE_DIRECTORY_FILE | FILE_DELETE_ON_CLOSE
        assert_eq!(options_only(0x0300_1001), 0x1001);
        assert_eq!(options_only(0x0020_0040), 0x0020_0040);
    }

    #[test]
    fn streams_are_listed_as_ntfs_names_them() {
        let named = vec![("Zone.Identifier".to_string(), 26), ("x".to_string(), 0)];
        assert_eq!(
            stream_entries(false, 1234, &named),
            vec![
                ("::$DATA".to_string(), 1234),
                (":Zone.Identifier:$DATA".to_string(), 26),
                (":x:$DATA".to_string(), 0)
            ]
        );
        assert_eq!(
            stream_entries(true, 0, &named[1..]),
            vec![(":x:$DATA".to_string(), 0)]
        );
    }

    #[test]
    fn normalized_name_fits_or_is_left_out() {
        let n = "\\Windows\\Straße:Zone.Identifier";
        let u = normalized_name(n, 1024).unwrap();
        assert_eq!(String::from_utf16(&u).unwrap(), n);
        assert_eq!(u.len(), n.chars().count());
        assert_eq!(normalized_name(n, (u.len() * 2) as u16), Some(u.clone()));
        assert_eq!(normalized_name(n, (u.len() * 2 - 1) as u16), None);
        // Outside the BMP: two units each.
        assert_eq!(normalized_name("\\\u{1F600}", 6).map(|u| u.len()), Some(3));
        assert_eq!(normalized_name("\\\u{1F600}", 4), None);
    }
}
