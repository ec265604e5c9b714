//! Layer 2 mode's frames (groundwork: no socket or ownership uses them yet): ARP requests and
//! IPv6 neighbor solicitations read off the segment, and the answers that claim an IP built.

pub mod frames;
