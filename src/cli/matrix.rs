//! `perfvm matrix`: every cell of RAM sizes × file sizes (× repeats), resumable, in parallel
//! within the host's memory budget, with matrix.csv / results.json / summary.txt rewritten after
//! every cell.

use super::MatrixArgs;
use super::run::{preflight, qemu_overhead_mib};
use crate::error::InputError;
use crate::exit;
use crate::plan::repeats::{self as adaptive, Adaptive, Settled};
use crate::plan::definition::RunDefinition;
use crate::plan::expand;
use crate::plan::key::CellKey;
use crate::hosts::spec::Access;
use crate::matrix::schedule::{self, Budget, Slot};
use crate::matrix::{lock, state};
use crate::pipeline::CellEnv;
use crate::results::export;
use crate::results::model::CellResult;
use crate::ui::ConsoleReporter;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Memory kept back from the budget for the host itself (perfvm, libvirtd, page cache).
const HOST_RESERVE_MIB: u64 = 1024;

/// `--from SNAPSHOT`: the snapshot's definition and inputs in place of the command line's.
fn from_snapshot(mut args: MatrixArgs, archive: &Path) -> Result<MatrixArgs> {
    let name = archive.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dest = crate::paths::cache_dir().join("snapshots").join(format!("{}-{}", name.trim_end_matches(".tar.zst"), std::process::id()));
    if dest.exists() {
        std::fs::remove_dir_all(&dest)?;
    }
    let x = crate::results::snapshot::extract(archive, &dest).map_err(|e| InputError(format!("--from: {e:#}")))?;
    let d = &x.manifest.metadata.definition;
    eprintln!("perfvm: snapshot {} of run {} (perfvm {}), extracted to {}", archive.display(), x.manifest.run, x.manifest.perfvm_version, dest.display());
    args.ram = d.ram_mib.clone();
    args.file_size = d.file_sizes.iter().map(|s| crate::size::ByteSize::parse(s)).collect::<Result<_, _>>().map_err(|e| InputError(format!("--from: {e}")))?;
    args.repeat = d.repeat;
    if let Some(a) = d.adaptive {
        (args.target_rsd, args.min_repeats, args.max_repeats) = (Some(a.target_rsd_percent), Some(a.min_repeats), Some(a.max_repeats));
    }
    args.concurrency = d.concurrency.clone();
    let c = &mut args.common;
    match &x.profile {
        Some(p) => c.target = p.display().to_string(),
        None => {
            c.target = d.target.clone();
            c.target_mode = Some(crate::profile::TargetMode::parse(&d.target_mode).ok_or_else(|| InputError(format!("--from: unknown target mode {:?}", d.target_mode)))?);
        }
    }
    c.accel = match d.accel.as_str() {
        "kvm" => crate::accel::AccelChoice::Kvm,
        _ => crate::accel::AccelChoice::Tcg,
    };
    c.cpus = d.cpus;
    c.timeout = d.timeout_s;
    c.seed = d.seed;
    c.sample_interval = d.sample_interval_ms;
    c.sample_memory_only = d.sample_memory_only;
    c.kind = crate::upload::content::ContentKind::parse(&d.content_kind).map_err(|e| InputError(format!("--from: {e}")))?;
    c.chunked = d.chunked;
    c.download = d.download;
    c.inputs = Some(super::Inputs { recipe_dir: x.recipe_dir, cloud_init_dir: x.cloud_init_dir });
    // Always a new run: the snapshot's cells run again, none are resumed.
    args.fresh = true;
    Ok(args)
}

