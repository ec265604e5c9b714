//! BFD (RFC 5880 asynchronous mode; RFC 5881 single hop, RFC 5883 multihop): the control
//! packet, a session state machine without I/O, the UDP sockets, and the registry that runs
//! one session per peer address for the BGP sessions that ask for it.

pub mod packet;
pub mod peer;
pub mod registry;
pub mod session;
pub mod socket;
mod ttl;

pub use peer::BfdStatus;
pub use registry::{BfdPeer, BfdRegistry, BfdWatch};
