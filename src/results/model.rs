//! The result of one cell, as written to `result.json`. Field names up to `success` are the old
//! harness's, with the same meanings; the rest are perfvm's additions. Sizes in the `_mb` fields
//! are MiB (2^20 bytes), throughput is MiB/s.

use crate::accel::Accel;
use serde::{Deserialize, Serialize};

/// 2: `peak_memory_*` is the working set (memory.current − inactive_file), no longer
/// memory.peak, which counts the page cache of what the target wrote; `memory` splits it up;
/// `restarts` counts restarts during the upload, `restarts_before_upload` those before;
/// `failure` says what a failure means for a matrix (infrastructure, host lost, …).
pub const SCHEMA_VERSION: u32 = 2;

/// The JSON Schema of result.json, generated from these types (so it cannot drift from them);
/// `docs/result.schema.json` is a copy a test keeps equal to it.
pub fn json_schema() -> String {
    let mut s = serde_json::to_string_pretty(&schemars::schema_for!(CellResult)).expect("schema serializes");
    s.push('\n');
    s
}

/// What `peak_memory_*` measured: results of schema 1 have `memory.peak`.
pub const METRIC_WORKING_SET: &str = "working_set";
pub const METRIC_MEMORY_PEAK: &str = "memory.peak";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    Success,
    Timeout,
    OomKilled,
    TargetCrashed,
    HttpError,
    VerifyFailed,
    BootFailed,
    HarnessError,
}

impl ExitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Success => "success",
            ExitReason::Timeout => "timeout",
            ExitReason::OomKilled => "oom_killed",
            ExitReason::TargetCrashed => "target_crashed",
            ExitReason::HttpError => "http_error",
            ExitReason::VerifyFailed => "verify_failed",
            ExitReason::BootFailed => "boot_failed",
            ExitReason::HarnessError => "harness_error",
        }
    }

    /// Failures of the harness or the VM, not of the target: worth retrying in a matrix.
    pub fn is_infrastructure(self) -> bool {
        matches!(self, ExitReason::BootFailed | ExitReason::HarnessError)
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a failure means for what happens next: the field a matrix decides on, never the error's
/// wording. Stored in result.json as `failure` (null for a cell that passed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The target failed (OOM, crash, HTTP error, sha256, timeout during the upload): a result
    /// like any other, never retried.
    Target,
    /// The VM or the harness failed: a matrix retries it (`--retries`).
    Infrastructure,
    /// The connection to the cell's libvirt host was lost: the cell moves to another host
    /// without using a retry.
    HostLost,
    /// The guest's boot stalled before its agent answered: the cell boots again (up to twice).
    BootStalled,
    /// Cut short by SIGINT/SIGTERM: not a measurement; run again on resume.
    Interrupted,
}

impl FailureKind {
    /// The kind a failure with this exit reason has, unless something more specific is known.
    pub fn of(reason: ExitReason) -> Option<FailureKind> {
        match reason {
            ExitReason::Success => None,
            r if r.is_infrastructure() => Some(FailureKind::Infrastructure),
            _ => Some(FailureKind::Target),
        }
    }
}

/// Results of schema 1 have no `failure`; a lost host was told only in the error's text, as
/// this (the message then; frozen here, whatever the pipeline says now).
const SCHEMA1_HOST_LOST: &str = "libvirt connection lost (libvirtd stopped?)";

/// Seconds spent in each phase; None for phases the cell never reached.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PhaseTimes {
    /// Overlay, seed ISO, port.
    pub prepare: Option<f64>,
    /// libvirt create (domain defined and started).
    pub boot: Option<f64>,
    /// Domain start until the guest agent answers.
    pub agent: Option<f64>,
    /// Agent up until cloud-init finished (target installed and started). Cold boots.
    pub cloud_init: Option<f64>,
    /// From a saved guest: agent up (and clock set) until the target was installed and started
    /// through the agent.
    #[serde(default)]
    pub deliver: Option<f64>,
    /// cloud-init done until the target's health check passes.
    pub healthy: Option<f64>,
    /// A profile's login and before_upload requests.
    #[serde(default)]
    pub login: Option<f64>,
    pub upload: Option<f64>,
    /// `--download`: fetching the file back.
    #[serde(default)]
    pub download: Option<f64>,
    /// Reading peak, events, restarts, sha256, journal.
    pub collect: Option<f64>,
    pub teardown: Option<f64>,
}

