//! One cell, top to bottom: prepare → boot → ready → upload while sampling → collect → teardown.
//! Each step lives in its own module; this file strings them together, keeps the clock, and makes
//! sure that whatever happens (error, timeout, Ctrl-C, panic) the domain is destroyed, its files
//! removed, and a complete `result.json` written.

pub mod boot;
pub mod collect;
pub mod prepare;
pub mod ready;
pub mod workload;

use crate::accel::Accel;
use crate::guest::agent::Agent;
use crate::hypervisor::guard::DomainGuard;
use crate::image::Image;
use crate::results::model::{self, CellResult, ExitReason, Observed, PhaseTimes, TargetInfo, mib, round3};
use crate::sampler::Sources;
use crate::size::ByteSize;
use crate::target::TargetSpec;
use prepare::WorkDir;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use virt::connect::Connect;

/// Everything that defines one cell.
#[derive(Debug, Clone)]
pub struct CellConfig {
    pub run_id: String,
    /// `<ram>-<size>`, e.g. `512-1G`.
    pub cell: String,
    pub domain_name: String,
    pub ram_mib: u64,
    pub file_size: ByteSize,
    pub cpus: u32,
    pub accel: Accel,
    pub timeout: Duration,
    pub seed: u64,
    pub sample_interval: Duration,
    /// Sample memory only (measures what the CPU/I/O/pressure sources cost).
    pub sample_memory_only: bool,
    pub keep_vm: bool,
    /// `--ssh-key`: root may log in with this key through a loopback forward (debugging).
    pub ssh_key: Option<crate::cloudinit::seed::SshKey>,
    pub repeat: u32,
    pub attempt: u32,
}

/// What cells share: the libvirt connection, the image, the target, the templates.
pub struct CellEnv {
    pub conn: Connect,
    pub cache: PathBuf,
    pub image: Image,
    pub target: TargetSpec,
    /// (user-data, meta-data) templates.
    pub templates: (String, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Prepare,
    Boot,
    Agent,
    CloudInit,
    Healthy,
    Upload,
    Collect,
    Teardown,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Prepare => "prepare",
            Phase::Boot => "boot",
            Phase::Agent => "agent",
            Phase::CloudInit => "cloud-init",
            Phase::Healthy => "healthy",
            Phase::Upload => "upload",
            Phase::Collect => "collect",
            Phase::Teardown => "teardown",
        }
    }
}

/// Progress of a cell, for the UI. Implementations must not block.
pub trait Reporter: Send + Sync {
    fn phase(&self, cell: &str, phase: Phase);
    fn upload(&self, cell: &str, total: u64, sent: Arc<AtomicU64>);
    fn upload_done(&self, cell: &str);
}

/// A step failed: how the cell ends, and why.
#[derive(Debug, Clone)]
pub struct CellError {
    pub reason: ExitReason,
    pub message: String,
}

impl CellError {
    pub fn new(reason: ExitReason, message: impl Into<String>) -> CellError {
        CellError { reason, message: message.into() }
    }
}

/// Run blocking work (libvirt, agent) off the async threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, CellError> + Send + 'static) -> Result<T, CellError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(CellError::new(ExitReason::HarnessError, format!("worker thread failed: {e}"))))
}

/// Resources a cell holds; dropping them tears the cell down (guards), so even a dropped future
/// leaves nothing behind.
#[derive(Default)]
struct Held {
    phase: Option<Phase>,
    domain: Option<DomainGuard>,
    work: Option<WorkDir>,
    agent: Option<Agent>,
}

/// Part of the error of a cell during which libvirtd went away.
pub const LIBVIRT_LOST: &str = "libvirt connection lost (libvirtd stopped?)";

/// The name of the file uploaded in a cell.
pub const UPLOAD_NAME: &str = "perfvm-upload.bin";

/// Time the in-guest sha256sum may take: generous, since TCG hashes slowly (~70 MB/s measured).
fn hash_budget(size: u64) -> Duration {
    Duration::from_secs(30) + Duration::from_secs_f64(size as f64 / (20.0 * 1024.0 * 1024.0))
}

/// Collection's own budget, outside `--timeout` (which bounds boot, readiness and upload): the
/// sha256 plus the bounded agent calls of `collect`.
fn collect_budget(size: u64) -> Duration {
    hash_budget(size) + collect::FIXED_BUDGET
}

