//! Paths as WinFsp hands them over: `\dir\file`, `\dir\file:stream`,
//! `\dir\file:stream:$DATA`, `\dir\file::$DATA`, relative to the volume
//! root, `\` alone being the root.
//!
//! The checks are NT's, not Win32's: Win32 strips trailing dots and
//! spaces and resolves `.`/`..` before a path reaches a file system, so a
//! name that still has them here was asked for on purpose (`\\?\`), and a
//! component `.` or `..` is invalid. Device names (`CON`) are just names
//! at this level. What makes a path invalid (`OBJECT_NAME_INVALID`):
//! an empty component (`\a\\b`), a character NTFS refuses in a name
//! (controls, `" * / < > ? |`), a `:` anywhere but the last component, more
//! than one stream separator there, an empty stream name without the
//! `$DATA` type (`file:`), a type other than `$DATA`, a component longer
//! than 255 UTF-16 units. A path that does not start with `\` is
//! `OBJECT_PATH_SYNTAX_BAD`. A trailing `\` is kept as a flag: it says the
//! caller wants a directory (see [`super::create`]).

use super::status::{NtResult, NtStatus};
use super::upcase;

/// Longest name NTFS stores, in UTF-16 units.
pub const MAX_COMPONENT: usize = 255;

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtPath {
    /// The names from the root down (empty: the root itself).
    pub components: Vec<String>,
    /// The named stream of the last component (`None`: the unnamed data
    /// stream, also when written `::$DATA`).
    pub stream: Option<String>,
    /// The path ended in `\` (not counting the root's own).
    pub trailing_sep: bool,
}

/// Characters NTFS refuses in a file or stream name (besides the
/// separators `\` and `:`, which the parser splits on).
fn bad_char(c: char) -> bool {
    (c as u32) < 0x20 || matches!(c, '"' | '*' | '/' | '<' | '>' | '?' | '|')
}

fn check_component(name: &str) -> NtResult<()> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(NtStatus::OBJECT_NAME_INVALID);
    }
    if name.chars().any(bad_char) || name.encode_utf16().count() > MAX_COMPONENT {
        return Err(NtStatus::OBJECT_NAME_INVALID);
    }
    Ok(())
}

