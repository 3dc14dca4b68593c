//! `perfvm report RUN_DIR`: a self-contained `report.html` (inline SVG charts, no network) and a
//! `report.md` (tables to paste into issues) from what a run wrote: `results.json` of a matrix, or
//! `result.json` of a single cell, and each cell's `samples.csv`. Written at the end of every
//! matrix too.

pub mod html;
pub mod markdown;
pub mod plot;

use crate::results::export::json::{RepeatSummary, RunMetadata};
use crate::results::model::CellResult;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Memory over time of one cell, from its `samples.csv` (MiB; `None` where not sampled).
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub t: Vec<f64>,
    pub cgroup_mib: Vec<Option<f64>>,
    /// The working set and memory.stat's parts (empty columns in samples of an older perfvm).
    pub working_set_mib: Vec<Option<f64>>,
    pub anon_mib: Vec<Option<f64>>,
    pub file_mib: Vec<Option<f64>>,
    pub kernel_mib: Vec<Option<f64>>,
    pub qemu_rss_mib: Vec<Option<f64>>,
    pub mem_available_mib: Vec<Option<f64>>,
    /// Time of the first `download` row, if any (the upload ended just before).
    pub download_start: Option<f64>,
}

/// One cell in the report: its final result, where it lives, its timeline.
pub struct ReportCell {
    pub result: CellResult,
    /// Directory of the result relative to the run directory (`cells/512-1G-r1/a1`, or `.`).
    pub dir: String,
    pub timeline: Option<Timeline>,
}

pub struct Report {
    pub title: String,
    pub metadata: Option<RunMetadata>,
    pub cells: Vec<ReportCell>,
    /// Attempts that were retried (not final), for the record.
    pub attempts: usize,
    /// Statistics of repeated cells (`--repeat` > 1).
    pub repeats: Vec<RepeatSummary>,
    /// From the history database: each cell of this run across runs of its target (only cells
    /// with two runs or more).
    pub history: Vec<(String, Vec<crate::history::TrendPoint>)>,
    /// A limit search's answer and evidence (`perfvm limit`), when the run is one.
    pub limit: Option<crate::results::export::limit::LimitDoc>,
}

impl Report {
    /// Anchor id of a cell in report.html.
    pub fn anchor(r: &CellResult) -> String {
        format!("cell-{}", r.key().id())
    }

    /// A matrix of several targets side by side; None when the run has one.
    pub fn comparison(&self) -> Option<crate::results::export::targets::Comparison<'_>> {
        let finals: Vec<&CellResult> = self.cells.iter().map(|c| &c.result).collect();
        let order = self.metadata.as_ref().map_or(&[][..], |m| &m.definition.targets[..]);
        crate::results::export::targets::compare(&finals, order)
    }
}

/// Read a run directory.
pub fn load(run_dir: &Path) -> Result<Report> {
    let doc = crate::rundir::read_run(run_dir)?;
    let matrix = doc.metadata.is_some();
    let cells = crate::results::export::finals(&doc.cells)
        .into_iter()
        .map(|r| {
            let dir = crate::rundir::cell_rel(r, matrix);
            let timeline = read_timeline(&run_dir.join(&dir).join("samples.csv"));
            ReportCell { result: r.clone(), dir, timeline }
        })
        .collect();
    let limit = crate::rundir::read_limit(run_dir);
    let title = match &doc.metadata {
        Some(m) if limit.is_some() => format!("perfvm limit {}", m.run_key),
        Some(m) => format!("perfvm matrix {}", m.run_key),
        None => format!("perfvm run {}", doc.cells[0].run_id),
    };
    Ok(Report { title, metadata: doc.metadata, cells, attempts: doc.cells.len(), repeats: doc.repeats, history: Vec::new(), limit })
}

