//! perfvm-probe: the in-guest half of the sampler. Reads the target unit's cgroup files and a few
//! guest-wide /proc files every interval and appends them, raw, as one JSON line per tick to a
//! file the host reads through the guest agent. One agent call per tick on the host side instead
//! of three per file. Raw text goes out unparsed: the host parses (and tests) it.
//!
//! Bounded: stops when the stop file appears, or after --max-seconds, whichever comes first.
//!
//! `perfvm-probe --listening PORT --cgroup DIR` instead answers once whether a process of that
//! cgroup (the target's unit) has a socket listening on PORT: `yes` or `no` on stdout.
//! A plain binary (std and nix), so it runs on the bare guest image.
//!
//! Cheap per tick, since under emulation every guest instruction costs: each file is opened
//! once and read again from offset 0 (a cgroup or /proc file is regenerated on each read from
//! the start), which measured 1.3 ms of guest CPU per tick against 2.3 ms when opened anew.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// The memory files first: `--memory-only` reads just those (MEMORY_FILES of them).
const CGROUP_FILES: [&str; 8] =
    ["memory.current", "memory.stat", "memory.events", "cpu.stat", "io.stat", "cpu.pressure", "memory.pressure", "io.pressure"];
const MEMORY_FILES: usize = 2;
const PROC_FILES: [(&str, &str); 3] = [("meminfo", "/proc/meminfo"), ("stat", "/proc/stat"), ("vmstat", "/proc/vmstat")];

struct Args {
    cgroup: String,
    /// `--listening PORT`: answer once whether the cgroup's processes listen on PORT.
    listening: Option<u16>,
    out: String,
    interval: Duration,
    max: Duration,
    /// Memory only (memory.current, MemAvailable): to measure what the other sources cost.
    memory_only: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        cgroup: String::new(),
        listening: None,
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
            "--listening" => a.listening = Some(v.parse().map_err(|_| format!("bad --listening {v}"))?),
            "--interval-ms" => a.interval = Duration::from_millis(v.parse().map_err(|_| format!("bad --interval-ms {v}"))?),
            "--max-seconds" => a.max = Duration::from_secs(v.parse().map_err(|_| format!("bad --max-seconds {v}"))?),
            _ => return Err(format!("unknown option {k}")),
        }
    }
    if a.cgroup.is_empty() || (a.out.is_empty() && a.listening.is_none()) {
        return Err("usage: perfvm-probe --cgroup DIR (--out FILE [--interval-ms 100] [--max-seconds 3600] | --listening PORT)".into());
    }
    Ok(a)
}

/// Only the lines the host uses, to keep each tick small: `raw` filtered into `out`.
fn filter(name: &str, raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let keep: &[&[u8]] = match name {
        // The keys of perfvm::guest::memory::MEMORY_STAT_KEYS, each with its separator, so
        // `file ` does not also keep `file_mapped`.
        "memory.stat" => &[b"anon ", b"file ", b"kernel ", b"sock ", b"shmem ", b"file_dirty ", b"file_writeback ", b"active_file ", b"inactive_file "],
        "meminfo" => &[b"MemAvailable:", b"MemTotal:", b"SwapTotal:"],
        "vmstat" => &[b"pgmajfault ", b"pswpin ", b"pswpout "],
        // The first line: the all-CPU totals.
        "stat" => &[b"cpu "],
        _ => {
            out.extend_from_slice(raw);
            return;
        }
    };
    for line in raw.split(|&b| b == b'\n') {
        if keep.iter().any(|k| line.starts_with(k)) {
            if !out.is_empty() {
                out.push(b'\n');
            }
            out.extend_from_slice(line);
        }
    }
}

#[path = "../guest/tickline.rs"]
mod tickline;
#[path = "../guest/sockets.rs"]
#[allow(dead_code)]
mod sockets;

