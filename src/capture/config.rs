//! DISM's capture configuration (`WimScript.ini`): which paths a capture
//! leaves out (`[ExclusionList]`), which of those it keeps after all
//! (`[ExclusionException]`), and which files it stores uncompressed
//! (`[CompressionExclusionList]`).
//!
//! Patterns are Windows paths with `*` and `?` wildcards, compared without
//! regard to case (as DISM compares them on NTFS). A pattern holding a path
//! separator is anchored at the capture root (`\pagefile.sys`,
//! `\Windows\CSC`; a drive letter `C:` is ignored); one without matches the
//! last component of any path (`*.mp3`). An excluded directory takes its
//! whole subtree with it.

use crate::error::{Error, Result};

/// The parsed configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureConfig {
    pub exclusions: Vec<String>,
    pub exceptions: Vec<String>,
    pub no_compression: Vec<String>,
}

impl CaptureConfig {
    /// Parse the text of a configuration file (UTF-8, or UTF-16LE with a
    /// byte-order mark as Notepad saves it). Lines outside a known section,
    /// blank lines and `;` comments are ignored; an unknown section is an
    /// error, so that a misspelt `[ExclusionList]` does not silently
    /// capture everything.
    pub fn parse(bytes: &[u8]) -> Result<CaptureConfig> {
        let text = decode(bytes)?;
        let mut c = CaptureConfig::default();
        let mut section: Option<&mut Vec<String>> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = Some(match name.trim().to_ascii_lowercase().as_str() {
                    "exclusionlist" => &mut c.exclusions,
                    "exclusionexception" => &mut c.exceptions,
                    "compressionexclusionlist" => &mut c.no_compression,
                    other => {
                        return Err(Error::Invalid(format!(
                            "capture configuration, line {}: unknown section [{other}]",
                            n + 1
                        )))
                    }
                });
                continue;
            }
            let Some(list) = section.as_deref_mut() else {
                return Err(Error::Invalid(format!(
                    "capture configuration, line {}: \"{line}\" is outside any section",
                    n + 1
                )));
            };
            let p = line.trim_matches('"');
            if !p.is_empty() {
                list.push(normalize(p));
            }
        }
        Ok(c)
    }

    /// Is the path `rel` (relative to the capture root, `/`-separated, no
    /// leading separator) left out of the capture?
    pub fn excluded(&self, rel: &str) -> bool {
        let rel = rel.to_lowercase();
        self.exclusions.iter().any(|p| matches_path(p, &rel))
            && !self.exceptions.iter().any(|p| matches_path(p, &rel))
    }

    /// Is the file `rel` stored uncompressed?
    pub fn uncompressed(&self, rel: &str) -> bool {
        let rel = rel.to_lowercase();
        self.no_compression.iter().any(|p| matches_path(p, &rel))
    }
}

fn decode(b: &[u8]) -> Result<String> {
    if let Some(u) = b.strip_prefix(&[0xFF, 0xFE]) {
        let units: Vec<u16> = u
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        return String::from_utf16(&units)
            .map_err(|_| Error::Invalid("capture configuration: bad UTF-16".into()));
    }
    let b = b.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(b);
    String::from_utf8(b.to_vec())
        .map_err(|_| Error::Invalid("capture configuration: not UTF-8 or UTF-16".into()))
}

/// Lower-case, `/` separators, no drive letter, no trailing separator; an
/// anchored pattern keeps one leading `/`.
fn normalize(p: &str) -> String {
    let mut s = p.replace('\\', "/");
    let b = s.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        s = s[2..].to_string();
    }
    let s = s.trim_end_matches('/');
    let s = if s.contains('/') && !s.starts_with('/') {
        format!("/{s}")
    } else {
        s.to_string()
    };
    s.to_lowercase()
}

/// Does pattern `p` (normalized) match `rel` (lower-case) or one of its
/// ancestors (an excluded directory takes its subtree)?
fn matches_path(p: &str, rel: &str) -> bool {
    if let Some(anchored) = p.strip_prefix('/') {
        let pc: Vec<&str> = anchored.split('/').collect();
        let rc: Vec<&str> = rel.split('/').collect();
        rc.len() >= pc.len() && pc.iter().zip(&rc).all(|(a, b)| wildcard(a, b))
    } else {
        rel.split('/').any(|c| wildcard(p, c))
    }
}

/// `*` any run of characters, `?` one character (exactly, as the caller
/// gives them).
fn wildcard(p: &str, s: &str) -> bool {
    let p: Vec<char> = p.chars().collect();
    let s: Vec<char> = s.chars().collect();
    crate::nt::pattern::wildcard(&p, &s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INI: &str = "\u{feff}[ExclusionList]\r\n\\pagefile.sys\r\n\
        \"\\System Volume Information\"\r\n\\Windows\\CSC\r\n*.tmp\r\n\
        C:\\logs\\*\r\n\r\n; a comment\r\n[ExclusionException]\r\n\
        \\logs\\keep.log\r\n[CompressionExclusionList]\r\n*.mp3\r\n\
        \\Windows\\*.zip\r\n";

    #[test]
    fn sections_patterns_and_exceptions() {
        let c = CaptureConfig::parse(INI.as_bytes()).unwrap();
        assert_eq!(c.exclusions.len(), 5);
        assert!(c.excluded("pagefile.sys"));
        assert!(c.excluded("PageFile.SYS"));
        assert!(!c.excluded("dir/pagefile.sys"), "anchored at the root");
        assert!(c.excluded("System Volume Information"));
        assert!(c.excluded("System Volume Information/x/y"), "subtree");
        assert!(c.excluded("Windows/CSC/v2.0.6"));
        assert!(!c.excluded("Windows/CSCx"));
        assert!(c.excluded("a/b/c.TMP"), "unanchored: any component");
        assert!(!c.excluded("a/b/c.tmpx"));
        assert!(c.excluded("logs/x.log"));
        assert!(!c.excluded("logs/keep.log"), "exception");
        assert!(!c.excluded("logs"), "logs\\* names what is inside");
        assert!(c.uncompressed("music/a.MP3"));
        assert!(c.uncompressed("Windows/b.zip"));
        assert!(!c.uncompressed("other/b.zip"));
    }

    #[test]
    fn utf16_files_and_bad_sections() {
        let mut b = vec![0xFF, 0xFE];
        for u in "[ExclusionList]\n*.bak\n".encode_utf16() {
            b.extend_from_slice(&u.to_le_bytes());
        }
        let c = CaptureConfig::parse(&b).unwrap();
        assert!(c.excluded("x.bak"));
        assert!(CaptureConfig::parse(b"[ExclusionLst]\nx\n").is_err());
        assert!(CaptureConfig::parse(b"x\n").is_err());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("a*b?c", "axxbyc"));
        assert!(wildcard("*", ""));
        assert!(!wildcard("a?", "a"));
        assert!(wildcard("*.*", "x.y"));
    }
}
