//! `perfvm history` and `perfvm db import`, and recording cells as runs finish them.

use crate::error::InputError;
use super::{DbArgs, Format, HistoryArgs};
use crate::history::{self, Db};
use anyhow::Result;
use std::path::PathBuf;

pub fn import(dirs: &[PathBuf], a: &DbArgs) -> Result<i32> {
    let path = a.path();
    let mut db = Db::open(&path)?;
    let (runs, cells) = history::import(&mut db, dirs).map_err(|e| InputError(format!("{e:#}")))?;
    println!("imported {runs} run(s), {cells} cell attempt(s) into {}", path.display());
    Ok(0)
}

/// `RAM/SIZE` of `--cell`.
fn parse_cell(s: &str) -> Result<(u64, crate::size::ByteSize), InputError> {
    let bad = || InputError(format!("--cell {s:?}: use RAM/SIZE, e.g. 512/1G"));
    let (ram, size) = s.split_once('/').ok_or_else(bad)?;
    let ram: u64 = ram.parse().map_err(|_| bad())?;
    let size = crate::size::ByteSize::parse(size).map_err(|e| InputError(format!("--cell {s:?}: {e}")))?;
    Ok((ram, size))
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into())
}

pub fn history(a: &HistoryArgs) -> Result<i32> {
    let path = a.db.path();
    let cell = a.cell.as_deref().map(parse_cell).transpose()?;
    if !path.is_file() {
        return Err(InputError(format!("no history database at {} (runs record into it; `perfvm db import RUN_DIR` fills it)", path.display())).into());
    }
    let db = Db::open(&path)?;
    let mut out = String::new();
    match cell {
        None => {
            let runs = db.runs()?;
            match a.format {
                Format::Json => out = serde_json::to_string_pretty(&runs.iter().map(|(r, c)| serde_json::json!({"run": r, "counts": c})).collect::<Vec<_>>())? + "\n",
                Format::Csv => {
                    let mut w = csv::Writer::from_writer(Vec::new());
                    w.write_record(["run", "kind", "started", "target", "target_mode", "accel", "image_id", "cells", "passed", "failed", "label", "git_rev", "dir"])?;
                    for (r, c) in &runs {
                        let (cells, passed, failed) = (c.cells.to_string(), c.passed.to_string(), c.failed.to_string());
                        w.write_record([&r.id, &r.kind, r.started.as_deref().unwrap_or(""), &r.target, &r.target_mode, &r.accel, &r.image_id, &cells, &passed, &failed, r.label.as_deref().unwrap_or(""), r.git_rev.as_deref().unwrap_or(""), &r.dir])?;
                    }
                    out = String::from_utf8(w.into_inner()?)?;
                }
                Format::Table => {
                    out.push_str(&format!("{:<34} {:<20} {:<16} {:<5} {:>6} {:>6}  {}\n", "RUN", "STARTED", "TARGET", "ACCEL", "PASSED", "FAILED", "LABEL"));
                    for (r, c) in &runs {
                        let started = r.started.as_deref().map(|s| s.get(..19).unwrap_or(s).replace('T', " ")).unwrap_or_default();
                        out.push_str(&format!("{:<34} {:<20} {:<16} {:<5} {:>6} {:>6}  {}\n", r.id, started, r.target, r.accel, c.passed, c.failed, r.label.as_deref().unwrap_or("")));
                    }
                    out.push_str(&format!("{} run(s) in {}\n", runs.len(), path.display()));
                }
            }
        }
        Some((ram, size)) => {
            // `perfvm-target:memory` narrows to one mode, as --target names it elsewhere.
            let target = a.target.as_deref().map(crate::setup::target::TargetArg::parse).transpose()?;
            let mode = target.as_ref().and_then(|t| t.mode).map(|m| m.as_str());
            let pts = db.trend(ram, size.bytes(), a.concurrency, target.as_ref().map(|t| t.name.as_str()), mode)?;
            match a.format {
                Format::Json => out = serde_json::to_string_pretty(&pts)? + "\n",
                Format::Csv => {
                    let mut w = csv::Writer::from_writer(Vec::new());
                    w.write_record(["run", "started", "label", "target", "repeats", "passed", "throughput_mbps", "peak_working_set_mb", "max_peak_working_set_mb", "cgroup_memory_peak_mb", "target_mode"])?;
                    for p in &pts {
                        let f = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
                        w.write_record([&p.run_id, p.started.as_deref().unwrap_or(""), p.label.as_deref().unwrap_or(""), &p.target, &p.repeats.to_string(), &p.passed.to_string(), &f(p.throughput_mbps), &f(p.peak_memory_mb), &f(p.max_peak_memory_mb), &f(p.memory_peak_mb), p.target_mode.as_deref().unwrap_or("")])?;
                    }
                    out = String::from_utf8(w.into_inner()?)?;
                }
                Format::Table => {
                    out.push_str(&format!("cell {ram}/{}{} across runs, oldest first\n", size.label(), if a.concurrency > 1 { format!(" ×{}", a.concurrency) } else { String::new() }));
                    out.push_str("peak: the working set (memory.current − inactive_file); memory.peak counts the page cache of the file written too\n");
                    out.push_str(&format!("{:<34} {:<20} {:<22} {:>7} {:>16} {:>15} {:>12}  {}\n", "RUN", "STARTED", "TARGET", "PASSED", "THROUGHPUT MiB/s", "PEAK MiB", "memory.peak", "LABEL"));
                    // Each target's previous run: a run of several targets has a line for each.
                    let mut prev_of: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
                    for p in &pts {
                        let started = p.started.as_deref().map(|s| s.get(..19).unwrap_or(s).replace('T', " ")).unwrap_or_default();
                        // The change of peak memory against the run before: what creeps shows.
                        let label = p.target_label();
                        let prev = prev_of.get(&label).copied();
                        let delta = match (prev, p.peak_memory_mb) {
                            (Some(a), Some(b)) if a > 0.0 => format!(" ({:+.0}%)", (b - a) * 100.0 / a),
                            _ => String::new(),
                        };
                        out.push_str(&format!(
                            "{:<34} {:<20} {:<22} {:>7} {:>16} {:>15} {:>12}  {}\n",
                            p.run_id,
                            started,
                            label,
                            format!("{}/{}", p.passed, p.repeats),
                            opt(p.throughput_mbps),
                            format!("{}{delta}", opt(p.peak_memory_mb)),
                            opt(p.memory_peak_mb),
                            p.label.as_deref().unwrap_or("")
                        ));
                        if let Some(v) = p.peak_memory_mb {
                            prev_of.insert(label, v);
                        }
                    }
                    if pts.is_empty() {
                        out.push_str("(no run has this cell)\n");
                    }
                }
            }
        }
    }
    print!("{out}");
    Ok(0)
}
