//! Keeps the gateway's requests to the identity provider off private and
//! loopback addresses unless the configuration allows them
//! (`jwksAllowPrivateIp`): a discovery document or token cannot then steer
//! the gateway at internal services. Names are checked as they resolve, at
//! connect time (no window between check and use); literal IP hosts are
//! checked before the request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether `ip` is reachable on the public internet (not loopback,
/// private, link-local, shared, unspecified, multicast or documentation).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Whether a URL's host is a literal IP that is not public.
pub fn names_private_ip(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(v4)) => !is_public(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => !is_public(IpAddr::V6(v6)),
        _ => false,
    }
}

/// A resolver that drops non-public addresses; a name with only such
/// addresses fails to resolve.
#[derive(Clone, Copy, Debug, Default)]
pub struct PublicOnly;

impl PublicOnly {
    /// As the `Arc` reqwest takes.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self)
    }
}

/// The error of a name that resolves only to private addresses.
#[derive(Debug, thiserror::Error)]
#[error("resolves only to private or loopback addresses (set jwksAllowPrivateIp to allow)")]
pub struct PrivateOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|address| is_public(address.ip()))
                .collect();
            if found.is_empty() {
                return Err(Box::new(PrivateOnly) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        let cases = [
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("0.0.0.0", false),
            ("::1", false),
            ("fd00::1", false),
            ("fe80::1", false),
            ("::ffff:10.0.0.1", false),
            ("8.8.8.8", true),
            ("100.128.0.1", true),
            ("2001:4860::8888", true),
        ];
        for (text, public) in cases {
            let ip: IpAddr = text.parse().expect("test address");
            assert_eq!(is_public(ip), public, "{text}");
        }
    }

    #[test]
    fn literal_private_hosts_are_spotted_in_urls() {
        let url = |s: &str| url::Url::parse(s).expect("test url");
        assert!(names_private_ip(&url("http://127.0.0.1:8080/realms/x")));
        assert!(names_private_ip(&url("https://[::1]/x")));
        assert!(!names_private_ip(&url("https://idp.example.com/x")));
        assert!(!names_private_ip(&url("https://8.8.8.8/x")));
    }
}
