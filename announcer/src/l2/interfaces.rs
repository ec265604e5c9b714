//! The node's interfaces as layer 2 mode sees them, and the rule for where an IP is answered:
//! only on a segment the IP belongs to. A node on several networks must not claim a
//! LoadBalancer IP on a network whose hosts would then send its traffic to the wrong place,
//! so an interface answers for an IP only if one of its own addresses' prefixes covers the
//! IP (the node is on that IP's subnet there), it is up, not loopback, does ARP/ND at all, and
//! has an Ethernet address to answer with; and, when the advertisement names interfaces,
//! only if it is one of them.

use std::{collections::BTreeSet, io, net::IpAddr};

use ipnetwork::IpNetwork;

use super::{frames::Mac, netlink};

/// One interface of the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// The kernel's index for it.
    pub index: u32,
    /// Its name ("eth0").
    pub name: String,
    /// Its Ethernet address; `None` for links that are not Ethernet or have none.
    pub mac: Option<Mac>,
    /// Its MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// The loopback interface.
    pub loopback: bool,
    /// Marked NOARP: the kernel does neither ARP nor neighbor discovery there.
    pub no_arp: bool,
    /// Its addresses with their prefixes.
    pub addresses: Vec<IpNetwork>,
}

impl Interface {
    /// Whether this interface may answer for `ip`, given the interfaces its advertisement
    /// names (`names`, empty for any).
    pub fn qualifies(&self, ip: IpAddr, names: &BTreeSet<String>) -> bool {
        self.usable()
            && (names.is_empty() || names.contains(&self.name))
            && self.addresses.iter().any(|network| network.contains(ip))
    }

    /// Up, not loopback, doing ARP/ND, and with an Ethernet address.
    fn usable(&self) -> bool {
        self.up && !self.loopback && !self.no_arp && self.mac.is_some()
    }
}

/// The node's interfaces now, in index order.
pub fn scan() -> io::Result<Vec<Interface>> {
    let (links, addresses) = netlink::links_and_addresses()?;
    Ok(from_netlink(links, &addresses))
}

/// Joins each link with its addresses.
fn from_netlink(links: Vec<netlink::Link>, addresses: &[netlink::Address]) -> Vec<Interface> {
    let has = |flags: u32, flag: libc::c_int| flags & flag as u32 != 0;
    let mut interfaces: Vec<Interface> = links
        .into_iter()
        .map(|link| Interface {
            index: link.index,
            mac: ethernet_address(&link),
            mtu: link.mtu,
            up: has(link.flags, libc::IFF_UP),
            loopback: has(link.flags, libc::IFF_LOOPBACK),
            no_arp: has(link.flags, libc::IFF_NOARP),
            addresses: addresses
                .iter()
                .filter(|address| address.index == link.index)
                .filter_map(|address| IpNetwork::new(address.address, address.prefix_len).ok())
                .collect(),
            name: link.name,
        })
        .collect();
    interfaces.sort_by_key(|interface| interface.index);
    interfaces
}

/// The link's MAC if it is an Ethernet link with a real (non-zero) one: the frames we send are
/// Ethernet frames from that address.
fn ethernet_address(link: &netlink::Link) -> Option<Mac> {
    if link.hardware_type != libc::ARPHRD_ETHER {
        return None;
    }
    let mac = Mac::try_from(link.hardware_address.as_slice()).ok()?;
    (mac != [0; 6]).then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth0() -> Interface {
        Interface {
            index: 2,
            name: "eth0".into(),
            mac: Some([2, 0, 0, 0, 0, 0x11]),
            mtu: 1500,
            up: true,
            loopback: false,
            no_arp: false,
            addresses: vec![
                "192.0.2.11/24".parse().unwrap(),
                "2001:db8:0:1::11/64".parse().unwrap(),
            ],
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn an_interface_answers_for_ips_its_prefixes_cover_in_both_families() {
        let eth0 = eth0();
        let any = names(&[]);
        for covered in ["192.0.2.100", "192.0.2.255", "2001:db8:0:1::100"] {
            assert!(eth0.qualifies(ip(covered), &any), "{covered}");
        }
        for outside in ["192.0.3.1", "198.51.100.7", "2001:db8:0:2::1", "::ffff:192.0.2.100"] {
            assert!(!eth0.qualifies(ip(outside), &any), "{outside}");
        }
    }

    #[test]
    fn named_interfaces_restrict_where_an_ip_is_answered() {
        let eth0 = eth0();
        assert!(eth0.qualifies(ip("192.0.2.100"), &names(&["eth1", "eth0"])));
        assert!(!eth0.qualifies(ip("192.0.2.100"), &names(&["eth1"])));
        // A name does not make an interface answer outside its subnets.
        assert!(!eth0.qualifies(ip("198.51.100.7"), &names(&["eth0"])));
    }

    #[test]
    fn down_loopback_noarp_and_macless_interfaces_never_answer() {
        type Change = fn(&mut Interface);
        let any = names(&[]);
        let cases: [(&str, Change); 4] = [
            ("down", |i| i.up = false),
            ("loopback", |i| i.loopback = true),
            ("NOARP", |i| i.no_arp = true),
            ("no MAC", |i| i.mac = None),
        ];
        for (what, change) in cases {
            let mut interface = eth0();
            change(&mut interface);
            assert!(!interface.qualifies(ip("192.0.2.100"), &any), "{what}");
        }
    }

    #[test]
    fn links_are_joined_with_their_addresses_and_only_ethernet_macs_kept() {
        let link =
            |index, name: &str, hardware_type, hardware_address: Vec<u8>, flags| netlink::Link {
                index,
                name: name.into(),
                flags,
                hardware_type,
                hardware_address,
                mtu: 1500,
            };
        let up = libc::IFF_UP as u32;
        let links = vec![
            link(3, "wg0", 65534, vec![], up | libc::IFF_NOARP as u32),
            link(1, "lo", 772, vec![0; 6], up | libc::IFF_LOOPBACK as u32),
            link(2, "eth0", libc::ARPHRD_ETHER, vec![2, 0, 0, 0, 0, 0x11], up),
            link(4, "dummy", libc::ARPHRD_ETHER, vec![0; 6], up),
        ];
        let address = |index, text: &str, prefix_len| netlink::Address {
            index,
            address: ip(text),
            prefix_len,
        };
        let addresses = [
            address(2, "192.0.2.11", 24),
            address(1, "127.0.0.1", 8),
            address(2, "2001:db8:0:1::11", 64),
        ];
        let interfaces = from_netlink(links, &addresses);
        let names: Vec<&str> = interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["lo", "eth0", "wg0", "dummy"]);
        assert_eq!(interfaces[1], eth0());
        assert!(interfaces[0].loopback && interfaces[0].mac.is_none());
        assert!(interfaces[2].no_arp && interfaces[2].mac.is_none());
        assert!(interfaces[3].mac.is_none(), "an all-zero MAC is none");
    }
}
