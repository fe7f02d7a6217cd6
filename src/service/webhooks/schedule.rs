//! When a failed delivery is tried again: exponential backoff with jitter. The n-th retry waits
//! `BASE · 4^(n-1)`, at most `CAP`, each scaled by a random factor in `1 ± JITTER` so that
//! endpoints that failed together do not all come back at the same second. `MAX_ATTEMPTS`
//! tries span more than a day even when every factor comes out at its lowest (tested below).

use chrono::Duration;
use rand::Rng;

pub const MAX_ATTEMPTS: i32 = 10;
const BASE_SECONDS: f64 = 10.0;
const FACTOR: f64 = 4.0;
const CAP_SECONDS: f64 = 12.0 * 3600.0;
const JITTER: f64 = 0.15;

/// An endpoint whose deliveries have failed without a success for this long is disabled.
pub fn disable_after() -> Duration {
    Duration::days(5)
}

/// The wait after the `attempts`-th failed attempt (1-based), for a jitter `factor` in [-1, 1].
pub fn delay_with(attempts: i32, factor: f64) -> Duration {
    let exponent = attempts.clamp(1, MAX_ATTEMPTS) - 1;
    let seconds = (BASE_SECONDS * FACTOR.powi(exponent)).min(CAP_SECONDS);
    let scaled = seconds * (1.0 + JITTER * factor.clamp(-1.0, 1.0));
    Duration::milliseconds((scaled * 1000.0).round() as i64)
}

/// `delay_with` at a random jitter.
pub fn delay(attempts: i32) -> Duration {
    delay_with(attempts, rand::rng().random_range(-1.0..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(factor: f64) -> Duration {
        (1..MAX_ATTEMPTS).map(|n| delay_with(n, factor)).sum()
    }

    #[test]
    fn retries_span_more_than_a_day_at_the_lowest_jitter() {
        assert!(span(-1.0) >= Duration::hours(24), "{:?}", span(-1.0));
        assert!(span(1.0) <= Duration::hours(48), "{:?}", span(1.0));
    }

    #[test]
    fn each_wait_is_longer_than_the_last_until_the_cap_whatever_the_jitter() {
        for n in 1..6 {
            assert!(delay_with(n + 1, -1.0) > delay_with(n, 1.0), "retry {n}");
        }
        assert_eq!(delay_with(9, 0.0), Duration::hours(12));
        assert_eq!(delay_with(1, 0.0), Duration::seconds(10));
    }
}
