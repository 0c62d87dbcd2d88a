//! Who is calling: the peer address, or, behind trusted proxies (the ingress controller), the address
//! they saw. `X-Forwarded-For` is read from the right: each trusted proxy appends the address it received
//! the request from, so the right-most entry that is not a trusted proxy is the client. Entries left of it
//! are whatever the client wrote and are never believed.

use std::net::IpAddr;

/// An address range, e.g. `10.0.0.0/8` or `fd00::/8` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address range; expected e.g. 10.0.0.0/8"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?} has a prefix length outside 0..={max}"))?,
        };
        Ok(Cidr { net, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    ranges: Vec<Cidr>,
    /// `WEBHOOK_TRUST_FORWARDED_FOR`: the direct peer is a proxy, whatever its address.
    any_peer: bool,
}

impl TrustedProxies {
    /// Nobody: the peer address is the source.
    pub fn none() -> TrustedProxies {
        TrustedProxies::default()
    }

    pub fn new(ranges: Vec<Cidr>, any_peer: bool) -> TrustedProxies {
        TrustedProxies { ranges, any_peer }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    /// The client's address for a request from `peer` carrying these `X-Forwarded-For` values (in
    /// header order).
    pub fn client<'a>(&self, peer: IpAddr, forwarded: impl IntoIterator<Item = &'a str>) -> IpAddr {
        if !(self.any_peer || self.trusts(peer)) {
            return peer;
        }
        let hops: Vec<&str> = forwarded
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            // An entry that is not an address ends what can be believed: the last proxy's view stands.
            let Ok(ip) = hop.parse::<IpAddr>() else {
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ingress() -> TrustedProxies {
        TrustedProxies::new(vec![Cidr::parse("10.0.0.0/8").unwrap()], false)
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() {
        let p = TrustedProxies::none();
        assert_eq!(
            p.client(ip("203.0.113.9"), ["198.51.100.1"]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn behind_the_ingress_the_right_most_untrusted_address_is_the_client() {
        let p = ingress();
        // The client wrote a spoofed entry; the ingress appended the address it saw.
        assert_eq!(
            p.client(ip("10.1.2.3"), ["1.2.3.4, 198.51.100.7"]),
            ip("198.51.100.7")
        );
        // Two proxies deep, across two header lines.
        assert_eq!(
            p.client(ip("10.1.2.3"), ["198.51.100.7", "10.9.9.9"]),
            ip("198.51.100.7")
        );
        // A peer outside the trusted ranges is believed about nothing.
        assert_eq!(
            p.client(ip("198.51.100.50"), ["1.2.3.4"]),
            ip("198.51.100.50")
        );
        // Garbage in the header: the proxy's own view stands.
        assert_eq!(p.client(ip("10.1.2.3"), ["not-an-ip"]), ip("10.1.2.3"));
        assert_eq!(p.client(ip("10.1.2.3"), []), ip("10.1.2.3"));
    }

    #[test]
    fn the_legacy_flag_trusts_the_peer_but_not_what_the_client_wrote() {
        let p = TrustedProxies::new(Vec::new(), true);
        assert_eq!(
            p.client(ip("10.1.2.3"), ["1.2.3.4, 198.51.100.7"]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn ranges_match_by_prefix_in_both_families() {
        assert!(
            Cidr::parse("172.16.0.0/12")
                .unwrap()
                .contains(ip("172.31.255.1"))
        );
        assert!(
            !Cidr::parse("172.16.0.0/12")
                .unwrap()
                .contains(ip("172.32.0.1"))
        );
        assert!(Cidr::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(
            Cidr::parse("10.0.0.0/8")
                .unwrap()
                .contains(ip("::ffff:10.0.0.1"))
        );
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("192.0.2.1").unwrap().contains(ip("192.0.2.1")));
        for bad in ["10.0.0.0/33", "ten/8", "", "fd00::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
