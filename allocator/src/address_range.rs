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
    /// As MetalLB reads them: the two ends of a range may have spaces around them, a CIDR may
    /// not.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some((start, end)) = text.split_once('-') {
            let first = parse_ip(start.trim(), text)?;
            let last = parse_ip(end.trim(), text)?;
            if first.family != last.family {
                return Err(format!("range {text:?} mixes IPv4 and IPv6"));
            }
            if first.value > last.value {
                return Err(format!("range {text:?} ends before it starts"));
            }
            return Ok(Self { family: first.family, first: first.value, last: last.value });
        }
        if text.trim() != text {
            return Err(format!("CIDR {text:?}: spaces around a CIDR are not allowed"));
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
            return Err(format!("CIDR {text:?}: prefix length {len} is longer than {max}"));
        }
        let network = ip.masked(len);
        let host_bits = u32::from(max - len);
        let span = if host_bits >= 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
        Ok(Self { family: ip.family, first: network.value, last: network.value + span })
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

    /// The shortest prefix length among the CIDRs the range splits into (a CIDR is one). An
    /// advertisement may not aggregate a pool to a shorter prefix than this: MetalLB rejects
    /// that, as no piece of the range could be announced whole. (A range whose widest piece
    /// fits is accepted, as MetalLB accepts it.)
    pub fn widest_prefix_len(&self) -> u8 {
        let bits = u32::from(self.family.bits());
        let mut start = self.first;
        let mut widest = bits;
        loop {
            // The largest aligned block starting at `start` that stays inside the range.
            let mut block_bits = start.trailing_zeros().min(bits);
            while block_bits > 0 && block_end(start, block_bits).is_none_or(|end| end > self.last) {
                block_bits -= 1;
            }
            widest = widest.min(bits - block_bits);
            match block_end(start, block_bits) {
                Some(end) if end < self.last => start = end + 1,
                _ => return widest as u8,
            }
        }
    }
}

/// Whether `text` is a range from an IPv4 to an IPv6 address (or back). MetalLB reads such a
/// range as no addresses at all, without an error; so does the allocator.
pub fn mixes_families(text: &str) -> bool {
    let Some((start, end)) = text.split_once('-') else { return false };
    match (start.trim().parse::<IpAddr>(), end.trim().parse::<IpAddr>()) {
        (Ok(first), Ok(last)) => first.is_ipv4() != last.is_ipv4(),
        _ => false,
    }
}

/// Last address of the block of 2^`block_bits` addresses starting at `start`.
fn block_end(start: u128, block_bits: u32) -> Option<u128> {
    let span = if block_bits >= 128 { u128::MAX } else { (1u128 << block_bits) - 1 };
    start.checked_add(span)
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
    fn widest_prefix_of_the_cidrs_a_range_splits_into() {
        let len = |text| AddressRange::parse(text).unwrap().widest_prefix_len();
        assert_eq!(len("192.0.2.0/24"), 24);
        assert_eq!(len("192.0.2.7/32"), 32);
        assert_eq!(len("192.0.2.0-192.0.2.127"), 25);
        // .0-.128 is a /25 plus the single address .128.
        assert_eq!(len("192.0.2.0-192.0.2.128"), 25);
        assert_eq!(len("192.0.2.64-192.0.2.191"), 26);
        // MetalLB's own case: .2-.254 splits into /31 ... /26, /26 ... /32; the widest is /26.
        assert_eq!(len("3.3.3.2-3.3.3.254"), 26);
        assert_eq!(len("2001:db8::/64"), 64);
        assert_eq!(len("0.0.0.0/0"), 0);
        assert_eq!(len("::/0"), 0);
    }

    #[test]
    fn spaces_are_read_as_metallb_reads_them() {
        assert!(AddressRange::parse(" 192.0.2.0/24").unwrap_err().contains("spaces"));
        assert!(AddressRange::parse("192.0.2.0/24 ").is_err());
        assert_eq!(AddressRange::parse(" 192.0.2.1 - 192.0.2.9 ").unwrap().size(), 9);
        assert!(mixes_families("192.0.2.1-2001:db8::1") && !mixes_families("192.0.2.1-192.0.2.9"));
    }
}
