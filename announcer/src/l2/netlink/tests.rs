use super::*;

/// A netlink message of `kind` carrying `body` then `attributes`, as the kernel lays it out.
fn message(
    kind: u16,
    sequence: u32,
    flags: u16,
    body: &[u8],
    attributes: &[(u16, &[u8])],
) -> Vec<u8> {
    let mut payload = body.to_vec();
    for (attribute, value) in attributes {
        payload.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        payload.extend_from_slice(&attribute.to_ne_bytes());
        payload.extend_from_slice(value);
        payload.resize(align(payload.len()), 0);
    }
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&((HEADER_LEN + payload.len()) as u32).to_ne_bytes());
    bytes.extend_from_slice(&kind.to_ne_bytes());
    bytes.extend_from_slice(&flags.to_ne_bytes());
    bytes.extend_from_slice(&sequence.to_ne_bytes());
    bytes.extend_from_slice(&0u32.to_ne_bytes());
    bytes.extend_from_slice(&payload);
    bytes
}

fn ifinfomsg(index: i32, hardware_type: u16, flags: u32) -> Vec<u8> {
    let mut body = vec![0u8, 0];
    body.extend_from_slice(&hardware_type.to_ne_bytes());
    body.extend_from_slice(&index.to_ne_bytes());
    body.extend_from_slice(&flags.to_ne_bytes());
    body.extend_from_slice(&0u32.to_ne_bytes());
    body
}

fn ifaddrmsg(family: i32, prefix_len: u8, index: u32) -> Vec<u8> {
    let mut body = vec![family as u8, prefix_len, 0, 0];
    body.extend_from_slice(&index.to_ne_bytes());
    body
}

#[test]
fn a_link_is_read_with_its_name_flags_mac_and_mtu() {
    let mac = [2, 0, 0, 0, 0, 0x11];
    let bytes = message(
        libc::RTM_NEWLINK,
        1,
        2,
        &ifinfomsg(7, libc::ARPHRD_ETHER, (libc::IFF_UP | libc::IFF_BROADCAST) as u32),
        // The name with its NUL (5 bytes, padded to 8), and an attribute of unknown type.
        &[
            (libc::IFLA_IFNAME, b"eth0\0"),
            (libc::IFLA_ADDRESS, &mac),
            (999, &[1]),
            (libc::IFLA_MTU, &1500u32.to_ne_bytes()),
        ],
    );
    let parsed: Vec<_> = messages(&bytes).collect::<io::Result<_>>().unwrap();
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].kind, libc::RTM_NEWLINK);
    let link = parse_link(parsed[0].payload).unwrap();
    assert_eq!(
        link,
        Link {
            index: 7,
            name: "eth0".into(),
            flags: (libc::IFF_UP | libc::IFF_BROADCAST) as u32,
            hardware_type: libc::ARPHRD_ETHER,
            hardware_address: mac.to_vec(),
            mtu: 1500,
        }
    );
}

#[test]
fn addresses_are_read_preferring_the_local_one_on_point_to_point_links() {
    let v4 = message(
        libc::RTM_NEWADDR,
        2,
        2,
        &ifaddrmsg(libc::AF_INET, 24, 7),
        &[(libc::IFA_ADDRESS, &[192, 0, 2, 99]), (libc::IFA_LOCAL, &[192, 0, 2, 11])],
    );
    let v6_address: Ipv6Addr = "2001:db8::11".parse().unwrap();
    let v6 = message(
        libc::RTM_NEWADDR,
        2,
        2,
        &ifaddrmsg(libc::AF_INET6, 64, 8),
        &[(libc::IFA_ADDRESS, &v6_address.octets())],
    );
    let both = [v4, v6].concat();
    let parsed: Vec<_> =
        messages(&both).map(|m| parse_address(m.unwrap().payload).unwrap()).collect();
    assert_eq!(
        parsed,
        [
            Address { index: 7, address: "192.0.2.11".parse().unwrap(), prefix_len: 24 },
            Address { index: 8, address: v6_address.into(), prefix_len: 64 },
        ]
    );
}

#[test]
fn malformed_messages_and_attributes_are_not_read_past() {
    let mut bytes =
        message(libc::RTM_NEWLINK, 1, 0, &ifinfomsg(3, 1, 0), &[(libc::IFLA_IFNAME, b"a\0")]);
    // A length beyond the datagram.
    bytes[0..4].copy_from_slice(&1000u32.to_ne_bytes());
    let parsed: Vec<_> = messages(&bytes).collect();
    assert_eq!(parsed.len(), 1);
    assert!(parsed[0].is_err());
    // A truncated header, an attribute claiming more than there is, an address of the wrong
    // length.
    assert!(parse_link(&[0; 8]).is_none());
    let mut payload = ifinfomsg(3, 1, 0);
    payload.extend_from_slice(&[200, 0, 3, 0, b'a', 0]);
    assert!(parse_link(&payload).is_none(), "no name was read");
    let short = message(
        libc::RTM_NEWADDR,
        1,
        0,
        &ifaddrmsg(libc::AF_INET, 24, 1),
        &[(libc::IFA_ADDRESS, &[1, 2, 3])],
    );
    let short = messages(&short).next().unwrap().unwrap();
    assert!(parse_address(short.payload).is_none());
}

#[test]
fn the_kernel_lists_the_loopback_interface_and_its_address() {
    let (links, addresses) = links_and_addresses().unwrap();
    let lo = links.iter().find(|link| link.name == "lo").expect("lo is listed");
    assert_ne!(lo.flags & libc::IFF_LOOPBACK as u32, 0);
    assert!(
        addresses.iter().any(|address| address.index == lo.index
            && address.address == IpAddr::V4(Ipv4Addr::LOCALHOST)
            && address.prefix_len == 8),
        "{addresses:?}"
    );
}
