//! The node's links and addresses as the kernel lists them over rtnetlink (RTM_GETLINK and
//! RTM_GETADDR dumps, RFC 3549). The messages are plain bytes, sent and parsed here in safe
//! code: no libc structure crosses the boundary, so no `unsafe` is needed to read interfaces.

use std::{
    io::{self, Read},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use socket2::{Domain, Protocol, Socket, Type};

/// `struct nlmsghdr`: length, type, flags, sequence number, port ID.
const HEADER_LEN: usize = 16;
/// `struct ifinfomsg`: family, pad, type, index, flags, change.
const IFINFOMSG_LEN: usize = 16;
/// `struct ifaddrmsg`: family, prefix length, flags, scope, index.
const IFADDRMSG_LEN: usize = 8;
/// A dump part is at most 32 KiB (the kernel caps its buffer there); twice that leaves room.
const RECEIVE_BUFFER: usize = 64 * 1024;
/// How long the kernel may take to answer before the scan fails (it answers in microseconds).
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often an interrupted dump (the links changed while being listed) is retried at once.
const INTERRUPTED_RETRIES: usize = 3;

/// One link (network interface).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Its index.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// `IFF_*` flags.
    pub flags: u32,
    /// Its `ARPHRD_*` hardware type.
    pub hardware_type: u16,
    /// Its hardware address, of whatever length the hardware type has.
    pub hardware_address: Vec<u8>,
    /// Its MTU, 0 if the kernel did not say.
    pub mtu: u32,
}

/// One address of a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    /// The link's index.
    pub index: u32,
    /// The address.
    pub address: IpAddr,
    /// The length of its prefix.
    pub prefix_len: u8,
}

/// Every link and every address, each from one dump.
pub fn links_and_addresses() -> io::Result<(Vec<Link>, Vec<Address>)> {
    let mut socket = Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(libc::NETLINK_ROUTE)),
    )?;
    socket.set_read_timeout(Some(RECEIVE_TIMEOUT))?;
    let links = retry_interrupted(|| dump(&mut socket, libc::RTM_GETLINK, IFINFOMSG_LEN, 1))?
        .iter()
        .filter(|(kind, _)| *kind == libc::RTM_NEWLINK)
        .filter_map(|(_, payload)| parse_link(payload))
        .collect();
    let addresses = retry_interrupted(|| dump(&mut socket, libc::RTM_GETADDR, IFADDRMSG_LEN, 2))?
        .iter()
        .filter(|(kind, _)| *kind == libc::RTM_NEWADDR)
        .filter_map(|(_, payload)| parse_address(payload))
        .collect();
    Ok((links, addresses))
}

fn retry_interrupted<T>(mut dump: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut tries = 0;
    loop {
        match dump() {
            Err(err) if err.kind() == io::ErrorKind::Interrupted && tries < INTERRUPTED_RETRIES => {
                tries += 1;
            }
            result => return result,
        }
    }
}

/// Sends a dump request of `kind` (with an all-zero family header of `body_len` bytes: every
/// family, every link) and collects the (type, payload) of every message answering it.
fn dump(
    socket: &mut Socket,
    kind: u16,
    body_len: usize,
    sequence: u32,
) -> io::Result<Vec<(u16, Vec<u8>)>> {
    let length = HEADER_LEN + body_len;
    let mut request = Vec::with_capacity(length);
    request.extend_from_slice(&(length as u32).to_ne_bytes());
    request.extend_from_slice(&kind.to_ne_bytes());
    request.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    request.extend_from_slice(&sequence.to_ne_bytes());
    // Port 0: the kernel.
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.resize(length, 0);
    socket.send(&request)?;
    let mut buffer = vec![0u8; RECEIVE_BUFFER];
    let mut answers = Vec::new();
    loop {
        let received = socket.read(&mut buffer)?;
        if received == buffer.len() {
            return Err(io::Error::other("a netlink dump part filled the whole buffer"));
        }
        for message in messages(&buffer[..received]) {
            let message = message?;
            if message.sequence != sequence {
                continue;
            }
            if message.flags & libc::NLM_F_DUMP_INTR as u16 != 0 {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "netlink dump interrupted"));
            }
            match i32::from(message.kind) {
                libc::NLMSG_DONE => return Ok(answers),
                libc::NLMSG_ERROR => {
                    let code = message.payload.get(..4).map(read_i32).unwrap_or(-libc::EIO);
                    // Zero is an acknowledgement, which a dump is not asked for.
                    if code != 0 {
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                }
                _ => answers.push((message.kind, message.payload.to_vec())),
            }
        }
    }
}

