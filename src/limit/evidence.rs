//! What the probes mean together: `limit.json` (the answer, the points on either side of it with
//! how each probe there ended, the noisy points, every probe in order) and the lines summary.txt
//! and the console start with. Pure: results in, a document out.

use super::search::{self, Outcome, Probe, Search, Step};
use super::spec::{Grid, Question, Spec};
use crate::results::export::limit::{LimitDoc, LimitOutcome, Point, ProbeFailure, ProbeRow};
use crate::results::model::{CellResult, mib, round3};

/// What the document says about the search beyond its probes.
pub struct Context<'a> {
    pub run_key: &'a str,
    /// The target's name, and its mode (`memory`; `profile` for a profile's target).
    pub target: &'a str,
    pub target_mode: &'a str,
    pub spec: &'a Spec,
    pub confirm: u32,
    /// Where an attempt's result.json is, relative to the run directory.
    pub result_path: fn(&CellResult) -> String,
}

impl Context<'_> {
    fn target_words(&self) -> String {
        if self.target_mode == "profile" { self.target.to_string() } else { format!("{} ({} mode)", self.target, self.target_mode) }
    }

    /// The question in words.
    pub fn question(&self) -> String {
        let c = match self.spec.concurrency {
            1 => String::new(),
            n => format!(" ({n} at once)"),
        };
        match self.spec.question {
            Question::Ram { file_size } => format!("the smallest guest RAM at which {} passes a verified {file_size} upload{c}", self.target_words()),
            Question::FileSize { ram_mib } => format!("the largest file {} passes, verified{c}, with {ram_mib} MiB of guest RAM", self.target_words()),
        }
    }
}

/// A probe is a cell of the grid with a final result; `settled` are those (point, final result).
pub fn probes(settled: &[(usize, &CellResult)]) -> Vec<Probe> {
    settled.iter().map(|(point, r)| Probe { point: *point, repeat: r.repeat, passed: r.success }).collect()
}

/// The document, from every finished attempt of the search's cells (`attempts`, for the time
/// spent) and the final result of each settled probe.
pub fn document(c: &Context, grid: &Grid, attempts: &[CellResult], settled: &[(usize, &CellResult)]) -> LimitDoc {
    let s = Search { points: grid.len(), confirm: c.confirm };
    let ps = probes(settled);
    let (outcome, bracket) = match s.next(&ps, 1) {
        Step::Done { outcome, bracket } => (
            match outcome {
                Outcome::Found => LimitOutcome::Found,
                Outcome::PassesEverywhere => LimitOutcome::PassesEverywhere,
                Outcome::PassesNowhere => LimitOutcome::PassesNowhere,
            },
            bracket,
        ),
        Step::Probe(_) => (LimitOutcome::Searching, s.bracket(&ps)),
    };
    let point = |i: usize| evidence(c, grid, i, settled);
    let passing = bracket.passing.map(point);
    let failing = bracket.failing.map(point);
    let limit = match outcome {
        LimitOutcome::Found | LimitOutcome::PassesEverywhere => passing.as_ref().map(|p| p.value),
        _ => None,
    };
    let mut ordered: Vec<&(usize, &CellResult)> = settled.iter().collect();
    ordered.sort_by_key(|(_, r)| (r.timestamp, r.repeat));
    let probes = ordered
        .iter()
        .map(|(i, r)| ProbeRow {
            value: grid.points[*i],
            label: grid.label(*i),
            repeat: r.repeat,
            attempt: r.attempt,
            passed: r.success,
            exit_reason: r.exit_reason,
            peak_memory_mb: r.peak_memory_mb,
            cgroup_peak_mb: r.cgroup_peak_bytes().map(mib).map(round3),
            result_file: (c.result_path)(r),
        })
        .collect();
    let spec = c.spec;
    let (ram_mb, file_size) = match spec.question {
        Question::Ram { file_size } => (None, Some(file_size.label())),
        Question::FileSize { ram_mib } => (Some(ram_mib), None),
    };
    let mut doc = LimitDoc {
        run_key: c.run_key.to_string(),
        searched: spec.question.searched(),
        question: c.question(),
        target: c.target.to_string(),
        target_mode: c.target_mode.to_string(),
        ram_mb,
        file_size,
        concurrency: spec.concurrency,
        range_low: spec.range.low,
        range_high: spec.range.high,
        range: spec.range_label(),
        resolution: spec.resolution_label(),
        points: grid.len(),
        confirm: c.confirm,
        outcome,
        message: String::new(),
        limit,
        limit_label: limit.map(|v| spec.question.label(v)),
        passing,
        failing,
        flaky: search::flaky(&ps).into_iter().map(point).collect(),
        probes,
        probe_seconds: round3(attempts.iter().map(crate::matrix::run::cell_seconds).sum()),
    };
    doc.message = message(c, &doc);
    doc
}

