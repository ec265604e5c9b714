//! Loopback ports for components a test starts.

use std::net::{SocketAddr, TcpListener};

/// A loopback address with a port that was free a moment ago. Components that can bind port 0
/// and report it should do that instead; this is for those that cannot.
pub fn free_loopback_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral loopback port");
    listener.local_addr().expect("local address of an ephemeral port")
}
