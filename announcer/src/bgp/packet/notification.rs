//! NOTIFICATION (RFC 4271 section 4.5).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Error code    | Error subcode |   Data (variable)             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::DecodeError;

/// A NOTIFICATION: the sender closes the session after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Error code.
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
    /// Data, meaning depends on the code.
    pub data: Vec<u8>,
}

impl Notification {
    /// Writes the body.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.code);
        out.put_u8(self.subcode);
        out.put_slice(&self.data);
    }

    /// Reads the body.
    pub fn decode(body: &mut Bytes) -> Result<Self, DecodeError> {
        if body.remaining() < 2 {
            return Err(DecodeError::Notification);
        }
        let code = body.get_u8();
        let subcode = body.get_u8();
        Ok(Self { code, subcode, data: body.split_to(body.remaining()).to_vec() })
    }
}

impl std::fmt::Display for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use super::iana::notification as c;
        let name = match self.code {
            c::MESSAGE_HEADER_ERROR => "Message Header Error",
            c::OPEN_MESSAGE_ERROR => "OPEN Message Error",
            c::UPDATE_MESSAGE_ERROR => "UPDATE Message Error",
            c::HOLD_TIMER_EXPIRED => "Hold Timer Expired",
            c::FSM_ERROR => "Finite State Machine Error",
            c::CEASE => "Cease",
            c::ROUTE_REFRESH_MESSAGE_ERROR => "ROUTE-REFRESH Message Error",
            _ => "unknown error",
        };
        write!(f, "{name} (code {}, subcode {})", self.code, self.subcode)
    }
}
