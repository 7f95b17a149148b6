//! Points in time as the commands print them: RFC 3339 with the offset
//! (`2026-12-05T18:40:01.123+01:00`), in local time for people unless they
//! ask for UTC, always in UTC (`...Z`) in JSON. And ages and durations in
//! words (`17m`, `0.3s`, `250 ms`), all here so that one quantity is
//! written one way everywhere.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// The zone a table shows times in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The system's time zone (`TZ`, else `/etc/localtime`; UTC when
    /// neither names one).
    Local,
    /// UTC, whatever the system's zone (`--utc`).
    Utc,
}

impl Zone {
    /// `Utc` when `utc` (the `--utc` flag), else `Local`.
    pub fn chosen(utc: bool) -> Self {
        if utc { Zone::Utc } else { Zone::Local }
    }
}

fn timestamp(unix_ns: u64) -> Timestamp {
    // A u64 of nanoseconds reaches 2554, inside jiff's range; the fallback
    // is for the impossible.
    Timestamp::from_nanosecond(i128::from(unix_ns)).unwrap_or(Timestamp::MAX)
}

/// A Unix time in ns as RFC 3339 with milliseconds and the offset of
/// `zone`: `2026-12-05T19:40:01.123+01:00`, or `...Z` in UTC.
pub fn rfc3339(unix_ns: u64, zone: Zone) -> String {
    let at = timestamp(unix_ns);
    match zone {
        Zone::Utc => utc(unix_ns),
        Zone::Local => at
            .to_zoned_datetime(TimeZone::system())
            .strftime("%Y-%m-%dT%H:%M:%S%.3f%:z")
            .to_string(),
    }
}

/// A Unix time in ns as RFC 3339 in UTC with milliseconds, for JSON:
/// `2026-12-05T18:40:01.123Z`.
pub fn utc(unix_ns: u64) -> String {
    timestamp(unix_ns)
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Now, as a Unix time in ns.
pub fn now_ns() -> u64 {
    shmhub::sys::unix_ns()
}

/// An age as people read it: `42s`, `17m`, `3h`, `5d`.
pub fn human_age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// A heartbeat interval in words: `off` (0: no heartbeats) or `N ms`.
pub fn heartbeat_interval(interval_ms: u32) -> String {
    if interval_ms == 0 {
        "off".into()
    } else {
        format!("{interval_ms} ms")
    }
}

/// A heartbeat's age in seconds with one decimal, `0.3s`: ages are
/// compared with an interval of milliseconds, so whole seconds (as
/// [`human_age`] gives) would hide what matters.
pub fn heartbeat_age(age_ms: u64) -> String {
    format!("{:.1}s", age_ms as f64 / 1000.0)
}

/// Whole seconds from `unix_ns` to now (0 for a time in the future).
pub fn age_secs(unix_ns: u64) -> u64 {
    now_ns().saturating_sub(unix_ns) / 1_000_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: u64 = 1_796_496_001_123_456_789; // 2026-12-05T18:40:01.123456789Z

    #[test]
    fn utc_is_rfc3339_with_milliseconds_and_z() {
        assert_eq!(utc(AT), "2026-12-05T18:40:01.123Z");
        assert_eq!(rfc3339(AT, Zone::Utc), "2026-12-05T18:40:01.123Z");
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn local_times_carry_their_offset_and_name_the_same_instant() {
        let local = rfc3339(AT, Zone::Local);
        let parsed: jiff::Timestamp = local.parse().expect("RFC 3339");
        assert_eq!(parsed.as_millisecond(), (AT / 1_000_000) as i64);
        let offset = &local[23..];
        assert!(
            offset.starts_with('+') || offset.starts_with('-'),
            "{local}: no numeric offset"
        );
    }

    #[test]
    fn ages_read_in_the_largest_whole_unit() {
        for (secs, text) in [
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (7199, "119m"),
            (7200, "2h"),
            (172_800, "2d"),
        ] {
            assert_eq!(human_age(secs), text);
        }
    }

    #[test]
    fn heartbeat_intervals_are_off_or_milliseconds() {
        assert_eq!(heartbeat_interval(0), "off");
        assert_eq!(heartbeat_interval(1), "1 ms");
        assert_eq!(heartbeat_interval(250), "250 ms");
        assert_eq!(heartbeat_interval(u32::MAX), "4294967295 ms");
    }

    #[test]
    fn heartbeat_ages_are_seconds_with_one_decimal() {
        for (ms, text) in [
            (0, "0.0s"),
            (49, "0.0s"),
            (51, "0.1s"),
            (250, "0.2s"),
            (1000, "1.0s"),
            (12_345, "12.3s"),
            (3_600_000, "3600.0s"),
        ] {
            assert_eq!(heartbeat_age(ms), text, "{ms} ms");
        }
    }
}
