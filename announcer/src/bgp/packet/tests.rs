//! (bytes, message) fixtures checked both ways, and a table of malformed inputs with the
//! NOTIFICATION each must produce.

use std::net::Ipv4Addr;

use bytes::BytesMut;

use super::{
    DecodeError, Message, WireContext,
    attribute::{AsWidth, Attribute, Origin, Segment},
    capability::Capability,
    notification::Notification,
    open::Open,
    update::Update,
};

fn hex(text: &str) -> Vec<u8> {
    let digits: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

const MARKER: &str = "ffffffffffffffffffffffffffffffff";

fn four_octet() -> WireContext {
    WireContext::default()
}

fn check_both_ways(bytes: &[u8], message: &Message, context: WireContext) {
    let mut encoded = BytesMut::new();
    message.encode(context, &mut encoded);
    assert_eq!(encoded.as_ref(), bytes, "encoding {message:?}");
    let mut buffer = BytesMut::from(bytes);
    let decoded = Message::decode_frame(&mut buffer, context).unwrap().expect("a whole message");
    assert_eq!(&decoded, message);
    assert!(buffer.is_empty());
}

#[test]
fn keepalive() {
    check_both_ways(&hex(&format!("{MARKER} 0013 04")), &Message::Keepalive, four_octet());
}

#[test]
fn open_with_multiprotocol_route_refresh_and_four_octet_as() {
    let bytes = hex(&format!(
        "{MARKER} 002d 01  04 fc00 005a c0000201  10 02 0e  01 04 0001 00 01  02 00  41 04 0000fc00"
    ));
    let open = Open {
        version: 4,
        my_as: 64512,
        hold_time: 90,
        identifier: Ipv4Addr::new(192, 0, 2, 1),
        capabilities: vec![
            Capability::Multiprotocol((1, 1)),
            Capability::RouteRefresh,
            Capability::FourOctetAs(64512),
        ],
    };
    check_both_ways(&bytes, &Message::Open(open.clone()), four_octet());
    assert_eq!(open.asn(), 64512);
}

#[test]
fn open_with_graceful_restart_and_a_four_octet_as_behind_as_trans() {
    let bytes = hex(&format!(
        "{MARKER} 002d 01  04 5ba0 00f0 c0000202  10 02 0e  40 06 0078 0001 01 80  41 04 00030d40"
    ));
    let open = Open {
        version: 4,
        my_as: 23456,
        hold_time: 240,
        identifier: Ipv4Addr::new(192, 0, 2, 2),
        capabilities: vec![
            Capability::GracefulRestart {
                restarting: false,
                restart_time: 120,
                families: vec![((1, 1), true)],
            },
            Capability::FourOctetAs(200_000),
        ],
    };
    check_both_ways(&bytes, &Message::Open(open.clone()), four_octet());
    assert_eq!(open.asn(), 200_000);
}

fn ipv4_update() -> Update {
    Update {
        withdrawn: vec![],
        attributes: vec![
            Attribute::Origin(Origin::Igp),
            Attribute::AsPath(vec![Segment::Sequence(vec![64512])]),
            Attribute::NextHop(Ipv4Addr::new(192, 0, 2, 10)),
            Attribute::LocalPref(100),
            Attribute::Communities(vec![0xffff_ff01]),
        ],
        nlri: vec!["198.51.100.7/32".parse().unwrap(), "198.51.100.8/32".parse().unwrap()],
    }
}

#[test]
fn ipv4_update_with_four_octet_as_path() {
    let bytes = hex(&format!(
        "{MARKER} 0043 02  0000  0022  40 01 01 00  40 02 06 02 01 0000fc00  40 03 04 c000020a  \
         40 05 04 00000064  c0 08 04 ffffff01  20 c6336407  20 c6336408"
    ));
    check_both_ways(&bytes, &Message::Update(ipv4_update()), four_octet());
}

#[test]
fn ipv4_update_to_a_two_octet_peer_writes_as_trans() {
    let mut update = ipv4_update();
    update.attributes[1] = Attribute::AsPath(vec![Segment::Sequence(vec![200_000])]);
    update.attributes.push(Attribute::As4Path(vec![Segment::Sequence(vec![200_000])]));
    let context = WireContext { as_width: AsWidth::Two, ..WireContext::default() };
    let mut encoded = BytesMut::new();
    Message::Update(update).encode(context, &mut encoded);
    let as_path = hex("40 02 04 02 01 5ba0");
    let as4_path = hex("c0 11 06 02 01 00030d40");
    assert!(encoded.windows(as_path.len()).any(|w| w == as_path.as_slice()), "AS_TRANS in AS_PATH");
    assert!(
        encoded.windows(as4_path.len()).any(|w| w == as4_path.as_slice()),
        "the real AS in AS4_PATH"
    );
}

#[test]
fn ipv6_update_with_mp_reach_and_large_communities() {
    let bytes = hex(&format!(
        "{MARKER} 005c 02  0000  0045  40 01 01 00  40 02 06 02 01 0000fc00  \
         80 0e 26 0002 01 10 20010db8000000000000000000000001 00 80 20010db800000000000000000000000a \
         c0 20 0c 0000fc00 00000001 00000002"
    ));
    let update = Update {
        withdrawn: vec![],
        attributes: vec![
            Attribute::Origin(Origin::Igp),
            Attribute::AsPath(vec![Segment::Sequence(vec![64512])]),
            Attribute::MpReach {
                afi: 2,
                safi: 1,
                next_hops: vec!["2001:db8::1".parse().unwrap()],
                nlri: vec!["2001:db8::a/128".parse().unwrap()],
            },
            Attribute::LargeCommunities(vec![(64512, 1, 2)]),
        ],
        nlri: vec![],
    };
    check_both_ways(&bytes, &Message::Update(update), four_octet());
}

#[test]
fn withdrawals_and_end_of_rib() {
    let withdraw =
        Update { withdrawn: vec!["198.51.100.7/32".parse().unwrap()], ..Update::default() };
    check_both_ways(
        &hex(&format!("{MARKER} 001c 02 0005 20c6336407 0000")),
        &Message::Update(withdraw),
        four_octet(),
    );
    let end_of_rib = Update::default();
    assert!(end_of_rib.is_end_of_rib());
    check_both_ways(
        &hex(&format!("{MARKER} 0017 02 0000 0000")),
        &Message::Update(end_of_rib),
        four_octet(),
    );
    let v6_end = Update {
        attributes: vec![Attribute::MpUnreach { afi: 2, safi: 1, withdrawn: vec![] }],
        ..Update::default()
    };
    assert!(v6_end.is_end_of_rib());
}

#[test]
fn notification_and_route_refresh() {
    let cease = Notification { code: 6, subcode: 2, data: vec![] };
    check_both_ways(
        &hex(&format!("{MARKER} 0015 03 06 02")),
        &Message::Notification(cease.clone()),
        four_octet(),
    );
    assert_eq!(cease.to_string(), "Cease (code 6, subcode 2)");
    check_both_ways(
        &hex(&format!("{MARKER} 0017 05 0001 00 01")),
        &Message::RouteRefresh { afi: 1, safi: 1 },
        four_octet(),
    );
}

#[test]
fn a_partial_frame_waits_for_more_bytes() {
    let bytes = hex(&format!("{MARKER} 0013 04"));
    let mut buffer = BytesMut::from(&bytes[..10]);
    assert_eq!(Message::decode_frame(&mut buffer, four_octet()).unwrap(), None);
    buffer.extend_from_slice(&bytes[10..]);
    buffer.extend_from_slice(&bytes);
    assert_eq!(Message::decode_frame(&mut buffer, four_octet()).unwrap(), Some(Message::Keepalive));
    assert_eq!(Message::decode_frame(&mut buffer, four_octet()).unwrap(), Some(Message::Keepalive));
}

/// Malformed input and the (code, subcode) of the NOTIFICATION it must produce; `None` for
/// no NOTIFICATION at all.
/// (code, subcode) of a NOTIFICATION.
type Expected = Option<(u8, u8)>;

const MALFORMED: &[(&str, &str, Expected)] = &[
    ("bad marker", "fffffffffffffffffffffffffffffff0 0013 04", Some((1, 1))),
    ("length below the header", "{M} 0012 04", Some((1, 2))),
    ("KEEPALIVE with a body", "{M} 0014 04 00", Some((1, 2))),
    ("UPDATE longer than 4096", "{M} 1001 02", Some((1, 2))),
    ("unknown type", "{M} 0013 09", Some((1, 3))),
    ("OPEN version 3", "{M} 001d 01 03 fc00 005a c0000201 00", Some((2, 1))),
    ("OPEN hold time 2", "{M} 001d 01 04 fc00 0002 c0000201 00", Some((2, 6))),
    ("OPEN hold time 1", "{M} 001d 01 04 fc00 0001 c0000201 00", Some((2, 6))),
    ("OPEN identifier 0", "{M} 001d 01 04 fc00 005a 00000000 00", Some((2, 3))),
    (
        "OPEN unknown optional parameter",
        "{M} 0021 01 04 fc00 005a c0000201 04 01 02 0000",
        Some((2, 4)),
    ),
    ("OPEN parameters overrun", "{M} 001f 01 04 fc00 005a c0000201 05 02 00", Some((2, 0))),
    ("UPDATE withdrawn length overruns", "{M} 0017 02 0010 0000", Some((3, 1))),
    ("UPDATE attribute overruns the list", "{M} 001b 02 0000 0004 40 01 05 00", Some((3, 1))),
    (
        "UPDATE MP_UNREACH_NLRI twice",
        "{M} 0023 02 0000 000c 80 0f 03 0002 01 80 0f 03 0002 01",
        Some((3, 1)),
    ),
    (
        "UPDATE MP_REACH_NLRI IPv6 with a 5-byte next hop",
        "{M} 0024 02 0000 000d 80 0e 0a 0002 01 05 2001db8000 00",
        Some((3, 9)),
    ),
    ("UPDATE ORIGIN 5", "{M} 001b 02 0000 0004 40 01 01 05", Some((3, 6))),
    ("UPDATE ORIGIN marked optional", "{M} 001b 02 0000 0004 c0 01 01 00", Some((3, 4))),
    ("UPDATE NEXT_HOP of 3 bytes", "{M} 001d 02 0000 0006 40 03 03 c00002", Some((3, 5))),
    (
        "UPDATE AS_PATH segment type 7",
        "{M} 0020 02 0000 0009 40 02 06 07 01 0000fc00",
        Some((3, 11)),
    ),
    ("UPDATE prefix length 33", "{M} 001c 02 0000 0000 21 c6336407", Some((3, 10))),
    (
        "UPDATE NLRI without NEXT_HOP",
        "{M} 0029 02 0000 000d 40 01 01 00 40 02 06 02 01 0000fc00 20 c6336407",
        Some((3, 3)),
    ),
    ("ROUTE-REFRESH of 24 bytes", "{M} 0018 05 0001 00 01 00", Some((7, 1))),
    ("NOTIFICATION of one byte", "{M} 0014 03 06", None),
];

#[test]
fn malformed_messages_get_the_right_notification() {
    for (name, text, expected) in MALFORMED {
        let bytes = hex(&text.replace("{M}", MARKER));
        let mut buffer = BytesMut::from(bytes.as_slice());
        // An oversized UPDATE is judged on its header alone.
        let error = match Message::decode_frame(&mut buffer, four_octet()) {
            Err(error) => error,
            Ok(message) => panic!("{name}: decoded as {message:?}"),
        };
        let notification = error.notification().map(|n| (n.code, n.subcode));
        assert_eq!(notification, *expected, "{name}: {error}");
    }
}

/// OPENs captured from the routers the interop tests run (regenerate with
/// `METALLB_RS_WRITE_CAPTURES=1 cargo test -p metallb-tests --test bgp_interop opens`).
const CAPTURED_OPENS: [(&str, &str, u16); 3] = [
    ("BIRD 2.0.12", include_str!("captures/bird-open.hex"), 240),
    ("FRR 8.4", include_str!("captures/frr-open.hex"), 180),
    ("GoBGP 3.10", include_str!("captures/gobgp-open.hex"), 90),
];

#[test]
fn opens_captured_from_real_routers_decode_and_round_trip() {
    for (router, text, hold_time) in CAPTURED_OPENS {
        let mut buffer = BytesMut::from(hex(text).as_slice());
        let Some(Message::Open(open)) = Message::decode_frame(&mut buffer, four_octet()).unwrap()
        else {
            panic!("{router}: not an OPEN")
        };
        assert!(buffer.is_empty(), "{router}");
        assert_eq!((open.version, open.my_as, open.hold_time), (4, 64500, hold_time), "{router}");
        assert_eq!(open.identifier, Ipv4Addr::new(192, 0, 2, 1), "{router}");
        assert_eq!(open.asn(), 64500, "{router}");
        assert!(
            open.capabilities.contains(&Capability::Multiprotocol((1, 1))),
            "{router}: {open:?}"
        );
        assert!(open.capabilities.contains(&Capability::RouteRefresh), "{router}: {open:?}");
        // Re-encoded (all capabilities in one parameter) it reads back the same.
        let mut encoded = BytesMut::new();
        Message::Open(open.clone()).encode(four_octet(), &mut encoded);
        assert_eq!(
            Message::decode_frame(&mut encoded, four_octet()).unwrap(),
            Some(Message::Open(open)),
            "{router}"
        );
    }
}

/// UPDATE errors and what RFC 7606 makes of them: (name, message, session stays up).
const RFC_7606_ACTIONS: &[(&str, &str, bool)] = &[
    // Section 4: the last attribute overruns the list; the NLRI are still findable.
    ("attribute overruns the list", "{M} 001b 02 0000 0004 40 01 05 00", true),
    ("attribute header truncated", "{M} 0019 02 0000 0002 40 01", true),
    // Section 7.1, 7.2, 7.3: ORIGIN, AS_PATH, NEXT_HOP faults.
    ("ORIGIN 5", "{M} 001b 02 0000 0004 40 01 01 05", true),
    ("AS_PATH segment type 7", "{M} 0020 02 0000 0009 40 02 06 07 01 0000fc00", true),
    ("NEXT_HOP of 3 bytes", "{M} 001d 02 0000 0006 40 03 03 c00002", true),
    // Section 3 (d): flags in conflict with the attribute.
    ("ORIGIN marked optional", "{M} 001b 02 0000 0004 c0 01 01 00", true),
    // Section 3 (g) and 7.11: MP attributes twice, or malformed, reset the session.
    ("MP_UNREACH_NLRI twice", "{M} 0023 02 0000 000c 80 0f 03 0002 01 80 0f 03 0002 01", false),
    (
        "MP_REACH_NLRI next hop length",
        "{M} 0024 02 0000 000d 80 0e 0a 0002 01 05 2001db8000 00",
        false,
    ),
    // Section 5.3: NLRI that cannot be parsed.
    ("prefix length 33", "{M} 001c 02 0000 0000 21 c6336407", false),
];

#[test]
fn update_errors_are_handled_as_rfc_7606_says() {
    use super::UpdateErrorAction;
    for (name, text, stays_up) in RFC_7606_ACTIONS {
        let bytes = hex(&text.replace("{M}", MARKER));
        let mut buffer = BytesMut::from(bytes.as_slice());
        let Err(DecodeError::Update(error)) = Message::decode_frame(&mut buffer, four_octet())
        else {
            panic!("{name}: not an UPDATE error");
        };
        let action = if *stays_up {
            UpdateErrorAction::TreatAsWithdraw
        } else {
            UpdateErrorAction::SessionReset
        };
        assert_eq!(error.action(), action, "{name}: {error}");
        assert!(buffer.is_empty(), "{name}: the whole message is consumed, the stream in step");
    }
}

#[test]
fn a_repeated_attribute_is_discarded_after_its_first_occurrence() {
    // ORIGIN IGP, then ORIGIN with a bad value: the second is discarded unread (RFC 7606
    // section 3 g), and the UPDATE is processed.
    let text = "{M} 001f 02 0000 0008 40 01 01 00 40 01 01 07";
    let mut buffer = BytesMut::from(hex(&text.replace("{M}", MARKER)).as_slice());
    let Some(Message::Update(update)) = Message::decode_frame(&mut buffer, four_octet()).unwrap()
    else {
        panic!("an UPDATE")
    };
    assert_eq!(update.attributes, [Attribute::Origin(Origin::Igp)]);
}

#[test]
fn an_mp_reach_of_a_family_we_do_not_speak_is_ignored_not_misread() {
    // AFI 25 (L2VPN), SAFI 70 (EVPN), a 4-byte next hop: not read as IPv4.
    let text = "{M} 0023 02 0000 000c 80 0e 09 0019 46 04 c0000201 00";
    let mut buffer = BytesMut::from(hex(&text.replace("{M}", MARKER)).as_slice());
    let Some(Message::Update(update)) = Message::decode_frame(&mut buffer, four_octet()).unwrap()
    else {
        panic!("an UPDATE")
    };
    assert!(
        matches!(update.attributes.as_slice(), [Attribute::Unknown { code: 14, .. }]),
        "{update:?}"
    );
}