/// A hook that ran around or in the cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HookRecord {
    /// `hook-before-cell`, `guest-setup`, `guest-teardown`, `hook-after-cell`.
    pub name: String,
    /// When it started, seconds after the cell started.
    pub at_seconds: f64,
    /// None: it could not run or was killed.
    pub exit_code: Option<i32>,
    /// Its output, beside result.json.
    pub output: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TargetInfo {
    pub name: String,
    /// `stream`/`memory` for the reference target, `profile` for a profile's.
    pub mode: String,
    /// sha256 of the profile file the target came from.
    #[serde(default)]
    pub profile_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CellResult {
    // --- the old harness's fields ---
    pub timestamp: chrono::DateTime<chrono::Utc>,
    pub ram_mb: u64,
    pub file_size: String,
    pub file_size_mb: f64,
    pub duration_seconds: Option<f64>,
    pub throughput_mbps: Option<f64>,
    /// The target's memory when the upload started (the same metric as the peak).
    pub initial_memory_bytes: Option<u64>,
    /// The headline: the highest working set of the target's cgroup (memory.current −
    /// inactive_file) sampled during the upload, i.e. what it needs, without the page cache of
    /// the file it wrote. `memory` has the parts and the kernel's memory.peak.
    pub peak_memory_bytes: Option<u64>,
    pub peak_memory_mb: Option<f64>,
    pub http_status: Option<u16>,
    pub exit_reason: ExitReason,
    pub success: bool,
    // --- perfvm ---
    /// `working_set`, or `memory.peak` (schema 1, or no memory.stat in the guest).
    #[serde(default = "memory_peak_metric")]
    pub peak_memory_metric: String,
    /// The memory split up: anon, page cache, kernel, and the kernel's exact memory.peak.
    #[serde(default)]
    pub memory: Option<MemoryBreakdown>,
    pub schema_version: u32,
    pub perfvm_version: String,
    pub run_id: String,
    pub cell: String,
    /// Repetition (1-based) and attempt (1-based; >1 after an infrastructure failure) in a matrix.
    #[serde(default = "one")]
    pub repeat: u32,
    #[serde(default = "one")]
    pub attempt: u32,
    /// The cell was cut short by SIGINT/SIGTERM: not a measurement, redone on resume (the same
    /// as `failure: interrupted`; kept for readers of older results).
    #[serde(default)]
    pub interrupted: bool,
    /// What the failure means for a matrix (null when the cell passed). Results of schema 1
    /// lack it; `upgrade` derives it.
    #[serde(default)]
    pub failure: Option<FailureKind>,
    /// Boots that stalled before the guest agent answered (a guest kernel hung early, seen
    /// once in a CI run here) and were started again within this cell, from a fresh
    /// overlay; each stalled console is kept as `console-stalled-N.log`.
    #[serde(default)]
    pub boot_stalls: u32,
    /// How the guest started (`--boot`); cold in results from before the option.
    #[serde(default)]
    pub boot: Boot,
    /// The saved state a `--boot saved` cell was restored from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_state: Option<SavedState>,
    pub error: Option<String>,
    pub file_size_bytes: u64,
    pub accel: Accel,
    pub cpus: u32,
    pub image_id: String,
    pub target: TargetInfo,
    /// In a matrix of several targets, this cell's target as the matrix names it (the prefix of
    /// its cell id: `dufs`, `perfvm-target-memory`); absent when the run has one target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix_target: Option<String>,
    pub seed: u64,
    /// What the bytes were: `random` (the default), `zeros`, `text`, `compressible:R`, or `file`
    /// (`--file`, whose path is in `file_path`).
    #[serde(default = "random")]
    pub content_kind: String,
    #[serde(default)]
    pub file_path: Option<String>,
    /// `content-length` (the default) or `chunked` transfer encoding of the upload body.
    #[serde(default = "content_length")]
    pub transfer: String,
    /// Uploads of the file at once (`--concurrency`); the memory figures cover all of them, the
    /// top-level duration/throughput are the aggregate (first start to last end, all bytes).
    #[serde(default = "one")]
    pub concurrency: u32,
    /// Each upload: its own status, time, throughput and verification.
    #[serde(default)]
    pub uploads: Vec<UploadRecord>,
    /// `--download`: the first file fetched back through the target after the uploads.
    #[serde(default)]
    pub download: Option<DownloadRecord>,
    pub sha256: Option<String>,
    /// The stored file's sha256, as `verification` says it was computed.
    pub guest_sha256: Option<String>,
    /// true: the stored file's sha256 equals the generated one; false: it differs or the file is
    /// missing; null: not checked.
    pub verified: Option<bool>,
    /// How the stored files were hashed (absent: none was, or a result from before `--verify`,
    /// when the guest always did it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    pub oom_kills: Option<u64>,
    /// Restarts of the target's unit during the upload (schema 1: since boot).
    pub restarts: Option<u64>,
    /// Restarts before its health check passed (a unit that flapped and then came up).
    #[serde(default)]
    pub restarts_before_upload: Option<u64>,
    pub bytes_sent: Option<u64>,
    pub phases: PhaseTimes,
    /// Hooks that ran, in order (`--hook-before-cell`, the profile's guest_setup, …).
    #[serde(default)]
    pub hooks: Vec<HookRecord>,
    pub host_qemu_peak_rss_bytes: Option<u64>,
    /// perfvm's own peak RSS (VmHWM) when the cell ended: the harness must stay small whatever
    /// the file size. In a matrix it covers every cell run so far by this process.
    #[serde(default)]
    pub harness_peak_rss_bytes: Option<u64>,
    pub guest_min_mem_available_bytes: Option<u64>,
    // --- CPU, I/O and pressure during the upload (null: source absent, never 0) ---
    /// CPU time of the target unit's cgroup (cpu.stat usage) during the upload.
    #[serde(default)]
    pub target_cpu_seconds: Option<f64>,
    /// target_cpu_seconds over the upload's duration, in % of one CPU (200 = two CPUs busy).
    #[serde(default)]
    pub target_cpu_avg_percent: Option<f64>,
    /// Highest CPU % between two samples.
    #[serde(default)]
    pub target_cpu_peak_percent: Option<f64>,
    /// Bytes the unit's cgroup read from / wrote to disk (io.stat) during the upload.
    #[serde(default)]
    pub target_io_read_bytes: Option<u64>,
    #[serde(default)]
    pub target_io_write_bytes: Option<u64>,
    /// Highest memory.pressure avg10 (% of time stalled, 10 s window), some / full.
    #[serde(default)]
    pub memory_pressure_peak_some_avg10: Option<f64>,
    #[serde(default)]
    pub memory_pressure_peak_full_avg10: Option<f64>,
    /// Time some task of the unit was stalled on memory during the upload (memory.pressure total).
    #[serde(default)]
    pub memory_stall_some_seconds: Option<f64>,
    /// CPU time of the host qemu process during the upload, and as % of one host core.
    #[serde(default)]
    pub host_qemu_cpu_seconds: Option<f64>,
    #[serde(default)]
    pub host_qemu_cpu_avg_percent: Option<f64>,
    /// `full` (memory, CPU, I/O, pressure) or `memory` (`--sample-memory-only`).
    #[serde(default)]
    pub sample_sources: Option<String>,
    #[serde(default)]
    pub sampler_cost: Option<SamplerCost>,
    pub sample_interval_ms: u64,
    /// Rows in samples.csv, and the mean spacing actually achieved between them.
    pub sample_count: u64,
    #[serde(default)]
    pub sample_mean_interval_ms: Option<f64>,
    pub samples_csv: Option<String>,
    pub console_log: Option<String>,
    pub journal: Option<String>,
    pub host_port: Option<u16>,
    /// Set only with `--ssh-key` (a debugging cell: sshd ran in the guest).
    #[serde(default)]
    pub ssh_port: Option<u16>,
    pub domain: Option<String>,
    /// The libvirt host that ran the cell (`local` for qemu:///system), its URI, and how perfvm
    /// reached the guest: `local` (loopback forward here) or `ssh-tunnel`.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub host_uri: Option<String>,
    #[serde(default)]
    pub access: Option<String>,
    /// What the host was (CPU, kernel, governor, THP), its load when the cell started, and how
    /// busy it was with other work during the upload. Null in results before it existed.
    #[serde(default)]
    pub host_facts: Option<HostFacts>,
}

/// The machine a cell ran on. On a remote host only what libvirt tells (CPU model, count, MHz)
/// is known; the rest is null there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HostFacts {
    /// /proc/cpuinfo's model name here; a remote host's libvirt CPU model (vendor and model).
    pub cpu_model: Option<String>,
    /// Online CPUs (cores × threads).
    pub cpus: Option<u32>,
    /// Maximum frequency (MHz) here; libvirt's expected frequency for a remote host.
    pub mhz: Option<u32>,
    /// Kernel release (uname -r).
    pub kernel: Option<String>,
    /// cpufreq scaling governor of CPU 0 (null: no cpufreq, e.g. in a VM).
    pub governor: Option<String>,
    /// Transparent huge pages: always, madvise or never.
    pub thp: Option<String>,
    /// 1-minute load average when the cell started.
    pub load1_at_start: Option<f64>,
    /// During the upload, % of the host's whole CPU busy with anything but this cell's qemu
    /// and perfvm, and % stolen by the hypervisor below the host.
    pub other_cpu_percent: Option<f64>,
    pub steal_percent: Option<f64>,
    /// true: other work or steal was above perfvm's thresholds (`HostFacts::NOISY_*`): the
    /// cell's speed is not the target's alone.
    pub noisy: Option<bool>,
}

