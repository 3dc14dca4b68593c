//! `results.json`: run metadata, every cell's result, and a summary.

use crate::results::model::CellResult;
use std::collections::BTreeMap;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunMetadata {
    pub run_key: String,
    pub perfvm_version: String,
    pub git_rev: Option<String>,
    pub host: String,
    pub kernel: String,
    pub libvirt_version: Option<String>,
    pub qemu_version: Option<String>,
    pub accel: String,
    pub image_id: String,
    pub target: String,
    pub target_mode: String,
    pub jobs: usize,
    pub started: chrono::DateTime<chrono::Utc>,
    pub finished: Option<chrono::DateTime<chrono::Utc>>,
    pub definition: crate::matrix::expand::RunDefinition,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunSummary {
    /// Cells of the matrix (every repetition counts).
    pub cells: usize,
    pub finished: usize,
    pub passed: usize,
    pub failed: usize,
    pub failed_by_reason: BTreeMap<String, usize>,
    /// Attempts, including retried infrastructure failures.
    pub attempts: usize,
    pub total_seconds: Option<f64>,
}

/// Summary over the final result of each cell.
pub fn summarize(total_cells: usize, finals: &[&CellResult], attempts: usize, total_seconds: Option<f64>) -> RunSummary {
    let mut failed_by_reason = BTreeMap::new();
    for r in finals.iter().filter(|r| !r.success) {
        *failed_by_reason.entry(r.exit_reason.as_str().to_string()).or_insert(0) += 1;
    }
    let passed = finals.iter().filter(|r| r.success).count();
    RunSummary {
        cells: total_cells,
        finished: finals.len(),
        passed,
        failed: finals.len() - passed,
        failed_by_reason,
        attempts,
        total_seconds,
    }
}

#[derive(serde::Serialize)]
struct Doc<'a> {
    metadata: &'a RunMetadata,
    summary: &'a RunSummary,
    cells: Vec<&'a CellResult>,
}

pub fn export(meta: &RunMetadata, summary: &RunSummary, all_attempts: &[CellResult]) -> Vec<u8> {
    let doc = Doc { metadata: meta, summary, cells: super::sorted(all_attempts) };
    let mut v = serde_json::to_vec_pretty(&doc).expect("serialize results");
    v.push(b'\n');
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::model::ExitReason;

    #[test]
    fn summary_counts_by_reason() {
        let ok: CellResult = serde_json::from_str(include_str!("../../../tests/data/result-sample.json")).unwrap();
        let mut oom = ok.clone();
        oom.success = false;
        oom.exit_reason = ExitReason::OomKilled;
        let s = summarize(4, &[&ok, &oom, &oom], 4, Some(10.0));
        assert_eq!((s.cells, s.finished, s.passed, s.failed, s.attempts), (4, 3, 1, 2, 4));
        assert_eq!(s.failed_by_reason.get("oom_killed"), Some(&2));
    }
}