/// One point's probes.
fn evidence(c: &Context, grid: &Grid, i: usize, settled: &[(usize, &CellResult)]) -> Point {
    let here: Vec<&CellResult> = settled.iter().filter(|(p, _)| *p == i).map(|(_, r)| *r).collect();
    let ok: Vec<&&CellResult> = here.iter().filter(|r| r.success).collect();
    let max = |v: Vec<f64>| v.into_iter().reduce(f64::max);
    let k = grid.cell(i, 1);
    let mut failures: Vec<ProbeFailure> = here
        .iter()
        .filter(|r| !r.success)
        .map(|r| ProbeFailure { repeat: r.repeat, exit_reason: r.exit_reason, error: r.error.clone(), peak_memory_mb: r.peak_memory_mb, result_file: (c.result_path)(r) })
        .collect();
    failures.sort_by_key(|f| f.repeat);
    Point {
        value: grid.points[i],
        label: grid.label(i),
        ram_mb: k.ram_mib,
        file_size: k.size.label(),
        file_size_bytes: k.size.bytes(),
        probes: here.len() as u32,
        passed: ok.len() as u32,
        peak_memory_mb: max(ok.iter().filter_map(|r| r.peak_memory_mb).collect()),
        cgroup_peak_mb: max(ok.iter().filter_map(|r| r.cgroup_peak_bytes()).map(|b| round3(mib(b))).collect()),
        failures,
    }
}

/// `oom_killed` or `oom_killed ×2, timeout`: how a point's probes failed.
fn reasons(p: &Point) -> String {
    let mut by: Vec<(String, usize)> = Vec::new();
    for f in &p.failures {
        match by.iter_mut().find(|(r, _)| *r == f.exit_reason.as_str()) {
            Some(e) => e.1 += 1,
            None => by.push((f.exit_reason.as_str().to_string(), 1)),
        }
    }
    by.into_iter().map(|(r, n)| if n > 1 { format!("{r} ×{n}") } else { r }).collect::<Vec<_>>().join(", ")
}

/// `2/2 passed at 288 MiB (peak working set 140.2 MiB, memory.peak 270.1 MiB)`.
fn passed_at(p: &Point) -> String {
    let peak = match (p.peak_memory_mb, p.cgroup_peak_mb) {
        (Some(w), Some(m)) => format!(" (peak working set {w:.1} MiB, memory.peak {m:.1} MiB)"),
        (Some(w), None) => format!(" (peak working set {w:.1} MiB)"),
        _ => String::new(),
    };
    format!("{}/{} passed at {}{peak}", p.passed, p.probes, p.label)
}

fn failed_at(p: &Point) -> String {
    format!("{} failed ({})", p.label, reasons(p))
}

