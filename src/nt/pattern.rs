//! Directory search patterns (`*.txt`, `a?c`), matched as NTFS matches
//! names: ignoring case. `*` is any run of characters, `?` any one; the
//! DOS wildcards `<`, `>` and `"` that cmd's `dir` sends are read as
//! `*`, `?` and `.` (close enough for listing: they differ only around
//! dots at the end of names).

use super::upcase::upcase_char;

/// Does `name` match `pattern`? An empty pattern or `*` matches all.
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern
        .chars()
        .map(|c| match c {
            '<' => '*',
            '>' => '?',
            '"' => '.',
            c => upcase_char(c),
        })
        .collect();
    if p.is_empty() || p == ['*'] {
        return true;
    }
    let n: Vec<char> = name.chars().map(upcase_char).collect();
    wildcard(&p, &n)
}

/// The wildcard match itself, exact (callers fold case first where they
/// want it): `*` any run of characters, `?` any one. Iterative, with one
/// backtrack point (the last `*`), so no pattern makes it exponential.
pub fn wildcard(p: &[char], s: &[char]) -> bool {
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while j < s.len() {
        if i < p.len() && (p[i] == '?' || p[i] == s[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards_ignore_case() {
        assert!(matches("*", "anything"));
        assert!(matches("", "anything"));
        assert!(matches("*.TXT", "readme.txt"));
        assert!(!matches("*.txt", "readme.txt.bak"));
        assert!(matches("a?c", "ABC"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("*a*b*", "xxAyyBzz"));
        assert!(!matches("*a*b*", "xxbyya"));
        assert!(matches("system32", "System32"));
        assert!(matches("<.dll", "kernel32.DLL"));
        assert!(matches("straße", "STRAßE"));
        assert!(!matches("strasse", "straße"));
    }
}