pub async fn run(args: MatrixArgs, cancel: CancellationToken) -> Result<i32> {
    let args = match args.from.clone() {
        Some(f) => tokio::task::block_in_place(|| from_snapshot(args, &f))?,
        None => args,
    };
    let c = args.common.clone();
    let adaptive = match args.target_rsd {
        Some(t) => Some(Adaptive::new(args.min_repeats, args.max_repeats, t).map_err(InputError)?),
        None => None,
    };
    // With --target-rsd every repetition a cell may get; `adaptive::planned` picks those wanted.
    let most = adaptive.map_or(args.repeat, |a| a.max_repeats);
    let all = expand::expand(&args.ram, &args.file_size, &args.concurrency, most).map_err(|e| InputError(e.to_string()))?;
    let only = expand::parse_patterns(&args.only).map_err(|e| InputError(e.to_string()))?;
    let skip = expand::parse_patterns(&args.skip).map_err(|e| InputError(e.to_string()))?;
    let selected = expand::select(all.clone(), &only, &skip).map_err(|e| InputError(e.to_string()))?;
    if args.jobs == Some(0) {
        return Err(InputError("--jobs 0: use 1 or more (or leave it out to fit the memory budget)".into()).into());
    }
    if args.list {
        list(&adaptive::planned(&selected, &Settled::default(), adaptive.as_ref()), &c.results_dir, args.jobs.unwrap_or(1));
        if let Some(a) = adaptive {
            println!("then one more repetition at a time while throughput RSD > {} %, at most {} per cell", a.target_rsd_percent, a.max_repeats);
        }
        return Ok(exit::SUCCESS);
    }

    let shapes: Vec<_> = selected.iter().map(|k| (k.ram_mib, k.size, k.concurrency)).collect();
    let checked = tokio::task::block_in_place(|| preflight(&c, &shapes))?;
    let accel = checked.accel;
    let cost = |k: &CellKey| k.ram_mib + qemu_overhead_mib(accel);
    let max_cost = selected.iter().map(cost).max().unwrap_or(0);
    let (hosts, envs): (Vec<_>, Vec<_>) = checked.envs.into_iter().unzip();
    let mut slots = Vec::new();
    for (spec, env) in hosts.iter().zip(&envs) {
        let room = crate::hosts::room(spec, &env.conn);
        let budget = match spec.memory_mib {
            Some(m) => Budget { total_mib: m, used_mib: 0 },
            None => Budget::from_available(room.memory_mib, HOST_RESERVE_MIB),
        };
        let cores = room.cores;
        let jobs = spec.jobs.or(args.jobs).unwrap_or_else(|| schedule::default_jobs(&budget, max_cost, cores, c.cpus as usize));
        slots.push(Slot { budget, jobs, running: 0, bad: false });
    }
    if slots.iter().all(|s| max_cost > s.budget.total_mib) {
        let budgets: Vec<String> = hosts.iter().zip(&slots).map(|(h, s)| format!("{} {} MiB", h.name, s.budget.total_mib)).collect();
        return Err(InputError(format!(
            "the memory budget ({}; available memory minus a {HOST_RESERVE_MIB} MiB reserve unless hosts.toml sets memory_mib) is too small for the largest cell ({max_cost} MiB with qemu overhead)",
            budgets.join(", ")
        ))
        .into());
    }
    let jobs: usize = slots.iter().map(|s| s.jobs).sum();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let local_jobs: usize = hosts.iter().zip(&slots).filter(|(h, _)| h.access == Access::Local).map(|(_, s)| s.jobs).sum();
    if local_jobs * c.cpus as usize > cores {
        eprintln!(
            "perfvm: warning: {local_jobs} cells × {} vCPUs on {cores} cores: parallel guests compete for CPU and change what they measure (docs/parallel.md)",
            c.cpus
        );
    }
    let def = RunDefinition {
        ram_mib: args.ram.clone(),
        file_sizes: args.file_size.iter().map(|s| s.label()).collect(),
        repeat: most,
        target: envs[0].target.name.clone(),
        // A profile's content is part of the definition: an edited profile starts a new run.
        target_mode: match &envs[0].target.profile_sha256 {
            Some(h) => format!("profile-{}", &h[..12]),
            None => envs[0].target.mode.clone(),
        },
        image_id: envs[0].image.id.clone(),
        accel: accel.to_string(),
        cpus: c.cpus,
        timeout_s: c.timeout,
        seed: c.seed,
        sample_interval_ms: c.sample_interval,
        sample_memory_only: c.sample_memory_only,
        concurrency: args.concurrency.clone(),
        content_kind: c.kind.label(),
        chunked: c.chunked,
        download: c.download,
        adaptive,
    };
    let key = def.key();
    let run_dir = choose_run_dir(&c.results_dir, &key, args.fresh)?;
    std::fs::create_dir_all(&run_dir).with_context(|| format!("cannot create {}", run_dir.display()))?;
    let _lock = lock::acquire(&run_dir).map_err(|e| InputError(e.to_string()))?;

    // What is already there: finished attempts are kept; interrupted or half-written ones go.
    let mut results: Vec<CellResult> = Vec::new();
    // (cell, attempt, moves): moves off a lost host do not count against --retries.
    let mut pending: Vec<(CellKey, u32, u32)> = Vec::new();
    let mut discarded = 0;
    let mut next = std::collections::HashMap::new();
    for k in &all {
        discarded += state::discard_unfinished(&run_dir, k);
        let fin = state::finished_attempts(&run_dir, k);
        // Attempts lost with their host count as moves, here as in the loop below.
        let moves = fin.iter().filter(|r| state::host_lost(r)).count() as u32;
        next.insert(*k, (state::next(&fin, args.retries), moves));
        results.extend(fin);
    }
    // The cells wanted now: all selected ones, or with --target-rsd the repetitions that the
    // settled ones ask for. A cell queued or running is not settled: its last attempt may be an
    // infrastructure failure about to be retried, not a failed repetition.
    let decided = |results: &[CellResult], unsettled: &HashSet<CellKey>| -> Vec<CellKey> {
        adaptive::planned(&selected, &settled(results, unsettled), adaptive.as_ref())
    };
    let retrying: HashSet<CellKey> = next.iter().filter(|(_, (n, _))| matches!(n, state::Next::Run(a) if *a > 1)).map(|(k, _)| *k).collect();
    let mut planned = decided(&results, &retrying);
    for k in &planned {
        if let Some((state::Next::Run(a), moves)) = next.get(k) {
            pending.push((*k, *a, *moves));
        }
    }
    let mut running: HashSet<CellKey> = HashSet::new();
    let unsettled = |pending: &[(CellKey, u32, u32)], running: &HashSet<CellKey>| -> HashSet<CellKey> {
        pending.iter().map(|(k, _, _)| *k).chain(running.iter().copied()).collect()
    };
    let already = planned.len() - pending.len();
    let meta_started = read_started(&run_dir).unwrap_or_else(chrono::Utc::now);
    let mut meta = metadata(&envs[0], &def, &key, jobs, meta_started);
    meta.hosts = hosts.iter().zip(&slots).map(|(h, s)| format!("{} ({}, {}): {} job(s), budget {} MiB", h.name, h.uri, h.access.as_str(), s.jobs, s.budget.total_mib)).collect();
    meta.hosts.extend(checked.skipped.iter().map(|s| format!("skipped: {s}")));
    let room = if slots.len() == 1 {
        format!("{jobs} job(s), budget {} MiB", slots[0].budget.total_mib)
    } else {
        format!("hosts: {}", meta.hosts.join("; "))
    };
    let growth = match adaptive {
        Some(a) => format!(" (then more while throughput RSD > {} %, at most {} repetitions per cell)", a.target_rsd_percent, a.max_repeats),
        None => String::new(),
    };
    eprintln!(
        "perfvm: matrix {} — {} cells selected{growth}, {already} already finished{}, {} to run; {room}, {accel}",
        run_dir.display(),
        planned.len(),
        if discarded > 0 { format!(" ({discarded} unfinished attempt(s) discarded)") } else { String::new() },
        pending.len(),
    );
    let sizes: Vec<(u64, String)> = {
        let mut v: Vec<_> = args.file_size.iter().map(|s| (s.bytes(), s.label())).collect();
        v.sort();
        v
    };
    let mut rams = args.ram.clone();
    rams.sort_unstable();
    let exporter = Exporter { run_dir: run_dir.clone(), all: all.clone(), adaptive, rams, sizes };
    exporter.write(&meta, &results, None, &unsettled(&pending, &running))?;
    let db_path = crate::history::db_path(c.db.as_deref(), &c.results_dir);
    let mut recorder = super::history::Recorder::open(db_path, crate::history::matrix_run(&run_dir, &meta, c.label.as_deref()));
    // Attempts finished before a resume too: recording is idempotent.
    recorder.record(&results.iter().collect::<Vec<_>>());

    let envs: Vec<Arc<CellEnv>> = envs.into_iter().map(Arc::new).collect();
    let reporter = Arc::new(ConsoleReporter::new());
    let started = Instant::now();
    let mut set: tokio::task::JoinSet<(usize, CellKey, u32, u32, u64, CellResult, f64)> = tokio::task::JoinSet::new();
    let mut stop = false;
    let mut lost_during: Option<String> = None;
    let (mut done_now, mut failed_now, mut wall) = (0usize, 0usize, Vec::<f64>::new());
    // Unique on the host even if another perfvm runs the same definition elsewhere.
    let domain_tag = format!("{}-{}", &key.trim_start_matches("matrix-")[..4], std::process::id());
    loop {
        while !stop && !cancel.is_cancelled() {
            let costs: Vec<u64> = pending.iter().map(|(k, _, _)| cost(k)).collect();
            let Some((h, i)) = schedule::pick_host(&costs, &slots) else { break };
            let (k, attempt, moves) = pending.remove(i);
            let cell_cost = costs[i];
            slots[h].budget.take(cell_cost);
            slots[h].running += 1;
            running.insert(k);
            let out = state::attempt_dir(&run_dir, &k, attempt);
            std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
            let mut cfg = super::run::cell_config(&c, accel, &key, k.ram_mib, k.size, &k.id(), &format!("a{attempt}-{domain_tag}"));
            cfg.repeat = k.repeat;
            cfg.concurrency = k.concurrency;
            cfg.attempt = attempt;
            let (env, rep, cancel) = (envs[h].clone(), reporter.clone(), cancel.clone());
            set.spawn(async move {
                use futures_util::FutureExt;
                let t = Instant::now();
                // A panic in one cell must not take the others down: its guards have already
                // torn it down while unwinding; record it as the harness's failure.
                let r = std::panic::AssertUnwindSafe(crate::pipeline::run_cell(&env, &cfg, &out, &cancel, rep.as_ref()))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|p| {
                        let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                        let r = crate::pipeline::failed_result(&env, &cfg, format!("perfvm panicked in this cell: {msg}"));
                        let _ = crate::paths::write_atomic(&out.join("result.json"), &serde_json::to_vec_pretty(&r).unwrap_or_default());
                        r
                    });
                (h, k, attempt, moves, cell_cost, r, t.elapsed().as_secs_f64())
            });
        }
        let Some(joined) = set.join_next().await else {
            // Nothing runs and nothing can start: the cells left fit no host that remains.
            if !pending.is_empty() && !stop && !cancel.is_cancelled() && lost_during.is_none() {
                let ids: Vec<String> = pending.iter().map(|(k, _, _)| k.id()).collect();
                reporter.line(&format!("perfvm: {} cell(s) fit no host that is left: {}", ids.len(), ids.join(", ")));
                lost_during = Some(ids[0].clone());
            }
            break;
        };
        let (h, k, attempt, moves, cell_cost, r, secs) = joined.context("a cell task failed")?;
        slots[h].running -= 1;
        running.remove(&k);
        slots[h].budget.give(cell_cost);
        if r.interrupted {
            continue;
        }
        wall.push(secs);
        // A host whose libvirtd is gone gets no more cells; its cells go to the other hosts.
        // Without any host left no cell can run: stop, keep what is finished, say how to resume.
        let lost = r.exit_reason.is_infrastructure() && !crate::hypervisor::conn::alive(&envs[h].conn);
        let mut moved = false;
        if lost {
            let others = slots.iter().enumerate().any(|(i, s)| i != h && !s.bad);
            if !slots[h].bad {
                slots[h].bad = true;
                reporter.line(&format!(
                    "perfvm: host {} lost during {}: {}{}",
                    envs[h].host.name,
                    k.id(),
                    crate::pipeline::LIBVIRT_LOST,
                    if others { "; its cells go to the other hosts" } else { "; no new cells start" }
                ));
            }
            if others && !cancel.is_cancelled() {
                moved = true;
            } else if lost_during.is_none() {
                lost_during = Some(k.id());
                stop = true;
            }
        }
        let retry = moved || (!lost && r.exit_reason.is_infrastructure() && attempt - moves <= args.retries && !cancel.is_cancelled());
        if retry {
            if !moved {
                reporter.line(&format!("perfvm: {} attempt {attempt} failed ({}): retrying", k.id(), r.exit_reason));
            }
            pending.insert(0, (k, attempt + 1, moves + moved as u32));
        } else {
            done_now += 1;
            if !r.success {
                failed_now += 1;
                if args.stop_on_failure {
                    reporter.line(&format!("perfvm: {} failed ({}); --stop-on-failure: no new cells start", k.id(), r.exit_reason));
                    stop = true;
                }
            }
        }
        results.push(r);
        if adaptive.is_some() && !retry {
            // One more repetition of this cell's shape when its throughput is not steady yet.
            let now = decided(&results, &unsettled(&pending, &running));
            for k in now.iter().filter(|k| !planned.contains(k)) {
                reporter.line(&format!("perfvm: {}: throughput not steady yet, adding repetition {}", k.shape(), k.repeat));
                let (attempt, moves) = match next.get(k) {
                    Some((state::Next::Run(a), moves)) => (*a, *moves),
                    _ => (1, 0),
                };
                pending.push((*k, attempt, moves));
            }
            planned = now;
        }
        exporter.write(&meta, &results, None, &unsettled(&pending, &running))?;
        recorder.record(&results[results.len() - 1..].iter().collect::<Vec<_>>());
        let remaining = pending.len() + slots.iter().map(|s| s.running).sum::<usize>();
        let mean = wall.iter().sum::<f64>() / wall.len() as f64;
        let good_jobs: usize = slots.iter().filter(|s| !s.bad).map(|s| s.jobs).sum();
        let eta = mean * remaining as f64 / good_jobs.max(1) as f64;
        reporter.matrix_progress(already + done_now, failed_now, planned.len(), remaining, &fmt_secs(eta));
    }
    reporter.finish();

    meta.finished = Some(chrono::Utc::now());
    let total = started.elapsed().as_secs_f64();
    exporter.write(&meta, &results, Some(total), &unsettled(&pending, &running))?;
    recorder.run.finished = meta.finished.map(|f| f.to_rfc3339());
    recorder.record(&[]);
    print!("{}", String::from_utf8_lossy(&std::fs::read(run_dir.join("summary.txt")).unwrap_or_default()));
    // The report is a reading aid: failing to write it never fails the run.
    if let Err(e) = tokio::task::block_in_place(|| crate::report::write(&run_dir, Some(recorder.path()))) {
        eprintln!("perfvm: report not written: {e:#}");
    }
    println!("results: {}", run_dir.display());
    println!("  report.html, report.md, matrix.csv, results.json, summary.txt; per cell: cells/<cell>/a<attempt>/");
    let finals: Vec<&CellResult> = export::finals(&results)
        .into_iter()
        .filter(|r| planned.contains(&r.key()))
        .collect();
    let unfinished = planned.len() - finals.len();
    if let Some(cell) = lost_during {
        anyhow::bail!(
            "{}{} during cell {cell}. {} of {} cells finished and on disk in {}. Start libvirtd (scripts/setup.sh), run `perfvm cleanup` to remove guests left running, then the same command to resume.",
            crate::pipeline::LIBVIRT_LOST,
            if envs.len() > 1 { " on every host that could run the cells left" } else { "" },
            finals.len(),
            planned.len(),
            run_dir.display()
        );
    }
    if cancel.is_cancelled() {
        eprintln!(
            "perfvm: interrupted; {} of {} cells finished and on disk. Resume with the same command (add --fresh to start over).",
            finals.len(),
            planned.len()
        );
        return Ok(exit::INTERRUPTED);
    }
    if unfinished > 0 || finals.iter().any(|r| !r.success) {
        return Ok(if finals.iter().all(|r| r.exit_reason.is_infrastructure() || r.success) && unfinished == 0 {
            exit::INFRASTRUCTURE
        } else {
            exit::CELL_FAILED
        });
    }
    Ok(exit::SUCCESS)
}

