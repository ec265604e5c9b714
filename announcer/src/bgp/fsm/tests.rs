//! The state machine driven by events alone.

use std::{net::Ipv4Addr, time::Duration};

use super::*;
use crate::bgp::packet::{capability::Capability, notification::Notification};

fn config(local_asn: u32, peer_asn: u32) -> SessionConfig {
    SessionConfig {
        local_asn,
        peer_asn: peer_asn.into(),
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        hold_time: 90,
        keepalive: None,
        connect_retry: Duration::from_secs(1),
        max_retry: Duration::from_secs(30),
        families: vec![(1, 1), (2, 1)],
        graceful_restart: None,
        restarting: false,
    }
}

fn peer_open(asn: u32, hold_time: u16, four_octet: bool) -> Open {
    let mut capabilities = vec![Capability::Multiprotocol((1, 1)), Capability::RouteRefresh];
    if four_octet {
        capabilities.push(Capability::FourOctetAs(asn));
    }
    Open {
        version: 4,
        my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
        hold_time,
        identifier: Ipv4Addr::new(192, 0, 2, 254),
        capabilities,
    }
}

fn sent(actions: &[Action]) -> Vec<&Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn notification(actions: &[Action]) -> Option<(u8, u8)> {
    sent(actions).into_iter().find_map(|m| match m {
        Message::Notification(Notification { code, subcode, .. }) => Some((*code, *subcode)),
        _ => None,
    })
}

/// Drives a session to Established.
fn established(fsm: &mut Fsm, open: Open) -> Negotiated {
    fsm.event(Event::Start);
    fsm.event(Event::TcpConnected);
    fsm.event(Event::Message(Message::Open(open)));
    let actions = fsm.event(Event::Message(Message::Keepalive));
    assert_eq!(fsm.state(), State::Established);
    actions
        .into_iter()
        .find_map(|a| match a {
            Action::Up(negotiated) => Some(negotiated),
            _ => None,
        })
        .expect("Up")
}

#[test]
fn a_session_comes_up_through_every_state() {
    let mut fsm = Fsm::new(config(64512, 64500));
    let actions = fsm.event(Event::Start);
    assert_eq!(fsm.state(), State::Connect);
    assert!(actions.contains(&Action::Connect));
    let actions = fsm.event(Event::TcpConnected);
    assert_eq!(fsm.state(), State::OpenSent);
    let Message::Open(open) = sent(&actions)[0] else { panic!("OPEN first") };
    assert_eq!((open.my_as, open.hold_time), (64512, 90));
    assert!(open.capabilities.contains(&Capability::FourOctetAs(64512)));
    let actions = fsm.event(Event::Message(Message::Open(peer_open(64500, 30, true))));
    assert_eq!(fsm.state(), State::OpenConfirm);
    assert_eq!(sent(&actions), [&Message::Keepalive]);
    assert!(
        actions.contains(&Action::StartTimer(Timer::Hold, Duration::from_secs(30))),
        "the lower hold time wins"
    );
    assert!(actions.contains(&Action::StartTimer(Timer::Keepalive, Duration::from_secs(10))));
    let actions = fsm.event(Event::Message(Message::Keepalive));
    assert_eq!(fsm.state(), State::Established);
    let Some(Action::Up(negotiated)) = actions.iter().find(|a| matches!(a, Action::Up(_))) else {
        panic!()
    };
    assert_eq!(negotiated.families, [(1, 1)], "only what both support");
    assert!(negotiated.route_refresh && !negotiated.internal);
}

#[test]
fn a_four_octet_as_is_sent_as_as_trans_and_two_octet_peers_get_two_octet_paths() {
    let mut fsm = Fsm::new(config(4_200_000_000, 64500));
    assert_eq!(fsm.open().my_as, AS_TRANS);
    let negotiated = established(&mut fsm, peer_open(64500, 90, false));
    assert_eq!(negotiated.as_width, AsWidth::Two);
    let mut fsm = Fsm::new(config(64512, 4_200_000_001));
    assert_eq!(established(&mut fsm, peer_open(4_200_000_001, 90, true)).as_width, AsWidth::Four);
}

#[test]
fn a_wrong_peer_as_gets_bad_peer_as_and_a_restart_with_backoff() {
    let mut fsm = Fsm::new(config(64512, 64500));
    fsm.event(Event::Start);
    fsm.event(Event::TcpConnected);
    let actions = fsm.event(Event::Message(Message::Open(peer_open(64999, 90, true))));
    assert_eq!(notification(&actions), Some((2, 2)));
    assert!(actions.contains(&Action::Disconnect));
    assert_eq!(fsm.state(), State::Idle);
    assert!(retry_delay(&actions).is_some_and(|delay| delay <= Duration::from_secs(1)));
    assert!(fsm.last_error().unwrap().contains("64999"));
    let actions = fsm.event(Event::TimerExpired(Timer::ConnectRetry));
    assert_eq!(fsm.state(), State::Connect);
    assert!(actions.contains(&Action::Connect));
}

