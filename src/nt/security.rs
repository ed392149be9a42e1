//! Self-relative security descriptors, as a WIM's security table stores
//! them and as Windows (`SetFileSecurity`, `icacls`) or ntfs-3g's
//! `system.ntfs_acl` hands them over.
//!
//! A descriptor given to a mount is stored as it is and later applied by
//! wimlib, Windows or ntfs-3g, which trust its offsets; so a malformed one
//! must be refused when it is set (EINVAL, STATUS_INVALID_SECURITY_DESCR),
//! never found at apply time. Only the structure is checked (revision,
//! self-relative flag, every offset and length inside the buffer, SIDs
//! and ACL headers well formed), not what the ACEs grant.

/// Why a descriptor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid security descriptor: {0}")]
pub struct InvalidDescriptor(pub &'static str);

/// SE_SELF_RELATIVE: the descriptor holds offsets, not pointers.
pub const SE_SELF_RELATIVE: u16 = 0x8000;
pub const SE_DACL_PRESENT: u16 = 0x0004;
pub const SE_SACL_PRESENT: u16 = 0x0010;
/// The fixed header: revision, sbz1, control, four offsets.
const HEADER: usize = 20;
/// A SID has at most 15 sub-authorities.
const MAX_SUB_AUTHORITIES: usize = 15;
/// The largest descriptor accepted: what an xattr can carry (Linux's
/// limit), far above any real one.
pub const MAX_DESCRIPTOR: usize = 65536;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Check `sd` is a usable self-relative descriptor. Owner and group are
/// required: NTFS keeps a complete descriptor per file, and ntfs-3g (which
/// wimlib applies through) refuses one without them.
pub fn validate(sd: &[u8]) -> Result<(), InvalidDescriptor> {
    let bad = InvalidDescriptor;
    if sd.len() < HEADER {
        return Err(bad("shorter than its 20-byte header"));
    }
    if sd.len() > MAX_DESCRIPTOR {
        return Err(bad("larger than 64 KiB"));
    }
    if sd[0] != 1 {
        return Err(bad("revision is not 1"));
    }
    let control = u16_at(sd, 2).ok_or(bad("truncated header"))?;
    if control & SE_SELF_RELATIVE == 0 {
        return Err(bad("not self-relative"));
    }
    let off = |i: usize| u32_at(sd, 4 + 4 * i).map(|v| v as usize);
    let (owner, group, sacl, dacl) = (off(0), off(1), off(2), off(3));
    let (Some(owner), Some(group), Some(sacl), Some(dacl)) = (owner, group, sacl, dacl) else {
        return Err(bad("truncated header"));
    };
    if owner == 0 {
        return Err(bad("no owner"));
    }
    if group == 0 {
        return Err(bad("no group"));
    }
    check_sid(sd, owner).map_err(|_| bad("owner SID outside the buffer or malformed"))?;
    check_sid(sd, group).map_err(|_| bad("group SID outside the buffer or malformed"))?;
    // An ACL offset that is not 0 must lead to a valid ACL, whether or
    // not its "present" flag is set: readers differ on whether they look.
    // (Present with offset 0 is a NULL ACL.)
    for at in [sacl, dacl] {
        if at != 0 {
            check_acl(sd, at)?;
        }
    }
    Ok(())
}

/// A SID at `at`: revision 1, at most 15 sub-authorities, all inside.
fn check_sid(sd: &[u8], at: usize) -> Result<usize, ()> {
    if at < HEADER {
        return Err(());
    }
    let hdr = sd.get(at..at + 8).ok_or(())?;
    let count = hdr[1] as usize;
    if hdr[0] != 1 || count > MAX_SUB_AUTHORITIES {
        return Err(());
    }
    let len = 8 + 4 * count;
    sd.get(at..at + len).ok_or(())?;
    Ok(len)
}

/// An ACL at `at`: revision 2 or 4, its size inside the buffer, and every
/// ACE (type, flags, size) inside the ACL with a SID where it has one.
fn check_acl(sd: &[u8], at: usize) -> Result<(), InvalidDescriptor> {
    let bad = InvalidDescriptor;
    if at < HEADER || at.checked_add(8).is_none_or(|e| e > sd.len()) {
        return Err(bad("ACL outside the buffer"));
    }
    let rev = sd[at];
    if rev != 2 && rev != 4 {
        return Err(bad("ACL revision is not 2 or 4"));
    }
    let size = u16_at(sd, at + 2).ok_or(bad("truncated ACL"))? as usize;
    let count = u16_at(sd, at + 4).ok_or(bad("truncated ACL"))? as usize;
    if size < 8 || at + size > sd.len() {
        return Err(bad("ACL size outside the buffer"));
    }
    let end = at + size;
    let mut p = at + 8;
    for _ in 0..count {
        let (Some(&ty), Some(ace_size)) = (sd.get(p), u16_at(sd, p + 2)) else {
            return Err(bad("ACE outside its ACL"));
        };
        let ace_size = ace_size as usize;
        if ace_size < 8 || p + ace_size > end {
            return Err(bad("ACE size outside its ACL"));
        }
        // The simple ACE types (allowed, denied, audit, alarm) are a header,
        // an access mask and a SID that must fit in the ACE.
        if ty <= 3 {
            let ace = &sd[p..p + ace_size];
            let n = ace.get(9).copied().unwrap_or(u8::MAX) as usize;
            if ace_size < 16 || ace[8] != 1 || n > MAX_SUB_AUTHORITIES || 8 + 8 + 4 * n > ace_size {
                return Err(bad("ACE SID malformed or outside its ACE"));
            }
        }
        p += ace_size;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SID S-1-5-`rids`...
    fn sid(rids: &[u32]) -> Vec<u8> {
        let mut v = vec![1, rids.len() as u8, 0, 0, 0, 0, 0, 5];
        for r in rids {
            v.extend_from_slice(&r.to_le_bytes());
        }
        v
    }

    /// Owner S-1-5-32-544, group S-1-5-18, a DACL granting S-1-5-11 read.
    fn sample() -> Vec<u8> {
        let owner = sid(&[32, 544]);
        let group = sid(&[18]);
        let ace_sid = sid(&[11]);
        let mut ace = vec![0u8, 0];
        ace.extend_from_slice(&((8 + ace_sid.len()) as u16).to_le_bytes());
        ace.extend_from_slice(&0x1200a9u32.to_le_bytes());
        ace.extend_from_slice(&ace_sid);
        let mut acl = vec![2u8, 0];
        acl.extend_from_slice(&((8 + ace.len()) as u16).to_le_bytes());
        acl.extend_from_slice(&1u16.to_le_bytes());
        acl.extend_from_slice(&0u16.to_le_bytes());
        acl.extend_from_slice(&ace);
        let o_owner = 20u32;
        let o_group = o_owner + owner.len() as u32;
        let o_dacl = o_group + group.len() as u32;
        let mut sd = vec![1u8, 0];
        sd.extend_from_slice(&(SE_SELF_RELATIVE | SE_DACL_PRESENT).to_le_bytes());
        for o in [o_owner, o_group, 0, o_dacl] {
            sd.extend_from_slice(&o.to_le_bytes());
        }
        sd.extend_from_slice(&owner);
        sd.extend_from_slice(&group);
        sd.extend_from_slice(&acl);
        sd
    }

    #[test]
    fn a_well_formed_descriptor_passes() {
        assert_eq!(validate(&sample()), Ok(()));
    }

    #[test]
    fn every_malformation_is_refused_without_panic() {
        let good = sample();
        let refused = |sd: &[u8]| validate(sd).is_err();
        // Every truncation, and every single-byte change to the header.
        for n in 0..good.len() {
            assert!(refused(&good[..n]), "cut to {n} bytes");
        }
        let mut sd = good.clone();
        sd[0] = 2;
        assert_eq!(validate(&sd), Err(InvalidDescriptor("revision is not 1")));
        let mut sd = good.clone();
        sd[3] &= 0x7f;
        assert_eq!(validate(&sd), Err(InvalidDescriptor("not self-relative")));
        let mut sd = good.clone();
        sd[4..8].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(validate(&sd), Err(InvalidDescriptor("no owner")));
        for field in 0..4 {
            let mut sd = good.clone();
            sd[4 + 4 * field..8 + 4 * field]
                .copy_from_slice(&(good.len() as u32 - 2).to_le_bytes());
            assert!(refused(&sd), "offset {field} near the end");
            sd[4 + 4 * field..8 + 4 * field].copy_from_slice(&u32::MAX.to_le_bytes());
            assert!(refused(&sd), "offset {field} = u32::MAX");
        }
        // ACL size and ACE count beyond the buffer.
        let dacl = u32::from_le_bytes(good[16..20].try_into().unwrap()) as usize;
        let mut sd = good.clone();
        sd[dacl + 2] = 0xff;
        assert!(refused(&sd));
        let mut sd = good.clone();
        sd[dacl + 4] = 2;
        assert!(refused(&sd));
        // A SID claiming 200 sub-authorities.
        let mut sd = good.clone();
        sd[21] = 200;
        assert!(refused(&sd));
        // Random bytes never panic.
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            let mut sd = good.clone();
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % sd.len();
                sd[i] = (x >> 32) as u8;
            }
            let _ = validate(&sd);
        }
    }
}
