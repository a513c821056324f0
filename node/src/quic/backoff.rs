//! Redial delays: exponential, bounded, jittered.
//!
//! Why jitter: after a central restarts, every laptop that lost it redials.
//! Without jitter they all come back in the same millisecond, every time.
//! The delay for attempt `n` is drawn uniformly from the upper half of
//! `min(max, min_delay * 2^n)`, so it still grows and never exceeds `max`.

use rand::Rng;

/// Backoff state for one peer.
#[derive(Clone, Debug)]
pub struct Backoff {
    delay_ms_min: u64,
    delay_ms_max: u64,
    attempt: u32,
}

impl Backoff {
    pub fn new(delay_ms_min: u64, delay_ms_max: u64) -> Backoff {
        assert!(delay_ms_min > 0 && delay_ms_min <= delay_ms_max);
        Backoff {
            delay_ms_min,
            delay_ms_max,
            attempt: 0,
        }
    }

    /// The ceiling of the next delay, before jitter.
    pub fn ceiling_ms(&self) -> u64 {
        let factor = 1u64.checked_shl(self.attempt.min(32)).unwrap_or(u64::MAX);
        self.delay_ms_min
            .saturating_mul(factor)
            .min(self.delay_ms_max)
    }

    /// The next delay, jittered; grows the ceiling for the one after.
    pub fn next_delay_ms(&mut self, rng: &mut impl Rng) -> u64 {
        let ceiling = self.ceiling_ms();
        self.attempt = self.attempt.saturating_add(1);
        let floor = (ceiling / 2).max(self.delay_ms_min.min(ceiling));
        let delay = rng.random_range(floor..=ceiling);
        debug_assert!(delay >= self.delay_ms_min.min(ceiling) && delay <= self.delay_ms_max);
        delay
    }

    /// A connection worked: start again from the smallest delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn delays_grow_stay_bounded_and_vary() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut backoff = Backoff::new(500, 60_000);
        let mut ceilings = Vec::new();
        for _ in 0..20 {
            let ceiling = backoff.ceiling_ms();
            let delay = backoff.next_delay_ms(&mut rng);
            assert!(
                delay <= ceiling && delay >= (ceiling / 2).max(500),
                "{delay} vs {ceiling}"
            );
            ceilings.push(ceiling);
        }
        assert_eq!(&ceilings[..5], &[500, 1000, 2000, 4000, 8000]);
        assert_eq!(*ceilings.last().unwrap(), 60_000);
        let mut spread = std::collections::HashSet::new();
        for _ in 0..20 {
            spread.insert(backoff.next_delay_ms(&mut rng));
        }
        assert!(spread.len() > 10, "jitter must spread redials: {spread:?}");
        backoff.reset();
        assert_eq!(backoff.ceiling_ms(), 500);
    }
}
