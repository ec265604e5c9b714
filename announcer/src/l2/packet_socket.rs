//! A raw packet socket (`AF_PACKET`, `SOCK_RAW`) on one interface for one ethertype: layer 2
//! mode reads ARP requests and neighbor solicitations as whole Ethernet frames and writes
//! whole frames back, which only a packet socket allows (it needs CAP_NET_RAW, nothing more).
//!
//! Three things have no safe API, so three small functions here are allowed `unsafe`: binding
//! to a link-layer address (`sockaddr_ll` names the interface and ethertype; socket2 builds
//! only IP and Unix addresses safely); `PACKET_ADD_MEMBERSHIP`/`PACKET_DROP_MEMBERSHIP`, which
//! make a real NIC pass up the solicited-node multicast address (33:33:ff:xx:xx:xx) that
//! solicitations for an IPv6 IP are sent to, although the kernel itself has no such address;
//! and registering the socket with Tokio's reactor, which asks the caller to promise that the
//! descriptor stays open. Everything else (the socket, its filter, reading and writing) goes
//! through socket2's safe API.

use std::{
    io::{self, Read},
    mem,
    os::fd::AsRawFd,
};

use socket2::{Domain, SockAddr, SockAddrStorage, SockFilter, Socket, Type};
use tokio::io::{Interest, unix::AsyncFd};

use super::frames::Mac;

/// The frames a socket is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EtherType {
    /// ARP (IPv4).
    Arp,
    /// IPv6, of which only neighbor solicitations are let through.
    Ipv6,
}

impl EtherType {
    fn value(self) -> u16 {
        match self {
            EtherType::Arp => libc::ETH_P_ARP as u16,
            EtherType::Ipv6 => libc::ETH_P_IPV6 as u16,
        }
    }
}

/// A failed call on a packet socket.
#[derive(Debug, thiserror::Error)]
#[error("{call} on interface {interface}: {source}")]
pub struct Error {
    /// The interface the socket is for.
    pub interface: String,
    /// The call that failed.
    pub call: &'static str,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// A packet socket bound to one interface, non-blocking, registered with Tokio.
#[derive(Debug)]
pub struct PacketSocket {
    socket: AsyncFd<Socket>,
    interface: String,
    index: u32,
}

impl PacketSocket {
    /// Opens a socket receiving `ether_type` frames that arrive on interface `index` (named
    /// `interface`) addressed to this host: broadcast, multicast, or its own MAC.
    pub fn open(interface: &str, index: u32, ether_type: EtherType) -> Result<Self, Error> {
        let fail = |call| move |source| Error { interface: interface.to_string(), call, source };
        // Protocol 0 receives nothing until bound: no frame of another interface or type
        // slips in before the filter is attached.
        let socket = Socket::new(Domain::PACKET, Type::RAW, None)
            .map_err(fail("socket(AF_PACKET, SOCK_RAW)"))?;
        socket.attach_filter(&filter(ether_type)).map_err(fail("setsockopt(SO_ATTACH_FILTER)"))?;
        bind(&socket, index, ether_type).map_err(fail("bind(sockaddr_ll)"))?;
        socket.set_nonblocking(true).map_err(fail("fcntl(O_NONBLOCK)"))?;
        let socket = register(socket).map_err(fail("epoll_ctl"))?;
        Ok(Self { socket, interface: interface.to_string(), index })
    }

    /// The interface's name, as given to `open`.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Waits for the next frame and reads it into `buffer`, returning its length; a frame
    /// longer than `buffer` is cut to its length.
    pub async fn recv(&self, buffer: &mut [u8]) -> Result<usize, Error> {
        self.socket
            .async_io(Interest::READABLE, |socket| (&*socket).read(buffer))
            .await
            .map_err(|source| self.error("recv", source))
    }

    /// Sends one whole Ethernet frame out of the interface.
    pub async fn send(&self, frame: &[u8]) -> Result<(), Error> {
        let sent = self
            .socket
            .async_io(Interest::WRITABLE, |socket| socket.send(frame))
            .await
            .map_err(|source| self.error("send", source))?;
        if sent != frame.len() {
            let source = io::Error::other(format!("{sent} of {} bytes sent", frame.len()));
            return Err(self.error("send", source));
        }
        Ok(())
    }

