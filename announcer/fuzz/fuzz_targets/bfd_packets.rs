//! A BFD session fed arbitrary datagrams at arbitrary times, as a hostile host on the segment
//! could send them: the input is a sequence of (time step, length, bytes) records. The decoder
//! must never panic and must re-encode what it accepts exactly; the session must never panic,
//! must always have a detection deadline once past Down, and must never send a packet with
//! Poll and Final together or a zero discriminator.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use metallb_announcer::bfd::{
    packet::{ControlPacket, LEN, State},
    session::{BfdConfig, BfdSession, Output},
};

fn check(outputs: &[Output]) {
    for output in outputs {
        if let Output::Send(packet) = output {
            assert!(!(packet.poll && packet.final_), "Poll and Final together");
            assert_ne!(packet.my_discriminator, 0);
            ControlPacket::decode(&packet.encode()).expect("what we send decodes");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut now = start;
    let config = BfdConfig {
        desired_min_tx: Duration::from_millis(50),
        required_min_rx: Duration::from_millis(50),
        detect_mult: 3,
        passive: false,
    };
    let mut session = BfdSession::new(config, 0x1234_5678, now);
    let mut rest = data;
    // Bounded: each record consumes at least two bytes.
    while rest.len() >= 2 {
        let (step, length) = (rest[0], usize::from(rest[1]) % (2 * LEN + 1));
        rest = &rest[2..];
        let datagram = &rest[..length.min(rest.len())];
        rest = &rest[datagram.len()..];
        now += Duration::from_millis(u64::from(step) * 4);
        check(&session.on_timer(now));
        if let Ok(packet) = ControlPacket::decode(datagram) {
            let again = ControlPacket::decode(&packet.encode()).expect("re-decoding what we encoded");
            assert_eq!(again, packet);
            check(&session.receive(&packet, now));
        }
        if matches!(session.state(), State::Init | State::Up) {
            assert!(session.next_deadline().is_some(), "a session past Down always has a detection deadline");
        }
    }
});
