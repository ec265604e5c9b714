//! Layer 2 answering fed arbitrary frames, as any host on the segment could send them: the
//! parser and the answer decision must never panic, and an answer must only ever be an ARP reply
//! or a neighbor advertisement from this interface's MAC, about an IP this node owns on it, sent
//! to whoever asked.
#![no_main]

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use libfuzzer_sys::fuzz_target;
use metallb_announcer::l2::{answer::answer, frames, interfaces::Interface};

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

fn interface() -> Interface {
    Interface {
        index: 2,
        name: "eth0".into(),
        mac: Some(MAC),
        mtu: 1500,
        up: true,
        loopback: false,
        no_arp: false,
        addresses: vec!["192.0.2.11/24".parse().unwrap(), "2001:db8::11/64".parse().unwrap()],
    }
}

fuzz_target!(|data: &[u8]| {
    let request = frames::parse(data);
    let owned: BTreeMap<IpAddr, BTreeSet<String>> = [
        ("192.0.2.200".parse().unwrap(), BTreeSet::new()),
        ("2001:db8::200".parse().unwrap(), BTreeSet::new()),
        // Owned, but not on this interface's subnets: never answered for.
        ("198.51.100.7".parse().unwrap(), BTreeSet::new()),
    ]
    .into();
    let Some(reply) = answer(data, &interface(), &owned) else { return };
    assert!(
        reply.ip == "192.0.2.200".parse::<IpAddr>().unwrap()
            || reply.ip == "2001:db8::200".parse::<IpAddr>().unwrap(),
        "answered for {}",
        reply.ip
    );
    assert_eq!(&reply.frame[6..12], &MAC, "from this interface's MAC");
    let asker = match request.expect("an answer answers a request") {
        frames::Request::Arp { sender_mac, .. } => sender_mac,
        frames::Request::NeighborSolicitation { sender_mac, .. } => sender_mac,
    };
    assert_eq!(&reply.frame[0..6], &asker, "to whoever asked");
    let packet = SlicedPacket::from_ethernet(&reply.frame).expect("the answer parses");
    match (&packet.net, &packet.transport) {
        (Some(NetSlice::Arp(_)), _) => assert!(reply.ip.is_ipv4()),
        (Some(NetSlice::Ipv6(_)), Some(TransportSlice::Icmpv6(_))) => assert!(reply.ip.is_ipv6()),
        other => panic!("answered with {other:?}"),
    }
});
