//! `perfvm compare RUN_A RUN_B [RUN_C …]`: runs (directories or history run ids) cell by cell,
//! each against the first.

use crate::error::InputError;
use super::{CompareArgs, CompareFormat};
use crate::results::compare::{self, ManyRow, Metric, Row};
use crate::results::model::CellResult;
use anyhow::Result;
use std::fmt::Write;
use std::path::Path;

/// All attempts of a run: from its directory, or from the history database by run id.
fn load(run: &str, db: &Path) -> Result<Vec<CellResult>> {
    let dir = Path::new(run);
    if dir.is_dir() {
        return crate::rundir::read_run(dir).map(|doc| doc.cells).map_err(|e| InputError(format!("{run}: {e:#}")).into());
    }
    if !db.is_file() {
        return Err(InputError(format!("{run}: not a run directory, and there is no history database at {} to look it up", db.display())).into());
    }
    let hist = crate::history::Db::open(db)?;
    let id = hist.resolve_run(run).map_err(InputError)?.unwrap_or_else(|| run.to_string());
    let found = hist.run_results(&id)?;
    if found.is_empty() {
        return Err(InputError(format!("{run}: not a run directory, nor a run id in {} (see `perfvm history`)", db.display())).into());
    }
    Ok(found)
}

fn num(v: Option<f64>, p: usize) -> String {
    v.map(|x| format!("{x:.p$}")).unwrap_or_else(|| "–".into())
}

fn change(m: &Metric) -> String {
    m.change_percent.map(|c| format!("{c:+.1}%")).unwrap_or_else(|| "–".into())
}

fn verdict(m: &Metric) -> String {
    match m.p_value {
        Some(p) => format!("{} (p={p:.3})", m.verdict.as_str()),
        None => m.verdict.as_str().to_string(),
    }
}

fn passed(p: Option<(usize, usize)>) -> String {
    p.map(|(a, b)| format!("{a}/{b}")).unwrap_or_else(|| "–".into())
}

/// `A`, `B`, … `Z`, then `R27`…: short names for the runs in tables.
fn letter(i: usize) -> String {
    if i < 26 { ((b'A' + i as u8) as char).to_string() } else { format!("R{}", i + 1) }
}

/// One run's side of a cell: its mean and, after the baseline, the change and verdict.
fn side(r: &ManyRow, i: usize, what: fn(&Row) -> &Metric) -> (Option<f64>, Option<&Metric>) {
    match i {
        0 => (r.pairs.first().and_then(|p| what(p).a_mean), None),
        i => r.pairs.get(i - 1).map(|p| (what(p).b_mean, Some(what(p)))).unwrap_or((None, None)),
    }
}

fn thr(p: &Row) -> &Metric {
    &p.throughput_mbps
}

fn mem(p: &Row) -> &Metric {
    &p.peak_memory_mb
}

/// The memory metric of a cell: the working set unless some pair fell back to memory.peak.
fn mem_metric(r: &ManyRow) -> &'static str {
    r.pairs.iter().map(|p| p.peak_memory_metric).find(|m| *m != crate::results::model::METRIC_WORKING_SET).unwrap_or(crate::results::model::METRIC_WORKING_SET)
}

/// The cells not every run has, and which runs have them.
fn partial(rows: &[ManyRow], runs: usize) -> Vec<String> {
    rows.iter()
        .filter(|r| r.present_in().len() < runs)
        .map(|r| format!("{} (only in {})", r.cell, r.present_in().iter().map(|&i| letter(i)).collect::<Vec<_>>().join(", ")))
        .collect()
}

