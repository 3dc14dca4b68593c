//! A matrix of several targets (`--target a,b`) side by side: each target's mean throughput and
//! peak working set at every RAM × file size, the best target at each, and how far each target
//! got (its limits). Pure: summary.txt, report.html and report.md all show these.
//!
//! Only passed cells count towards the means, and only the target's own failures (OOM, crash,
//! HTTP error, …) towards its limits: a cell the harness or the VM failed says nothing about the
//! target, so it neither passes nor fails a size.

use crate::results::model::{CellResult, ExitReason, FailureKind, mib};
use crate::stats::{Stats, stats};
use std::collections::BTreeMap;

/// How a target failed, in the order of what explains the most: an OOM kill explains a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    Oom,
    Crash,
    /// Any other failure of the target (timeout, HTTP error, sha256 mismatch).
    Error(ExitReason),
}

impl How {
    /// How the cell failed, if it was the target's own failure.
    pub fn of(r: &CellResult) -> Option<How> {
        if !target_failed(r) {
            return None;
        }
        Some(if r.exit_reason == ExitReason::OomKilled || r.oom_kills.unwrap_or(0) > 0 {
            How::Oom
        } else if r.exit_reason == ExitReason::TargetCrashed {
            How::Crash
        } else {
            How::Error(r.exit_reason)
        })
    }

    fn rank(self) -> u8 {
        match self {
            How::Oom => 0,
            How::Crash => 1,
            How::Error(_) => 2,
        }
    }
}

impl std::fmt::Display for How {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            How::Oom => f.write_str("OOM"),
            How::Crash => f.write_str("crash"),
            How::Error(r) => write!(f, "error ({r})"),
        }
    }
}

/// The target failed, not the harness or the VM. Results read from disk are upgraded and have
/// `failure`; one that lacks it is judged by its exit reason.
pub fn target_failed(r: &CellResult) -> bool {
    if r.success {
        return false;
    }
    match r.failure {
        Some(k) => k == FailureKind::Target,
        None => !r.interrupted && FailureKind::of(r.exit_reason) == Some(FailureKind::Target),
    }
}

/// One target's cells at one RAM × file size (× uploads at once).
#[derive(Debug, Clone)]
pub struct Point {
    pub ram_mb: u64,
    pub size_bytes: u64,
    /// As the matrix names it: `64M`, `1G`.
    pub size: String,
    pub concurrency: u32,
    pub cells: usize,
    pub passed: usize,
    /// Cells the target failed (the harness's failures count neither way).
    pub failed: usize,
    /// Over the passed cells: throughput (MiB/s) and peak working set (MiB).
    pub throughput: Option<Stats>,
    pub peak_mib: Option<Stats>,
    /// The worst of the target's failures here.
    pub how: Option<How>,
}

/// How far a target got at one RAM (× uploads at once).
#[derive(Debug, Clone, PartialEq)]
pub struct RamLimit {
    pub ram_mb: u64,
    pub concurrency: u32,
    /// The largest file size whose every cell passed here.
    pub largest_passed: Option<String>,
    /// The smallest file size at which the target failed here, and how.
    pub first_failure: Option<(String, How)>,
}

/// One target of the run, with its final cells.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// Its name in the matrix (`perfvm-target-stream`, `dufs`), the prefix of its cells' ids.
    pub tag: String,
    /// As its results record it: `perfvm-target` and `stream`, `dufs` and `profile`.
    pub name: String,
    pub mode: String,
    pub cells: Vec<&'a CellResult>,
    /// By uploads at once, RAM, then size.
    pub points: Vec<Point>,
    /// By uploads at once, then RAM.
    pub limits: Vec<RamLimit>,
}

impl Target<'_> {
    /// Where the target first failed at these uploads at once: the smallest RAM at which it
    /// failed, the smallest file there, and how.
    pub fn first_failure(&self, concurrency: u32) -> Option<(u64, &str, How)> {
        self.limits.iter().filter(|l| l.concurrency == concurrency).find_map(|l| l.first_failure.as_ref().map(|(s, h)| (l.ram_mb, s.as_str(), *h)))
    }
}

