//! Upload while sampling: start the in-guest probe, take a baseline, then the sampler thread runs
//! while the uploads stream (one, or `--concurrency N` at once) and, with `--download`, while
//! the first stored file is fetched back.

use super::cell::{CellConfig, CellEnv, CellError, Reporter, blocking};
use crate::results::model::ExitReason;
use crate::sampler::{PhaseSummaries, Progress, Sampler, Sources};
use crate::upload::client::{self, DownloadOutcome, Transfer, UploadOutcome};
use crate::upload::payload::Payload;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct UploadReport {
    /// One per concurrent upload, in the order of `UploadPlan::requests`.
    pub outcomes: Vec<UploadOutcome>,
    /// From the start of the first upload to the end of the last.
    pub wall: Duration,
    /// memory.current and the working set just before the upload.
    pub initial_memory_bytes: Option<u64>,
    pub initial_working_set_bytes: Option<u64>,
    /// The kernel's memory high-water mark at the end of the uploads, before any download.
    pub memory_peak_after_upload: Option<u64>,
    pub download: Option<DownloadOutcome>,
    pub samples: PhaseSummaries,
    pub samples_error: Option<String>,
    /// CPU seconds the guest agent used while the sampler ran (its cost in the guest).
    pub agent_cpu_seconds: Option<f64>,
    /// During the transfers, % of the host's CPU busy with other work, and stolen (this
    /// machine only: where qemu's pid is known).
    pub host_load: Option<(f64, f64)>,
}

pub struct UploadPlan {
    /// One request per concurrent upload (distinct file names).
    pub requests: Vec<client::Request>,
    pub payload: Payload,
    pub transfer: Transfer,
    /// Fetch this back after the uploads (`--download`).
    pub download_url: Option<String>,
    /// Headers of the download (the target's auth).
    pub download_headers: Vec<(String, String)>,
    /// The cell's client (cookies of a login) for the download.
    pub client: reqwest::Client,
    pub interval: Duration,
    /// Sample memory only (to measure what the other sources cost).
    pub memory_only: bool,
    /// The cell's deadline for the transfers.
    pub deadline: Instant,
    pub samples_csv: PathBuf,
}

impl UploadPlan {
    /// The uploads of a cell (one request per name, with its session's values), and the
    /// download when asked for.
    pub fn new(env: &CellEnv, cfg: &CellConfig, base: &str, session: &crate::upload::session::Session, secret: &crate::profile::Secret, deadline: Instant, samples_csv: PathBuf) -> UploadPlan {
        let t = &env.target;
        let names = cfg.upload_names();
        UploadPlan {
            requests: names.iter().zip(&session.vars).map(|(n, v)| request(t, base, n, v, secret, &session.client)).collect(),
            payload: cfg.payload(),
            transfer: cfg.transfer,
            download_url: if cfg.download { t.download_path_with(&session.vars[0]).map(|p| format!("{base}{p}")) } else { None },
            download_headers: t.auth_headers(secret),
            client: session.client.clone(),
            interval: cfg.sample_interval,
            memory_only: cfg.sample_memory_only,
            deadline,
            samples_csv,
        }
    }
}

/// The request of one upload named `name`; `vars` has its `{name}` and captured values.
fn request(
    t: &crate::profile::TargetSpec,
    base: &str,
    name: &str,
    vars: &std::collections::BTreeMap<String, String>,
    secret: &crate::profile::Secret,
    client: &reqwest::Client,
) -> client::Request {
    client::Request {
        method: t.upload.method,
        url: format!("{base}{}", t.upload_path_with(vars)),
        headers: t.upload_headers(vars, secret),
        multipart: match &t.upload.shape {
            crate::profile::Shape::Raw => None,
            crate::profile::Shape::Multipart { field } => Some((field.clone(), name.to_string())),
        },
        success: t.upload.success.clone(),
        client: Some(client.clone()),
    }
}

