//! BGP messages on the wire: one type per message with `encode` and `decode`, framing as a
//! separate step (`Message::decode_frame`), decode errors mapped to NOTIFICATIONs in one place
//! (`error.rs`).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           Marker (16 octets of ones)          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Length               |      Type     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

pub mod attribute;
pub mod capability;
mod error;
pub mod iana;
pub mod notification;
pub mod open;
pub mod prefix;
pub mod update;

use bytes::{Buf, BufMut, Bytes, BytesMut};
pub use error::{DecodeError, HeaderError, OpenError, UpdateError, UpdateErrorAction};
use iana::MessageType;

use self::{attribute::AsWidth, notification::Notification, open::Open, update::Update};

/// Header length.
pub const HEADER_LEN: usize = 19;
/// Largest message without the extended message capability (RFC 4271).
pub const MAX_LEN: usize = 4096;
/// Largest message with it (RFC 8654).
pub const EXTENDED_MAX_LEN: usize = 65535;

/// What encoding and decoding depend on, as negotiated in the OPENs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireContext {
    /// AS number width in AS_PATH.
    pub as_width: AsWidth,
    /// Largest message accepted and sent.
    pub max_len: usize,
}

impl Default for WireContext {
    /// Before the OPENs are exchanged: 4096-byte messages, 2-octet AS_PATH (never used then).
    fn default() -> Self {
        Self { as_width: AsWidth::Four, max_len: MAX_LEN }
    }
}

/// A BGP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// OPEN.
    Open(Open),
    /// UPDATE.
    Update(Update),
    /// NOTIFICATION.
    Notification(Notification),
    /// KEEPALIVE.
    Keepalive,
    /// ROUTE-REFRESH for one family.
    RouteRefresh {
        /// AFI.
        afi: u16,
        /// SAFI.
        safi: u8,
    },
}

impl Message {
    /// Writes the whole message, header included.
    pub fn encode(&self, context: WireContext, out: &mut BytesMut) {
        let start = out.len();
        out.put_slice(&[0xff; 16]);
        out.put_u16(0); // length, patched below
        match self {
            Self::Open(open) => {
                out.put_u8(MessageType::Open as u8);
                open.encode(out);
            }
            Self::Update(update) => {
                out.put_u8(MessageType::Update as u8);
                update.encode(context.as_width, out);
            }
            Self::Notification(notification) => {
                out.put_u8(MessageType::Notification as u8);
                notification.encode(out);
            }
            Self::Keepalive => out.put_u8(MessageType::Keepalive as u8),
            Self::RouteRefresh { afi, safi } => {
                out.put_u8(MessageType::RouteRefresh as u8);
                out.put_u16(*afi);
                out.put_u8(0);
                out.put_u8(*safi);
            }
        }
        let length = (out.len() - start) as u16;
        out[start + 16..start + 18].copy_from_slice(&length.to_be_bytes());
    }

    /// Encoded length, for packing UPDATEs up to the message size limit.
    pub fn encoded_len(&self, context: WireContext) -> usize {
        let mut out = BytesMut::new();
        self.encode(context, &mut out);
        out.len()
    }

    /// Takes one whole message off the front of `buffer`, if one has arrived.
    pub fn decode_frame(
        buffer: &mut BytesMut,
        context: WireContext,
    ) -> Result<Option<Self>, DecodeError> {
        if buffer.len() < HEADER_LEN {
            return Ok(None);
        }
        if buffer[..16] != [0xff; 16] {
            return Err(HeaderError::ConnectionNotSynchronized.into());
        }
        let length = u16::from_be_bytes([buffer[16], buffer[17]]);
        let kind = buffer[18];
        let Some(kind) = MessageType::from_code(kind) else {
            return Err(HeaderError::BadMessageType(kind).into());
        };
        let (min, max) = match kind {
            MessageType::Open => (29, context.max_len.min(MAX_LEN)),
            MessageType::Update => (23, context.max_len),
            MessageType::Notification => (21, context.max_len),
            MessageType::Keepalive => (19, 19),
            MessageType::RouteRefresh => (23, 23),
        };
        if usize::from(length) < min || usize::from(length) > max {
            if kind == MessageType::RouteRefresh && usize::from(length) >= HEADER_LEN {
                return Err(DecodeError::RouteRefreshLength(length));
            }
            // A faulty NOTIFICATION is never answered with one (RFC 4271 section 6.4).
            if kind == MessageType::Notification {
                return Err(DecodeError::Notification);
            }
            return Err(HeaderError::BadMessageLength(length).into());
        }
        if buffer.len() < usize::from(length) {
            return Ok(None);
        }
        let mut frame = buffer.split_to(usize::from(length)).freeze();
        frame.advance(HEADER_LEN);
        Self::decode_body(kind, &mut frame, context).map(Some)
    }

    fn decode_body(
        kind: MessageType,
        body: &mut Bytes,
        context: WireContext,
    ) -> Result<Self, DecodeError> {
        Ok(match kind {
            MessageType::Open => Self::Open(Open::decode(body)?),
            MessageType::Update => Self::Update(Update::decode(body, context.as_width)?),
            MessageType::Notification => Self::Notification(Notification::decode(body)?),
            MessageType::Keepalive => Self::Keepalive,
            MessageType::RouteRefresh => {
                let afi = body.get_u16();
                body.get_u8();
                Self::RouteRefresh { afi, safi: body.get_u8() }
            }
        })
    }
}

#[cfg(test)]
mod tests;
