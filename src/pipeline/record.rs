//! What a cell measured, into its result: the result before anything ran (the cell's facts),
//! then the sampler's memory, CPU, I/O and pressure figures and the download's record.

use super::cell::{CellConfig, CellEnv};
use super::workload::UploadReport;
use crate::results::model::{self, CellResult, ExitReason, PhaseTimes, TargetInfo, mib, round3};

/// The result of a cell before anything ran: what defines it, nothing measured.
pub fn base(env: &CellEnv, cfg: &CellConfig) -> CellResult {
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
        peak_memory_metric: model::METRIC_WORKING_SET.to_string(),
        memory: None,
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
        failure: None,
        boot_stalls: 0,
        boot: cfg.boot,
        saved_state: None,
        error: None,
        file_size_bytes: cfg.file_size.bytes(),
        accel: cfg.accel,
        cpus: cfg.cpus,
        image_id: env.image.id.clone(),
        target: TargetInfo { name: env.target.name.clone(), mode: env.target.mode.clone(), profile_sha256: env.target.profile_sha256.clone() },
        matrix_target: cfg.matrix_target.clone(),
        seed: cfg.seed,
        content_kind: cfg.payload().kind_label(),
        file_path: cfg.file.as_ref().map(|p| p.display().to_string()),
        transfer: cfg.transfer.as_str().to_string(),
        concurrency: cfg.concurrency,
        uploads: Vec::new(),
        download: None,
        sha256: None,
        guest_sha256: None,
        verification: None,
        verified: None,
        oom_kills: None,
        restarts: None,
        restarts_before_upload: None,
        bytes_sent: None,
        phases: PhaseTimes::default(),
        hooks: Vec::new(),
        host_qemu_peak_rss_bytes: None,
        harness_peak_rss_bytes: None,
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
        host: Some(env.host.name.clone()),
        host_uri: Some(env.host.uri.clone()),
        access: Some(env.host.access().to_string()),
        host_facts: Some(env.host.facts_now()),
    }
}

/// What the upload phase measured: its time, the bytes, the samples and the aggregate throughput
/// (first start to last end, all bytes together) when every upload was accepted.
pub fn upload(res: &mut CellResult, report: &UploadReport, cfg: &CellConfig) {
    let up_secs = report.wall.as_secs_f64();
    res.phases.upload = Some(round3(up_secs));
    res.phases.download = report.download.as_ref().map(|d| round3(d.duration.as_secs_f64()));
    let samples = &report.samples.upload;
    res.samples_csv = Some("samples.csv".into());
    res.sample_count = samples.count;
    res.sample_mean_interval_ms = samples.mean_interval_seconds.map(|s| round3(s * 1000.0));
    res.host_qemu_peak_rss_bytes = samples.peak_host_qemu_rss_bytes;
    res.guest_min_mem_available_bytes = samples.min_guest_mem_available_bytes;
    cpu_io(res, report, up_secs, cfg.sample_memory_only);
    if let (Some(f), Some((other, steal))) = (res.host_facts.as_mut(), report.host_load) {
        crate::hostfacts::set_load(f, other, steal);
    }
    let outs = &report.outcomes;
    // The aggregate: the first failing status (else the first), all bytes, one payload hash.
    res.http_status = outs.iter().find(|o| !o.accepted()).unwrap_or(&outs[0]).status;
    res.bytes_sent = Some(outs.iter().map(|o| o.bytes_sent).sum());
    res.sha256 = outs.iter().find_map(|o| o.sha256.clone());
    if outs.iter().all(crate::upload::client::UploadOutcome::accepted) {
        res.duration_seconds = Some(round3(up_secs));
        res.throughput_mbps = Some(round3(mib(cfg.file_size.bytes() * outs.len() as u64) / up_secs));
    }
}

