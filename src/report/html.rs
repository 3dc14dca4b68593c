//! report.html: one self-contained page (inline CSS and SVG, no scripts, no network).

use super::plot::{Chart, Marker, Series, Stacked, XAxis, stacked_svg, svg};
use super::{Report, ReportCell, outcome};
use crate::results::export::targets::{Comparison, Point};
use crate::results::model::CellResult;
use std::collections::BTreeMap;
use std::fmt::Write;

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\
td.ok{background:#e3f4e1}td.fail{background:#fbe0df}td.none{color:#999}a{color:inherit}\
section{border-top:1px solid #ddd;margin-top:1.5em}.facts td{border:none;padding:1px 8px}";

/// Series keyed by RAM (and concurrency when > 1), x = file size in MiB: per size the mean over
/// the repetitions, and their min–max as a bar where there are two or more.
pub(super) fn by_ram(cells: &[&CellResult], y: impl Fn(&CellResult) -> Option<f64>, limit: bool) -> Vec<Series> {
    let mut m: BTreeMap<(u64, u32), BTreeMap<u64, Vec<f64>>> = BTreeMap::new();
    for r in cells {
        if let Some(v) = y(r) {
            m.entry((r.ram_mb, r.concurrency)).or_default().entry(r.file_size_bytes).or_default().push(v);
        }
    }
    m.into_iter()
        .map(|((ram, c), pts)| {
            let x = |size: u64| size as f64 / 1048576.0;
            let spread = pts.iter().filter(|(_, v)| v.len() > 1).map(|(&size, v)| (x(size), v.iter().copied().fold(f64::INFINITY, f64::min), v.iter().copied().fold(f64::NEG_INFINITY, f64::max))).collect();
            Series {
                label: if c > 1 { format!("{ram} MiB, {c} at once") } else { format!("{ram} MiB") },
                points: pts.iter().map(|(&size, v)| (x(size), v.iter().sum::<f64>() / v.len() as f64)).collect(),
                limit: limit.then_some(ram as f64),
                spread,
            }
        })
        .collect()
}

fn grid(out: &mut String, cells: &[&ReportCell]) {
    let mut levels: Vec<u32> = cells.iter().map(|c| c.result.concurrency).collect();
    levels.sort_unstable();
    levels.dedup();
    for level in levels {
        let these: Vec<&&ReportCell> = cells.iter().filter(|c| c.result.concurrency == level).collect();
        let mut rams: Vec<u64> = these.iter().map(|c| c.result.ram_mb).collect();
        let mut sizes: Vec<(u64, String)> = these.iter().map(|c| (c.result.file_size_bytes, c.result.file_size.clone())).collect();
        rams.sort_unstable();
        rams.dedup();
        sizes.sort();
        sizes.dedup();
        if level > 1 {
            let _ = writeln!(out, "<h3>{level} uploads at once</h3>");
        }
        out.push_str("<table class=\"grid\"><tr><th>RAM \\ file</th>");
        for (_, l) in &sizes {
            let _ = write!(out, "<th>{}</th>", esc(l));
        }
        out.push_str("</tr>\n");
        for ram in &rams {
            let _ = write!(out, "<tr><th>{ram} MiB</th>");
            for (b, _) in &sizes {
                let here: Vec<&&&ReportCell> = these.iter().filter(|c| c.result.ram_mb == *ram && c.result.file_size_bytes == *b).collect();
                if here.is_empty() {
                    out.push_str("<td class=\"none\">not run</td>");
                    continue;
                }
                let class = if here.iter().all(|c| c.result.success) { "ok" } else { "fail" };
                let _ = write!(out, "<td class=\"{class}\">");
                for c in here {
                    let _ = write!(out, "<a href=\"#{}\">{}</a><br>", Report::anchor(&c.result), esc(&outcome(&c.result)));
                }
                out.push_str("</td>");
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
}

fn cell_section(out: &mut String, c: &ReportCell) {
    let r = &c.result;
    let _ = writeln!(out, "<section id=\"{}\"><h3>{} — {}</h3>", Report::anchor(r), esc(&r.cell), esc(&outcome(r)));
    let mut facts: Vec<(&str, String)> = vec![
        ("exit reason", r.exit_reason.to_string()),
        ("verified", r.verified.map(|v| v.to_string()).unwrap_or_else(|| "not checked".into())),
        ("content", format!("{} ({}), {} upload(s) at once", r.content_kind, r.transfer, r.concurrency)),
        ("duration", r.duration_seconds.map(|d| format!("{d:.2} s")).unwrap_or_else(|| "-".into())),
        ("target CPU", r.target_cpu_avg_percent.map(|p| format!("{p:.0} % of one CPU")).unwrap_or_else(|| "-".into())),
        ("OOM kills / restarts", format!("{} / {}", r.oom_kills.map(|v| v.to_string()).unwrap_or("-".into()), r.restarts.map(|v| v.to_string()).unwrap_or("-".into()))),
        ("host qemu peak RSS", r.host_qemu_peak_rss_bytes.map(crate::size::human).unwrap_or_else(|| "-".into())),
        ("files", format!("{}/result.json, samples.csv, console.log, journal.log", c.dir)),
    ];
    if let Some(d) = &r.download {
        facts.push(("download", format!("{:.1} MiB/s, verified {:?}, peak {:.1} MiB", d.throughput_mbps.unwrap_or(0.0), d.verified, d.peak_memory_mb.unwrap_or(0.0))));
    }
    if let Some(e) = &r.error {
        facts.push(("error", e.clone()));
    }
    out.push_str("<table class=\"facts\">");
    for (k, v) in facts {
        let _ = write!(out, "<tr><td>{k}</td><td>{}</td></tr>", esc(&v));
    }
    out.push_str("</table>\n");
    match &c.timeline {
        Some(tl) if !tl.t.is_empty() => {
            let col = |v: &Vec<Option<f64>>| tl.t.iter().zip(v).filter_map(|(t, y)| y.map(|y| (*t, y))).collect::<Vec<_>>();
            let end = tl.download_start.or(tl.t.last().copied()).unwrap_or(0.0);
            let mut markers: Vec<Marker> = vec![Marker { x: 0.0, label: "upload start".into() }, Marker { x: end, label: "upload end".into() }];
            if tl.download_start.is_some() {
                markers.pop();
                markers.push(Marker { x: end, label: "download start".into() });
            }
            out.push_str(&svg(&Chart {
                title: "memory during the upload",
                x_label: "seconds",
                y_label: "MiB",
                x_axis: XAxis::Linear,
                series: vec![
                    Series { label: "target working set".into(), points: col(&tl.working_set_mib), limit: Some(r.ram_mb as f64), ..Default::default() },
                    Series { label: "target cgroup memory.current".into(), points: col(&tl.cgroup_mib), ..Default::default() },
                    Series { label: "host qemu RSS".into(), points: col(&tl.qemu_rss_mib), ..Default::default() },
                    Series { label: "guest MemAvailable".into(), points: col(&tl.mem_available_mib), ..Default::default() },
                ],
                markers: markers.clone(),
                size: (900, 320),
            }));
            if let Some(st) = stacked_memory(tl, r.ram_mb, markers) {
                out.push_str(&stacked_svg(&st));
            }
        }
        _ => out.push_str("<p>no samples</p>"),
    }
    out.push_str("</section>\n");
}

/// What the target's memory was made of over time: anon, kernel, page cache, and the rest of
/// memory.current, stacked. Only the rows that have every part (none in samples of an older
/// perfvm: then no chart).
fn stacked_memory(tl: &super::Timeline, ram_mb: u64, markers: Vec<Marker>) -> Option<Stacked<'static>> {
    let mut x = Vec::new();
    let mut layers: Vec<(String, Vec<f64>)> = ["anon", "kernel", "page cache", "other"].iter().map(|l| (l.to_string(), Vec::new())).collect();
    for i in 0..tl.t.len() {
        let (Some(cur), Some(anon), Some(kernel), Some(file)) = (tl.cgroup_mib[i], tl.anon_mib[i], tl.kernel_mib[i], tl.file_mib[i]) else { continue };
        x.push(tl.t[i]);
        for (layer, v) in layers.iter_mut().zip([anon, kernel, file, (cur - anon - kernel - file).max(0.0)]) {
            layer.1.push(v);
        }
    }
    (!x.is_empty()).then(|| Stacked {
        title: "target memory by kind (memory.stat), stacked",
        x_label: "seconds",
        y_label: "MiB",
        x,
        layers,
        limit: Some(("guest RAM".into(), ram_mb as f64)),
        markers,
        size: (900, 320),
    })
}

/// Statistics over each cell's passed repetitions, and with --target-rsd why it stopped.
fn repeats_section(out: &mut String, repeats: &[crate::results::export::json::RepeatSummary]) {
    let adaptive = repeats.iter().any(|s| s.stop.is_some());
    out.push_str("<h2>Repeats</h2>\n<p>Over the passed repetitions of each cell; outliers by the modified z-score (&gt; 3.5).</p>\n<table>\n");
    out.push_str("<tr><th>cell</th><th>passed</th><th>throughput MiB/s: mean ± stddev</th><th>median</th><th>min–max</th><th>RSD</th><th>peak MiB: mean ± stddev</th><th>outliers</th>");
    out.push_str(if adaptive { "<th>stopped</th></tr>\n" } else { "</tr>\n" });
    for s in repeats {
        let (tp, median, range, rsd) = match &s.throughput_mbps {
            Some(t) => (
                format!("{:.1} ± {:.1}", t.mean, t.stddev),
                format!("{:.1}", t.median),
                format!("{:.1}–{:.1}", t.min, t.max),
                if t.n > 1 && t.mean > 0.0 { format!("{:.1} %", t.stddev / t.mean * 100.0) } else { "–".into() },
            ),
            None => ("–".into(), "–".into(), "–".into(), "–".into()),
        };
        let pk = s.peak_memory_mb.map(|p| format!("{:.1} ± {:.1}", p.mean, p.stddev)).unwrap_or_else(|| "–".into());
        let outl = if s.outlier_repeats.is_empty() { "none".to_string() } else { s.outlier_repeats.iter().map(|r| format!("r{r}")).collect::<Vec<_>>().join(", ") };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}/{}</td><td>{tp}</td><td>{median}</td><td>{range}</td><td>{rsd}</td><td>{pk}</td><td>{outl}</td>",
            esc(&s.shape),
            s.passed,
            s.repetitions
        );
        if adaptive {
            let _ = write!(out, "<td>{}</td>", esc(s.stop.as_ref().map_or("not yet", |w| w.message.as_str())));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

/// The runs of a history, oldest first (as the database orders them: by start, then id), each
/// named for the chart's x axis by its label, else its start to the minute, else its id.
pub fn history_runs(history: &[(String, Vec<crate::history::TrendPoint>)]) -> Vec<(String, String)> {
    let mut runs: Vec<(Option<&str>, &str, String)> = Vec::new();
    for p in history.iter().flat_map(|(_, pts)| pts) {
        if runs.iter().all(|r| r.1 != p.run_id) {
            let name = match (&p.label, &p.started) {
                (Some(l), _) if !l.is_empty() => l.clone(),
                (_, Some(s)) => chrono::DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_else(|_| s.chars().take(16).collect::<String>().replace('T', " ")),
                _ => p.run_id.clone(),
            };
            runs.push((p.started.as_deref(), &p.run_id, name));
        }
    }
    runs.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    runs.into_iter().map(|(_, id, name)| (id.to_string(), name)).collect()
}

/// Trends across runs from the history database: one line per cell, x = the runs in order.
fn history_section(out: &mut String, history: &[(String, Vec<crate::history::TrendPoint>)]) {
    out.push_str("<h2>History</h2>\n<p>Each cell of this run in every recorded run of the same target (mean over its repetitions; x: the runs, oldest first, by label or start).</p>\n");
    let runs = history_runs(history);
    // A run's x: its place among all runs, so a cell missing from a run leaves a gap, not a shift.
    let pos = |id: &str| runs.iter().position(|r| r.0 == id).map_or(0.0, |i| (i + 1) as f64);
    let axis = XAxis::Runs(runs.iter().map(|r| r.1.clone()).collect());
    let series = |y: fn(&crate::history::TrendPoint) -> Option<f64>| -> Vec<Series> {
        history.iter().map(|(cell, pts)| Series { label: cell.clone(), points: pts.iter().filter_map(|p| y(p).map(|v| (pos(&p.run_id), v))).collect(), ..Default::default() }).collect()
    };
    out.push_str(&svg(&Chart { title: "throughput across runs", x_label: "run", y_label: "MiB/s", x_axis: axis.clone(), series: series(|p| p.throughput_mbps), markers: vec![], size: (900, 300) }));
    out.push_str(&svg(&Chart { title: "peak memory across runs", x_label: "run", y_label: "MiB", x_axis: axis, series: series(|p| p.peak_memory_mb), markers: vec![], size: (900, 300) }));
    out.push_str("<table><tr><th>cell</th><th>run</th><th>started</th><th>label</th><th>passed</th><th>MiB/s</th><th>peak MiB</th></tr>\n");
    for (cell, pts) in history {
        for p in pts {
            let f = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "–".into());
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td></tr>",
                esc(cell),
                pos(&p.run_id),
                esc(&p.run_id),
                esc(p.started.as_deref().unwrap_or("")),
                esc(p.label.as_deref().unwrap_or("")),
                p.passed,
                p.repeats,
                f(p.throughput_mbps),
                f(p.peak_memory_mb)
            );
        }
    }
    out.push_str("</table>\n");
}

/// A limit search: the answer, the probes on the searched axis (in the order they ran), and the
/// points either side of the limit with how each probe there ended.
fn limit_section(out: &mut String, l: &crate::results::export::limit::LimitDoc) {
    use crate::results::export::limit::Searched;
    let _ = writeln!(out, "<h2>Limit</h2>\n<p><b>{}</b></p>\n<p>{} (range {}, every {}, {} point(s), --confirm {}).</p>", esc(&l.message), esc(&l.question), esc(&l.range), esc(&l.resolution), l.points, l.confirm);
    // The searched axis in MiB either way: guest RAM, or the file's size.
    let x = |v: u64| if l.searched == Searched::Ram { v as f64 } else { v as f64 / (1u64 << 20) as f64 };
    let (mut passed, mut failed) = (Vec::new(), Vec::new());
    for (i, p) in l.probes.iter().enumerate() {
        let pt = (x(p.value), (i + 1) as f64);
        if p.passed { passed.push(pt) } else { failed.push(pt) }
    }
    let x_label = if l.searched == Searched::Ram { "guest RAM (MiB)" } else { "file size (MiB)" };
    out.push_str(&super::plot::dots_svg(&Chart {
        title: "probes: where each ran (y: its order) and how it ended",
        x_label,
        y_label: "probe",
        x_axis: if l.searched == Searched::Ram { XAxis::Linear } else { XAxis::SizeMib },
        series: vec![Series { label: "passed".into(), points: passed, ..Default::default() }, Series { label: "failed".into(), points: failed, ..Default::default() }],
        markers: l.limit.map(|v| Marker { x: x(v), label: format!("limit {}", l.limit_label.as_deref().unwrap_or("")) }).into_iter().collect(),
        size: (900, 280),
    }));
    out.push_str("<table>\n<tr><th></th><th>point</th><th>probes</th><th>passed</th><th>peak working set (MiB)</th><th>memory.peak (MiB)</th><th>failures</th></tr>\n");
    for (name, p) in [("failing", &l.failing), ("passing", &l.passing)].into_iter().filter_map(|(n, p)| p.as_ref().map(|p| (n, p))) {
        let failures: Vec<String> = p.failures.iter().map(|f| format!("r{}: {}", f.repeat, f.error.as_deref().unwrap_or(f.exit_reason.as_str()))).collect();
        let mib = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_default();
        let _ = writeln!(out, "<tr><th>{name}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&p.label), p.probes, p.passed, mib(p.peak_memory_mb), mib(p.cgroup_peak_mb), esc(&failures.join("; ")));
    }
    out.push_str("</table>\n");
    if !l.flaky.is_empty() {
        let names: Vec<&str> = l.flaky.iter().map(|p| p.label.as_str()).collect();
        let _ = writeln!(out, "<p>Noisy: {} both passed and failed.</p>", esc(&names.join(", ")));
    }
}

/// Each target at one RAM (and uploads at once): one series per target, x = file size in MiB,
/// the mean of its passed cells and their min–max. Every target in every panel, in the same
/// order, so that a target keeps its colour across panels.
pub(super) fn by_target(c: &Comparison, level: u32, ram: u64, y: fn(&Point) -> Option<crate::stats::Stats>) -> Vec<Series> {
    c.targets
        .iter()
        .map(|t| {
            let here: Vec<(f64, crate::stats::Stats)> = t.points.iter().filter(|p| (p.concurrency, p.ram_mb) == (level, ram)).filter_map(|p| y(p).map(|s| (p.size_bytes as f64 / 1048576.0, s))).collect();
            Series {
                label: if here.is_empty() { format!("{} (no passed cell)", t.tag) } else { t.tag.clone() },
                points: here.iter().map(|(x, s)| (*x, s.mean)).collect(),
                spread: here.iter().filter(|(_, s)| s.n > 1).map(|(x, s)| (*x, s.min, s.max)).collect(),
                limit: None,
            }
        })
        .collect()
}

/// A matrix of several targets: per RAM, throughput and peak working set of every target on the
/// same axes; the best target at each RAM × size; how far each target got.
fn targets_section(out: &mut String, c: &Comparison) {
    out.push_str("<h2>Targets side by side</h2>\n<p>One panel per guest RAM: each target's mean over its passed cells against the file size (bars: min–max of the repeats). Peak memory is the target's working set (cgroup memory.current − inactive_file). A target's failures are in the limits below.</p>\n");
    let several_levels = c.several_levels();
    for &level in &c.levels {
        for ram in c.rams(level) {
            let at_once = if several_levels { format!(", {level} upload(s) at once") } else { String::new() };
            let _ = writeln!(out, "<h3>{ram} MiB RAM{at_once}</h3>\n<div style=\"display:flex;flex-wrap:wrap;gap:8px\">");
            let (tp_title, pk_title) = (format!("throughput at {ram} MiB (passed cells)"), format!("peak working set at {ram} MiB (passed cells)"));
            out.push_str(&svg(&Chart { title: &tp_title, x_label: "file size (MiB)", y_label: "MiB/s", x_axis: XAxis::SizeMib, series: by_target(c, level, ram, |p| p.throughput), markers: vec![], size: (540, 320) }));
            out.push_str(&svg(&Chart { title: &pk_title, x_label: "file size (MiB)", y_label: "MiB", x_axis: XAxis::SizeMib, series: by_target(c, level, ram, |p| p.peak_mib), markers: vec![], size: (540, 320) }));
            out.push_str("</div>\n");
        }
    }
    best_table(out, c, several_levels);
    limits_table(out, c, several_levels);
}

/// At each RAM × size the fastest target and the leanest, by the means of their passed cells.
fn best_table(out: &mut String, c: &Comparison, several_levels: bool) {
    out.push_str("<h2>Best at each RAM × size</h2>\n<p>The highest mean throughput and the lowest mean peak working set among the targets' passed cells.</p>\n");
    for &level in &c.levels {
        if several_levels {
            let _ = writeln!(out, "<h3>{level} upload(s) at once</h3>");
        }
        let here: Vec<&crate::results::export::targets::Best> = c.best.iter().filter(|b| b.concurrency == level).collect();
        let mut sizes: Vec<(u64, &str)> = here.iter().map(|b| (b.size_bytes, b.size.as_str())).collect();
        sizes.sort_unstable();
        sizes.dedup();
        out.push_str("<table class=\"best\"><tr><th>RAM \\ file</th>");
        for (_, l) in &sizes {
            let _ = write!(out, "<th>{}</th>", esc(l));
        }
        out.push_str("</tr>\n");
        for ram in c.rams(level) {
            let _ = write!(out, "<tr><th>{ram} MiB</th>");
            for (b, _) in &sizes {
                let Some(b) = here.iter().find(|x| (x.ram_mb, x.size_bytes) == (ram, *b)) else {
                    out.push_str("<td class=\"none\">not run</td>");
                    continue;
                };
                if b.contenders == 0 {
                    out.push_str("<td class=\"fail\">none passed</td>");
                    continue;
                }
                // Each figure above its target's name: names are long, and broken they read badly.
                out.push_str("<td style=\"white-space:nowrap\">");
                if let Some((tag, v)) = &b.fastest {
                    let _ = write!(out, "{v:.1} MiB/s<br><b>{}</b><br>", esc(tag));
                }
                if let Some((tag, v)) = &b.leanest {
                    let _ = write!(out, "peak {v:.1} MiB<br><b>{}</b>", esc(tag));
                }
                if b.contenders < c.targets.len() {
                    let _ = write!(out, "<br>{} of {} passed", b.contenders, c.targets.len());
                }
                out.push_str("</td>");
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
}

/// Each target's limits: at each RAM the largest file whose every cell passed (and the smallest
/// it failed), and where it first failed. Only the target's own failures count.
fn limits_table(out: &mut String, c: &Comparison, several_levels: bool) {
    out.push_str("<h2>Limits</h2>\n<p>At each guest RAM the largest file whose every cell passed, and below it the smallest file the target failed and how; then the smallest RAM at which it failed. Only the target's own failures count (OOM, crash, other errors), not the harness's or the VM's.</p>\n");
    for &level in &c.levels {
        if several_levels {
            let _ = writeln!(out, "<h3>{level} upload(s) at once</h3>");
        }
        let rams = c.rams(level);
        out.push_str("<table class=\"limits\"><tr><th>target</th>");
        for ram in &rams {
            let _ = write!(out, "<th>{ram} MiB</th>");
        }
        out.push_str("<th>first failed</th></tr>\n");
        for t in &c.targets {
            let _ = write!(out, "<tr><th>{}</th>", esc(&t.tag));
            for ram in &rams {
                let Some(l) = t.limits.iter().find(|l| (l.concurrency, l.ram_mb) == (level, *ram)) else {
                    out.push_str("<td class=\"none\">not run</td>");
                    continue;
                };
                let passed = l.largest_passed.as_deref().unwrap_or("none");
                match &l.first_failure {
                    Some((size, how)) => {
                        let _ = write!(out, "<td class=\"fail\">{}<br>failed at {}: {}</td>", esc(passed), esc(size), esc(&how.to_string()));
                    }
                    None => {
                        let _ = write!(out, "<td class=\"ok\">{}</td>", esc(passed));
                    }
                }
            }
            match t.first_failure(level) {
                Some((ram, size, how)) => {
                    let _ = writeln!(out, "<td class=\"fail\">{ram} MiB ({}: {})</td></tr>", esc(size), esc(&how.to_string()));
                }
                None => out.push_str("<td class=\"ok\">never</td></tr>\n"),
            }
        }
        out.push_str("</table>\n");
    }
}

/// A run of one target: throughput, peak working set and memory.peak against the file size,
/// a line per RAM.
fn charts_by_ram(out: &mut String, rep: &Report) {
    let results: Vec<&CellResult> = rep.cells.iter().map(|c| &c.result).collect();
    let ok: Vec<&CellResult> = results.iter().copied().filter(|r| r.success).collect();
    out.push_str("<h2>Throughput</h2>\n");
    out.push_str(&svg(&Chart {
        title: "upload throughput (passed cells)",
        x_label: "file size (MiB)",
        x_axis: XAxis::SizeMib,
        y_label: "MiB/s",
        series: by_ram(&ok, |r| r.throughput_mbps, false),
        markers: vec![],
        size: (900, 360),
    }));
    out.push_str("<h2>Peak memory</h2>\n<p>What the target needs: its peak working set (cgroup memory.current − inactive_file, the measure cAdvisor and the kubelet use), against the file size; dashed: the guest's RAM. Below it the kernel's memory.peak, which also counts the page cache of the file written (reclaimable), and so grows with the file for a server that streams to disk.</p>\n");
    out.push_str(&svg(&Chart {
        title: "target peak working set (every cell with a peak)",
        x_label: "file size (MiB)",
        x_axis: XAxis::SizeMib,
        y_label: "MiB",
        series: by_ram(&results, |r| r.peak_memory_mb, true),
        markers: vec![],
        size: (900, 360),
    }));
    out.push_str(&svg(&Chart {
        title: "target memory.peak, page cache included",
        x_label: "file size (MiB)",
        x_axis: XAxis::SizeMib,
        y_label: "MiB",
        series: by_ram(&results, |r| r.cgroup_peak_bytes().map(crate::results::model::mib), true),
        markers: vec![],
        size: (900, 300),
    }));
}

pub fn render(rep: &Report) -> String {
    let mut out = String::new();
    let _ = write!(out, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n", esc(&rep.title));
    let _ = writeln!(out, "<h1>{}</h1>", esc(&rep.title));
    let passed = rep.cells.iter().filter(|c| c.result.success).count();
    let _ = writeln!(out, "<p>{} cells, {passed} passed, {} failed; {} attempts in all.</p>", rep.cells.len(), rep.cells.len() - passed, rep.attempts);
    out.push_str("<table class=\"meta\">");
    let first = rep.cells.first().map(|c| &c.result);
    let mut meta: Vec<(&str, String)> = Vec::new();
    if let Some(m) = &rep.metadata {
        meta.extend([
            ("perfvm", format!("{} (git {})", m.perfvm_version, m.git_rev.as_deref().unwrap_or("?"))),
            ("host", format!("{}, kernel {}", m.host, m.kernel)),
            ("libvirt / qemu", format!("{} / {}", m.libvirt_version.as_deref().unwrap_or("?"), m.qemu_version.as_deref().unwrap_or("?"))),
            ("accel", m.accel.clone()),
            ("image", m.image_id.clone()),
            match m.definition.targets.as_slice() {
                [] => ("target", format!("{} ({} mode)", m.target, m.target_mode)),
                ts => ("targets", ts.iter().map(|(name, mode)| format!("{name} ({mode} mode)")).collect::<Vec<_>>().join(", ")),
            },
            ("jobs", m.jobs.to_string()),
            ("started / finished", format!("{} / {}", super::when(&m.started), m.finished.map(|f| super::when(&f)).unwrap_or_else(|| "not finished".into()))),
        ]);
    } else if let Some(r) = first {
        meta.extend([
            ("perfvm", r.perfvm_version.clone()),
            ("accel", r.accel.to_string()),
            ("image", r.image_id.clone()),
            ("target", format!("{} ({} mode)", r.target.name, r.target.mode)),
            ("started", super::when(&r.timestamp)),
        ]);
    }
    for (k, v) in meta {
        let _ = write!(out, "<tr><th>{k}</th><td>{}</td></tr>", esc(&v));
    }
    out.push_str("</table>\n");
    if let Some(l) = &rep.limit {
        limit_section(&mut out, l);
    }
    out.push_str("<h2>Outcome</h2>\n");
    match rep.comparison() {
        None => {
            let cells: Vec<&ReportCell> = rep.cells.iter().collect();
            grid(&mut out, &cells);
            charts_by_ram(&mut out, rep);
        }
        Some(c) => {
            for t in &c.targets {
                let _ = writeln!(out, "<h3>{} ({}, {} mode)</h3>", esc(&t.tag), esc(&t.name), esc(&t.mode));
                let cells: Vec<&ReportCell> = rep.cells.iter().filter(|c| c.result.matrix_target.as_deref() == Some(t.tag.as_str())).collect();
                grid(&mut out, &cells);
            }
            // Charts by RAM would mix the targets' cells: the targets side by side instead.
            targets_section(&mut out, &c);
        }
    }
    if !rep.repeats.is_empty() {
        repeats_section(&mut out, &rep.repeats);
    }
    if !rep.history.is_empty() {
        history_section(&mut out, &rep.history);
    }
    out.push_str("<h2>Cells</h2>\n");
    for c in &rep.cells {
        cell_section(&mut out, c);
    }
    out.push_str("</body></html>\n");
    out
}
