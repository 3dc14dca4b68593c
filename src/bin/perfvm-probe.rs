//! perfvm-probe: the in-guest half of the sampler. Reads the target unit's cgroup files and a few
//! guest-wide /proc files every interval and appends them, raw, as one JSON line per tick to a
//! file the host reads through the guest agent. One agent call per tick on the host side instead
//! of three per file. Raw text goes out unparsed: the host parses (and tests) it.
//!
//! Bounded: stops when the stop file appears, or after --max-seconds, whichever comes first.
//! Uses std and serde_json only, so it runs on the bare guest image.

use std::io::Write;
use std::time::{Duration, Instant};

const CGROUP_FILES: [&str; 7] =
    ["memory.current", "memory.events", "cpu.stat", "io.stat", "cpu.pressure", "memory.pressure", "io.pressure"];
const PROC_FILES: [(&str, &str); 3] = [("meminfo", "/proc/meminfo"), ("stat", "/proc/stat"), ("vmstat", "/proc/vmstat")];

struct Args {
    cgroup: String,
    out: String,
    interval: Duration,
    max: Duration,
    /// Memory only (memory.current, MemAvailable): to measure what the other sources cost.
    memory_only: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        cgroup: String::new(),
        out: String::new(),
        interval: Duration::from_millis(100),
        max: Duration::from_secs(3600),
        memory_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--memory-only" {
            a.memory_only = true;
            continue;
        }
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--cgroup" => a.cgroup = v,
            "--out" => a.out = v,
            "--interval-ms" => a.interval = Duration::from_millis(v.parse().map_err(|_| format!("bad --interval-ms {v}"))?),
            "--max-seconds" => a.max = Duration::from_secs(v.parse().map_err(|_| format!("bad --max-seconds {v}"))?),
            _ => return Err(format!("unknown option {k}")),
        }
    }
    if a.cgroup.is_empty() || a.out.is_empty() {
        return Err("usage: perfvm-probe --cgroup DIR --out FILE [--interval-ms 100] [--max-seconds 3600]".into());
    }
    Ok(a)
}

/// Only the lines the host uses, to keep each tick small.
fn filter(name: &str, text: String) -> String {
    match name {
        "meminfo" => text
            .lines()
            .filter(|l| l.starts_with("MemAvailable:") || l.starts_with("MemTotal:") || l.starts_with("SwapTotal:"))
            .collect::<Vec<_>>()
            .join("\n"),
        "stat" => text.lines().next().unwrap_or("").to_string(),
        "vmstat" => text
            .lines()
            .filter(|l| l.starts_with("pgmajfault ") || l.starts_with("pswpin ") || l.starts_with("pswpout "))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => text,
    }
}

#[path = "../guest/pidstat.rs"]
mod pidstat;

/// This process's own CPU time.
fn own_cpu_seconds() -> Option<f64> {
    pidstat::cpu_seconds(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("perfvm-probe: {e}");
            std::process::exit(2);
        }
    };
    let stop = format!("{}.stop", args.out);
    // A fresh file and no stale stop marker from an earlier run in this guest.
    let _ = std::fs::remove_file(&stop);
    let mut out = match std::fs::OpenOptions::new().create(true).write(true).truncate(true).open(&args.out) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("perfvm-probe: {}: {e}", args.out);
            std::process::exit(1);
        }
    };
    let t0 = Instant::now();
    let mut next = t0;
    while t0.elapsed() < args.max {
        let mut files = serde_json::Map::new();
        let cgroup_files: &[&str] = if args.memory_only { &CGROUP_FILES[..1] } else { &CGROUP_FILES };
        let proc_files: &[(&str, &str)] = if args.memory_only { &PROC_FILES[..1] } else { &PROC_FILES };
        for &f in cgroup_files {
            // A missing file (cgroup gone between restarts, no PSI) is left out, never faked.
            if let Ok(text) = std::fs::read_to_string(format!("{}/{f}", args.cgroup)) {
                files.insert(f.to_string(), filter(f, text).into());
            }
        }
        for &(name, path) in proc_files {
            if let Ok(text) = std::fs::read_to_string(path) {
                files.insert(name.to_string(), filter(name, text).into());
            }
        }
        // The probe's own CPU time, so its cost is part of every measurement.
        let mut line = serde_json::json!({"t": t0.elapsed().as_secs_f64(), "cpu_s": own_cpu_seconds(), "files": files}).to_string();
        line.push('\n');
        // One write per line: a reader never sees a line split by us mid-way.
        if out.write_all(line.as_bytes()).is_err() {
            eprintln!("perfvm-probe: cannot write {}", args.out);
            std::process::exit(1);
        }
        if std::path::Path::new(&stop).exists() {
            return;
        }
        next += args.interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}
