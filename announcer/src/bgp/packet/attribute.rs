//! Path attributes (RFC 4271 section 4.3 and 5, RFC 4760, RFC 1997, RFC 6793, RFC 8092).
//!
//! ```text
//!  0                   1
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
//! +---------------+---------------+
//! |  Attr. Flags  |Attr. Type Code|   then 1 or 2 length octets (extended length flag)
//! +---------------+---------------+
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ipnetwork::IpNetwork;

use super::{UpdateError, iana::afi, iana::attribute as code, prefix};

const OPTIONAL: u8 = 0x80;
const TRANSITIVE: u8 = 0x40;
const PARTIAL: u8 = 0x20;
const EXTENDED_LENGTH: u8 = 0x10;

/// ORIGIN values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// IGP.
    Igp = 0,
    /// EGP.
    Egp = 1,
    /// INCOMPLETE.
    Incomplete = 2,
}

/// An AS_PATH segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// AS_SET.
    Set(Vec<u32>),
    /// AS_SEQUENCE.
    Sequence(Vec<u32>),
}

/// How AS numbers are written in AS_PATH and AGGREGATOR on this session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsWidth {
    /// 2 octets (a peer without the 4-octet AS capability).
    Two,
    /// 4 octets.
    Four,
}

/// One path attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attribute {
    /// ORIGIN.
    Origin(Origin),
    /// AS_PATH.
    AsPath(Vec<Segment>),
    /// NEXT_HOP (IPv4 NLRI only).
    NextHop(Ipv4Addr),
    /// MULTI_EXIT_DISC.
    Med(u32),
    /// LOCAL_PREF.
    LocalPref(u32),
    /// COMMUNITIES.
    Communities(Vec<u32>),
    /// LARGE_COMMUNITY.
    LargeCommunities(Vec<(u32, u32, u32)>),
    /// MP_REACH_NLRI.
    MpReach {
        /// AFI.
        afi: u16,
        /// SAFI.
        safi: u8,
        /// Next hops (IPv6: global, then link-local if present).
        next_hops: Vec<IpAddr>,
        /// Prefixes.
        nlri: Vec<IpNetwork>,
    },
    /// MP_UNREACH_NLRI.
    MpUnreach {
        /// AFI.
        afi: u16,
        /// SAFI.
        safi: u8,
        /// Withdrawn prefixes.
        withdrawn: Vec<IpNetwork>,
    },
    /// AS4_PATH (sent alongside a 2-octet AS_PATH).
    As4Path(Vec<Segment>),
    /// Anything else, kept as it came.
    Unknown {
        /// Flags.
        flags: u8,
        /// Type code.
        code: u8,
        /// Value.
        value: Vec<u8>,
    },
}

impl Attribute {
    /// The type code.
    pub fn code(&self) -> u8 {
        match self {
            Self::Origin(_) => code::ORIGIN,
            Self::AsPath(_) => code::AS_PATH,
            Self::NextHop(_) => code::NEXT_HOP,
            Self::Med(_) => code::MULTI_EXIT_DISC,
            Self::LocalPref(_) => code::LOCAL_PREF,
            Self::Communities(_) => code::COMMUNITIES,
            Self::LargeCommunities(_) => code::LARGE_COMMUNITY,
            Self::MpReach { .. } => code::MP_REACH_NLRI,
            Self::MpUnreach { .. } => code::MP_UNREACH_NLRI,
            Self::As4Path(_) => code::AS4_PATH,
            Self::Unknown { code, .. } => *code,
        }
    }

    fn flags(&self) -> u8 {
        match self {
            Self::Origin(_) | Self::AsPath(_) | Self::NextHop(_) | Self::LocalPref(_) => TRANSITIVE,
            Self::Med(_) | Self::MpReach { .. } | Self::MpUnreach { .. } => OPTIONAL,
            Self::Communities(_) | Self::LargeCommunities(_) | Self::As4Path(_) => {
                OPTIONAL | TRANSITIVE
            }
            Self::Unknown { flags, .. } => *flags & !EXTENDED_LENGTH,
        }
    }

