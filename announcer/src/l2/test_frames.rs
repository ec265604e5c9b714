//! Requests as other hosts on the segment send them, built with etherparse, for the tests of
//! what reads them.

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{
    ArpEthIpv4Packet, ArpOperation, ArpPacket, EtherType, Ethernet2Header, Icmpv6Type,
    PacketBuilder,
};

use super::{frames::Mac, packet_socket::solicited_node_mac};

/// An ARP request from `sender` asking for `target`, sent to `destination` (broadcast, or
/// unicast when a host re-checks an entry it has).
pub fn arp_request(sender: (Mac, Ipv4Addr), target: Ipv4Addr, destination: Mac) -> Vec<u8> {
    let arp = ArpPacket::from(ArpEthIpv4Packet {
        operation: ArpOperation::REQUEST,
        sender_mac: sender.0,
        sender_ipv4: sender.1.octets(),
        target_mac: [0; 6],
        target_ipv4: target.octets(),
    });
    let ethernet = Ethernet2Header { source: sender.0, destination, ether_type: EtherType::ARP };
    let mut frame = ethernet.to_bytes().to_vec();
    frame.extend_from_slice(&arp.to_bytes());
    frame
}

/// A neighbor solicitation from `sender` for `target` with a source link-layer address
/// option, to the target's solicited-node group.
pub fn solicitation(sender: (Mac, Ipv6Addr), target: Ipv6Addr) -> Vec<u8> {
    let octets = target.octets();
    let group = Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, octets[13], octets[14], octets[15],
    ]);
    let mut body = octets.to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&sender.0);
    let builder = PacketBuilder::ethernet2(sender.0, solicited_node_mac(target))
        .ipv6(sender.1.octets(), group.octets(), 255)
        .icmpv6(Icmpv6Type::NeighborSolicitation);
    let mut frame = Vec::new();
    builder.write(&mut frame, &body).expect("a Vec takes every byte");
    frame
}