pub fn render(rows: &[ManyRow], format: CompareFormat, runs: &[String]) -> Result<String> {
    let mut out = String::new();
    let n = runs.len();
    match format {
        CompareFormat::Json => {
            let cells: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    let per_run: Vec<serde_json::Value> = (0..n)
                        .map(|i| {
                            let m = |what: fn(&Row) -> &Metric| {
                                let (mean, vs) = side(r, i, what);
                                serde_json::json!({"mean": mean, "change_percent": vs.and_then(|m| m.change_percent), "p_value": vs.and_then(|m| m.p_value), "verdict": vs.map(|m| m.verdict)})
                            };
                            let (p, t) = r.passed(i).map_or((None, None), |(p, t)| (Some(p), Some(t)));
                            serde_json::json!({"run": runs[i], "passed": p, "total": t, "throughput_mbps": m(thr), "peak_memory_mb": m(mem)})
                        })
                        .collect();
                    serde_json::json!({"cell": r.cell, "ram_mb": r.ram_mb, "file_size_bytes": r.file_size_bytes, "concurrency": r.concurrency, "peak_memory_metric": mem_metric(r), "runs": per_run})
                })
                .collect();
            out = serde_json::to_string_pretty(&serde_json::json!({"runs": runs, "baseline": runs[0], "alpha": compare::ALPHA, "test": "exact two-sided permutation test, difference of means, each run against the baseline", "cells": cells}))? + "\n";
        }
        CompareFormat::Csv => {
            // One row per cell and run (a long table: filters and pivots handle any number of
            // runs); counts in columns of their own, never "3/4", which spreadsheets read as a date.
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(["cell", "ram_mb", "file_size_bytes", "concurrency", "run", "run_index", "passed", "total", "throughput_mbps", "throughput_change_percent", "throughput_p", "throughput_verdict", "peak_memory_metric", "peak_memory_mb", "peak_memory_change_percent", "peak_memory_p", "peak_memory_verdict"])?;
            // Never exactly three decimals: German LibreOffice reads `45.632` as 45632 (see
            // results/export/csv.rs).
            let f = |v: Option<f64>| v.map(|x| crate::results::export::csv::unambiguous(x.to_string())).unwrap_or_default();
            for r in rows {
                for (i, run) in runs.iter().enumerate().take(n) {
                    let ((tm, tv), (mm, mv)) = (side(r, i, thr), side(r, i, mem));
                    let verdict = |v: Option<&Metric>| v.map(|m| m.verdict.as_str().to_string()).unwrap_or_else(|| if i == 0 { "baseline".into() } else { String::new() });
                    let (p, t) = r.passed(i).map_or((String::new(), String::new()), |(p, t)| (p.to_string(), t.to_string()));
                    w.write_record([
                        r.cell.clone(), r.ram_mb.to_string(), r.file_size_bytes.to_string(), r.concurrency.to_string(), run.clone(), i.to_string(), p, t,
                        f(tm), f(tv.and_then(|m| m.change_percent)), f(tv.and_then(|m| m.p_value)), verdict(tv),
                        mem_metric(r).into(), f(mm), f(mv.and_then(|m| m.change_percent)), f(mv.and_then(|m| m.p_value)), verdict(mv),
                    ])?;
                }
            }
            out = String::from_utf8(w.into_inner()?)?;
        }
        CompareFormat::Table => {
            for (i, r) in runs.iter().enumerate() {
                let _ = writeln!(out, "{} = {r}{}", letter(i), if i == 0 { " (baseline)" } else { "" });
            }
            let _ = writeln!(out, "Each run against A: change of the mean, and the verdict of a permutation test. Peak memory: the working set (memory.current − inactive_file), or memory.peak where a run predates it (marked *).");
            for (title, what, unit) in [("THROUGHPUT", thr as fn(&Row) -> &Metric, "MiB/s"), ("PEAK MEMORY", mem, "MiB")] {
                let _ = write!(out, "\n{title} ({unit}, passed/all)\n{:<14}", "CELL");
                for i in 0..n {
                    let _ = write!(out, " {:<w$}", letter(i), w = if i == 0 { 16 } else { 46 });
                }
                out.push('\n');
                for r in rows {
                    let star = if unit == "MiB" && mem_metric(r) != crate::results::model::METRIC_WORKING_SET { "*" } else { "" };
                    let _ = write!(out, "{:<14}", format!("{}{star}", r.cell));
                    for i in 0..n {
                        let (mean, vs) = side(r, i, what);
                        let cell = match vs {
                            None => format!("{} ({})", num(mean, 1), passed(r.passed(i))),
                            Some(m) => format!("{} ({}) {} {}", num(mean, 1), passed(r.passed(i)), change(m), verdict(m)),
                        };
                        let _ = write!(out, " {:<w$}", cell, w = if i == 0 { 16 } else { 46 });
                    }
                    out.push('\n');
                }
            }
            let part = partial(rows, n);
            if !part.is_empty() {
                let _ = writeln!(out, "\nNot in every run: {}", part.join("; "));
            }
        }
        CompareFormat::Md => {
            let names: Vec<String> = runs.iter().enumerate().map(|(i, r)| format!("{} = **{r}**", letter(i))).collect();
            let _ = writeln!(out, "Comparing {} against A: exact permutation test on repetitions, p < {}.\n", names.join(", "), compare::ALPHA);
            for (title, what) in [("Throughput (MiB/s)", thr as fn(&Row) -> &Metric), ("Peak memory (MiB)", mem)] {
                let _ = write!(out, "### {title}\n\n| cell | A |");
                for i in 1..n {
                    let _ = write!(out, " {} | change | verdict |", letter(i));
                }
                out.push_str("\n| --- | --- |");
                for _ in 1..n {
                    out.push_str(" --- | ---: | --- |");
                }
                out.push('\n');
                for r in rows {
                    let (a, _) = side(r, 0, what);
                    let _ = write!(out, "| {} | {} ({}) |", r.cell, num(a, 1), passed(r.passed(0)));
                    for i in 1..n {
                        let (b, m) = side(r, i, what);
                        let _ = write!(out, " {} ({}) | {} | {} |", num(b, 1), passed(r.passed(i)), m.map(change).unwrap_or_default(), m.map(verdict).unwrap_or_default());
                    }
                    out.push('\n');
                }
                out.push('\n');
            }
            let part = partial(rows, n);
            if !part.is_empty() {
                let _ = writeln!(out, "Not in every run: {}", part.join("; "));
            }
        }
        CompareFormat::Html => out = html(rows, runs),
    }
    Ok(out)
}

