//! The workload: bytes (generated or a user's file) streamed to the target over HTTP.

pub mod client;
pub mod content;
pub mod files;
pub mod payload;
pub mod session;
