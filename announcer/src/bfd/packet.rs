//! BFD control packets (RFC 5880 section 4.1), without authentication: a packet with the A bit
//! is refused, since no session is configured with a key.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! |                       My Discriminator                        |
//! |                      Your Discriminator                       |
//! |                    Desired Min TX Interval                    |
//! |                   Required Min RX Interval                    |
//! |                 Required Min Echo RX Interval                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::time::Duration;

/// Length of a control packet without authentication.
pub const LEN: usize = 24;

/// Session state as carried on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// AdminDown.
    AdminDown = 0,
    /// Down.
    Down = 1,
    /// Init.
    Init = 2,
    /// Up.
    Up = 3,
}

impl State {
    fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => Self::AdminDown,
            1 => Self::Down,
            2 => Self::Init,
            _ => Self::Up,
        }
    }
}

/// Diagnostic codes (RFC 5880 section 4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Diagnostic {
    /// No diagnostic.
    None = 0,
    /// Control detection time expired.
    DetectionTimeExpired = 1,
    /// Echo function failed.
    EchoFailed = 2,
    /// The neighbor signaled session down.
    NeighborSignaledDown = 3,
    /// Administratively down.
    AdministrativelyDown = 7,
}

impl Diagnostic {
    /// The RFC's wording, for status and logs.
    pub fn describe(self) -> &'static str {
        match self {
            Self::None => "no diagnostic",
            Self::DetectionTimeExpired => "control detection time expired",
            Self::EchoFailed => "echo function failed",
            Self::NeighborSignaledDown => "neighbor signaled session down",
            Self::AdministrativelyDown => "administratively down",
        }
    }

    fn from_bits(bits: u8) -> Self {
        match bits & 0x1f {
            1 => Self::DetectionTimeExpired,
            2 => Self::EchoFailed,
            3 => Self::NeighborSignaledDown,
            7 => Self::AdministrativelyDown,
            _ => Self::None,
        }
    }
}

/// A control packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlPacket {
    /// Why the sender's session last went down.
    pub diagnostic: Diagnostic,
    /// The sender's session state.
    pub state: State,
    /// Poll: the sender asks for a Final.
    pub poll: bool,
    /// Final: the answer to a Poll.
    pub final_: bool,
    /// Detect multiplier.
    pub detect_mult: u8,
    /// The sender's discriminator.
    pub my_discriminator: u32,
    /// The receiver's discriminator, 0 while unknown.
    pub your_discriminator: u32,
    /// Desired minimum transmit interval.
    pub desired_min_tx: Duration,
    /// Required minimum receive interval.
    pub required_min_rx: Duration,
    /// Required minimum echo receive interval (0: no echo).
    pub required_min_echo_rx: Duration,
}

/// Why a received packet is discarded (RFC 5880 section 6.8.6).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than 24 bytes or than its Length field.
    #[error("truncated: {0} bytes")]
    Truncated(usize),
    /// Version other than 1.
    #[error("version {0}, not 1")]
    Version(u8),
    /// A Length field below 24.
    #[error("length field {0} below 24")]
    Length(u8),
    /// Authentication present, none configured.
    #[error("authentication present, none configured")]
    Authenticated,
    /// Detect Mult of zero.
    #[error("detect multiplier 0")]
    DetectMult,
    /// The Multipoint bit set.
    #[error("multipoint bit set")]
    Multipoint,
    /// My Discriminator of zero.
    #[error("my discriminator 0")]
    MyDiscriminator,
}

fn micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}

impl ControlPacket {
    /// The 24 bytes on the wire.
    pub fn encode(&self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[0] = (1 << 5) | (self.diagnostic as u8);
        out[1] =
            ((self.state as u8) << 6) | (u8::from(self.poll) << 5) | (u8::from(self.final_) << 4);
        out[2] = self.detect_mult;
        out[3] = LEN as u8;
        out[4..8].copy_from_slice(&self.my_discriminator.to_be_bytes());
        out[8..12].copy_from_slice(&self.your_discriminator.to_be_bytes());
        out[12..16].copy_from_slice(&micros(self.desired_min_tx).to_be_bytes());
        out[16..20].copy_from_slice(&micros(self.required_min_rx).to_be_bytes());
        out[20..24].copy_from_slice(&micros(self.required_min_echo_rx).to_be_bytes());
        out
    }

