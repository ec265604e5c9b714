//! NLRI prefixes (RFC 4271 section 4.3, RFC 4760 section 5): a length in bits, then just
//! enough bytes to hold it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ipnetwork::IpNetwork;

use super::UpdateError;

/// Bytes a prefix takes on the wire.
pub fn encoded_len(prefix: &IpNetwork) -> usize {
    1 + usize::from(prefix.prefix()).div_ceil(8)
}

/// Writes one prefix.
pub fn encode(prefix: &IpNetwork, out: &mut BytesMut) {
    let length = prefix.prefix();
    out.put_u8(length);
    let bytes = usize::from(length).div_ceil(8);
    match prefix.network() {
        IpAddr::V4(ip) => out.put_slice(&ip.octets()[..bytes]),
        IpAddr::V6(ip) => out.put_slice(&ip.octets()[..bytes]),
    }
}

/// Reads prefixes of one family until `data` ends.
pub fn decode_all(mut data: Bytes, ipv6: bool) -> Result<Vec<IpNetwork>, UpdateError> {
    let max = if ipv6 { 128 } else { 32 };
    let mut prefixes = Vec::new();
    while data.has_remaining() {
        let length = data.get_u8();
        if length > max {
            return Err(UpdateError::InvalidNetworkField);
        }
        let bytes = usize::from(length).div_ceil(8);
        if data.remaining() < bytes {
            return Err(UpdateError::InvalidNetworkField);
        }
        let mut octets = [0u8; 16];
        data.copy_to_slice(&mut octets[..bytes]);
        let ip = if ipv6 {
            IpAddr::V6(Ipv6Addr::from(octets))
        } else {
            IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]))
        };
        // Host bits set past the length are tolerated and cleared, as routers do.
        let network = IpNetwork::new(ip, length).map_err(|_| UpdateError::InvalidNetworkField)?;
        let network = IpNetwork::new(network.network(), length)
            .map_err(|_| UpdateError::InvalidNetworkField)?;
        prefixes.push(network);
    }
    Ok(prefixes)
}
