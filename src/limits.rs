//! Per-client rate limits, kept in memory by each instance. Referral codes are not guessable
//! (31⁸ of them), and this keeps it so: a client may look up only so many UNKNOWN codes a
//! minute. Valid codes are never counted, so no volume of real sign-ups is ever limited.
//! Referral links (`/r/{code}`) answer whether a code exists too, so they have a quota of their
//! own, per client address.

use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

/// Clients tracked before idle ones are dropped from the table.
const FORGET_IDLE_ABOVE: usize = 10_000;

pub struct Limits {
    unknown_codes: DefaultKeyedRateLimiter<String>,
    link_clicks: DefaultKeyedRateLimiter<IpAddr>,
}

/// The link quota until `with_link_clicks` sets the configured one.
const DEFAULT_LINK_CLICKS_PER_MINUTE: u32 = 120;

fn per_minute(rate: u32) -> DefaultKeyedRateLimiter<IpAddr> {
    RateLimiter::keyed(Quota::per_minute(NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN)))
}

impl Limits {
    pub fn new(unknown_codes_per_minute: u32) -> Self {
        let rate = NonZeroU32::new(unknown_codes_per_minute).unwrap_or(NonZeroU32::MIN);
        Limits {
            unknown_codes: RateLimiter::keyed(Quota::per_minute(rate)),
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

    /// Counts one lookup of a code that turned out unknown, by `client` (see `client_key`);
    /// false past the quota.
    pub fn unknown_code(&self, client: &str) -> bool {
        // Forget idle clients once the table grows, so it stays as small as the active set.
        if self.unknown_codes.len() > FORGET_IDLE_ABOVE {
            self.unknown_codes.retain_recent();
        }
        self.unknown_codes.check_key(&client.to_owned()).is_ok()
    }
}

/// Whom a lookup is counted against: the end user's address when the caller passes it, else the
/// caller itself. An IPv6 address counts by its /64, the block one subscriber usually gets, so
/// that walking through a block's addresses does not multiply the quota.
pub fn client_key(client_address: Option<IpAddr>, caller: &str) -> String {
    match client_address.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(ip)) => format!("ip:{ip}"),
        Some(IpAddr::V6(ip)) => {
            let s = ip.segments();
            format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        None => format!("caller:{caller}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_has_its_own_quota() {
        let limits = Limits::new(3);
        for _ in 0..3 {
            assert!(limits.unknown_code("a"));
        }
        assert!(!limits.unknown_code("a"));
        assert!(limits.unknown_code("b"));
    }

    #[test]
    fn clients_are_their_address_or_else_the_caller() {
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        assert_eq!(client_key(ip("203.0.113.7"), "svc"), "ip:203.0.113.7");
        assert_eq!(client_key(ip("::ffff:203.0.113.7"), "svc"), "ip:203.0.113.7");
        assert_eq!(client_key(None, "service:billing"), "caller:service:billing");
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa::1"), "svc"),
            client_key(ip("2001:db8:1:2:bbbb::9"), "svc")
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1"), "svc"),
            client_key(ip("2001:db8:1:3::1"), "svc")
        );
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
        // The unknown-code quota is separate.
        assert!(limits.unknown_code("a"));
    }
}
