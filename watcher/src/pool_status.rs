//! IPAddressPool status as MetalLB keeps it: how many addresses of each family are assigned and
//! still available, from the allocator's pool usage. Counts beyond what the field holds (an
//! IPv6 /64 has 2^64 addresses) are capped at its largest value.

use metallb_config_formats::resources::IpAddressPoolStatus;
use metallb_proto::pb;

/// The status of the pool `usage` describes.
pub fn status_of(usage: &pb::PoolUsage) -> IpAddressPoolStatus {
    let mut status = IpAddressPoolStatus::default();
    for family in &usage.families {
        let used = i64::try_from(family.used).unwrap_or(i64::MAX);
        // `free` is decimal text because it may exceed 64 bits.
        let free =
            family.free.parse::<u128>().map_or(0, |free| i64::try_from(free).unwrap_or(i64::MAX));
        match pb::IpFamily::try_from(family.family) {
            Ok(pb::IpFamily::Ipv4) => (status.assigned_ipv4, status.available_ipv4) = (used, free),
            Ok(pb::IpFamily::Ipv6) => (status.assigned_ipv6, status.available_ipv6) = (used, free),
            _ => {}
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_family_capped_at_the_fields_range() {
        let usage = pb::PoolUsage {
            name: "p".into(),
            families: vec![
                pb::FamilyUsage {
                    family: pb::IpFamily::Ipv4 as i32,
                    size: "256".into(),
                    used: 3,
                    free: "253".into(),
                },
                pb::FamilyUsage {
                    family: pb::IpFamily::Ipv6 as i32,
                    size: "18446744073709551616".into(),
                    used: 1,
                    free: "18446744073709551615".into(),
                },
            ],
            ..Default::default()
        };
        let status = status_of(&usage);
        assert_eq!((status.assigned_ipv4, status.available_ipv4), (3, 253));
        assert_eq!((status.assigned_ipv6, status.available_ipv6), (1, i64::MAX));
    }
}
