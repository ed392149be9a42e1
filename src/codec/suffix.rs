//! Suffixes sorted by their first bytes only, with their neighbours'
//! shared lengths: what the LZMS encoder's match finder over whole 64 MiB
//! chunks is built from.

#[cfg(test)]
mod tests {
    use super::*;

    fn check(s: &[u8]) {
        for cap in [2, 3, 10, 17, 64, 255] {
            check_prefixes(s, cap);
        }
    }

    /// Sorted by the first `cap` bytes, every neighbour's shared length
    /// right (capped).
    fn check_prefixes(s: &[u8], cap: usize) {
        let mut sa = vec![0u32; s.len()];
        let mut lcp = vec![0u8; s.len()];
        assert!(sort_prefixes(s, &mut sa, &mut lcp, cap, &mut Vec::new()));
        // The true order: a suffix that ends is smaller than the ones it
        // is a prefix of.
        let key = |p: u32| &s[p as usize..(p as usize + cap).min(s.len())];
        let mut seen = vec![false; s.len()];
        for &p in &sa {
            assert!(!std::mem::replace(&mut seen[p as usize], true), "{p} twice");
        }
        for r in 1..s.len() {
            let (a, b) = (sa[r - 1], sa[r]);
            assert!(key(a) <= key(b), "{a} before {b} (cap {cap})");
            let shared = s[a as usize..]
                .iter()
                .zip(&s[b as usize..])
                .take_while(|(x, y)| x == y)
                .count();
            assert_eq!(
                lcp[r] as usize,
                shared.min(cap),
                "lcp at rank {r} (cap {cap})"
            );
        }
    }

    #[test]
    fn a_chunk_of_mostly_one_pair_is_refused() {
        // `zeros` suffixes start with pair 0, the rest evenly with 1000
        // others.
        let count = |zeros: usize, n: usize| {
            let mut c = vec![0u32; 65537];
            c[1] = zeros as u32;
            for k in 0..1000 {
                c[2 + k] = ((n - zeros) / 1000) as u32;
            }
            c
        };
        assert!(!one_pair_too_many(&count(SLICE, SLICE + 10), SLICE + 10));
        assert!(one_pair_too_many(&count(SLICE + 1, SLICE + 10), SLICE + 10));
        let n = 8 * SLICE;
        assert!(!one_pair_too_many(&count(n / 4, n), n));
        assert!(one_pair_too_many(&count(n / 4 + 1, n), n));
        // And the sort says so without sorting.
        let zeros = vec![0u8; SLICE + 2];
        let mut sa = vec![0u32; zeros.len()];
        let mut lcp = vec![0u8; zeros.len()];
        assert!(!sort_prefixes(
            &zeros,
            &mut sa,
            &mut lcp,
            64,
            &mut Vec::new()
        ));
    }

    #[test]
    fn sorts_like_a_comparison_sort() {
        for s in [
            &b""[..],
            b"a",
            b"aa",
            b"ab",
            b"ba",
            b"banana",
            b"mississippi",
            b"abracadabra abracadabra",
            &[0u8; 100],
            b"abababababababababababababab",
            b"aabaabaabaaab",
        ] {
            check(s);
        }
        // Random text over small and full alphabets, with long copies (so
        // groups go down every level of keys).
        let mut rnd = crate::codec::xorshift(0x2545_F491_4F6C_DD1Du64);
        for round in 0..200 {
            let n = (rnd() % 3000) as usize;
            let k = [2u64, 3, 4, 26, 256][round % 5];
            let mut s: Vec<u8> = (0..n).map(|_| (rnd() % k) as u8).collect();
            if n > 100 && round % 3 == 0 {
                let (a, l) = ((rnd() as usize) % (n / 2), n / 4);
                let b = n - l;
                s.copy_within(a..a + l, b);
            }
            check(&s);
        }
    }
}

