//! Names Windows cannot use.
//!
//! A WIM can hold any UTF-16 name, and Linux tools happily create names
//! that Windows then cannot create when it applies the image (`a:b`,
//! `CON`, `aux.txt`, `trailing.`, two names differing only in case in one
//! directory): the failure shows up far from where the mistake was made.
//! These are the rules ntfs-3g's `windows_names` option enforces, plus the
//! case collision that NTFS's case-insensitive directories forbid:
//!
//! - no character `" * / : < > ? \ |` and none of the controls U+0000 to
//!   U+001F;
//! - no `.` or space at the end (Win32 strips them, so the name would
//!   become another one);
//! - not a DOS device name: `CON`, `PRN`, `AUX`, `NUL`, `COM1`-`COM9`,
//!   `LPT1`-`LPT9` (and the superscript-digit forms `COM¹` etc. that
//!   Windows also reserves), in any case, alone or followed by an
//!   extension (`aux.txt`, `con.tar.gz`), also with spaces before the
//!   extension (`nul .txt`), because Win32 cuts the name at the first dot
//!   and drops trailing spaces before it compares;
//! - not equal, compared as NTFS compares, to another name in the same
//!   directory.
//!
//! Named streams (`user.NAME` xattrs in a mount) follow the character rule
//! and the case rule among the streams of one file; the device and
//! trailing-dot rules concern file names only (Win32 does not parse a
//! stream name for them).
//!
//! Case: names are compared as NTFS compares them, through
//! [`super::upcase`] (one UTF-16 unit to one, no locale).

use std::fmt;

/// The rule a name breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// A character Windows reserves (`" * / : < > ? \ |`).
    ReservedChar(char),
    /// A control character (U+0000 to U+001F).
    ControlChar(char),
    /// Ends in a dot.
    TrailingDot,
    /// Ends in a space.
    TrailingSpace,
    /// A DOS device name (the device, upper case).
    DeviceName(String),
    /// Equal, ignoring case as NTFS does, to this other name.
    CaseCollision(String),
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::ReservedChar(c) => write!(f, "contains '{c}', a character Windows reserves"),
            Rule::ControlChar(c) => write!(
                f,
                "contains the control character U+{:04X}, which Windows forbids in names",
                *c as u32
            ),
            Rule::TrailingDot => write!(f, "ends in a dot, which Windows strips"),
            Rule::TrailingSpace => write!(f, "ends in a space, which Windows strips"),
            Rule::DeviceName(d) => write!(f, "is the DOS device name {d} on Windows"),
            Rule::CaseCollision(o) => write!(
                f,
                "differs only in case from {o:?} in the same directory, \
                 and Windows compares names ignoring case"
            ),
        }
    }
}

const RESERVED: &[char] = &['"', '*', '/', ':', '<', '>', '?', '\\', '|'];

const DEVICES: &[&str] = &["CON", "PRN", "AUX", "NUL"];

/// The character rule, shared by file and stream names.
fn check_chars(name: &str) -> Result<(), Rule> {
    for c in name.chars() {
        if (c as u32) < 0x20 {
            return Err(Rule::ControlChar(c));
        }
        if RESERVED.contains(&c) {
            return Err(Rule::ReservedChar(c));
        }
    }
    Ok(())
}

/// The device `name` names on Windows, if any.
fn device(name: &str) -> Option<String> {
    // Win32 compares the part before the first dot, trailing spaces
    // dropped.
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let up = stem.to_ascii_uppercase();
    if DEVICES.contains(&up.as_str()) {
        return Some(up);
    }
    let mut chars = up.chars();
    let prefix: String = chars.by_ref().take(3).collect();
    let digit = chars.next()?;
    if chars.next().is_some() || !(prefix == "COM" || prefix == "LPT") {
        return None;
    }
    matches!(digit, '1'..='9' | '\u{b9}' | '\u{b2}' | '\u{b3}').then_some(up)
}

/// Check a file or directory name (one path component) against the rules
/// that need no other name. `.` and `..` are the caller's business.
pub fn check_name(name: &str) -> Result<(), Rule> {
    check_chars(name)?;
    if name.ends_with('.') && name != "." && name != ".." {
        return Err(Rule::TrailingDot);
    }
    if name.ends_with(' ') {
        return Err(Rule::TrailingSpace);
    }
    if let Some(d) = device(name) {
        return Err(Rule::DeviceName(d));
    }
    Ok(())
}