impl HostFacts {
    /// Other work on the host above this share of its CPU during an upload makes the cell noisy.
    /// How it was chosen is in docs/performance.md ("A busy host").
    pub const NOISY_OTHER_CPU_PERCENT: f64 = 15.0;
    /// Steal above this share of the host's CPU: the host itself is a VM whose neighbours are busy.
    pub const NOISY_STEAL_PERCENT: f64 = 5.0;
}

/// What sampling itself cost during the upload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SamplerCost {
    /// The sampler thread of perfvm on the host.
    pub host_thread_cpu_seconds: Option<f64>,
    /// perfvm-probe in the guest.
    pub guest_probe_cpu_seconds: Option<f64>,
    /// qemu-guest-agent in the guest (serving the sampler's reads).
    pub guest_agent_cpu_seconds: Option<f64>,
    /// All three over the upload's duration, in % of one core.
    pub percent_of_one_core: Option<f64>,
    /// Why the probe did not run, if it did not (then only memory was sampled).
    pub probe_error: Option<String>,
}

fn one() -> u32 {
    1
}

fn memory_peak_metric() -> String {
    METRIC_MEMORY_PEAK.into()
}

/// The target's memory during the upload, split up (bytes). Peaks of sampled values, except
/// `cgroup_peak_bytes`, the kernel's own high-water mark.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemoryBreakdown {
    /// memory.current − inactive_file: what cAdvisor and the kubelet call a container's memory
    /// (and evict on). The headline.
    pub working_set_peak_bytes: Option<u64>,
    /// Anonymous memory: heaps, buffers the server holds.
    pub anon_peak_bytes: Option<u64>,
    /// Page cache (tmpfs included): mostly the file being written, reclaimable once on disk.
    pub file_peak_bytes: Option<u64>,
    pub kernel_peak_bytes: Option<u64>,
    pub sock_peak_bytes: Option<u64>,
    pub file_dirty_peak_bytes: Option<u64>,
    /// memory.peak: the kernel's exact high-water mark of memory.current, page cache included
    /// (or a sampled memory.current above it, when a restart recreated the cgroup).
    pub cgroup_peak_bytes: Option<u64>,
    /// The highest memory.current sampled, and how far it fell below memory.peak: what the
    /// sampling interval missed.
    pub sampled_current_peak_bytes: Option<u64>,
    pub sampled_below_cgroup_peak_bytes: Option<u64>,
}