/// Sort the suffixes of `data` by their first `cap` bytes only (bytes past
/// the end count as zeros; suffixes equal that far in any order) into `sa`,
/// and set `lcp[r]` to the length of the prefix the suffixes at ranks `r -
/// 1` and `r` share, at most `cap` (`lcp[0]` = 0). False, and nothing
/// sorted, when more than a quarter of the suffixes (and more than
/// [`SLICE`]) start with the same two bytes (a chunk of mostly zeros):
/// their keys would take 16 bytes each and every one of them would go all
/// the way down to the cap.
///
/// Why not a whole suffix array: a match finder capped at a nice length
/// needs no order beyond it, and this costs a counting sort and a few
/// key sorts in the caches per position where suffix sorting by
/// induction costs many more loads from anywhere in the chunk. The LCP
/// comes with it: two neighbours share the bytes before their keys differ.
pub(crate) fn sort_prefixes(
    data: &[u8],
    sa: &mut [u32],
    lcp: &mut [u8],
    cap: usize,
    keys: &mut Vec<Key>,
) -> bool {
    let n = data.len();
    debug_assert!(sa.len() == n && lcp.len() == n && (2..=255).contains(&cap));
    if n == 0 {
        return true;
    }
    // By the first two bytes: a counting sort.
    let two = |i: usize| -> usize {
        (data[i] as usize) << 8 | data.get(i + 1).map_or(0, |&b| b as usize)
    };
    let mut start = vec![0u32; 65537];
    for i in 0..n {
        start[two(i) + 1] += 1;
    }
    if one_pair_too_many(&start, n) {
        return false;
    }
    for k in 1..start.len() {
        start[k] += start[k - 1];
    }
    // Neighbours in different groups share the first byte or nothing.
    let mut last = None;
    for k in 0..65536 {
        if start[k] < start[k + 1] {
            if let Some(prev) = last {
                lcp[start[k] as usize] = u8::from(prev >> 8 == k >> 8);
            }
            last = Some(k);
        }
    }
    lcp[0] = 0;
    // Then each group of equal prefixes by the next 8 bytes, and so on. The
    // first such keys are gathered in text order (one pass over the chunk
    // for each slice of the groups that fits `SLICE`), not loaded from
    // wherever each suffix starts.
    let mut fill = vec![0u32; 65536];
    let mut todo: Vec<(u32, u32, u32)> = Vec::new();
    let mut k0 = 0;
    while k0 < 65536 {
        let mut k1 = k0 + 1;
        while k1 < 65536 && (start[k1 + 1] - start[k0]) as usize <= SLICE {
            k1 += 1;
        }
        let base = start[k0] as usize;
        keys.clear();
        keys.resize(start[k1] as usize - base, (0, 0, 0));
        fill[k0..k1].copy_from_slice(&start[k0..k1]);
        for i in 0..n {
            let k = two(i);
            if (k0..k1).contains(&k) {
                keys[fill[k] as usize - base] = (key_at(data, i + 2), left(n, i, 2), i as u32);
                fill[k] += 1;
            }
        }
        for k in k0..k1 {
            let (lo, hi) = (start[k] as usize, start[k + 1] as usize);
            if hi - lo > 1 {
                let group = &mut keys[lo - base..hi - base];
                group.sort_unstable();
                settle(
                    group,
                    &mut sa[lo..hi],
                    &mut lcp[lo..hi],
                    lo,
                    2,
                    cap,
                    &mut todo,
                );
            } else if hi > lo {
                sa[lo] = keys[lo - base].2;
            }
        }
        k0 = k1;
    }
    let mut group = Vec::new();
    while let Some((lo, hi, d)) = todo.pop() {
        let (lo, hi, d) = (lo as usize, hi as usize, d as usize);
        group.clear();
        group.extend(
            sa[lo..hi]
                .iter()
                .map(|&p| (key_at(data, p as usize + d), left(n, p as usize, d), p)),
        );
        group.sort_unstable();
        settle(
            &group,
            &mut sa[lo..hi],
            &mut lcp[lo..hi],
            lo,
            d,
            cap,
            &mut todo,
        );
    }
    // The keys' zeros past the end may have matched real zeros: measure
    // the neighbours of the last suffixes again.
    let near = n.saturating_sub(cap + 8) as u32;
    for r in 0..n {
        if sa[r] >= near {
            for r in [r, r + 1] {
                if (1..n).contains(&r) {
                    let (a, b) = (sa[r - 1] as usize, sa[r] as usize);
                    lcp[r] = super::bt::match_len(data, a, b, cap.min(n - a.max(b))) as u8;
                }
            }
        }
    }
    true
}

