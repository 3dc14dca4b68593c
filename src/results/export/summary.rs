//! `summary.txt`: RAM rows × size columns, read in a terminal. Each cell shows throughput (MiB/s),
//! peak memory (MiB: the working set, then its anon part and the page cache beside it), the
//! target's CPU (% of one CPU) and peak memory pressure (PSI some avg10), or its failure; with
//! repeats, mean ± stddev and min–max. A matrix of several targets gets a grid per target, the
//! best target at each RAM × size, and each target's limits (`targets`).

use super::targets::{Comparison, RamLimit};
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
        let mut out = match super::targets::compare(&run.finals, &m.definition.targets) {
            None => {
                let title = format!("perfvm matrix {} — {} ({} mode), {}, image {}; {}/{} cells finished, {} passed", m.run_key, m.target, m.target_mode, m.accel, m.image_id, s.finished, s.cells, s.passed);
                export(&title, &run.finals, &run.rams, &run.sizes)
            }
            Some(c) => {
                // Each target may have its own image variant.
                let mut images: Vec<&str> = run.finals.iter().map(|r| r.image_id.as_str()).collect();
                images.sort_unstable();
                images.dedup();
                let tags: Vec<&str> = c.targets.iter().map(|t| t.tag.as_str()).collect();
                let title = format!(
                    "perfvm matrix {} — {} targets ({}), {}, image{} {}; {}/{} cells finished, {} passed",
                    m.run_key,
                    tags.len(),
                    tags.join(", "),
                    m.accel,
                    if images.len() > 1 { "s" } else { "" },
                    images.join(", "),
                    s.finished,
                    s.cells,
                    s.passed
                );
                several(&title, &c, &run.rams, &run.sizes)
            }
        };
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

const LEGEND: &str = "peak: the target's working set (memory.current − inactive_file); anon: its heap and buffers; cache: page cache, mostly the file written";

/// One grid per concurrency level (a matrix with `--concurrency 1,4` has two).
pub fn export(title: &str, finals: &[&CellResult], rams: &[u64], sizes: &[(u64, String)]) -> Vec<u8> {
    let mut out = format!("{title}\n{LEGEND}\n\n");
    out.push_str(&grids(finals, rams, sizes));
    out.into_bytes()
}

/// Whether a run's uploads-at-once levels are just the default (one at a time): then no
/// heading per level.
fn only_one_at_a_time(levels: &[u32]) -> bool {
    levels.len() <= 1 && levels.first().is_none_or(|&c| c == 1)
}

fn grids(finals: &[&CellResult], rams: &[u64], sizes: &[(u64, String)]) -> String {
    let mut levels: Vec<u32> = finals.iter().map(|r| r.concurrency).collect();
    levels.sort_unstable();
    levels.dedup();
    let mut out = String::new();
    if only_one_at_a_time(&levels) {
        out.push_str(&grid(finals, rams, sizes));
    } else {
        for c in levels {
            let these: Vec<&CellResult> = finals.iter().copied().filter(|r| r.concurrency == c).collect();
            out.push_str(&format!("concurrency {c} (throughput: all uploads together)\n"));
            out.push_str(&grid(&these, rams, sizes));
        }
    }
    out
}

/// A matrix of several targets: each target's grid, then the best target at each RAM × size,
/// then how far each target got.
pub fn several(title: &str, c: &Comparison, rams: &[u64], sizes: &[(u64, String)]) -> Vec<u8> {
    let mut out = format!("{title}\n{LEGEND}\n\n");
    for t in &c.targets {
        let passed = t.cells.iter().filter(|r| r.success).count();
        out.push_str(&format!("== {} ({}, {} mode): {} cells, {passed} passed ==\n", t.tag, t.name, t.mode, t.cells.len()));
        out.push_str(&grids(&t.cells, rams, sizes));
    }
    out.push_str("== best at each RAM × size (means of the passed cells): the highest throughput, the lowest peak working set ==\n");
    let one = !c.several_levels();
    for &level in &c.levels {
        if !one {
            out.push_str(&format!("concurrency {level} (throughput: all uploads together)\n"));
        }
        let cell_text = |ram: u64, size: u64| -> Vec<String> {
            let Some(b) = c.best.iter().find(|b| (b.concurrency, b.ram_mb, b.size_bytes) == (level, ram, size)) else { return vec!["(not run)".into()] };
            let mut lines = Vec::new();
            if let Some((tag, v)) = &b.fastest {
                lines.extend([format!("{v:.1} MiB/s"), format!("  {tag}")]);
            }
            if let Some((tag, v)) = &b.leanest {
                lines.extend([format!("peak {v:.1} MiB"), format!("  {tag}")]);
            }
            if b.contenders == 0 {
                lines.push("none passed".into());
            } else if b.contenders < c.targets.len() {
                lines.push(format!("{} of {} passed", b.contenders, c.targets.len()));
            }
            lines
        };
        out.push_str(&layout(rams, sizes, rams.iter().map(|&ram| sizes.iter().map(|(b, _)| cell_text(ram, *b)).collect()).collect()));
    }
    out.push_str(&limit_tables(c));
    out.into_bytes()
}

