//! Per-client rate limits, kept in memory by each instance. Referral codes are not guessable
//! (31⁸ of them), and this keeps it so: a client may look up only so many codes a minute.

use crate::error::AppError;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;

/// Clients tracked before idle ones are dropped from the table.
const FORGET_IDLE_ABOVE: usize = 10_000;

pub struct Limits {
    code_lookups: DefaultKeyedRateLimiter<String>,
}

impl Limits {
    pub fn new(code_lookups_per_minute: u32) -> Self {
        let rate = NonZeroU32::new(code_lookups_per_minute).unwrap_or(NonZeroU32::MIN);
        Limits {
            code_lookups: RateLimiter::keyed(Quota::per_minute(rate)),
        }
    }

    /// Counts one code lookup by `client`; `RATE_LIMITED` past the quota.
    pub fn code_lookup(&self, client: &str) -> Result<(), AppError> {
        // Forget idle clients once the table grows, so it stays as small as the active set.
        if self.code_lookups.len() > FORGET_IDLE_ABOVE {
            self.code_lookups.retain_recent();
        }
        if self.code_lookups.check_key(&client.to_owned()).is_ok() {
            return Ok(());
        }
        Err(AppError::RateLimited(
            "too many referral-code lookups; try again in a minute".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_has_its_own_quota() {
        let limits = Limits::new(3);
        for _ in 0..3 {
            assert!(limits.code_lookup("a").is_ok());
        }
        assert!(matches!(limits.code_lookup("a"), Err(AppError::RateLimited(_))));
        assert!(limits.code_lookup("b").is_ok());
    }
}
