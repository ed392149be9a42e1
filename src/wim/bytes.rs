//! Little-endian field access over untrusted byte slices.
//!
//! Every getter is bounds-checked and returns an error naming the structure,
//! so a short or hostile buffer can never cause a panic.

use crate::error::{Error, Result, Section};

/// A cursor-free view over a byte slice with checked little-endian reads.
#[derive(Clone, Copy)]
pub struct Le<'a> {
    pub buf: &'a [u8],
    /// Where the buffer sits, so a short read is reported as damage there.
    pub section: Section,
    pub what: &'static str,
}

impl<'a> Le<'a> {
    pub fn new(buf: &'a [u8], section: Section, what: &'static str) -> Self {
        Le { buf, section, what }
    }
    fn err(&self, off: usize, n: usize) -> Error {
        Error::corrupt(
            self.section,
            None,
            format!(
                "{} truncated: need {} bytes at offset {}, have {}",
                self.what,
                n,
                off,
                self.buf.len()
            ),
        )
    }
    pub fn bytes(&self, off: usize, n: usize) -> Result<&'a [u8]> {
        off.checked_add(n)
            .and_then(|end| self.buf.get(off..end))
            .ok_or_else(|| self.err(off, n))
    }
    pub fn u8(&self, off: usize) -> Result<u8> {
        Ok(self.bytes(off, 1)?[0])
    }
    pub fn u16(&self, off: usize) -> Result<u16> {
        let b = self.bytes(off, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&self, off: usize) -> Result<u32> {
        let b = self.bytes(off, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&self, off: usize) -> Result<u64> {
        let b = self.bytes(off, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    pub fn sha1(&self, off: usize) -> Result<[u8; 20]> {
        let mut h = [0u8; 20];
        h.copy_from_slice(self.bytes(off, 20)?);
        Ok(h)
    }
}

/// Decode UTF-16LE bytes, replacing unpaired surrogates (they occur in real
/// images' names; we keep going rather than refuse the image).
pub fn utf16le_to_string(b: &[u8]) -> String {
    // Most names are ASCII: one byte per unit, no decoding.
    if b.chunks_exact(2).all(|c| c[1] == 0 && c[0] < 0x80) {
        let ascii: Vec<u8> = b.iter().step_by(2).copied().collect();
        return String::from_utf8(ascii).unwrap_or_default();
    }
    let units = b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// Encode a string as UTF-16LE bytes.
pub fn string_to_utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// Round up to a multiple of 8 (WIM aligns dentries and stream entries).
pub fn align8(n: u64) -> u64 {
    n.saturating_add(7) & !7
}

/// Hex form of a SHA-1, as wimlib and DISM print it.
pub fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}