impl NtPath {
    /// Parse `path` (see the module documentation for the rules).
    pub fn parse(path: &str) -> NtResult<NtPath> {
        let rest = path
            .strip_prefix('\\')
            .ok_or(NtStatus::OBJECT_PATH_SYNTAX_BAD)?;
        if rest.is_empty() {
            return Ok(NtPath {
                components: Vec::new(),
                stream: None,
                trailing_sep: false,
            });
        }
        let (rest, trailing_sep) = match rest.strip_suffix('\\') {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let mut components: Vec<String> = rest.split('\\').map(str::to_string).collect();
        let last = components.pop().unwrap_or_default();
        for c in &components {
            if c.contains(':') {
                return Err(NtStatus::OBJECT_NAME_INVALID);
            }
            check_component(c)?;
        }
        let mut parts = last.split(':');
        let name = parts.next().unwrap_or_default().to_string();
        let stream = parts.next();
        let stype = parts.next();
        if parts.next().is_some() {
            return Err(NtStatus::OBJECT_NAME_INVALID);
        }
        check_component(&name)?;
        let stream = match (stream, stype) {
            (None, _) => None,
            (Some(""), None) => return Err(NtStatus::OBJECT_NAME_INVALID),
            (Some(s), t) => {
                if let Some(t) = t {
                    if !upcase::eq_ci(t, "$DATA") {
                        return Err(NtStatus::OBJECT_NAME_INVALID);
                    }
                }
                if s.is_empty() {
                    None
                } else {
                    if s.chars().any(bad_char) || s.encode_utf16().count() > MAX_COMPONENT {
                        return Err(NtStatus::OBJECT_NAME_INVALID);
                    }
                    Some(s.to_string())
                }
            }
        };
        // A stream of a directory path written with a trailing `\`
        // (`\d\:s`) has no file name: refused above (empty name).
        if stream.is_some() && trailing_sep {
            return Err(NtStatus::OBJECT_NAME_INVALID);
        }
        components.push(name);
        Ok(NtPath {
            components,
            stream,
            trailing_sep,
        })
    }

    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The last name (`None` for the root).
    pub fn file_name(&self) -> Option<&str> {
        self.components.last().map(String::as_str)
    }

    /// The directories leading to the last name.
    pub fn parent_components(&self) -> &[String] {
        match self.components.split_last() {
            Some((_, p)) => p,
            None => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> NtResult<NtPath> {
        NtPath::parse(s)
    }

    fn comps(s: &str) -> Vec<String> {
        p(s).unwrap().components
    }

    #[test]
    fn plain_paths() {
        assert!(p("\\").unwrap().is_root());
        assert_eq!(comps("\\Windows\\System32"), ["Windows", "System32"]);
        let x = p("\\a\\b.txt").unwrap();
        assert_eq!(x.file_name(), Some("b.txt"));
        assert_eq!(x.parent_components(), ["a"]);
        assert_eq!(x.stream, None);
        assert!(!x.trailing_sep);
        // NT names: trailing dots and spaces, device names, Unicode.
        assert_eq!(comps("\\CON\\a. \\日本"), ["CON", "a. ", "日本"]);
    }

    #[test]
    fn streams() {
        let x = p("\\d\\f:ads").unwrap();
        assert_eq!(
            (x.file_name(), x.stream.as_deref()),
            (Some("f"), Some("ads"))
        );
        let x = p("\\f:ads:$DATA").unwrap();
        assert_eq!(x.stream.as_deref(), Some("ads"));
        let x = p("\\f:ads:$data").unwrap();
        assert_eq!(
            x.stream.as_deref(),
            Some("ads"),
            "the type is case-insensitive"
        );
        let x = p("\\f::$DATA").unwrap();
        assert_eq!((x.file_name(), x.stream.clone()), (Some("f"), None));
        let x = p("\\f:a b.c").unwrap();
        assert_eq!(x.stream.as_deref(), Some("a b.c"));
    }

    #[test]
    fn invalid_paths() {
        use NtStatus as S;
        for (s, want) in [
            ("a\\b", S::OBJECT_PATH_SYNTAX_BAD),
            ("", S::OBJECT_PATH_SYNTAX_BAD),
            ("\\a\\\\b", S::OBJECT_NAME_INVALID),
            ("\\\\", S::OBJECT_NAME_INVALID),
            ("\\a:s\\b", S::OBJECT_NAME_INVALID),
            ("\\f:", S::OBJECT_NAME_INVALID),
            ("\\f::", S::OBJECT_NAME_INVALID),
            ("\\f:s:$INDEX_ALLOCATION", S::OBJECT_NAME_INVALID),
            ("\\f:s:", S::OBJECT_NAME_INVALID),
            ("\\f:s:$DATA:x", S::OBJECT_NAME_INVALID),
            ("\\:s", S::OBJECT_NAME_INVALID),
            ("\\a*b", S::OBJECT_NAME_INVALID),
            ("\\a?b", S::OBJECT_NAME_INVALID),
            ("\\a\"b", S::OBJECT_NAME_INVALID),
            ("\\a|b", S::OBJECT_NAME_INVALID),
            ("\\a/b", S::OBJECT_NAME_INVALID),
            ("\\a\u{1}b", S::OBJECT_NAME_INVALID),
            ("\\f:s*", S::OBJECT_NAME_INVALID),
            ("\\.\\a", S::OBJECT_NAME_INVALID),
            ("\\a\\..", S::OBJECT_NAME_INVALID),
            ("\\d\\f:s\\", S::OBJECT_NAME_INVALID),
        ] {
            assert_eq!(p(s), Err(want), "{s:?}");
        }
        let long = format!("\\{}", "x".repeat(256));
        assert_eq!(p(&long), Err(S::OBJECT_NAME_INVALID));
        let ok = format!("\\{}", "x".repeat(255));
        assert!(p(&ok).is_ok());
        // 255 UTF-16 units, not bytes: 255 two-byte UTF-8 characters pass.
        assert!(p(&format!("\\{}", "é".repeat(255))).is_ok());
        // A character outside the BMP counts two units.
        assert_eq!(
            p(&format!("\\{}", "\u{10000}".repeat(128))),
            Err(S::OBJECT_NAME_INVALID)
        );
    }

    #[test]
    fn trailing_separator_is_a_flag() {
        let x = p("\\dir\\").unwrap();
        assert_eq!(x.components, ["dir"]);
        assert!(x.trailing_sep);
        assert!(!p("\\").unwrap().trailing_sep);
    }
}