    /// Writes flags, code, length and value.
    pub fn encode(&self, width: AsWidth, out: &mut BytesMut) {
        let mut value = BytesMut::new();
        match self {
            Self::Origin(origin) => value.put_u8(*origin as u8),
            Self::AsPath(segments) => encode_segments(segments, width, &mut value),
            Self::As4Path(segments) => encode_segments(segments, AsWidth::Four, &mut value),
            Self::NextHop(ip) => value.put_slice(&ip.octets()),
            Self::Med(v) | Self::LocalPref(v) => value.put_u32(*v),
            Self::Communities(communities) => communities.iter().for_each(|c| value.put_u32(*c)),
            Self::LargeCommunities(communities) => {
                for (a, b, c) in communities {
                    value.put_u32(*a);
                    value.put_u32(*b);
                    value.put_u32(*c);
                }
            }
            Self::MpReach { afi, safi, next_hops, nlri } => {
                value.put_u16(*afi);
                value.put_u8(*safi);
                let mut hops = BytesMut::new();
                for hop in next_hops {
                    match hop {
                        IpAddr::V4(ip) => hops.put_slice(&ip.octets()),
                        IpAddr::V6(ip) => hops.put_slice(&ip.octets()),
                    }
                }
                value.put_u8(hops.len() as u8);
                value.put_slice(&hops);
                value.put_u8(0);
                nlri.iter().for_each(|p| prefix::encode(p, &mut value));
            }
            Self::MpUnreach { afi, safi, withdrawn } => {
                value.put_u16(*afi);
                value.put_u8(*safi);
                withdrawn.iter().for_each(|p| prefix::encode(p, &mut value));
            }
            Self::Unknown { value: raw, .. } => value.put_slice(raw),
        }
        let mut flags = self.flags();
        if value.len() > 255 {
            flags |= EXTENDED_LENGTH;
        }
        out.put_u8(flags);
        out.put_u8(self.code());
        if flags & EXTENDED_LENGTH != 0 {
            out.put_u16(value.len() as u16);
        } else {
            out.put_u8(value.len() as u8);
        }
        out.put_slice(&value);
    }

    /// Reads every attribute of an UPDATE's path attributes field.
    pub fn decode_all(mut data: Bytes, width: AsWidth) -> Result<Vec<Self>, UpdateError> {
        let mut attributes: Vec<Self> = Vec::new();
        while data.has_remaining() {
            // RFC 7606 section 4: an attribute overrunning the list is treat-as-withdraw.
            if data.remaining() < 3 {
                return Err(UpdateError::AttributeListOverrun("truncated attribute header"));
            }
            let start = data.clone();
            let flags = data.get_u8();
            let code = data.get_u8();
            let length = if flags & EXTENDED_LENGTH != 0 {
                if data.remaining() < 2 {
                    return Err(UpdateError::AttributeListOverrun("truncated attribute length"));
                }
                usize::from(data.get_u16())
            } else {
                usize::from(data.get_u8())
            };
            if data.remaining() < length {
                return Err(UpdateError::AttributeListOverrun(
                    "attribute longer than the attribute list",
                ));
            }
            let value = data.split_to(length);
            let whole = start.slice(..start.len() - data.len());
            // RFC 7606 section 3 (g): MP_REACH_NLRI or MP_UNREACH_NLRI twice is a malformed
            // list; any other attribute after its first occurrence is discarded, unread.
            if attributes.iter().any(|a| a.code() == code) {
                if code == code::MP_REACH_NLRI || code == code::MP_UNREACH_NLRI {
                    return Err(UpdateError::MalformedAttributeList(
                        "MP_REACH_NLRI or MP_UNREACH_NLRI appears twice",
                    ));
                }
                continue;
            }
            attributes.push(decode_one(flags, code, value, width, &whole)?);
        }
        Ok(attributes)
    }
}

/// Whether an MP_REACH_NLRI / MP_UNREACH_NLRI value is of a family we speak (IPv4 or IPv6
/// unicast); one too short to say is treated as ours, so that it is reported as malformed.
fn ours(value: &Bytes) -> bool {
    if value.len() < 3 {
        return true;
    }
    let afi_value = u16::from_be_bytes([value[0], value[1]]);
    (afi_value == afi::IPV4 || afi_value == afi::IPV6) && value[2] == super::iana::safi::UNICAST
}

fn expected_flags(code: u8) -> Option<u8> {
    Some(match code {
        code::ORIGIN
        | code::AS_PATH
        | code::NEXT_HOP
        | code::LOCAL_PREF
        | code::ATOMIC_AGGREGATE => TRANSITIVE,
        code::MULTI_EXIT_DISC | code::MP_REACH_NLRI | code::MP_UNREACH_NLRI => OPTIONAL,
        code::AGGREGATOR
        | code::COMMUNITIES
        | code::AS4_PATH
        | code::AS4_AGGREGATOR
        | code::LARGE_COMMUNITY => OPTIONAL | TRANSITIVE,
        _ => return None,
    })
}

