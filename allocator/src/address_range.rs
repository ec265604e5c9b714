//! Address ranges as pools declare them: a CIDR ("192.0.2.0/24") or an inclusive range
//! ("192.0.2.10-192.0.2.20"), of one family.

use std::net::IpAddr;

use crate::address::{Address, Family};

/// An inclusive range of addresses of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressRange {
    /// The family of both ends.
    pub family: Family,
    /// First address (as a number).
    pub first: u128,
    /// Last address (as a number), not below `first`.
    pub last: u128,
}

impl AddressRange {
    /// Parses a CIDR or an `a-b` range. The error says precisely what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some((start, end)) = text.split_once('-') {
            let first = parse_ip(start.trim(), text)?;
            let last = parse_ip(end.trim(), text)?;
            if first.family != last.family {
                return Err(format!("range {text:?} mixes IPv4 and IPv6"));
            }
            if first.value > last.value {
                return Err(format!("range {text:?} ends before it starts"));
            }
            return Ok(Self {
                family: first.family,
                first: first.value,
                last: last.value,
            });
        }
        let Some((ip, len)) = text.split_once('/') else {
            return Err(format!(
                "{text:?} is neither a CIDR (192.0.2.0/24) nor a range (192.0.2.1-192.0.2.9)"
            ));
        };
        let ip = parse_ip(ip, text)?;
        let max = ip.family.bits();
        let len: u8 = len
            .parse()
            .map_err(|_| format!("CIDR {text:?}: prefix length {len:?} is not a number"))?;
        if len > max {
            return Err(format!(
                "CIDR {text:?}: prefix length {len} is longer than {max}"
            ));
        }
        let network = ip.masked(len);
        let host_bits = u32::from(max - len);
        let span = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        Ok(Self {
            family: ip.family,
            first: network.value,
            last: network.value + span,
        })
    }

    /// Number of addresses, saturating at u128::MAX for the whole IPv6 space.
    pub fn size(&self) -> u128 {
        (self.last - self.first).saturating_add(1)
    }

    /// Whether the two ranges share an address.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.family == other.family && self.first <= other.last && other.first <= self.last
    }

    /// Whether `address` lies inside.
    pub fn contains(&self, address: Address) -> bool {
        address.family == self.family && (self.first..=self.last).contains(&address.value)
    }

    /// The shortest prefix length that covers the whole range, used to check that an
    /// aggregation length is not shorter than the pool's own prefix.
    pub fn covering_prefix_len(&self) -> u8 {
        let differing = self.first ^ self.last;
        let bits = self.family.bits();
        let used = 128 - differing.leading_zeros() as u8;
        bits - used.min(bits)
    }
}

fn parse_ip(text: &str, whole: &str) -> Result<Address, String> {
    text.parse::<IpAddr>()
        .map(Address::from_ip)
        .map_err(|_| format!("{whole:?}: {text:?} is not an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cidrs_and_ranges_of_both_families() {
        let v4 = AddressRange::parse("192.0.2.0/24").unwrap();
        assert_eq!((v4.family, v4.size()), (Family::V4, 256));
        let range = AddressRange::parse("192.0.2.10 - 192.0.2.20").unwrap();
        assert_eq!(range.size(), 11);
        let v6 = AddressRange::parse("2001:db8::/64").unwrap();
        assert_eq!((v6.family, v6.size()), (Family::V6, 1 << 64));
        assert_eq!(AddressRange::parse("::/0").unwrap().size(), u128::MAX);
        assert_eq!(AddressRange::parse("192.0.2.7/32").unwrap().size(), 1);
    }

    #[test]
    fn a_cidr_with_host_bits_means_its_network_like_metallb() {
        let range = AddressRange::parse("192.0.2.77/24").unwrap();
        assert_eq!(range, AddressRange::parse("192.0.2.0/24").unwrap());
    }

    #[test]
    fn rejects_malformed_input_precisely() {
        let cases = [
            ("192.0.2.0/33", "prefix length 33 is longer than 32"),
            ("2001:db8::/129", "longer than 128"),
            ("192.0.2.0/x", "is not a number"),
            ("192.0.2.300/24", "\"192.0.2.300\" is not an IP address"),
            ("192.0.2.9-192.0.2.1", "ends before it starts"),
            ("192.0.2.1-2001:db8::1", "mixes IPv4 and IPv6"),
            ("pool", "neither a CIDR"),
        ];
        for (input, expected) in cases {
            let err = AddressRange::parse(input).unwrap_err();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }

    #[test]
    fn overlap_and_containment() {
        let a = AddressRange::parse("192.0.2.0/24").unwrap();
        let b = AddressRange::parse("192.0.2.200-192.0.3.5").unwrap();
        let c = AddressRange::parse("192.0.3.0/24").unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&c) && !a.overlaps(&c));
        assert!(!a.overlaps(&AddressRange::parse("2001:db8::/64").unwrap()));
        assert!(a.contains(Address::from_ip("192.0.2.255".parse().unwrap())));
        assert!(!a.contains(Address::from_ip("192.0.3.0".parse().unwrap())));
    }

    #[test]
    fn covering_prefix_length() {
        assert_eq!(
            AddressRange::parse("192.0.2.0/24")
                .unwrap()
                .covering_prefix_len(),
            24
        );
        assert_eq!(
            AddressRange::parse("192.0.2.7/32")
                .unwrap()
                .covering_prefix_len(),
            32
        );
        assert_eq!(
            AddressRange::parse("192.0.2.0-192.0.2.200")
                .unwrap()
                .covering_prefix_len(),
            24
        );
        assert_eq!(
            AddressRange::parse("2001:db8::/64")
                .unwrap()
                .covering_prefix_len(),
            64
        );
    }
}