impl CellResult {
    /// Fill in what results of an older schema lack, so everything after reading decides on
    /// the same fields: `failure`, derived from `interrupted`, the exit reason and (schema 1
    /// only) the lost-host message of that version.
    pub fn upgrade(&mut self) {
        if self.failure.is_some() || self.success {
            return;
        }
        self.failure = if self.interrupted {
            Some(FailureKind::Interrupted)
        } else if self.exit_reason.is_infrastructure() && self.error.as_deref().is_some_and(|e| e.contains(SCHEMA1_HOST_LOST)) {
            Some(FailureKind::HostLost)
        } else {
            FailureKind::of(self.exit_reason)
        };
    }

    /// The cell this result is an attempt of.
    pub fn key(&self) -> crate::plan::key::CellKey {
        let target = self.matrix_target.as_deref().map_or(crate::plan::key::TargetTag::NONE, crate::plan::key::TargetTag::new);
        crate::plan::key::CellKey { ram_mib: self.ram_mb, size: crate::size::ByteSize(self.file_size_bytes), concurrency: self.concurrency, repeat: self.repeat, target }
    }

    /// The kernel's memory.peak of the target, from any schema (schema 1's headline was it).
    pub fn cgroup_peak_bytes(&self) -> Option<u64> {
        match &self.memory {
            Some(m) => m.cgroup_peak_bytes,
            None if self.peak_memory_metric == METRIC_MEMORY_PEAK => self.peak_memory_bytes,
            None => None,
        }
    }

