//! A session fed arbitrary bytes from its peer, after a valid OPEN and KEEPALIVE have brought it
//! to Established, through the driver's own framing (`session::take_messages`) and in reads of
//! sizes the input chooses (a message split across reads, several in one): the state machine
//! must never panic, must answer decode errors with a NOTIFICATION or (RFC 7606) keep the
//! session, and the framing must never lose its place on a treat-as-withdraw UPDATE.
#![no_main]

use std::{collections::VecDeque, net::Ipv4Addr, time::Duration};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use metallb_announcer::bgp::{
    fsm::{Event, Fsm, SessionConfig, State},
    packet::{EXTENDED_MAX_LEN, Message, WireContext, capability::Capability, open::Open},
    session::take_messages,
};

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the read sizes; the rest is what the peer sends.
    let Some((sizes, stream)) = data.split_first_chunk::<2>() else { return };
    let mut fsm = Fsm::new(SessionConfig {
        local_asn: 64512,
        peer_asn: 64500.into(),
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
        capabilities: vec![
            Capability::Multiprotocol((1, 1)),
            Capability::FourOctetAs(64500),
            Capability::ExtendedMessage,
        ],
    };
    fsm.event(Event::Message(Message::Open(open)));
    fsm.event(Event::Message(Message::Keepalive));
    let wire = fsm
        .negotiated()
        .map(|n| WireContext {
            as_width: n.as_width,
            max_len: if n.extended_message { EXTENDED_MAX_LEN } else { WireContext::default().max_len },
        })
        .unwrap_or_default();
    let mut buffer = BytesMut::new();
    let mut events = VecDeque::new();
    let mut offset = 0;
    let mut read = 0usize;
    while offset < stream.len() {
        // Read sizes from 1 byte up, cycling through the two chosen ones.
        let size = 1 + usize::from(sizes[read % 2]) * 37;
        let end = (offset + size).min(stream.len());
        buffer.extend_from_slice(&stream[offset..end]);
        offset = end;
        read += 1;
        take_messages(&mut buffer, wire, &mut events);
        while let Some(event) = events.pop_front() {
            fsm.event(event);
        }
        if fsm.state() != State::Established {
            // Torn down: the driver would drop the connection and what it holds.
            return;
        }
    }
});
