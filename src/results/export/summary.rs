//! `summary.txt`: RAM rows × size columns, read in a terminal. Each cell shows throughput (MiB/s),
//! peak memory (MiB: the working set, then its anon part and the page cache beside it), the
//! target's CPU (% of one CPU) and peak memory pressure (PSI some avg10), or its failure; with
//! repeats, mean ± stddev and min–max.

use crate::results::model::CellResult;
use crate::stats::stats;
use std::collections::BTreeMap;

pub struct Summary;

impl super::Exporter for Summary {
    fn file_name(&self) -> &'static str {
        "summary.txt"
    }
    fn export(&self, run: &super::RunView) -> Vec<u8> {
        let m = run.meta;
        let s = &run.summary;
        let title = format!("perfvm matrix {} — {} ({} mode), {}, image {}; {}/{} cells finished, {} passed", m.run_key, m.target, m.target_mode, m.accel, m.image_id, s.finished, s.cells, s.passed);
        let mut out = export(&title, &run.finals, &run.rams, &run.sizes);
        if let Some(policy) = &run.adaptive {
            out.extend(repetition_lines(policy, &run.stops).into_bytes());
        }
        out.extend(noisy_lines(&run.finals).into_bytes());
        out
    }
}

/// Cells measured while the host was busy with other work: their speed is not the target's alone.
fn noisy_lines(finals: &[&CellResult]) -> String {
    let noisy: Vec<String> = finals
        .iter()
        .filter_map(|r| {
            let f = r.host_facts.as_ref().filter(|f| f.noisy == Some(true))?;
            Some(format!("{} r{} ({}% other, {}% steal)", r.cell, r.repeat, f.other_cpu_percent.unwrap_or(0.0), f.steal_percent.unwrap_or(0.0)))
        })
        .collect();
    if noisy.is_empty() {
        return String::new();
    }
    format!(
        "\nbusy host during the upload (other work above {} % of the host's CPU, or steal above {} %): {}\n",
        crate::results::model::HostFacts::NOISY_OTHER_CPU_PERCENT,
        crate::results::model::HostFacts::NOISY_STEAL_PERCENT,
        noisy.join(", ")
    )
}

/// Under --target-rsd: each cell's repetitions and why it stopped.
fn repetition_lines(policy: &crate::plan::repeats::Adaptive, why: &BTreeMap<String, crate::plan::repeats::Stop>) -> String {
    if why.is_empty() {
        return String::new();
    }
    let mut out = format!("\nrepetitions (--target-rsd {} %, {}–{} per cell):\n", policy.target_rsd_percent, policy.min_repeats, policy.max_repeats);
    for (shape, stop) in why {
        out.push_str(&format!("  {shape:<14} {}\n", stop.message));
    }
    out
}

/// One grid per concurrency level (a matrix with `--concurrency 1,4` has two).
pub fn export(title: &str, finals: &[&CellResult], rams: &[u64], sizes: &[(u64, String)]) -> Vec<u8> {
    let mut levels: Vec<u32> = finals.iter().map(|r| r.concurrency).collect();
    levels.sort_unstable();
    levels.dedup();
    let mut out = format!("{title}\npeak: the target's working set (memory.current − inactive_file); anon: its heap and buffers; cache: page cache, mostly the file written\n\n");
    if levels.len() <= 1 && levels.first().is_none_or(|&c| c == 1) {
        out.push_str(&grid(finals, rams, sizes));
    } else {
        for c in levels {
            let these: Vec<&CellResult> = finals.iter().copied().filter(|r| r.concurrency == c).collect();
            out.push_str(&format!("concurrency {c} (throughput: all uploads together)\n"));
            out.push_str(&grid(&these, rams, sizes));
        }
    }
    out.into_bytes()
}

/// The anon part and the page cache of a cell's memory, in MiB (`anon 3 cache 250`).
fn parts(r: &CellResult) -> Option<String> {
    let m = r.memory.as_ref()?;
    let mib = |b: Option<u64>| b.map(|b| format!("{:.0}", crate::results::model::mib(b))).unwrap_or_else(|| "-".into());
    Some(format!("anon {} cache {}", mib(m.anon_peak_bytes), mib(m.file_peak_bytes)))
}

