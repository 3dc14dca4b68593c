//! A limit search, strung together like a matrix run (`matrix::run`), whose cells are not known in
//! advance: the hosts ready (`setup`), the run directory (resumed or new, locked), the probes
//! already on disk; then rounds: the search says which probes come next, the matrix scheduler runs
//! them through the cell pipeline (retries, hosts, Ctrl-C), and after every probe the exports,
//! limit.json and the history are written. The report at the end. The CLI turns its flags into the
//! options here and prints what comes back.

use super::evidence::{self, Context};
use super::search::{Search, Step};
use super::spec::{Grid, Question, Spec};
use crate::error::InputError;
use crate::matrix::run::{self as matrix, MatrixOptions, PipelineRunner, Ui};
use crate::matrix::scheduler::{self, Events, Next, Policy, Scheduler, Stopped};
use crate::plan::definition::RunDefinition;
use crate::plan::estimate;
use crate::plan::key::CellKey;
use crate::results::export::limit::{LimitDoc, LimitOutcome};
use crate::results::export::{self, Exporter, json::RunMetadata};
use crate::results::model::{CellResult, FailureKind};
use crate::rundir::{self, attempts};
use crate::setup::{self, Options};
use crate::size::ByteSize;
use anyhow::{Context as _, Result};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The search's own options (the cells' are `setup::Options`).
#[derive(Debug, Clone)]
pub struct LimitOptions {
    pub spec: Spec,
    /// Probes of the limit's point that must all pass (`--confirm`).
    pub confirm: u32,
    pub fresh: bool,
    pub jobs: Option<usize>,
    pub retries: u32,
}

/// The options, checked; errors name the flag.
pub fn options(spec: Spec, confirm: u32, fresh: bool, jobs: Option<usize>, retries: u32) -> Result<LimitOptions, InputError> {
    if confirm == 0 || confirm > super::spec::MAX_CONFIRM {
        return Err(InputError(super::spec::SpecError::Confirm(confirm).to_string()));
    }
    if jobs == Some(0) {
        return Err(InputError("--jobs 0: use 1 or more (or leave it out to fit the memory budget)".into()));
    }
    Ok(LimitOptions { spec, confirm, fresh, jobs, retries })
}

/// `--confirm`'s default: one probe more at the limit's point than a bare bisection makes. A
/// single lucky pass is caught for the price of one cell; a second confirmation would cost a cell
/// for a case not seen in the searches measured (docs/limit.md, "Why 2").
pub const DEFAULT_CONFIRM: u32 = 2;

/// Everything that defines a search's probes, hashed into its run key: what is searched, over
/// which points, and what every cell is (the same definition a matrix hashes). `--confirm` is
/// left out on purpose: the same command with more confirmations continues the search.
#[derive(serde::Serialize)]
struct Definition<'a> {
    search: &'a Spec,
    cells: &'a RunDefinition,
}

fn run_key(spec: &Spec, cells: &RunDefinition) -> String {
    use sha2::{Digest, Sha256};
    let canon = serde_json::to_string(&Definition { search: spec, cells }).expect("serialize the limit definition");
    format!("limit-{}", &hex::encode(Sha256::digest(canon.as_bytes()))[..12])
}

/// How a search ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The search decided (found, passes everywhere, passes nowhere).
    Done,
    /// Ctrl-C: finished probes are kept; the same command resumes.
    Interrupted,
    /// The cells could not run (hosts lost, no room): finished probes are kept.
    Stopped(Stopped),
}

pub struct Finished {
    pub run_dir: PathBuf,
    pub doc: LimitDoc,
    pub ended: Ended,
    /// The history database the probes went into.
    pub db: PathBuf,
    /// report.html and report.md, or why they were not written (never fatal).
    pub report: Result<(), String>,
    /// Probes settled before this command (a resume) and by it.
    pub probes_before: usize,
    pub probes_now: usize,
    /// Seconds this command took.
    pub wall_seconds: f64,
    pub hosts: usize,
}

