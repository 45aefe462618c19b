//! Which URLs an endpoint may have, and which addresses a delivery may connect to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use domain_kit::violation::Violation;

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// What outbound URLs the deployment allows besides public https ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// `http://` URLs (receivers that are internal services).
    pub allow_http: bool,
    /// Addresses in the special-purpose ranges ([`special_range`]): loopback, private,
    /// link-local, NAT64, 6to4 and the rest.
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
        Some(_) => literal_ip(&url),
    };
    if let Some(ip) = ip
        && !policy.address_allowed(ip)
    {
        return Err(bad("must not point to a private or loopback address"));
    }
    Ok(url)
}

/// The address of a URL whose host is a literal IP (`https://10.0.0.1/`), `None` for a name.
pub fn literal_ip(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

impl UrlPolicy {
    /// Whether a delivery may connect to `ip`.
    pub fn address_allowed(&self, ip: IpAddr) -> bool {
        self.allow_private_addresses || is_public(ip)
    }
}

/// IPv4 ranges a delivery never connects to: the IANA IPv4 Special-Purpose Address Registry,
/// plus multicast (not in that registry, and never a unicast receiver). One line a range.
#[rustfmt::skip]
pub const SPECIAL_IPV4: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, "this network"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private-use"),
    (Ipv4Addr::new(100, 64, 0, 0), 10, "shared address space (CGNAT)"),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link-local"),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private-use"),
    (Ipv4Addr::new(192, 0, 0, 0), 24, "IETF protocol assignments"),
    (Ipv4Addr::new(192, 0, 2, 0), 24, "documentation (TEST-NET-1)"),
    (Ipv4Addr::new(192, 31, 196, 0), 24, "AS112-v4"),
    (Ipv4Addr::new(192, 52, 193, 0), 24, "AMT"),
    (Ipv4Addr::new(192, 88, 99, 0), 24, "deprecated 6to4 relay anycast"),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private-use"),
    (Ipv4Addr::new(192, 175, 48, 0), 24, "direct delegation AS112 service"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "benchmarking"),
    (Ipv4Addr::new(198, 51, 100, 0), 24, "documentation (TEST-NET-2)"),
    (Ipv4Addr::new(203, 0, 113, 0), 24, "documentation (TEST-NET-3)"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast"),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved"),
    (Ipv4Addr::new(255, 255, 255, 255), 32, "limited broadcast"),
];

/// IPv6 ranges a delivery never connects to: the IANA IPv6 Special-Purpose Address Registry
/// (more specific lines first, so a refusal names the narrowest range), site-local and
/// multicast, and everything outside global unicast (2000::/3). `::ffff:0:0/96`
/// (IPv4-mapped) is not here: its embedded IPv4 address is checked instead.
#[rustfmt::skip]
pub const SPECIAL_IPV6: &[(Ipv6Addr, u8, &str)] = &[
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 128, "unspecified"),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1), 128, "loopback"),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96, "IPv4-compatible (deprecated)"),
    (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96, "NAT64 well-known prefix"),
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, "NAT64 local-use prefix"),
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64, "discard-only"),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32, "Teredo"),
    (Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0), 48, "benchmarking"),
    (Ipv6Addr::new(0x2001, 0x10, 0, 0, 0, 0, 0, 0), 28, "deprecated ORCHID"),
    (Ipv6Addr::new(0x2001, 0x20, 0, 0, 0, 0, 0, 0), 28, "ORCHIDv2"),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23, "IETF protocol assignments"),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, "documentation"),
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16, "6to4"),
    (Ipv6Addr::new(0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0), 48, "direct delegation AS112 service"),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20, "documentation"),
    (Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16, "segment routing (SRv6) SIDs"),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, "unique-local"),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local unicast"),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, "site-local (deprecated)"),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast"),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 3, "not global unicast (outside 2000::/3)"),
    (Ipv6Addr::new(0x4000, 0, 0, 0, 0, 0, 0, 0), 2, "not global unicast (outside 2000::/3)"),
    (Ipv6Addr::new(0x8000, 0, 0, 0, 0, 0, 0, 0), 1, "not global unicast (outside 2000::/3)"),
];

