//! `matrix.csv`: the old harness's columns first, in its order and meaning, then perfvm's. Every
//! cell is a number, plain text or empty (unknown): booleans are 1 and 0, times are ISO 8601
//! text, nothing a spreadsheet could take for a date; `_mbps` is MiB/s and `_mb` MiB (the old
//! harness's names). Each attempt is a row; `final` marks the one that counts for its cell.

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

pub const EXTRA_COLUMNS: [&str; 52] = [
    // Which run and attempt a row is: spreadsheets can filter on `final` = 1.
    "run_id",
    "timestamp",
    "label",
    "final",
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
    // How busy the host was with other work during the upload (% of its CPU), and whether
    // that was above perfvm's threshold (`host_noisy` = 1: the speed is not the target's alone).
    "host_other_cpu_percent",
    "host_steal_percent",
    "host_noisy",
    "host",
    "error",
];

fn num<T: ToString>(v: Option<T>) -> String {
    v.map(|x| unambiguous(x.to_string())).unwrap_or_default()
}

/// A decimal with exactly three digits after the point gets a fourth (`45.632` → `45.6320`): a
/// spreadsheet in a locale whose thousands separator is `.` (German) would read `45.632` as
/// 45632, a wrong number without a word; `45.6320` it leaves as text, which is seen.
pub fn unambiguous(mut s: String) -> String {
    if s.find('.').is_some_and(|dot| s.len() - dot - 1 == 3) {
        s.push('0');
    }
    s
}

/// 1 or 0 (a number in any spreadsheet, in any locale), empty for unknown.
fn flag(v: Option<bool>) -> String {
    v.map(|b| if b { "1" } else { "0" }.to_string()).unwrap_or_default()
}

fn mb(v: Option<u64>) -> String {
    v.map(|b| format!("{:.4}", mib(b))).unwrap_or_default()
}

pub struct Csv;

impl super::Exporter for Csv {
    fn file_name(&self) -> &'static str {
        "matrix.csv"
    }
    fn export(&self, run: &super::RunView) -> Vec<u8> {
        let run_id = format!("{}@{}", run.meta.run_key, run.meta.run_uid.as_deref().unwrap_or(""));
        let row = Row { run_id: &run_id, label: run.meta.label.as_deref().unwrap_or(""), finals: &run.finals, path_of: &run.result_path };
        export(run.results, &row)
    }
}

/// What every row shares, and which attempts are final.
pub struct Row<'a> {
    pub run_id: &'a str,
    pub label: &'a str,
    pub finals: &'a [&'a CellResult],
    /// `result_file` of a row, relative to the run directory.
    pub path_of: &'a dyn Fn(&CellResult) -> String,
}

pub fn export(results: &[CellResult], row_of: &Row) -> Vec<u8> {
    let path_of = row_of.path_of;
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
            flag(Some(r.success)),
            path_of(r),
            row_of.run_id.to_string(),
            r.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            row_of.label.to_string(),
            flag(Some(row_of.finals.iter().any(|f| std::ptr::eq(*f, r)))),
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
            flag(r.verified),
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
            flag(r.download.as_ref().and_then(|d| d.verified)),
            num(r.host_facts.as_ref().and_then(|f| f.other_cpu_percent)),
            num(r.host_facts.as_ref().and_then(|f| f.steal_percent)),
            flag(r.host_facts.as_ref().and_then(|f| f.noisy)),
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
    fn no_decimal_has_exactly_three_digits_after_the_point() {
        for (v, want) in [("45.632", "45.6320"), ("45.63", "45.63"), ("45", "45"), ("0.125", "0.1250"), ("1234.5678", "1234.5678"), ("-1.000", "-1.0000")] {
            assert_eq!(unambiguous(v.to_string()), want);
        }
        assert_eq!(mb(Some(3 << 20)), "3.0000");
    }

    #[test]
    fn header_starts_with_the_seed_columns_in_order() {
        let out = String::from_utf8(export(&[], &Row { run_id: "", label: "", finals: &[], path_of: &|_| String::new() })).unwrap();
        let header = out.lines().next().unwrap();
        assert!(header.starts_with("ram_mb,file_size,duration_seconds,throughput_mbps,peak_memory_mb,http_status,exit_reason,success,result_file,run_id,timestamp,label,final,peak_memory_metric,peak_working_set_mb,peak_anon_mb,"));
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
        let mut retried = b.clone();
        retried.attempt = 2;
        retried.success = true;
        let all = [a, b, retried];
        let finals = super::super::finals(&all);
        let out = String::from_utf8(export(&all, &Row { run_id: "matrix-x@1", label: "v1, rc", finals: &finals, path_of: &|r| format!("cells/{}/result.json", r.cell) })).unwrap();
        let mut rd = ::csv::Reader::from_reader(out.as_bytes());
        let rows: Vec<::csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(&rows[0][0], "256");
        assert_eq!(&rows[0][2], "");
        assert_eq!(&rows[0][6], "oom_killed");
        assert_eq!(&rows[0][7], "0", "booleans are numbers");
        assert_eq!((&rows[0][9], &rows[0][11], &rows[0][12]), ("matrix-x@1", "v1, rc", "0"), "attempt 1 of a retried cell is not final");
        assert_eq!(&rows[1][12], "1");
        assert_eq!(&rows[0][10], "2026-11-29T19:45:15Z");
        assert!(!rows[0][SEED_COLUMNS.len() + EXTRA_COLUMNS.len() - 1].contains('\n'));
        assert_eq!(&rows[2][0], "512");
        assert_eq!(&rows[2][3], "45.6320", "never exactly three decimals");
        assert_eq!(&rows[2][4], "11.5230");
        assert_eq!(&rows[2][7], "1");
        assert_eq!(&rows[2][8], "cells/512-256M/result.json");
        for r in &rows {
            assert_eq!(r.len(), SEED_COLUMNS.len() + EXTRA_COLUMNS.len());
        }
    }
}
