//! Frames built the way hosts on the segment build them (with etherparse), read back.

use super::*;

const OURS: Mac = [0x02, 0, 0, 0, 0, 0x01];
const THEIRS: Mac = [0x02, 0, 0, 0, 0, 0x02];

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    arp_frame(ArpOperation::REQUEST, THEIRS, Ipv4Addr::new(192, 0, 2, 1), [0; 6], target, BROADCAST)
}

fn solicitation(sender: Ipv6Addr, target: Ipv6Addr, hop_limit: u8, with_option: bool) -> Vec<u8> {
    let mut body = target.octets().to_vec();
    if with_option {
        body.extend_from_slice(&[SOURCE_LINK_LAYER_ADDRESS, 1]);
        body.extend_from_slice(&THEIRS);
    }
    let builder = PacketBuilder::ethernet2(THEIRS, [0x33, 0x33, 0xff, 0, 0, 0x07])
        .ipv6(sender.octets(), Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 7).octets(), hop_limit)
        .icmpv6(Icmpv6Type::NeighborSolicitation);
    let mut frame = Vec::new();
    builder.write(&mut frame, &body).unwrap();
    frame
}

#[test]
fn an_arp_request_is_read_and_answered() {
    let service = Ipv4Addr::new(192, 0, 2, 7);
    let request = parse(&arp_request(service)).unwrap();
    assert_eq!(
        request,
        Request::Arp {
            sender_mac: THEIRS,
            sender_ip: Ipv4Addr::new(192, 0, 2, 1),
            target: service
        }
    );
    let reply = arp_reply(OURS, service, THEIRS, Ipv4Addr::new(192, 0, 2, 1));
    let packet = SlicedPacket::from_ethernet(&reply).unwrap();
    let Some(NetSlice::Arp(arp)) = packet.net else { panic!("not ARP") };
    let arp = arp.to_packet().try_eth_ipv4().unwrap();
    assert_eq!(arp.operation, ArpOperation::REPLY);
    assert_eq!((arp.sender_mac, arp.sender_ipv4), (OURS, service.octets()));
    assert_eq!(arp.target_mac, THEIRS);
    // A reply is not a request: nothing to answer.
    assert_eq!(parse(&reply), None);
}

#[test]
fn a_gratuitous_arp_tells_the_whole_segment() {
    let service = Ipv4Addr::new(192, 0, 2, 7);
    let frame = gratuitous_arp(OURS, service);
    assert_eq!(&frame[..6], &BROADCAST);
    // Hosts read it as a request for the IP from its owner.
    assert_eq!(
        parse(&frame),
        Some(Request::Arp { sender_mac: OURS, sender_ip: service, target: service })
    );
}

#[test]
fn a_neighbor_solicitation_is_read_and_answered() {
    let asker: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let service: Ipv6Addr = "2001:db8::7".parse().unwrap();
    let request = parse(&solicitation(asker, service, 255, true)).unwrap();
    assert_eq!(
        request,
        Request::NeighborSolicitation { sender_mac: THEIRS, sender_ip: asker, target: service }
    );
    let answer = neighbor_advertisement(OURS, service, Some((THEIRS, asker)));
    let packet = SlicedPacket::from_ethernet(&answer).unwrap();
    let (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(icmp))) =
        (&packet.net, &packet.transport)
    else {
        panic!("not ICMPv6")
    };
    let header = ip.header();
    assert!(icmp.is_checksum_valid(header.source(), header.destination()));
    assert_eq!((header.destination_addr(), header.hop_limit()), (asker, 255));
    let Icmpv6Type::NeighborAdvertisement(flags) = icmp.icmp_type() else { panic!("not NA") };
    assert!(flags.solicited && flags.r#override && !flags.router);
    assert_eq!(&icmp.payload()[..16], &service.octets());
    assert_eq!(option(&icmp.payload()[16..], TARGET_LINK_LAYER_ADDRESS), Some(OURS));
}

#[test]
fn an_unsolicited_advertisement_goes_to_all_nodes() {
    let service: Ipv6Addr = "2001:db8::7".parse().unwrap();
    let frame = neighbor_advertisement(OURS, service, None);
    assert_eq!(&frame[..6], &[0x33, 0x33, 0, 0, 0, 1]);
    let packet = SlicedPacket::from_ethernet(&frame).unwrap();
    let Some(TransportSlice::Icmpv6(icmp)) = &packet.transport else { panic!("not ICMPv6") };
    let Icmpv6Type::NeighborAdvertisement(flags) = icmp.icmp_type() else { panic!("not NA") };
    assert!(!flags.solicited && flags.r#override);
}

#[test]
fn solicitations_that_crossed_a_router_or_are_garbled_are_ignored() {
    let asker: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let service: Ipv6Addr = "2001:db8::7".parse().unwrap();
    assert_eq!(parse(&solicitation(asker, service, 64, true)), None, "hop limit below 255");
    let mut corrupt = solicitation(asker, service, 255, true);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(parse(&corrupt), None, "bad checksum");
    let frame = solicitation(asker, service, 255, true);
    for cut in [0, 13, 20, frame.len() - 9] {
        assert_eq!(parse(&frame[..cut]), None, "cut at {cut}");
    }
    // Without its source link-layer option, the frame's source address says who asked.
    let bare = parse(&solicitation(asker, service, 255, false)).unwrap();
    assert!(matches!(bare, Request::NeighborSolicitation { sender_mac: THEIRS, .. }));
}
