//! Rate limits: requests per client, and failed token attempts.
//!
//! Requests: one GCRA limiter (`governor`) for every request, keyed by the
//! token's user (or the peer address when there is no valid token).
//!
//! Token attempts: only *failures* are limited, so nobody can lock a
//! client out by guessing its secret (hardening finding 6; before, every
//! attempt was charged to the claimed client id before the secret was
//! checked, and a guesser spent `erp`'s budget for it).
//!
//! - Per source address: an attempt is charged to its source *before* the
//!   Argon2 check (so a burst of concurrent guesses cannot all slip past
//!   the budget while they wait for the check) and refunded when the secret
//!   was right. A source over its budget is answered 429 before any Argon2
//!   work: guessing costs the guesser, not the server.
//! - Per claimed client id (known or not, so the limit does not tell which
//!   ids exist): failures are counted, but the count never refuses an
//!   attempt by itself, since a client presenting the right secret from
//!   another source must still get its token. Once a client's failure
//!   budget is spent, a further failure for it locks the failing source for
//!   the whole window: guessers spread over many addresses get one guess per
//!   address per window instead of a full budget each.
//!
//! A source is an IPv4 address, or an IPv6 /64: one host commonly holds a
//! whole /64, and keying single IPv6 addresses would give it 2^64 budgets.
//!
//! The one thing a per-source limit cannot tell apart is two clients
//! behind one address (a NAT, or a proxy whose forwarded address is not
//! believed): they share that address's failure budget.
//!
//! Failure budgets are kept by hand (GCRA, a theoretical arrival time per
//! key) because `governor` cannot look at a key without charging it nor
//! give a charge back. Idle keys are dropped once more than
//! `rate_limit_keys_max` are held.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::GatewayConfig;
use crate::error::ApiError;

/// The window failure budgets are counted over.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

pub(crate) struct RateLimits {
    requests: DefaultKeyedRateLimiter<String>,
    /// Failed token attempts per source address.
    failures_by_source: FailureBudget,
    /// Failed token attempts per claimed client id.
    failures_by_client: FailureBudget,
    keys_max: usize,
    clock: DefaultClock,
}

fn non_zero(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN)
}

fn rate_limited(wait: Duration) -> ApiError {
    metrics::counter!("fieldsync_http_rate_limited_total").increment(1);
    ApiError::rate_limited(wait.as_secs_f64().ceil() as u64)
}

/// A token attempt that passed its source's budget: report how it ended
/// with [`RateLimits::token_succeeded`] or [`RateLimits::token_failed`].
#[must_use]
pub(crate) struct Attempt {
    source: String,
}

impl RateLimits {
    pub(crate) fn new(config: &GatewayConfig) -> RateLimits {
        let requests = Quota::per_second(non_zero(config.requests_per_s))
            .allow_burst(non_zero(config.request_burst));
        let attempts = config.token_attempts_per_minute.max(1);
        RateLimits {
            requests: RateLimiter::keyed(requests),
            failures_by_source: FailureBudget::new(attempts, config.rate_limit_keys_max),
            failures_by_client: FailureBudget::new(attempts, config.rate_limit_keys_max),
            keys_max: config.rate_limit_keys_max,
            clock: DefaultClock::default(),
        }
    }

    pub(crate) fn check_request(&self, key: &str) -> Result<(), ApiError> {
        if self.requests.len() > self.keys_max {
            self.requests.retain_recent();
        }
        match self.requests.check_key(&key.to_string()) {
            Ok(()) => Ok(()),
            Err(not_until) => Err(rate_limited(not_until.wait_time_from(self.clock.now()))),
        }
    }

    /// Before a secret is checked: refused (429) when `source` has spent
    /// its failure budget; otherwise the attempt is charged to `source`
    /// until it is known to have succeeded.
    pub(crate) fn begin_token_attempt(&self, peer: &str) -> Result<Attempt, ApiError> {
        let source = source_key(peer);
        self.failures_by_source
            .charge(&source, Instant::now())
            .map_err(rate_limited)?;
        Ok(Attempt { source })
    }

    /// The secret was right: the attempt costs its source nothing.
    pub(crate) fn token_succeeded(&self, attempt: Attempt) {
        self.failures_by_source
            .refund(&attempt.source, Instant::now());
    }

    /// The secret was wrong (or the client unknown or revoked): the source
    /// keeps the charge, the claimed client id is charged too, and when the
    /// client's budget was spent already the source is locked for the
    /// window.
    pub(crate) fn token_failed(&self, attempt: Attempt, client_id: &str) {
        let now = Instant::now();
        if self.failures_by_client.charge(client_id, now).is_err() {
            self.failures_by_source.lock(&attempt.source, now);
        }
    }
}

