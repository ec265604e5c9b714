//! TCP MD5 signatures (RFC 2385) and the other socket options BGP needs. One of the two
//! modules of the project allowed `unsafe` (the other is `bfd::ttl`): Linux sets an MD5 key with `setsockopt(TCP_MD5SIG)`
//! on a C struct that neither the standard library nor socket2 wraps. Everything unsafe is the
//! one `setsockopt` call on a struct built and sized here.
#![allow(unsafe_code)]

use std::{io, net::SocketAddr, os::fd::AsRawFd};

/// Linux's `struct tcp_md5sig` (include/uapi/linux/tcp.h).
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefix_len: u8,
    key_len: u16,
    ifindex: libc::c_int,
    key: [u8; libc::TCP_MD5SIG_MAXKEYLEN],
}

/// Signs every segment exchanged with `peer` on `socket` with `password`. Must be set before
/// connecting; the peer must use the same password or no segment is accepted at all.
pub fn set_md5_password(socket: &impl AsRawFd, peer: SocketAddr, password: &str) -> io::Result<()> {
    let key = password.as_bytes();
    if key.is_empty() || key.len() > libc::TCP_MD5SIG_MAXKEYLEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a TCP MD5 password has 1 to {} bytes", libc::TCP_MD5SIG_MAXKEYLEN),
        ));
    }
    let peer_address = socket2::SockAddr::from(peer);
    // SAFETY: all-zero bytes are a valid value for this plain C struct of integers and arrays.
    let mut signature: TcpMd5Sig = unsafe { std::mem::zeroed() };
    // SAFETY: `peer_address` holds at most a sockaddr_storage's worth of bytes (socket2's
    // guarantee), copied into a sockaddr_storage; the regions do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            peer_address.as_ptr().cast::<u8>(),
            (&raw mut signature.addr).cast::<u8>(),
            peer_address.len() as usize,
        );
    }
    signature.key_len = key.len() as u16;
    signature.key[..key.len()].copy_from_slice(key);
    // SAFETY: the pointer and length describe `signature`, alive for the whole call.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (&raw const signature).cast::<libc::c_void>(),
            std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if result == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_accepts_a_key_and_rejects_an_oversized_one() {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let peer: SocketAddr = "127.0.0.1:179".parse().unwrap();
        set_md5_password(&socket, peer, "s3cret").unwrap();
        let long = "x".repeat(81);
        assert_eq!(
            set_md5_password(&socket, peer, &long).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        let v6 = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).unwrap();
        set_md5_password(&v6, "[::1]:179".parse().unwrap(), "s3cret").unwrap();
    }
}
