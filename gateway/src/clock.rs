//! Wall-clock time for the values the gateway stamps on operations.

use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Now as RFC 3339 in UTC, e.g. `2026-05-01T12:00:00.123Z`.
pub(crate) fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    let millis = now.replace_nanosecond(now.millisecond() as u32 * 1_000_000);
    millis
        .unwrap_or(now)
        .format(&Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// The year, for generated work-order numbers.
pub(crate) fn year() -> i32 {
    OffsetDateTime::now_utc().year()
}
