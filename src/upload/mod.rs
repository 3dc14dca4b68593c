//! The workload: a generated file streamed to the target over HTTP.

pub mod client;
pub mod payload;
