//! Network rules shared by the config checks, the webhook client and the OTLP exporter: which
//! IP addresses a webhook may reach, and the process-wide rustls crypto provider.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// rustls needs a process-wide crypto provider; ring is compact and fast to build.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether `ip` may be the destination of a webhook when private networks are not allowed.
///
/// The rule, against the IANA IPv4 and IPv6 Special-Purpose Address Registries: every
/// address in a special-purpose block is refused — loopback, private, CGNAT, link-local
/// (cloud metadata 169.254.169.254 included), documentation, benchmarking, protocol
/// assignments, the deprecated 6to4 relay anycast, multicast, reserved, broadcast,
/// unique-local, discard-only, Teredo, ORCHID and the rest — even the few anycast blocks IANA
/// marks globally reachable (AS112, PCP/TURN anycast, AMT): no webhook receiver lives there,
/// so refusing them costs nothing. IPv6 outside global unicast (`2000::/3`) is refused. The
/// translation forms that carry an IPv4 address — IPv4-mapped `::ffff:0:0/96`, NAT64
/// `64:ff9b::/96` and 6to4 `2002::/16` — get the verdict of that IPv4 address, so a 6to4 or
/// NAT64 spelling of a public address is allowed and one of a private address is not.
/// Teredo (`2001::/32`) is refused outright: its client address is obfuscated and it tunnels
/// through a relay to a host behind NAT. Local-use NAT64 (`64:ff9b:1::/48`) is refused
/// whatever it embeds (its embedding is a local choice).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback() // 127.0.0.0/8
        || ip.is_private() // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local() // 169.254/16
        || ip.is_broadcast() // 255.255.255.255
        || ip.is_multicast() // 224/4
        || ip.is_documentation() // 192.0.2/24, 198.51.100/24, 203.0.113/24
        || o[0] == 0 // 0.0.0.0/8 "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 CGNAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 protocol assignments
        || (o[0] == 192 && o[1] == 31 && o[2] == 196) // 192.31.196.0/24 AS112-v4
        || (o[0] == 192 && o[1] == 52 && o[2] == 193) // 192.52.193.0/24 AMT
        || (o[0] == 192 && o[1] == 88 && o[2] == 99) // 192.88.99.0/24 6to4 relay anycast
        || (o[0] == 192 && o[1] == 175 && o[2] == 48) // 192.175.48.0/24 AS112 delegation
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || o[0] >= 240) // 240.0.0.0/4 reserved
}

