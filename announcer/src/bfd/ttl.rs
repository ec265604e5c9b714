//! Receiving a datagram with the TTL (IPv6: hop limit) it arrived with, which BFD needs to
//! discard packets that crossed a router (RFC 5881 section 5, RFC 5082). Neither the standard
//! library nor socket2 reads ancillary data safely, so this module, like `bgp::md5`, is allowed
//! `unsafe`: one `setsockopt(IP_RECVTTL)` and one `recvmsg` on buffers built and sized here,
//! with the control messages read through libc's own macros.
#![allow(unsafe_code)]

use std::{io, mem, net::SocketAddr, os::fd::AsRawFd};

/// Asks the kernel to report each datagram's TTL (IPv4) or hop limit (IPv6).
pub fn report_ttl(socket: &impl AsRawFd, ipv6: bool) -> io::Result<()> {
    let (level, option) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT)
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVTTL)
    };
    let on: libc::c_int = 1;
    // SAFETY: `on` outlives the call and its size is passed with it.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&raw const on).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// One datagram as received.
#[derive(Debug)]
pub struct Datagram {
    /// Bytes written to the buffer.
    pub len: usize,
    /// The sender.
    pub from: SocketAddr,
    /// Its TTL or hop limit, when the kernel reported it.
    pub ttl: Option<u8>,
}

/// Receives one datagram without blocking (`WouldBlock` when none is queued).
pub fn receive(socket: &impl AsRawFd, buffer: &mut [u8]) -> io::Result<Datagram> {
    let mut address = socket2::SockAddrStorage::zeroed();
    // Room for one TTL or hop-limit message, with alignment to spare.
    let mut control = [0u64; 8];
    let mut vector = libc::iovec { iov_base: buffer.as_mut_ptr().cast(), iov_len: buffer.len() };
    // SAFETY: a zeroed `msghdr` is a valid value of this C struct.
    let mut header: libc::msghdr = unsafe { mem::zeroed() };
    header.msg_name = (&raw mut address).cast();
    header.msg_namelen = address.size_of();
    header.msg_iov = &raw mut vector;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = mem::size_of_val(&control);
    // SAFETY: every pointer in `header` points into locals that outlive the call, with their
    // sizes; the kernel writes at most those sizes.
    let received = unsafe { libc::recvmsg(socket.as_raw_fd(), &raw mut header, 0) };
    if received < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ttl = None;
    // SAFETY: the macros walk the control buffer the kernel filled, within `msg_controllen`.
    unsafe {
        let mut message = libc::CMSG_FIRSTHDR(&raw const header);
        while !message.is_null() {
            let level = (*message).cmsg_level;
            let kind = (*message).cmsg_type;
            if (level == libc::IPPROTO_IP && kind == libc::IP_TTL)
                || (level == libc::IPPROTO_IPV6 && kind == libc::IPV6_HOPLIMIT)
            {
                let value = libc::CMSG_DATA(message).cast::<libc::c_int>().read_unaligned();
                ttl = u8::try_from(value).ok();
            }
            message = libc::CMSG_NXTHDR(&raw const header, message);
        }
    }
    // SAFETY: the kernel wrote a socket address of `msg_namelen` bytes into `address`.
    let from = unsafe { socket2::SockAddr::new(address, header.msg_namelen) }
        .as_socket()
        .ok_or_else(|| io::Error::other("a datagram from a non-IP address"))?;
    Ok(Datagram { len: received as usize, from, ttl })
}
