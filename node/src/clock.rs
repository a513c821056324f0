//! The wall clock, in one place.
//!
//! Why one module: the store stamps reassignments with the time, the QUIC
//! driver hands the sync engine its `now_ms`, the gateway and the CLI stamp
//! `created_at` and `at` on what they write. When each read the clock its
//! own way, the product wrote timestamps in two formats (whole seconds and
//! milliseconds) and nothing guaranteed that a reassignment's stamp and the
//! engine's grace-period arithmetic used the same clock. Everything that
//! needs "now" asks here, and every timestamp the product writes is
//! [`rfc3339_ms`]: UTC, milliseconds, `Z` (`2026-05-01T12:00:00.123Z`),
//! which also sorts as text in time order.
//!
//! Why the readers need the `runtime` feature and the formatting does not:
//! the sans-IO engine never reads the clock (time comes in as `now_ms`), so
//! without `runtime` only the pure conversions exist, and the simulator can
//! format its virtual time the same way. Formatting is done by hand from
//! the milliseconds (the civil-from-days algorithm), so it needs no crate.

#[cfg(feature = "runtime")]
use std::time::{SystemTime, UNIX_EPOCH};

const MS_PER_DAY: u64 = 86_400_000;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
#[cfg(feature = "runtime")]
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Seconds since the Unix epoch (0 if the clock is before it): the time
/// Automerge changes are stamped with.
#[cfg(feature = "runtime")]
pub fn now_s() -> u64 {
    now_ms() / 1000
}

/// Now, as [`rfc3339_ms`] writes it.
#[cfg(feature = "runtime")]
pub fn now_rfc3339() -> String {
    rfc3339_ms(now_ms())
}

/// The current year (UTC), for generated work-order numbers.
#[cfg(feature = "runtime")]
pub fn year() -> i32 {
    year_of(now_ms())
}

