//! Layer 2 mode in the allocator: which one node answers ARP/NDP for each IP, decided here,
//! in one place, from the configuration, the Services' endpoints, the nodes, and which
//! announcers are alive (their assignment streams). The timing that keeps two nodes from ever
//! answering together is in `fencing` and argued in docs/design.md ("Layer 2 fencing").

mod eligibility;
mod fencing;
mod ownership;
mod rendezvous;

pub use eligibility::{Candidates, eligible};
pub use fencing::L2Fencing;
pub use ownership::{L2Owners, Owner};