struct Exporter {
    run_dir: PathBuf,
    /// Every cell of the definition (filters aside), up to the most repetitions.
    all: Vec<CellKey>,
    adaptive: Option<Adaptive>,
    rams: Vec<u64>,
    sizes: Vec<(u64, String)>,
}

impl Exporter {
    /// `unsettled`: cells queued or running, whose shapes are not judged yet (--target-rsd).
    fn write(&self, meta: &export::json::RunMetadata, results: &[CellResult], total_seconds: Option<f64>, unsettled: &HashSet<CellKey>) -> Result<()> {
        let finals = export::finals(results);
        let path_of = |r: &CellResult| format!("{}/result.json", state::attempt_rel(&r.key(), r.attempt));
        let settled = settled(results, unsettled);
        let total_cells = adaptive::planned(&self.all, &settled, self.adaptive.as_ref()).len();
        // A shape with a cell still to run has a gap in its settled repetitions: not stopped.
        let stops = self.adaptive.map(|policy| adaptive::stops(&settled, &policy)).unwrap_or_default();
        let summary = export::json::summarize(total_cells, &finals, results.len(), total_seconds);
        let title = format!(
            "perfvm matrix {} — {} ({} mode), {}, image {}; {}/{} cells finished, {} passed",
            meta.run_key, meta.target, meta.target_mode, meta.accel, meta.image_id, summary.finished, summary.cells, summary.passed
        );
        let w = |name: &str, data: Vec<u8>| {
            crate::paths::write_atomic(&self.run_dir.join(name), &data).with_context(|| {
                format!(
                    "cannot write {name} in {} (the previous version is intact; finished cells are kept: fix the cause and run the same command to resume)",
                    self.run_dir.display()
                )
            })
        };
        w("matrix.csv", export::csv::export(results, &path_of))?;
        w("results.json", export::json::export(meta, &summary, results, &finals, &stops))?;
        let mut summary_txt = export::summary::export(&title, &finals, &self.rams, &self.sizes);
        if let Some(policy) = &self.adaptive {
            summary_txt.extend(adaptive_lines(policy, &stops).into_bytes());
        }
        w("summary.txt", summary_txt)?;
        Ok(())
    }
}

