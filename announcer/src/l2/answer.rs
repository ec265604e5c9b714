//! Whether a frame read on an interface gets an answer, and which: an ARP reply or a solicited
//! neighbor advertisement from the interface's MAC, for an IP this node owns and that belongs
//! on that interface. Decided from the owned set as it is when the frame is handled, so that
//! an IP given up is not answered for once more.

use std::net::IpAddr;

use super::{
    OwnedIps,
    frames::{self, Request},
    interfaces::Interface,
};

/// An Ethernet header without a VLAN tag.
const ETHERNET_HEADER: usize = 14;
/// The MTU assumed for an interface whose MTU the kernel did not report.
const DEFAULT_MTU: u32 = 1500;

/// What to send back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The IP asked about.
    pub ip: IpAddr,
    /// The reply frame.
    pub frame: Vec<u8>,
}

/// The answer to `frame`, read on `interface`, when this node owns the IP it asks about.
pub fn answer(frame: &[u8], interface: &Interface, owned: &OwnedIps) -> Option<Answer> {
    let mac = interface.mac?;
    let mtu = if interface.mtu == 0 { DEFAULT_MTU } else { interface.mtu };
    if frame.len() > ETHERNET_HEADER + mtu as usize {
        return None;
    }
    let (destination, source) = (frame.get(0..6)?, frame.get(6..12)?);
    // Our own frames never need an answer (the socket's filter already drops those we send).
    if source == mac {
        return None;
    }
    // Broadcast and multicast (the group bit) or to us: not unicast meant for another host.
    if destination != mac && destination[0] & 1 == 0 {
        return None;
    }
    match frames::parse(frame)? {
        Request::Arp { sender_mac, sender_ip, target } => {
            // A gratuitous ARP is an announcement (another owner's, in a handover); nobody
            // waits for its answer.
            if sender_ip == target {
                return None;
            }
            let ip = IpAddr::V4(target);
            owns(owned, interface, ip).then(|| Answer {
                ip,
                frame: frames::arp_reply(mac, target, sender_mac, sender_ip),
            })
        }
        Request::NeighborSolicitation { sender_mac, sender_ip, target } => {
            let ip = IpAddr::V6(target);
            owns(owned, interface, ip).then(|| Answer {
                ip,
                frame: frames::neighbor_advertisement(mac, target, Some((sender_mac, sender_ip))),
            })
        }
    }
}