impl Finished {
    /// 0: the search found the limit or the target passed everywhere; 1: it passed nowhere; 69:
    /// it could not measure (hosts lost; or nowhere, with only the harness failing); 130: Ctrl-C.
    pub fn exit_code(&self) -> i32 {
        match (&self.ended, self.doc.outcome) {
            (Ended::Interrupted, _) => crate::exit::INTERRUPTED,
            (Ended::Stopped(_), _) => crate::exit::INFRASTRUCTURE,
            (Ended::Done, LimitOutcome::Found | LimitOutcome::PassesEverywhere) => crate::exit::SUCCESS,
            (Ended::Done, LimitOutcome::PassesNowhere) => {
                let harness_only = self.doc.failing.as_ref().is_some_and(|f| !f.failures.is_empty() && f.failures.iter().all(|x| x.exit_reason.is_infrastructure()));
                if harness_only { crate::exit::INFRASTRUCTURE } else { crate::exit::CELL_FAILED }
            }
            (Ended::Done, LimitOutcome::Searching) => crate::exit::INFRASTRUCTURE,
        }
    }
}

/// The cells a search's hardest and easiest probes run, for the checks every probe must pass.
fn ends(grid: &Grid) -> [(u64, ByteSize, u32); 2] {
    let k = |i| {
        let k: CellKey = grid.cell(i, 1);
        (k.ram_mib, k.size, k.concurrency)
    };
    [k(0), k(grid.len() - 1)]
}

/// The probes with a final result: each cell of the grid whose attempts are over (a pass, a
/// target's failure, or infrastructure failures with the retries used up), and its last attempt.
/// A cell still owed a retry is not a probe yet.
pub fn settled<'a>(grid: &Grid, results: &'a [CellResult], retries: u32) -> Vec<(usize, &'a CellResult)> {
    let mut by: HashMap<CellKey, Vec<CellResult>> = HashMap::new();
    for r in results.iter().filter(|r| !r.interrupted) {
        by.entry(r.key()).or_default().push(r.clone());
    }
    export::finals(results)
        .into_iter()
        .filter_map(|r| {
            let point = grid.point_of(&r.key())?;
            (scheduler::next(&by[&r.key()], retries) == Next::Done).then_some((point, r))
        })
        .collect()
}

/// What a finished search's files say, from its attempts: the exports a matrix writes (probes
/// are cells), summary.txt headed by the answer, and limit.json.
struct Exports {
    run_dir: PathBuf,
    grid: Grid,
    spec: Spec,
    confirm: u32,
    retries: u32,
    run_key: String,
    target: String,
    target_mode: String,
}

impl Exports {
    fn doc(&self, results: &[CellResult]) -> LimitDoc {
        let ctx = Context { run_key: &self.run_key, target: &self.target, target_mode: &self.target_mode, spec: &self.spec, confirm: self.confirm, result_path: attempts::result_rel };
        evidence::document(&ctx, &self.grid, results, &settled(&self.grid, results, self.retries))
    }

    fn write(&self, meta: &RunMetadata, results: &[CellResult], total_seconds: Option<f64>) -> Result<LimitDoc> {
        let doc = self.doc(results);
        let finals = export::finals(results);
        let mut rams: Vec<u64> = finals.iter().map(|r| r.ram_mb).collect();
        let mut sizes: Vec<(u64, String)> = finals.iter().map(|r| (r.file_size_bytes, r.file_size.clone())).collect();
        rams.sort_unstable();
        rams.dedup();
        sizes.sort();
        sizes.dedup();
        let view = export::RunView {
            meta,
            results,
            summary: export::json::summarize(finals.len(), &finals, results.len(), total_seconds),
            finals,
            adaptive: None,
            stops: BTreeMap::new(),
            rams,
            sizes,
            result_path: attempts::result_rel,
        };
        let title = format!("perfvm limit {} — {}, {}, image {}; {} probe(s)", meta.run_key, doc.question, meta.accel, meta.image_id, doc.probes.len());
        let mut summary = evidence::summary_lines(&doc).into_bytes();
        summary.push(b'\n');
        summary.extend(export::summary::export(&title, &view.finals, &view.rams, &view.sizes));
        let files: [(&str, Vec<u8>); 4] = [
            (export::csv::Csv.file_name(), export::csv::Csv.export(&view)),
            (export::json::Json.file_name(), export::json::Json.export(&view)),
            ("summary.txt", summary),
            (rundir::LIMIT_DOC, export::limit::render(&doc)),
        ];
        for (name, data) in files {
            crate::paths::write_atomic(&self.run_dir.join(name), &data).with_context(|| {
                format!("cannot write {name} in {} (finished probes are kept: fix the cause and run the same command to resume)", self.run_dir.display())
            })?;
        }
        Ok(doc)
    }
}