/// The final attempts of the cells that are not queued or running.
fn settled(results: &[CellResult], unsettled: &HashSet<CellKey>) -> Settled {
    export::settled(export::finals(results).into_iter().filter(|r| !unsettled.contains(&r.key())))
}

/// For summary.txt: each cell's repetitions under --target-rsd and why it stopped.
fn adaptive_lines(policy: &Adaptive, why: &BTreeMap<String, adaptive::Stop>) -> String {
    if why.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\nrepetitions (--target-rsd {} %, {}–{} per cell):\n",
        policy.target_rsd_percent, policy.min_repeats, policy.max_repeats
    );
    for (shape, stop) in why {
        out.push_str(&format!("  {shape:<14} {}\n", stop.message));
    }
    out
}

/// `<key>` for the first run of a definition, `<key>.2`, `<key>.3`… after `--fresh`. Without
/// `--fresh` the newest one is resumed.
fn choose_run_dir(results: &Path, key: &str, fresh: bool) -> Result<PathBuf> {
    let mut newest: Option<(u32, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir(results) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = if name == key {
                Some(1)
            } else {
                name.strip_prefix(key).and_then(|r| r.strip_prefix('.')).and_then(|n| n.parse::<u32>().ok())
            };
            if let Some(n) = n
                && newest.as_ref().is_none_or(|(m, _)| n > *m) {
                    newest = Some((n, e.path()));
                }
        }
    }
    Ok(match (newest, fresh) {
        (None, _) => results.join(key),
        (Some((_, p)), false) => p,
        (Some((n, _)), true) => results.join(format!("{key}.{}", n + 1)),
    })
}

