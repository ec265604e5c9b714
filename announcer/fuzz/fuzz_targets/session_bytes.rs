//! A session fed arbitrary bytes from its peer, after a valid OPEN and KEEPALIVE have brought it
//! to Established: the state machine must never panic, and must answer decode errors with a
//! NOTIFICATION or (RFC 7606) keep the session.
#![no_main]

use std::{net::Ipv4Addr, time::Duration};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use metallb_announcer::bgp::{
    fsm::{Event, Fsm, SessionConfig},
    packet::{Message, WireContext, capability::Capability, open::Open},
};

fuzz_target!(|data: &[u8]| {
    let mut fsm = Fsm::new(SessionConfig {
        local_asn: 64512,
        peer_asn: 64500,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        hold_time: 90,
        keepalive: None,
        connect_retry: Duration::from_secs(1),
        max_retry: Duration::from_secs(30),
        families: vec![(1, 1), (2, 1)],
        graceful_restart: Some(120),
        restarting: false,
    });
    fsm.event(Event::Start);
    fsm.event(Event::TcpConnected);
    let open = Open {
        version: 4,
        my_as: 64500,
        hold_time: 90,
        identifier: Ipv4Addr::new(192, 0, 2, 254),
        capabilities: vec![Capability::Multiprotocol((1, 1)), Capability::FourOctetAs(64500)],
    };
    fsm.event(Event::Message(Message::Open(open)));
    fsm.event(Event::Message(Message::Keepalive));
    let context = fsm.negotiated().map(|n| WireContext { as_width: n.as_width, ..WireContext::default() }).unwrap_or_default();
    let mut buffer = BytesMut::from(data);
    for _ in 0..64 {
        match Message::decode_frame(&mut buffer, context) {
            Ok(Some(message)) => drop(fsm.event(Event::Message(message))),
            Ok(None) => break,
            Err(error) => {
                fsm.event(Event::DecodeError(error));
                break;
            }
        }
    }
});
