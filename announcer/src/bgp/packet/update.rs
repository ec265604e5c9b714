//! UPDATE (RFC 4271 section 4.3).
//!
//! ```text
//! +-----------------------------------------------------+
//! |   Withdrawn Routes Length (2 octets)                |
//! +-----------------------------------------------------+
//! |   Withdrawn Routes (variable)                       |
//! +-----------------------------------------------------+
//! |   Total Path Attribute Length (2 octets)            |
//! +-----------------------------------------------------+
//! |   Path Attributes (variable)                        |
//! +-----------------------------------------------------+
//! |   Network Layer Reachability Information (variable) |
//! +-----------------------------------------------------+
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ipnetwork::IpNetwork;

use super::{
    UpdateError,
    attribute::{AsWidth, Attribute},
    iana::attribute as code,
    prefix,
};

/// An UPDATE. IPv6 routes travel in the MP_REACH_NLRI / MP_UNREACH_NLRI attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// IPv4 prefixes withdrawn.
    pub withdrawn: Vec<IpNetwork>,
    /// Path attributes.
    pub attributes: Vec<Attribute>,
    /// IPv4 prefixes announced with the attributes.
    pub nlri: Vec<IpNetwork>,
}

impl Update {
    /// Whether this is an End-of-RIB marker (RFC 4724 section 2): IPv4, an empty UPDATE;
    /// other families, an UPDATE holding only an empty MP_UNREACH_NLRI.
    pub fn is_end_of_rib(&self) -> bool {
        self.withdrawn.is_empty()
            && self.nlri.is_empty()
            && match self.attributes.as_slice() {
                [] => true,
                [Attribute::MpUnreach { withdrawn, .. }] => withdrawn.is_empty(),
                _ => false,
            }
    }

    /// Writes the body.
    pub fn encode(&self, width: AsWidth, out: &mut BytesMut) {
        let mut withdrawn = BytesMut::new();
        self.withdrawn.iter().for_each(|p| prefix::encode(p, &mut withdrawn));
        out.put_u16(withdrawn.len() as u16);
        out.put_slice(&withdrawn);
        let mut attributes = BytesMut::new();
        self.attributes.iter().for_each(|a| a.encode(width, &mut attributes));
        out.put_u16(attributes.len() as u16);
        out.put_slice(&attributes);
        self.nlri.iter().for_each(|p| prefix::encode(p, out));
    }

    /// Reads the body.
    pub fn decode(body: &mut Bytes, width: AsWidth) -> Result<Self, UpdateError> {
        let malformed = UpdateError::MalformedAttributeList;
        if body.remaining() < 4 {
            return Err(malformed("shorter than 4 bytes"));
        }
        let withdrawn_length = usize::from(body.get_u16());
        if body.remaining() < withdrawn_length + 2 {
            return Err(malformed("withdrawn routes length overruns the message"));
        }
        let withdrawn = prefix::decode_all(body.split_to(withdrawn_length), false)?;
        let attributes_length = usize::from(body.get_u16());
        if body.remaining() < attributes_length {
            return Err(malformed("path attribute length overruns the message"));
        }
        let attributes = Attribute::decode_all(body.split_to(attributes_length), width)?;
        let nlri = prefix::decode_all(body.split_to(body.remaining()), false)?;
        if !nlri.is_empty() {
            // RFC 4271 section 6.3: IPv4 NLRI need ORIGIN, AS_PATH and NEXT_HOP.
            for required in [code::ORIGIN, code::AS_PATH, code::NEXT_HOP] {
                if !attributes.iter().any(|a| a.code() == required) {
                    return Err(UpdateError::MissingWellKnownAttribute(required));
                }
            }
        }
        Ok(Self { withdrawn, attributes, nlri })
    }
}