    /// Reads a packet as received in one UDP datagram, with the checks of RFC 5880 section
    /// 6.8.6 that need no session.
    pub fn decode(bytes: &[u8]) -> Result<Self, PacketError> {
        if bytes.len() < LEN {
            return Err(PacketError::Truncated(bytes.len()));
        }
        let version = bytes[0] >> 5;
        if version != 1 {
            return Err(PacketError::Version(version));
        }
        let length = bytes[3];
        if usize::from(length) < LEN {
            return Err(PacketError::Length(length));
        }
        if usize::from(length) > bytes.len() {
            return Err(PacketError::Truncated(bytes.len()));
        }
        let flags = bytes[1];
        if flags & 0x04 != 0 {
            return Err(PacketError::Authenticated);
        }
        if flags & 0x01 != 0 {
            return Err(PacketError::Multipoint);
        }
        if bytes[2] == 0 {
            return Err(PacketError::DetectMult);
        }
        let word = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        if word(4) == 0 {
            return Err(PacketError::MyDiscriminator);
        }
        let interval = |at: usize| Duration::from_micros(u64::from(word(at)));
        Ok(Self {
            diagnostic: Diagnostic::from_bits(bytes[0]),
            state: State::from_bits(flags >> 6),
            poll: flags & 0x20 != 0,
            final_: flags & 0x10 != 0,
            detect_mult: bytes[2],
            my_discriminator: word(4),
            your_discriminator: word(8),
            desired_min_tx: interval(12),
            required_min_rx: interval(16),
            required_min_echo_rx: interval(20),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet() -> ControlPacket {
        ControlPacket {
            diagnostic: Diagnostic::DetectionTimeExpired,
            state: State::Init,
            poll: true,
            final_: false,
            detect_mult: 3,
            my_discriminator: 0x0102_0304,
            your_discriminator: 7,
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            required_min_echo_rx: Duration::ZERO,
        }
    }

    #[test]
    fn a_packet_round_trips_as_the_rfc_lays_it_out() {
        let bytes = packet().encode();
        // Version 1, diag 1; Init (2) with Poll; mult 3; length 24; 300 ms = 300,000 µs.
        assert_eq!(&bytes[..4], &[0x21, 0xa0, 3, 24]);
        assert_eq!(&bytes[4..8], &[1, 2, 3, 4]);
        assert_eq!(&bytes[12..16], &300_000u32.to_be_bytes());
        assert_eq!(ControlPacket::decode(&bytes).unwrap(), packet());
    }

    /// A packet spoiled at `at` with `value` (or cut to `at` bytes when `value` is `None`).
    fn spoiled(at: usize, value: Option<u8>) -> Vec<u8> {
        let mut bytes = packet().encode().to_vec();
        match value {
            Some(value) => bytes[at] = value,
            None => bytes.truncate(at),
        }
        bytes
    }

    #[test]
    fn packets_the_rfc_says_to_discard_are_refused_with_the_reason() {
        let flags = packet().encode()[1];
        let cases = [
            ("short", spoiled(20, None), PacketError::Truncated(20)),
            ("version 2", spoiled(0, Some(0x41)), PacketError::Version(2)),
            ("length 20", spoiled(3, Some(20)), PacketError::Length(20)),
            ("length beyond the datagram", spoiled(3, Some(30)), PacketError::Truncated(24)),
            ("authenticated", spoiled(1, Some(flags | 0x04)), PacketError::Authenticated),
            ("multipoint", spoiled(1, Some(flags | 0x01)), PacketError::Multipoint),
            ("detect multiplier 0", spoiled(2, Some(0)), PacketError::DetectMult),
        ];
        for (name, bytes, expected) in cases {
            assert_eq!(ControlPacket::decode(&bytes), Err(expected), "{name}");
        }
        let mut no_discriminator = packet().encode();
        no_discriminator[4..8].fill(0);
        assert_eq!(ControlPacket::decode(&no_discriminator), Err(PacketError::MyDiscriminator));
    }
}
