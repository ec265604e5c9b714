//! Arbitrary bytes into the message decoder, in both AS-width contexts: it must never panic,
//! and whatever it accepts must encode and decode back to the same message.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use metallb_announcer::bgp::packet::{EXTENDED_MAX_LEN, Message, WireContext, attribute::AsWidth};

fuzz_target!(|data: &[u8]| {
    for context in [
        WireContext::default(),
        WireContext { as_width: AsWidth::Two, max_len: EXTENDED_MAX_LEN },
    ] {
        let mut buffer = BytesMut::from(data);
        // Bounded: each round consumes a whole frame or stops.
        for _ in 0..64 {
            match Message::decode_frame(&mut buffer, context) {
                Ok(Some(message)) => {
                    let mut encoded = BytesMut::new();
                    message.encode(context, &mut encoded);
                    let again = Message::decode_frame(&mut encoded, context).expect("re-decoding what we encoded");
                    assert_eq!(again.as_ref(), Some(&message));
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
});
