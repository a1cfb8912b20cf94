//! Where a peer could reach us: this machine's addresses, each marked as on the
//! local network or public, and addresses as people write them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// How far an address reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// A private or link-local network, or a range never routed on the internet
    /// (documentation, benchmarking): peers on the same network, or a VPN.
    Lan,
    /// The internet, unless a firewall says otherwise.
    Public,
}

impl fmt::Display for Reach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reach::Lan => "LAN",
            Reach::Public => "public",
        })
    }
}

/// An IPv4-mapped IPv6 address (what a dual-stack listener sees of an IPv4 peer) as
/// the plain IPv4 address it is: `127.0.0.1:52144`, not `[::ffff:127.0.0.1]:52144`.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// How far `ip` reaches, or `None` for addresses no peer elsewhere can use:
/// loopback, unspecified, multicast, and IPv6 link-local (which needs a zone).
pub fn reach(ip: IpAddr) -> Option<Reach> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => reach_v4(v4),
        IpAddr::V6(v6) => reach_v6(v6),
    }
}

fn reach_v4(ip: Ipv4Addr) -> Option<Reach> {
    let [first, second, third, _] = ip.octets();
    let carrier_grade_nat = first == 100 && (64..128).contains(&second);
    // 192.0.2.0/24, 198.51.100.0/24 and 203.0.113.0/24 (RFC 5737), and
    // 198.18.0.0/15 for benchmarks (RFC 2544): found only on test networks.
    let documentation = matches!(
        (first, second, third),
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113)
    );
    let benchmarking = first == 198 && (second == 18 || second == 19);
    if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
        None
    } else if ip.is_private()
        || ip.is_link_local()
        || carrier_grade_nat
        || documentation
        || benchmarking
    {
        Some(Reach::Lan)
    } else {
        Some(Reach::Public)
    }
}

fn reach_v6(ip: Ipv6Addr) -> Option<Reach> {
    let first = ip.segments()[0];
    let link_local = first & 0xffc0 == 0xfe80;
    let unique_local = first & 0xfe00 == 0xfc00;
    // 2001:db8::/32 (RFC 3849).
    let documentation = first == 0x2001 && ip.segments()[1] == 0x0db8;
    if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || link_local {
        None
    } else if unique_local || documentation {
        Some(Reach::Lan)
    } else {
        Some(Reach::Public)
    }
}

/// The addresses a peer could dial to reach a listener bound to `listening`: the one
/// address it is bound to, or, bound to all, every usable address of this
/// machine's interfaces (IPv4 ones only for an IPv4 listener), LAN ones first.
pub fn reachable(listening: SocketAddr) -> Vec<(SocketAddr, Reach)> {
    let port = listening.port();
    let candidates: Vec<IpAddr> = if listening.ip().is_unspecified() {
        if_addrs::get_if_addrs()
            .map(|interfaces| interfaces.into_iter().map(|i| i.ip()).collect())
            .unwrap_or_default()
    } else {
        vec![listening.ip()]
    };
    let ipv4_only = listening.is_ipv4() && listening.ip().is_unspecified();
    let mut found: Vec<(SocketAddr, Reach)> = candidates
        .into_iter()
        .filter(|ip| !(ipv4_only && ip.is_ipv6()))
        .filter_map(|ip| Some((SocketAddr::new(ip, port), reach(ip)?)))
        .collect();
    found.sort_by_key(|(addr, reach)| (*reach, addr.is_ipv6()));
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach_of(text: &str) -> Option<Reach> {
        reach(text.parse().unwrap())
    }

    #[test]
    fn marks_addresses_by_how_far_they_reach() {
        for lan in [
            "10.1.2.3",
            "172.16.0.9",
            "192.168.1.20",
            "169.254.3.4",
            "100.64.0.1",
            "fd12::1",
            "fc00::2",
            "192.0.2.7",
            "198.51.100.20",
            "203.0.113.9",
            "198.18.0.1",
            "2001:db8::5",
        ] {
            assert_eq!(reach_of(lan), Some(Reach::Lan), "{lan}");
        }
        for public in [
            "8.8.8.8",
            "100.128.0.1",
            "2a01:4f8::1",
            "192.0.3.1",
            "203.0.114.1",
        ] {
            assert_eq!(reach_of(public), Some(Reach::Public), "{public}");
        }
        for useless in [
            "127.0.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "224.0.0.1",
            "ff02::1",
        ] {
            assert_eq!(reach_of(useless), None, "{useless}");
        }
        assert_eq!(reach_of("::ffff:192.168.1.20"), Some(Reach::Lan));
    }

    #[test]
    fn shows_ipv4_mapped_addresses_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:52144".parse().unwrap();
        assert_eq!(canonical(mapped).to_string(), "127.0.0.1:52144");
        let v6: SocketAddr = "[2001:db8::5]:7001".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }

    #[test]
    fn a_listener_on_one_address_is_reached_there() {
        let one: SocketAddr = "192.168.1.20:7001".parse().unwrap();
        assert_eq!(reachable(one), [(one, Reach::Lan)]);
        let loopback: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        assert_eq!(reachable(loopback), []);
    }
}