/// One netlink message.
#[derive(Debug, PartialEq, Eq)]
struct Message<'a> {
    kind: u16,
    flags: u16,
    sequence: u32,
    payload: &'a [u8],
}

/// The messages in one datagram; a malformed length ends the walk with an error.
fn messages(mut data: &[u8]) -> impl Iterator<Item = io::Result<Message<'_>>> {
    std::iter::from_fn(move || {
        if data.len() < HEADER_LEN {
            return None;
        }
        let length = read_u32(&data[0..4]) as usize;
        if length < HEADER_LEN || length > data.len() {
            data = &[];
            return Some(Err(io::Error::other("a malformed netlink message")));
        }
        let message = Message {
            kind: read_u16(&data[4..6]),
            flags: read_u16(&data[6..8]),
            sequence: read_u32(&data[8..12]),
            payload: &data[HEADER_LEN..length],
        };
        data = &data[align(length).min(data.len())..];
        Some(Ok(message))
    })
}

/// The (type, value) attributes that follow a message's fixed header.
fn attributes(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let length = usize::from(read_u16(&data[0..2]));
        if length < 4 || length > data.len() {
            return None;
        }
        // The top two bits flag nested and network-byte-order attributes.
        let kind = read_u16(&data[2..4]) & 0x3fff;
        let value = &data[4..length];
        data = &data[align(length).min(data.len())..];
        Some((kind, value))
    })
}

fn parse_link(payload: &[u8]) -> Option<Link> {
    let header = payload.get(..IFINFOMSG_LEN)?;
    let mut link = Link {
        index: u32::try_from(read_i32(&header[4..8])).ok()?,
        name: String::new(),
        flags: read_u32(&header[8..12]),
        hardware_type: read_u16(&header[2..4]),
        hardware_address: Vec::new(),
        mtu: 0,
    };
    for (kind, value) in attributes(&payload[IFINFOMSG_LEN..]) {
        match kind {
            libc::IFLA_IFNAME => {
                let name = value.split(|byte| *byte == 0).next().unwrap_or_default();
                link.name = String::from_utf8_lossy(name).into_owned();
            }
            libc::IFLA_ADDRESS => link.hardware_address = value.to_vec(),
            libc::IFLA_MTU if value.len() == 4 => link.mtu = read_u32(value),
            _ => {}
        }
    }
    (!link.name.is_empty()).then_some(link)
}

fn parse_address(payload: &[u8]) -> Option<Address> {
    let header = payload.get(..IFADDRMSG_LEN)?;
    let family = i32::from(header[0]);
    let (mut address, mut local) = (None, None);
    for (kind, value) in attributes(&payload[IFADDRMSG_LEN..]) {
        let ip = match (family, value.len()) {
            (libc::AF_INET, 4) => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(value).ok()?)),
            (libc::AF_INET6, 16) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(value).ok()?)),
            _ => continue,
        };
        match kind {
            libc::IFA_ADDRESS => address = Some(ip),
            libc::IFA_LOCAL => local = Some(ip),
            _ => {}
        }
    }
    // On a point-to-point link IFA_ADDRESS is the peer's; IFA_LOCAL, when present, is ours.
    Some(Address {
        index: read_u32(&header[4..8]),
        address: local.or(address)?,
        prefix_len: header[1],
    })
}

/// Netlink aligns messages and attributes to 4 bytes.
fn align(length: usize) -> usize {
    (length + 3) & !3
}

fn read_u16(bytes: &[u8]) -> u16 {
    u16::from_ne_bytes([bytes[0], bytes[1]])
}

fn read_u32(bytes: &[u8]) -> u32 {
    u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn read_i32(bytes: &[u8]) -> i32 {
    i32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[cfg(test)]
mod tests;
