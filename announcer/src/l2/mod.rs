//! Layer 2 mode: the node answers ARP requests and IPv6 neighbor solicitations for the IPs it
//! owns, on the interfaces where those IPs belong, and announces each IP it starts answering
//! for with gratuitous ARP or unsolicited neighbor advertisements.

pub mod announcements;
pub mod answer;
pub mod frames;
pub mod interfaces;
pub mod netlink;
mod ownership;
pub mod packet_socket;
mod responder;
mod retry;
pub mod speaker;
#[cfg(test)]
mod test_frames;

pub use ownership::follow_ownership;
pub use speaker::{L2Options, L2Speaker, OwnedIps};