#[test]
fn ibgp_with_our_own_identifier_is_rejected() {
    let mut fsm = Fsm::new(config(64512, 64512));
    fsm.event(Event::Start);
    fsm.event(Event::TcpConnected);
    let mut open = peer_open(64512, 90, true);
    open.identifier = Ipv4Addr::new(192, 0, 2, 1);
    assert_eq!(notification(&fsm.event(Event::Message(Message::Open(open)))), Some((2, 3)));
}

#[test]
fn keepalives_reset_the_hold_timer_and_its_expiry_ends_the_session() {
    let mut fsm = Fsm::new(config(64512, 64500));
    established(&mut fsm, peer_open(64500, 9, true));
    assert_eq!(
        fsm.event(Event::Message(Message::Keepalive)),
        [Action::StartTimer(Timer::Hold, Duration::from_secs(9))]
    );
    let actions = fsm.event(Event::TimerExpired(Timer::Keepalive));
    assert_eq!(sent(&actions), [&Message::Keepalive]);
    let actions = fsm.event(Event::TimerExpired(Timer::Hold));
    assert_eq!(notification(&actions), Some((4, 0)));
    assert_eq!(fsm.state(), State::Idle);
    assert!(
        actions.iter().any(|a| matches!(a, Action::Down(reason) if reason.contains("hold timer")))
    );
}

#[test]
fn hold_time_zero_means_no_timers() {
    let mut fsm = Fsm::new(SessionConfig { hold_time: 0, ..config(64512, 64500) });
    fsm.event(Event::Start);
    fsm.event(Event::TcpConnected);
    let actions = fsm.event(Event::Message(Message::Open(peer_open(64500, 90, true))));
    assert!(actions.contains(&Action::StopTimer(Timer::Hold)));
    assert!(actions.contains(&Action::StopTimer(Timer::Keepalive)));
}

#[test]
fn a_notification_from_the_peer_ends_the_session_without_a_reply() {
    let mut fsm = Fsm::new(config(64512, 64500));
    established(&mut fsm, peer_open(64500, 90, true));
    let cease = Notification { code: 6, subcode: 2, data: vec![] };
    let actions = fsm.event(Event::Message(Message::Notification(cease)));
    assert_eq!(notification(&actions), None);
    assert_eq!(fsm.state(), State::Idle);
    assert!(fsm.last_error().unwrap().contains("Cease"));
}

#[test]
fn updates_and_route_refresh_are_acted_on() {
    let mut fsm = Fsm::new(config(64512, 64500));
    established(&mut fsm, peer_open(64500, 90, true));
    let actions = fsm.event(Event::Message(Message::Update(Update::default())));
    assert!(actions.contains(&Action::Received(Update::default())));
    let actions = fsm.event(Event::Message(Message::RouteRefresh { afi: 1, safi: 1 }));
    assert!(actions.contains(&Action::ResendTable((1, 1))));
    // A family that was not negotiated is ignored.
    assert!(
        !fsm.event(Event::Message(Message::RouteRefresh { afi: 2, safi: 1 }))
            .iter()
            .any(|a| matches!(a, Action::ResendTable(_)))
    );
}

#[test]
fn unexpected_messages_get_fsm_errors_naming_the_state() {
    let mut fsm = Fsm::new(config(64512, 64500));
    fsm.event(Event::Start);
    fsm.event(Event::TcpConnected);
    assert_eq!(notification(&fsm.event(Event::Message(Message::Keepalive))), Some((5, 1)));
    let mut fsm = Fsm::new(config(64512, 64500));
    established(&mut fsm, peer_open(64500, 90, true));
    assert_eq!(
        notification(&fsm.event(Event::Message(Message::Open(peer_open(64500, 90, true))))),
        Some((5, 3))
    );
}

#[test]
fn malformed_input_gets_its_notification_but_rfc7606_keeps_the_session_for_attribute_errors() {
    use crate::bgp::packet::{HeaderError, UpdateError};
    let mut fsm = Fsm::new(config(64512, 64500));
    established(&mut fsm, peer_open(64500, 90, true));
    let actions =
        fsm.event(Event::DecodeError(DecodeError::Update(UpdateError::InvalidOrigin(vec![
            0x40, 1, 1, 5,
        ]))));
    assert_eq!(notification(&actions), None);
    assert_eq!(fsm.state(), State::Established);
    let actions =
        fsm.event(Event::DecodeError(DecodeError::Header(HeaderError::BadMessageType(9))));
    assert_eq!(notification(&actions), Some((1, 3)));
    assert_eq!(fsm.state(), State::Idle);
}

/// The pause the actions start before the next attempt.
fn retry_delay(actions: &[Action]) -> Option<Duration> {
    actions.iter().find_map(|action| match action {
        Action::StartTimer(Timer::ConnectRetry, delay) => Some(*delay),
        _ => None,
    })
}

