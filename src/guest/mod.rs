//! Talking to the guest through the QEMU guest agent, via libvirt (no ssh, no network).

pub mod agent;
pub mod memory;
pub mod pidstat;
pub mod probe;
pub mod sockets;
pub mod tickline;
pub mod unit;
