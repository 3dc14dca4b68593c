//! `--target-rsd`: repeat a cell until its throughput is steady. Each shape (RAM × size ×
//! concurrency) gets `min_repeats` repetitions; once all of them are finished, one more is added
//! while the relative standard deviation (stddev / mean) of their throughput is above the target
//! and fewer than `max_repeats` ran. A repetition that did not pass ends the shape: repeating
//! cannot make a failure steady. Decided from finished results alone, so a resumed run decides
//! exactly as an uninterrupted one would. Pure: it sees finished repetitions as [`Settled`]
//! facts, not results.

use super::key::CellKey;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adaptive {
    pub min_repeats: u32,
    pub max_repeats: u32,
    pub target_rsd_percent: f64,
}

/// Why a shape got no more repetitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopKind {
    /// The throughput RSD fell to the target or under it.
    TargetMet,
    /// `max_repeats` ran and the RSD is still above the target.
    MaxRepeats,
    /// A repetition did not pass (or passed without a throughput).
    Failed,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stop {
    pub kind: StopKind,
    pub repetitions: u32,
    /// Over the passed repetitions, when there are two or more.
    pub rsd_percent: Option<f64>,
    pub message: String,
}

/// Where a shape stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// This many repetitions are wanted; not all of them have finished.
    Running(u32),
    Stopped(Stop),
}

impl Plan {
    pub fn wanted(&self) -> u32 {
        match self {
            Plan::Running(n) => *n,
            Plan::Stopped(s) => s.repetitions,
        }
    }
}

/// Relative standard deviation in percent (sample stddev over mean); None under two values or
/// with a mean of 0.
pub fn rsd_percent(values: &[f64]) -> Option<f64> {
    let s = crate::stats::stats(values)?;
    (s.n >= 2 && s.mean > 0.0).then(|| s.stddev / s.mean * 100.0)
}

impl Adaptive {
    /// The flags' values, checked; the message names the flag.
    pub fn new(min: Option<u32>, max: Option<u32>, target_rsd: f64) -> Result<Adaptive, String> {
        let min_given = min.is_some();
        let min = min.unwrap_or(3);
        let max = max.unwrap_or(10);
        if !(target_rsd.is_finite() && target_rsd > 0.0 && target_rsd < 100.0) {
            return Err(format!("--target-rsd {target_rsd}: give a percentage above 0 and under 100, e.g. 5"));
        }
        if min < 2 {
            return Err(format!("--min-repeats {min}: a standard deviation needs 2 or more"));
        }
        if max < min {
            return Err(format!("--max-repeats {max} is under --min-repeats {min}{}", if min_given { "" } else { " (the default)" }));
        }
        if max > 100 {
            return Err(format!("--max-repeats {max}: use 100 or fewer"));
        }
        Ok(Adaptive { min_repeats: min, max_repeats: max, target_rsd_percent: target_rsd })
    }

