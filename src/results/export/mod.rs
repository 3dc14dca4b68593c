//! Matrix exports, one file per format. Each exporter is pure (results in, bytes out); the
//! caller writes atomically after every cell, so a crash never loses a finished cell.

pub mod csv;
pub mod json;
pub mod summary;

use super::model::CellResult;

/// Rows in a stable order: RAM, size, concurrency, repetition, attempt.
pub fn sorted(results: &[CellResult]) -> Vec<&CellResult> {
    let mut v: Vec<&CellResult> = results.iter().collect();
    v.sort_by_key(|r| (r.ram_mb, r.file_size_bytes, r.concurrency, r.repeat, r.attempt));
    v
}
