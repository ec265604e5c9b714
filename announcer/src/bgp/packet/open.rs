//! OPEN (RFC 4271 section 4.2) with capabilities in optional parameters (RFC 5492).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+
//! |    Version    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     My Autonomous System      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Hold Time           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         BGP Identifier                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Opt Parm Len  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |             Optional Parameters (variable)                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::net::Ipv4Addr;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{DecodeError, OpenError, capability::Capability};

/// AS_TRANS (RFC 6793): the 2-octet AS a 4-octet speaker puts in "My Autonomous System".
pub const AS_TRANS: u16 = 23456;

/// Optional parameter type "Capabilities" (RFC 5492).
const PARAMETER_CAPABILITIES: u8 = 2;

/// An OPEN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    /// BGP version; always 4 on the wire from us.
    pub version: u8,
    /// The 2-octet "My Autonomous System" field (AS_TRANS when the real AS needs 4 octets).
    pub my_as: u16,
    /// Proposed hold time in seconds.
    pub hold_time: u16,
    /// BGP identifier.
    pub identifier: Ipv4Addr,
    /// Capabilities.
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// The sender's AS: the 4-octet capability's when present, else the 2-octet field.
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|capability| match capability {
                Capability::FourOctetAs(asn) => Some(*asn),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }

    /// Writes the body.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.version);
        out.put_u16(self.my_as);
        out.put_u16(self.hold_time);
        out.put_slice(&self.identifier.octets());
        let mut capabilities = BytesMut::new();
        for capability in &self.capabilities {
            capability.encode(&mut capabilities);
        }
        if capabilities.is_empty() {
            out.put_u8(0);
            return;
        }
        // One parameter holding every capability, as BIRD, FRR and GoBGP send it.
        out.put_u8(capabilities.len() as u8 + 2);
        out.put_u8(PARAMETER_CAPABILITIES);
        out.put_u8(capabilities.len() as u8);
        out.put_slice(&capabilities);
    }

    /// Reads the body, checking its structure and version; the session checks the values
    /// against its configuration.
    pub fn decode(body: &mut Bytes) -> Result<Self, DecodeError> {
        if body.remaining() < 10 {
            return Err(OpenError::Malformed("shorter than 10 bytes").into());
        }
        let version = body.get_u8();
        let my_as = body.get_u16();
        let hold_time = body.get_u16();
        let identifier = Ipv4Addr::from(body.get_u32());
        let parameters_length = usize::from(body.get_u8());
        if version != 4 {
            return Err(OpenError::UnsupportedVersion(version).into());
        }
        if body.remaining() != parameters_length {
            return Err(OpenError::Malformed(
                "optional parameters length does not match the message",
            )
            .into());
        }
        let mut parameters = body.split_to(parameters_length);
        let mut capabilities = Vec::new();
        while parameters.has_remaining() {
            if parameters.remaining() < 2 {
                return Err(OpenError::Malformed("truncated optional parameter").into());
            }
            let kind = parameters.get_u8();
            let length = usize::from(parameters.get_u8());
            if parameters.remaining() < length {
                return Err(
                    OpenError::Malformed("optional parameter longer than the parameters").into()
                );
            }
            let value = parameters.split_to(length);
            if kind != PARAMETER_CAPABILITIES {
                return Err(OpenError::UnsupportedOptionalParameter(kind).into());
            }
            capabilities.extend(Capability::decode_all(value)?);
        }
        if hold_time == 1 || hold_time == 2 {
            return Err(OpenError::UnacceptableHoldTime(hold_time).into());
        }
        if identifier.is_unspecified() {
            return Err(OpenError::BadBgpIdentifier(identifier).into());
        }
        Ok(Self { version, my_as, hold_time, identifier, capabilities })
    }
}