    /// Lets frames to multicast address `mac` reach this socket (and the NIC take them in).
    pub fn join_multicast(&self, mac: Mac) -> Result<(), Error> {
        set_membership(self.socket.get_ref(), self.index, libc::PACKET_ADD_MEMBERSHIP, mac)
            .map_err(|source| self.error("setsockopt(PACKET_ADD_MEMBERSHIP)", source))
    }

    /// Undoes `join_multicast`.
    pub fn leave_multicast(&self, mac: Mac) -> Result<(), Error> {
        set_membership(self.socket.get_ref(), self.index, libc::PACKET_DROP_MEMBERSHIP, mac)
            .map_err(|source| self.error("setsockopt(PACKET_DROP_MEMBERSHIP)", source))
    }

    fn error(&self, call: &'static str, source: io::Error) -> Error {
        Error { interface: self.interface.clone(), call, source }
    }
}

/// One classic BPF instruction: code, jump-if-true, jump-if-false, constant.
type Instruction = (u16, u8, u8, u32);

const LOAD_WORD: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const LOAD_HALF: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
const LOAD_BYTE: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
const JUMP_EQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JUMP_GE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RETURN: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
/// The kernel's ancillary "packet type" field: host 0, broadcast 1, multicast 2, other host 3,
/// outgoing 4.
const PACKET_TYPE: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32;

/// A classic BPF program that keeps, in the kernel, only what layer 2 mode reads: frames to
/// this host (not our own outgoing ones, not other hosts' unicast seen on a promiscuous port)
/// that are ARP requests, or IPv6 packets whose next header is ICMPv6 and whose type is a
/// neighbor solicitation. Without it every IPv6 packet of the node would be copied to us.
fn filter(ether_type: EtherType) -> Vec<SockFilter> {
    program(ether_type)
        .into_iter()
        .map(|(code, jump_true, jump_false, constant)| {
            SockFilter::new(code, jump_true, jump_false, constant)
        })
        .collect()
}

fn program(ether_type: EtherType) -> Vec<Instruction> {
    // (offset from the frame's start, load size, the value it must have)
    let checks: &[(u32, u16, u32)] = match ether_type {
        // The ARP operation: 1, request.
        EtherType::Arp => &[(12, LOAD_HALF, 0x0806), (20, LOAD_HALF, 1)],
        // Next header 58 (ICMPv6), ICMPv6 type 135 (neighbor solicitation).
        EtherType::Ipv6 => &[(12, LOAD_HALF, 0x86dd), (20, LOAD_BYTE, 58), (54, LOAD_BYTE, 135)],
    };
    // The packet type test, a load and a test per check, accept, then drop.
    let drop = 2 + 2 * checks.len() + 1;
    // Jumps are relative to the next instruction.
    let to_drop = |at: usize| (drop - at - 1) as u8;
    let mut program = vec![
        (LOAD_WORD, 0, 0, PACKET_TYPE),
        (JUMP_GE, to_drop(1), 0, libc::PACKET_OTHERHOST as u32),
    ];
    for (offset, load, value) in checks {
        program.push((*load, 0, 0, *offset));
        program.push((JUMP_EQ, 0, to_drop(program.len()), *value));
    }
    program.push((RETURN, 0, 0, u32::MAX));
    program.push((RETURN, 0, 0, 0));
    program
}

/// Binds `socket` to interface `index` for `ether_type`.
#[allow(unsafe_code)]
fn bind(socket: &Socket, index: u32, ether_type: EtherType) -> io::Result<()> {
    let index = i32::try_from(index).map_err(|_| io::Error::other("interface index too large"))?;
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: the storage is sized and aligned for any socket address, `sockaddr_ll` included,
    // and all-zero bytes are a valid `sockaddr_ll`.
    let link = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    link.sll_family = libc::AF_PACKET as libc::c_ushort;
    link.sll_protocol = ether_type.value().to_be();
    link.sll_ifindex = index;
    let length = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the storage holds an initialised `sockaddr_ll` of `length` bytes, family
    // AF_PACKET.
    let address = unsafe { SockAddr::new(storage, length) };
    socket.bind(&address)
}

/// Registers `socket` with Tokio's reactor.
#[allow(unsafe_code)]
fn register(socket: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: a `Socket` owns its descriptor and closes it only when dropped, which the
    // `AsyncFd` does after deregistering it; nothing here replaces or closes it meanwhile.
    unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)
}