/// Whether one pair of first bytes starts more than a quarter of the `n`
/// suffixes, and more than [`SLICE`] (`count[k + 1]`: how many start with
/// pair `k`).
fn one_pair_too_many(count: &[u32], n: usize) -> bool {
    let most = SLICE.max(n / 4);
    count.iter().any(|&c| c as usize > most)
}

/// Suffixes gathered by their first 2 bytes in text order per slice of
/// the groups: at most this many at a time (16 bytes each).
pub(crate) const SLICE: usize = 1 << 23;

/// A suffix in a group being sorted: its next 8 bytes, how long it is as
/// far as the group has looked ([`left`]), its position. In that order: a
/// suffix that ends is smaller than any that goes on with the same bytes
/// (the zeros that stand for bytes past the end could be real ones).
type Key = (u64, u16, u32);

/// The length of the suffix at `p`, at most `d + 8`: the same for all of a
/// group at depth `d` but those ending within its keys.
#[inline(always)]
fn left(n: usize, p: usize, d: usize) -> u16 {
    (n - p).min(d + 8) as u16
}

/// The 8 bytes from `i`, big-endian (so integer order is byte order),
/// zeros past the end.
#[inline(always)]
fn key_at(data: &[u8], i: usize) -> u64 {
    match data.get(i..i + 8) {
        Some(w) => u64::from_be_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]),
        None => {
            let mut b = [0u8; 8];
            let rest = data.get(i..).unwrap_or(&[]);
            b[..rest.len()].copy_from_slice(rest);
            u64::from_be_bytes(b)
        }
    }
}

/// A group whose suffixes share `d` bytes, now `sorted` by the next 8, at
/// ranks from `lo`: its order into `sa`, the LCP of neighbours whose keys
/// differ (or that reached the cap) into `lcp` (the group's first is its
/// predecessor's business), and runs of equal keys queued to go deeper.
#[allow(clippy::too_many_arguments)]
fn settle(
    sorted: &[Key],
    sa: &mut [u32],
    lcp: &mut [u8],
    lo: usize,
    d: usize,
    cap: usize,
    todo: &mut Vec<(u32, u32, u32)>,
) {
    for (slot, &(_, _, p)) in sa.iter_mut().zip(sorted) {
        *slot = p;
    }
    let deeper = d + 8 < cap;
    let mut run = 0;
    for r in 1..sorted.len() {
        let (ka, kb) = (sorted[r - 1].0, sorted[r].0);
        if ka == kb && sorted[r - 1].1 == sorted[r].1 && deeper {
            continue;
        }
        if r - run > 1 {
            todo.push(((lo + run) as u32, (lo + r) as u32, (d + 8) as u32));
        }
        run = r;
        let shared = d + ((ka ^ kb).leading_zeros() / 8) as usize;
        lcp[r] = shared.min(cap) as u8;
    }
    if deeper && sorted.len() - run > 1 {
        todo.push((
            (lo + run) as u32,
            (lo + sorted.len()) as u32,
            (d + 8) as u32,
        ));
    }
}

/// Opt-in: the time to sort the suffixes of the file named by
/// `SUFFIX_BENCH_FILE`.
#[cfg(test)]
mod bench {
    #[test]
    #[ignore]
    fn sort_file() {
        let Ok(path) = std::env::var("SUFFIX_BENCH_FILE") else {
            return;
        };
        let data = std::fs::read(path).expect("bench file readable");
        let mut sa = vec![0u32; data.len()];
        let mut keys = Vec::new();
        let mut lcp = vec![0u8; data.len()];
        for _ in 0..2 {
            let t = std::time::Instant::now();
            assert!(super::sort_prefixes(
                &data, &mut sa, &mut lcp, 64, &mut keys
            ));
            println!(
                "{} prefixes sorted in {:.3} s",
                data.len(),
                t.elapsed().as_secs_f64()
            );
        }
    }
}
