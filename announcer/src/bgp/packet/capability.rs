//! Capabilities advertised in OPEN (RFC 5492): multiprotocol (RFC 4760), route refresh
//! (RFC 2918), extended message (RFC 8654), graceful restart (RFC 4724), 4-octet AS (RFC 6793).
//!
//! ```text
//! +------------------------------+
//! | Capability Code (1 octet)    |
//! +------------------------------+
//! | Capability Length (1 octet)  |
//! +------------------------------+
//! | Capability Value (variable)  |
//! +------------------------------+
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{OpenError, iana::capability as code};

/// An address family: (AFI, SAFI).
pub type Family = (u16, u8);

/// One capability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capability {
    /// Multiprotocol extensions for one family.
    Multiprotocol(Family),
    /// Route refresh.
    RouteRefresh,
    /// Messages up to 65535 bytes.
    ExtendedMessage,
    /// Graceful restart: restarting flag, restart time (seconds), families whose forwarding
    /// state was preserved.
    GracefulRestart {
        /// The sender has restarted (R bit).
        restarting: bool,
        /// Seconds the peer should keep our routes while we come back.
        restart_time: u16,
        /// Families, with the forwarding-state-preserved flag.
        families: Vec<(Family, bool)>,
    },
    /// Our AS as 4 octets.
    FourOctetAs(u32),
    /// Anything else, kept as it came.
    Unknown {
        /// Capability code.
        code: u8,
        /// Value.
        value: Vec<u8>,
    },
}

impl Capability {
    /// Writes code, length and value.
    pub fn encode(&self, out: &mut BytesMut) {
        let mut value = BytesMut::new();
        let code = match self {
            Self::Multiprotocol((afi, safi)) => {
                value.put_u16(*afi);
                value.put_u8(0);
                value.put_u8(*safi);
                code::MULTIPROTOCOL
            }
            Self::RouteRefresh => code::ROUTE_REFRESH,
            Self::ExtendedMessage => code::EXTENDED_MESSAGE,
            Self::GracefulRestart { restarting, restart_time, families } => {
                let flags: u16 = if *restarting { 0x8000 } else { 0 };
                value.put_u16(flags | (restart_time & 0x0fff));
                for ((afi, safi), preserved) in families {
                    value.put_u16(*afi);
                    value.put_u8(*safi);
                    value.put_u8(if *preserved { 0x80 } else { 0 });
                }
                code::GRACEFUL_RESTART
            }
            Self::FourOctetAs(asn) => {
                value.put_u32(*asn);
                code::FOUR_OCTET_AS
            }
            Self::Unknown { code, value: raw } => {
                value.put_slice(raw);
                *code
            }
        };
        out.put_u8(code);
        out.put_u8(value.len() as u8);
        out.put_slice(&value);
    }

    /// Reads the capabilities of one Capabilities optional parameter.
    pub fn decode_all(mut data: Bytes) -> Result<Vec<Self>, OpenError> {
        let mut capabilities = Vec::new();
        while data.has_remaining() {
            if data.remaining() < 2 {
                return Err(OpenError::Malformed("truncated capability header"));
            }
            let code = data.get_u8();
            let length = usize::from(data.get_u8());
            if data.remaining() < length {
                return Err(OpenError::Malformed("capability longer than its parameter"));
            }
            let mut value = data.split_to(length);
            let malformed = |what| OpenError::Malformed(what);
            let capability = match code {
                code::MULTIPROTOCOL if length == 4 => {
                    let afi = value.get_u16();
                    value.get_u8();
                    Self::Multiprotocol((afi, value.get_u8()))
                }
                code::MULTIPROTOCOL => {
                    return Err(malformed("multiprotocol capability length is not 4"));
                }
                code::ROUTE_REFRESH => Self::RouteRefresh,
                code::EXTENDED_MESSAGE => Self::ExtendedMessage,
                code::FOUR_OCTET_AS if length == 4 => Self::FourOctetAs(value.get_u32()),
                code::FOUR_OCTET_AS => {
                    return Err(malformed("4-octet AS capability length is not 4"));
                }
                code::GRACEFUL_RESTART if length >= 2 && (length - 2).is_multiple_of(4) => {
                    let flags = value.get_u16();
                    let mut families = Vec::new();
                    while value.has_remaining() {
                        let afi = value.get_u16();
                        let safi = value.get_u8();
                        families.push(((afi, safi), value.get_u8() & 0x80 != 0));
                    }
                    Self::GracefulRestart {
                        restarting: flags & 0x8000 != 0,
                        restart_time: flags & 0x0fff,
                        families,
                    }
                }
                code::GRACEFUL_RESTART => {
                    return Err(malformed("graceful restart capability length"));
                }
                code => Self::Unknown { code, value: value.to_vec() },
            };
            capabilities.push(capability);
        }
        Ok(capabilities)
    }
}