/// A result for a cell that could not run its pipeline at all (a panic in a matrix task).
pub fn failed_result(env: &CellEnv, cfg: &CellConfig, message: String) -> CellResult {
    let mut r = base_result(env, cfg);
    r.error = Some(message);
    r
}

/// Marks an upload finished for the UI even when the cell future is dropped mid-upload.
struct UploadShown<'a> {
    rep: &'a dyn Reporter,
    cell: &'a str,
}

impl Drop for UploadShown<'_> {
    fn drop(&mut self) {
        self.rep.upload_done(self.cell);
    }
}

pub async fn run_cell(env: &CellEnv, cfg: &CellConfig, out_dir: &Path, cancel: &CancellationToken, rep: &dyn Reporter) -> CellResult {
    let t0 = Instant::now();
    let deadline = t0 + cfg.timeout;
    let mut res = base_result(env, cfg);
    let mut held = Held::default();

    let outcome = {
        let steps = steps(env, cfg, out_dir, &mut res, &mut held, deadline, rep);
        let hard_deadline = deadline + collect_budget(cfg.file_size.bytes());
        tokio::select! {
            // A cell that finished in the same instant as a signal counts as finished.
            biased;
            r = tokio::time::timeout_at(hard_deadline.into(), steps) => match r {
                Ok(r) => r,
                Err(_) => Err(CellError::new(ExitReason::Timeout, "")),
            },
            _ = cancel.cancelled() => Err(CellError::new(ExitReason::HarnessError, "interrupted by a signal")),
        }
    };
    if let Err(mut e) = outcome {
        let phase = held.phase.map(Phase::as_str).unwrap_or("start");
        if e.reason == ExitReason::Timeout && e.message.is_empty() {
            // Not ready in time is a failure to boot; a slow upload is the target's; a slow
            // collection is ours.
            e.reason = match held.phase {
                Some(Phase::Upload) => ExitReason::Timeout,
                Some(Phase::Collect) => ExitReason::HarnessError,
                _ => ExitReason::BootFailed,
            };
            e.message = match held.phase {
                Some(Phase::Collect) => "collection exceeded its time budget".to_string(),
                _ => format!("cell timeout of {} s reached during {phase}", cfg.timeout.as_secs()),
            };
        }
        // Every libvirt call fails once libvirtd is gone; say so instead of the symptom.
        if !cancel.is_cancelled() && !crate::hypervisor::conn::alive(&env.conn) {
            e.reason = ExitReason::HarnessError;
            e.message = format!("{LIBVIRT_LOST}; what failed: {}", e.message);
        }
        res.exit_reason = e.reason;
        res.success = false;
        res.interrupted = cancel.is_cancelled();
        res.error = Some(format!("{phase}: {}", e.message));
        // The journal explains most failures after the agent came up; fetch it if not yet saved.
        if res.journal.is_none() && !cancel.is_cancelled()
            && let Some(agent) = held.agent.clone() {
                let unit = env.target.unit.clone();
                let journal = tokio::time::timeout(
                    Duration::from_secs(20),
                    blocking(move || collect::journal(&agent, &unit).map_err(|e| CellError::new(ExitReason::HarnessError, e.to_string()))),
                )
                .await;
                if let Ok(Ok(text)) = journal {
                    save_text(out_dir, "journal.log", &text, &mut res.journal);
                }
            }
    }

    // Console log: the first thing to read when a cell fails.
    if let Some(work) = &held.work
        && let Ok(text) = std::fs::read(work.console_log()) {
            save_text(out_dir, "console.log", &String::from_utf8_lossy(&text), &mut res.console_log);
        }
    // Written before teardown too, so a crash during teardown loses nothing measured.
    let _ = write_result(out_dir, &res);

    rep.phase(&cfg.cell, Phase::Teardown);
    let t = Instant::now();
    if cfg.keep_vm && !cancel.is_cancelled() {
        if let Some(d) = held.domain.as_mut() {
            d.keep();
        }
        if let Some(w) = held.work.as_mut() {
            w.keep();
        }
    }
    // libvirt destroy and removing a multi-GiB overlay block: keep them off the async threads
    // so parallel cells' uploads are not stalled.
    let teardown_errors = tokio::task::block_in_place(|| {
        let mut errors = Vec::new();
        if let Some(mut d) = held.domain.take()
            && let Err(e) = d.destroy() {
                errors.push(e);
            }
        if let Some(mut w) = held.work.take()
            && let Err(e) = w.remove() {
                errors.push(format!("cannot remove {}: {e}", w.path.display()));
            }
        errors
    });
    res.phases.teardown = Some(round3(t.elapsed().as_secs_f64()));
    if !teardown_errors.is_empty() {
        let msg = teardown_errors.join("; ");
        res.error = Some(match res.error.take() {
            Some(e) => format!("{e}; teardown: {msg}"),
            None => format!("teardown: {msg}"),
        });
        if res.success {
            res.success = false;
            res.exit_reason = ExitReason::HarnessError;
        }
    }
    if let Err(e) = write_result(out_dir, &res) {
        eprintln!("perfvm: cannot write result to {}: {e}", out_dir.display());
    }
    res
}