/// The scheduler's events: files and history after every probe, and a line saying what it found.
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

    fn finished(&mut self, results: &[CellResult], _unsettled: &HashSet<CellKey>) -> Result<()> {
        let doc = self.exports.write(&self.meta, results, None)?;
        self.recorder.record_new(results);
        if let Some(r) = results.last() {
            self.ui.line(&format!("perfvm: probe {} r{}: {}; {}", self.exports.spec.question.label(probe_value(&self.exports.grid, r)), r.repeat, crate::report::outcome(r), doc.message));
        }
        Ok(())
    }

    /// No bar: a search does not know how many probes it will take; each probe's line says more.
    fn progress(&mut self, _: usize, _: usize, _: usize, _: usize, _: f64) {}
}

fn probe_value(grid: &Grid, r: &CellResult) -> u64 {
    match grid.question {
        Question::Ram { .. } => r.ram_mb,
        Question::FileSize { .. } => r.file_size_bytes,
    }
}

/// `320 MiB r1, 448 MiB r1`.
fn describe(grid: &Grid, at: &[(usize, u32)]) -> String {
    at.iter().map(|(p, r)| format!("{} r{r}", grid.label(*p))).collect::<Vec<_>>().join(", ")
}

/// Run a search to its end (or until stopped), resuming the same definition's run directory
/// unless `fresh`.
pub async fn run(o: Options, l: LimitOptions, cancel: CancellationToken, ui: Arc<dyn Ui>) -> Result<Finished> {
    o.one_target("limit")?;
    let t0 = std::time::Instant::now();
    let grid = l.spec.grid();
    let say = |s: String| ui.line(&format!("perfvm: {s}"));
    let mut ready = tokio::task::block_in_place(|| setup::preflight(&o, &ends(&grid), &say))?;
    let accel = ready.accel;
    let overhead = setup::check::qemu_overhead_mib(accel);
    let max_cost = ends(&grid).iter().map(|e| e.0 + overhead).max().unwrap_or(0);
    let (specs, envs): (Vec<_>, Vec<_>) = ready.one_target().into_iter().unzip();
    let mut slots = matrix::host_slots(&specs, &envs.iter().collect::<Vec<_>>(), l.jobs, max_cost, o.cell.cpus);
    if slots.iter().all(|s| max_cost > s.budget.total_mib) {
        return Err(InputError(format!(
            "the memory budget ({} MiB at most on a host) is too small for the largest probe ({max_cost} MiB with qemu overhead): lower the top of the range, or free memory",
            slots.iter().map(|s| s.budget.total_mib).max().unwrap_or(0)
        ))
        .into());
    }

    // The definition: the searched range's ends stand for the cells (as a matrix lists them).
    let (ram, file_sizes) = match l.spec.question {
        Question::Ram { file_size } => (vec![l.spec.range.low, l.spec.range.high], vec![file_size]),
        Question::FileSize { ram_mib } => (vec![ram_mib], vec![ByteSize(l.spec.range.low), ByteSize(l.spec.range.high)]),
    };
    let m = MatrixOptions {
        ram,
        file_sizes,
        concurrency: vec![l.spec.concurrency],
        repeat: 1,
        adaptive: None,
        only: Vec::new(),
        skip: Vec::new(),
        fresh: l.fresh,
        jobs: l.jobs,
        retries: l.retries,
        stop_on_failure: false,
        junit: None,
        plan: None,
    };
    let def = matrix::definition(&o, &m, std::slice::from_ref(&envs[0]), accel.to_string());
    let key = run_key(&l.spec, &def);
    let run_dir = rundir::matrix_dir(&o.results_dir, &key, l.fresh);
    std::fs::create_dir_all(&run_dir).with_context(|| format!("cannot create {}", run_dir.display()))?;
    let _lock = rundir::lock::acquire(&run_dir).map_err(|e| InputError(e.to_string()))?;

    // What is there already: the grid's cells on disk, their finished attempts kept and the
    // interrupted or half-written ones removed.
    let shapes: HashMap<String, usize> = grid.shapes().into_iter().enumerate().map(|(i, s)| (s, i)).collect();
    let (mut discarded, mut results) = (0, Vec::new());
    for id in attempts::cell_ids(&run_dir) {
        let Some((shape, repeat)) = id.rsplit_once("-r") else { continue };
        let (Some(&point), Ok(repeat)) = (shapes.get(shape), repeat.parse::<u32>()) else { continue };
        let k = grid.cell(point, repeat);
        if k.id() == id {
            discarded += attempts::discard_unfinished(&run_dir, &k);
            results.extend(attempts::finished_attempts(&run_dir, &k));
        }
    }

    let jobs: usize = slots.iter().map(|s| s.jobs).sum();
    let meta = matrix::metadata(&run_dir, &envs[0], (&specs, &slots, &ready.skipped), &def, &key, o.label.as_deref());
    let target = &envs[0].target;
    let exports = Exports {
        run_dir: run_dir.clone(),
        grid: grid.clone(),
        spec: l.spec.clone(),
        confirm: l.confirm,
        retries: l.retries,
        run_key: key.clone(),
        target: target.name.clone(),
        target_mode: target.mode.clone(),
    };
    let search = Search { points: grid.len(), confirm: l.confirm };
    let before = settled(&grid, &results, l.retries).len();
    let first_doc = exports.doc(&results);
    ui.line(&format!(
        "perfvm: limit {} — {}: {} every {} ({} points), --confirm {}; {before} probe(s) already finished{}; {} job(s), {accel}",
        run_dir.display(),
        first_doc.question,
        first_doc.range,
        first_doc.resolution,
        grid.len(),
        l.confirm,
        if discarded > 0 { format!(" ({discarded} unfinished attempt(s) discarded)") } else { String::new() },
        jobs
    ));
    let probe = grid.cell(grid.len() / 2, 1);
    let e = matrix::estimate(&o, &[probe], accel, &[target.name.as_str()], 1);
    ui.line(&format!(
        "perfvm: a clean boundary takes {} probe(s) from the start, ~{} each (cost model{}); a noisy one takes more",
        search.clean_probes(),
        crate::size::fmt_secs(e.wall_seconds),
        if e.past > 0 { format!(", corrected by {} past cell(s)", e.past) } else { String::new() }
    ));

    let mut recorder = crate::history::Recorder::open(o.db_path(), crate::history::matrix_run(&run_dir, &meta, o.label.as_deref()));
    recorder.run.kind = "limit".into();
    let mut rec = Recording { exports, meta, recorder, ui: ui.clone() };
    rec.exports.write(&rec.meta, &results, None)?;
    // Probes finished before a resume too: recording is idempotent.
    rec.recorder.record_new(&results);

    let domain_tag = format!("{}-{}", &key.trim_start_matches("limit-")[..4], std::process::id());
    let runner = Arc::new(PipelineRunner { envs: envs.into_iter().map(|e| vec![Arc::new(e)]).collect(), tags: vec![crate::plan::key::TargetTag::NONE], opts: Arc::new(o.clone()), accel, run_dir: run_dir.clone(), run_key: key.clone(), domain_tag, ui: ui.clone() });
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let policy = Policy { retries: l.retries, stop_on_failure: false, adaptive: None, overhead_mib: overhead };
    let model = estimate::cost(estimate::MEASURED_TCG, o.cell.way());
    let ended = loop {
        if cancel.is_cancelled() {
            break Ended::Interrupted;
        }
        let jobs = slots.iter().filter(|s| !s.bad).map(|s| s.jobs).sum::<usize>().max(1);
        let at = match search.next(&evidence::probes(&settled(&grid, &results, l.retries)), jobs) {
            Step::Done { .. } => break Ended::Done,
            Step::Probe(at) => at,
        };
        ui.line(&format!("perfvm: probing {}", describe(&grid, &at)));
        let selected: Vec<CellKey> = at.iter().map(|(p, r)| grid.cell(*p, *r)).collect();
        let sched = Scheduler { policy, hosts: names.clone(), slots: slots.clone(), selected, model: model.clone() };
        let n = results.len();
        let out = sched.run(results, runner.clone(), cancel.clone(), &mut rec).await?;
        results = out.results;
        // A host that lost a probe gets no more (the scheduler knew it for its round only).
        for r in results[n..].iter().filter(|r| r.failure == Some(FailureKind::HostLost)) {
            if let Some(i) = names.iter().position(|h| Some(h) == r.host.as_ref()) {
                slots[i].bad = true;
            }
        }
        if out.interrupted {
            break Ended::Interrupted;
        }
        if let Some(s) = out.stopped {
            break Ended::Stopped(s);
        }
        if results.len() == n {
            anyhow::bail!("the probes {} ended without a result; finished probes are on disk in {}", describe(&grid, &at), run_dir.display());
        }
    };
    ui.finish();
    if ended == Ended::Done {
        rec.meta.finished = Some(chrono::Utc::now());
    }
    let wall_seconds = t0.elapsed().as_secs_f64();
    let doc = rec.exports.write(&rec.meta, &results, Some(wall_seconds))?;
    rec.recorder.run.finished = rec.meta.finished.map(|f| f.to_rfc3339());
    rec.recorder.record(&[]);
    let db = rec.recorder.path().to_path_buf();
    // The report is a reading aid: failing to write it never fails the search.
    let report = tokio::task::block_in_place(|| crate::report::write(&run_dir, Some(&db))).map(|_| ()).map_err(|e| format!("{e:#}"));
    let probes_now = settled(&grid, &results, l.retries).len() - before;
    Ok(Finished { run_dir, doc, ended, db, report, probes_before: before, probes_now, wall_seconds, hosts: specs.len() })
}