/// The name of the special-purpose range `ip` is in (the first matching line of
/// [`SPECIAL_IPV4`] or [`SPECIAL_IPV6`]; an IPv4-mapped IPv6 address by its IPv4 address),
/// or `None` for a public address.
pub fn special_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            SPECIAL_IPV4
                .iter()
                .find(|(net, len, _)| {
                    same_prefix(u128::from(bits), u128::from(u32::from(*net)), 32, *len)
                })
                .map(|(_, _, name)| *name)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return special_range(IpAddr::V4(v4));
            }
            let bits = u128::from(v6);
            SPECIAL_IPV6
                .iter()
                .find(|(net, len, _)| same_prefix(bits, u128::from(*net), 128, *len))
                .map(|(_, _, name)| *name)
        }
    }
}

/// Whether the first `len` of the `width` low bits of `a` and `b` are equal.
fn same_prefix(a: u128, b: u128, width: u32, len: u8) -> bool {
    let len = u32::from(len).min(width);
    len == 0 || (a ^ b) >> (width - len) == 0
}

/// A public address: in none of the special-purpose ranges ([`special_range`]).
pub fn is_public(ip: IpAddr) -> bool {
    special_range(ip).is_none()
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
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
        ] {
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
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    /// Every special-purpose range: an address inside is refused (named by the range) and,
    /// where the neighbour is not itself special, the address just outside is allowed.
    #[test]
    fn each_special_range_is_refused_and_its_neighbours_are_not() {
        // (range, an address inside, addresses just outside that are public)
        #[rustfmt::skip]
        let cases: &[(&str, &str, &[&str])] = &[
            ("0.0.0.0/8", "0.255.255.255", &["1.0.0.0"]),
            ("10.0.0.0/8", "10.255.255.255", &["9.255.255.255", "11.0.0.0"]),
            ("100.64.0.0/10", "100.127.255.255", &["100.63.255.255", "100.128.0.0"]),
            ("127.0.0.0/8", "127.255.255.254", &["126.255.255.255", "128.0.0.0"]),
            ("169.254.0.0/16", "169.254.169.254", &["169.253.255.255", "169.255.0.0"]),
            ("172.16.0.0/12", "172.31.255.255", &["172.15.255.255", "172.32.0.0"]),
            ("192.0.0.0/24", "192.0.0.170", &["191.255.255.255", "192.0.1.0"]),
            ("192.0.2.0/24", "192.0.2.1", &["192.0.1.255", "192.0.3.0"]),
            ("192.31.196.0/24", "192.31.196.1", &["192.31.195.255", "192.31.197.0"]),
            ("192.52.193.0/24", "192.52.193.1", &["192.52.192.255", "192.52.194.0"]),
            ("192.88.99.0/24", "192.88.99.1", &["192.88.98.255", "192.88.100.0"]),
            ("192.168.0.0/16", "192.168.255.255", &["192.167.255.255", "192.169.0.0"]),
            ("192.175.48.0/24", "192.175.48.1", &["192.175.47.255", "192.175.49.0"]),
            ("198.18.0.0/15", "198.19.255.255", &["198.17.255.255", "198.20.0.0"]),
            ("198.51.100.0/24", "198.51.100.7", &["198.51.99.255", "198.51.101.0"]),
            ("203.0.113.0/24", "203.0.113.9", &["203.0.112.255", "203.0.114.0"]),
            ("224.0.0.0/4", "239.255.255.255", &["223.255.255.255"]),
            ("240.0.0.0/4", "255.255.255.254", &[]),
            ("255.255.255.255/32", "255.255.255.255", &[]),
            ("::/128", "::", &[]),
            ("::1/128", "::1", &[]),
            ("::ffff:0:0/96 (embedded 10/8)", "::ffff:10.1.2.3", &["::ffff:11.0.0.0"]),
            ("::/96", "::8.8.8.8", &[]),
            ("64:ff9b::/96", "64:ff9b::8.8.8.8", &[]),
            ("64:ff9b:1::/48", "64:ff9b:1:ffff::1", &[]),
            ("100::/64", "100::ffff:ffff:ffff:ffff", &[]),
            ("2001::/32 (Teredo)", "2001:0:4136:e378:8000:63bf:3fff:fdd2", &[]),
            ("2001:2::/48", "2001:2:0:ffff::1", &[]),
            ("2001:10::/28", "2001:1f::1", &[]),
            ("2001:20::/28", "2001:2f::1", &[]),
            ("2001::/23", "2001:1ff:ffff::1", &["2001:200::1", "2000:ffff::1"]),
            ("2001:db8::/32", "2001:db8:ffff::1", &["2001:db7:ffff::1", "2001:db9::1"]),
            ("2002::/16", "2002:c0a8:101::1", &["2001:ffff::1", "2003::1"]),
            ("2620:4f:8000::/48", "2620:4f:8000::1", &["2620:4f:7fff::1", "2620:4f:8001::1"]),
            ("3fff::/20", "3fff:fff::1", &["3ffe:ffff::1", "3fff:1000::1"]),
            ("5f00::/16", "5f00::1", &[]),
            ("fc00::/7", "fdff::1", &[]),
            ("fe80::/10", "febf::1", &[]),
            ("fec0::/10", "fec0::1", &[]),
            ("ff00::/8", "ff02::1", &[]),
            ("outside 2000::/3", "4000::1", &["3fff:ffff::1", "2000::1"]),
        ];
        for (range, inside, outside) in cases {
            let ip: IpAddr = inside.parse().unwrap();
            assert!(special_range(ip).is_some(), "{inside} in {range}");
            assert!(
                !UrlPolicy::default().address_allowed(ip),
                "{inside} in {range}"
            );
            assert!(
                ALL.address_allowed(ip),
                "{inside} with private addresses allowed"
            );
            for out in *outside {
                assert!(
                    is_public(out.parse().unwrap()),
                    "{out} just outside {range}"
                );
            }
        }
        // Every line of the tables: its first and last address are refused.
        for (net, len, name) in SPECIAL_IPV4 {
            let first = u32::from(*net);
            let last = first | u32::MAX.checked_shr(u32::from(*len)).unwrap_or(0);
            for ip in [first, last] {
                assert!(special_range(IpAddr::V4(ip.into())).is_some(), "{name}");
            }
        }
        for (net, len, name) in SPECIAL_IPV6 {
            let first = u128::from(*net);
            let last = first | u128::MAX.checked_shr(u32::from(*len)).unwrap_or(0);
            for ip in [first, last] {
                let ip = Ipv6Addr::from(ip);
                if ip.to_ipv4_mapped().is_none() {
                    assert!(special_range(IpAddr::V6(ip)).is_some(), "{ip} ({name})");
                }
            }
        }
    }

    #[test]
    fn the_range_named_is_the_narrowest() {
        let name = |ip: &str| special_range(ip.parse().unwrap());
        assert_eq!(name("2001::1"), Some("Teredo"));
        assert_eq!(name("2001:1::1"), Some("IETF protocol assignments"));
        assert_eq!(name("::1"), Some("loopback"));
        assert_eq!(
            name("::ffff:100.64.0.1"),
            Some("shared address space (CGNAT)")
        );
        assert_eq!(name("8.8.8.8"), None);
    }

    #[test]
    fn literal_special_addresses_are_refused_in_urls() {
        let strict = UrlPolicy::default();
        for bad in [
            "https://[64:ff9b::a00:1]/in",
            "https://[::a00:1]/in",
            "https://[2002:a00:1::1]/in",
            "https://[fec0::1]/in",
            "https://192.0.0.8/in",
            "https://100.100.100.100/in",
            "https://[::ffff:10.0.0.1]/in",
        ] {
            assert!(check_url(strict, bad).is_err(), "{bad}");
            assert!(
                check_url(ALL, bad).is_ok(),
                "{bad} with private addresses allowed"
            );
        }
        assert!(check_url(strict, "https://[2606:4700::1111]/in").is_ok());
    }
}
