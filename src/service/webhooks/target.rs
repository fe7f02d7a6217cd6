//! Where a webhook may go. An admin's URL must not become a way into the server's own network
//! (SSRF): unless `WEBHOOK_ALLOW_PRIVATE_TARGETS` is set, an endpoint on a loopback, private,
//! link-local, shared or otherwise non-public address is refused when it is saved, and again at
//! every delivery, by the resolver that the delivery client connects through (a name that
//! resolved to a public address when saved may resolve to a private one later). Redirects are
//! never followed: a public endpoint could redirect to a private one.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use url::{Host, Url};

pub const MAX_URL: usize = 2_000;
/// How long saving an endpoint waits for its host's name to resolve.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Why a target is refused, in words for the admin.
pub type Refusal = String;

/// Checks the URL's form: absolute http(s), a host, no credentials; with private targets not
/// allowed, an address literal must be public.
pub fn parse(url: &str, allow_private: bool) -> Result<Url, Refusal> {
    let url = url.trim();
    if url.chars().count() > MAX_URL {
        return Err(format!("url must be at most {MAX_URL} characters"));
    }
    let parsed = Url::parse(url).map_err(|err| format!("url is not a valid URL: {err}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("url must be an http or https URL".to_owned());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("url must not carry credentials; the signature authenticates deliveries".to_owned());
    }
    match parsed.host() {
        None => return Err("url must name a host".to_owned()),
        Some(Host::Ipv4(ip)) => literal_allowed(IpAddr::V4(ip), allow_private)?,
        Some(Host::Ipv6(ip)) => literal_allowed(IpAddr::V6(ip), allow_private)?,
        Some(Host::Domain(_)) => {}
    }
    Ok(parsed)
}

/// `parse`, then (private targets not allowed) the host's name resolved: every address it has
/// must be public, or the endpoint is refused when saved.
pub async fn check(url: &str, allow_private: bool) -> Result<Url, Refusal> {
    let parsed = parse(url, allow_private)?;
    if allow_private {
        return Ok(parsed);
    }
    if let Some(Host::Domain(domain)) = parsed.host() {
        let port = parsed.port_or_known_default().unwrap_or(443);
        let lookup = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((domain, port)))
            .await
            .map_err(|_| format!("url's host {domain} did not resolve within {LOOKUP_TIMEOUT:?}"))?;
        let addrs: Vec<SocketAddr> = lookup
            .map_err(|err| format!("url's host {domain} does not resolve: {err}"))?
            .collect();
        if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
            return Err(format!(
                "url's host {domain} resolves to {}, a non-public address",
                bad.ip()
            ));
        }
    }
    Ok(parsed)
}

fn literal_allowed(ip: IpAddr, allow_private: bool) -> Result<(), Refusal> {
    if allow_private || is_public(ip) {
        Ok(())
    } else {
        Err(format!(
            "url points at {ip}, a non-public address (WEBHOOK_ALLOW_PRIVATE_TARGETS allows it)"
        ))
    }
}

/// Whether an address is on the public internet: not loopback, private, link-local, shared
/// (carrier NAT), unspecified, broadcast, multicast, documentation or benchmarking space, and
/// for IPv6 not unique-local or link-local, nor an IPv4 address mapped into IPv6 that is one.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(ip),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8
        || ip
            .to_ipv4()
            .is_some_and(|v4| ip.segments()[..5] == [0; 5] && !is_public_v4(v4)))
}

/// The delivery client's resolver when private targets are not allowed: a name's non-public
/// addresses are dropped, and a name with none left fails to resolve.
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let public: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| is_public(addr.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            let addrs: Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> bool {
        parse(url, false).is_err()
    }

    #[test]
    fn non_public_literals_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9000/hook",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(refused(url), "{url} should be refused");
            assert!(
                parse(url, true).is_ok(),
                "{url} should be allowed when private targets are"
            );
        }
        for url in [
            "https://93.184.216.34/hook",
            "http://[2606:4700::1111]/",
            "https://hooks.example.com/x",
        ] {
            assert!(!refused(url), "{url} should be allowed");
        }
    }

    #[test]
    fn only_absolute_http_urls_without_credentials() {
        for url in [
            "ftp://example.com/",
            "example.com/hook",
            "https://user:pw@example.com/",
            "http://",
            "mailto:hook@example.com",
        ] {
            assert!(refused(url), "{url} should be refused");
        }
    }
}