    /// `finished`: repetition number → its throughput if it passed with one, else None.
    pub fn plan(&self, finished: &BTreeMap<u32, Option<f64>>) -> Plan {
        let mut n = self.min_repeats;
        loop {
            if !(1..=n).all(|r| finished.contains_key(&r)) {
                return Plan::Running(n);
            }
            let passed: Vec<f64> = (1..=n).filter_map(|r| finished[&r]).collect();
            let rsd = rsd_percent(&passed);
            let stop = |kind, message| Plan::Stopped(Stop { kind, repetitions: n, rsd_percent: rsd.map(round2), message });
            if let Some(bad) = (1..=n).find(|r| finished[r].is_none()) {
                return stop(StopKind::Failed, format!("r{bad} did not pass; repeating cannot make a failure steady"));
            }
            let rsd = rsd.unwrap_or(f64::INFINITY);
            if rsd <= self.target_rsd_percent {
                return stop(StopKind::TargetMet, format!("throughput RSD {rsd:.1} % ≤ {} % after {n} repetitions", self.target_rsd_percent));
            }
            if n >= self.max_repeats {
                return stop(StopKind::MaxRepeats, format!("{n} repetitions (--max-repeats) and throughput RSD still {rsd:.1} % > {} %", self.target_rsd_percent));
            }
            n += 1;
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// RAM, file size in bytes, uploads at once: what a cell's repetitions share.
/// A cell without its repetition (repetition 1 stands for all of them).
pub type Shape = CellKey;

pub fn shape_of(k: &CellKey) -> Shape {
    CellKey { repeat: 1, ..*k }
}

/// The settled repetitions of each shape: repeat → its throughput if it passed with one, None
/// if it did not pass. Cells queued or running are left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settled(HashMap<Shape, BTreeMap<u32, Option<f64>>>);

impl Settled {
    /// From (cell, throughput if it passed) of each settled final attempt.
    pub fn from_cells(cells: impl IntoIterator<Item = (CellKey, Option<f64>)>) -> Settled {
        let mut by: HashMap<Shape, BTreeMap<u32, Option<f64>>> = HashMap::new();
        for (k, tp) in cells {
            by.entry(shape_of(&k)).or_default().insert(k.repeat, tp);
        }
        Settled(by)
    }
}

/// The cells of `cells` (expanded up to `max_repeats`) that are wanted now: per shape, the
/// repetitions its plan asks for. Without a policy, all of them.
pub fn planned(cells: &[CellKey], settled: &Settled, policy: Option<&Adaptive>) -> Vec<CellKey> {
    let Some(p) = policy else { return cells.to_vec() };
    let empty = BTreeMap::new();
    let mut wanted: HashMap<Shape, u32> = HashMap::new();
    cells
        .iter()
        .filter(|k| {
            let s = shape_of(k);
            let n = *wanted.entry(s).or_insert_with(|| p.plan(settled.0.get(&s).unwrap_or(&empty)).wanted());
            k.repeat <= n
        })
        .copied()
        .collect()
}

/// Why each settled shape stopped (for results.json and the reports), by shape id.
pub fn stops(settled: &Settled, policy: &Adaptive) -> BTreeMap<String, Stop> {
    let mut out = BTreeMap::new();
    for (shape, reps) in &settled.0 {
        if let Plan::Stopped(stop) = policy.plan(reps) {
            out.insert(shape.shape(), stop);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size::ByteSize;

    fn fin(v: &[(u32, Option<f64>)]) -> BTreeMap<u32, Option<f64>> {
        v.iter().copied().collect()
    }

    const P: Adaptive = Adaptive { min_repeats: 3, max_repeats: 5, target_rsd_percent: 5.0 };

    #[test]
    fn the_minimum_runs_first_and_a_steady_shape_stops_there() {
        assert_eq!(P.plan(&fin(&[])), Plan::Running(3));
        assert_eq!(P.plan(&fin(&[(1, Some(100.0)), (3, Some(101.0))])), Plan::Running(3), "r2 still running");
        let Plan::Stopped(s) = P.plan(&fin(&[(1, Some(100.0)), (2, Some(101.0)), (3, Some(99.0))])) else { panic!() };
        assert_eq!((s.kind, s.repetitions, s.rsd_percent), (StopKind::TargetMet, 3, Some(1.0)));
        assert!(s.message.contains("1.0 % ≤ 5 %"), "{}", s.message);
    }

    #[test]
    fn a_noisy_shape_gets_one_more_at_a_time_up_to_the_maximum() {
        let noisy = [(1, Some(100.0)), (2, Some(130.0)), (3, Some(80.0))];
        assert_eq!(P.plan(&fin(&noisy)), Plan::Running(4));
        let mut four = noisy.to_vec();
        four.push((4, Some(100.0)));
        assert_eq!(P.plan(&fin(&four)), Plan::Running(5));
        four.push((5, Some(101.0)));
        let Plan::Stopped(s) = P.plan(&fin(&four)) else { panic!() };
        assert_eq!((s.kind, s.repetitions), (StopKind::MaxRepeats, 5));
        assert!(s.rsd_percent.unwrap() > 5.0);
        // A fourth repetition that steadies it: 100, 110, 100 is 5.6 %; with another 100, 4.9 %.
        let three = fin(&[(1, Some(100.0)), (2, Some(110.0)), (3, Some(100.0))]);
        assert_eq!(P.plan(&three), Plan::Running(4));
        let Plan::Stopped(s) = P.plan(&fin(&[(1, Some(100.0)), (2, Some(110.0)), (3, Some(100.0)), (4, Some(100.0))])) else { panic!() };
        assert_eq!((s.kind, s.repetitions, s.rsd_percent), (StopKind::TargetMet, 4, Some(4.88)));
    }

    #[test]
    fn a_failed_repetition_stops_the_shape() {
        let Plan::Stopped(s) = P.plan(&fin(&[(1, Some(100.0)), (2, None), (3, Some(50.0))])) else { panic!() };
        assert_eq!((s.kind, s.repetitions), (StopKind::Failed, 3));
        assert!(s.message.starts_with("r2 did not pass"), "{}", s.message);
    }

    #[test]
    fn flags_are_checked() {
        assert_eq!(Adaptive::new(None, None, 5.0), Ok(Adaptive { min_repeats: 3, max_repeats: 10, target_rsd_percent: 5.0 }));
        assert!(Adaptive::new(Some(1), None, 5.0).unwrap_err().contains("--min-repeats 1"));
        assert!(Adaptive::new(Some(4), Some(3), 5.0).unwrap_err().ends_with("--max-repeats 3 is under --min-repeats 4"));
        assert!(Adaptive::new(None, Some(2), 5.0).unwrap_err().ends_with("under --min-repeats 3 (the default)"));
        assert!(Adaptive::new(None, Some(101), 5.0).is_err());
        for bad in [0.0, -1.0, 100.0, f64::NAN, f64::INFINITY] {
            assert!(Adaptive::new(None, None, bad).unwrap_err().contains("--target-rsd"), "{bad}");
        }
    }

    #[test]
    fn rsd_needs_two_values_and_a_positive_mean() {
        assert_eq!(rsd_percent(&[5.0]), None);
        assert_eq!(rsd_percent(&[0.0, 0.0]), None);
        assert!((rsd_percent(&[90.0, 110.0]).unwrap() - 14.142).abs() < 1e-3);
    }

    fn cell(ram: u64, repeat: u32, tp: Option<f64>) -> (CellKey, Option<f64>) {
        (CellKey { ram_mib: ram, size: ByteSize::parse("1M").unwrap(), concurrency: 1, repeat, target: crate::plan::key::TargetTag::NONE }, tp)
    }

    #[test]
    fn planned_cells_grow_per_shape_from_finished_results() {
        let sizes = [ByteSize::parse("1M").unwrap()];
        let cells = crate::plan::expand::expand(&[256, 512], &sizes, &[1], &[crate::plan::key::TargetTag::NONE], P.max_repeats).unwrap();
        assert_eq!(planned(&cells, &Settled::default(), None).len(), 10, "no policy: every cell");
        let start = planned(&cells, &Settled::default(), Some(&P));
        assert_eq!(start.iter().map(|k| (k.ram_mib, k.repeat)).collect::<Vec<_>>(), vec![(256, 1), (256, 2), (256, 3), (512, 1), (512, 2), (512, 3)]);
        // 256 is steady, 512 is noisy: only 512 gets a fourth.
        let done = Settled::from_cells([cell(256, 1, Some(50.0)), cell(256, 2, Some(50.5)), cell(256, 3, Some(49.5)), cell(512, 1, Some(50.0)), cell(512, 2, Some(70.0)), cell(512, 3, Some(40.0))]);
        let now = planned(&cells, &done, Some(&P));
        assert_eq!(now.len(), 7);
        assert!(now.iter().any(|k| k.ram_mib == 512 && k.repeat == 4));
        let why = stops(&done, &P);
        assert_eq!(why.len(), 1, "512 is still running");
        assert_eq!(why["256-1M"].kind, StopKind::TargetMet);
    }
}