/// The best target at one RAM × file size, among those with a passed cell there.
#[derive(Debug, Clone, PartialEq)]
pub struct Best {
    pub ram_mb: u64,
    pub size_bytes: u64,
    pub size: String,
    pub concurrency: u32,
    /// (tag, mean MiB/s) of the fastest.
    pub fastest: Option<(String, f64)>,
    /// (tag, mean peak working set in MiB) of the leanest.
    pub leanest: Option<(String, f64)>,
    /// Targets that passed a cell here: with one, it is the best by default.
    pub contenders: usize,
}

#[derive(Debug, Clone)]
pub struct Comparison<'a> {
    pub targets: Vec<Target<'a>>,
    /// By uploads at once, RAM, then size.
    pub best: Vec<Best>,
    /// The uploads-at-once levels of the run, ascending.
    pub levels: Vec<u32>,
}

impl Comparison<'_> {
    /// Uploads at once other than one at a time: outputs then name the level of each part.
    pub fn several_levels(&self) -> bool {
        self.levels.len() > 1 || self.levels.first().is_some_and(|&l| l != 1)
    }

    /// The RAM sizes any target ran at these uploads at once, ascending.
    pub fn rams(&self, concurrency: u32) -> Vec<u64> {
        let mut v: Vec<u64> = self.targets.iter().flat_map(|t| &t.points).filter(|p| p.concurrency == concurrency).map(|p| p.ram_mb).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// The targets of a run from its final results, in the order of the definition's `targets`
/// ((name, mode) as in `RunDefinition`), then any others in the order they appear. None when the
/// run has one target (no cell carries `matrix_target`), whose outputs stay as they were.
pub fn compare<'a>(finals: &[&'a CellResult], order: &[(String, String)]) -> Option<Comparison<'a>> {
    // A tag is the profile's name, or the reference target's name and mode (`perfvm-target-memory`).
    let rank = |tag: &str| order.iter().position(|(name, mode)| crate::plan::key::TargetTag::new(name).as_str() == tag || crate::plan::key::TargetTag::new(&format!("{name}-{mode}")).as_str() == tag);
    let mut tags: Vec<&str> = Vec::new();
    for r in finals {
        if let Some(t) = r.matrix_target.as_deref().filter(|t| !tags.contains(t)) {
            tags.push(t);
        }
    }
    if tags.is_empty() {
        return None;
    }
    // Stable: the definition's order first, others as they came.
    tags.sort_by_key(|t| rank(t).unwrap_or(usize::MAX));
    let targets: Vec<Target> = tags
        .iter()
        .map(|&tag| {
            let cells: Vec<&CellResult> = finals.iter().copied().filter(|r| r.matrix_target.as_deref() == Some(tag)).collect();
            let points = points(&cells);
            Target { tag: tag.to_string(), name: cells[0].target.name.clone(), mode: cells[0].target.mode.clone(), limits: limits(&points), points, cells }
        })
        .collect();
    let mut levels: Vec<u32> = finals.iter().map(|r| r.concurrency).collect();
    levels.sort_unstable();
    levels.dedup();
    let best = best(&targets);
    Some(Comparison { targets, best, levels })
}

fn points(cells: &[&CellResult]) -> Vec<Point> {
    let mut by: BTreeMap<(u32, u64, u64), Vec<&CellResult>> = BTreeMap::new();
    for r in cells {
        by.entry((r.concurrency, r.ram_mb, r.file_size_bytes)).or_default().push(r);
    }
    by.into_iter()
        .map(|((concurrency, ram_mb, size_bytes), rs)| {
            let ok: Vec<&&CellResult> = rs.iter().filter(|r| r.success).collect();
            let how = rs.iter().filter_map(|r| How::of(r)).min_by_key(|h| h.rank());
            Point {
                ram_mb,
                size_bytes,
                size: rs[0].file_size.clone(),
                concurrency,
                cells: rs.len(),
                passed: ok.len(),
                failed: rs.iter().filter(|r| target_failed(r)).count(),
                throughput: stats(&ok.iter().filter_map(|r| r.throughput_mbps).collect::<Vec<_>>()),
                peak_mib: stats(&ok.iter().filter_map(|r| r.peak_memory_bytes.map(mib)).collect::<Vec<_>>()),
                how,
            }
        })
        .collect()
}

