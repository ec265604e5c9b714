//! BFD's UDP endpoints: control packets arrive on port 3784 (single hop, RFC 5881) or 4784
//! (multihop, RFC 5883) with their TTL reported, and each session sends from a source port of
//! its own in 49152..65535 with TTL 255, so that a directly connected peer can tell that they
//! crossed no router.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use rand::Rng;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::{io::Interest, net::UdpSocket};

use super::ttl::{self, Datagram};

/// The TTL (hop limit) of every packet we send (RFC 5881 section 5, RFC 5883 section 5).
pub const SENT_TTL: u32 = 255;
/// Source ports a session may send from (RFC 5881 section 4).
const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;
/// Random source ports tried before giving up.
const SOURCE_PORT_TRIES: usize = 64;

/// Whether a session's peer is directly connected or some routers away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hops {
    /// Directly connected (RFC 5881): packets must arrive with TTL 255.
    Single,
    /// Multihop (RFC 5883): packets must arrive with at least the profile's minimum TTL.
    Multi,
}

/// The UDP ports of one kind of session: where we listen, and where peers listen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    /// Where control packets for us arrive.
    pub listen: u16,
    /// Where the peer receives them.
    pub peer: u16,
}

impl Hops {
    /// The ports the RFCs assign: 3784 single hop, 4784 multihop, on both sides.
    pub fn standard_ports(self) -> Ports {
        let port = match self {
            Hops::Single => 3784,
            Hops::Multi => 4784,
        };
        Ports { listen: port, peer: port }
    }
}

/// A socket receiving the control packets of every session of one family on `port`.
pub fn listen(ipv6: bool, port: u16) -> io::Result<UdpSocket> {
    let (domain, any) = if ipv6 {
        (Domain::IPV6, IpAddr::V6(Ipv6Addr::UNSPECIFIED))
    } else {
        (Domain::IPV4, IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if ipv6 {
        // IPv4 packets go to the IPv4 socket, so both can be bound.
        socket.set_only_v6(true)?;
    }
    ttl::report_ttl(&socket, ipv6)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::new(any, port).into())?;
    UdpSocket::from_std(socket.into())
}

/// Waits for the next datagram on a `listen` socket, with its TTL.
pub async fn receive(socket: &UdpSocket, buffer: &mut [u8]) -> io::Result<Datagram> {
    socket.async_io(Interest::READABLE, || ttl::receive(socket, buffer)).await
}

/// A socket sending one session's packets to `peer`, from `source` when given, from a random
/// port in 49152..65535, with TTL 255.
pub fn sender(peer: SocketAddr, source: Option<IpAddr>) -> io::Result<UdpSocket> {
    let ipv6 = peer.is_ipv6();
    let domain = if ipv6 { Domain::IPV6 } else { Domain::IPV4 };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if ipv6 {
        socket.set_unicast_hops_v6(SENT_TTL)?;
    } else {
        socket.set_ttl_v4(SENT_TTL)?;
    }
    socket.set_nonblocking(true)?;
    let local = source.unwrap_or(if ipv6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    });
    let mut random = rand::rng();
    let mut last_error = None;
    for _ in 0..SOURCE_PORT_TRIES {
        let port = random.random_range(SOURCE_PORTS);
        match socket.bind(&SocketAddr::new(local, port).into()) {
            Ok(()) => {
                socket.connect(&peer.into())?;
                return UdpSocket::from_std(socket.into());
            }
            Err(err) if err.kind() == io::ErrorKind::AddrInUse => last_error = Some(err),
            Err(err) => return Err(err),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no free source port")))
}