fn decode_one(
    flags: u8,
    code: u8,
    mut value: Bytes,
    width: AsWidth,
    whole: &Bytes,
) -> Result<Attribute, UpdateError> {
    if let Some(expected) = expected_flags(code)
        && flags & (OPTIONAL | TRANSITIVE) != expected
    {
        return Err(UpdateError::AttributeFlags(whole.to_vec()));
    }
    let length_error = || UpdateError::AttributeLength(whole.to_vec());
    let length = value.len();
    Ok(match code {
        code::ORIGIN => {
            if length != 1 {
                return Err(length_error());
            }
            match value.get_u8() {
                0 => Attribute::Origin(Origin::Igp),
                1 => Attribute::Origin(Origin::Egp),
                2 => Attribute::Origin(Origin::Incomplete),
                _ => return Err(UpdateError::InvalidOrigin(whole.to_vec())),
            }
        }
        code::AS_PATH => Attribute::AsPath(decode_segments(value, width)?),
        code::AS4_PATH => Attribute::As4Path(decode_segments(value, AsWidth::Four)?),
        code::NEXT_HOP if length == 4 => Attribute::NextHop(Ipv4Addr::from(value.get_u32())),
        code::MULTI_EXIT_DISC if length == 4 => Attribute::Med(value.get_u32()),
        code::LOCAL_PREF if length == 4 => Attribute::LocalPref(value.get_u32()),
        code::NEXT_HOP | code::MULTI_EXIT_DISC | code::LOCAL_PREF => return Err(length_error()),
        code::COMMUNITIES if length.is_multiple_of(4) => {
            Attribute::Communities((0..length / 4).map(|_| value.get_u32()).collect())
        }
        code::LARGE_COMMUNITY if length.is_multiple_of(12) => Attribute::LargeCommunities(
            (0..length / 12).map(|_| (value.get_u32(), value.get_u32(), value.get_u32())).collect(),
        ),
        code::COMMUNITIES | code::LARGE_COMMUNITY => return Err(length_error()),
        // RFC 4760 / RFC 7606 section 7.11: a family other than the unicast ones we speak is
        // kept unread and ignored; a malformed one of ours resets the session.
        code::MP_REACH_NLRI | code::MP_UNREACH_NLRI if !ours(&value) => Attribute::Unknown {
            flags: flags & !(EXTENDED_LENGTH | PARTIAL),
            code,
            value: value.to_vec(),
        },
        code::MP_REACH_NLRI => {
            let malformed = UpdateError::MalformedMpAttribute;
            if length < 5 {
                return Err(malformed("MP_REACH_NLRI shorter than 5 bytes"));
            }
            let afi_value = value.get_u16();
            let safi = value.get_u8();
            let hop_length = usize::from(value.get_u8());
            if value.remaining() < hop_length + 1 {
                return Err(malformed("MP_REACH_NLRI next hop overruns the attribute"));
            }
            let mut hops = value.split_to(hop_length);
            value.get_u8(); // reserved
            let ipv6 = afi_value == afi::IPV6;
            let next_hops = match (ipv6, hop_length) {
                (false, 4) => vec![IpAddr::V4(Ipv4Addr::from(hops.get_u32()))],
                (true, 16) => vec![IpAddr::V6(Ipv6Addr::from(hops.get_u128()))],
                (true, 32) => vec![
                    IpAddr::V6(Ipv6Addr::from(hops.get_u128())),
                    IpAddr::V6(Ipv6Addr::from(hops.get_u128())),
                ],
                _ => {
                    return Err(malformed("MP_REACH_NLRI next hop length does not fit its family"));
                }
            };
            Attribute::MpReach {
                afi: afi_value,
                safi,
                next_hops,
                nlri: prefix::decode_all(value, ipv6)?,
            }
        }
        code::MP_UNREACH_NLRI => {
            if length < 3 {
                return Err(UpdateError::MalformedMpAttribute(
                    "MP_UNREACH_NLRI shorter than 3 bytes",
                ));
            }
            let afi_value = value.get_u16();
            let safi = value.get_u8();
            Attribute::MpUnreach {
                afi: afi_value,
                safi,
                withdrawn: prefix::decode_all(value, afi_value == afi::IPV6)?,
            }
        }
        _ => Attribute::Unknown {
            flags: flags & !(EXTENDED_LENGTH | PARTIAL),
            code,
            value: value.to_vec(),
        },
    })
}

fn encode_segments(segments: &[Segment], width: AsWidth, out: &mut BytesMut) {
    for segment in segments {
        let (kind, asns) = match segment {
            Segment::Set(asns) => (1u8, asns),
            Segment::Sequence(asns) => (2u8, asns),
        };
        out.put_u8(kind);
        out.put_u8(asns.len() as u8);
        for asn in asns {
            match width {
                AsWidth::Four => out.put_u32(*asn),
                // RFC 6793: an AS that does not fit is written as AS_TRANS; AS4_PATH carries it.
                AsWidth::Two => out.put_u16(u16::try_from(*asn).unwrap_or(super::open::AS_TRANS)),
            }
        }
    }
}

fn decode_segments(mut value: Bytes, width: AsWidth) -> Result<Vec<Segment>, UpdateError> {
    let size = match width {
        AsWidth::Two => 2,
        AsWidth::Four => 4,
    };
    let mut segments = Vec::new();
    while value.has_remaining() {
        if value.remaining() < 2 {
            return Err(UpdateError::MalformedAsPath);
        }
        let kind = value.get_u8();
        let count = usize::from(value.get_u8());
        if count == 0 || value.remaining() < count * size {
            return Err(UpdateError::MalformedAsPath);
        }
        let asns: Vec<u32> = (0..count)
            .map(|_| if size == 2 { u32::from(value.get_u16()) } else { value.get_u32() })
            .collect();
        segments.push(match kind {
            1 => Segment::Set(asns),
            2 => Segment::Sequence(asns),
            _ => return Err(UpdateError::MalformedAsPath),
        });
    }
    Ok(segments)
}
