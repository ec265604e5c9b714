//! BFD (RFC 5880 asynchronous mode, RFC 5881 single hop): the control packet and a session
//! state machine without I/O. Not yet wired to sockets or to the BGP sessions.

pub mod packet;
pub mod session;
