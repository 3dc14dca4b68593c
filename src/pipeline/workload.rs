//! Upload while sampling: start the in-guest probe, take a baseline, then the sampler thread runs
//! for exactly the duration of the streamed upload.

use super::{CellError, blocking};
use crate::results::model::ExitReason;
use crate::sampler::{SampleSummary, Sampler, Sources};
use crate::upload::client::{UploadOutcome, put_generated};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

pub struct UploadReport {
    pub outcome: UploadOutcome,
    pub initial_memory_bytes: Option<u64>,
    pub samples: SampleSummary,
    pub samples_error: Option<String>,
    /// CPU seconds the guest agent used while the sampler ran (its cost in the guest).
    pub agent_cpu_seconds: Option<f64>,
}

pub struct UploadPlan {
    pub url: String,
    pub seed: u64,
    pub size: u64,
    pub interval: Duration,
    /// Sample memory only (to measure what the other sources cost).
    pub memory_only: bool,
    /// The cell's deadline for the upload.
    pub deadline: std::time::Instant,
    pub samples_csv: PathBuf,
}

pub async fn upload_while_sampling(mut sources: Sources, plan: UploadPlan, sent: Arc<AtomicU64>) -> Result<UploadReport, CellError> {
    let (interval, memory_only) = (plan.interval, plan.memory_only);
    let probe_max = plan.deadline.saturating_duration_since(std::time::Instant::now()) + Duration::from_secs(60);
    let (sources, baseline, probe_error, agent_cpu0) = blocking(move || {
        let probe_error = sources.start_probe(interval, memory_only, probe_max).err();
        let baseline = sources.sample(0.0, 0);
        // After the probe's start-up, so only steady-state sampling is counted as its cost.
        let agent_cpu0 = sources.agent.own_cpu_seconds();
        Ok((sources, baseline, probe_error, agent_cpu0))
    })
    .await?;
    // The upload gets what is left of the cell's time after the probe started.
    let limit = plan.deadline.saturating_duration_since(std::time::Instant::now()).max(Duration::from_secs(1));
    let agent = sources.agent.clone();
    let sampler = Sampler::start(sources, plan.interval, sent.clone(), plan.samples_csv.clone(), probe_error)
        .map_err(|e| CellError::new(ExitReason::HarnessError, format!("cannot write {}: {e}", plan.samples_csv.display())))?;
    let outcome = put_generated(&plan.url, plan.seed, plan.size, sent, limit).await;
    let stopped = tokio::task::spawn_blocking(move || sampler.stop())
        .await
        .map_err(|e| CellError::new(ExitReason::HarnessError, format!("sampler: {e}")))?;
    let (samples, samples_error) = match stopped {
        Ok(s) => (s, None),
        Err(e) => (SampleSummary::default(), Some(e)),
    };
    let agent_cpu1 = blocking(move || Ok(agent.own_cpu_seconds())).await?;
    let agent_cpu_seconds = match (agent_cpu0, agent_cpu1) {
        (Some(a), Some(b)) => Some(((b - a) * 100.0).round() / 100.0),
        _ => None,
    };
    Ok(UploadReport { outcome, initial_memory_bytes: baseline.cgroup_memory_current_bytes, samples, samples_error, agent_cpu_seconds })
}
