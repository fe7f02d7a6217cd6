//! Per-client rate limits, kept in memory by each instance. Referral codes are not guessable
//! (31⁸ of them), and this keeps it so: a client may look up only so many UNKNOWN codes a
//! minute. Valid codes are never counted, so no volume of real sign-ups is ever limited.

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;

/// Clients tracked before idle ones are dropped from the table.
const FORGET_IDLE_ABOVE: usize = 10_000;

pub struct Limits {
    unknown_codes: DefaultKeyedRateLimiter<String>,
}

impl Limits {
    pub fn new(unknown_codes_per_minute: u32) -> Self {
        let rate = NonZeroU32::new(unknown_codes_per_minute).unwrap_or(NonZeroU32::MIN);
        Limits {
            unknown_codes: RateLimiter::keyed(Quota::per_minute(rate)),
        }
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
}