/// The failure budget's key for peer address `peer`: the address, or its
/// /64 for IPv6.
fn source_key(peer: &str) -> String {
    match peer.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(address)) => {
            let prefix = u128::from(address) & !((1u128 << 64) - 1);
            format!("{}/64", std::net::Ipv6Addr::from(prefix))
        }
        _ => peer.to_string(),
    }
}

/// Failures per key: `per_window` within [`FAILURE_WINDOW`], one coming
/// back every `window / per_window` (GCRA; the same arithmetic as
/// `governor`'s with a burst of `per_window`).
struct FailureBudget {
    /// Time one failure stays charged.
    interval: Duration,
    /// How far past now a key's arrival time may be and still take one
    /// more failure: `window - interval`.
    slack: Duration,
    keys_max: usize,
    /// Theoretical arrival time of each key's next failure; a key whose
    /// time is past holds its whole budget.
    arrivals: Mutex<HashMap<String, Instant>>,
}

impl FailureBudget {
    fn new(per_window: u32, keys_max: usize) -> FailureBudget {
        let interval = FAILURE_WINDOW / per_window.max(1);
        FailureBudget {
            interval,
            slack: FAILURE_WINDOW.saturating_sub(interval),
            keys_max,
            arrivals: Mutex::new(HashMap::new()),
        }
    }

    fn arrivals(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.arrivals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Charge one failure to `key`, or say how long until it can take one.
    fn charge(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut arrivals = self.arrivals();
        if arrivals.len() >= self.keys_max {
            arrivals.retain(|_, arrival| *arrival > now);
        }
        let arrival = arrivals.get(key).copied().unwrap_or(now).max(now);
        let allowed_until = now + self.slack;
        if arrival > allowed_until {
            return Err(arrival - allowed_until);
        }
        arrivals.insert(key.to_string(), arrival + self.interval);
        Ok(())
    }

    /// Give back one failure charged to `key`.
    fn refund(&self, key: &str, now: Instant) {
        let mut arrivals = self.arrivals();
        if let Some(arrival) = arrivals.get_mut(key) {
            *arrival = arrival
                .checked_sub(self.interval)
                .map_or(now, |earlier| earlier.max(now));
            if *arrival <= now {
                arrivals.remove(key);
            }
        }
    }

    /// Spend `key`'s whole budget: it takes no failure for a window.
    fn lock(&self, key: &str, now: Instant) {
        let locked = now + self.slack + FAILURE_WINDOW;
        let mut arrivals = self.arrivals();
        let arrival = arrivals.entry(key.to_string()).or_insert(locked);
        *arrival = (*arrival).max(locked);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_budget_takes_its_size_then_refuses_until_one_comes_back() {
        let budget = FailureBudget::new(4, 100);
        let now = Instant::now();
        for _ in 0..4 {
            budget.charge("a", now).unwrap();
        }
        let wait = budget.charge("a", now).unwrap_err();
        assert_eq!(wait, Duration::from_secs(15));
        // Other keys are untouched; one interval later "a" takes one more.
        budget.charge("b", now).unwrap();
        budget.charge("a", now + Duration::from_secs(15)).unwrap();
        assert!(budget.charge("a", now + Duration::from_secs(15)).is_err());
    }

    #[test]
    fn a_refund_gives_back_a_charge_and_a_lock_spends_the_window() {
        let budget = FailureBudget::new(2, 100);
        let now = Instant::now();
        for _ in 0..10 {
            budget.charge("a", now).unwrap();
            budget.refund("a", now);
        }
        assert!(budget.arrivals().is_empty(), "refunded keys are dropped");
        budget.lock("a", now);
        assert_eq!(
            budget.charge("a", now).unwrap_err(),
            Duration::from_secs(60)
        );
        assert!(budget.charge("a", now + Duration::from_secs(59)).is_err());
        budget.charge("a", now + Duration::from_secs(60)).unwrap();
    }

    #[test]
    fn an_ipv6_source_is_its_64() {
        assert_eq!(source_key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(
            source_key("2001:db8:1:2:ffff::1"),
            source_key("2001:db8:1:2::9")
        );
        assert_eq!(source_key("192.0.2.7"), "192.0.2.7");
        assert_eq!(source_key("unknown"), "unknown");
    }

    #[test]
    fn idle_keys_are_dropped_when_the_map_is_full() {
        let budget = FailureBudget::new(2, 3);
        let now = Instant::now();
        for key in ["a", "b", "c"] {
            budget.charge(key, now).unwrap();
        }
        let later = now + Duration::from_secs(31);
        budget.charge("d", later).unwrap();
        assert_eq!(budget.arrivals().len(), 1);
    }
}