fn read_started(run_dir: &Path) -> Option<chrono::DateTime<chrono::Utc>> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("results.json")).ok()?).ok()?;
    v["metadata"]["started"].as_str()?.parse().ok()
}

fn metadata(env: &CellEnv, def: &RunDefinition, key: &str, jobs: usize, started: chrono::DateTime<chrono::Utc>) -> export::json::RunMetadata {
    let (libvirt_version, qemu_version) = crate::hypervisor::conn::versions(&env.conn);
    let uts = nix::sys::utsname::uname().ok();
    export::json::RunMetadata {
        run_key: key.to_string(),
        perfvm_version: env!("CARGO_PKG_VERSION").to_string(),
        git_rev: std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()),
        host: uts.as_ref().map(|u| u.nodename().to_string_lossy().into_owned()).unwrap_or_default(),
        kernel: uts.as_ref().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
        libvirt_version,
        qemu_version,
        accel: def.accel.clone(),
        image_id: def.image_id.clone(),
        target: def.target.clone(),
        target_mode: def.target_mode.clone(),
        jobs,
        started,
        finished: None,
        definition: def.clone(),
        target_profile: env.target.profile_path.as_ref().map(|p| p.display().to_string()),
        hosts: Vec::new(),
    }
}

fn fmt_secs(s: f64) -> String {
    if s >= 3600.0 {
        format!("{:.0}h{:02.0}m", (s / 3600.0).floor(), (s % 3600.0) / 60.0)
    } else if s >= 60.0 {
        format!("{:.0}m{:02.0}s", (s / 60.0).floor(), s % 60.0)
    } else {
        format!("{s:.0}s")
    }
}

