//! Two sessions talking over a simulated link, stepped through time.

use super::*;

fn config() -> BfdConfig {
    BfdConfig {
        desired_min_tx: Duration::from_millis(100),
        required_min_rx: Duration::from_millis(100),
        detect_mult: 3,
        passive: false,
    }
}

/// Two sessions and a link between them that can be cut.
struct Link {
    a: BfdSession,
    b: BfdSession,
    now: Instant,
    cut: bool,
    changes: Vec<(char, State, Diagnostic)>,
    /// Packets A sent, in order.
    sent_by_a: Vec<ControlPacket>,
}

impl Link {
    fn new(a: BfdConfig, b: BfdConfig) -> Self {
        let now = Instant::now();
        Self {
            a: BfdSession::new(a, 1, now),
            b: BfdSession::new(b, 2, now),
            now,
            cut: false,
            changes: Vec::new(),
            sent_by_a: Vec::new(),
        }
    }

    /// Delivers `outputs` of `from` to the other side (unless the link is cut), recursively.
    fn deliver(&mut self, from: char, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Changed(state, diagnostic) => self.changes.push((from, state, diagnostic)),
                Output::Send(packet) => {
                    if from == 'a' {
                        self.sent_by_a.push(packet.clone());
                    }
                    if self.cut {
                        continue;
                    }
                    let bytes = packet.encode();
                    let packet = ControlPacket::decode(&bytes).unwrap();
                    let (to, name) =
                        if from == 'a' { (&mut self.b, 'b') } else { (&mut self.a, 'a') };
                    let answer = to.receive(&packet, self.now);
                    self.deliver(name, answer);
                }
            }
        }
    }

    /// Runs both sessions' timers up to `until`, in 1 ms steps.
    fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        while self.now < until {
            self.now += Duration::from_millis(1);
            let outputs = self.a.on_timer(self.now);
            self.deliver('a', outputs);
            let outputs = self.b.on_timer(self.now);
            self.deliver('b', outputs);
        }
    }
}

#[test]
fn two_sessions_come_up_through_down_init_up() {
    let mut link = Link::new(config(), config());
    link.run_for(Duration::from_millis(50));
    assert_eq!((link.a.state(), link.b.state()), (State::Up, State::Up));
    // Each side passes through Init (it heard Down) or goes straight to Up (it heard Init),
    // and never leaves Up.
    for side in ['a', 'b'] {
        let changes: Vec<State> =
            link.changes.iter().filter(|(who, ..)| *who == side).map(|(_, s, _)| *s).collect();
        assert!(
            changes == [State::Init, State::Up] || changes == [State::Up],
            "{side}: {changes:?}"
        );
    }
    // Up, the configured 100 ms interval is in effect, announced with a Poll answered by a Final.
    link.run_for(Duration::from_secs(2));
    assert!(link.sent_by_a.iter().any(|p| p.poll), "a Poll sequence on entering Up");
    assert!(!link.a.polling, "the Poll was answered with a Final");
    let last = link.sent_by_a.last().unwrap();
    assert_eq!(last.desired_min_tx, Duration::from_millis(100));
    assert!(link.sent_by_a.iter().all(|p| !(p.poll && p.final_)), "never Poll and Final at once");
}

#[test]
fn packets_go_at_most_once_a_second_until_up() {
    // B never answers: A stays Down and sends once a second at most (75% jitter floor).
    let mut link = Link::new(config(), config());
    link.cut = true;
    link.run_for(Duration::from_secs(5));
    assert_eq!(link.a.state(), State::Down);
    let sent = link.sent_by_a.len();
    assert!((5..=8).contains(&sent), "{sent} packets in 5 s while Down");
}

#[test]
fn a_cut_link_is_detected_within_the_detection_time() {
    let mut link = Link::new(config(), config());
    link.run_for(Duration::from_secs(2));
    assert_eq!(link.a.state(), State::Up);
    assert_eq!(link.a.detection_time(), Duration::from_millis(300));
    link.cut = true;
    let cut_at = link.now;
    let mut down_after = None;
    for _ in 0..1000 {
        link.run_for(Duration::from_millis(1));
        if link.a.state() == State::Down {
            down_after = Some(link.now - cut_at);
            break;
        }
    }
    let down_after = down_after.expect("detected within a second");
    assert!(down_after <= Duration::from_millis(300), "{down_after:?}");
    assert_eq!(link.a.diagnostic(), Diagnostic::DetectionTimeExpired);
}

#[test]
fn the_peer_signalling_down_takes_the_session_down() {
    let mut link = Link::new(config(), config());
    link.run_for(Duration::from_secs(1));
    let now = link.now;
    let outputs = link.b.admin_down(now);
    link.deliver('b', outputs);
    assert_eq!(link.a.state(), State::Down);
    assert_eq!(link.a.diagnostic(), Diagnostic::NeighborSignaledDown);
    assert_eq!(link.b.state(), State::AdminDown);
}

#[test]
fn packets_for_another_session_or_not_knowing_us_while_up_are_discarded() {
    let now = Instant::now();
    let mut session = BfdSession::new(config(), 1, now);
    let mut packet = ControlPacket {
        diagnostic: Diagnostic::None,
        state: State::Up,
        poll: false,
        final_: false,
        detect_mult: 3,
        my_discriminator: 9,
        your_discriminator: 0,
        desired_min_tx: Duration::from_millis(100),
        required_min_rx: Duration::from_millis(100),
        required_min_echo_rx: Duration::ZERO,
    };
    assert!(session.receive(&packet, now).is_empty(), "Up without knowing us");
    packet.your_discriminator = 5;
    assert!(session.receive(&packet, now).is_empty(), "for another session");
    packet.your_discriminator = 1;
    packet.state = State::Init;
    assert_eq!(session.receive(&packet, now), [Output::Changed(State::Up, Diagnostic::None)]);
}

#[test]
fn a_passive_session_waits_for_its_peer() {
    let passive = BfdConfig { passive: true, ..config() };
    let mut link = Link::new(passive, config());
    link.cut = true;
    link.run_for(Duration::from_secs(3));
    assert!(link.sent_by_a.is_empty(), "a passive session speaks only when spoken to");
    link.cut = false;
    link.run_for(Duration::from_secs(2));
    assert_eq!((link.a.state(), link.b.state()), (State::Up, State::Up));
}
