//! report.md: the same outcome as tables, for pasting into issues and pull requests.

use super::{Report, outcome};
use crate::results::export::targets::{Best, Comparison};
use std::fmt::Write;

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn render(rep: &Report) -> String {
    let mut out = format!("# {}\n\n", rep.title);
    if let Some(m) = &rep.metadata {
        let _ = writeln!(out, "- perfvm {} (git {}), {}, image {}", m.perfvm_version, m.git_rev.as_deref().unwrap_or("?"), m.accel, m.image_id);
        let target = match m.definition.targets.as_slice() {
            [] => format!("target {} ({} mode)", m.target, m.target_mode),
            ts => format!("targets {}", ts.iter().map(|(name, mode)| format!("{name} ({mode} mode)")).collect::<Vec<_>>().join(", ")),
        };
        let _ = writeln!(out, "- {target}, host {}, libvirt {}, qemu {}", m.host, m.libvirt_version.as_deref().unwrap_or("?"), m.qemu_version.as_deref().unwrap_or("?"));
        let _ = writeln!(out, "- started {}, finished {}\n", super::when(&m.started), m.finished.map(|f| super::when(&f)).unwrap_or_else(|| "not finished".into()));
    }
    if let Some(l) = &rep.limit {
        let _ = writeln!(out, "**{}**\n\n{} (range {}, every {}, --confirm {}); the probes are the cells below.\n", l.message, l.question, l.range, l.resolution, l.confirm);
    }
    let passed = rep.cells.iter().filter(|c| c.result.success).count();
    let _ = writeln!(out, "{} cells, {passed} passed.\n", rep.cells.len());
    out.push_str("Peak memory is the target's working set (memory.current − inactive_file); anon is its heap and buffers, page cache mostly the file written, memory.peak the kernel's high-water mark with the page cache.\n\n");
    let compared = rep.comparison();
    // With several targets, each row names its own.
    let tag = |r: &crate::results::model::CellResult| match (&compared, &r.matrix_target) {
        (Some(_), Some(t)) => format!("| {t} "),
        (Some(_), None) => "| – ".to_string(),
        (None, _) => String::new(),
    };
    let (tag_head, tag_rule) = if compared.is_some() { ("| target ", "| --- ") } else { ("", "") };
    out.push_str(&format!("{tag_head}| RAM (MiB) | file | at once | repeat | throughput (MiB/s) | peak memory (MiB) | anon (MiB) | page cache (MiB) | memory.peak (MiB) | target CPU (%) | outcome |\n"));
    out.push_str(&format!("{tag_rule}| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n"));
    for c in &rep.cells {
        let r = &c.result;
        out.push_str(&tag(r));
        let num = |v: Option<f64>, p: usize| v.map(|x| format!("{x:.p$}")).unwrap_or_else(|| "–".into());
        let part = |f: fn(&crate::results::model::MemoryBreakdown) -> Option<u64>| num(r.memory.as_ref().and_then(f).map(crate::results::model::mib), 1);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.ram_mb,
            r.file_size,
            r.concurrency,
            r.repeat,
            num(r.throughput_mbps, 1),
            num(r.peak_memory_mb, 1),
            part(|m| m.anon_peak_bytes),
            part(|m| m.file_peak_bytes),
            num(r.cgroup_peak_bytes().map(crate::results::model::mib), 1),
            num(r.target_cpu_avg_percent, 0),
            cell(&if r.success { "passed".to_string() } else { outcome(r) })
        );
    }
    if let Some(c) = &compared {
        best_and_limits(&mut out, c);
    }
    if !rep.repeats.is_empty() {
        let adaptive = rep.repeats.iter().any(|s| s.stop.is_some());
        out.push_str("\n## Repeats (passed repetitions)\n\n| cell | passed | throughput MiB/s: mean ± stddev, median, min–max | peak MiB: mean ± stddev | outliers |");
        out.push_str(if adaptive { " stopped |\n| --- | ---: | --- | --- | --- | --- |\n" } else { "\n| --- | ---: | --- | --- | --- |\n" });
        for s in &rep.repeats {
            let st = |x: &Option<crate::stats::Stats>| match x {
                Some(s) => format!("{:.1} ± {:.1}, {:.1}, {:.1}–{:.1}", s.mean, s.stddev, s.median, s.min, s.max),
                None => "–".into(),
            };
            let pk = s.peak_memory_mb.map(|p| format!("{:.1} ± {:.1}", p.mean, p.stddev)).unwrap_or_else(|| "–".into());
            let outl = if s.outlier_repeats.is_empty() { "none".to_string() } else { s.outlier_repeats.iter().map(|r| format!("r{r}")).collect::<Vec<_>>().join(", ") };
            let _ = write!(out, "| {} | {}/{} | {} | {pk} | {outl} |", s.shape, s.passed, s.repetitions, st(&s.throughput_mbps));
            if adaptive {
                let _ = write!(out, " {} |", s.stop.as_ref().map_or("not yet", |w| w.message.as_str()));
            }
            out.push('\n');
        }
    }
    if !rep.history.is_empty() {
        out.push_str("\n## History (this target, oldest run first)\n\n| cell | run | started | label | passed | MiB/s | peak MiB |\n| --- | --- | --- | --- | ---: | ---: | ---: |\n");
        for (cell, pts) in &rep.history {
            for p in pts {
                let f = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "–".into());
                let _ = writeln!(out, "| {cell} | {} | {} | {} | {}/{} | {} | {} |", p.run_id, p.started.as_deref().unwrap_or(""), p.label.as_deref().unwrap_or(""), p.passed, p.repeats, f(p.throughput_mbps), f(p.peak_memory_mb));
            }
        }
    }
    out
}