/// Adds or drops (`option`) membership of multicast `mac` on interface `index`.
#[allow(unsafe_code)]
fn set_membership(socket: &Socket, index: u32, option: libc::c_int, mac: Mac) -> io::Result<()> {
    let mut address = [0u8; 8];
    address[..6].copy_from_slice(&mac);
    let request = libc::packet_mreq {
        mr_ifindex: i32::try_from(index)
            .map_err(|_| io::Error::other("interface index too large"))?,
        mr_type: libc::PACKET_MR_MULTICAST as libc::c_ushort,
        mr_alen: 6,
        mr_address: address,
    };
    // SAFETY: `request` outlives the call and its size is passed with it.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_PACKET,
            option,
            (&raw const request).cast(),
            mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
        )
    };
    if result == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The Ethernet multicast address of `ip`'s solicited-node group (RFC 4291 section 2.7.1,
/// RFC 2464 section 7): 33:33:ff and the IP's last 24 bits.
pub fn solicited_node_mac(ip: std::net::Ipv6Addr) -> Mac {
    let octets = ip.octets();
    [0x33, 0x33, 0xff, octets[13], octets[14], octets[15]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solicited_node_macs_carry_the_last_24_bits() {
        let ip: std::net::Ipv6Addr = "2001:db8:0:1::abcd:1234".parse().unwrap();
        assert_eq!(solicited_node_mac(ip), [0x33, 0x33, 0xff, 0xcd, 0x12, 0x34]);
    }

    /// Runs the subset of classic BPF that `program` uses over `frame`, as the kernel would
    /// for a frame of `packet_type`: whether the frame is kept.
    fn keeps(program: &[Instruction], frame: &[u8], packet_type: u32) -> bool {
        let mut accumulator = 0u32;
        let mut at = 0;
        loop {
            let (code, jump_true, jump_false, constant) = program[at];
            let load = |size: usize| {
                let bytes = frame.get(constant as usize..constant as usize + size)?;
                Some(bytes.iter().fold(0u32, |value, byte| (value << 8) | u32::from(*byte)))
            };
            at += 1;
            match code {
                LOAD_WORD if constant == PACKET_TYPE => accumulator = packet_type,
                LOAD_HALF | LOAD_BYTE => {
                    // A load past the end stops the program: the frame is dropped.
                    match load(if code == LOAD_HALF { 2 } else { 1 }) {
                        Some(value) => accumulator = value,
                        None => return false,
                    }
                }
                JUMP_EQ | JUMP_GE => {
                    let taken = if code == JUMP_EQ {
                        accumulator == constant
                    } else {
                        accumulator >= constant
                    };
                    at += usize::from(if taken { jump_true } else { jump_false });
                }
                RETURN => return constant != 0,
                other => panic!("unexpected instruction {other:#x}"),
            }
        }
    }

    #[test]
    fn the_filter_keeps_requests_to_this_host_and_nothing_else() {
        use crate::l2::{frames, test_frames};
        let ours = [2, 0, 0, 0, 0, 0x11];
        let theirs = [2, 0, 0, 0, 0, 0x22];
        let v4 = |text: &str| text.parse::<std::net::Ipv4Addr>().unwrap();
        let v6 = |text: &str| text.parse::<std::net::Ipv6Addr>().unwrap();
        let arp_request = test_frames::arp_request(
            (theirs, v4("192.0.2.2")),
            v4("192.0.2.100"),
            frames::BROADCAST,
        );
        let arp_reply = frames::arp_reply(theirs, v4("192.0.2.100"), ours, v4("192.0.2.2"));
        let advertisement = frames::neighbor_advertisement(theirs, v6("2001:db8::100"), None);
        let solicitation = test_frames::solicitation((theirs, v6("fe80::22")), v6("2001:db8::100"));
        let arp = program(EtherType::Arp);
        let ipv6 = program(EtherType::Ipv6);
        for packet_type in [0, 1, 2] {
            assert!(keeps(&arp, &arp_request, packet_type));
            assert!(keeps(&ipv6, &solicitation, packet_type));
        }
        // Other hosts' traffic and our own outgoing frames.
        for packet_type in [3, 4] {
            assert!(!keeps(&arp, &arp_request, packet_type));
            assert!(!keeps(&ipv6, &solicitation, packet_type));
        }
        assert!(!keeps(&arp, &arp_reply, 1));
        assert!(!keeps(&ipv6, &advertisement, 2));
        assert!(!keeps(&ipv6, &arp_request, 1));
        assert!(!keeps(&arp, &arp_request[..21], 1), "truncated");
    }
}