    /// The peak working set, from any schema (None before schema 2).
    pub fn working_set_peak_bytes(&self) -> Option<u64> {
        self.memory.as_ref().and_then(|m| m.working_set_peak_bytes)
    }
}

fn random() -> String {
    "random".into()
}

fn content_length() -> String {
    "content-length".into()
}

/// One upload of a cell.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UploadRecord {
    /// The file name on the target.
    pub name: String,
    pub http_status: Option<u16>,
    pub bytes_sent: u64,
    pub duration_seconds: Option<f64>,
    /// MiB/s of this upload alone.
    pub throughput_mbps: Option<f64>,
    pub guest_sha256: Option<String>,
    pub verified: Option<bool>,
    pub error: Option<String>,
}

/// The file fetched back after the uploads, and what the target did meanwhile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DownloadRecord {
    pub name: String,
    pub http_status: Option<u16>,
    pub bytes: u64,
    pub duration_seconds: Option<f64>,
    pub throughput_mbps: Option<f64>,
    /// sha256 of the body as received on the host; verified when it equals the uploaded one.
    pub sha256: Option<String>,
    pub verified: Option<bool>,
    /// The target's peak during the download, the same metric as the cell's `peak_memory_*`
    /// (the working set, sampled).
    pub peak_memory_bytes: Option<u64>,
    pub peak_memory_mb: Option<f64>,
    pub target_cpu_seconds: Option<f64>,
    pub sample_count: u64,
    pub error: Option<String>,
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Round for presentation in JSON (keeps files readable; full precision is meaningless here).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// What the cell observed, to decide its exit reason. `None` means unknown, never "none".
#[derive(Debug, Clone)]
pub struct Observed {
    /// Every upload got a status its target counts as stored, and the download (if any) a 2xx.
    pub http_ok: bool,
    pub transport_error: bool,
    pub timed_out: bool,
    pub oom_kills: Option<u64>,
    pub restarts: Option<u64>,
    pub verified: Option<bool>,
    /// The target says where files land; false: `verified` is null by design, not for lack of
    /// an answer.
    pub verify_possible: bool,
    /// The domain still ran after the upload (false: qemu died, the host's failure).
    pub guest_alive: bool,
}