/// Check a named stream's name (without any `user.` prefix).
pub fn check_stream_name(name: &str) -> Result<(), Rule> {
    check_chars(name)
}

/// One character as NTFS's upcase table maps it (see [`super::upcase`]).
pub fn upcase_char(c: char) -> char {
    super::upcase::upcase_char(c)
}

/// A name as NTFS compares it: two names collide in a directory when their
/// `upcase` forms are equal.
pub fn upcase(name: &str) -> String {
    super::upcase::fold(name)
}

/// Do `a` and `b` name the same file on Windows?
pub fn same_name(a: &str, b: &str) -> bool {
    super::upcase::eq_ci(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        for n in [
            "Readme",
            "a.b.c",
            "con2",
            "console",
            "COM0",
            "COM10",
            "LPT",
            "nul_",
            "xcon",
            ".hidden",
            "über",
            "日本語",
            "a b",
            " leading",
            "comma,semicolon;",
            "ƒ",
        ] {
            assert_eq!(check_name(n), Ok(()), "{n:?}");
        }
    }

    #[test]
    fn reserved_and_control_characters() {
        for c in ['"', '*', '/', ':', '<', '>', '?', '\\', '|'] {
            let n = format!("a{c}b");
            assert_eq!(check_name(&n), Err(Rule::ReservedChar(c)), "{n:?}");
            assert_eq!(check_stream_name(&n), Err(Rule::ReservedChar(c)));
        }
        for u in 0u32..0x20 {
            let c = char::from_u32(u).unwrap();
            let n = format!("a{c}b");
            assert_eq!(check_name(&n), Err(Rule::ControlChar(c)), "{u:#x}");
            assert_eq!(check_stream_name(&n), Err(Rule::ControlChar(c)));
        }
        // DEL and beyond are allowed.
        assert_eq!(check_name("a\u{7f}b"), Ok(()));
    }

    #[test]
    fn trailing_dot_and_space() {
        assert_eq!(check_name("trailing."), Err(Rule::TrailingDot));
        assert_eq!(check_name("a.."), Err(Rule::TrailingDot));
        assert_eq!(check_name("trailing "), Err(Rule::TrailingSpace));
        assert_eq!(check_name("a. "), Err(Rule::TrailingSpace));
        // Streams: only characters.
        assert_eq!(check_stream_name("trailing."), Ok(()));
        assert_eq!(check_stream_name("CON"), Ok(()));
    }

    #[test]
    fn device_names() {
        for (n, d) in [
            ("CON", "CON"),
            ("con", "CON"),
            ("Prn", "PRN"),
            ("aux.txt", "AUX"),
            ("NUL.tar.gz", "NUL"),
            ("nul .txt", "NUL"),
            ("nul  ..txt", "NUL"),
            ("COM1", "COM1"),
            ("com9.log", "COM9"),
            ("lpt5", "LPT5"),
            ("LPT\u{b9}", "LPT\u{b9}"),
            ("com\u{b3}.x", "COM\u{b3}"),
        ] {
            assert_eq!(check_name(n), Err(Rule::DeviceName(d.into())), "{n:?}");
        }
        for n in [
            "COM0",
            "LPT0",
            "COM10",
            "CONX",
            "AUXILIARY.txt",
            "xnul",
            "COM",
        ] {
            assert_eq!(check_name(n), Ok(()), "{n:?}");
        }
    }

    #[test]
    fn case_folding_is_one_to_one() {
        assert!(same_name("Readme", "README"));
        assert!(same_name("straße", "STRAßE"));
        assert!(!same_name("straße", "STRASSE"));
        assert!(same_name("ÄÖÜ", "äöü"));
        assert!(same_name("Σίσυφος", "ΣΊΣΥΦΟΣ"));
        assert!(!same_name("a", "b"));
        assert_eq!(upcase("ﬁle"), "ﬁLE");
        // Outside the BMP: not folded.
        assert!(!same_name("\u{10428}", "\u{10400}"));
    }

    #[test]
    fn messages_name_the_rule() {
        assert!(Rule::DeviceName("AUX".into()).to_string().contains("AUX"));
        assert!(Rule::ReservedChar(':').to_string().contains("':'"));
        assert!(Rule::ControlChar('\u{1}').to_string().contains("U+0001"));
        assert!(Rule::CaseCollision("Readme".into())
            .to_string()
            .contains("\"Readme\""));
    }
}
