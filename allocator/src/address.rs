//! Addresses as numbers: an IP of either family maps to a u128 so ranges, gaps and masks are
//! plain integer arithmetic, whatever the pool's size.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use metallb_proto::pb;

/// An IP address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() { Self::V4 } else { Self::V6 }
    }

    /// Address length in bits.
    pub fn bits(self) -> u8 {
        match self {
            Self::V4 => 32,
            Self::V6 => 128,
        }
    }

    /// The other family.
    pub fn other(self) -> Self {
        match self {
            Self::V4 => Self::V6,
            Self::V6 => Self::V4,
        }
    }

    /// The contract's name for it.
    pub fn to_pb(self) -> pb::IpFamily {
        match self {
            Self::V4 => pb::IpFamily::Ipv4,
            Self::V6 => pb::IpFamily::Ipv6,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        })
    }
}

/// An address as (family, number), ordered within a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    /// The family.
    pub family: Family,
    /// The address as an integer (IPv4 in the low 32 bits).
    pub value: u128,
}

impl Address {
    /// The number of `ip`.
    pub fn from_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self { family: Family::V4, value: u32::from(v4) as u128 },
            IpAddr::V6(v6) => Self { family: Family::V6, value: u128::from(v6) },
        }
    }

    /// Back to an IP.
    pub fn to_ip(self) -> IpAddr {
        match self.family {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(self.value as u32)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(self.value)),
        }
    }

    /// The address with everything after the first `prefix_len` bits cleared.
    pub fn masked(self, prefix_len: u8) -> Self {
        let bits = self.family.bits();
        let host_bits = u32::from(bits.saturating_sub(prefix_len));
        let mask = if host_bits >= 128 { 0 } else { u128::MAX << host_bits };
        let family_mask = if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 };
        Self { family: self.family, value: self.value & mask & family_mask }
    }

    /// An IPv4 address ending in .0 or .255, which some old equipment mishandles
    /// (MetalLB's avoid-buggy-ips).
    pub fn confuses_buggy_firmware(self) -> bool {
        self.family == Family::V4 && matches!(self.value & 0xff, 0 | 0xff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Address {
        Address::from_ip(text.parse().unwrap())
    }

    #[test]
    fn round_trips_both_families() {
        for text in ["192.0.2.1", "0.0.0.0", "255.255.255.255", "2001:db8::1", "::", "ffff::ffff"] {
            assert_eq!(addr(text).to_ip().to_string(), text);
        }
    }

    #[test]
    fn masks_to_a_prefix() {
        assert_eq!(addr("192.0.2.77").masked(24).to_ip().to_string(), "192.0.2.0");
        assert_eq!(addr("192.0.2.77").masked(32), addr("192.0.2.77"));
        assert_eq!(addr("192.0.2.77").masked(0).to_ip().to_string(), "0.0.0.0");
        assert_eq!(addr("2001:db8::77").masked(64).to_ip().to_string(), "2001:db8::");
        assert_eq!(addr("2001:db8::77").masked(128), addr("2001:db8::77"));
    }

    #[test]
    fn buggy_firmware_addresses_are_ipv4_dot_zero_and_dot_255() {
        assert!(addr("192.0.2.0").confuses_buggy_firmware());
        assert!(addr("192.0.2.255").confuses_buggy_firmware());
        assert!(!addr("192.0.2.1").confuses_buggy_firmware());
        assert!(!addr("2001:db8::").confuses_buggy_firmware());
        assert!(!addr("2001:db8::ff").confuses_buggy_firmware());
    }
}