fn message(c: &Context, d: &LimitDoc) -> String {
    let who = c.target_words();
    let ram = matches!(c.spec.question, Question::Ram { .. });
    let (pass, fail) = (d.passing.as_ref(), d.failing.as_ref());
    let fixed = match c.spec.question {
        Question::Ram { file_size } => format!("for a {file_size} upload"),
        Question::FileSize { ram_mib } => format!("with {ram_mib} MiB of guest RAM"),
    };
    match (d.outcome, pass, fail) {
        (LimitOutcome::Found, Some(p), Some(f)) => {
            let what = if ram { format!("{who} needs {} of guest RAM {fixed}", p.label) } else { format!("the largest file {who} passes {fixed} is {}", p.label) };
            format!("{what} (resolution {}): {}; {}", d.resolution, passed_at(p), failed_at(f))
        }
        (LimitOutcome::PassesEverywhere, Some(p), _) => {
            let (end, beyond) = if ram { ("the least", format!("{} or less", p.label)) } else { ("the largest", format!("{} or more", p.label)) };
            format!("{who} passes everywhere in {} {fixed}: {}, {end} in the range; its limit is {beyond}", d.range, passed_at(p))
        }
        (LimitOutcome::PassesNowhere, _, Some(f)) => {
            let (end, beyond) = if ram { ("the most", format!("it needs more than {}", f.label)) } else { ("the smallest", format!("its limit is below {}", f.label)) };
            format!("{who} passes nowhere in {} {fixed}: {}, {end} in the range; {beyond}", d.range, failed_at(f))
        }
        _ => {
            let (below, above) = if ram { ("above", "below") } else { ("below", "above") };
            let at = match (fail, pass) {
                (Some(f), Some(p)) => format!("between {} (failed) and {} (passed)", f.label, p.label),
                (Some(f), None) => format!("{below} {}, which failed", f.label),
                (None, Some(p)) => format!("at {}, which passed, or {above}", p.label),
                (None, None) => "not bracketed yet".to_string(),
            };
            format!("searching: the limit is {at}; {} probe(s) so far", d.probes.len())
        }
    }
}

