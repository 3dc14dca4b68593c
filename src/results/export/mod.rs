//! Matrix exports, one file per format, behind one trait. Each exporter is pure (a view of the
//! run in, bytes out); the matrix writes every one atomically into the run directory after
//! every cell, so a crash never loses a finished cell.

pub mod csv;
pub mod json;
pub mod junit;
pub mod limit;
pub mod summary;
pub mod targets;

use super::model::CellResult;
use crate::plan::repeats::{Adaptive, Stop};
use std::collections::BTreeMap;

/// What the exporters see of a matrix run.
pub struct RunView<'a> {
    pub meta: &'a json::RunMetadata,
    /// Every finished attempt, and the final one of each cell.
    pub results: &'a [CellResult],
    pub finals: Vec<&'a CellResult>,
    pub summary: json::RunSummary,
    /// With `--target-rsd`: the policy, and why each settled shape stopped.
    pub adaptive: Option<Adaptive>,
    pub stops: BTreeMap<String, Stop>,
    /// The definition's RAM sizes and file sizes (bytes, label), sorted.
    pub rams: Vec<u64>,
    pub sizes: Vec<(u64, String)>,
    /// Where an attempt's result.json is, relative to the run directory.
    pub result_path: fn(&CellResult) -> String,
}

/// One output file of a matrix run.
pub trait Exporter {
    fn file_name(&self) -> &'static str;
    fn export(&self, run: &RunView) -> Vec<u8>;
}

/// matrix.csv, results.json, summary.txt.
pub fn all() -> [&'static dyn Exporter; 3] {
    [&csv::Csv, &json::Json, &summary::Summary]
}

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