#[test]
fn restarts_back_off_exponentially_with_jitter_up_to_the_cap() {
    let mut fsm = Fsm::new(config(64512, 64500));
    fsm.event(Event::Start);
    for ceiling in [1, 2, 4, 8, 16, 30, 30] {
        let actions = fsm.event(Event::TcpConnectFailed("refused".into()));
        let delay = retry_delay(&actions).unwrap();
        let ceiling = Duration::from_secs(ceiling);
        assert!(delay <= ceiling && delay >= ceiling / 2, "{delay:?} for a ceiling of {ceiling:?}");
        fsm.event(Event::TimerExpired(Timer::ConnectRetry));
    }
    assert_eq!(fsm.failures(), 7);
    // A session that comes up resets the backoff.
    established(&mut fsm, peer_open(64500, 90, true));
    let actions = fsm.event(Event::TcpClosed("reset".into()));
    assert!(retry_delay(&actions).unwrap() <= Duration::from_secs(1));
}

#[test]
fn an_attempt_without_any_answer_is_a_failure_with_its_reason() {
    let mut fsm = Fsm::new(config(64512, 64500));
    let actions = fsm.event(Event::Start);
    assert!(actions.contains(&Action::Connect));
    // SYNs lost: the attempt's own deadline passes with no answer at all.
    let actions = fsm.event(Event::TimerExpired(Timer::ConnectRetry));
    assert!(actions.contains(&Action::Disconnect));
    assert!(!actions.contains(&Action::Connect), "not retried at once");
    assert!(retry_delay(&actions).is_some());
    assert_eq!(fsm.state(), State::Active);
    assert_eq!(fsm.failures(), 1);
    assert!(fsm.last_error().unwrap().contains("no answer"), "{:?}", fsm.last_error());
    // The next attempt after the pause, and the next failure waits longer.
    assert!(fsm.event(Event::TimerExpired(Timer::ConnectRetry)).contains(&Action::Connect));
    let actions = fsm.event(Event::TimerExpired(Timer::ConnectRetry));
    assert!(retry_delay(&actions).unwrap() >= Duration::from_secs(1));
    assert_eq!(fsm.failures(), 2);
}

#[test]
fn stop_sends_cease_and_does_not_restart() {
    let mut fsm = Fsm::new(config(64512, 64500));
    established(&mut fsm, peer_open(64500, 90, true));
    let actions = fsm.event(Event::Stop);
    assert_eq!(notification(&actions), Some((6, 2)));
    assert!(actions.contains(&Action::StopTimer(Timer::ConnectRetry)));
    assert_eq!(fsm.state(), State::Idle);
}

#[test]
fn a_dynamic_peer_as_accepts_only_its_kind() {
    for (peer_as, open_as, accepted, internal) in [
        (PeerAs::Internal, 64512, true, true),
        (PeerAs::Internal, 64500, false, false),
        (PeerAs::External, 64500, true, false),
        (PeerAs::External, 64512, false, false),
    ] {
        let mut fsm = Fsm::new(SessionConfig { peer_asn: peer_as, ..config(64512, 0) });
        fsm.event(Event::Start);
        fsm.event(Event::TcpConnected);
        let actions = fsm.event(Event::Message(Message::Open(peer_open(open_as, 90, true))));
        if accepted {
            assert_eq!(fsm.state(), State::OpenConfirm, "{peer_as:?} AS {open_as}");
            let up = fsm.event(Event::Message(Message::Keepalive));
            let negotiated = up.iter().find_map(|a| match a {
                Action::Up(negotiated) => Some(negotiated.clone()),
                _ => None,
            });
            assert_eq!(negotiated.expect("Up").internal, internal);
        } else {
            assert_eq!(
                notification(&actions),
                Some((2, 2)),
                "{peer_as:?} AS {open_as}: Bad Peer AS"
            );
        }
    }
}

#[test]
fn bfd_down_ends_the_session_with_cease_bfd_down_and_a_retry() {
    let mut fsm = Fsm::new(config(64512, 64500));
    established(&mut fsm, peer_open(64500, 90, true));
    let actions = fsm.event(Event::BfdDown("control detection time expired".into()));
    assert_eq!(notification(&actions), Some((6, 10)), "Cease, BFD Down (RFC 9384)");
    assert_eq!(fsm.state(), State::Idle);
    assert!(retry_delay(&actions).is_some(), "retried: the path may come back");
    assert_eq!(fsm.last_error(), Some("BFD session down: control detection time expired"));
    // Before a connection there is no session to drop.
    let mut connecting = Fsm::new(config(64512, 64500));
    connecting.event(Event::Start);
    assert!(connecting.event(Event::BfdDown("x".into())).is_empty());
    assert_eq!(connecting.state(), State::Connect);
}

#[test]
fn graceful_restart_is_advertised_when_configured() {
    let fsm = Fsm::new(SessionConfig {
        graceful_restart: Some(120),
        restarting: true,
        ..config(64512, 64500)
    });
    let open = fsm.open();
    assert!(open.capabilities.iter().any(|c| matches!(
        c,
        Capability::GracefulRestart { restarting: true, restart_time: 120, .. }
    )));
}
