//! Upload while sampling: one baseline sample, then the sampler thread runs for exactly the
//! duration of the streamed upload.

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
}

pub struct UploadPlan {
    pub url: String,
    pub seed: u64,
    pub size: u64,
    pub interval: Duration,
    pub limit: Duration,
    pub samples_csv: PathBuf,
}

pub async fn upload_while_sampling(sources: Sources, plan: UploadPlan, sent: Arc<AtomicU64>) -> Result<UploadReport, CellError> {
    let s = sources.clone();
    let baseline = blocking(move || Ok(s.sample(0.0, 0))).await?;
    let sampler = Sampler::start(sources, plan.interval, sent.clone(), plan.samples_csv.clone())
        .map_err(|e| CellError::new(ExitReason::HarnessError, format!("cannot write {}: {e}", plan.samples_csv.display())))?;
    let outcome = put_generated(&plan.url, plan.seed, plan.size, sent, plan.limit).await;
    let stopped = tokio::task::spawn_blocking(move || sampler.stop())
        .await
        .map_err(|e| CellError::new(ExitReason::HarnessError, format!("sampler: {e}")))?;
    let (samples, samples_error) = match stopped {
        Ok(s) => (s, None),
        Err(e) => (SampleSummary::default(), Some(e)),
    };
    Ok(UploadReport { outcome, initial_memory_bytes: baseline.cgroup_memory_current_bytes, samples, samples_error })
}
