//! A matrix run, strung together: its cells (`plan`), the hosts ready (`setup`), its run
//! directory (resumed or new, locked), what is there already, the scheduler with the pipeline as
//! its runner, the exports and the history after every cell, the report at the end. The CLI
//! turns its flags into the options here and prints what comes back.

use super::schedule::{self, Budget, Slot};
use super::scheduler::{self, CellRunner, Events, Job, Outcome, Scheduler};
use crate::error::InputError;
use crate::pipeline::{CellEnv, Reporter};
use crate::plan::definition::RunDefinition;
use crate::plan::estimate;
use crate::plan::expand;
use crate::plan::key::CellKey;
use crate::plan::repeats::{self, Adaptive};
use crate::results::export::{self, json::RunMetadata};
use crate::results::model::CellResult;
use crate::rundir::{self, attempts};
use crate::setup::{self, Options};
use crate::size::ByteSize;
use anyhow::{Context, Result};
use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Memory kept back from a host's budget for the host itself (perfvm, libvirtd, page cache).
pub const HOST_RESERVE_MIB: u64 = 1024;

/// The matrix's own options (the cells' are `setup::Options`).
#[derive(Debug, Clone)]
pub struct MatrixOptions {
    pub ram: Vec<u64>,
    pub file_sizes: Vec<ByteSize>,
    pub concurrency: Vec<u32>,
    pub repeat: u32,
    /// `--target-rsd`: repeat until throughput is steady.
    pub adaptive: Option<Adaptive>,
    /// `--only` / `--skip` patterns.
    pub only: Vec<String>,
    pub skip: Vec<String>,
    pub fresh: bool,
    pub jobs: Option<usize>,
    pub retries: u32,
    pub stop_on_failure: bool,
    /// `--junit FILE`: JUnit XML of the cells, rewritten like the exports.
    pub junit: Option<PathBuf>,
    /// `--plan FILE`'s text, kept in the run directory as given.
    pub plan: Option<String>,
}

/// The cells of a matrix: every one of the definition, and those selected by the filters (with
/// `--target-rsd`, every repetition a cell may get).
pub struct Cells {
    pub all: Vec<CellKey>,
    pub selected: Vec<CellKey>,
}

pub fn cells(o: &Options, m: &MatrixOptions) -> Result<Cells, InputError> {
    let e = |e: expand::MatrixError| InputError(e.to_string());
    let most = m.adaptive.map_or(m.repeat, |a| a.max_repeats);
    let tags: Vec<_> = setup::target::choose_all(&o.targets, o.target_mode)?.iter().map(|t| t.tag).collect();
    let all = expand::expand(&m.ram, &m.file_sizes, &m.concurrency, &tags, most).map_err(e)?;
    let selected = expand::select(all.clone(), &expand::parse_patterns(&m.only).map_err(e)?, &expand::parse_patterns(&m.skip).map_err(e)?).map_err(e)?;
    if m.jobs == Some(0) {
        return Err(InputError("--jobs 0: use 1 or more (or leave it out to fit the memory budget)".into()));
    }
    Ok(Cells { all, selected })
}

/// The cells a run starts with (under `--target-rsd`, the first repetitions of each).
pub fn first_planned(m: &MatrixOptions, c: &Cells) -> Vec<CellKey> {
    repeats::planned(&c.selected, &repeats::Settled::default(), m.adaptive.as_ref())
}

/// Where a matrix reports as it goes: a cell's phases, lines, and the run's progress.
pub trait Ui: Reporter {
    fn line(&self, text: &str);
    fn matrix_progress(&self, done: usize, failed: usize, total: usize, remaining: usize, eta_seconds: f64);
    fn finish(&self);
}

/// What a finished (or stopped) matrix run left.
pub struct Finished {
    pub run_dir: PathBuf,
    pub outcome: Outcome,
    /// The history database the cells went into.
    pub db: PathBuf,
    /// report.html and report.md, or why they were not written (never fatal).
    pub report: Result<(), String>,
    /// Hosts the run had.
    pub hosts: usize,
}

impl Finished {
    /// The final result of each planned cell.
    pub fn finals(&self) -> Vec<&CellResult> {
        export::finals(&self.outcome.results).into_iter().filter(|r| self.outcome.planned.contains(&r.key())).collect()
    }
}

