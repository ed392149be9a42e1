//! Names compared as NTFS compares them.
//!
//! NTFS maps every UTF-16 unit of a name through the volume's `$UpCase`
//! table: one unit to one unit, no locale, no expansions. This module
//! approximates that table with Unicode's simple uppercase mapping, taken
//! only where it maps one BMP character to one BMP character (`ß` stays
//! `ß`, as on NTFS, where `to_uppercase` would give `SS`). Characters
//! outside the BMP are left alone: NTFS sees them as two surrogate units,
//! which its table does not change.
//!
//! Directory listings are ordered the way NTFS orders its indexes: by the
//! upcased UTF-16 units, then (for names that differ only in case, which
//! only a Linux capture can produce) by the units themselves, so the order
//! is total and stable.

use std::cmp::Ordering;

/// One character as NTFS's upcase table maps it.
pub fn upcase_char(c: char) -> char {
    if (c as u32) > 0xFFFF {
        return c;
    }
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) if (u as u32) <= 0xFFFF => u,
        _ => c,
    }
}

/// A name as NTFS compares it: two names are the same file when their
/// folded forms are equal.
pub fn fold(name: &str) -> String {
    name.chars().map(upcase_char).collect()
}

/// Do `a` and `b` name the same file on NTFS?
pub fn eq_ci(a: &str, b: &str) -> bool {
    a.chars().map(upcase_char).eq(b.chars().map(upcase_char))
}

/// NTFS collation: the upcased UTF-16 units, then the units themselves.
/// Names equal under [`eq_ci`] compare by their exact units, so two names
/// that differ only in case still have a fixed order.
pub fn collate(a: &str, b: &str) -> Ordering {
    let fa = a.chars().map(upcase_char).flat_map(|c| Utf16(c).units());
    let fb = b.chars().map(upcase_char).flat_map(|c| Utf16(c).units());
    fa.cmp(fb)
        .then_with(|| a.encode_utf16().cmp(b.encode_utf16()))
}

/// A character's UTF-16 units (one or two).
struct Utf16(char);

impl Utf16 {
    fn units(self) -> impl Iterator<Item = u16> {
        let mut b = [0u16; 2];
        let n = self.0.encode_utf16(&mut b).len();
        b.into_iter().take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_one_unit_to_one_unit() {
        assert_eq!(fold("System32"), "SYSTEM32");
        assert_eq!(fold("straße"), "STRAßE", "no expansion to SS");
        assert_eq!(
            fold("ﬁle"),
            "ﬁLE",
            "the ligature has no one-unit upper case"
        );
        assert_eq!(fold("äöü"), "ÄÖÜ");
        assert_eq!(fold("σς"), "ΣΣ");
        assert_eq!(fold("ǆ"), "Ǆ");
        // Outside the BMP: left alone.
        assert_eq!(fold("\u{10428}"), "\u{10428}");
        assert_eq!(fold(""), "");
    }

    #[test]
    fn equality_ignores_case_only() {
        assert!(eq_ci("WINDOWS", "windows"));
        assert!(eq_ci("Σίσυφος", "ΣΊΣΥΦΟΣ"));
        assert!(!eq_ci("straße", "STRASSE"));
        assert!(!eq_ci("a", "a "));
        assert!(!eq_ci("\u{10428}", "\u{10400}"));
    }

    #[test]
    fn collation_is_upcased_then_exact_utf16() {
        let mut v = vec!["b", "B", "a", "_x", "Z", "é", "\u{10000}", "\u{ffff}", "A"];
        v.sort_by(|a, b| collate(a, b));
        // '_' (0x5F) sorts after the upper-case letters, as on NTFS; a
        // surrogate pair (0xD800...) before U+FFFF.
        assert_eq!(
            v,
            ["A", "a", "B", "b", "Z", "_x", "é", "\u{10000}", "\u{ffff}"]
        );
        assert_eq!(collate("foo", "FOO"), Ordering::Greater);
        assert_eq!(collate("FOO", "FOO"), Ordering::Equal);
    }
}
