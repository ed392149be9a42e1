//! What the three codecs' prefix codes share: canonical codewords from
//! code lengths (shorter codes first, then by symbol), as every decoder
//! here and in Windows rebuilds them from the lengths alone.

/// Longest code length any of the codecs uses (LZX: 16).
const MAX_LEN: usize = 16;

/// Canonical codewords (MSB-first values) for `lens` into `codes`; symbols
/// of length 0 are left as they are. Lengths must be at most 16.
pub(crate) fn canonical_codes(lens: &[u8], codes: &mut [u32]) {
    let mut count = [0u32; MAX_LEN + 1];
    for &l in lens {
        count[usize::from(l)] += 1;
    }
    count[0] = 0;
    let mut next = [0u32; MAX_LEN + 1];
    let mut code = 0u32;
    for l in 1..=MAX_LEN {
        code = (code + count[l - 1]) << 1;
        next[l] = code;
    }
    for (c, &l) in codes.iter_mut().zip(lens) {
        if l != 0 {
            *c = next[usize::from(l)];
            next[usize::from(l)] += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::canonical_codes;

    /// The example of RFC 1951 section 3.2.2: lengths (3, 3, 3, 3, 3, 2, 4,
    /// 4) give codes 010, 011, 100, 101, 110, 00, 1110, 1111.
    #[test]
    fn rfc1951_example() {
        let lens = [3u8, 3, 3, 3, 3, 2, 4, 4];
        let mut codes = [0u32; 8];
        canonical_codes(&lens, &mut codes);
        assert_eq!(
            codes,
            [0b010, 0b011, 0b100, 0b101, 0b110, 0b00, 0b1110, 0b1111]
        );
    }

    /// Unused symbols get no code and take none from the others.
    #[test]
    fn unused_symbols_are_skipped() {
        let lens = [0u8, 1, 0, 2, 2];
        let mut codes = [7u32; 5];
        canonical_codes(&lens, &mut codes);
        assert_eq!(codes, [7, 0b0, 7, 0b10, 0b11]);
    }
}