/// The memory columns of a samples.csv; None if it cannot be read.
pub fn read_timeline(path: &Path) -> Option<Timeline> {
    let mut rd = csv::Reader::from_path(path).ok()?;
    let h = rd.headers().ok()?.clone();
    let col = |name: &str| h.iter().position(|c| c == name);
    let (t, cur, rss, avail, phase) =
        (col("t_seconds")?, col("cgroup_memory_current_bytes"), col("host_qemu_rss_bytes"), col("guest_mem_available_bytes"), col("phase"));
    let (ws, anon, file, kernel) =
        (col("cgroup_memory_working_set_bytes"), col("cgroup_memory_anon_bytes"), col("cgroup_memory_file_bytes"), col("cgroup_memory_kernel_bytes"));
    let mib = |rec: &csv::StringRecord, i: Option<usize>| i.and_then(|i| rec.get(i)).and_then(|v| v.parse::<f64>().ok()).map(|b| b / 1048576.0);
    let mut tl = Timeline::default();
    for rec in rd.records().flatten() {
        let Some(ts) = rec.get(t).and_then(|v| v.parse::<f64>().ok()) else { continue };
        if tl.download_start.is_none() && phase.and_then(|i| rec.get(i)) == Some("download") {
            tl.download_start = Some(ts);
        }
        tl.t.push(ts);
        tl.cgroup_mib.push(mib(&rec, cur));
        tl.working_set_mib.push(mib(&rec, ws));
        tl.anon_mib.push(mib(&rec, anon));
        tl.file_mib.push(mib(&rec, file));
        tl.kernel_mib.push(mib(&rec, kernel));
        tl.qemu_rss_mib.push(mib(&rec, rss));
        tl.mem_available_mib.push(mib(&rec, avail));
    }
    Some(tl)
}

/// Each distinct cell of the report across the runs in the history database `db` (if it exists
/// and has two runs or more of a cell).
pub fn history(report: &Report, db: &Path) -> Result<Vec<(String, Vec<crate::history::TrendPoint>)>> {
    if !db.is_file() {
        return Ok(Vec::new());
    }
    let db = crate::history::Db::open(db)?;
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for c in &report.cells {
        let r = &c.result;
        let k = r.key();
        if !seen.insert((k.ram_mib, k.size.bytes(), k.concurrency, r.target.name.clone(), r.target.mode.clone())) {
            continue;
        }
        let pts = db.trend(k.ram_mib, k.size.bytes(), k.concurrency.max(1), Some(&r.target.name), Some(&r.target.mode))?;
        if pts.len() >= 2 {
            out.push((k.shape(), pts));
        }
    }
    Ok(out)
}

/// Write report.html and report.md into the run directory; returns their paths. With a history
/// database, trends across runs are included.
pub fn write(run_dir: &Path, db: Option<&Path>) -> Result<Vec<PathBuf>> {
    let mut report = load(run_dir)?;
    if let Some(db) = db {
        // The history is extra: a database that cannot be read leaves it out.
        match history(&report, db) {
            Ok(h) => report.history = h,
            Err(e) => eprintln!("perfvm: history left out of the report: {e:#}"),
        }
    }
    let mut out = Vec::new();
    for (name, data) in [("report.html", html::render(&report)), ("report.md", markdown::render(&report))] {
        let p = run_dir.join(name);
        crate::paths::write_atomic(&p, data.as_bytes()).with_context(|| format!("cannot write {}", p.display()))?;
        out.push(p);
    }
    Ok(out)
}