/// The upload phase: the uploads (and the download) while sampling, shown as progress.
pub async fn run(sources: Sources, plan: UploadPlan, cfg: &CellConfig, rep: &dyn Reporter) -> Result<UploadReport, CellError> {
    let progress = Progress::default();
    rep.upload(&cfg.cell, cfg.file_size.bytes() * plan.requests.len() as u64, progress.uploaded.clone());
    let _shown = UploadShown { rep, cell: &cfg.cell };
    upload_while_sampling(sources, plan, progress).await
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

pub async fn upload_while_sampling(mut sources: Sources, plan: UploadPlan, progress: Progress) -> Result<UploadReport, CellError> {
    let (interval, memory_only) = (plan.interval, plan.memory_only);
    let probe_max = plan.deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(60);
    let (sources, baseline, probe_error, agent_cpu0) = blocking(move || {
        let probe_error = sources.start_probe(interval, memory_only, probe_max).err();
        // The newest of the start-up ticks: the state just before the upload.
        let baseline = sources.samples(0.0, 0, true).pop().unwrap_or_default();
        // After the probe's start-up, so only steady-state sampling is counted as its cost.
        let agent_cpu0 = sources.agent.own_cpu_seconds();
        Ok((sources, baseline, probe_error, agent_cpu0))
    })
    .await?;
    // The transfers get what is left of the cell's time after the probe started.
    let limit = || plan.deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
    let agent = sources.agent.clone();
    let cgroup_dir = sources.cgroup_dir.clone();
    let qemu_pid = sources.qemu_pid;
    let sampler = Sampler::start(sources, plan.interval, progress.clone(), plan.samples_csv.clone(), probe_error)
        .map_err(|e| CellError::new(ExitReason::HarnessError, format!("cannot write {}: {e}", plan.samples_csv.display())))?;

    let started = Instant::now();
    let cpu0 = qemu_pid.and_then(crate::hostfacts::CpuSnapshot::take);
    let up_limit = limit();
    let outcomes = futures_util::future::join_all(
        plan.requests.iter().map(|r| client::send(r, &plan.payload, plan.transfer, progress.uploaded.clone(), up_limit)),
    )
    .await;
    let wall = started.elapsed();
    let cpu1 = qemu_pid.and_then(crate::hostfacts::CpuSnapshot::take);
    let host_load = cpu0.zip(cpu1).and_then(|(a, b)| crate::hostfacts::load_between(&a, &b, procfs::ticks_per_second() as f64));

    let mut memory_peak_after_upload = None;
    let mut download = None;
    let all_stored = outcomes.iter().all(UploadOutcome::accepted);
    if let Some(url) = plan.download_url.as_ref().filter(|_| all_stored) {
        // memory.peak only grows: read now, it is the uploads' peak; at the end, the cell's.
        let a = agent.clone();
        memory_peak_after_upload = blocking(move || Ok(crate::guest::memory::memory_peak(&a, &cgroup_dir))).await?;
        progress.start_download();
        download = Some(client::download(&plan.client, url, &plan.download_headers, progress.downloaded.clone(), limit()).await);
    }

    let stopped = tokio::task::spawn_blocking(move || sampler.stop())
        .await
        .map_err(|e| CellError::new(ExitReason::HarnessError, format!("sampler: {e}")))?;
    let (samples, samples_error) = match stopped {
        Ok(s) => (s, None),
        Err(e) => (PhaseSummaries::default(), Some(e)),
    };
    let agent_cpu1 = blocking(move || Ok(agent.own_cpu_seconds())).await?;
    let agent_cpu_seconds = match (agent_cpu0, agent_cpu1) {
        (Some(a), Some(b)) => Some(((b - a) * 100.0).round() / 100.0),
        _ => None,
    };
    Ok(UploadReport {
        outcomes,
        wall,
        initial_memory_bytes: baseline.cgroup_memory_current_bytes,
        initial_working_set_bytes: baseline.cgroup_memory_working_set_bytes,
        memory_peak_after_upload,
        download,
        samples,
        samples_error,
        agent_cpu_seconds,
        host_load,
    })
}