/// The HTML comparison: the tables, and per RAM size the runs overlaid on the same axes
/// (throughput and peak memory against file size).
fn html(rows: &[ManyRow], runs: &[String]) -> String {
    use crate::report::html::esc;
    use crate::report::plot::{Chart, Series, XAxis, svg};
    let n = runs.len();
    let mut out = String::new();
    let _ = write!(out, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>perfvm compare</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1.5em}}td,th{{border:1px solid #ccc;padding:4px 8px}}.better{{background:#d8f0d8}}.worse{{background:#f6d0d0}}.charts{{display:flex;flex-wrap:wrap;gap:1em}}</style></head><body>\n");
    let _ = writeln!(out, "<h1>perfvm compare</h1><p>{}<br>Each run against A: exact two-sided permutation test on the passed repetitions, p &lt; {}.</p>", runs.iter().enumerate().map(|(i, r)| format!("{} = {}{}", letter(i), esc(r), if i == 0 { " (baseline)" } else { "" })).collect::<Vec<_>>().join("<br>"), compare::ALPHA);
    let class = |m: &Metric| match m.verdict {
        compare::Verdict::Better => " class=\"better\"",
        compare::Verdict::Worse => " class=\"worse\"",
        _ => "",
    };
    for (title, what) in [("Throughput (MiB/s)", thr as fn(&Row) -> &Metric), ("Peak memory (MiB)", mem)] {
        let _ = write!(out, "<h2>{title}</h2><table><tr><th>cell</th><th>A</th>");
        for i in 1..n {
            let _ = write!(out, "<th>{}</th><th>change</th><th>verdict</th>", letter(i));
        }
        out.push_str("</tr>\n");
        for r in rows {
            let (a, _) = side(r, 0, what);
            let _ = write!(out, "<tr><td>{}</td><td>{} ({})</td>", esc(&r.cell), num(a, 1), passed(r.passed(0)));
            for i in 1..n {
                let (b, m) = side(r, i, what);
                let _ = write!(out, "<td>{} ({})</td><td>{}</td><td{}>{}</td>", num(b, 1), passed(r.passed(i)), m.map(change).unwrap_or_default(), m.map(class).unwrap_or(""), esc(&m.map(verdict).unwrap_or_default()));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
    let part = partial(rows, n);
    if !part.is_empty() {
        let _ = writeln!(out, "<p>Not in every run: {}</p>", esc(&part.join("; ")));
    }
    let mut rams: Vec<u64> = rows.iter().map(|r| r.ram_mb).collect();
    rams.dedup();
    out.push_str("<h2>Runs overlaid</h2><div class=\"charts\">\n");
    for ram in rams {
        for (title, what, y) in [("throughput", thr as fn(&Row) -> &Metric, "MiB/s"), ("peak memory", mem, "MiB")] {
            let series = (0..n)
                .map(|i| Series {
                    label: letter(i),
                    points: rows.iter().filter(|r| r.ram_mb == ram && r.concurrency == 1).filter_map(|r| side(r, i, what).0.map(|v| (crate::results::model::mib(r.file_size_bytes), v))).collect(),
                    ..Default::default()
                })
                .collect();
            let t = format!("{ram} MiB guest: {title}");
            out.push_str(&svg(&Chart { title: &t, x_label: "file size (MiB)", y_label: y, x_axis: XAxis::SizeMib, series, markers: Vec::new(), size: (460, 300) }));
        }
    }
    out.push_str("</div></body></html>\n");
    out
}

pub fn run(args: &CompareArgs) -> Result<i32> {
    if let Some(p) = args.fail_on_regression
        && (!p.is_finite() || p < 0.0)
    {
        return Err(InputError(format!("--fail-on-regression {p}: a percentage, 0 or more")).into());
    }
    let db = args.db.path();
    let loaded = args.runs.iter().map(|r| load(r, &db)).collect::<Result<Vec<_>>>()?;
    let finals: Vec<Vec<&CellResult>> = loaded.iter().map(|a| crate::results::export::finals(a)).collect();
    let rows = compare::compare_many(&finals);
    print!("{}", render(&rows, args.format, &args.runs)?);
    if let Some(pct) = args.fail_on_regression {
        let mut reg = Vec::new();
        for (i, run) in args.runs.iter().enumerate().skip(1) {
            let pair: Vec<Row> = rows.iter().filter_map(|r| r.pairs.get(i - 1).cloned()).collect();
            reg.extend(compare::regressions(&pair, pct).into_iter().map(|r| format!("{run}: {r}")));
        }
        if !reg.is_empty() {
            eprintln!("perfvm: significant regression over {pct}%: {}", reg.join("; "));
            return Ok(crate::exit::CELL_FAILED);
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_never_writes_a_decimal_a_german_spreadsheet_reads_as_thousands() {
        let base: CellResult = serde_json::from_str(include_str!("../../tests/data/result-sample.json")).unwrap();
        // One repetition each: means of exactly three decimals (45.632 read in German is 45632).
        let run = |thr: f64| {
            let mut r = base.clone();
            (r.throughput_mbps, r.success, r.peak_memory_mb) = (Some(thr), true, Some(12.125));
            vec![r]
        };
        let (a, b) = (run(45.632), run(50.5));
        let rows = crate::results::compare::compare_many(&[a.iter().collect(), b.iter().collect()]);
        let csv = render(&rows, CompareFormat::Csv, &["a".into(), "b".into()]).unwrap();
        let fields: Vec<&str> = csv.split([',', '\n']).collect();
        assert!(fields.contains(&"45.6320"), "{csv}");
        assert!(fields.iter().all(|f| f.find('.').is_none_or(|d| f.len() - d - 1 != 3)), "{csv}");
    }
}
