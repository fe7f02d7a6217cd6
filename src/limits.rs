//! Per-client rate limits, kept in memory by each instance. Referral codes are not guessable
//! (31⁸ of them), and this keeps it so: a client may look up only so many codes a minute.
//! Referral links (`/r/{code}`) answer whether a code exists too, so they have a quota of their
//! own, per client address.

use crate::error::AppError;
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

/// Clients tracked before idle ones are dropped from the table.
const FORGET_IDLE_ABOVE: usize = 10_000;

pub struct Limits {
    code_lookups: DefaultKeyedRateLimiter<String>,
    link_clicks: DefaultKeyedRateLimiter<IpAddr>,
}

/// The link quota until `with_link_clicks` sets the configured one.
const DEFAULT_LINK_CLICKS_PER_MINUTE: u32 = 120;

fn per_minute(rate: u32) -> DefaultKeyedRateLimiter<IpAddr> {
    RateLimiter::keyed(Quota::per_minute(NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN)))
}

impl Limits {
    pub fn new(code_lookups_per_minute: u32) -> Self {
        let rate = NonZeroU32::new(code_lookups_per_minute).unwrap_or(NonZeroU32::MIN);
        Limits {
            code_lookups: RateLimiter::keyed(Quota::per_minute(rate)),
            link_clicks: per_minute(DEFAULT_LINK_CLICKS_PER_MINUTE),
        }
    }

    /// The same limits with `per_minute` referral-link requests per client address.
    pub fn with_link_clicks(mut self, link_clicks_per_minute: u32) -> Self {
        self.link_clicks = per_minute(link_clicks_per_minute);
        self
    }

    /// Counts one referral-link request from `client`; past the quota, how long it should
    /// wait before the next one is let through.
    pub fn link_click(&self, client: IpAddr) -> Result<(), Duration> {
        if self.link_clicks.len() > FORGET_IDLE_ABOVE {
            self.link_clicks.retain_recent();
        }
        self.link_clicks
            .check_key(&client)
            .map_err(|not_until| not_until.wait_time_from(self.link_clicks.clock().now()))
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

    #[test]
    fn link_clicks_have_a_quota_per_address_with_a_wait() {
        let limits = Limits::new(1).with_link_clicks(2);
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        assert!(limits.link_click(a).is_ok());
        assert!(limits.link_click(a).is_ok());
        let wait = limits.link_click(a).err();
        // Two a minute: the next one is let through about 30 s later.
        assert!(
            wait.is_some_and(|w| w > Duration::from_secs(20) && w <= Duration::from_secs(30)),
            "{wait:?}"
        );
        assert!(limits.link_click(b).is_ok());
        // The code-lookup quota is separate.
        assert!(limits.code_lookup("a").is_ok());
    }
}