/// A time as people read it in a report: to the second, in UTC.
pub fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The cell's outcome in a few words: `62.4 MiB/s, peak 11.6 MiB` or `FAIL oom_killed`.
pub fn outcome(r: &CellResult) -> String {
    if r.success {
        format!("{:.1} MiB/s, peak {:.1} MiB", r.throughput_mbps.unwrap_or(0.0), r.peak_memory_mb.unwrap_or(0.0))
    } else {
        match r.peak_memory_mb {
            Some(p) => format!("FAIL {} (peak {p:.1} MiB)", r.exit_reason),
            None => format!("FAIL {}", r.exit_reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::model::ExitReason;

    fn sample() -> CellResult {
        serde_json::from_str(include_str!("../../tests/data/result-sample.json")).unwrap()
    }

    fn report() -> Report {
        let ok = sample();
        let mut oom = sample();
        oom.ram_mb = 256;
        oom.success = false;
        oom.exit_reason = ExitReason::OomKilled;
        oom.peak_memory_mb = Some(250.0);
        oom.error = Some("<script>alert(1)</script>".into());
        let tl = Timeline {
            t: vec![0.0, 0.1, 0.2],
            cgroup_mib: vec![Some(1.0), Some(40.0), None],
            working_set_mib: vec![Some(1.0), Some(10.0), None],
            anon_mib: vec![Some(0.5), Some(8.0), None],
            file_mib: vec![Some(0.2), Some(30.0), None],
            kernel_mib: vec![Some(0.2), Some(1.5), None],
            qemu_rss_mib: vec![Some(1000.0), Some(1010.0), Some(1020.0)],
            mem_available_mib: vec![Some(400.0), Some(360.0), Some(350.0)],
            download_start: None,
        };
        Report {
            title: "perfvm matrix test".into(),
            metadata: None,
            cells: vec![
                ReportCell { result: oom, dir: "cells/256-x/a1".into(), timeline: Some(tl) },
                ReportCell { result: ok, dir: "cells/512-x/a1".into(), timeline: None },
            ],
            attempts: 3,
            limit: None,
            repeats: Vec::new(),
            history: Vec::new(),
        }
    }

    #[test]
    fn history_from_the_database_goes_into_both_reports() {
        let d = tempfile::tempdir().unwrap();
        let db_path = d.path().join("h.sqlite");
        let rep = report();
        let mut db = crate::history::Db::open(&db_path).unwrap();
        for (i, thr) in [(1, 50.0), (2, 40.0)] {
            let mut r = rep.cells[1].result.clone();
            r.throughput_mbps = Some(thr);
            let run = crate::history::RunRow { id: format!("night{i}"), started: Some(format!("2026-11-2{i}T00:00:00Z")), target: r.target.name.clone(), ..Default::default() };
            db.record(&run, &[&r]).unwrap();
        }
        let mut rep = rep;
        rep.history = history(&rep, &db_path).unwrap();
        assert_eq!(rep.history.len(), 1, "only the cell with two runs");
        assert_eq!(rep.history[0].1.len(), 2);
        let h = html::render(&rep);
        assert!(h.contains("<h2>History</h2>") && h.contains("throughput across runs") && h.contains("night2"));
        assert_eq!(h.matches("<svg").count(), 7, "two more charts");
        assert!(markdown::render(&rep).contains("| night1 |"));
        assert!(history(&rep, &d.path().join("none.sqlite")).unwrap().is_empty(), "no database, no history");
    }

    #[test]
    fn html_has_grid_links_charts_and_every_cell_escaped() {
        let rep = report();
        let h = html::render(&rep);
        assert!(h.starts_with("<!doctype html>") && h.trim_end().ends_with("</html>"));
        // Nothing loaded from elsewhere (the SVG namespace is a name, not a fetch), no scripts.
        assert!(!h.contains("src=") && !h.contains("href=\"http") && !h.contains("<script") && !h.contains("@import"), "self-contained");
        assert!(h.contains("&lt;script&gt;"), "error text escaped");
        for c in &rep.cells {
            let a = Report::anchor(&c.result);
            assert!(h.contains(&format!("href=\"#{a}\"")), "grid links to {a}");
            assert!(h.contains(&format!("id=\"{a}\"")), "section {a}");
        }
        assert!(h.contains("FAIL oom_killed"));
        assert!(h.contains("class=\"fail\"") && h.contains("class=\"ok\""));
        // Throughput, peak working set, memory.peak, and one cell's timeline and its memory by
        // kind (the other cell has no samples).
        assert_eq!(h.matches("<svg").count(), 5, "{h}");
        assert!(h.contains("target memory by kind") && h.contains("page cache"));
        assert!(h.contains("no samples"));
        assert!(h.contains("upload end"));
    }

    #[test]
    fn repeats_and_why_each_cell_stopped_are_in_both_reports() {
        use crate::plan::repeats::{Adaptive, StopKind};
        let policy = Adaptive { min_repeats: 3, max_repeats: 4, target_rsd_percent: 5.0 };
        let mk = |ram: u64, repeat: u32, tp: f64| {
            let mut r = sample();
            (r.ram_mb, r.repeat, r.success, r.throughput_mbps) = (ram, repeat, true, Some(tp));
            r
        };
        let rs = [mk(256, 1, 50.0), mk(256, 2, 50.5), mk(256, 3, 49.5), mk(512, 1, 40.0), mk(512, 2, 60.0), mk(512, 3, 50.0), mk(512, 4, 45.0)];
        let finals: Vec<&CellResult> = rs.iter().collect();
        let mut reps = crate::results::export::json::repeats(&finals);
        let why = crate::plan::repeats::stops(&crate::results::export::settled(finals.iter().copied()), &policy);
        for s in &mut reps {
            s.stop = why.get(&s.shape).cloned();
        }
        assert_eq!(reps.iter().map(|s| s.stop.as_ref().unwrap().kind).collect::<Vec<_>>(), vec![StopKind::TargetMet, StopKind::MaxRepeats]);
        let mut rep = report();
        rep.repeats = reps;
        let h = html::render(&rep);
        assert!(h.contains("<h2>Repeats</h2>") && h.contains("<th>stopped</th>"), "{h}");
        assert!(h.contains("≤ 5 % after 3 repetitions") && h.contains("4 repetitions (--max-repeats)"));
        assert!(h.contains("<td>1.0 %</td>"), "the RSD column");
        let m = markdown::render(&rep);
        assert!(m.contains("| outliers | stopped |") && m.contains("after 3 repetitions |"), "{m}");
        // Without --target-rsd there is no stopped column.
        rep.repeats.iter_mut().for_each(|s| s.stop = None);
        assert!(!html::render(&rep).contains("stopped") && !markdown::render(&rep).contains("stopped"));
    }

    #[test]
    fn markdown_has_a_row_per_cell() {
        let m = markdown::render(&report());
        let rows: Vec<&str> = m.lines().filter(|l| l.starts_with("| 256") || l.starts_with("| 512")).collect();
        assert_eq!(rows.len(), 2, "{m}");
        assert!(rows[0].contains("FAIL oom_killed") && rows[1].ends_with("passed |"));
    }

    #[test]
    fn a_single_cell_directory_is_read_with_its_samples() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("result.json"), include_str!("../../tests/data/result-sample.json")).unwrap();
        std::fs::write(
            d.path().join("samples.csv"),
            "t_seconds,uploaded_bytes,cgroup_memory_current_bytes,host_qemu_rss_bytes,phase\n0.0,0,1048576,,upload\n0.1,5,2097152,10485760,upload\n0.2,9,,,download\n",
        )
        .unwrap();
        let rep = load(d.path()).unwrap();
        assert_eq!(rep.cells.len(), 1);
        let tl = rep.cells[0].timeline.as_ref().unwrap();
        assert_eq!(tl.t, vec![0.0, 0.1, 0.2]);
        assert_eq!(tl.cgroup_mib, vec![Some(1.0), Some(2.0), None]);
        assert_eq!(tl.qemu_rss_mib[1], Some(10.0));
        assert_eq!(tl.download_start, Some(0.2));
        let written = write(d.path(), None).unwrap();
        assert_eq!(written.len(), 2);
        assert!(std::fs::read_to_string(d.path().join("report.html")).unwrap().contains("download start"));
        assert!(load(&d.path().join("nope")).is_err());
    }

    #[test]
    fn history_runs_are_named_by_label_else_start_to_the_minute() {
        let p = |id: &str, started: Option<&str>, label: Option<&str>, thr: f64| crate::history::TrendPoint {
            run_id: id.into(),
            started: started.map(Into::into),
            label: label.map(Into::into),
            target: "t".into(),
            repeats: 1,
            passed: 1,
            throughput_mbps: Some(thr),
            peak_memory_mb: Some(10.0),
            max_peak_memory_mb: None,
            memory_peak_mb: None,
            target_mode: Some("stream".into()),
        };
        // The second cell was not in the first run: the runs are shared, not per cell.
        let history = vec![
            ("256-1G".to_string(), vec![p("a", Some("2026-11-20T21:07:59Z"), None, 50.0), p("b", Some("2026-11-21T08:00:00+01:00"), Some("after fix"), 55.0), p("c", None, None, 56.0)]),
            ("512-1G".to_string(), vec![p("b", Some("2026-11-21T08:00:00+01:00"), Some("after fix"), 60.0)]),
        ];
        let runs = html::history_runs(&history);
        let names: Vec<&str> = runs.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(names, ["c", "2026-11-20 21:07", "after fix"], "no start first, then by start; label over date over id");
        let mut rep = report();
        rep.history = history;
        let h = html::render(&rep);
        assert!(h.contains("2026-11-20 21:07") && h.contains("after fix"), "x labels in the chart");
        assert!(h.contains("<td>3 b</td>"), "the table numbers runs as the chart does");
    }

    #[test]
    fn repeated_cells_are_drawn_as_mean_and_min_max() {
        let mk = |size: u64, tp: f64| {
            let mut r = sample();
            (r.ram_mb, r.file_size_bytes, r.throughput_mbps) = (256, size << 20, Some(tp));
            r
        };
        let rs = [mk(16, 30.0), mk(1024, 40.0), mk(1024, 50.0), mk(1024, 60.0)];
        let cells: Vec<&CellResult> = rs.iter().collect();
        let s = html::by_ram(&cells, |r| r.throughput_mbps, false);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].points, vec![(16.0, 30.0), (1024.0, 50.0)], "the mean per size");
        assert_eq!(s[0].spread, vec![(1024.0, 40.0, 60.0)], "a bar only where there are repeats");
        let chart = plot::svg(&plot::Chart { title: "t", x_label: "file size (MiB)", y_label: "MiB/s", x_axis: plot::XAxis::SizeMib, series: s, markers: vec![], size: (640, 300) });
        assert!(chart.contains("min–max") && chart.contains("log scale") && chart.contains(">\n1G\n<"), "{chart}");
    }

    /// A run directory of a two-target matrix (`targets::tests::two_targets`), as a matrix
    /// writes it: results.json, and a samples.csv for each cell.
    fn two_target_run(dir: &Path) {
        use crate::results::export::targets::tests as t;
        let rs = t::two_targets();
        let finals: Vec<&CellResult> = rs.iter().collect();
        let meta = t::meta(&t::order());
        let summary = crate::results::export::json::summarize(finals.len(), &finals, rs.len(), None);
        std::fs::write(dir.join("results.json"), crate::results::export::json::export(&meta, &summary, &rs, &finals, &Default::default())).unwrap();
        for r in &rs {
            let cell = dir.join(crate::rundir::cell_rel(r, true));
            std::fs::create_dir_all(&cell).unwrap();
            let peak = r.peak_memory_bytes.unwrap_or(0);
            std::fs::write(cell.join("samples.csv"), format!("t_seconds,cgroup_memory_current_bytes,cgroup_memory_working_set_bytes,phase\n0.0,1048576,1048576,upload\n1.0,{},{peak},upload\n", peak * 4)).unwrap();
        }
    }

    #[test]
    fn several_targets_share_each_rams_charts_and_get_limits_in_both_reports() {
        let d = tempfile::tempdir().unwrap();
        two_target_run(d.path());
        let rep = load(d.path()).unwrap();
        assert_eq!(rep.cells.len(), 11);
        let h = html::render(&rep);
        assert!(h.contains("<th>targets</th><td>perfvm-target (stream mode), dufs (profile-0123456789ab mode)</td>"), "{h}");
        // A grid per target, then per RAM a throughput and a memory chart, each a line per target.
        assert!(h.contains("<h3>perfvm-target-stream (perfvm-target, stream mode)</h3>") && h.contains("<h3>dufs (dufs, profile mode)</h3>"));
        let side = &h[h.find("<h2>Targets side by side</h2>").unwrap()..h.find("<h2>Best at each RAM × size</h2>").unwrap()];
        for ram in [256, 512] {
            let panel = side.split(&format!("<h3>{ram} MiB RAM</h3>")).nth(1).unwrap().split("</div>").next().unwrap();
            let charts: Vec<&str> = panel.split("<svg").skip(1).collect();
            assert_eq!(charts.len(), 2, "throughput and peak working set at {ram} MiB");
            for chart in charts {
                // A line per target (plotters draws each as a polyline), both in the legend.
                assert!(chart.matches("<polyline").count() >= 2 && chart.contains("perfvm-target-stream") && chart.contains("dufs"), "{chart}");
            }
        }
        assert!(!h.contains("upload throughput (passed cells)"), "no chart mixing the targets");
        assert_eq!(html::by_target(&rep.comparison().unwrap(), 1, 512, |p| p.throughput).iter().map(|s| (s.label.as_str(), s.points.len(), s.spread.len())).collect::<Vec<_>>(), [("perfvm-target-stream", 2, 1), ("dufs", 2, 0)]);
        let limits = &h[h.find("<h2>Limits</h2>").unwrap()..];
        assert!(limits.contains("<tr><th>dufs</th><td class=\"fail\">none<br>failed at 1G: OOM</td><td class=\"fail\">64M<br>failed at 1G: crash</td><td class=\"fail\">256 MiB (1G: OOM)</td></tr>"), "{limits}");
        assert!(limits.contains("<tr><th>perfvm-target-stream</th><td class=\"ok\">1G</td><td class=\"ok\">1G</td><td class=\"ok\">never</td></tr>"), "{limits}");
        let m = markdown::render(&rep);
        assert!(m.contains("- targets perfvm-target (stream mode), dufs (profile-0123456789ab mode), host h"), "{m}");
        assert!(m.contains("| target | RAM (MiB) |") && m.contains("| dufs | 256 | 1G |"), "{m}");
        assert!(m.contains("## Best at each RAM × size\n") && m.contains("| 256 | 60.0 MiB/s **dufs**; peak 10.0 MiB **perfvm-target-stream** | 38.0 MiB/s **perfvm-target-stream**; peak 11.0 MiB **perfvm-target-stream**; 1 of 2 passed |"), "{m}");
        assert!(m.contains("| target | 256 MiB | 512 MiB | first failed |\n| --- | --- | --- | --- |\n| perfvm-target-stream | 1G | 1G | never |\n| dufs | none (failed at 1G: OOM) | 64M (failed at 1G: crash) | 256 MiB (1G: OOM) |\n"), "{m}");
        // The same run of one target: none of it.
        let mut one = rep;
        one.metadata.as_mut().unwrap().definition.targets.clear();
        one.cells.retain(|c| c.result.matrix_target.as_deref() == Some("dufs"));
        one.cells.iter_mut().for_each(|c| c.result.matrix_target = None);
        let (h, m) = (html::render(&one), markdown::render(&one));
        assert!(!h.contains("side by side") && !h.contains("<h2>Limits") && h.contains("upload throughput (passed cells)") && !m.contains("## Limits") && !m.contains("| target |"));
    }
}
