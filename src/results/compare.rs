//! Comparing two runs cell by cell: the change of throughput and peak memory, with a verdict
//! from an exact two-sided permutation test on the repetitions (difference of means; no
//! assumption about the distribution, which for a few noisy repeats is all one can honestly
//! say). With n and m repetitions the smallest possible p is 2 / C(n+m, n): it takes at least 4
//! on each side to reach p < 0.05. Pure.

use super::model::CellResult;
use std::collections::BTreeMap;

/// p below this is a significant change.
pub const ALPHA: f64 = 0.05;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A side has no passed repetition of the cell.
    NoData,
    /// Fewer than two passed repetitions on a side: a change, but no test.
    NotTested,
    NoSignificantChange,
    Better,
    Worse,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::NoData => "no data",
            Verdict::NotTested => "not tested (needs repeats)",
            Verdict::NoSignificantChange => "no significant change",
            Verdict::Better => "better",
            Verdict::Worse => "worse",
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Metric {
    pub a_mean: Option<f64>,
    pub b_mean: Option<f64>,
    /// (b - a) / a in %.
    pub change_percent: Option<f64>,
    pub p_value: Option<f64>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Row {
    /// `512-1G` (or `512-1G-c4`).
    pub cell: String,
    pub ram_mb: u64,
    pub file_size_bytes: u64,
    pub concurrency: u32,
    /// Passed / all repetitions on each side (None: the side lacks the cell).
    pub a_passed: Option<(usize, usize)>,
    pub b_passed: Option<(usize, usize)>,
    pub throughput_mbps: Metric,
    pub peak_memory_mb: Metric,
    /// What `peak_memory_mb` compares: `working_set` when both runs measured it, else
    /// `memory.peak` (runs of an older perfvm have only that), never one against the other.
    pub peak_memory_metric: &'static str,
}

/// The values of one side's cell: throughput and memory of its passed repetitions.
#[derive(Default)]
struct Side {
    all: usize,
    thr: Vec<f64>,
    /// Working set and memory.peak (MiB) of the passed repetitions that have them.
    working_set: Vec<f64>,
    memory_peak: Vec<f64>,
}

fn group(results: &[&CellResult]) -> BTreeMap<(u64, u64, u32), (String, Side)> {
    let mut out: BTreeMap<(u64, u64, u32), (String, Side)> = BTreeMap::new();
    for r in results {
        let k = r.key();
        let e = out.entry((r.ram_mb, r.file_size_bytes, k.concurrency.max(1))).or_insert_with(|| (k.shape(), Side::default()));
        e.1.all += 1;
        if r.success {
            e.1.thr.extend(r.throughput_mbps);
            e.1.working_set.extend(r.working_set_peak_bytes().map(super::model::mib));
            e.1.memory_peak.extend(r.cgroup_peak_bytes().map(super::model::mib));
        }
    }
    out
}

/// Compare the final results of run A with those of run B.
pub fn compare(a: &[&CellResult], b: &[&CellResult]) -> Vec<Row> {
    let (ga, gb) = (group(a), group(b));
    let keys: std::collections::BTreeSet<_> = ga.keys().chain(gb.keys()).copied().collect();
    keys.into_iter()
        .map(|k| {
            let (sa, sb) = (ga.get(&k), gb.get(&k));
            let cell = sa.or(sb).map(|(s, _)| s.clone()).unwrap_or_default();
            let vals = |s: Option<&(String, Side)>, f: fn(&Side) -> &Vec<f64>| s.map(|(_, x)| f(x).clone()).unwrap_or_default();
            // The working set where both sides have it for every passed repetition.
            let full_ws = |s: Option<&(String, Side)>| s.is_none_or(|(_, x)| x.working_set.len() == x.thr.len());
            let (metric_name, mem): (&'static str, fn(&Side) -> &Vec<f64>) = if full_ws(sa) && full_ws(sb) {
                (super::model::METRIC_WORKING_SET, |s| &s.working_set)
            } else {
                (super::model::METRIC_MEMORY_PEAK, |s| &s.memory_peak)
            };
            Row {
                cell,
                ram_mb: k.0,
                file_size_bytes: k.1,
                concurrency: k.2,
                a_passed: sa.map(|(_, s)| (s.thr.len(), s.all)),
                b_passed: sb.map(|(_, s)| (s.thr.len(), s.all)),
                throughput_mbps: metric(&vals(sa, |s| &s.thr), &vals(sb, |s| &s.thr), true),
                peak_memory_mb: metric(&vals(sa, mem), &vals(sb, mem), false),
                peak_memory_metric: metric_name,
            }
        })
        .collect()
}

/// One cell across N runs: each run after the first compared with the first (the baseline).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ManyRow {
    pub cell: String,
    pub ram_mb: u64,
    pub file_size_bytes: u64,
    pub concurrency: u32,
    /// One per run after the baseline, in order; `a_*` is always the baseline's side.
    pub pairs: Vec<Row>,
}