/// `ms` since the Unix epoch as RFC 3339 in UTC with exactly three
/// fractional digits, e.g. `2026-05-01T12:00:00.123Z`.
pub fn rfc3339_ms(ms: u64) -> String {
    let (year, month, day) = civil_from_days(ms / MS_PER_DAY);
    let of_day = ms % MS_PER_DAY;
    let (hour, minute) = (of_day / 3_600_000, of_day / 60_000 % 60);
    let (second, milli) = (of_day / 1000 % 60, of_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
}

/// An RFC 3339 date-time (any offset, any fraction, `T` or a space) as
/// ms since the Unix epoch; `None` when `text` is not one (a date that
/// does not exist, hour 24...) or falls before 1970. The one parser of the
/// timestamps the product reads: events, batch summaries, and items a
/// peer appends (the sans-IO engine uses it, so it needs no crate).
pub fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let number = |from: usize, to: usize| -> Option<u64> {
        b.get(from..to)?.iter().try_fold(0u64, |value, &digit| {
            digit
                .is_ascii_digit()
                .then(|| value * 10 + u64::from(digit - b'0'))
        })
    };
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, byte)| b[at] != byte) || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &b[19..];
    let mut milli = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let count = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if count == 0 {
            return None;
        }
        milli = fraction[..count.min(3)]
            .iter()
            .fold(0, |value, digit| value * 10 + u64::from(digit - b'0'))
            * 10u64.pow(3 - count.min(3) as u32);
        rest = &fraction[count..];
    }
    let offset_ms: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digit = |d: &u8| d.is_ascii_digit().then(|| i64::from(d - b'0'));
            let (hours, minutes) = (digit(h1)? * 10 + digit(h2)?, digit(m1)? * 10 + digit(m2)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let magnitude = (hours * 60 + minutes) * 60_000;
            if *sign == b'+' {
                magnitude
            } else {
                -magnitude
            }
        }
        _ => return None,
    };
    // A leap second counts as the last millisecond of its minute.
    let (second, milli) = if second == 60 {
        (59, 999)
    } else {
        (second, milli)
    };
    let days = days_from_civil(year, month, day)?;
    let local_ms =
        ((days * 24 + hour as i64) * 60 + minute as i64) * 60_000 + (second * 1000 + milli) as i64;
    u64::try_from(local_ms - offset_ms).ok()
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a civil date (Hinnant's `days_from_civil`);
/// `None` before year 1.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<i64> {
    let y = year as i64 - i64::from(month <= 2);
    if y < 0 {
        return None;
    }
    let era = y / 400;
    let year_of_era = y - era * 400;
    let m = month as i64;
    let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

/// The UTC year `ms` since the Unix epoch falls in.
pub fn year_of(ms: u64) -> i32 {
    civil_from_days(ms / MS_PER_DAY).0
}

/// (year, month 1–12, day 1–31) of a day count since 1970-01-01, by
/// Howard Hinnant's `civil_from_days` for the proleptic Gregorian calendar.
fn civil_from_days(days: u64) -> (i32, u32, u32) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = (year_of_era + era * 400) as i64 + i64::from(month <= 2);
    (year as i32, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_with_three_fractional_digits() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1), "1970-01-01T00:00:00.001Z");
        assert_eq!(rfc3339_ms(1_777_636_800_123), "2026-05-01T12:00:00.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
        assert_eq!(rfc3339_ms(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_767_225_599_999), "2025-12-31T23:59:59.999Z");
    }

    #[test]
    fn the_year_turns_at_midnight_utc() {
        assert_eq!(year_of(1_767_225_599_999), 2025);
        assert_eq!(year_of(1_767_225_600_000), 2026);
        assert_eq!(year_of(0), 1970);
    }

    #[test]
    fn text_order_is_time_order() {
        let stamps: Vec<u64> = (0..2000).map(|i| i * 7_919_999_993).collect();
        let texts: Vec<String> = stamps.iter().map(|&ms| rfc3339_ms(ms)).collect();
        assert!(texts.windows(2).all(|pair| pair[0] < pair[1]));
    }

    /// Cross-check the hand-written calendar against the `time` crate over
    /// four centuries of scattered instants.
    #[cfg(feature = "runtime")]
    #[test]
    fn agrees_with_the_time_crate() {
        use time::format_description::well_known::Rfc3339;
        for i in 0..20_000u64 {
            let ms = i * 631_152_000_001 % 13_000_000_000_000;
            let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .unwrap();
            let whole = at.replace_nanosecond(0).unwrap().format(&Rfc3339).unwrap();
            let expected = format!("{}.{:03}Z", whole.trim_end_matches('Z'), ms % 1000);
            assert_eq!(rfc3339_ms(ms), expected, "{ms}");
            assert_eq!(year_of(ms), at.year(), "{ms}");
        }
    }

    #[test]
    fn parses_what_it_writes_and_refuses_the_rest() {
        for ms in [0, 1_780_000_000_123, 4_102_444_800_000, 951_782_400_000] {
            assert_eq!(parse_rfc3339_ms(&rfc3339_ms(ms)), Some(ms));
        }
        let good = [
            ("2026-12-06T10:00:00+02:00", 1_796_544_000_000),
            ("2026-12-06t08:00:00z", 1_796_544_000_000),
            ("2026-12-06 08:00:00.5Z", 1_796_544_000_500),
            ("2026-12-06T08:00:00.123456789-00:30", 1_796_545_800_123),
            ("2016-12-31T23:59:60Z", 1_483_228_799_999),
        ];
        for (text, ms) in good {
            assert_eq!(parse_rfc3339_ms(text), Some(ms), "{text}");
        }
        for bad in [
            "",
            "2026-12-06",
            "2026-02-30T00:00:00Z",
            "2025-02-29T12:00:00Z",
            "2026-12-06T25:00:00Z",
            "2026-12-06T12:60:00Z",
            "2026-12-06T12:00:61Z",
            "2026-12-06T12:00:00",
            "2026-12-06T12:00:00.Z",
            "2026-12-06T12:00:00+3:00",
            "2026-12-06T12:00:00+24:00",
            "2026-12-06T12:00:00Z ",
            "+2026-12-06T12:00:00Z",
            "1969-12-31T23:59:59Z",
            "２026-05-01T12:00:00Z",
            "yesterday",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    /// Cross-check the hand-written parser against the `time` crate.
    #[cfg(feature = "runtime")]
    #[test]
    fn parsing_agrees_with_the_time_crate() {
        use time::format_description::well_known::Rfc3339;
        for i in 0..20_000u64 {
            let ms = i * 631_152_000_001 % 13_000_000_000_000;
            let offset_min = (i % 1_440) as i64 - 720;
            let offset = time::UtcOffset::from_whole_seconds((offset_min * 60) as i32).unwrap();
            let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .unwrap()
                .to_offset(offset);
            let text = at.format(&Rfc3339).unwrap();
            assert_eq!(parse_rfc3339_ms(&text), Some(ms), "{text}");
        }
    }

    #[cfg(feature = "runtime")]
    #[test]
    fn now_is_after_2025_and_consistent() {
        let (ms, s) = (now_ms(), now_s());
        assert!(ms > 1_735_689_600_000);
        assert!(s.abs_diff(ms / 1000) <= 1);
        assert!(year() >= 2025);
        assert_eq!(now_rfc3339().len(), "2026-05-01T12:00:00.123Z".len());
    }
}