/// CPU, I/O, pressure and the sampler's own cost, from the sampler's summary.
fn fill_cpu_io(res: &mut CellResult, report: &workload::UploadReport, upload_seconds: f64, memory_only: bool) {
    let s = &report.samples;
    let pct_over = |cpu: Option<f64>, secs: f64| cpu.filter(|_| secs > 0.0).map(|c| round3(c * 100.0 / secs));
    let pct = |cpu: Option<f64>| pct_over(cpu, upload_seconds);
    res.target_cpu_seconds = s.target_cpu_seconds.map(round3);
    res.target_cpu_avg_percent = pct(s.target_cpu_seconds);
    res.target_cpu_peak_percent = s.peak_target_cpu_percent;
    res.target_io_read_bytes = s.target_io_read_bytes;
    res.target_io_write_bytes = s.target_io_write_bytes;
    res.memory_pressure_peak_some_avg10 = s.peak_memory_pressure_some_avg10;
    res.memory_pressure_peak_full_avg10 = s.peak_memory_pressure_full_avg10;
    res.memory_stall_some_seconds = s.memory_stall_some_seconds.map(round3);
    res.host_qemu_cpu_seconds = s.host_qemu_cpu_seconds.map(round3);
    res.host_qemu_cpu_avg_percent = pct(s.host_qemu_cpu_seconds);
    res.sample_sources = Some(if memory_only || s.probe_error.is_some() { "memory" } else { "full" }.to_string());
    // A probe that did not run cost nothing.
    let probe = if s.probe_error.is_some() { Some(0.0) } else { s.probe_cpu_seconds };
    let parts = [s.sampler_thread_cpu_seconds, probe, report.agent_cpu_seconds];
    let total = parts.iter().flatten().sum::<f64>();
    res.sampler_cost = Some(crate::results::model::SamplerCost {
        host_thread_cpu_seconds: s.sampler_thread_cpu_seconds.map(round3),
        guest_probe_cpu_seconds: s.probe_cpu_seconds.map(round3),
        guest_agent_cpu_seconds: report.agent_cpu_seconds,
        percent_of_one_core: parts.iter().all(Option::is_some).then_some(total).and_then(|t| pct(Some(t))),
        probe_error: s.probe_error.clone(),
    });
}

fn write_result(out_dir: &Path, r: &CellResult) -> std::io::Result<()> {
    let mut data = serde_json::to_vec_pretty(r).map_err(std::io::Error::other)?;
    data.push(b'\n');
    crate::paths::write_atomic(&out_dir.join("result.json"), &data)
}

fn save_text(out_dir: &Path, name: &str, text: &str, field: &mut Option<String>) {
    match crate::paths::write_atomic(&out_dir.join(name), text.as_bytes()) {
        Ok(()) => *field = Some(name.to_string()),
        Err(e) => eprintln!("perfvm: cannot save {name}: {e}"),
    }
}