fn grid(finals: &[&CellResult], rams: &[u64], sizes: &[(u64, String)]) -> String {
    // (ram, size bytes) -> final results of every repetition.
    let mut by: BTreeMap<(u64, u64), Vec<&CellResult>> = BTreeMap::new();
    for r in finals {
        by.entry((r.ram_mb, r.file_size_bytes)).or_default().push(r);
    }
    let cell_text = |rs: Option<&Vec<&CellResult>>| -> Vec<String> {
        let Some(rs) = rs else { return vec!["(not run)".into()] };
        let ok: Vec<&&CellResult> = rs.iter().filter(|r| r.success).collect();
        let mut lines = Vec::new();
        if rs.len() == 1 {
            let r = rs[0];
            if r.success {
                lines.push(format!("{:.1} MiB/s", r.throughput_mbps.unwrap_or(0.0)));
                lines.push(format!("peak {:.1} MiB", r.peak_memory_mb.unwrap_or(0.0)));
                lines.extend(parts(r));
                if let Some(c) = r.target_cpu_avg_percent {
                    lines.push(format!("cpu {c:.0}%"));
                }
                if let Some(p) = r.memory_pressure_peak_some_avg10 {
                    lines.push(format!("mem psi {p:.1}"));
                }
                if let Some(d) = &r.download {
                    lines.push(format!("down {:.1} MiB/s", d.throughput_mbps.unwrap_or(0.0)));
                    lines.push(format!("down peak {:.1} MiB", d.peak_memory_mb.unwrap_or(0.0)));
                }
            } else {
                lines.push(format!("FAIL {}", r.exit_reason));
                if let Some(p) = r.peak_memory_mb {
                    lines.push(format!("peak {p:.1} MiB"));
                    lines.extend(parts(r));
                }
                if let Some(p) = r.memory_pressure_peak_some_avg10 {
                    lines.push(format!("mem psi {p:.1}"));
                }
            }
            return lines;
        }
        let tp: Vec<f64> = ok.iter().filter_map(|r| r.throughput_mbps).collect();
        let pk: Vec<f64> = ok.iter().filter_map(|r| r.peak_memory_mb).collect();
        if let Some(s) = stats(&tp) {
            lines.push(format!("{:.1}±{:.1} MiB/s", s.mean, s.stddev));
            lines.push(format!("  ({:.1}–{:.1})", s.min, s.max));
        }
        if let Some(s) = stats(&pk) {
            lines.push(format!("peak {:.1}±{:.1} MiB", s.mean, s.stddev));
        }
        let cpu: Vec<f64> = ok.iter().filter_map(|r| r.target_cpu_avg_percent).collect();
        if let Some(s) = stats(&cpu) {
            lines.push(format!("cpu {:.0}±{:.0}%", s.mean, s.stddev));
        }
        let failed = rs.len() - ok.len();
        if failed > 0 {
            let mut reasons: Vec<&str> = rs.iter().filter(|r| !r.success).map(|r| r.exit_reason.as_str()).collect();
            reasons.sort_unstable();
            reasons.dedup();
            lines.push(format!("{failed}/{} FAIL {}", rs.len(), reasons.join(",")));
        }
        lines
    };
    let mut grid: Vec<Vec<Vec<String>>> = Vec::new();
    for &ram in rams {
        grid.push(sizes.iter().map(|(b, _)| cell_text(by.get(&(ram, *b)))).collect());
    }
    let col_w: Vec<usize> = (0..sizes.len())
        .map(|c| {
            grid.iter().flat_map(|row| row[c].iter().map(|l| l.chars().count())).chain([sizes[c].1.len()]).max().unwrap_or(8) + 2
        })
        .collect();
    let mut out = String::new();
    out.push_str(&format!("{:<11}", "RAM \\ file"));
    for (c, (_, label)) in sizes.iter().enumerate() {
        out.push_str(&format!("{:<w$}", label, w = col_w[c]));
    }
    out.push('\n');
    for (ri, &ram) in rams.iter().enumerate() {
        let height = grid[ri].iter().map(|v| v.len()).max().unwrap_or(1);
        for line in 0..height {
            let head = if line == 0 { format!("{ram} MiB") } else { String::new() };
            out.push_str(&format!("{head:<11}"));
            for (c, lines) in grid[ri].iter().enumerate() {
                out.push_str(&format!("{:<w$}", lines.get(line).map(String::as_str).unwrap_or(""), w = col_w[c]));
            }
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::model::ExitReason;

    fn sample() -> CellResult {
        serde_json::from_str(include_str!("../../../tests/data/result-sample.json")).unwrap()
    }

    #[test]
    fn grid_marks_failures_and_missing_cells() {
        let ok = sample();
        let mut oom = sample();
        oom.ram_mb = 256;
        oom.success = false;
        oom.exit_reason = ExitReason::OomKilled;
        let sizes = vec![(ok.file_size_bytes, "256M".to_string()), (1 << 30, "1G".to_string())];
        let text = String::from_utf8(export("t", &[&ok, &oom], &[256, 512], &sizes)).unwrap();
        assert!(text.contains("FAIL oom_killed"));
        assert!(text.contains("45.6 MiB/s"));
        assert!(text.contains("(not run)"));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[3].starts_with("RAM \\ file") && lines[3].contains("256M") && lines[3].contains("1G"));
    }

    #[test]
    fn repeats_show_mean_and_spread() {
        let mut a = sample();
        let mut b = sample();
        a.throughput_mbps = Some(40.0);
        b.throughput_mbps = Some(50.0);
        b.repeat = 2;
        let sizes = vec![(a.file_size_bytes, "256M".to_string())];
        let text = String::from_utf8(export("t", &[&a, &b], &[512], &sizes)).unwrap();
        assert!(text.contains("45.0±7.1 MiB/s"), "{text}");
        assert!(text.contains("(40.0–50.0)"), "{text}");
    }

    #[test]
    fn cells_on_a_busy_host_are_named() {
        let quiet = sample();
        let mut busy = sample();
        busy.ram_mb = 256;
        busy.cell = "256-256M".into();
        let f = crate::results::model::HostFacts { other_cpu_percent: Some(41.5), steal_percent: Some(0.0), noisy: Some(true), ..Default::default() };
        busy.host_facts = Some(f);
        assert_eq!(noisy_lines(&[&quiet]), "");
        let text = noisy_lines(&[&quiet, &busy]);
        assert!(text.contains("256-256M r1 (41.5% other, 0% steal)") && !text.contains("512-"), "{text}");
    }
}
