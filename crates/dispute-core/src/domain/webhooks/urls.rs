//! Which URLs an endpoint may have, and which addresses a delivery may connect to.

use std::net::IpAddr;

use domain_kit::violation::Violation;

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// What outbound URLs the deployment allows besides public https ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// `http://` URLs (receivers that are internal services).
    pub allow_http: bool,
    /// Loopback, private, link-local and other non-public addresses.
    pub allow_private_addresses: bool,
}

/// Checks an endpoint URL: absolute http(s) with a host, https unless allowed, no
/// credentials, no fragment, and not a literal private address unless allowed. Names are
/// resolved and checked again at each delivery ([`UrlPolicy::address_allowed`]).
pub fn check_url(policy: UrlPolicy, raw: &str) -> Result<url::Url, Violation> {
    let bad = |why: &str| Violation::new("url", why);
    if raw.is_empty() {
        return Err(bad("is required"));
    }
    if raw.len() > MAX_URL_LEN {
        return Err(bad("must be at most 2048 characters"));
    }
    let url = url::Url::parse(raw).map_err(|e| bad(&format!("is not a valid URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        "http" => return Err(bad("must use https (http is not allowed here)")),
        _ => return Err(bad("must be an https URL")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not contain credentials"));
    }
    if url.fragment().is_some() {
        return Err(bad("must not contain a fragment"));
    }
    let ip = match url.host() {
        None => return Err(bad("must have a host")),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.');
            if (name == "localhost" || name.ends_with(".localhost"))
                && !policy.allow_private_addresses
            {
                return Err(bad("must not point to a private or loopback address"));
            }
            None
        }
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
    };
    if let Some(ip) = ip
        && !policy.address_allowed(ip)
    {
        return Err(bad("must not point to a private or loopback address"));
    }
    Ok(url)
}

impl UrlPolicy {
    /// Whether a delivery may connect to `ip`.
    pub fn address_allowed(&self, ip: IpAddr) -> bool {
        self.allow_private_addresses || is_public(ip)
    }
}

/// A globally routable unicast address (not loopback, private, link-local, CGNAT,
/// unspecified, multicast, documentation or broadcast).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || v6.segments()[0] == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: UrlPolicy = UrlPolicy {
        allow_http: true,
        allow_private_addresses: true,
    };

    #[test]
    fn urls_are_https_public_and_without_credentials_by_default() {
        let strict = UrlPolicy::default();
        assert!(check_url(strict, "https://hooks.example.com/in").is_ok());
        for bad in [
            "",
            "not a url",
            "http://hooks.example.com/in",
            "ftp://hooks.example.com/in",
            "https://user:pw@hooks.example.com/in",
            "https://user@hooks.example.com/in",
            "https://127.0.0.1/in",
            "https://10.1.2.3/in",
            "https://[::1]/in",
            "https://169.254.169.254/latest",
            "https://localhost/in",
            "https://hooks.example.com/in#frag",
        ] {
            let violation = check_url(strict, bad).unwrap_err();
            assert_eq!(violation.field, "url", "{bad}");
        }
        assert!(check_url(ALL, "http://127.0.0.1:8080/in").is_ok());
        assert!(check_url(ALL, "https://u:p@127.0.0.1/in").is_err());
    }

    #[test]
    fn public_addresses() {
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
