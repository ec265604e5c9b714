//! The BGP speaker: the wire format (`packet`) and, in later modules, the session FSM.

pub mod advertise;
pub mod fsm;
pub mod md5;
pub mod packet;
pub mod received;
pub mod session;