/// The memory figures: the headline working set (memory.peak when the guest has no memory.stat,
/// and the result says which), the parts beside it.
pub fn memory(res: &mut CellResult, report: &UploadReport, end_peak: Option<u64>) {
    // With a download, the kernel's mark read between the phases is the uploads'.
    let kernel_peak = if report.download.is_some() { report.memory_peak_after_upload } else { end_peak };
    let memory = memory_breakdown(&report.samples.upload, kernel_peak);
    let (peak, metric, initial) = match memory.working_set_peak_bytes {
        Some(w) => (Some(w), model::METRIC_WORKING_SET, report.initial_working_set_bytes),
        None => (memory.cgroup_peak_bytes, model::METRIC_MEMORY_PEAK, report.initial_memory_bytes),
    };
    res.peak_memory_bytes = peak;
    res.peak_memory_mb = peak.map(|p| round3(mib(p)));
    res.peak_memory_metric = metric.to_string();
    res.initial_memory_bytes = initial;
    res.memory = Some(memory);
}

/// The target's memory during the upload from the samples and the kernel's memory.peak.
fn memory_breakdown(s: &crate::sampler::SampleSummary, kernel_peak: Option<u64>) -> model::MemoryBreakdown {
    model::MemoryBreakdown {
        working_set_peak_bytes: s.peak_working_set_bytes,
        anon_peak_bytes: s.peak_anon_bytes,
        file_peak_bytes: s.peak_file_bytes,
        kernel_peak_bytes: s.peak_kernel_bytes,
        sock_peak_bytes: s.peak_sock_bytes,
        file_dirty_peak_bytes: s.peak_file_dirty_bytes,
        // memory.peak of a cgroup that systemd recreated after a restart misses the earlier
        // peak: a sampled value above it is the better bound.
        cgroup_peak_bytes: kernel_peak.max(s.peak_cgroup_memory_bytes),
        sampled_current_peak_bytes: s.peak_cgroup_memory_bytes,
        sampled_below_cgroup_peak_bytes: match (kernel_peak, s.peak_cgroup_memory_bytes) {
            (Some(k), Some(sampled)) => Some(k.saturating_sub(sampled)),
            _ => None,
        },
    }
}

/// CPU, I/O, pressure and the sampler's own cost, from the sampler's summary.
pub fn cpu_io(res: &mut CellResult, report: &UploadReport, upload_seconds: f64, memory_only: bool) {
    let s = &report.samples.upload;
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
        // Over the sampler's own run time (the upload, plus the download when there is one).
        percent_of_one_core: parts.iter().all(Option::is_some).then_some(total).and_then(|t| pct_over(Some(t), s.wall_seconds.unwrap_or(upload_seconds))),
        probe_error: s.probe_error.clone(),
    });
}

/// The download's record.
pub fn download(name: &str, d: &crate::upload::client::DownloadOutcome, sent_sha: Option<&str>, report: &UploadReport, end_peak: Option<u64>) -> model::DownloadRecord {
    let ok = d.ok();
    let secs = d.duration.as_secs_f64();
    let sampled = report.samples.download.as_ref();
    // The cell's headline metric over the download: the working set, else memory.peak if the
    // download raised it, else the highest memory.current sampled.
    let peak = match (sampled.and_then(|s| s.peak_working_set_bytes), end_peak, report.memory_peak_after_upload) {
        (Some(ws), _, _) => Some(ws),
        (None, Some(end), Some(up)) if end > up => Some(end),
        _ => sampled.and_then(|s| s.peak_cgroup_memory_bytes),
    };
    model::DownloadRecord {
        name: name.to_string(),
        http_status: d.status,
        bytes: d.bytes,
        duration_seconds: ok.then(|| round3(secs)),
        throughput_mbps: ok.then(|| round3(mib(d.bytes) / secs)),
        sha256: d.sha256.clone(),
        verified: match (ok, sent_sha, &d.sha256) {
            (true, Some(want), Some(got)) => Some(want == got),
            _ => None,
        },
        peak_memory_bytes: peak,
        peak_memory_mb: peak.map(|p| round3(mib(p))),
        target_cpu_seconds: sampled.and_then(|s| s.target_cpu_seconds).map(round3),
        sample_count: sampled.map(|s| s.count).unwrap_or(0),
        error: d.error.clone(),
    }
}