/// `--list`: the cells, with an estimate from past cells of the same shape, accel and target.
fn list(cells: &[CellKey], results_dir: &Path, jobs: usize) {
    let past = past_results(results_dir);
    let mut total = 0.0;
    let mut known = 0;
    for k in cells {
        let same: Vec<f64> = past
            .iter()
            .filter(|r| r.ram_mb == k.ram_mib && r.file_size_bytes == k.size.bytes() && r.concurrency == k.concurrency && r.success)
            .map(cell_seconds)
            .collect();
        let est = crate::stats::stats(&same);
        match est {
            Some(s) => {
                total += s.mean;
                known += 1;
                println!("{:<16} ~{} (from {} past cell(s))", k.id(), fmt_secs(s.mean), s.n);
            }
            None => println!("{:<16} (no past cell of this shape)", k.id()),
        }
    }
    println!("{} cell(s)", cells.len());
    if known > 0 {
        println!("estimated ~{} for the {known} cell(s) with history, at {jobs} job(s)", fmt_secs(total / jobs as f64));
    }
}

fn cell_seconds(r: &CellResult) -> f64 {
    let p = &r.phases;
    [p.prepare, p.boot, p.agent, p.cloud_init, p.healthy, p.upload, p.collect, p.teardown].iter().flatten().sum()
}

