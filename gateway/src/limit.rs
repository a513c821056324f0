//! Per-client rate limits (GCRA, `governor`).
//!
//! Two limiters: one for every request, keyed by the token's user (or the
//! peer address when there is no valid token), and a stricter one for token
//! requests, checked per client id and per peer address before any Argon2
//! work is done, so guessing secrets costs the guesser, not the server.
//! Idle keys are dropped once more than `rate_limit_keys_max` are held.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::GatewayConfig;
use crate::error::ApiError;

pub(crate) struct RateLimits {
    requests: DefaultKeyedRateLimiter<String>,
    token_attempts: DefaultKeyedRateLimiter<String>,
    keys_max: usize,
    clock: DefaultClock,
}

fn non_zero(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN)
}

impl RateLimits {
    pub(crate) fn new(config: &GatewayConfig) -> RateLimits {
        let requests = Quota::per_second(non_zero(config.requests_per_s))
            .allow_burst(non_zero(config.request_burst));
        let attempts = non_zero(config.token_attempts_per_minute);
        let token_attempts = Quota::per_minute(attempts).allow_burst(attempts);
        RateLimits {
            requests: RateLimiter::keyed(requests),
            token_attempts: RateLimiter::keyed(token_attempts),
            keys_max: config.rate_limit_keys_max,
            clock: DefaultClock::default(),
        }
    }

    fn check(&self, limiter: &DefaultKeyedRateLimiter<String>, key: &str) -> Result<(), ApiError> {
        if limiter.len() > self.keys_max {
            limiter.retain_recent();
        }
        match limiter.check_key(&key.to_string()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                metrics::counter!("fieldsync_http_rate_limited_total").increment(1);
                let wait = not_until.wait_time_from(self.clock.now());
                Err(ApiError::rate_limited(wait.as_secs_f64().ceil() as u64))
            }
        }
    }

    pub(crate) fn check_request(&self, key: &str) -> Result<(), ApiError> {
        self.check(&self.requests, key)
    }

    /// A token attempt must pass both the client's and the address's limit.
    pub(crate) fn check_token_attempt(&self, client_id: &str, peer: &str) -> Result<(), ApiError> {
        self.check(&self.token_attempts, &format!("client:{client_id}"))?;
        self.check(&self.token_attempts, &format!("addr:{peer}"))
    }
}
