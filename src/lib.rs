//! perfvm: measure how a server program behaves inside a real virtual machine.
//!
//! A *cell* boots a libvirt guest with a given RAM size, starts the target as a systemd unit
//! through cloud-init, uploads a generated file over HTTP while sampling the target's memory, and
//! writes one JSON result. See `pipeline` for the cell, read top to bottom.

pub mod accel;
pub mod cloudinit;
pub mod error;
pub mod exit;
pub mod guest;
pub mod history;
pub mod hostfacts;
pub mod hosts;
pub mod hypervisor;
pub mod image;
pub mod limit;
pub mod owner;
pub mod paths;
pub mod pipeline;
pub mod plan;
pub mod proc;
pub mod report;
pub mod results;
pub mod rundir;
pub mod sampler;
pub mod saved;
pub mod setup;
pub mod single;
pub mod size;
pub mod stats;
pub mod profile;
pub mod upload;
pub mod cli;
pub mod matrix;
pub mod ui;
