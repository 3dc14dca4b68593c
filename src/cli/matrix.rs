//! `perfvm matrix`: parses, calls `matrix::run`, prints the summary and what to do next.

use super::MatrixArgs;
use crate::exit;
use crate::matrix::run as matrix;
use crate::matrix::scheduler::Stopped;
use crate::size::fmt_secs;
use crate::ui::ConsoleReporter;
use anyhow::Result;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub async fn run(args: MatrixArgs, cancel: CancellationToken) -> Result<i32> {
    let (mut o, mut m) = super::plan::options(&args)?;
    if let Some(archive) = &args.from {
        let (o2, m2, about) = tokio::task::block_in_place(|| matrix::from_snapshot(o, m, archive, args.trust))?;
        eprintln!("perfvm: {about}");
        (o, m) = (o2, m2);
    }
    if args.list {
        let e = tokio::task::block_in_place(|| matrix::list(&o, &m))?;
        match args.format {
            super::Format::Json => println!("{}", serde_json::to_string_pretty(&serde_json::json!({
                "cells": e.cells.iter().map(|(k, s)| serde_json::json!({"cell": k.id(), "estimate_seconds": crate::results::model::round3(*s)})).collect::<Vec<_>>(),
                "jobs": e.jobs,
                "estimate_seconds": crate::results::model::round3(e.wall_seconds),
                "model_correction": crate::results::model::round3(e.correction),
                "past_cells": e.past,
            }))?),
            _ => list(&e),
        }
        if let Some(a) = m.adaptive {
            println!("then one more repetition at a time while throughput RSD > {} %, at most {} per cell", a.target_rsd_percent, a.max_repeats);
        }
        return Ok(exit::SUCCESS);
    }

    let done = matrix::run(o, m, cancel.clone(), Arc::new(ConsoleReporter::new())).await?;
    print!("{}", String::from_utf8_lossy(&std::fs::read(done.run_dir.join("summary.txt")).unwrap_or_default()));
    if let Err(e) = &done.report {
        eprintln!("perfvm: report not written: {e}");
    }
    println!("results: {}", done.run_dir.display());
    println!("  report.html, report.md, matrix.csv, results.json, summary.txt; per cell: cells/<cell>/a<attempt>/");
    let finals = done.finals();
    let planned = done.outcome.planned.len();
    let on_disk = format!("{} of {planned} cells finished and on disk in {}", finals.len(), done.run_dir.display());
    match &done.outcome.stopped {
        Some(Stopped::HostsLost { during }) => anyhow::bail!(
            "{}{} during cell {during}. {on_disk}. Start libvirtd (scripts/setup.sh), run `perfvm cleanup` to remove guests left running, then the same command to resume.",
            crate::pipeline::LIBVIRT_LOST,
            if done.hosts > 1 { " on every host that could run the cells left" } else { "" }
        ),
        Some(Stopped::NothingFits { cells }) => {
            anyhow::bail!("the cells {} fit no host that is left. {on_disk}. Free memory or give more hosts, then the same command to resume.", cells.join(", "))
        }
        _ => {}
    }
    if done.outcome.interrupted {
        eprintln!("perfvm: interrupted; {} of {planned} cells finished and on disk. Resume with the same command (add --fresh to start over).", finals.len());
    }
    Ok(exit::for_matrix(&finals, planned, done.outcome.interrupted))
}

/// `--list` as a table.
fn list(e: &matrix::Estimate) {
    let w = e.cells.iter().map(|(k, _)| k.id().len()).max().unwrap_or(0).max(16);
    for (k, secs) in &e.cells {
        println!("{:<w$} ~{}", k.id(), fmt_secs(*secs));
    }
    let basis = if e.past > 0 { format!("the cost model corrected by {} past cell(s) here (×{:.2})", e.past, e.correction) } else { "the cost model (no past cells here to correct it)".into() };
    println!("{} cell(s): ~{} at {} job(s), from {basis}", e.cells.len(), fmt_secs(e.wall_seconds), e.jobs);
}