/// A matrix of several targets: the best target at each RAM × size, and each target's limits.
fn best_and_limits(out: &mut String, c: &Comparison) {
    let several_levels = c.several_levels();
    let at_once = |level: u32| if several_levels { format!(", {level} upload(s) at once") } else { String::new() };
    for &level in &c.levels {
        let _ = writeln!(out, "\n## Best at each RAM × size{}\n\nThe highest mean throughput and the lowest mean peak working set among the targets' passed cells.\n", at_once(level));
        let here: Vec<&Best> = c.best.iter().filter(|b| b.concurrency == level).collect();
        let mut sizes: Vec<(u64, &str)> = here.iter().map(|b| (b.size_bytes, b.size.as_str())).collect();
        sizes.sort_unstable();
        sizes.dedup();
        let _ = writeln!(out, "| RAM (MiB) | {} |\n| ---: |{}", sizes.iter().map(|s| s.1).collect::<Vec<_>>().join(" | "), " --- |".repeat(sizes.len()));
        for ram in c.rams(level) {
            let _ = write!(out, "| {ram} |");
            for (size, _) in &sizes {
                let text = match here.iter().find(|b| (b.ram_mb, b.size_bytes) == (ram, *size)) {
                    None => "not run".to_string(),
                    Some(b) if b.contenders == 0 => "none passed".to_string(),
                    Some(b) => {
                        let mut parts: Vec<String> = Vec::new();
                        parts.extend(b.fastest.as_ref().map(|(t, v)| format!("{v:.1} MiB/s **{t}**")));
                        parts.extend(b.leanest.as_ref().map(|(t, v)| format!("peak {v:.1} MiB **{t}**")));
                        if b.contenders < c.targets.len() {
                            parts.push(format!("{} of {} passed", b.contenders, c.targets.len()));
                        }
                        parts.join("; ")
                    }
                };
                let _ = write!(out, " {} |", cell(&text));
            }
            out.push('\n');
        }
    }
    for &level in &c.levels {
        let rams = c.rams(level);
        let _ = writeln!(
            out,
            "\n## Limits{}\n\nAt each guest RAM the largest file whose every cell passed, and the smallest the target failed and how; then the smallest RAM at which it failed. Only the target's own failures count (OOM, crash, other errors).\n",
            at_once(level)
        );
        let _ = writeln!(out, "| target | {} | first failed |\n| --- |{} --- |", rams.iter().map(|r| format!("{r} MiB")).collect::<Vec<_>>().join(" | "), " --- |".repeat(rams.len()));
        for t in &c.targets {
            let _ = write!(out, "| {} |", cell(&t.tag));
            for ram in &rams {
                let text = match t.limits.iter().find(|l| (l.concurrency, l.ram_mb) == (level, *ram)) {
                    None => "not run".to_string(),
                    Some(l) => {
                        let passed = l.largest_passed.as_deref().unwrap_or("none");
                        match &l.first_failure {
                            Some((size, how)) => format!("{passed} (failed at {size}: {how})"),
                            None => passed.to_string(),
                        }
                    }
                };
                let _ = write!(out, " {} |", cell(&text));
            }
            let first = t.first_failure(level).map_or("never".to_string(), |(ram, size, how)| format!("{ram} MiB ({size}: {how})"));
            let _ = writeln!(out, " {} |", cell(&first));
        }
    }
}