/// Per target: at each RAM the largest file it passed (every cell of it) and the smallest it
/// failed, then where it first failed.
fn limit_tables(c: &Comparison) -> String {
    let mut out = String::from("== limits at each RAM: the largest file whose every cell passed, the smallest the target failed (its own failures only: OOM, crash, other errors) ==\n");
    let one = !c.several_levels();
    for t in &c.targets {
        for &level in &c.levels {
            let rows: Vec<&RamLimit> = t.limits.iter().filter(|l| l.concurrency == level).collect();
            if rows.is_empty() {
                continue;
            }
            let at_once = if one { String::new() } else { format!(", {level} upload(s) at once") };
            let first = match t.first_failure(level) {
                Some((ram, size, how)) => format!("first failed at {ram} MiB ({size}: {how})"),
                None => "no failure of its own".into(),
            };
            out.push_str(&format!("{}{at_once}: {first}\n", t.tag));
            let cols: Vec<[String; 3]> = rows
                .iter()
                .map(|l| [format!("{} MiB", l.ram_mb), l.largest_passed.clone().unwrap_or_else(|| "none".into()), l.first_failure.as_ref().map_or("-".into(), |(s, h)| format!("{s}: {h}"))])
                .collect();
            let head = ["RAM".to_string(), "largest passed".into(), "first failure".into()];
            let w = |i: usize| cols.iter().chain([&head]).map(|c| c[i].chars().count()).max().unwrap_or(0) + 2;
            let (w0, w1) = (w(0).max(11), w(1));
            for row in [&head].into_iter().chain(&cols) {
                out.push_str(format!("  {:<w0$}{:<w1$}{}", row[0], row[1], row[2]).trim_end());
                out.push('\n');
            }
            out.push('\n');
        }
    }
    out
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
    layout(rams, sizes, grid)
}

/// RAM rows × size columns, each cell some lines of text; `grid[ram][size]`.
fn layout(rams: &[u64], sizes: &[(u64, String)], grid: Vec<Vec<Vec<String>>>) -> String {
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

    fn view<'a>(meta: &'a crate::results::export::json::RunMetadata, results: &'a [CellResult]) -> super::super::RunView<'a> {
        let finals = super::super::finals(results);
        super::super::RunView {
            meta,
            results,
            summary: crate::results::export::json::summarize(finals.len(), &finals, results.len(), None),
            finals,
            adaptive: None,
            stops: BTreeMap::new(),
            rams: vec![256, 512],
            sizes: vec![(64 << 20, "64M".into()), (1 << 30, "1G".into())],
            result_path: crate::rundir::attempts::result_rel,
        }
    }

    #[test]
    fn several_targets_get_a_grid_each_the_best_of_and_their_limits() {
        use super::super::{Exporter, targets::tests as t};
        let rs = t::two_targets();
        let meta = t::meta(&t::order());
        let text = String::from_utf8(Summary.export(&view(&meta, &rs))).unwrap();
        assert!(text.starts_with("perfvm matrix matrix-0123456789ab — 2 targets (perfvm-target-stream, dufs), tcg, image bookworm-5cb6a440f6e8; 11/11 cells finished, 8 passed\n"), "{text}");
        let at = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle:?} in\n{text}"));
        // A grid per target, in the definition's order, each with its own cells only.
        let (s, d, best, limits) = (at("== perfvm-target-stream (perfvm-target, stream mode): 5 cells, 5 passed =="), at("== dufs (dufs, profile mode): 6 cells, 3 passed =="), at("== best at each RAM × size"), at("== limits"));
        assert!(s < d && d < best && best < limits);
        assert!(text[s..d].contains("38.0±2.8 MiB/s") && !text[s..d].contains("FAIL"), "{}", &text[s..d]);
        assert!(text[d..best].contains("FAIL oom_killed") && text[d..best].contains("1/2 FAIL target_crashed"), "{}", &text[d..best]);
        // The best of: dufs fastest, the stream target leanest; dufs alone did not pass 256 × 1G.
        let b = &text[best..limits];
        assert_eq!(b.lines().nth(1).map(|l| l.split_whitespace().collect::<Vec<_>>()), Some(vec!["RAM", "\\", "file", "64M", "1G"]), "{b}");
        assert!(b.contains("60.0 MiB/s") && b.contains("  dufs") && b.contains("peak 10.0 MiB") && b.contains("  perfvm-target-stream") && b.contains("1 of 2 passed"), "{b}");
        let l = &text[limits..];
        assert!(l.contains("perfvm-target-stream: no failure of its own\n"), "{l}");
        assert!(l.contains("dufs: first failed at 256 MiB (1G: OOM)\n"), "{l}");
        let rows: Vec<Vec<&str>> = l.lines().skip_while(|x| !x.starts_with("dufs")).skip(1).take(3).map(|x| x.split_whitespace().collect()).collect();
        assert_eq!(rows, [vec!["RAM", "largest", "passed", "first", "failure"], vec!["256", "MiB", "none", "1G:", "OOM"], vec!["512", "MiB", "64M", "1G:", "crash"]], "{l}");
    }

    #[test]
    fn one_target_writes_what_it_always_did() {
        use super::super::Exporter;
        let one = sample();
        let meta = super::super::targets::tests::meta(&[]);
        let rs = [one.clone()];
        let text = String::from_utf8(Summary.export(&view(&meta, &rs))).unwrap();
        let title = "perfvm matrix matrix-0123456789ab — perfvm-target (stream mode), tcg, image bookworm-5cb6a440f6e8; 1/1 cells finished, 1 passed";
        assert_eq!(text, String::from_utf8(export(title, &[&one], &[256, 512], &[(64 << 20, "64M".into()), (1 << 30, "1G".into())])).unwrap());
        assert!(!text.contains("==") && !text.contains("limits"));
    }
}