/// Points come sorted by uploads at once, RAM, size: each RAM's run of them gives its limit.
fn limits(points: &[Point]) -> Vec<RamLimit> {
    let mut out: Vec<RamLimit> = Vec::new();
    for p in points {
        if out.last().is_none_or(|l| (l.concurrency, l.ram_mb) != (p.concurrency, p.ram_mb)) {
            out.push(RamLimit { ram_mb: p.ram_mb, concurrency: p.concurrency, largest_passed: None, first_failure: None });
        }
        let l = out.last_mut().expect("pushed above");
        if p.passed == p.cells {
            l.largest_passed = Some(p.size.clone());
        }
        if let (None, Some(how)) = (&l.first_failure, p.how) {
            l.first_failure = Some((p.size.clone(), how));
        }
    }
    out
}

/// At every RAM × size any target ran: the fastest and the leanest by their passed cells' means
/// (the first in order wins a tie).
fn best(targets: &[Target]) -> Vec<Best> {
    let mut at: BTreeMap<(u32, u64, u64), Best> = BTreeMap::new();
    for t in targets {
        for p in &t.points {
            let b = at.entry((p.concurrency, p.ram_mb, p.size_bytes)).or_insert_with(|| Best {
                ram_mb: p.ram_mb,
                size_bytes: p.size_bytes,
                size: p.size.clone(),
                concurrency: p.concurrency,
                fastest: None,
                leanest: None,
                contenders: 0,
            });
            if p.passed > 0 {
                b.contenders += 1;
            }
            if let Some(s) = p.throughput.filter(|s| b.fastest.as_ref().is_none_or(|f| s.mean > f.1)) {
                b.fastest = Some((t.tag.clone(), s.mean));
            }
            if let Some(s) = p.peak_mib.filter(|s| b.leanest.as_ref().is_none_or(|f| s.mean < f.1)) {
                b.leanest = Some((t.tag.clone(), s.mean));
            }
        }
    }
    at.into_values().collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn sample() -> CellResult {
        serde_json::from_str(include_str!("../../../tests/data/result-sample.json")).unwrap()
    }

    /// A final result of `tag` at `ram` MiB × `size` MiB: passed with this throughput and peak
    /// (MiB), or failed with this exit reason and failure kind.
    pub(crate) fn cell(tag: &str, ram: u64, size: u64, repeat: u32, outcome: Result<(f64, f64), (ExitReason, FailureKind)>) -> CellResult {
        let mut r = sample();
        (r.ram_mb, r.file_size_bytes, r.file_size, r.repeat) = (ram, size << 20, crate::size::ByteSize(size << 20).label(), repeat);
        r.matrix_target = Some(tag.to_string());
        r.target.name = if tag.starts_with("perfvm-target") { "perfvm-target".into() } else { tag.to_string() };
        r.target.mode = if tag.starts_with("perfvm-target") { "stream".into() } else { "profile".into() };
        r.cell = format!("{tag}-{ram}-{}", r.file_size);
        match outcome {
            Ok((tp, peak)) => {
                (r.throughput_mbps, r.peak_memory_bytes, r.peak_memory_mb) = (Some(tp), Some((peak * 1048576.0) as u64), Some(peak));
            }
            Err((reason, kind)) => {
                (r.success, r.exit_reason, r.failure, r.throughput_mbps) = (false, reason, Some(kind), None);
                r.oom_kills = Some(u64::from(reason == ExitReason::OomKilled));
                r.peak_memory_mb = Some(ram as f64 * 0.9);
            }
        }
        r
    }

    /// Two targets at 256 and 512 MiB × 64M and 1G: the stream target passes everything, with
    /// repeats at 512 × 1G; dufs is faster but hungrier, OOMs at 256 × 1G and crashes once of two
    /// at 512 × 1G; one of dufs' cells at 256 × 64M was lost to the harness.
    pub(crate) fn two_targets() -> Vec<CellResult> {
        let (s, d) = ("perfvm-target-stream", "dufs");
        let oom = Err((ExitReason::OomKilled, FailureKind::Target));
        vec![
            cell(s, 256, 64, 1, Ok((40.0, 10.0))),
            cell(d, 256, 64, 1, Ok((60.0, 30.0))),
            cell(d, 256, 64, 2, Err((ExitReason::BootFailed, FailureKind::Infrastructure))),
            cell(s, 256, 1024, 1, Ok((38.0, 11.0))),
            cell(d, 256, 1024, 1, oom),
            cell(s, 512, 64, 1, Ok((41.0, 10.0))),
            cell(d, 512, 64, 1, Ok((61.0, 31.0))),
            cell(s, 512, 1024, 1, Ok((36.0, 11.0))),
            cell(s, 512, 1024, 2, Ok((40.0, 13.0))),
            cell(d, 512, 1024, 1, Ok((55.0, 300.0))),
            cell(d, 512, 1024, 2, Err((ExitReason::TargetCrashed, FailureKind::Target))),
        ]
    }

    pub(crate) fn order() -> Vec<(String, String)> {
        vec![("perfvm-target".into(), "stream".into()), ("dufs".into(), "profile-0123456789ab".into())]
    }

    /// The metadata of a matrix run of these targets ((name, mode); none: one target).
    pub(crate) fn meta(targets: &[(String, String)]) -> crate::results::export::json::RunMetadata {
        let definition = serde_json::json!({
            "ram_mib": [256, 512], "file_sizes": ["64M", "1G"], "repeat": 2, "target": "perfvm-target", "target_mode": "stream", "targets": targets,
            "image_id": "bookworm-5cb6a440f6e8", "accel": "tcg", "cpus": 2, "timeout_s": 600, "seed": 1, "sample_interval_ms": 100,
        });
        serde_json::from_value(serde_json::json!({
            "run_key": "matrix-0123456789ab", "perfvm_version": "0.1.0", "git_rev": null, "host": "h", "kernel": "6.1", "libvirt_version": null, "qemu_version": null,
            "accel": "tcg", "image_id": "bookworm-5cb6a440f6e8", "target": "perfvm-target", "target_mode": "stream", "jobs": 2,
            "started": "2026-12-01T10:00:00Z", "finished": "2026-12-01T11:00:00Z", "definition": definition,
        }))
        .unwrap()
    }

    #[test]
    fn one_target_is_no_comparison() {
        let r = sample();
        assert!(compare(&[&r], &[]).is_none());
    }

    #[test]
    fn targets_come_in_the_definitions_order_with_means_of_passed_cells() {
        let rs = two_targets();
        let finals: Vec<&CellResult> = rs.iter().collect();
        let mut reversed = order();
        reversed.reverse();
        let c = compare(&finals, &reversed).unwrap();
        assert_eq!(c.targets.iter().map(|t| t.tag.as_str()).collect::<Vec<_>>(), ["dufs", "perfvm-target-stream"], "as the definition lists them");
        let c = compare(&finals, &order()).unwrap();
        assert_eq!(c.targets.iter().map(|t| t.tag.as_str()).collect::<Vec<_>>(), ["perfvm-target-stream", "dufs"]);
        assert_eq!(compare(&finals, &[]).unwrap().targets.len(), 2, "without a definition: as they appear");
        let (s, d) = (&c.targets[0], &c.targets[1]);
        assert_eq!((s.name.as_str(), s.mode.as_str(), s.cells.len(), d.cells.len()), ("perfvm-target", "stream", 5, 6));
        let p = s.points.iter().find(|p| (p.ram_mb, p.size.as_str()) == (512, "1G")).unwrap();
        assert_eq!((p.cells, p.passed, p.failed, p.how), (2, 2, 0, None));
        assert_eq!(p.throughput.map(|t| (t.mean, t.min, t.max)), Some((38.0, 36.0, 40.0)));
        assert!((p.peak_mib.unwrap().mean - 12.0).abs() < 1e-3);
        let p = d.points.iter().find(|p| (p.ram_mb, p.size.as_str()) == (512, "1G")).unwrap();
        assert_eq!((p.cells, p.passed, p.failed, p.how), (2, 1, 1, Some(How::Crash)));
        assert_eq!(p.throughput.unwrap().mean, 55.0, "the crashed cell has no throughput to average");
        let p = d.points.iter().find(|p| (p.ram_mb, p.size.as_str()) == (256, "64M")).unwrap();
        assert_eq!((p.cells, p.passed, p.failed, p.how), (2, 1, 0, None), "the harness's failure is not the target's");
    }

    #[test]
    fn best_is_the_fastest_and_the_leanest_of_the_passed() {
        let rs = two_targets();
        let finals: Vec<&CellResult> = rs.iter().collect();
        let c = compare(&finals, &order()).unwrap();
        assert_eq!(c.best.len(), 4);
        let at = |ram: u64, size: &str| c.best.iter().find(|b| (b.ram_mb, b.size.as_str()) == (ram, size)).unwrap();
        assert_eq!(at(256, "64M").fastest, Some(("dufs".into(), 60.0)));
        assert_eq!(at(256, "64M").leanest.as_ref().map(|l| l.0.as_str()), Some("perfvm-target-stream"));
        assert_eq!(at(256, "64M").contenders, 2);
        // dufs OOMed at 256 × 1G: the stream target is the best by default.
        assert_eq!((at(256, "1G").fastest.as_ref().map(|f| f.0.as_str()), at(256, "1G").contenders), (Some("perfvm-target-stream"), 1));
        assert_eq!(at(512, "1G").fastest, Some(("dufs".into(), 55.0)), "its one passed cell");
    }

    #[test]
    fn limits_are_the_largest_file_passed_and_where_the_target_first_failed() {
        let rs = two_targets();
        let finals: Vec<&CellResult> = rs.iter().collect();
        let c = compare(&finals, &order()).unwrap();
        let (s, d) = (&c.targets[0], &c.targets[1]);
        assert!(s.limits.iter().all(|l| l.largest_passed.as_deref() == Some("1G") && l.first_failure.is_none()), "{:?}", s.limits);
        assert_eq!(s.first_failure(1), None);
        assert_eq!(
            d.limits,
            vec![
                // 64M at 256 MiB had a cell lost to the harness: not passed, not failed.
                RamLimit { ram_mb: 256, concurrency: 1, largest_passed: None, first_failure: Some(("1G".into(), How::Oom)) },
                RamLimit { ram_mb: 512, concurrency: 1, largest_passed: Some("64M".into()), first_failure: Some(("1G".into(), How::Crash)) },
            ]
        );
        assert_eq!(d.first_failure(1), Some((256, "1G", How::Oom)));
        assert_eq!(c.rams(1), [256, 512]);
    }

    #[test]
    fn how_a_target_failed() {
        let http = cell("dufs", 256, 64, 1, Err((ExitReason::HttpError, FailureKind::Target)));
        assert_eq!(How::of(&http), Some(How::Error(ExitReason::HttpError)));
        assert_eq!(How::of(&http).unwrap().to_string(), "error (http_error)");
        // A crash with an OOM kill behind it is an OOM.
        let mut crash = cell("dufs", 256, 64, 1, Err((ExitReason::TargetCrashed, FailureKind::Target)));
        assert_eq!(How::of(&crash), Some(How::Crash));
        crash.oom_kills = Some(1);
        assert_eq!(How::of(&crash), Some(How::Oom));
        assert_eq!(How::of(&cell("dufs", 256, 64, 1, Err((ExitReason::HarnessError, FailureKind::HostLost)))), None);
        assert_eq!(How::of(&cell("dufs", 256, 64, 1, Ok((1.0, 1.0)))), None);
        // A result without `failure` (never upgraded) is judged by its exit reason.
        let mut old = cell("dufs", 256, 64, 1, Err((ExitReason::Timeout, FailureKind::Target)));
        old.failure = None;
        assert_eq!(How::of(&old), Some(How::Error(ExitReason::Timeout)));
        old.exit_reason = ExitReason::BootFailed;
        assert_eq!(How::of(&old), None);
    }
}
