//! Decode errors, layered by message, and the one place they become NOTIFICATION
//! (code, subcode, data). RFC 7606 decides which UPDATE errors end the session and which
//! only withdraw the routes of the faulty UPDATE.

use super::{iana::notification as code, notification::Notification};

/// Why bytes from the peer are not a valid message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The 19-byte header is wrong.
    #[error("message header: {0}")]
    Header(#[from] HeaderError),
    /// An OPEN is malformed or unacceptable.
    #[error("OPEN: {0}")]
    Open(#[from] OpenError),
    /// An UPDATE is malformed.
    #[error("UPDATE: {0}")]
    Update(#[from] UpdateError),
    /// A NOTIFICATION is too short. It is never answered (RFC 4271 section 6.4).
    #[error("NOTIFICATION shorter than 2 bytes")]
    Notification,
    /// A ROUTE-REFRESH has the wrong length (RFC 7313 section 5).
    #[error("ROUTE-REFRESH with length {0}, not 23")]
    RouteRefreshLength(u16),
}

/// Message header errors (RFC 4271 section 6.1).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The marker is not all ones.
    #[error("marker is not all ones")]
    ConnectionNotSynchronized,
    /// The length is outside what the type allows.
    #[error("bad length {0}")]
    BadMessageLength(u16),
    /// The type is unknown.
    #[error("unknown message type {0}")]
    BadMessageType(u8),
}

/// OPEN errors (RFC 4271 section 6.2, RFC 5492).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Version other than 4; data: the version we support.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    /// The peer's AS is not the one configured.
    #[error("peer AS {0} is not the configured one")]
    BadPeerAs(u32),
    /// The BGP identifier is 0, or equal to ours on an iBGP session.
    #[error("bad BGP identifier {0}")]
    BadBgpIdentifier(std::net::Ipv4Addr),
    /// An optional parameter other than capabilities.
    #[error("unsupported optional parameter type {0}")]
    UnsupportedOptionalParameter(u8),
    /// Hold time 1 or 2 seconds.
    #[error("unacceptable hold time {0}s")]
    UnacceptableHoldTime(u16),
    /// A capability we require is missing or one the peer requires we cannot honour; data:
    /// the capability TLVs concerned.
    #[error("unsupported capability")]
    UnsupportedCapability(Vec<u8>),
    /// The OPEN's own structure is broken (lengths that do not add up).
    #[error("malformed: {0}")]
    Malformed(&'static str),
}

/// UPDATE errors (RFC 4271 section 6.3) and what RFC 7606 makes of them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// Lengths that do not add up, or MP_REACH_NLRI / MP_UNREACH_NLRI twice.
    #[error("malformed attribute list: {0}")]
    MalformedAttributeList(&'static str),
    /// The last attribute overruns the attribute list (RFC 7606 section 4): the NLRI are still
    /// where the list's length says.
    #[error("attribute list overrun: {0}")]
    AttributeListOverrun(&'static str),
    /// MP_REACH_NLRI or MP_UNREACH_NLRI malformed, e.g. a next hop length that does not fit
    /// the family (RFC 7606 section 7.11, RFC 4760).
    #[error("malformed {0}")]
    MalformedMpAttribute(&'static str),
    /// A well-known attribute is missing while NLRI are present; data: its type code.
    #[error("missing well-known attribute {0}")]
    MissingWellKnownAttribute(u8),
    /// Flags that contradict the attribute's definition; data: the attribute.
    #[error("attribute flags error")]
    AttributeFlags(Vec<u8>),
    /// A length that contradicts the attribute's definition; data: the attribute.
    #[error("attribute length error")]
    AttributeLength(Vec<u8>),
    /// ORIGIN other than 0, 1, 2; data: the attribute.
    #[error("invalid ORIGIN")]
    InvalidOrigin(Vec<u8>),
    /// A malformed AS_PATH.
    #[error("malformed AS_PATH")]
    MalformedAsPath,
    /// A prefix length beyond the family's, or NLRI that overrun the message.
    #[error("invalid network field")]
    InvalidNetworkField,
}

/// What to do about an UPDATE error (RFC 7606 section 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateErrorAction {
    /// Send the NOTIFICATION and reset the session.
    SessionReset,
    /// Treat the UPDATE's NLRI as withdrawn and keep the session.
    TreatAsWithdraw,
}

impl UpdateError {
    /// RFC 7606: attribute-level faults withdraw the UPDATE's routes; faults that make the
    /// NLRI themselves unreadable must reset the session.
    pub fn action(&self) -> UpdateErrorAction {
        match self {
            Self::InvalidNetworkField
            | Self::MalformedAttributeList(_)
            | Self::MalformedMpAttribute(_) => UpdateErrorAction::SessionReset,
            Self::AttributeListOverrun(_)
            | Self::MissingWellKnownAttribute(_)
            | Self::AttributeFlags(_)
            | Self::AttributeLength(_)
            | Self::InvalidOrigin(_)
            | Self::MalformedAsPath => UpdateErrorAction::TreatAsWithdraw,
        }
    }
}

impl DecodeError {
    /// The NOTIFICATION this error calls for; `None` for a malformed NOTIFICATION, which is
    /// never answered.
    pub fn notification(&self) -> Option<Notification> {
        let (error_code, subcode, data) = match self {
            Self::Header(HeaderError::ConnectionNotSynchronized) => {
                (code::MESSAGE_HEADER_ERROR, code::header::CONNECTION_NOT_SYNCHRONIZED, Vec::new())
            }
            Self::Header(HeaderError::BadMessageLength(length)) => (
                code::MESSAGE_HEADER_ERROR,
                code::header::BAD_MESSAGE_LENGTH,
                length.to_be_bytes().to_vec(),
            ),
            Self::Header(HeaderError::BadMessageType(kind)) => {
                (code::MESSAGE_HEADER_ERROR, code::header::BAD_MESSAGE_TYPE, vec![*kind])
            }
            Self::Open(error) => {
                let (subcode, data) = match error {
                    // Data: the largest version we support (RFC 4271 section 6.2).
                    OpenError::UnsupportedVersion(_) => {
                        (code::open::UNSUPPORTED_VERSION_NUMBER, vec![0, 4])
                    }
                    OpenError::BadPeerAs(_) => (code::open::BAD_PEER_AS, Vec::new()),
                    OpenError::BadBgpIdentifier(_) => (code::open::BAD_BGP_IDENTIFIER, Vec::new()),
                    OpenError::UnsupportedOptionalParameter(_) => {
                        (code::open::UNSUPPORTED_OPTIONAL_PARAMETER, Vec::new())
                    }
                    OpenError::UnacceptableHoldTime(_) => {
                        (code::open::UNACCEPTABLE_HOLD_TIME, Vec::new())
                    }
                    OpenError::UnsupportedCapability(data) => {
                        (code::open::UNSUPPORTED_CAPABILITY, data.clone())
                    }
                    // No subcode fits a broken structure; 0 is "unspecific" (RFC 4271 section 6.2).
                    OpenError::Malformed(_) => (0, Vec::new()),
                };
                (code::OPEN_MESSAGE_ERROR, subcode, data)
            }
            Self::Update(error) => {
                let (subcode, data) = match error {
                    UpdateError::MalformedAttributeList(_)
                    | UpdateError::AttributeListOverrun(_) => {
                        (code::update::MALFORMED_ATTRIBUTE_LIST, Vec::new())
                    }
                    UpdateError::MalformedMpAttribute(_) => {
                        (code::update::OPTIONAL_ATTRIBUTE_ERROR, Vec::new())
                    }
                    UpdateError::MissingWellKnownAttribute(kind) => {
                        (code::update::MISSING_WELL_KNOWN_ATTRIBUTE, vec![*kind])
                    }
                    UpdateError::AttributeFlags(data) => {
                        (code::update::ATTRIBUTE_FLAGS_ERROR, data.clone())
                    }
                    UpdateError::AttributeLength(data) => {
                        (code::update::ATTRIBUTE_LENGTH_ERROR, data.clone())
                    }
                    UpdateError::InvalidOrigin(data) => {
                        (code::update::INVALID_ORIGIN_ATTRIBUTE, data.clone())
                    }
                    UpdateError::MalformedAsPath => (code::update::MALFORMED_AS_PATH, Vec::new()),
                    UpdateError::InvalidNetworkField => {
                        (code::update::INVALID_NETWORK_FIELD, Vec::new())
                    }
                };
                (code::UPDATE_MESSAGE_ERROR, subcode, data)
            }
            Self::Notification => return None,
            // RFC 7313 section 5: Invalid Message Length, data: the whole message (omitted).
            Self::RouteRefreshLength(_) => (code::ROUTE_REFRESH_MESSAGE_ERROR, 1, Vec::new()),
        };
        Some(Notification { code: error_code, subcode, data })
    }
}