/// The lines summary.txt starts with (and the console prints at the end).
pub fn summary_lines(d: &LimitDoc) -> String {
    let mut out = format!("limit: {}\n", d.message);
    out.push_str(&format!(
        "searched {}: {} (every {}, {} points), --confirm {}; {} probe(s), {} in cells\n",
        match d.searched {
            crate::results::export::limit::Searched::Ram => "guest RAM",
            crate::results::export::limit::Searched::FileSize => "file size",
        },
        d.range,
        d.resolution,
        d.points,
        d.confirm,
        d.probes.len(),
        crate::size::fmt_secs(d.probe_seconds)
    ));
    for p in &d.flaky {
        out.push_str(&format!("noisy: {} passed {} of {} probes ({})\n", p.label, p.passed, p.probes, reasons(p)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::spec::Range;
    use crate::size::ByteSize;
    use crate::results::model::ExitReason;

    fn result(ram: u64, size: &str, repeat: u32, reason: ExitReason, peak: f64, minute: i64) -> CellResult {
        let mut r: CellResult = serde_json::from_str(include_str!("../../tests/data/result-sample.json")).unwrap();
        (r.ram_mb, r.file_size_bytes, r.file_size, r.repeat, r.attempt) = (ram, ByteSize::parse(size).unwrap().bytes(), size.to_string(), repeat, 1);
        r.cell = r.key().id();
        (r.success, r.exit_reason, r.peak_memory_mb) = (reason == ExitReason::Success, reason, Some(peak));
        r.peak_memory_metric = crate::results::model::METRIC_WORKING_SET.into();
        r.timestamp = chrono::DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z").unwrap().to_utc() + chrono::Duration::minutes(minute);
        r
    }

    fn ctx(spec: &Spec) -> Context<'_> {
        Context { run_key: "limit-abc", target: "perfvm-target", target_mode: "memory", spec, confirm: 2, result_path: |r| format!("cells/{}/a{}/result.json", r.key().id(), r.attempt) }
    }

    #[test]
    fn a_found_ram_limit_has_both_sides_the_noise_and_every_probe_in_order() {
        let spec = Spec::new(Question::Ram { file_size: ByteSize::parse("128M").unwrap() }, Some(Range { low: 192, high: 512 }), Some("64"), 1).unwrap();
        let grid = spec.grid();
        use ExitReason::*;
        let rs = [
            result(320, "128M", 1, Success, 140.0, 0),
            result(256, "128M", 1, Success, 139.0, 1),
            result(192, "128M", 1, OomKilled, 150.0, 2),
            result(256, "128M", 2, OomKilled, 170.0, 3),
            result(320, "128M", 2, Success, 141.5, 4),
        ];
        let settled: Vec<(usize, &CellResult)> = rs.iter().map(|r| (grid.point_of(&r.key()).unwrap(), r)).collect();
        let d = document(&ctx(&spec), &grid, &rs, &settled);
        assert_eq!(d.outcome, LimitOutcome::Found);
        assert_eq!((d.limit, d.limit_label.as_deref()), (Some(320), Some("320 MiB")));
        let (p, f) = (d.passing.as_ref().unwrap(), d.failing.as_ref().unwrap());
        assert_eq!((p.value, p.probes, p.passed, p.peak_memory_mb), (320, 2, 2, Some(141.5)));
        assert_eq!((f.value, f.probes, f.passed), (256, 2, 1));
        assert_eq!(f.failures.iter().map(|x| (x.repeat, x.exit_reason)).collect::<Vec<_>>(), [(2, OomKilled)]);
        assert_eq!(f.failures[0].result_file, "cells/256-128M-r2/a1/result.json");
        assert_eq!(d.flaky.iter().map(|p| p.value).collect::<Vec<_>>(), [256]);
        assert_eq!(d.probes.iter().map(|p| (p.value, p.repeat)).collect::<Vec<_>>(), [(320, 1), (256, 1), (192, 1), (256, 2), (320, 2)]);
        assert_eq!(
            d.message,
            "perfvm-target (memory mode) needs 320 MiB of guest RAM for a 128M upload (resolution 64 MiB): 2/2 passed at 320 MiB (peak working set 141.5 MiB); 256 MiB failed (oom_killed)"
        );
        let lines = summary_lines(&d);
        assert!(lines.starts_with("limit: perfvm-target (memory mode) needs 320 MiB"), "{lines}");
        assert!(lines.contains("searched guest RAM: 192..512 MiB (every 64 MiB, 6 points), --confirm 2; 5 probe(s)"), "{lines}");
        assert!(lines.contains("noisy: 256 MiB passed 1 of 2 probes (oom_killed)"), "{lines}");
        // limit.json round-trips through its own type (the report reads it back).
        let back: LimitDoc = serde_json::from_slice(&crate::results::export::limit::render(&d)).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn the_ends_of_the_range_and_a_search_under_way_say_so() {
        use ExitReason::*;
        let q = Question::FileSize { ram_mib: 256 };
        let spec = Spec::new(q, Some(crate::limit::spec::parse_size_range("16M..64M").unwrap()), Some("16M"), 1).unwrap();
        let grid = spec.grid();
        let doc = |rs: &[CellResult]| {
            let settled: Vec<(usize, &CellResult)> = rs.iter().map(|r| (grid.point_of(&r.key()).unwrap(), r)).collect();
            document(&ctx(&spec), &grid, rs, &settled)
        };
        // Everywhere: the largest file passed twice.
        let d = doc(&[result(256, "64M", 1, Success, 70.0, 0), result(256, "64M", 2, Success, 71.0, 1)]);
        assert_eq!((d.outcome, d.limit, d.failing.is_none()), (LimitOutcome::PassesEverywhere, Some(64 << 20), true));
        assert!(d.message.contains("passes everywhere in 16M..64M with 256 MiB of guest RAM: 2/2 passed at 64M") && d.message.ends_with("its limit is 64M or more"), "{}", d.message);
        // Nowhere: the smallest failed.
        let d = doc(&[result(256, "48M", 1, HttpError, 1.0, 0), result(256, "16M", 1, Timeout, 1.0, 1)]);
        assert_eq!((d.outcome, d.limit), (LimitOutcome::PassesNowhere, None));
        assert!(d.message.ends_with("16M failed (timeout), the smallest in the range; its limit is below 16M"), "{}", d.message);
        // Under way: one probe in, one side of the bracket known.
        let d = doc(&[result(256, "48M", 1, OomKilled, 250.0, 0)]);
        assert_eq!(d.outcome, LimitOutcome::Searching);
        assert_eq!(d.message, "searching: the limit is below 48M, which failed; 1 probe(s) so far");
    }
}