impl ManyRow {
    /// Passed / all repetitions of run `i` (0: the baseline); None where the run lacks the cell.
    pub fn passed(&self, i: usize) -> Option<(usize, usize)> {
        match i {
            0 => self.pairs.first().and_then(|p| p.a_passed),
            i => self.pairs.get(i - 1).and_then(|p| p.b_passed),
        }
    }

    /// The runs (indices) that have the cell.
    pub fn present_in(&self) -> Vec<usize> {
        (0..=self.pairs.len()).filter(|&i| self.passed(i).is_some()).collect()
    }
}

/// Compare every run with the first, cell by cell, over the union of their cells: a cell that
/// some runs lack has no data there (`present_in` says where it is).
pub fn compare_many(runs: &[Vec<&CellResult>]) -> Vec<ManyRow> {
    let Some((base, others)) = runs.split_first() else { return Vec::new() };
    let pairs: Vec<BTreeMap<(u64, u64, u32), Row>> =
        others.iter().map(|o| compare(base, o).into_iter().map(|r| ((r.ram_mb, r.file_size_bytes, r.concurrency), r)).collect()).collect();
    let mut keys: BTreeMap<(u64, u64, u32), String> = BTreeMap::new();
    for run in runs {
        for r in run {
            let k = r.key();
            keys.entry((r.ram_mb, r.file_size_bytes, k.concurrency.max(1))).or_insert_with(|| k.shape());
        }
    }
    keys.into_iter()
        .map(|(k, cell)| {
            let missing = || {
                let none = metric(&[], &[], true);
                Row { cell: cell.clone(), ram_mb: k.0, file_size_bytes: k.1, concurrency: k.2, a_passed: None, b_passed: None, throughput_mbps: none.clone(), peak_memory_mb: none, peak_memory_metric: super::model::METRIC_WORKING_SET }
            };
            let pairs: Vec<Row> = pairs.iter().map(|p| p.get(&k).cloned().unwrap_or_else(missing)).collect();
            // A baseline that has the cell has it in every pair, also where run i lacks it.
            let base_side = pairs.iter().find_map(|p| p.a_passed);
            let pairs = pairs.into_iter().map(|mut p| { p.a_passed = p.a_passed.or(base_side); p }).collect();
            ManyRow { cell, ram_mb: k.0, file_size_bytes: k.1, concurrency: k.2, pairs }
        })
        .collect()
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// `higher_is_better`: throughput; otherwise (memory) lower is better.
pub fn metric(a: &[f64], b: &[f64], higher_is_better: bool) -> Metric {
    let (am, bm) = (mean(a), mean(b));
    let change_percent = match (am, bm) {
        (Some(x), Some(y)) if x != 0.0 => Some((y - x) * 100.0 / x),
        _ => None,
    };
    let (p_value, verdict) = match (am, bm) {
        (None, _) | (_, None) => (None, Verdict::NoData),
        _ if a.len() < 2 || b.len() < 2 => (None, Verdict::NotTested),
        (Some(x), Some(y)) => {
            let p = permutation_p(a, b);
            let v = if p >= ALPHA || x == y {
                Verdict::NoSignificantChange
            } else if (y > x) == higher_is_better {
                Verdict::Better
            } else {
                Verdict::Worse
            };
            (Some(p), v)
        }
    };
    Metric { a_mean: am, b_mean: bm, change_percent, p_value, verdict }
}

/// Two-sided p-value of the difference of means: the share of all ways to split the pooled
/// values into groups of the two sizes whose |difference| is at least the observed one. Exact
/// (every split) up to 200 000 splits, else 20 000 random splits from a fixed seed.
pub fn permutation_p(a: &[f64], b: &[f64]) -> f64 {
    let pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    let (n, total) = (a.len(), pooled.len());
    let sum: f64 = pooled.iter().sum();
    let observed = (mean(a).unwrap_or(0.0) - mean(b).unwrap_or(0.0)).abs();
    let diff_of = |sum_a: f64| (sum_a / n as f64 - (sum - sum_a) / (total - n) as f64).abs();
    // Rounding: a split as extreme as the observed one must count.
    let eps = 1e-9 * observed.max(1.0);
    let splits = binomial(total, n);
    if splits <= 200_000 {
        let (mut hits, mut count) = (0u64, 0u64);
        let mut idx: Vec<usize> = (0..n).collect();
        loop {
            let s: f64 = idx.iter().map(|&i| pooled[i]).sum();
            count += 1;
            if diff_of(s) >= observed - eps {
                hits += 1;
            }
            // Next n-combination of 0..total in lexicographic order.
            let mut i = n;
            while i > 0 && idx[i - 1] == total - n + i - 1 {
                i -= 1;
            }
            if i == 0 {
                break;
            }
            idx[i - 1] += 1;
            for j in i..n {
                idx[j] = idx[j - 1] + 1;
            }
        }
        hits as f64 / count as f64
    } else {
        use rand_core::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261130);
        let rounds = 20_000u64;
        let mut v = pooled.clone();
        let mut hits = 1u64; // the observed split itself
        for _ in 0..rounds {
            for i in (1..v.len()).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                v.swap(i, j);
            }
            if diff_of(v[..n].iter().sum()) >= observed - eps {
                hits += 1;
            }
        }
        hits as f64 / (rounds + 1) as f64
    }
}

