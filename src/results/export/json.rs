//! `results.json`: run metadata, every cell's result, and a summary.

use crate::results::model::CellResult;
use crate::stats::{Stats, outliers, stats};
use std::collections::BTreeMap;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunMetadata {
    pub run_key: String,
    /// This run's own identity: made when its directory was first made, kept on resume. Two
    /// results directories holding a run of the same definition (fresh CI workspaces, a
    /// replayed snapshot) are two runs. Absent in runs of an older perfvm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_uid: Option<String>,
    /// `--label`, recorded with the run.
    #[serde(default)]
    pub label: Option<String>,
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
    pub definition: crate::plan::definition::RunDefinition,
    /// The target's profile file, when the target came from one (for `perfvm snapshot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_profile: Option<String>,
    /// The libvirt hosts of the run, with jobs and budget each.
    #[serde(default)]
    pub hosts: Vec<String>,
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

/// Statistics over the repetitions of one cell shape (`--repeat` > 1), passed ones only.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RepeatSummary {
    /// `512-1G` or `512-1G-c4`.
    pub shape: String,
    pub repetitions: usize,
    pub passed: usize,
    pub duration_seconds: Option<Stats>,
    pub throughput_mbps: Option<Stats>,
    pub peak_memory_mb: Option<Stats>,
    /// Repetitions whose throughput or peak memory is an outlier (modified z-score > 3.5).
    pub outlier_repeats: Vec<u32>,
    /// With `--target-rsd`: why this cell got no more repetitions (absent while it may).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<crate::plan::repeats::Stop>,
}

/// One entry per cell shape that has more than one repetition.
pub fn repeats(finals: &[&CellResult]) -> Vec<RepeatSummary> {
    // By shape: the repetitions of one target's cell, never two targets' cells together.
    let mut by: BTreeMap<crate::plan::key::CellKey, Vec<&CellResult>> = BTreeMap::new();
    for r in finals {
        by.entry(crate::plan::repeats::shape_of(&r.key())).or_default().push(r);
    }
    by.into_values()
        .filter(|rs| rs.len() > 1)
        .map(|rs| {
            let ok: Vec<&&CellResult> = rs.iter().filter(|r| r.success).collect();
            let col = |f: fn(&CellResult) -> Option<f64>| ok.iter().filter_map(|r| f(r)).collect::<Vec<f64>>();
            let (tp, pk) = (col(|r| r.throughput_mbps), col(|r| r.peak_memory_mb));
            let mut outlier_repeats: Vec<u32> = Vec::new();
            for values in [&tp, &pk] {
                if values.len() == ok.len() {
                    outlier_repeats.extend(ok.iter().zip(outliers(values)).filter(|(_, o)| *o).map(|(r, _)| r.repeat));
                }
            }
            outlier_repeats.sort_unstable();
            outlier_repeats.dedup();
            let r0 = rs[0];
            RepeatSummary {
                shape: r0.key().shape(),
                repetitions: rs.len(),
                passed: ok.len(),
                duration_seconds: stats(&col(|r| r.duration_seconds)),
                throughput_mbps: stats(&tp),
                peak_memory_mb: stats(&pk),
                outlier_repeats,
                stop: None,
            }
        })
        .collect()
}

#[derive(serde::Serialize)]
struct Doc<'a> {
    metadata: &'a RunMetadata,
    summary: &'a RunSummary,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    repeats: Vec<RepeatSummary>,
    cells: Vec<&'a CellResult>,
}

pub struct Json;

impl super::Exporter for Json {
    fn file_name(&self) -> &'static str {
        "results.json"
    }
    fn export(&self, run: &super::RunView) -> Vec<u8> {
        export(run.meta, &run.summary, run.results, &run.finals, &run.stops)
    }
}

/// `stops`: with --target-rsd, why each settled cell shape got no more repetitions.
pub fn export(
    meta: &RunMetadata,
    summary: &RunSummary,
    all_attempts: &[CellResult],
    finals: &[&CellResult],
    stops: &BTreeMap<String, crate::plan::repeats::Stop>,
) -> Vec<u8> {
    let mut reps = repeats(finals);
    for s in &mut reps {
        s.stop = stops.get(&s.shape).cloned();
    }
    let doc = Doc { metadata: meta, summary, repeats: reps, cells: super::sorted(all_attempts) };
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

    #[test]
    fn repeats_get_statistics_and_outliers() {
        let base: CellResult = serde_json::from_str(include_str!("../../../tests/data/result-sample.json")).unwrap();
        let rs: Vec<CellResult> = [60.0, 61.0, 59.0, 60.5, 20.0]
            .iter()
            .enumerate()
            .map(|(i, tp)| CellResult { repeat: i as u32 + 1, throughput_mbps: Some(*tp), ..base.clone() })
            .collect();
        let refs: Vec<&CellResult> = rs.iter().collect();
        let s = repeats(&refs);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].repetitions, s[0].passed), (5, 5));
        assert_eq!(s[0].throughput_mbps.unwrap().median, 60.0);
        assert_eq!(s[0].outlier_repeats, vec![5]);
        assert!(repeats(&refs[..1]).is_empty(), "one repetition: nothing to summarise");
        // Two targets' repetitions of the same RAM and size are two shapes.
        let two: Vec<CellResult> = rs.iter().map(|r| CellResult { matrix_target: Some("dufs".into()), ..r.clone() }).chain(rs.iter().map(|r| CellResult { matrix_target: Some("perfvm-target-stream".into()), ..r.clone() })).collect();
        let s = repeats(&two.iter().collect::<Vec<_>>());
        assert_eq!(s.iter().map(|r| (r.shape.as_str(), r.repetitions)).collect::<Vec<_>>(), [("dufs-512-256M", 5), ("perfvm-target-stream-512-256M", 5)]);
    }
}