impl Default for Observed {
    fn default() -> Self {
        Observed {
            http_ok: false,
            transport_error: false,
            timed_out: false,
            oom_kills: Some(0),
            restarts: Some(0),
            verified: None,
            verify_possible: true,
            guest_alive: true,
        }
    }
}

/// Decide the exit reason of a cell that got as far as uploading. Order matters: an OOM kill
/// explains a reset connection, a dead guest is the harness's failure not the target's, a
/// timeout explains a missing response. Success needs evidence of everything: a 2xx, a matching
/// sha256, and known-zero OOM kills and restarts.
pub fn classify(o: &Observed) -> ExitReason {
    if o.oom_kills.unwrap_or(0) > 0 {
        ExitReason::OomKilled
    } else if !o.guest_alive {
        ExitReason::HarnessError
    } else if o.timed_out {
        ExitReason::Timeout
    } else if o.restarts.unwrap_or(0) > 0 || o.transport_error {
        ExitReason::TargetCrashed
    } else if !o.http_ok {
        ExitReason::HttpError
    } else if o.verified == Some(false) {
        ExitReason::VerifyFailed
    } else if (o.verified.is_none() && o.verify_possible) || o.oom_kills.is_none() || o.restarts.is_none() {
        // The target answered 2xx but the guest could not be asked: we cannot vouch for it.
        ExitReason::HarnessError
    } else {
        ExitReason::Success
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_order() {
        let ok = Observed { http_ok: true, verified: Some(true), ..Default::default() };
        assert_eq!(classify(&ok), ExitReason::Success);
        let crash = Observed { oom_kills: Some(1), transport_error: true, restarts: Some(1), ..ok.clone() };
        assert_eq!(classify(&crash), ExitReason::OomKilled);
        assert_eq!(classify(&Observed { timed_out: true, ..ok.clone() }), ExitReason::Timeout);
        assert_eq!(classify(&Observed { transport_error: true, ..ok.clone() }), ExitReason::TargetCrashed);
        assert_eq!(classify(&Observed { restarts: Some(2), ..ok.clone() }), ExitReason::TargetCrashed);
        assert_eq!(classify(&Observed { http_ok: false, ..ok.clone() }), ExitReason::HttpError);
        assert_eq!(classify(&Observed { verified: Some(false), ..ok.clone() }), ExitReason::VerifyFailed);
        // qemu died under the upload: the host's failure, retried in a matrix.
        let dead = Observed { guest_alive: false, transport_error: true, oom_kills: None, restarts: None, ..ok.clone() };
        assert_eq!(classify(&dead), ExitReason::HarnessError);
        // Never success without evidence.
        assert_eq!(classify(&Observed { verified: None, ..ok.clone() }), ExitReason::HarnessError);
        assert_eq!(classify(&Observed { oom_kills: None, ..ok.clone() }), ExitReason::HarnessError);
        assert_eq!(classify(&Observed { restarts: None, ..ok.clone() }), ExitReason::HarnessError);
        // A target that cannot be verified (profile verify = false) succeeds with verified null.
        assert_eq!(classify(&Observed { verified: None, verify_possible: false, ..ok.clone() }), ExitReason::Success);
        assert_eq!(classify(&Observed { verified: None, verify_possible: false, http_ok: false, ..ok }), ExitReason::HttpError);
    }

    /// docs/result.schema.json is the schema these types make: `perfvm schema > docs/result.schema.json`
    /// after changing them.
    #[test]
    fn the_documented_schema_is_the_generated_one() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/result.schema.json")).unwrap_or_default();
        assert!(doc == json_schema(), "docs/result.schema.json is stale: run `perfvm schema > docs/result.schema.json`");
    }

    #[test]
    fn results_old_and_new_match_the_schema() {
        let schema: serde_json::Value = serde_json::from_str(&json_schema()).unwrap();
        let v = jsonschema::validator_for(&schema).unwrap();
        let old: serde_json::Value = serde_json::from_str(include_str!("../../tests/data/result-sample.json")).unwrap();
        assert!(v.is_valid(&old), "{:?}", v.iter_errors(&old).map(|e| e.to_string()).collect::<Vec<_>>());
        let r: CellResult = serde_json::from_value(old).unwrap();
        let new = serde_json::to_value(&r).unwrap();
        assert!(v.is_valid(&new));
        let mut bad = new.clone();
        bad["exit_reason"] = "exploded".into();
        assert!(!v.is_valid(&bad), "an unknown exit reason is not a result");
    }

    #[test]
    fn results_of_older_schemas_get_their_failure_kind() {
        let base: CellResult = serde_json::from_str(include_str!("../../tests/data/result-sample.json")).unwrap();
        assert_eq!((base.schema_version, base.failure), (1, None));
        let old = |reason: ExitReason, error: &str, interrupted: bool| {
            let mut r = base.clone();
            (r.exit_reason, r.success, r.interrupted) = (reason, false, interrupted);
            r.error = Some(error.into());
            r.upgrade();
            r.failure
        };
        assert_eq!(old(ExitReason::HarnessError, "boot: libvirt connection lost (libvirtd stopped?); what failed: define", false), Some(FailureKind::HostLost));
        assert_eq!(old(ExitReason::BootFailed, "agent: the guest agent never answered", false), Some(FailureKind::Infrastructure));
        assert_eq!(old(ExitReason::OomKilled, "upload: reset", false), Some(FailureKind::Target));
        assert_eq!(old(ExitReason::HarnessError, "interrupted by a signal", true), Some(FailureKind::Interrupted));
        // A passed cell has none; a new result keeps the one it has, whatever its text says.
        let mut ok = base.clone();
        ok.upgrade();
        assert_eq!(ok.failure, None);
        let mut new = base.clone();
        (new.success, new.exit_reason, new.failure) = (false, ExitReason::HarnessError, Some(FailureKind::Infrastructure));
        new.error = Some("libvirt connection lost (libvirtd stopped?)".into());
        new.upgrade();
        assert_eq!(new.failure, Some(FailureKind::Infrastructure));
        assert_eq!(serde_json::to_string(&FailureKind::HostLost).unwrap(), "\"host_lost\"");
    }

    #[test]
    fn exit_reasons_serialize_snake_case() {
        assert_eq!(serde_json::to_string(&ExitReason::OomKilled).unwrap(), "\"oom_killed\"");
        for r in [ExitReason::Success, ExitReason::BootFailed, ExitReason::HarnessError, ExitReason::VerifyFailed] {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.as_str()));
        }
        assert!(ExitReason::BootFailed.is_infrastructure());
        assert!(!ExitReason::OomKilled.is_infrastructure());
    }
}