/// Whether `ip` is owned and may be answered for on `interface`.
pub fn owns(owned: &OwnedIps, interface: &Interface, ip: IpAddr) -> bool {
    owned.get(&ip).is_some_and(|names| interface.qualifies(ip, names))
}

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeSet,
        net::{Ipv4Addr, Ipv6Addr},
    };

    use etherparse::{ArpOperation, Icmpv6Type, LinkSlice, NetSlice, SlicedPacket, TransportSlice};

    use super::*;
    use crate::l2::{frames::BROADCAST, test_frames};

    const OURS: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
    const ASKER: [u8; 6] = [2, 0, 0, 0, 0, 0x02];
    const OTHER: [u8; 6] = [2, 0, 0, 0, 0, 0x12];
    const SERVICE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    fn service_v6() -> Ipv6Addr {
        "2001:db8:0:1::100".parse().unwrap()
    }

    fn client_v6() -> Ipv6Addr {
        "fe80::2".parse().unwrap()
    }

    fn eth0() -> Interface {
        Interface {
            index: 2,
            name: "eth0".into(),
            mac: Some(OURS),
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

    fn owned(ips: &[IpAddr], names: &[&str]) -> OwnedIps {
        let names: BTreeSet<String> = names.iter().map(|name| name.to_string()).collect();
        ips.iter().map(|ip| (*ip, names.clone())).collect()
    }

    fn request(destination: [u8; 6]) -> Vec<u8> {
        test_frames::arp_request((ASKER, CLIENT), SERVICE, destination)
    }

    #[test]
    fn an_arp_request_for_an_owned_ip_gets_a_reply_from_the_interfaces_mac() {
        let owned = owned(&[SERVICE.into()], &[]);
        for destination in [BROADCAST, OURS] {
            let answer = answer(&request(destination), &eth0(), &owned).expect("answered");
            assert_eq!(answer.ip, IpAddr::V4(SERVICE));
            let reply = SlicedPacket::from_ethernet(&answer.frame).unwrap();
            let Some(LinkSlice::Ethernet2(ethernet)) = &reply.link else { panic!("{reply:?}") };
            assert_eq!((ethernet.source(), ethernet.destination()), (OURS, ASKER));
            let Some(NetSlice::Arp(arp)) = &reply.net else { panic!("{reply:?}") };
            let arp = arp.to_packet().try_eth_ipv4().unwrap();
            assert_eq!(arp.operation, ArpOperation::REPLY);
            assert_eq!((arp.sender_mac, Ipv4Addr::from(arp.sender_ipv4)), (OURS, SERVICE));
            assert_eq!((arp.target_mac, Ipv4Addr::from(arp.target_ipv4)), (ASKER, CLIENT));
        }
    }

    #[test]
    fn a_solicitation_for_an_owned_ipv6_gets_a_solicited_overriding_advertisement() {
        let owned = owned(&[service_v6().into()], &["eth0"]);
        let solicitation = test_frames::solicitation((ASKER, client_v6()), service_v6());
        let answer = answer(&solicitation, &eth0(), &owned).expect("answered");
        assert_eq!(answer.ip, IpAddr::V6(service_v6()));
        let reply = SlicedPacket::from_ethernet(&answer.frame).unwrap();
        let Some(LinkSlice::Ethernet2(ethernet)) = &reply.link else { panic!("{reply:?}") };
        assert_eq!((ethernet.source(), ethernet.destination()), (OURS, ASKER));
        let Some(NetSlice::Ipv6(ip)) = &reply.net else { panic!("{reply:?}") };
        assert_eq!(ip.header().destination_addr(), client_v6());
        let Some(TransportSlice::Icmpv6(icmp)) = &reply.transport else { panic!("{reply:?}") };
        let Icmpv6Type::NeighborAdvertisement(flags) = icmp.icmp_type() else {
            panic!("{:?}", icmp.icmp_type())
        };
        assert!(flags.solicited && flags.r#override && !flags.router);
        assert_eq!(&icmp.payload()[..16], &service_v6().octets());
    }

    #[test]
    fn ips_not_owned_or_not_belonging_on_the_interface_are_not_answered() {
        let request = request(BROADCAST);
        let solicitation = test_frames::solicitation((ASKER, client_v6()), service_v6());
        let both = [IpAddr::V4(SERVICE), service_v6().into()];
        let cases = [
            ("nothing owned (fenced)", owned(&[], &[]), eth0()),
            ("other IPs owned", owned(&["192.0.2.101".parse().unwrap()], &[]), eth0()),
            ("another interface named", owned(&both, &["eth1"]), eth0()),
            ("outside the interface's subnets", owned(&both, &[]), {
                let mut interface = eth0();
                interface.addresses = vec!["198.51.100.1/24".parse().unwrap()];
                interface
            }),
            ("interface down", owned(&both, &[]), {
                let mut interface = eth0();
                interface.up = false;
                interface
            }),
        ];
        for (what, owned, interface) in cases {
            assert_eq!(answer(&request, &interface, &owned), None, "{what}");
            assert_eq!(answer(&solicitation, &interface, &owned), None, "{what}");
        }
    }

    #[test]
    fn frames_for_others_from_us_announcements_and_oversized_frames_are_ignored() {
        let owned = owned(&[SERVICE.into()], &[]);
        let eth0 = eth0();
        assert_eq!(answer(&request(OTHER), &eth0, &owned), None, "unicast to another host");
        let ours = test_frames::arp_request((OURS, CLIENT), SERVICE, BROADCAST);
        assert_eq!(answer(&ours, &eth0, &owned), None, "from our own MAC");
        let gratuitous = frames::gratuitous_arp(OTHER, SERVICE);
        assert_eq!(answer(&gratuitous, &eth0, &owned), None, "another owner's announcement");
        let mut padded = request(BROADCAST);
        padded.resize(ETHERNET_HEADER + 1500, 0);
        assert!(answer(&padded, &eth0, &owned).is_some(), "a full-size frame is read");
        padded.push(0);
        assert_eq!(answer(&padded, &eth0, &owned), None, "over the MTU");
        assert_eq!(answer(&[0xff; 10], &eth0, &owned), None, "shorter than a header");
    }
}