fn base_result(env: &CellEnv, cfg: &CellConfig) -> CellResult {
    CellResult {
        timestamp: chrono::Utc::now(),
        ram_mb: cfg.ram_mib,
        file_size: cfg.file_size.label(),
        file_size_mb: round3(cfg.file_size.mib()),
        duration_seconds: None,
        throughput_mbps: None,
        initial_memory_bytes: None,
        peak_memory_bytes: None,
        peak_memory_mb: None,
        http_status: None,
        exit_reason: ExitReason::HarnessError,
        success: false,
        schema_version: model::SCHEMA_VERSION,
        perfvm_version: env!("CARGO_PKG_VERSION").to_string(),
        run_id: cfg.run_id.clone(),
        cell: cfg.cell.clone(),
        repeat: cfg.repeat,
        attempt: cfg.attempt,
        interrupted: false,
        error: None,
        file_size_bytes: cfg.file_size.bytes(),
        accel: cfg.accel,
        cpus: cfg.cpus,
        image_id: env.image.id.clone(),
        target: TargetInfo { name: env.target.name.clone(), mode: env.target.mode.as_str().to_string() },
        seed: cfg.seed,
        sha256: None,
        guest_sha256: None,
        verified: None,
        oom_kills: None,
        restarts: None,
        bytes_sent: None,
        phases: PhaseTimes::default(),
        host_qemu_peak_rss_bytes: None,
        guest_min_mem_available_bytes: None,
        target_cpu_seconds: None,
        target_cpu_avg_percent: None,
        target_cpu_peak_percent: None,
        target_io_read_bytes: None,
        target_io_write_bytes: None,
        memory_pressure_peak_some_avg10: None,
        memory_pressure_peak_full_avg10: None,
        memory_stall_some_seconds: None,
        host_qemu_cpu_seconds: None,
        host_qemu_cpu_avg_percent: None,
        sample_sources: None,
        sampler_cost: None,
        sample_interval_ms: cfg.sample_interval.as_millis() as u64,
        sample_count: 0,
        sample_mean_interval_ms: None,
        samples_csv: None,
        console_log: None,
        journal: None,
        host_port: None,
        ssh_port: None,
        domain: Some(cfg.domain_name.clone()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn steps(
    env: &CellEnv,
    cfg: &CellConfig,
    out_dir: &Path,
    res: &mut CellResult,
    held: &mut Held,
    deadline: Instant,
    rep: &dyn Reporter,
) -> Result<(), CellError> {
    let secs = |t: Instant| Some(round3(t.elapsed().as_secs_f64()));
    let enter = |held: &mut Held, p: Phase| {
        held.phase = Some(p);
        rep.phase(&cfg.cell, p);
    };

    enter(held, Phase::Prepare);
    let t = Instant::now();
    let prepared = tokio::task::block_in_place(|| prepare::prepare(env, cfg))?;
    res.host_port = Some(prepared.host_port);
    res.ssh_port = prepared.ssh_port;
    let spec = boot::spec(env, cfg, &prepared);
    held.work = Some(prepared.work);
    res.phases.prepare = secs(t);

    enter(held, Phase::Boot);
    let t = Instant::now();
    held.domain = Some(tokio::task::block_in_place(|| boot::boot(env, &spec))?);
    res.phases.boot = secs(t);
    let dom = held.domain.as_ref().map(|d| d.domain().clone()).expect("domain just created");
    let agent = Agent::new(dom.clone());

    enter(held, Phase::Agent);
    let t = Instant::now();
    ready::wait_agent(&dom, &agent, cfg.accel, deadline).await?;
    held.agent = Some(agent.clone());
    res.phases.agent = secs(t);

    enter(held, Phase::CloudInit);
    let t = Instant::now();
    ready::wait_cloud_init(&dom, &agent, cfg.accel, deadline).await?;
    res.phases.cloud_init = secs(t);

    enter(held, Phase::Healthy);
    let t = Instant::now();
    let base = format!("http://127.0.0.1:{}", spec.host_port);
    ready::wait_healthy(&format!("{base}{}", env.target.health_path), deadline).await?;
    res.phases.healthy = secs(t);

    enter(held, Phase::Upload);
    let size = cfg.file_size.bytes();
    let sources = Sources::new(dom.clone(), agent.clone(), env.target.cgroup_dir(), boot::qemu_pid(&cfg.domain_name));
    let sent = Arc::new(AtomicU64::new(0));
    rep.upload(&cfg.cell, size, sent.clone());
    let shown = UploadShown { rep, cell: &cfg.cell };
    let plan = workload::UploadPlan {
        url: format!("{base}{}", env.target.upload_path(UPLOAD_NAME)),
        seed: cfg.seed,
        size,
        interval: cfg.sample_interval,
        memory_only: cfg.sample_memory_only,
        deadline,
        samples_csv: out_dir.join("samples.csv"),
    };
    let t = Instant::now();
    let report = workload::upload_while_sampling(sources, plan, sent).await;
    drop(shown);
    let report = report?;
    res.phases.upload = secs(t);
    let up = &report.outcome;
    res.samples_csv = Some("samples.csv".into());
    res.sample_count = report.samples.count;
    res.sample_mean_interval_ms = report.samples.mean_interval_seconds.map(|s| round3(s * 1000.0));
    res.initial_memory_bytes = report.initial_memory_bytes;
    res.host_qemu_peak_rss_bytes = report.samples.peak_host_qemu_rss_bytes;
    fill_cpu_io(res, &report, up.duration.as_secs_f64(), cfg.sample_memory_only);
    res.guest_min_mem_available_bytes = report.samples.min_guest_mem_available_bytes;
    res.http_status = up.status;
    res.bytes_sent = Some(up.bytes_sent);
    res.sha256 = up.sha256.clone();
    let completed = matches!(up.status, Some(200..=299));
    if completed {
        let d = up.duration.as_secs_f64();
        res.duration_seconds = Some(round3(d));
        res.throughput_mbps = Some(round3(mib(size) / d));
    }

    enter(held, Phase::Collect);
    let t = Instant::now();
    let (a, target) = (agent.clone(), env.target.clone());
    let stored = completed.then(|| env.target.stored_path(UPLOAD_NAME));
    let budget = hash_budget(size);
    let c = blocking(move || Ok(collect::collect(&a, &target, stored.as_deref(), budget))).await?;
    let d = dom.clone();
    let guest_alive = blocking(move || Ok(d.is_active().unwrap_or(false))).await?;
    res.phases.collect = secs(t);
    if let Some(j) = &c.journal {
        save_text(out_dir, "journal.log", j, &mut res.journal);
    }
    // The kernel's high-water mark, or a sampled value above it (memory.peak of a cgroup that
    // systemd recreated after a restart misses the earlier peak).
    let peak = c.memory_peak_bytes.max(report.samples.peak_cgroup_memory_bytes);
    res.peak_memory_bytes = peak;
    res.peak_memory_mb = peak.map(|p| round3(mib(p)));
    res.oom_kills = c.oom_kills();
    res.restarts = c.restarts;
    res.guest_sha256 = c.guest_sha256.clone();
    res.verified = if completed {
        match (&res.sha256, &c.guest_sha256, c.stored_file_exists) {
            (Some(want), Some(got), _) => Some(want == got),
            (_, _, Some(false)) => Some(false),
            _ => None,
        }
    } else {
        None
    };
    let observed = Observed {
        http_status: up.status,
        transport_error: up.error.is_some() && !up.timed_out,
        timed_out: up.timed_out,
        oom_kills: c.oom_kills(),
        restarts: c.restarts,
        verified: res.verified,
        guest_alive,
    };
    res.exit_reason = model::classify(&observed);
    res.success = res.exit_reason == ExitReason::Success;
    let mut notes: Vec<String> = Vec::new();
    if let Some(e) = &up.error {
        notes.push(format!("upload: {e}"));
    }
    if let Some(e) = &report.samples_error {
        notes.push(format!("sampler: {e}"));
    }
    if !guest_alive {
        notes.push("the guest stopped during the upload (qemu exited); see console.log".into());
    }
    if !res.success {
        if !completed && up.error.is_none() {
            notes.push(format!("HTTP {}: {}", up.status.unwrap_or(0), up.response_body.trim()));
        }
        if res.verified == Some(false) {
            notes.push(format!(
                "sha256 mismatch: sent {}, stored {}",
                res.sha256.as_deref().unwrap_or("?"),
                res.guest_sha256.as_deref().unwrap_or("(no file)")
            ));
        }
        notes.extend(c.notes.iter().cloned());
    }
    if !notes.is_empty() {
        res.error = Some(notes.join("; "));
    }
    Ok(())
}
