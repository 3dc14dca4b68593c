//! `perfvm compare RUN_A RUN_B`: two runs (directories or history run ids) cell by cell.

use crate::error::InputError;
use super::{CompareArgs, CompareFormat};
use crate::results::compare::{self, Metric, Row};
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
    p.map(|(a, b)| format!("{a}/{b}")).unwrap_or_else(|| "no data".into())
}

pub fn render(rows: &[Row], format: CompareFormat, a: &str, b: &str) -> Result<String> {
    let mut out = String::new();
    match format {
        CompareFormat::Json => out = serde_json::to_string_pretty(&serde_json::json!({"a": a, "b": b, "alpha": compare::ALPHA, "test": "exact two-sided permutation test, difference of means", "cells": rows}))? + "\n",
        CompareFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(["cell", "a_passed", "b_passed", "a_throughput_mbps", "b_throughput_mbps", "throughput_change_percent", "throughput_p", "throughput_verdict", "peak_memory_metric", "a_peak_memory_mb", "b_peak_memory_mb", "peak_memory_change_percent", "peak_memory_p", "peak_memory_verdict"])?;
            let f = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
            for r in rows {
                let (t, m) = (&r.throughput_mbps, &r.peak_memory_mb);
                w.write_record([r.cell.clone(), passed(r.a_passed), passed(r.b_passed), f(t.a_mean), f(t.b_mean), f(t.change_percent), f(t.p_value), t.verdict.as_str().into(), r.peak_memory_metric.into(), f(m.a_mean), f(m.b_mean), f(m.change_percent), f(m.p_value), m.verdict.as_str().into()])?;
            }
            out = String::from_utf8(w.into_inner()?)?;
        }
        CompareFormat::Table => {
            let _ = writeln!(out, "A = {a}\nB = {b}\nPeak memory: the working set (memory.current − inactive_file), or memory.peak where a run predates it (marked *).");
            let _ = writeln!(out, "{:<14} {:>7} {:>7}  {:>20} {:>8}  {:<34} {:>18} {:>8}  PEAK MEMORY", "CELL", "A PASS", "B PASS", "MiB/s A → B", "CHANGE", "THROUGHPUT", "PEAK MiB A → B", "CHANGE");
            for r in rows {
                let (t, m) = (&r.throughput_mbps, &r.peak_memory_mb);
                let _ = writeln!(
                    out,
                    "{:<14} {:>7} {:>7}  {:>20} {:>8}  {:<34} {:>18} {:>8}  {}",
                    r.cell,
                    passed(r.a_passed),
                    passed(r.b_passed),
                    format!("{} → {}", num(t.a_mean, 1), num(t.b_mean, 1)),
                    change(t),
                    verdict(t),
                    format!("{} → {}{}", num(m.a_mean, 1), num(m.b_mean, 1), if r.peak_memory_metric == crate::results::model::METRIC_WORKING_SET { "" } else { "*" }),
                    change(m),
                    verdict(m)
                );
            }
        }
        CompareFormat::Md => {
            let _ = writeln!(out, "Comparing **{a}** (A) with **{b}** (B): exact permutation test on repetitions, p < {}.\n", compare::ALPHA);
            out.push_str("| cell | passed A / B | MiB/s A → B | change | throughput | memory metric | peak MiB A → B | change | peak memory |\n| --- | --- | --- | ---: | --- | --- | --- | ---: | --- |\n");
            for r in rows {
                let (t, m) = (&r.throughput_mbps, &r.peak_memory_mb);
                let _ = writeln!(out, "| {} | {} / {} | {} → {} | {} | {} | {} | {} → {} | {} | {} |", r.cell, passed(r.a_passed), passed(r.b_passed), num(t.a_mean, 1), num(t.b_mean, 1), change(t), verdict(t), r.peak_memory_metric, num(m.a_mean, 1), num(m.b_mean, 1), change(m), verdict(m));
            }
        }
        CompareFormat::Html => {
            use crate::report::html::esc;
            let _ = write!(out, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>perfvm compare</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}.better{{background:#d8f0d8}}.worse{{background:#f6d0d0}}</style></head><body>\n");
            let _ = writeln!(out, "<h1>perfvm compare</h1><p>A = {}<br>B = {}<br>Exact two-sided permutation test on the passed repetitions, p &lt; {}.</p>", esc(a), esc(b), compare::ALPHA);
            out.push_str("<table><tr><th>cell</th><th>passed A / B</th><th>MiB/s A → B</th><th>change</th><th>throughput</th><th>memory metric</th><th>peak MiB A → B</th><th>change</th><th>peak memory</th></tr>\n");
            let class = |m: &Metric| match m.verdict {
                compare::Verdict::Better => " class=\"better\"",
                compare::Verdict::Worse => " class=\"worse\"",
                _ => "",
            };
            for r in rows {
                let (t, m) = (&r.throughput_mbps, &r.peak_memory_mb);
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td>{} / {}</td><td>{} → {}</td><td>{}</td><td{}>{}</td><td>{}</td><td>{} → {}</td><td>{}</td><td{}>{}</td></tr>",
                    esc(&r.cell), passed(r.a_passed), passed(r.b_passed), num(t.a_mean, 1), num(t.b_mean, 1), change(t), class(t), esc(&verdict(t)), r.peak_memory_metric,
                    num(m.a_mean, 1), num(m.b_mean, 1), change(m), class(m), esc(&verdict(m))
                );
            }
            out.push_str("</table></body></html>\n");
        }
    }
    Ok(out)
}

pub fn run(args: &CompareArgs) -> Result<i32> {
    if let Some(p) = args.fail_on_regression
        && (!p.is_finite() || p < 0.0) {
            return Err(InputError(format!("--fail-on-regression {p}: a percentage, 0 or more")).into());
        }
    let db = args.db.path();
    let (a, b) = (load(&args.run_a, &db)?, load(&args.run_b, &db)?);
    let (fa, fb) = (crate::results::export::finals(&a), crate::results::export::finals(&b));
    let rows = compare::compare(&fa, &fb);
    print!("{}", render(&rows, args.format, &args.run_a, &args.run_b)?);
    if let Some(pct) = args.fail_on_regression {
        let reg = compare::regressions(&rows, pct);
        if !reg.is_empty() {
            eprintln!("perfvm: significant regression over {pct}%: {}", reg.join("; "));
            return Ok(crate::exit::CELL_FAILED);
        }
    }
    Ok(0)
}