/// `--list`: what a search would do, checked as a run would check it, without starting one.
pub struct Plan {
    /// The question, in words.
    pub question: String,
    pub grid: Grid,
    /// The first probes, with `jobs` at once.
    pub first: Vec<(usize, u32)>,
    /// Probes for a clean boundary, with one job.
    pub clean_probes: u32,
    /// A probe's seconds at the hardest and the easiest point (the cost model, corrected by past
    /// cells in the results directory).
    pub seconds: (f64, f64),
    pub jobs: usize,
}

pub fn plan(o: &Options, l: &LimitOptions) -> Result<Plan> {
    o.one_target("limit")?;
    let grid = l.spec.grid();
    let valid = setup::validate(o, &ends(&grid))?;
    let jobs = l.jobs.unwrap_or(1);
    let search = Search { points: grid.len(), confirm: l.confirm };
    let first = match search.next(&[], jobs) {
        Step::Probe(at) => at,
        Step::Done { .. } => Vec::new(),
    };
    let cells = [grid.cell(0, 1), grid.cell(grid.len() - 1, 1)];
    let e = matrix::estimate(o, &cells, valid.accel, &[valid.target_name()], 1);
    let reference = valid.target_name() == crate::profile::REFERENCE_NAME;
    let mode = if reference { o.target_mode.unwrap_or(crate::profile::TargetMode::Stream).as_str() } else { "profile" };
    let ctx = Context { run_key: "", target: valid.target_name(), target_mode: mode, spec: &l.spec, confirm: l.confirm, result_path: attempts::result_rel };
    Ok(Plan { question: ctx.question(), grid, first, clean_probes: search.clean_probes(), seconds: (e.cells[0].1, e.cells[1].1), jobs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::spec::Range;
    use crate::results::model::ExitReason;

    fn result(ram: u64, repeat: u32, attempt: u32, reason: ExitReason, failure: Option<FailureKind>) -> CellResult {
        let mut r: CellResult = serde_json::from_str(include_str!("../../tests/data/result-sample.json")).unwrap();
        (r.ram_mb, r.file_size_bytes, r.file_size, r.repeat, r.attempt) = (ram, 128 << 20, "128M".into(), repeat, attempt);
        (r.success, r.exit_reason, r.failure) = (reason == ExitReason::Success, reason, failure);
        r
    }

    fn grid() -> Grid {
        Spec::new(Question::Ram { file_size: ByteSize::parse("128M").unwrap() }, Some(Range { low: 192, high: 512 }), Some("64"), 1).unwrap().grid()
    }

    #[test]
    fn a_probe_owed_a_retry_or_of_another_search_is_not_settled() {
        use ExitReason::*;
        let rs = vec![
            result(256, 1, 1, Success, None),
            result(320, 1, 1, BootFailed, Some(FailureKind::Infrastructure)),
            result(384, 1, 1, BootFailed, Some(FailureKind::Infrastructure)),
            result(384, 1, 2, OomKilled, Some(FailureKind::Target)),
            result(448, 1, 1, HarnessError, Some(FailureKind::HostLost)),
            result(200, 1, 1, Success, None),
        ];
        let g = grid();
        let s: Vec<(u64, u32, ExitReason)> = settled(&g, &rs, 1).into_iter().map(|(p, r)| (g.points[p], r.attempt, r.exit_reason)).collect();
        // 320 is owed its retry, 448 moved off a lost host, 200 is not a point of this grid.
        assert_eq!(s, [(256, 1, Success), (384, 2, OomKilled)]);
        // With the retries used up, an infrastructure failure is where the point stands.
        let s = settled(&g, &rs, 0);
        assert!(s.iter().any(|(p, r)| g.points[*p] == 320 && r.exit_reason == BootFailed));
    }

    #[test]
    fn run_keys_cover_the_search_and_the_cells_but_not_confirm() {
        let def: RunDefinition = serde_json::from_value(serde_json::json!({
            "ram_mib": [192, 512], "file_sizes": ["128M"], "repeat": 1, "target": "perfvm-target", "target_mode": "memory",
            "image_id": "i", "accel": "tcg", "cpus": 2, "timeout_s": 600, "seed": 1, "sample_interval_ms": 100
        }))
        .unwrap();
        let spec = Spec::new(Question::Ram { file_size: ByteSize::parse("128M").unwrap() }, Some(Range { low: 192, high: 512 }), Some("64"), 1).unwrap();
        let k = run_key(&spec, &def);
        assert!(k.starts_with("limit-") && k.len() == "limit-".len() + 12, "{k}");
        assert_eq!(k, run_key(&spec.clone(), &def.clone()), "stable");
        let finer = Spec::new(spec.question, Some(spec.range), Some("32"), 1).unwrap();
        let mut other = def.clone();
        other.timeout_s = 300;
        let size = Spec::new(Question::FileSize { ram_mib: 256 }, Some(Range { low: 16 << 20, high: 1 << 30 }), None, 1).unwrap();
        let keys: HashSet<String> = [k.clone(), run_key(&finer, &def), run_key(&spec, &other), run_key(&size, &def)].into_iter().collect();
        assert_eq!(keys.len(), 4, "resolution, cells and the question each make another run");
    }

    #[test]
    fn exit_codes_say_how_the_search_ended() {
        let g = grid();
        let spec = Spec::new(g.question, Some(Range { low: 192, high: 512 }), Some("64"), 1).unwrap();
        let ctx = Context { run_key: "limit-x", target: "t", target_mode: "memory", spec: &spec, confirm: 1, result_path: attempts::result_rel };
        let finished = |rs: &[CellResult], ended: Ended| {
            let doc = evidence::document(&ctx, &g, rs, &settled(&g, rs, 0));
            Finished { run_dir: PathBuf::new(), doc, ended, db: PathBuf::new(), report: Ok(()), probes_before: 0, probes_now: 0, wall_seconds: 0.0, hosts: 1 }
        };
        use ExitReason::*;
        let found = [result(320, 1, 1, OomKilled, Some(FailureKind::Target)), result(384, 1, 1, Success, None)];
        assert_eq!(finished(&found, Ended::Done).exit_code(), crate::exit::SUCCESS);
        assert_eq!(finished(&found[..1], Ended::Interrupted).exit_code(), crate::exit::INTERRUPTED);
        assert_eq!(finished(&found[..1], Ended::Stopped(Stopped::HostsLost { during: "x".into() })).exit_code(), crate::exit::INFRASTRUCTURE);
        let nowhere = [result(512, 1, 1, OomKilled, Some(FailureKind::Target))];
        assert_eq!(finished(&nowhere, Ended::Done).exit_code(), crate::exit::CELL_FAILED);
        let harness = [result(512, 1, 1, BootFailed, Some(FailureKind::Infrastructure))];
        assert_eq!(finished(&harness, Ended::Done).exit_code(), crate::exit::INFRASTRUCTURE, "a guest that never booted says nothing about the target");
        let everywhere = [result(192, 1, 1, Success, None)];
        assert_eq!(finished(&everywhere, Ended::Done).exit_code(), crate::exit::SUCCESS);
    }
}
