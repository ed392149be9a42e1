//! Windows FILETIME helpers.

/// 100 ns intervals between 1601-01-01 and 1970-01-01.
pub const EPOCH_DIFF: i64 = 116_444_736_000_000_000;

/// FILETIME to (seconds, nanoseconds) since the Unix epoch.
pub fn filetime_to_unix(ft: u64) -> (i64, u32) {
    // Wrapping: a stored time at or past 2^63 is no FILETIME, and must not
    // panic (an image's times are untrusted); release builds always
    // wrapped here, so every time shows as it did.
    let t = (ft as i64).wrapping_sub(EPOCH_DIFF);
    (
        t.div_euclid(10_000_000),
        (t.rem_euclid(10_000_000) * 100) as u32,
    )
}

/// (seconds, nanoseconds) since the Unix epoch to FILETIME.
pub fn unix_to_filetime(secs: i64, nanos: u32) -> u64 {
    (secs
        .saturating_mul(10_000_000)
        .saturating_add(nanos as i64 / 100)
        .saturating_add(EPOCH_DIFF))
    .max(0) as u64
}

/// The current time as a FILETIME.
pub fn now_filetime() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    unix_to_filetime(d.as_secs() as i64, d.subsec_nanos())
}

/// Format a FILETIME as `YYYY-MM-DD HH:MM:SS.fffffff UTC`.
pub fn format_filetime(ft: u64) -> String {
    let (s, ns) = filetime_to_unix(ft);
    let days = s.div_euclid(86400);
    let rem = s.rem_euclid(86400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:07} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ns / 100
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn known_dates() {
        assert_eq!(
            format_filetime(EPOCH_DIFF as u64),
            "1970-01-01 00:00:00.0000000 UTC"
        );
        // 2013-01-01 00:00:00 UTC = 1356998400.
        assert_eq!(
            format_filetime(unix_to_filetime(1_356_998_400, 500)),
            "2013-01-01 00:00:00.0000005 UTC"
        );
        assert_eq!(filetime_to_unix(unix_to_filetime(-5, 300)), (-5, 300));
    }
}