/// Every result.json under the results directory (runs and matrix cells), best effort.
fn past_results(dir: &Path) -> Vec<CellResult> {
    fn walk(d: &Path, depth: u32, out: &mut Vec<CellResult>) {
        let Ok(it) = std::fs::read_dir(d) else { return };
        for e in it.flatten() {
            let p = e.path();
            if p.is_dir() && depth > 0 {
                walk(&p, depth - 1, out);
            } else if p.file_name().is_some_and(|n| n == "result.json")
                && let Some(r) = std::fs::read_to_string(&p).ok().and_then(|t| serde_json::from_str(&t).ok()) {
                    out.push(r);
                }
        }
    }
    let mut out = Vec::new();
    walk(dir, 4, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_dir_resumes_newest_and_fresh_makes_a_new_one() {
        let d = tempfile::tempdir().unwrap();
        let k = "matrix-abc";
        assert_eq!(choose_run_dir(d.path(), k, false).unwrap(), d.path().join(k));
        assert_eq!(choose_run_dir(d.path(), k, true).unwrap(), d.path().join(k));
        std::fs::create_dir(d.path().join(k)).unwrap();
        assert_eq!(choose_run_dir(d.path(), k, false).unwrap(), d.path().join(k));
        assert_eq!(choose_run_dir(d.path(), k, true).unwrap(), d.path().join("matrix-abc.2"));
        std::fs::create_dir(d.path().join("matrix-abc.2")).unwrap();
        std::fs::create_dir(d.path().join("matrix-abcd")).unwrap();
        assert_eq!(choose_run_dir(d.path(), k, false).unwrap(), d.path().join("matrix-abc.2"));
    }

    #[test]
    fn a_cell_awaiting_a_retry_is_not_judged_a_failed_repetition() {
        use crate::results::model::ExitReason;
        let policy = Adaptive { min_repeats: 2, max_repeats: 4, target_rsd_percent: 5.0 };
        let cell = |repeat: u32, ok: bool| {
            let mut r: CellResult = serde_json::from_str(include_str!("../../tests/data/result-sample.json")).unwrap();
            (r.ram_mb, r.file_size_bytes, r.concurrency, r.repeat, r.attempt) = (256, 1 << 20, 1, repeat, 1);
            (r.success, r.throughput_mbps) = (ok, Some(50.0));
            if !ok {
                r.exit_reason = ExitReason::HarnessError;
            }
            r
        };
        let results = [cell(1, true), cell(2, false)];
        let r2 = results[1].key();
        // Settled, r2's infrastructure failure stops the shape; queued for a retry, it does not.
        let all = settled(&results, &HashSet::new());
        assert_eq!(adaptive::stops(&all, &policy)["256-1M"].kind, adaptive::StopKind::Failed);
        let waiting = settled(&results, &HashSet::from([r2]));
        assert!(adaptive::stops(&waiting, &policy).is_empty());
        let d = tempfile::tempdir().unwrap();
        let ex = Exporter { run_dir: d.path().into(), all: vec![results[0].key(), r2], adaptive: Some(policy), rams: vec![256], sizes: vec![(1 << 20, "1M".into())] };
        let meta: export::json::RunMetadata = serde_json::from_value(serde_json::json!({
            "run_key": "matrix-x", "perfvm_version": "0", "git_rev": null, "host": "h", "kernel": "k",
            "libvirt_version": null, "qemu_version": null, "accel": "tcg", "image_id": "i", "target": "t",
            "target_mode": "stream", "jobs": 1, "started": "2026-11-30T00:00:00Z", "finished": null,
            "definition": { "ram_mib": [256], "file_sizes": ["1M"], "repeat": 4, "target": "t", "target_mode": "stream",
              "image_id": "i", "accel": "tcg", "cpus": 2, "timeout_s": 600, "seed": 1, "sample_interval_ms": 100 }
        }))
        .unwrap();
        ex.write(&meta, &results, None, &HashSet::from([r2])).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(d.path().join("results.json")).unwrap()).unwrap();
        assert!(doc["repeats"][0].get("stop").is_none(), "{doc:#}");
        assert!(!std::fs::read_to_string(d.path().join("summary.txt")).unwrap().contains("did not pass"));
        ex.write(&meta, &results, None, &HashSet::new()).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(d.path().join("results.json")).unwrap()).unwrap();
        assert_eq!(doc["repeats"][0]["stop"]["kind"], "failed");
        assert!(std::fs::read_to_string(d.path().join("summary.txt")).unwrap().contains("256-1M         r2 did not pass"));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_secs(42.0), "42s");
        assert_eq!(fmt_secs(125.0), "2m05s");
        assert_eq!(fmt_secs(7260.0), "2h01m");
    }
}