fn binomial(n: usize, k: usize) -> u64 {
    let k = k.min(n - k);
    (0..k).fold(1u64, |acc, i| acc.saturating_mul((n - i) as u64) / (i as u64 + 1))
}

/// Rows whose throughput fell or whose peak memory rose significantly by more than `pct` %.
pub fn regressions(rows: &[Row], pct: f64) -> Vec<String> {
    let mut out = Vec::new();
    for r in rows {
        for (what, m) in [("throughput", &r.throughput_mbps), ("peak memory", &r.peak_memory_mb)] {
            if m.verdict == Verdict::Worse && m.change_percent.is_some_and(|c| c.abs() > pct) {
                out.push(format!("{} {what} {:+.1}% (p={:.3})", r.cell, m.change_percent.unwrap_or(0.0), m.p_value.unwrap_or(1.0)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_permutation_p_values() {
        // Completely separated groups of 4: only the observed split and its mirror are as
        // extreme, 2 of C(8,4) = 70.
        let p = permutation_p(&[10.0, 11.0, 12.0, 13.0], &[20.0, 21.0, 22.0, 23.0]);
        assert!((p - 2.0 / 70.0).abs() < 1e-12, "{p}");
        // Three a side can never reach 0.05: 2 / 20 = 0.1.
        assert!((permutation_p(&[1.0, 2.0, 3.0], &[7.0, 8.0, 9.0]) - 0.1).abs() < 1e-12);
        // Identical groups: every split is at least as extreme.
        assert_eq!(permutation_p(&[5.0, 5.0], &[5.0, 5.0]), 1.0);
        // Large groups use random splits, and still find a clear difference.
        let a: Vec<f64> = (0..15).map(|i| 50.0 + (i % 3) as f64).collect();
        let b: Vec<f64> = (0..15).map(|i| 40.0 + (i % 3) as f64).collect();
        assert!(permutation_p(&a, &b) < 0.001);
        assert_eq!(binomial(8, 4), 70);
        assert_eq!(binomial(30, 15), 155117520);
    }

    #[test]
    fn verdicts_follow_direction_and_data() {
        let a = [50.0, 51.0, 52.0, 50.5];
        let b = [40.0, 41.0, 40.5, 39.5];
        let thr = metric(&a, &b, true);
        assert_eq!(thr.verdict, Verdict::Worse);
        assert!((thr.change_percent.unwrap() + 20.885).abs() < 0.01, "{:?}", thr.change_percent);
        // Lower memory is better.
        assert_eq!(metric(&a, &b, false).verdict, Verdict::Better);
        assert_eq!(metric(&a, &[50.6, 50.4, 51.6, 51.0], true).verdict, Verdict::NoSignificantChange);
        assert_eq!(metric(&[50.0], &[10.0], true).verdict, Verdict::NotTested);
        let none = metric(&[], &b, true);
        assert_eq!((none.verdict, none.change_percent), (Verdict::NoData, None));
    }

    #[test]
    fn runs_are_compared_cell_by_cell_with_regressions_named() {
        let base: CellResult = serde_json::from_str(include_str!("../../tests/data/result-sample.json")).unwrap();
        let mk = |ram: u64, rep: u32, thr: f64, peak: f64, ok: bool| {
            let mut r = base.clone();
            r.ram_mb = ram;
            r.repeat = rep;
            r.throughput_mbps = Some(thr);
            r.peak_memory_bytes = Some((peak * 1048576.0) as u64);
            r.success = ok;
            r
        };
        let a: Vec<CellResult> = (1..=4).map(|i| mk(512, i, 50.0 + i as f64, 10.0, true)).chain([mk(256, 1, 30.0, 9.0, true)]).collect();
        let b: Vec<CellResult> = (1..=4).map(|i| mk(512, i, 30.0 + i as f64, 30.0 + i as f64, true)).chain([mk(1024, 1, 60.0, 9.0, true)]).collect();
        let rows = compare(&a.iter().collect::<Vec<_>>(), &b.iter().collect::<Vec<_>>());
        assert_eq!(rows.iter().map(|r| r.ram_mb).collect::<Vec<_>>(), [256, 512, 1024]);
        assert_eq!(rows[0].b_passed, None);
        assert_eq!(rows[0].throughput_mbps.verdict, Verdict::NoData);
        assert_eq!(rows[1].a_passed, Some((4, 4)));
        assert_eq!(rows[1].throughput_mbps.verdict, Verdict::Worse);
        assert_eq!(rows[1].peak_memory_mb.verdict, Verdict::Worse);
        assert_eq!(rows[1].peak_memory_metric, "memory.peak", "results of schema 1 have only memory.peak");
        let reg = regressions(&rows, 10.0);
        assert_eq!(reg.len(), 2, "{reg:?}");
        assert!(reg[0].contains("throughput") && reg[1].contains("peak memory"));
        assert!(regressions(&rows, 500.0).is_empty(), "under the threshold");
    }

    #[test]
    fn many_runs_compare_with_the_first_and_cells_some_lack_are_kept() {
        let base: CellResult = serde_json::from_str(include_str!("../../tests/data/result-sample.json")).unwrap();
        let mk = |ram: u64, rep: u32, thr: f64| {
            let mut r = base.clone();
            (r.ram_mb, r.repeat, r.throughput_mbps, r.success) = (ram, rep, Some(thr), true);
            r
        };
        // A: 256 and 512; B: 512 only (faster); C: 512 and 1024. Four repetitions each.
        let a: Vec<CellResult> = (1..=4).flat_map(|i| [mk(256, i, 20.0 + i as f64), mk(512, i, 40.0 + i as f64)]).collect();
        let b: Vec<CellResult> = (1..=4).map(|i| mk(512, i, 60.0 + i as f64)).collect();
        let c: Vec<CellResult> = (1..=4).flat_map(|i| [mk(512, i, 40.5 + i as f64), mk(1024, i, 70.0)]).collect();
        fn refs(v: &[CellResult]) -> Vec<&CellResult> {
            v.iter().collect()
        }
        let rows = compare_many(&[refs(&a), refs(&b), refs(&c)]);
        assert_eq!(rows.iter().map(|r| r.cell.as_str()).collect::<Vec<_>>(), ["256-256M", "512-256M", "1024-256M"]);
        assert!(rows.iter().all(|r| r.pairs.len() == 2));
        assert_eq!(rows[0].present_in(), [0], "256 only in the baseline");
        assert_eq!(rows[0].pairs[0].throughput_mbps.verdict, Verdict::NoData);
        assert_eq!(rows[0].passed(0), Some((4, 4)), "the baseline's side is there in every pair");
        assert_eq!(rows[1].present_in(), [0, 1, 2]);
        assert_eq!(rows[1].pairs[0].throughput_mbps.verdict, Verdict::Better, "B vs A");
        assert_eq!(rows[1].pairs[1].throughput_mbps.verdict, Verdict::NoSignificantChange, "C vs A");
        assert_eq!(rows[2].present_in(), [2], "1024 only in C");
        assert_eq!((rows[2].passed(0), rows[2].passed(1), rows[2].passed(2)), (None, None, Some((4, 4))));
        assert!(compare_many(&[]).is_empty());
        assert_eq!(compare_many(&[refs(&a)]).iter().map(|r| r.pairs.len()).sum::<usize>(), 0, "one run: nothing to compare with");
    }

    #[test]
    fn the_working_set_is_compared_only_with_the_working_set() {
        let base: CellResult = serde_json::from_str(include_str!("../../tests/data/result-sample.json")).unwrap();
        let mk = |rep: u32, ws: Option<f64>, cgroup_peak: f64| {
            let mut r = base.clone();
            r.repeat = rep;
            match ws {
                Some(w) => {
                    r.peak_memory_metric = super::super::model::METRIC_WORKING_SET.into();
                    r.peak_memory_bytes = Some((w * 1048576.0) as u64);
                    r.memory = Some(super::super::model::MemoryBreakdown {
                        working_set_peak_bytes: r.peak_memory_bytes,
                        cgroup_peak_bytes: Some((cgroup_peak * 1048576.0) as u64),
                        ..Default::default()
                    });
                }
                None => r.peak_memory_bytes = Some((cgroup_peak * 1048576.0) as u64),
            }
            r
        };
        let new: Vec<CellResult> = (1..=2).map(|i| mk(i, Some(10.0), 260.0)).collect();
        let newer: Vec<CellResult> = (1..=2).map(|i| mk(i, Some(12.0), 270.0)).collect();
        let old: Vec<CellResult> = (1..=2).map(|i| mk(i, None, 265.0)).collect();
        fn refs(v: &[CellResult]) -> Vec<&CellResult> {
            v.iter().collect()
        }
        let both = compare(&refs(&new), &refs(&newer));
        assert_eq!(both[0].peak_memory_metric, "working_set");
        assert_eq!((both[0].peak_memory_mb.a_mean, both[0].peak_memory_mb.b_mean), (Some(10.0), Some(12.0)));
        // An old run against a new one: memory.peak on both sides, never 265 against 10.
        let mixed = compare(&refs(&old), &refs(&new));
        assert_eq!(mixed[0].peak_memory_metric, "memory.peak");
        assert_eq!((mixed[0].peak_memory_mb.a_mean, mixed[0].peak_memory_mb.b_mean), (Some(265.0), Some(260.0)));
    }
}
