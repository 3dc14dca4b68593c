//! Bad input: found before any VM starts, named after the flag or file at fault, exit code 2.
//! Everything else that fails is an `anyhow` chain of its area's own error types.

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);