/// How a cell's guest starts (`--boot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Boot {
    /// A fresh boot of the image, configured by cloud-init.
    #[default]
    Cold,
    /// Restored from a guest booted and saved once (per image, RAM, vCPUs, accelerator and
    /// what is put into the guest); the target is delivered through the guest agent.
    Saved,
}

impl Boot {
    pub fn as_str(self) -> &'static str {
        match self {
            Boot::Cold => "cold",
            Boot::Saved => "saved",
        }
    }
}

/// The saved state a cell was restored from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SavedState {
    /// Its id in `perfvm image list`.
    pub id: String,
    pub slot: u32,
    /// Seconds this cell waited for it to be built (booted and saved), when it was; not part of
    /// the cell's phases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_seconds: Option<f64>,
    /// Why an existing copy was not restored but built again (corrupt, stale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuilt_because: Option<String>,
}

/// Where the stored files are hashed (`--verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verify {
    /// The host reads them from the guest's frozen disk and hashes them natively.
    #[default]
    Host,
    /// sha256sum inside the guest (emulated under TCG: ~70 MB/s).
    Guest,
}

/// How a cell's stored files were hashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Verification {
    pub by: Verify,
    /// Seconds it took: freezing, exporting, reading and hashing on the host, or the guest's
    /// sha256sum (with the look for the files and any attempt on the host before it).
    pub seconds: f64,
    /// Why `--verify host` fell back to the guest, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}