/// The IPv4 address in bits `from_segment*16 .. +32` of `ip`.
fn embedded_v4(ip: Ipv6Addr, from_segment: usize) -> Ipv4Addr {
    let s = ip.segments();
    let (hi, lo) = (s[from_segment], s[from_segment + 1]);
    Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        // ::ffff:0:0/96
        return is_public_v4(v4);
    }
    if s[0] == 0x0064 && s[1] == 0xff9b {
        if s[2..6] == [0, 0, 0, 0] {
            // 64:ff9b::/96, the NAT64 well-known prefix: the IPv4 address is the last 32 bits.
            return is_public_v4(embedded_v4(ip, 6));
        }
        // 64:ff9b:1::/48 local-use NAT64, and the unassigned rest of 64:ff9b::/32.
        return false;
    }
    if s[0] == 0x2002 {
        // 2002::/16 6to4: the IPv4 address sits in segments 1–2.
        return is_public_v4(embedded_v4(ip, 1));
    }
    let global_unicast = (s[0] & 0xe000) == 0x2000; // 2000::/3
    !(!global_unicast // ::/128, ::1, ::/96 IPv4-compatible, 100::/64, fc00::/7, fe80::/10, fec0::/10, ff00::/8 …
        || (s[0] == 0x2001 && s[1] < 0x0200) // 2001::/23 IETF protocol assignments (Teredo 2001::/32, ORCHIDv2 2001:20::/28 …)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // 2001:db8::/32 documentation
        || (s[0] == 0x3fff && (s[1] & 0xf000) == 0) // 3fff::/20 documentation
        || (s[0] == 0x2620 && s[1] == 0x004f && s[2] == 0x8000)) // 2620:4f:8000::/48 AS112 delegation
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block of the IANA IPv4 and IPv6 Special-Purpose Address Registries, with the
    /// verdict of the resolver (`true` = may be connected to): one address at each edge of a
    /// block where the edge matters, and public neighbours to show the block is not too wide.
    const VERDICTS: &[(&str, bool, &str)] = &[
        // IPv4
        ("0.0.0.0", false, "0.0.0.0/8 this network"),
        ("0.255.255.255", false, "0.0.0.0/8 this network"),
        ("1.0.0.1", true, "public"),
        ("10.0.0.1", false, "10.0.0.0/8 private"),
        ("10.255.255.255", false, "10.0.0.0/8 private"),
        ("11.0.0.1", true, "public"),
        ("100.63.255.255", true, "public, below CGNAT"),
        ("100.64.0.1", false, "100.64.0.0/10 CGNAT"),
        ("100.127.255.255", false, "100.64.0.0/10 CGNAT"),
        ("100.128.0.1", true, "public, above CGNAT"),
        ("127.0.0.1", false, "127.0.0.0/8 loopback"),
        ("127.255.255.254", false, "127.0.0.0/8 loopback"),
        (
            "169.254.169.254",
            false,
            "169.254.0.0/16 link-local, cloud metadata",
        ),
        ("169.254.0.1", false, "169.254.0.0/16 link-local"),
        ("172.15.255.255", true, "public, below 172.16/12"),
        ("172.16.0.1", false, "172.16.0.0/12 private"),
        ("172.31.255.255", false, "172.16.0.0/12 private"),
        ("172.32.0.1", true, "public, above 172.16/12"),
        ("192.0.0.1", false, "192.0.0.0/24 protocol assignments"),
        ("192.0.0.9", false, "192.0.0.9/32 PCP anycast"),
        ("192.0.0.170", false, "192.0.0.170/32 NAT64 discovery"),
        ("192.0.2.1", false, "192.0.2.0/24 documentation"),
        ("192.31.196.1", false, "192.31.196.0/24 AS112-v4"),
        ("192.52.193.1", false, "192.52.193.0/24 AMT"),
        ("192.88.99.1", false, "192.88.99.0/24 6to4 relay anycast"),
        ("192.168.0.1", false, "192.168.0.0/16 private"),
        ("192.168.255.255", false, "192.168.0.0/16 private"),
        ("192.175.48.1", false, "192.175.48.0/24 AS112 delegation"),
        ("198.17.255.255", true, "public, below benchmarking"),
        ("198.18.0.1", false, "198.18.0.0/15 benchmarking"),
        ("198.19.255.255", false, "198.18.0.0/15 benchmarking"),
        ("198.20.0.1", true, "public, above benchmarking"),
        ("198.51.100.1", false, "198.51.100.0/24 documentation"),
        ("203.0.113.1", false, "203.0.113.0/24 documentation"),
        ("223.255.255.255", true, "public, below multicast"),
        ("224.0.0.1", false, "224.0.0.0/4 multicast"),
        ("239.255.255.255", false, "224.0.0.0/4 multicast"),
        ("240.0.0.1", false, "240.0.0.0/4 reserved"),
        ("255.255.255.254", false, "240.0.0.0/4 reserved"),
        ("255.255.255.255", false, "limited broadcast"),
        ("8.8.8.8", true, "public"),
        ("93.184.216.34", true, "public"),
        // IPv6
        ("::", false, "::/128 unspecified"),
        ("::1", false, "::1/128 loopback"),
        ("::7f00:1", false, "::/96 IPv4-compatible (deprecated)"),
        (
            "::808:808",
            false,
            "::/96 IPv4-compatible (deprecated), even of a public v4",
        ),
        ("::ffff:127.0.0.1", false, "::ffff:0:0/96 mapped loopback"),
        ("::ffff:10.1.2.3", false, "::ffff:0:0/96 mapped private"),
        (
            "::ffff:169.254.169.254",
            false,
            "::ffff:0:0/96 mapped metadata",
        ),
        ("::ffff:0.0.0.0", false, "::ffff:0:0/96 mapped unspecified"),
        (
            "::ffff:255.255.255.255",
            false,
            "::ffff:0:0/96 mapped broadcast",
        ),
        ("::ffff:8.8.8.8", true, "::ffff:0:0/96 mapped public"),
        (
            "::ffff:0:7f00:1",
            false,
            "::ffff:0:0:0/96 IPv4-translated, outside 2000::/3",
        ),
        ("64:ff9b::7f00:1", false, "64:ff9b::/96 NAT64 of loopback"),
        (
            "64:ff9b::a9fe:a9fe",
            false,
            "64:ff9b::/96 NAT64 of metadata",
        ),
        ("64:ff9b::c0a8:101", false, "64:ff9b::/96 NAT64 of private"),
        ("64:ff9b::808:808", true, "64:ff9b::/96 NAT64 of public"),
        (
            "64:ff9b:1::808:808",
            false,
            "64:ff9b:1::/48 local-use NAT64",
        ),
        ("64:ff9b:1:ffff::1", false, "64:ff9b:1::/48 local-use NAT64"),
        ("100::1", false, "100::/64 discard-only"),
        ("2001::1", false, "2001::/32 Teredo"),
        (
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            false,
            "2001::/32 Teredo",
        ),
        ("2001:1::1", false, "2001:1::1/128 PCP anycast"),
        ("2001:2::1", false, "2001:2::/48 benchmarking"),
        ("2001:3::1", false, "2001:3::/32 AMT"),
        ("2001:4:112::1", false, "2001:4:112::/48 AS112-v6"),
        ("2001:10::1", false, "2001:10::/28 ORCHID (deprecated)"),
        ("2001:20::1", false, "2001:20::/28 ORCHIDv2"),
        ("2001:30::1", false, "2001:30::/28 DRIP"),
        (
            "2001:1ff:ffff::1",
            false,
            "2001::/23 IETF protocol assignments",
        ),
        ("2001:200::1", true, "public, just above 2001::/23"),
        ("2001:db8::1", false, "2001:db8::/32 documentation"),
        ("2001:db8:ffff::1", false, "2001:db8::/32 documentation"),
        ("2002:7f00:1::1", false, "2002::/16 6to4 of loopback"),
        ("2002:a00:1::1", false, "2002::/16 6to4 of private"),
        ("2002:a9fe:a9fe::1", false, "2002::/16 6to4 of metadata"),
        ("2002::1", false, "2002::/16 6to4 of 0.0.0.0"),
        ("2002:808:808::1", true, "2002::/16 6to4 of public"),
        (
            "2620:4f:8000::1",
            false,
            "2620:4f:8000::/48 AS112 delegation",
        ),
        ("2606:4700:4700::1111", true, "public"),
        ("2a00:1450:4001::1", true, "public"),
        ("3fff::1", false, "3fff::/20 documentation"),
        ("3fff:fff::1", false, "3fff::/20 documentation"),
        ("3fff:1000::1", true, "public, just above 3fff::/20"),
        ("4000::1", false, "outside 2000::/3, unassigned"),
        ("5f00::1", false, "5f00::/16 SRv6 SIDs"),
        ("fc00::1", false, "fc00::/7 unique-local"),
        ("fdff:ffff::1", false, "fc00::/7 unique-local"),
        ("fe80::1", false, "fe80::/10 link-local"),
        ("febf::1", false, "fe80::/10 link-local"),
        ("fec0::1", false, "fec0::/10 site-local (deprecated)"),
        ("ff02::1", false, "ff00::/8 multicast"),
        ("ff0e::1", false, "ff00::/8 multicast, global scope"),
    ];

    #[test]
    fn every_special_purpose_range_gets_the_documented_verdict() {
        let wrong: Vec<String> = VERDICTS
            .iter()
            .filter(|(addr, allowed, _)| is_public(addr.parse().unwrap()) != *allowed)
            .map(|(addr, allowed, why)| {
                let verdict = if *allowed { "allowed" } else { "refused" };
                format!("{addr} ({why}) must be {verdict}")
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
