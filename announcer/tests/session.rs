//! The session driver against a scripted peer on loopback speaking the wire format: the table
//! goes out packed once Established, changes go out as differences, the hold timer is kept
//! (under a paused clock), and stopping sends a Cease.

use std::{collections::BTreeSet, net::Ipv4Addr, sync::Arc, time::Duration};

use bytes::BytesMut;
use ipnetwork::IpNetwork;
use metallb_announcer::bgp::{
    advertise::{RouteAttributes, Routes},
    fsm::{SessionConfig, State},
    packet::{
        Message, WireContext,
        attribute::{Attribute, Origin, Segment},
        capability::Capability,
        notification::Notification,
        open::Open,
        update::Update,
    },
    session::{PeerEndpoint, Session},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const PEER_AS: u32 = 64500;

fn config(hold_time: u16) -> SessionConfig {
    SessionConfig {
        local_asn: 64512,
        peer_asn: PEER_AS.into(),
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        hold_time,
        keepalive: None,
        connect_retry: Duration::from_millis(100),
        max_retry: Duration::from_secs(1),
        families: vec![(1, 1)],
        graceful_restart: Some(120),
        restarting: false,
    }
}

/// A peer that follows a script, using the project's codec.
struct ScriptedPeer {
    stream: TcpStream,
    buffer: BytesMut,
}

impl ScriptedPeer {
    async fn accept(listener: &TcpListener, hold_time: u16) -> Self {
        let (stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .unwrap()
            .unwrap();
        let mut peer = Self { stream, buffer: BytesMut::new() };
        let Message::Open(open) = peer.receive().await else { panic!("OPEN first") };
        assert!(open.capabilities.contains(&Capability::FourOctetAs(64512)));
        peer.send(Message::Open(Open {
            version: 4,
            my_as: PEER_AS as u16,
            hold_time,
            identifier: Ipv4Addr::new(192, 0, 2, 254),
            capabilities: vec![
                Capability::Multiprotocol((1, 1)),
                Capability::FourOctetAs(PEER_AS),
                Capability::RouteRefresh,
            ],
        }))
        .await;
        assert_eq!(peer.receive().await, Message::Keepalive);
        peer.send(Message::Keepalive).await;
        peer
    }

    async fn send(&mut self, message: Message) {
        let mut bytes = BytesMut::new();
        message.encode(WireContext::default(), &mut bytes);
        self.stream.write_all(&bytes).await.unwrap();
    }

    async fn receive(&mut self) -> Message {
        loop {
            if let Some(message) =
                Message::decode_frame(&mut self.buffer, WireContext::default()).unwrap()
            {
                return message;
            }
            let read = tokio::time::timeout(
                Duration::from_secs(600),
                self.stream.read_buf(&mut self.buffer),
            )
            .await
            .unwrap()
            .unwrap();
            assert!(read > 0, "the speaker closed the connection");
        }
    }

    /// Reads UPDATEs until End-of-RIB, skipping KEEPALIVEs: (announced, withdrawn, UPDATE count).
    async fn table(&mut self) -> (BTreeSet<IpNetwork>, usize) {
        let mut announced = BTreeSet::new();
        let mut count = 0;
        loop {
            match self.receive().await {
                Message::Update(update) if update.is_end_of_rib() => return (announced, count),
                Message::Update(update) => {
                    count += 1;
                    announced.extend(update.nlri);
                }
                Message::Keepalive => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    async fn next_update(&mut self) -> Update {
        loop {
            match self.receive().await {
                Message::Update(update) => return update,
                Message::Keepalive => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

fn routes(count: u32) -> Routes {
    (0..count)
        .map(|n| {
            (
                IpNetwork::new(Ipv4Addr::from(0xc612_0000 + n).into(), 32).unwrap(),
                std::sync::Arc::new(RouteAttributes::default()),
            )
        })
        .collect()
}

/// Where `listener` is, as a session's peer.
fn endpoint_of(listener: &TcpListener) -> PeerEndpoint {
    PeerEndpoint {
        address: listener.local_addr().unwrap(),
        source: None,
        password: None,
        ttl: None,
    }
}

async fn start(hold_time: u16, table: Routes) -> (Session, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    (Session::spawn(endpoint_of(&listener), config(hold_time), Arc::new(table).into()), listener)
}

#[tokio::test]
async fn the_table_goes_out_packed_then_only_differences() {
    let (session, listener) = start(90, routes(2000)).await;
    let mut peer = ScriptedPeer::accept(&listener, 90).await;
    let (announced, updates) = peer.table().await;
    assert_eq!(announced.len(), 2000);
    assert!(updates <= 4, "2000 equal routes in {updates} UPDATEs");

    let mut next = routes(2000);
    let removed = *next.keys().next().unwrap();
    next.remove(&removed);
    session.set_routes(Arc::new(next).into());
    let update = peer.next_update().await;
    assert_eq!(update.withdrawn, [removed]);
    assert!(update.nlri.is_empty(), "nothing else is resent");

    let mut status = session.watch_status();
    tokio::time::timeout(Duration::from_secs(5), status.wait_for(|s| s.prefixes_sent == 1999))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.status().state, State::Established);

    session.stop().await;
    assert!(matches!(
        peer.receive().await,
        Message::Notification(Notification { code: 6, subcode: 2, .. })
    ));
}

#[tokio::test]
async fn a_route_refresh_is_answered_with_the_table() {
    let (session, listener) = start(90, routes(3)).await;
    let mut peer = ScriptedPeer::accept(&listener, 90).await;
    peer.table().await;
    peer.send(Message::RouteRefresh { afi: 1, safi: 1 }).await;
    let update = peer.next_update().await;
    assert_eq!(update.nlri.len(), 3);
    session.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_detected_by_the_hold_timer_and_the_session_comes_back() {
    let (session, listener) = start(9, routes(1)).await;
    let mut peer = ScriptedPeer::accept(&listener, 9).await;
    peer.table().await;
    // The peer stops talking; the paused clock runs ahead to the hold timer.
    loop {
        match peer.receive().await {
            Message::Keepalive => {}
            Message::Notification(notification) => {
                assert_eq!((notification.code, notification.subcode), (4, 0), "Hold Timer Expired");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut status = session.watch_status();
    status.wait_for(|s| s.last_error.as_deref() == Some("hold timer expired")).await.unwrap();
    // It reconnects by itself after the backoff and sends the table again.
    let mut again = ScriptedPeer::accept(&listener, 9).await;
    assert_eq!(again.table().await.0.len(), 1);
    session.stop().await;
}

#[tokio::test]
async fn a_wrong_peer_as_gets_bad_peer_as() {
    let (session, listener) = start(90, routes(1)).await;
    let (stream, _) = listener.accept().await.unwrap();
    let mut peer = ScriptedPeer { stream, buffer: BytesMut::new() };
    peer.receive().await;
    peer.send(Message::Open(Open {
        version: 4,
        my_as: 65001,
        hold_time: 90,
        identifier: Ipv4Addr::new(192, 0, 2, 254),
        capabilities: vec![],
    }))
    .await;
    let Message::Notification(notification) = peer.receive().await else {
        panic!("NOTIFICATION expected")
    };
    assert_eq!((notification.code, notification.subcode), (2, 2));
    session.stop().await;
}

/// An UPDATE from the peer announcing `prefix`, valid or with an ORIGIN of 7 (RFC 7606:
/// treat-as-withdraw).
fn peer_update(prefix: &str, valid: bool) -> Message {
    let origin = if valid {
        Attribute::Origin(Origin::Igp)
    } else {
        Attribute::Unknown { flags: 0x40, code: 1, value: vec![7] }
    };
    Message::Update(Update {
        withdrawn: Vec::new(),
        attributes: vec![
            origin,
            Attribute::AsPath(vec![Segment::Sequence(vec![PEER_AS])]),
            Attribute::NextHop(Ipv4Addr::new(192, 0, 2, 254)),
        ],
        nlri: vec![prefix.parse().unwrap()],
    })
}

fn encoded(messages: &[Message]) -> Vec<u8> {
    let mut bytes = BytesMut::new();
    for message in messages {
        message.encode(WireContext::default(), &mut bytes);
    }
    bytes.to_vec()
}

#[tokio::test]
async fn a_treat_as_withdraw_update_keeps_the_stream_in_step() {
    let (session, listener) = start(90, routes(1)).await;
    let mut peer = ScriptedPeer::accept(&listener, 90).await;
    peer.table().await;
    let mut status = session.watch_status();

    // A faulty UPDATE and a valid one in the same segment: the valid one counts.
    let both = encoded(&[peer_update("10.0.1.0/24", false), peer_update("10.0.2.0/24", true)]);
    peer.stream.write_all(&both).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), status.wait_for(|s| s.prefixes_received == 1))
        .await
        .expect("the valid UPDATE after the faulty one was read")
        .unwrap();

    // A faulty UPDATE, then a valid one split across two segments: the stream stays in step.
    let split = encoded(&[peer_update("10.0.3.0/24", false), peer_update("10.0.4.0/24", true)]);
    let (first, second) = split.split_at(split.len() - 7);
    peer.stream.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    peer.stream.write_all(second).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), status.wait_for(|s| s.prefixes_received == 2))
        .await
        .expect("the split UPDATE was read")
        .unwrap();
    assert_eq!(session.status().state, State::Established, "{:?}", session.status());
    session.stop().await;
}

/// A listener whose accepted sockets have a small receive buffer, so that a peer that stops
/// reading pushes back on the speaker quickly.
fn small_window_listener() -> TcpListener {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    socket.listen(8).unwrap();
    socket.set_nonblocking(true).unwrap();
    TcpListener::from_std(socket.into()).unwrap()
}

/// Alternates the advertised table between two disjoint sets of `size` routes until `until`
/// holds of the status; the largest queue seen.
async fn churn_until(
    session: &Session,
    size: u32,
    until: impl Fn(&metallb_announcer::bgp::session::SessionStatus) -> bool,
) -> u64 {
    let mut largest_queue = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for round in 0.. {
        let status = session.status();
        largest_queue = largest_queue.max(status.queued_bytes);
        if until(&status) {
            return largest_queue;
        }
        assert!(tokio::time::Instant::now() < deadline, "not within 30 s: {status:?}");
        let offset = if round % 2 == 0 { 0 } else { size };
        let table: Routes = (offset..offset + size)
            .map(|n| {
                let prefix = IpNetwork::new(Ipv4Addr::from(0x0a00_0000 + n).into(), 32).unwrap();
                (prefix, Arc::new(RouteAttributes::default()))
            })
            .collect();
        session.set_routes(Arc::new(table).into());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!()
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_torn_down_by_the_send_hold_timer() {
    let listener = small_window_listener();
    let session = Session::spawn(endpoint_of(&listener), config(3), Arc::new(routes(1)).into());
    let mut peer = ScriptedPeer::accept(&listener, 3).await;
    peer.table().await;
    // From here the peer never reads again, but keeps its own side alive with KEEPALIVEs, so
    // only the speaker's send side can notice.
    let (_, mut writer) = peer.stream.into_split();
    let keepalives = tokio::spawn(async move {
        let mut bytes = BytesMut::new();
        Message::Keepalive.encode(WireContext::default(), &mut bytes);
        while writer.write_all(&bytes).await.is_ok() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let stalled_at = tokio::time::Instant::now();
    let largest_queue = churn_until(&session, 20_000, |status| {
        status.last_error.as_deref().is_some_and(|error| error.contains("send hold timer expired"))
    })
    .await;
    assert!(
        stalled_at.elapsed() < Duration::from_secs(20),
        "torn down only after {:?}",
        stalled_at.elapsed()
    );
    assert!(
        largest_queue <= 2 * 1024 * 1024,
        "{largest_queue} bytes queued for a peer that reads nothing"
    );
    assert_eq!(session.status().flaps_total, 1, "an established session lost is a flap");
    keepalives.abort();
    session.stop().await;
}

#[tokio::test]
async fn stopping_a_session_stalled_by_its_peer_is_prompt() {
    let listener = small_window_listener();
    let session = Session::spawn(endpoint_of(&listener), config(90), Arc::new(routes(1)).into());
    let mut peer = ScriptedPeer::accept(&listener, 90).await;
    peer.table().await;
    // The peer stops reading; the speaker's queue fills and stays full.
    churn_until(&session, 20_000, |status| status.queued_bytes > 64 * 1024).await;
    let stopping = std::time::Instant::now();
    session.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(1), "stop took {:?}", stopping.elapsed());
    drop(peer);
}

#[tokio::test]
async fn a_refused_peer_is_retried_with_growing_pauses_and_the_reason_on_record() {
    // A port nobody listens on: every attempt is refused.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let endpoint = PeerEndpoint { address, source: None, password: None, ttl: None };
    let session = Session::spawn(endpoint, config(90), Arc::new(routes(1)).into());
    let mut status = session.watch_status();
    let failed =
        tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| s.failures_total >= 3))
            .await
            .expect("three failures within 10 s")
            .unwrap()
            .clone();
    assert_eq!(failed.flaps_total, 0, "never established, so never a flap");
    let error = failed.last_error.expect("the reason is on record");
    assert!(error.contains("refused"), "{error}");
    session.stop().await;

    // A peer that accepts and closes at once: the pauses between attempts grow (100 ms up to
    // 1 s here), they do not repeat at a fixed rate.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let session = Session::spawn(endpoint_of(&listener), config(90), Arc::new(routes(1)).into());
    let mut accepted = Vec::new();
    for _ in 0..6 {
        let (stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .unwrap()
            .unwrap();
        accepted.push(tokio::time::Instant::now());
        drop(stream);
    }
    let gaps: Vec<Duration> = accepted.windows(2).map(|pair| pair[1] - pair[0]).collect();
    assert!(gaps[4] > gaps[0] * 2, "pauses did not grow: {gaps:?}");
    assert!(session.status().failures_total >= 5, "{:?}", session.status());
    session.stop().await;
}

#[tokio::test]
async fn only_the_families_the_peer_negotiated_are_advertised() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dual = SessionConfig { families: vec![(1, 1), (2, 1)], ..config(90) };
    let session = Session::spawn(endpoint_of(&listener), dual, Arc::new(routes(3)).into());
    let (stream, _) = listener.accept().await.unwrap();
    let mut peer = ScriptedPeer { stream, buffer: BytesMut::new() };
    let Message::Open(_) = peer.receive().await else { panic!("OPEN first") };
    // The peer supports IPv6 unicast only.
    peer.send(Message::Open(Open {
        version: 4,
        my_as: PEER_AS as u16,
        hold_time: 90,
        identifier: Ipv4Addr::new(192, 0, 2, 254),
        capabilities: vec![Capability::Multiprotocol((2, 1)), Capability::FourOctetAs(PEER_AS)],
    }))
    .await;
    assert_eq!(peer.receive().await, Message::Keepalive);
    peer.send(Message::Keepalive).await;
    // The first UPDATE is the IPv6 End-of-RIB: no IPv4 route went out.
    let update = peer.next_update().await;
    assert!(update.nlri.is_empty() && update.is_end_of_rib(), "{update:?}");
    assert!(update.attributes.iter().any(|a| matches!(a, Attribute::MpUnreach { afi: 2, .. })));
    let mut status = session.watch_status();
    let status = tokio::time::timeout(
        Duration::from_secs(5),
        status.wait_for(|s| s.state == State::Established && s.prefixes_pending == 3),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    assert_eq!(status.prefixes_sent, 0);
    let reason = status.pending_reason.unwrap();
    assert!(reason.contains("IPv4 unicast not negotiated"), "{reason}");
    session.stop().await;
}