/// Run a matrix to its end (or until stopped), resuming the same definition's run directory
/// unless `fresh`.
pub async fn run(o: Options, m: MatrixOptions, cancel: CancellationToken, ui: Arc<dyn Ui>) -> Result<Finished> {
    let cells = cells(&o, &m)?;
    let shapes: Vec<_> = cells.selected.iter().map(|k| (k.ram_mib, k.size, k.concurrency)).collect();
    let say = |s: String| ui.line(&format!("perfvm: {s}"));
    let ready = tokio::task::block_in_place(|| setup::preflight(&o, &shapes, &say))?;
    let accel = ready.accel;
    let overhead = setup::check::qemu_overhead_mib(accel);
    let max_cost = cells.selected.iter().map(|k| k.ram_mib + overhead).max().unwrap_or(0);
    let tags = ready.tags.clone();
    let (specs, envs): (Vec<_>, Vec<Vec<CellEnv>>) = ready.hosts.into_iter().unzip();
    let firsts: Vec<&CellEnv> = envs.iter().map(|e| &e[0]).collect();
    let slots = host_slots(&specs, &firsts, m.jobs, max_cost, o.cell.cpus);
    if slots.iter().all(|s| max_cost > s.budget.total_mib) {
        let budgets: Vec<String> = specs.iter().zip(&slots).map(|(h, s)| format!("{} {} MiB", h.name, s.budget.total_mib)).collect();
        return Err(InputError(format!(
            "the memory budget ({}; available memory minus a {HOST_RESERVE_MIB} MiB reserve unless hosts.toml sets memory_mib) is too small for the largest cell ({max_cost} MiB with qemu overhead)",
            budgets.join(", ")
        ))
        .into());
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let local_jobs: usize = specs.iter().zip(&slots).filter(|(h, _)| h.access == crate::hosts::spec::Access::Local).map(|(_, s)| s.jobs).sum();
    if local_jobs * o.cell.cpus as usize > cores {
        ui.line(&format!(
            "perfvm: warning: {local_jobs} cells × {} vCPUs on {cores} cores: parallel guests compete for CPU and change what they measure (docs/parallel.md)",
            o.cell.cpus
        ));
    }
    let def = definition(&o, &m, &envs[0], accel.to_string());
    let key = def.key();
    let run_dir = rundir::matrix_dir(&o.results_dir, &key, m.fresh);
    std::fs::create_dir_all(&run_dir).with_context(|| format!("cannot create {}", run_dir.display()))?;
    let _lock = rundir::lock::acquire(&run_dir).map_err(|e| InputError(e.to_string()))?;
    if let Some(plan) = &m.plan {
        rundir::write_plan(&run_dir, plan).with_context(|| format!("cannot write the plan into {}", run_dir.display()))?;
    }

    // What is there already: finished attempts are kept; interrupted or half-written ones go.
    let mut discarded = 0;
    let mut finished = Vec::new();
    for k in &cells.all {
        discarded += attempts::discard_unfinished(&run_dir, k);
        finished.extend(attempts::finished_attempts(&run_dir, k));
    }
    let jobs: usize = slots.iter().map(|s| s.jobs).sum();
    let meta = metadata(&run_dir, &envs[0][0], (&specs, &slots, &ready.skipped), &def, &key, o.label.as_deref());
    let room = if slots.len() == 1 { format!("{jobs} job(s), budget {} MiB", slots[0].budget.total_mib) } else { format!("hosts: {}", meta.hosts.join("; ")) };
    let growth = match m.adaptive {
        Some(a) => format!(" (then more while throughput RSD > {} %, at most {} repetitions per cell)", a.target_rsd_percent, a.max_repeats),
        None => String::new(),
    };
    let sched = Scheduler {
        policy: scheduler::Policy { retries: m.retries, stop_on_failure: m.stop_on_failure, adaptive: m.adaptive, overhead_mib: overhead },
        hosts: specs.iter().map(|s| s.name.clone()).collect(),
        slots,
        selected: cells.selected.clone(),
        model: estimate::cost(estimate::MEASURED_TCG, o.cell.way()),
    };
    let (planned, to_run) = sched.counts(&finished);
    ui.line(&format!(
        "perfvm: matrix {} — {planned} cells selected{growth}, {} already finished{}, {} to run; {room}, {accel}",
        run_dir.display(),
        planned - to_run.len(),
        if discarded > 0 { format!(" ({discarded} unfinished attempt(s) discarded)") } else { String::new() },
        to_run.len(),
    ));
    let todo: Vec<CellKey> = to_run.iter().copied().collect();
    let names: Vec<&str> = envs[0].iter().map(|e| e.target.name.as_str()).collect();
    let e = estimate(&o, &todo, accel, &names, jobs);
    ui.line(&format!("perfvm: estimated ~{} for the {} cell(s) to run, at {jobs} job(s) (cost model{})", crate::size::fmt_secs(e.wall_seconds), todo.len(), if e.past > 0 { format!(", corrected by {} past cell(s): ×{:.2}", e.past, e.correction) } else { String::from(", no past cells here to correct it") }));
    let recorder = crate::history::Recorder::open(o.db_path(), crate::history::matrix_run(&run_dir, &meta, o.label.as_deref()));
    let mut rec = Recording { exports: Exports::new(&run_dir, &cells.all, &m), meta, recorder, ui: ui.clone() };
    rec.exports.write(&rec.meta, &finished, None, &to_run)?;
    // Attempts finished before a resume too: recording is idempotent.
    rec.recorder.record_new(&finished);

    let domain_tag = format!("{}-{}", &key.trim_start_matches("matrix-")[..4], std::process::id());
    let runner = Arc::new(PipelineRunner { envs: envs.into_iter().map(|e| e.into_iter().map(Arc::new).collect()).collect(), tags, opts: Arc::new(o.clone()), accel, run_dir: run_dir.clone(), run_key: key.clone(), domain_tag, ui: ui.clone() });
    let outcome = sched.run(finished, runner, cancel, &mut rec).await?;
    ui.finish();
    rec.meta.finished = Some(chrono::Utc::now());
    rec.exports.write(&rec.meta, &outcome.results, Some(outcome.wall_seconds), &outcome.unsettled)?;
    rec.recorder.run.finished = rec.meta.finished.map(|f| f.to_rfc3339());
    rec.recorder.record(&[]);
    let db = rec.recorder.path().to_path_buf();
    let hosts = rec.meta.hosts.iter().filter(|h| !h.starts_with("skipped:")).count();
    // The report is a reading aid: failing to write it never fails the run.
    let report = tokio::task::block_in_place(|| crate::report::write(&run_dir, Some(&db))).map(|_| ()).map_err(|e| format!("{e:#}"));
    Ok(Finished { run_dir, outcome, db, report, hosts })
}

/// Each host's budget and jobs, for cells that cost at most `max_cost` MiB (guest RAM and
/// qemu's overhead): hosts.toml's figures, else what the host has; jobs from hosts.toml, else
/// `jobs` (--jobs), else what the budget and the cores hold.
pub(crate) fn host_slots(specs: &[crate::hosts::spec::HostSpec], envs: &[&CellEnv], jobs: Option<usize>, max_cost: u64, cpus: u32) -> Vec<Slot> {
    specs
        .iter()
        .zip(envs)
        .map(|(spec, env)| {
            let room = crate::hosts::room(spec, &env.host.conn);
            let budget = match spec.memory_mib {
                Some(mib) => Budget { total_mib: mib, used_mib: 0 },
                None => Budget::from_available(room.memory_mib, HOST_RESERVE_MIB),
            };
            let jobs = spec.jobs.or(jobs).unwrap_or_else(|| schedule::default_jobs(&budget, max_cost, room.cores, cpus as usize));
            Slot { budget, jobs, running: 0, bad: false }
        })
        .collect()
}

/// Everything that defines the run's cells, for its key: `envs` are one host's, one per target.
pub(crate) fn definition(o: &Options, m: &MatrixOptions, envs: &[CellEnv], accel: String) -> RunDefinition {
    let c = &o.cell;
    // A profile's content is part of the definition: an edited profile starts a new run.
    let mode = |env: &CellEnv| match &env.target.profile_sha256 {
        Some(h) => format!("profile-{}", &h[..12]),
        None => env.target.mode.clone(),
    };
    let first = &envs[0];
    RunDefinition {
        ram_mib: m.ram.clone(),
        file_sizes: m.file_sizes.iter().map(|s| s.label()).collect(),
        repeat: m.adaptive.map_or(m.repeat, |a| a.max_repeats),
        target: first.target.name.clone(),
        target_mode: mode(first),
        targets: if envs.len() > 1 { envs.iter().map(|e| (e.target.name.clone(), mode(e))).collect() } else { Vec::new() },
        image_id: first.image.id.clone(),
        accel,
        cpus: c.cpus,
        timeout_s: c.timeout_s,
        seed: c.seed,
        sample_interval_ms: c.sample_interval_ms,
        sample_memory_only: c.sample_memory_only,
        concurrency: m.concurrency.clone(),
        content_kind: c.content.label(),
        chunked: c.transfer == crate::upload::client::Transfer::Chunked,
        download: c.download,
        adaptive: m.adaptive,
        harness_sha256: Some(harness_sha256(envs)),
    }
}

/// What perfvm puts into every guest, hashed: the cloud-init templates, the probe, and the
/// reference target when it is a target. A file that cannot be read hashes as its name.
fn harness_sha256(envs: &[CellEnv]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(envs[0].templates.0.as_bytes());
    h.update(envs[0].templates.1.as_bytes());
    let mut bins = vec![crate::paths::probe_binary()];
    if envs.iter().any(|e| e.target.profile_sha256.is_none()) {
        bins.push(crate::paths::target_binary());
    }
    for b in bins {
        h.update(std::fs::read(&b).unwrap_or_else(|_| b.display().to_string().into_bytes()));
    }
    hex::encode(h.finalize())[..16].to_string()
}

/// What results.json says of a run (a matrix or a limit search) in `run_dir`: its identity (kept
/// from its first start), the host it is driven from, its definition, and each host's jobs and
/// budget.
pub(crate) fn metadata(run_dir: &Path, env: &CellEnv, hosts: (&[crate::hosts::spec::HostSpec], &[Slot], &[String]), def: &RunDefinition, key: &str, label: Option<&str>) -> RunMetadata {
    let (specs, slots, skipped) = hosts;
    let (libvirt_version, qemu_version) = crate::hypervisor::conn::versions(&env.host.conn);
    let uts = nix::sys::utsname::uname().ok();
    let (started, uid) = rundir::matrix_identity(run_dir);
    let mut hosts: Vec<String> = specs.iter().zip(slots).map(|(h, s)| format!("{} ({}, {}): {} job(s), budget {} MiB", h.name, h.uri, h.access.as_str(), s.jobs, s.budget.total_mib)).collect();
    hosts.extend(skipped.iter().map(|s| format!("skipped: {s}")));
    RunMetadata {
        run_key: key.to_string(),
        run_uid: Some(uid),
        label: label.map(str::to_string),
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
        jobs: slots.iter().map(|s| s.jobs).sum(),
        started,
        finished: None,
        definition: def.clone(),
        target_profile: env.target.profile_path.as_ref().map(|p| p.display().to_string()),
        hosts,
    }
}


/// The run's exports, rewritten after every cell.
struct Exports {
    run_dir: PathBuf,
    junit: Option<PathBuf>,
    /// Every cell of the definition (filters aside), up to the most repetitions.
    all: Vec<CellKey>,
    adaptive: Option<Adaptive>,
    rams: Vec<u64>,
    sizes: Vec<(u64, String)>,
}

impl Exports {
    fn new(run_dir: &Path, all: &[CellKey], m: &MatrixOptions) -> Exports {
        let mut sizes: Vec<(u64, String)> = m.file_sizes.iter().map(|s| (s.bytes(), s.label())).collect();
        sizes.sort();
        let mut rams = m.ram.clone();
        rams.sort_unstable();
        Exports { run_dir: run_dir.to_path_buf(), junit: m.junit.clone(), all: all.to_vec(), adaptive: m.adaptive, rams, sizes }
    }

    /// `unsettled`: cells queued or running, whose shapes are not judged yet (--target-rsd).
    fn write(&self, meta: &RunMetadata, results: &[CellResult], total_seconds: Option<f64>, unsettled: &HashSet<CellKey>) -> Result<()> {
        let finals = export::finals(results);
        let settled = export::settled(finals.iter().copied().filter(|r| !unsettled.contains(&r.key())));
        let total_cells = repeats::planned(&self.all, &settled, self.adaptive.as_ref()).len();
        // A shape with a cell still to run has a gap in its settled repetitions: not stopped.
        let stops = self.adaptive.map(|policy| repeats::stops(&settled, &policy)).unwrap_or_default();
        let view = export::RunView {
            meta,
            results,
            summary: export::json::summarize(total_cells, &finals, results.len(), total_seconds),
            finals,
            adaptive: self.adaptive,
            stops,
            rams: self.rams.clone(),
            sizes: self.sizes.clone(),
            result_path: attempts::result_rel,
        };
        if let Some(path) = &self.junit {
            let xml = export::junit::render(meta, &view.finals, total_cells);
            crate::paths::write_atomic(path, xml.as_bytes()).with_context(|| format!("cannot write --junit {}", path.display()))?;
        }
        for e in export::all() {
            let name = e.file_name();
            crate::paths::write_atomic(&self.run_dir.join(name), &e.export(&view)).with_context(|| {
                format!(
                    "cannot write {name} in {} (the previous version is intact; finished cells are kept: fix the cause and run the same command to resume)",
                    self.run_dir.display()
                )
            })?;
        }
        Ok(())
    }
}

/// The scheduler's events: exports and history after every cell, progress to the user.
struct Recording {
    exports: Exports,
    meta: RunMetadata,
    recorder: crate::history::Recorder,
    ui: Arc<dyn Ui>,
}

impl Events for Recording {
    fn line(&mut self, text: &str) {
        self.ui.line(text);
    }

    fn finished(&mut self, results: &[CellResult], unsettled: &HashSet<CellKey>) -> Result<()> {
        self.exports.write(&self.meta, results, None, unsettled)?;
        self.recorder.record_new(results);
        Ok(())
    }

    fn progress(&mut self, done: usize, failed: usize, planned: usize, remaining: usize, eta_seconds: f64) {
        self.ui.matrix_progress(done, failed, planned, remaining, eta_seconds);
    }
}

/// The real runner: one attempt through the cell pipeline, into its attempt directory. A panic
/// in one cell must not take the others down: its guards have torn it down while unwinding,
/// and it is recorded as the harness's failure.
pub(crate) struct PipelineRunner {
    /// Each host's environments, one per target in the order of `tags`.
    pub(crate) envs: Vec<Vec<Arc<CellEnv>>>,
    pub(crate) tags: Vec<crate::plan::key::TargetTag>,
    pub(crate) opts: Arc<Options>,
    pub(crate) accel: crate::accel::Accel,
    pub(crate) run_dir: PathBuf,
    pub(crate) run_key: String,
    /// Unique on the host even if another perfvm runs the same definition elsewhere.
    pub(crate) domain_tag: String,
    pub(crate) ui: Arc<dyn Ui>,
}

impl CellRunner for PipelineRunner {
    fn run(&self, host: usize, job: Job, cancel: CancellationToken) -> Pin<Box<dyn Future<Output = CellResult> + Send>> {
        let out = attempts::attempt_dir(&self.run_dir, &job.key, job.attempt);
        let cfg = self.opts.cell_config(self.accel, &self.run_key, &job.key, job.attempt, &format!("a{}-{}", job.attempt, self.domain_tag));
        let t = self.tags.iter().position(|t| *t == job.key.target).expect("every cell's target has an environment");
        let (env, ui) = (self.envs[host][t].clone(), self.ui.clone());
        Box::pin(async move {
            use futures_util::FutureExt;
            if let Err(e) = std::fs::create_dir_all(&out) {
                return crate::pipeline::failed_result(&env, &cfg, format!("cannot create {}: {e}", out.display()));
            }
            let rep: &dyn Reporter = ui.as_ref();
            std::panic::AssertUnwindSafe(crate::pipeline::run_cell(&env, &cfg, &out, &cancel, rep)).catch_unwind().await.unwrap_or_else(|p| {
                let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                let mut r = crate::pipeline::failed_result(&env, &cfg, format!("perfvm panicked in this cell: {msg}"));
                if !crate::hypervisor::conn::alive(&env.host.conn) {
                    r.failure = Some(crate::results::model::FailureKind::HostLost);
                }
                let _ = rundir::write_result(&out, &r);
                r
            })
        })
    }
}

/// How long cells will take: the cost model, corrected by past cells of this accel and these
/// targets in the results directory.
pub struct Estimate {
    /// Each cell and its seconds.
    pub cells: Vec<(CellKey, f64)>,
    /// How far past cells were from the model (1 without any), and how many there were.
    pub correction: f64,
    pub past: usize,
    /// The wall time of all of them at `jobs`.
    pub wall_seconds: f64,
    pub jobs: usize,
}

pub fn estimate(o: &Options, cells: &[CellKey], accel: crate::accel::Accel, targets: &[&str], jobs: usize) -> Estimate {
    let past: Vec<CellResult> = rundir::past_results(&o.results_dir).into_iter().filter(|r| r.success && r.accel == accel && targets.contains(&r.target.name.as_str())).collect();
    let pairs: Vec<(f64, f64)> = past.iter().map(|r| (cell_seconds(r), estimate::seconds(&estimate::MEASURED_TCG, &r.key(), way_of(r)))).collect();
    let correction = estimate::correction(&pairs);
    let cells: Vec<(CellKey, f64)> = estimate::with_builds(&estimate::MEASURED_TCG, cells, o.cell.way()).into_iter().map(|(k, s)| (k, s * correction)).collect();
    let wall_seconds = estimate::wall(cells.iter().map(|c| c.1).collect(), jobs);
    Estimate { cells, correction, past: past.len(), wall_seconds, jobs }
}

/// How a finished cell ran, for the cost model (results from before `verification` hashed in
/// the guest).
fn way_of(r: &CellResult) -> estimate::Way {
    use crate::results::model::{Boot, Verify};
    estimate::Way { saved: r.boot == Boot::Saved, host_hash: r.verification.as_ref().is_some_and(|v| v.by == Verify::Host), download: r.download.is_some() }
}

/// A finished cell's seconds, phase by phase (its wall time, less the gaps between phases).
pub(crate) fn cell_seconds(r: &CellResult) -> f64 {
    let p = &r.phases;
    [p.prepare, p.boot, p.agent, p.cloud_init, p.deliver, p.healthy, p.login, p.upload, p.download, p.collect, p.teardown].iter().flatten().sum()
}

/// `--list`: the cells, checked as a run would check them, with their estimates. Jobs as a run
/// on this machine would have them, unless given.
pub fn list(o: &Options, m: &MatrixOptions) -> Result<Estimate> {
    let c = cells(o, m)?;
    let wanted = first_planned(m, &c);
    let shapes: Vec<_> = wanted.iter().map(|k| (k.ram_mib, k.size, k.concurrency)).collect();
    let valid = setup::validate(o, &shapes)?;
    let jobs = m.jobs.unwrap_or_else(|| {
        let max_cost = wanted.iter().map(|k| k.ram_mib + setup::check::qemu_overhead_mib(valid.accel)).max().unwrap_or(1);
        let available = crate::proc::host_memory().map(|(_, a)| a >> 20).unwrap_or(0);
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        schedule::default_jobs(&Budget::from_available(available, HOST_RESERVE_MIB), max_cost, cores, o.cell.cpus as usize)
    });
    Ok(estimate(o, &wanted, valid.accel, &valid.target_names(), jobs))
}

/// `--from SNAPSHOT`: the snapshot's definition and inputs in place of the command line's; always
/// a new run. Returns the options and what the snapshot was, for the user.
/// Commands the snapshot would run on this host (its own recipe's, a profile's `[host]
/// prepare`) are refused unless `trust`, with the list, so that replaying someone's snapshot
/// never runs their code unasked.
pub fn from_snapshot(mut o: Options, mut m: MatrixOptions, archive: &Path, trust: bool) -> Result<(Options, MatrixOptions, String)> {
    let name = archive.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dest = crate::paths::cache_dir().join("snapshots").join(format!("{}-{}", name.trim_end_matches(".tar.zst"), std::process::id()));
    if dest.exists() {
        std::fs::remove_dir_all(&dest)?;
    }
    let x = crate::results::snapshot::extract(archive, &dest).map_err(|e| InputError(format!("--from: {e:#}")))?;
    let commands = crate::results::snapshot::host_commands(&x, &crate::paths::recipe_dir(), &crate::paths::targets_dir()).map_err(|e| InputError(format!("--from: {e:#}")))?;
    if !commands.is_empty() && !trust {
        return Err(InputError(format!(
            "--from {}: the snapshot would run these commands on this host, as root:\n  {}\nRead them; to run them, add --trust",
            archive.display(),
            commands.join("\n  ")
        ))
        .into());
    }
    let d = &x.manifest.metadata.definition;
    let about = format!("snapshot {} of run {} (perfvm {}), extracted to {}", archive.display(), x.manifest.run, x.manifest.perfvm_version, dest.display());
    m.ram = d.ram_mib.clone();
    m.file_sizes = d.file_sizes.iter().map(|s| ByteSize::parse(s)).collect::<Result<_, _>>().map_err(|e| InputError(format!("--from: {e}")))?;
    m.repeat = d.repeat;
    m.adaptive = d.adaptive;
    m.concurrency = d.concurrency.clone();
    if !d.targets.is_empty() {
        return Err(InputError(format!("--from {}: a snapshot of a matrix of several targets cannot be replayed (perfvm makes none)", archive.display())).into());
    }
    match &x.profile {
        Some(p) => o.targets = vec![setup::target::TargetArg { name: p.display().to_string(), mode: None }],
        None => {
            o.targets = vec![setup::target::TargetArg { name: d.target.clone(), mode: None }];
            o.target_mode = Some(crate::profile::TargetMode::parse(&d.target_mode).ok_or_else(|| InputError(format!("--from: unknown target mode {:?}", d.target_mode)))?);
        }
    }
    o.accel = match d.accel.as_str() {
        "kvm" => crate::accel::AccelChoice::Kvm,
        _ => crate::accel::AccelChoice::Tcg,
    };
    let c = &mut o.cell;
    c.cpus = d.cpus;
    c.timeout_s = d.timeout_s;
    c.seed = d.seed;
    c.sample_interval_ms = d.sample_interval_ms;
    c.sample_memory_only = d.sample_memory_only;
    c.content = crate::upload::content::ContentKind::parse(&d.content_kind).map_err(|e| InputError(format!("--from: {e}")))?;
    c.transfer = if d.chunked { crate::upload::client::Transfer::Chunked } else { crate::upload::client::Transfer::ContentLength };
    c.download = d.download;
    o.inputs = Some(setup::Inputs { recipe_dir: x.recipe_dir, cloud_init_dir: x.cloud_init_dir });
    // Always a new run: the snapshot's cells run again, none are resumed.
    m.fresh = true;
    Ok((o, m, about))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let d = tempfile::tempdir().unwrap();
        let m = MatrixOptions { ram: vec![256], file_sizes: vec![ByteSize(1 << 20)], concurrency: vec![1], repeat: 1, adaptive: Some(policy), only: vec![], skip: vec![], fresh: false, jobs: None, retries: 1, stop_on_failure: false, junit: None, plan: None };
        let ex = Exports::new(d.path(), &[results[0].key(), r2], &m);
        let meta: RunMetadata = serde_json::from_value(serde_json::json!({
            "run_key": "matrix-x", "perfvm_version": "0", "git_rev": null, "host": "h", "kernel": "k",
            "libvirt_version": null, "qemu_version": null, "accel": "tcg", "image_id": "i", "target": "t",
            "target_mode": "stream", "jobs": 1, "started": "2026-11-30T00:00:00Z", "finished": null,
            "definition": { "ram_mib": [256], "file_sizes": ["1M"], "repeat": 4, "target": "t", "target_mode": "stream",
              "image_id": "i", "accel": "tcg", "cpus": 2, "timeout_s": 600, "seed": 1, "sample_interval_ms": 100 }
        }))
        .unwrap();
        // Queued for a retry: r2's infrastructure failure is not a failed repetition.
        ex.write(&meta, &results, None, &HashSet::from([r2])).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(d.path().join("results.json")).unwrap()).unwrap();
        assert!(doc["repeats"][0].get("stop").is_none(), "{doc:#}");
        assert!(!std::fs::read_to_string(d.path().join("summary.txt")).unwrap().contains("did not pass"));
        // Settled, it ends the shape.
        ex.write(&meta, &results, None, &HashSet::new()).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(d.path().join("results.json")).unwrap()).unwrap();
        assert_eq!(doc["repeats"][0]["stop"]["kind"], "failed");
        assert!(std::fs::read_to_string(d.path().join("summary.txt")).unwrap().contains("256-1M         r2 did not pass"));
    }
}
