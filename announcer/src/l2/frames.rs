//! The frames layer 2 mode reads and writes, parsed and built with etherparse: an ARP request
//! (RFC 826) or an IPv6 neighbor solicitation (RFC 4861) asking who has an IP; the ARP reply
//! or neighbor advertisement answering it; and the gratuitous ARP and unsolicited neighbor
//! advertisement a new owner sends to make the segment forget the old one.

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{
    ArpEthIpv4Packet, ArpOperation, ArpPacket, EtherType, Ethernet2Header, Icmpv6Type, NetSlice,
    PacketBuilder, SlicedPacket, TransportSlice, icmpv6::NeighborAdvertisementHeader,
};

/// A MAC address.
pub type Mac = [u8; 6];

/// The Ethernet broadcast address.
pub const BROADCAST: Mac = [0xff; 6];
/// ICMPv6 option types (RFC 4861 section 4.6).
const SOURCE_LINK_LAYER_ADDRESS: u8 = 1;
const TARGET_LINK_LAYER_ADDRESS: u8 = 2;
/// Neighbor discovery messages travel with hop limit 255, and are discarded otherwise.
const ND_HOP_LIMIT: u8 = 255;

/// Someone asking the segment who has an IP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// An ARP request.
    Arp {
        /// The asker's MAC.
        sender_mac: Mac,
        /// The asker's IP.
        sender_ip: Ipv4Addr,
        /// The IP asked about.
        target: Ipv4Addr,
    },
    /// A neighbor solicitation.
    NeighborSolicitation {
        /// The asker's MAC (from its source link-layer address option, else the frame's).
        sender_mac: Mac,
        /// The asker's IP (unspecified during duplicate address detection).
        sender_ip: Ipv6Addr,
        /// The IP asked about.
        target: Ipv6Addr,
    },
}

/// The request `frame` carries, if it is one; anything else (other traffic, a malformed or
/// truncated frame, a solicitation that crossed a router) is `None`.
pub fn parse(frame: &[u8]) -> Option<Request> {
    let packet = SlicedPacket::from_ethernet(frame).ok()?;
    let frame_source = match &packet.link {
        Some(etherparse::LinkSlice::Ethernet2(ethernet)) => ethernet.source(),
        _ => return None,
    };
    match (&packet.net, &packet.transport) {
        (Some(NetSlice::Arp(arp)), _) => {
            let arp = arp.to_packet().try_eth_ipv4().ok()?;
            (arp.operation == ArpOperation::REQUEST).then(|| Request::Arp {
                sender_mac: arp.sender_mac,
                sender_ip: Ipv4Addr::from(arp.sender_ipv4),
                target: Ipv4Addr::from(arp.target_ipv4),
            })
        }
        (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(icmp))) => {
            let header = ip.header();
            if header.hop_limit() != ND_HOP_LIMIT
                || icmp.icmp_type() != Icmpv6Type::NeighborSolicitation
                || !icmp.is_checksum_valid(header.source(), header.destination())
            {
                return None;
            }
            // The 4 reserved bytes are in the ICMPv6 header; the body is the target address,
            // then options.
            let body = icmp.payload();
            let target = Ipv6Addr::from(<[u8; 16]>::try_from(body.get(..16)?).ok()?);
            let sender_mac = option(&body[16..], SOURCE_LINK_LAYER_ADDRESS).unwrap_or(frame_source);
            Some(Request::NeighborSolicitation {
                sender_mac,
                sender_ip: header.source_addr(),
                target,
            })
        }
        _ => None,
    }
}

/// The first link-layer address option of `kind` among `options`.
fn option(mut options: &[u8], kind: u8) -> Option<Mac> {
    while options.len() >= 2 {
        let length = usize::from(options[1]) * 8;
        if length == 0 || length > options.len() {
            return None;
        }
        if options[0] == kind && length >= 8 {
            return <[u8; 6]>::try_from(&options[2..8]).ok();
        }
        options = &options[length..];
    }
    None
}

/// The ARP reply saying `ip` is at `our_mac`, to the host that asked (`asker_mac`, `asker_ip`).
pub fn arp_reply(our_mac: Mac, ip: Ipv4Addr, asker_mac: Mac, asker_ip: Ipv4Addr) -> Vec<u8> {
    arp_frame(ArpOperation::REPLY, our_mac, ip, asker_mac, asker_ip, asker_mac)
}

/// A gratuitous ARP announcing that `ip` is at `our_mac`, to the whole segment (a request for
/// our own IP, which every host updates its cache from).
pub fn gratuitous_arp(our_mac: Mac, ip: Ipv4Addr) -> Vec<u8> {
    arp_frame(ArpOperation::REQUEST, our_mac, ip, [0; 6], ip, BROADCAST)
}

fn arp_frame(
    operation: ArpOperation,
    our_mac: Mac,
    ip: Ipv4Addr,
    target_mac: Mac,
    target_ip: Ipv4Addr,
    destination: Mac,
) -> Vec<u8> {
    let arp = ArpPacket::from(ArpEthIpv4Packet {
        operation,
        sender_mac: our_mac,
        sender_ipv4: ip.octets(),
        target_mac,
        target_ipv4: target_ip.octets(),
    });
    let ethernet = Ethernet2Header { source: our_mac, destination, ether_type: EtherType::ARP };
    let mut frame = ethernet.to_bytes().to_vec();
    frame.extend_from_slice(&arp.to_bytes());
    frame
}

/// A neighbor advertisement saying `target` is at `our_mac`: solicited (to the asker, S flag)
/// when `asker` is given, otherwise unsolicited to all nodes (ff02::1), which overrides what
/// the segment had cached.
pub fn neighbor_advertisement(
    our_mac: Mac,
    target: Ipv6Addr,
    asker: Option<(Mac, Ipv6Addr)>,
) -> Vec<u8> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let (destination_mac, destination_ip) = match asker {
        // A solicitation from an unspecified address (duplicate address detection) is
        // answered to all nodes (RFC 4861 section 7.2.4).
        Some((mac, ip)) if !ip.is_unspecified() => (mac, ip),
        _ => ([0x33, 0x33, 0, 0, 0, 1], all_nodes),
    };
    let flags = NeighborAdvertisementHeader {
        router: false,
        solicited: asker.is_some_and(|(_, ip)| !ip.is_unspecified()),
        r#override: true,
    };
    let mut body = target.octets().to_vec();
    body.extend_from_slice(&[TARGET_LINK_LAYER_ADDRESS, 1]);
    body.extend_from_slice(&our_mac);
    let builder = PacketBuilder::ethernet2(our_mac, destination_mac)
        .ipv6(target.octets(), destination_ip.octets(), ND_HOP_LIMIT)
        .icmpv6(Icmpv6Type::NeighborAdvertisement(flags));
    let mut frame = Vec::with_capacity(builder.size(body.len()));
    builder.write(&mut frame, &body).expect("a Vec takes every byte");
    frame
}

#[cfg(test)]
mod tests;