/// Whether a process of `cgroup` has a socket listening on `port`: its sockets' inodes (from
/// /proc/PID/fd) against the listeners in /proc/net/tcp and tcp6.
fn unit_listens(cgroup: &str, port: u16) -> Result<bool, String> {
    let procs = std::fs::read_to_string(format!("{cgroup}/cgroup.procs")).map_err(|e| format!("{cgroup}/cgroup.procs: {e}"))?;
    let mut listeners = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        // No IPv6 in the guest kernel: no tcp6 table, nothing listens there.
        if let Ok(t) = std::fs::read_to_string(table) {
            listeners.extend(sockets::listening_inodes(&t, port));
        }
    }
    if listeners.is_empty() {
        return Ok(false);
    }
    for pid in procs.split_whitespace() {
        // A process that exits while we look has no sockets left to count.
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for fd in fds.flatten() {
            let inode = std::fs::read_link(fd.path()).ok().and_then(|l| sockets::socket_inode(&l.to_string_lossy()));
            if inode.is_some_and(|i| listeners.contains(&i)) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// This process's own CPU time, from the scheduler's exact count (no file to read).
fn own_cpu_seconds() -> Option<f64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID).ok()?;
    Some(t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
}

/// A file read again each tick through one descriptor. A read that fails (the unit restarted
/// and systemd made a new cgroup; a file that did not exist yet) opens the path anew once.
struct Source {
    name: &'static str,
    path: String,
    file: Option<std::fs::File>,
    /// What the last tick kept of the file; None if it could not be read.
    text: Option<Vec<u8>>,
}

impl Source {
    fn new(name: &'static str, path: String) -> Source {
        let file = std::fs::File::open(&path).ok();
        Source { name, path, file, text: Some(Vec::new()) }
    }

    /// Read the file into `raw` and keep the filtered text.
    fn read(&mut self, raw: &mut Vec<u8>) {
        for fresh in [false, true] {
            if fresh || self.file.is_none() {
                self.file = std::fs::File::open(&self.path).ok();
            }
            let Some(f) = &self.file else { continue };
            if let Some(n) = read_whole(f, raw) {
                let mut text = self.text.take().unwrap_or_default();
                filter(self.name, &raw[..n], &mut text);
                self.text = Some(text);
                return;
            }
        }
        self.file = None;
        self.text = None;
    }
}

/// The whole file from offset 0, growing the buffer if it was too small.
fn read_whole(f: &std::fs::File, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        let n = f.read_at(buf, 0).ok()?;
        if n < buf.len() {
            return Some(n);
        }
        let len = buf.len() * 2;
        buf.resize(len, 0);
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("perfvm-probe: {e}");
            std::process::exit(2);
        }
    };
    if let Some(port) = args.listening {
        match unit_listens(&args.cgroup, port) {
            Ok(yes) => println!("{}", if yes { "yes" } else { "no" }),
            Err(e) => {
                eprintln!("perfvm-probe: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
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
    let cgroup_files: &[&'static str] = if args.memory_only { &CGROUP_FILES[..MEMORY_FILES] } else { &CGROUP_FILES };
    let proc_files: &[(&'static str, &str)] = if args.memory_only { &PROC_FILES[..1] } else { &PROC_FILES };
    let mut sources: Vec<Source> = cgroup_files
        .iter()
        .map(|&f| Source::new(f, format!("{}/{f}", args.cgroup)))
        .chain(proc_files.iter().map(|&(name, path)| Source::new(name, path.to_string())))
        .collect();
    let mut raw = vec![0u8; 16 * 1024];
    let mut line = Vec::with_capacity(4096);
    let t0 = Instant::now();
    let mut next = t0;
    while t0.elapsed() < args.max {
        for src in &mut sources {
            src.read(&mut raw);
        }
        // A missing file (cgroup gone between restarts, no PSI) is left out, never faked.
        let files: Vec<(&str, &[u8])> = sources.iter().filter_map(|s| Some((s.name, s.text.as_deref()?))).collect();
        // The probe's own CPU time, so its cost is part of every measurement.
        tickline::write_tick(&mut line, t0.elapsed().as_secs_f64(), own_cpu_seconds(), &files);
        // One write per line: a reader never sees a line split by us mid-way.
        if out.write_all(&line).is_err() {
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

#[cfg(test)]
mod tests {
    #[test]
    fn memory_stat_keeps_exactly_the_keys_the_host_reads() {
        let raw = b"anon 1\nanon_thp 9\nfile 2\nkernel 3\nkernel_stack 9\nsock 4\nshmem 5\nshmem_thp 9\nfile_mapped 9\nfile_dirty 6\nfile_writeback 7\ninactive_anon 9\nactive_anon 9\ninactive_file 8\nactive_file 9\n";
        let mut out = Vec::new();
        super::filter("memory.stat", raw, &mut out);
        let kept: Vec<&str> = std::str::from_utf8(&out).unwrap().lines().map(|l| l.split(' ').next().unwrap()).collect();
        let mut want = perfvm::guest::memory::MEMORY_STAT_KEYS.to_vec();
        let mut got = kept.clone();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want);
    }
}
