//! `matrix.csv`: the old harness's columns first, in its order, then perfvm's. Numbers only in
//! cells (units in the headers), empty for unknown, so it opens cleanly in a spreadsheet.

use super::sorted;
use crate::results::model::{CellResult, mib};

/// Exactly the old harness's header, in order.
pub const SEED_COLUMNS: [&str; 9] = [
    "ram_mb",
    "file_size",
    "duration_seconds",
    "throughput_mbps",
    "peak_memory_mb",
    "http_status",
    "exit_reason",
    "success",
    "result_file",
];

pub const EXTRA_COLUMNS: [&str; 45] = [
    // What peak_memory_mb is (working_set; memory.peak in results of older perfvm), then the
    // memory split up: the kernel's memory.peak counts the page cache of the file written.
    "peak_memory_metric",
    "peak_working_set_mb",
    "peak_anon_mb",
    "peak_file_cache_mb",
    "peak_kernel_mb",
    "cgroup_memory_peak_mb",
    "sampled_below_memory_peak_mb",
    "restarts_before_upload",
    "concurrency",
    "repeat",
    "attempt",
    "file_size_bytes",
    "accel",
    "cpus",
    "target",
    "target_mode",
    "verified",
    "oom_kills",
    "restarts",
    "initial_memory_mb",
    "host_qemu_peak_rss_mb",
    "prepare_seconds",
    "boot_seconds",
    "agent_seconds",
    "cloud_init_seconds",
    "healthy_seconds",
    "upload_seconds",
    "collect_seconds",
    "teardown_seconds",
    "target_cpu_seconds",
    "target_cpu_avg_percent",
    "target_cpu_peak_percent",
    "target_io_write_bytes",
    "memory_pressure_peak_some_avg10_percent",
    "memory_stall_some_seconds",
    "host_qemu_cpu_avg_percent",
    "sampler_cpu_percent_of_one_core",
    "content_kind",
    "transfer",
    "download_seconds",
    "download_throughput_mbps",
    "download_peak_memory_mb",
    "download_verified",
    "host",
    "error",
];

fn num<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

fn mb(v: Option<u64>) -> String {
    v.map(|b| format!("{:.3}", mib(b))).unwrap_or_default()
}

pub struct Csv;

impl super::Exporter for Csv {
    fn file_name(&self) -> &'static str {
        "matrix.csv"
    }
    fn export(&self, run: &super::RunView) -> Vec<u8> {
        export(run.results, &run.result_path)
    }
}

/// `result_file` of each row is given by `path_of` (relative to the run directory).
pub fn export(results: &[CellResult], path_of: &dyn Fn(&CellResult) -> String) -> Vec<u8> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    let header: Vec<&str> = SEED_COLUMNS.iter().chain(EXTRA_COLUMNS.iter()).copied().collect();
    w.write_record(&header).expect("csv in memory");
    for r in sorted(results) {
        let p = &r.phases;
        let row = vec![
            r.ram_mb.to_string(),
            r.file_size.clone(),
            num(r.duration_seconds),
            num(r.throughput_mbps),
            num(r.peak_memory_mb),
            num(r.http_status),
            r.exit_reason.as_str().to_string(),
            r.success.to_string(),
            path_of(r),
            r.peak_memory_metric.clone(),
            mb(r.working_set_peak_bytes()),
            mb(r.memory.as_ref().and_then(|m| m.anon_peak_bytes)),
            mb(r.memory.as_ref().and_then(|m| m.file_peak_bytes)),
            mb(r.memory.as_ref().and_then(|m| m.kernel_peak_bytes)),
            mb(r.cgroup_peak_bytes()),
            mb(r.memory.as_ref().and_then(|m| m.sampled_below_cgroup_peak_bytes)),
            num(r.restarts_before_upload),
            r.concurrency.to_string(),
            r.repeat.to_string(),
            r.attempt.to_string(),
            r.file_size_bytes.to_string(),
            r.accel.to_string(),
            r.cpus.to_string(),
            r.target.name.clone(),
            r.target.mode.clone(),
            num(r.verified),
            num(r.oom_kills),
            num(r.restarts),
            mb(r.initial_memory_bytes),
            mb(r.host_qemu_peak_rss_bytes),
            num(p.prepare),
            num(p.boot),
            num(p.agent),
            num(p.cloud_init),
            num(p.healthy),
            num(p.upload),
            num(p.collect),
            num(p.teardown),
            num(r.target_cpu_seconds),
            num(r.target_cpu_avg_percent),
            num(r.target_cpu_peak_percent),
            num(r.target_io_write_bytes),
            num(r.memory_pressure_peak_some_avg10),
            num(r.memory_stall_some_seconds),
            num(r.host_qemu_cpu_avg_percent),
            num(r.sampler_cost.as_ref().and_then(|c| c.percent_of_one_core)),
            r.content_kind.clone(),
            r.transfer.clone(),
            num(r.download.as_ref().and_then(|d| d.duration_seconds)),
            num(r.download.as_ref().and_then(|d| d.throughput_mbps)),
            num(r.download.as_ref().and_then(|d| d.peak_memory_mb)),
            num(r.download.as_ref().and_then(|d| d.verified)),
            r.host.clone().unwrap_or_default(),
            r.error.clone().unwrap_or_default().replace(['\n', '\r'], " "),
        ];
        w.write_record(&row).expect("csv in memory");
    }
    w.into_inner().expect("csv in memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::model::ExitReason;

    fn sample() -> CellResult {
        serde_json::from_str(include_str!("../../../tests/data/result-sample.json")).unwrap()
    }

    #[test]
    fn header_starts_with_the_seed_columns_in_order() {
        let out = String::from_utf8(export(&[], &|_| String::new())).unwrap();
        let header = out.lines().next().unwrap();
        assert!(header.starts_with("ram_mb,file_size,duration_seconds,throughput_mbps,peak_memory_mb,http_status,exit_reason,success,result_file,peak_memory_metric,peak_working_set_mb,peak_anon_mb,"));
    }

    #[test]
    fn rows_are_sorted_numbers_and_empty_for_unknown() {
        let a = sample();
        let mut b = sample();
        b.ram_mb = 256;
        b.exit_reason = ExitReason::OomKilled;
        b.success = false;
        b.duration_seconds = None;
        b.throughput_mbps = None;
        b.http_status = None;
        b.error = Some("upload: reset\nby peer".into());
        let out = String::from_utf8(export(&[a, b], &|r| format!("cells/{}/result.json", r.cell))).unwrap();
        let mut rd = ::csv::Reader::from_reader(out.as_bytes());
        let rows: Vec<::csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][0], "256");
        assert_eq!(&rows[0][2], "");
        assert_eq!(&rows[0][6], "oom_killed");
        assert_eq!(&rows[0][7], "false");
        assert!(!rows[0][SEED_COLUMNS.len() + EXTRA_COLUMNS.len() - 1].contains('\n'));
        assert_eq!(&rows[1][0], "512");
        assert_eq!(&rows[1][3], "45.632");
        assert_eq!(&rows[1][4], "11.523");
        assert_eq!(&rows[1][8], "cells/512-256M/result.json");
        for r in &rows {
            assert_eq!(r.len(), SEED_COLUMNS.len() + EXTRA_COLUMNS.len());
        }
    }
}
