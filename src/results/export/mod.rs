//! Matrix exports, one file per format. Each exporter is pure (results in, bytes out); the
//! caller writes atomically after every cell, so a crash never loses a finished cell.

pub mod csv;
pub mod json;
pub mod summary;

use super::model::CellResult;

/// The final result of each cell that has one: its last finished attempt.
pub fn finals(results: &[CellResult]) -> Vec<&CellResult> {
    let mut last = std::collections::BTreeMap::new();
    for r in results.iter().filter(|r| !r.interrupted) {
        let e = last.entry(r.key()).or_insert(r);
        if r.attempt > e.attempt {
            *e = r;
        }
    }
    last.into_values().collect()
}

/// Final results as the repetition policy sees them: each cell with its throughput if it passed.
pub fn settled<'a>(finals: impl IntoIterator<Item = &'a CellResult>) -> crate::plan::repeats::Settled {
    crate::plan::repeats::Settled::from_cells(finals.into_iter().map(|r| (r.key(), if r.success { r.throughput_mbps } else { None })))
}

/// Rows in a stable order: RAM, size, concurrency, repetition, attempt.
pub fn sorted(results: &[CellResult]) -> Vec<&CellResult> {
    let mut v: Vec<&CellResult> = results.iter().collect();
    v.sort_by_key(|r| (r.ram_mb, r.file_size_bytes, r.concurrency, r.repeat, r.attempt));
    v
}
