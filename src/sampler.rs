//! Sampling while the upload runs, on its own thread (libvirt and agent calls block).
//!
//! Guest side: `perfvm-probe` (started in the guest through the agent) appends the target unit's
//! cgroup files (memory, CPU, I/O, pressure) and guest-wide /proc files to a file once per
//! interval; the host reads what is new with one agent call about twice a second and writes one
//! row per probe tick (its guest time in `probe_t_seconds`). Host side: the qemu process's
//! RSS and CPU time (procfs) and libvirt's balloon stats. Rows go to the samples CSV as they are
//! taken, so a crash keeps what was sampled. If the probe cannot start, memory.current and
//! MemAvailable are read directly through the agent instead, and the other columns stay empty.

use crate::guest::agent::Agent;
use crate::guest::memory;
use crate::guest::probe::{self, ProbeTick};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use virt::domain::Domain;

/// Where the probe writes in the guest (tmpfs: no disk I/O charged to anyone).
const PROBE_OUT: &str = "/run/perfvm-probe.jsonl";
pub const PROBE_BIN: &str = "/usr/local/bin/perfvm-probe";

/// One row of `samples.csv`. Units are in the column names; an unreadable source is empty.
/// Cumulative counters are as the kernel reports them (they restart with a restarted unit);
/// `*_percent` columns are over the time since the previous row.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Sample {
    pub t_seconds: f64,
    pub uploaded_bytes: u64,
    pub cgroup_memory_current_bytes: Option<u64>,
    pub guest_mem_available_bytes: Option<u64>,
    pub host_qemu_rss_bytes: Option<u64>,
    pub balloon_actual_bytes: Option<u64>,
    pub balloon_usable_bytes: Option<u64>,
    pub balloon_rss_bytes: Option<u64>,
    /// Guest time of the probe tick this row's guest columns come from; empty when the probe had
    /// no new tick since the previous row (its columns are then empty too, never repeated).
    pub probe_t_seconds: Option<f64>,
    pub target_cpu_usage_usec: Option<u64>,
    pub target_cpu_user_usec: Option<u64>,
    pub target_cpu_system_usec: Option<u64>,
    pub target_cpu_percent: Option<f64>,
    pub target_io_read_bytes: Option<u64>,
    pub target_io_write_bytes: Option<u64>,
    pub target_io_read_ops: Option<u64>,
    pub target_io_write_ops: Option<u64>,
    pub cpu_pressure_some_avg10_percent: Option<f64>,
    pub cpu_pressure_some_total_usec: Option<u64>,
    pub memory_pressure_some_avg10_percent: Option<f64>,
    pub memory_pressure_full_avg10_percent: Option<f64>,
    pub memory_pressure_some_total_usec: Option<u64>,
    pub memory_pressure_full_total_usec: Option<u64>,
    pub io_pressure_some_avg10_percent: Option<f64>,
    pub io_pressure_full_avg10_percent: Option<f64>,
    pub io_pressure_some_total_usec: Option<u64>,
    pub io_pressure_full_total_usec: Option<u64>,
    /// Busy share of all the guest's vCPUs (not of one CPU like the target's and qemu's).
    pub guest_cpu_busy_all_cpus_percent: Option<f64>,
    pub guest_pgmajfault: Option<u64>,
    pub guest_pswpin: Option<u64>,
    pub guest_pswpout: Option<u64>,
    pub host_qemu_cpu_seconds: Option<f64>,
    pub host_qemu_cpu_percent: Option<f64>,
    /// `upload`, or `download` for rows taken while the file is fetched back (`--download`).
    #[serde(default)]
    pub phase: String,
    #[serde(default)]
    pub downloaded_bytes: u64,
    /// What the target's memory is, from memory.stat (empty where the kernel lacks a key).
    /// `file` is page cache, tmpfs included; the working set is memory.current − inactive_file.
    #[serde(default)]
    pub cgroup_memory_anon_bytes: Option<u64>,
    #[serde(default)]
    pub cgroup_memory_file_bytes: Option<u64>,
    #[serde(default)]
    pub cgroup_memory_kernel_bytes: Option<u64>,
    #[serde(default)]
    pub cgroup_memory_sock_bytes: Option<u64>,
    #[serde(default)]
    pub cgroup_memory_shmem_bytes: Option<u64>,
    #[serde(default)]
    pub cgroup_memory_file_dirty_bytes: Option<u64>,
    #[serde(default)]
    pub cgroup_memory_file_writeback_bytes: Option<u64>,
    #[serde(default)]
    pub cgroup_memory_active_file_bytes: Option<u64>,
    #[serde(default)]
    pub cgroup_memory_inactive_file_bytes: Option<u64>,
    #[serde(default)]
    pub cgroup_memory_working_set_bytes: Option<u64>,
}

impl Sample {
    /// Fill the memory.stat columns (and the working set) from one reading.
    fn set_memory_stat(&mut self, m: &memory::MemoryStat) {
        self.cgroup_memory_anon_bytes = m.anon;
        self.cgroup_memory_file_bytes = m.file;
        self.cgroup_memory_kernel_bytes = m.kernel;
        self.cgroup_memory_sock_bytes = m.sock;
        self.cgroup_memory_shmem_bytes = m.shmem;
        self.cgroup_memory_file_dirty_bytes = m.file_dirty;
        self.cgroup_memory_file_writeback_bytes = m.file_writeback;
        self.cgroup_memory_active_file_bytes = m.active_file;
        self.cgroup_memory_inactive_file_bytes = m.inactive_file;
        self.cgroup_memory_working_set_bytes = memory::working_set(self.cgroup_memory_current_bytes, m);
    }
}

/// What the sampler saw, for the result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleSummary {
    pub count: u64,
    /// Highest memory.current sampled (the kernel's own high-water mark, memory.peak, is exact;
    /// this one can miss a spike between two samples).
    pub peak_cgroup_memory_bytes: Option<u64>,
    /// Highest of each part of memory.stat, and of the working set, over the samples.
    pub peak_working_set_bytes: Option<u64>,
    pub peak_anon_bytes: Option<u64>,
    pub peak_file_bytes: Option<u64>,
    pub peak_kernel_bytes: Option<u64>,
    pub peak_sock_bytes: Option<u64>,
    pub peak_file_dirty_bytes: Option<u64>,
    pub min_guest_mem_available_bytes: Option<u64>,
    pub peak_host_qemu_rss_bytes: Option<u64>,
    /// Mean seconds between samples (how close we came to the requested interval).
    pub mean_interval_seconds: Option<f64>,
    /// Seconds the sampler ran (the denominator of its cost).
    pub wall_seconds: Option<f64>,
    /// Sums of counter increases (a counter that went down was reset by a restart: its new
    /// value is the increase).
    pub target_cpu_seconds: Option<f64>,
    pub target_io_read_bytes: Option<u64>,
    pub target_io_write_bytes: Option<u64>,
    pub memory_stall_some_seconds: Option<f64>,
    pub peak_target_cpu_percent: Option<f64>,
    pub peak_memory_pressure_some_avg10: Option<f64>,
    pub peak_memory_pressure_full_avg10: Option<f64>,
    pub host_qemu_cpu_seconds: Option<f64>,
    /// CPU the sampling itself cost: this thread on the host, the probe in the guest.
    pub sampler_thread_cpu_seconds: Option<f64>,
    pub probe_cpu_seconds: Option<f64>,
    /// The probe did not run: only memory was sampled (directly through the agent).
    pub probe_error: Option<String>,
    /// Running totals in integer units, and the last value seen of each counter (a counter
    /// may be absent for a while, e.g. while systemd recreates the unit's cgroup).
    cpu_usec: Option<u64>,
    io_r: Option<u64>,
    io_w: Option<u64>,
    stall_usec: Option<u64>,
    last: Counters,
    /// Probe time of the first and the latest row, and the rows that had one.
    probe_span: Option<(f64, f64)>,
    probe_rows: u64,
    /// Host time of the first and the latest row.
    host_span: Option<(f64, f64)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Counters {
    cpu_usec: Option<u64>,
    io_r: Option<u64>,
    io_w: Option<u64>,
    stall_usec: Option<u64>,
    /// (probe t, cpu usage) of the last row that had both, for CPU %.
    cpu_at: Option<(f64, u64)>,
    /// (host t, qemu cpu seconds).
    qemu_at: Option<(f64, f64)>,
}

/// The larger known value (f64 is not `Ord`, so `Option::max` does not apply).
fn opt_max<T: PartialOrd + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y > x { y } else { x }),
        (x, y) => x.or(y),
    }
}

fn opt_min(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// Fold a counter reading into a running total: the increase since the last value seen; a
/// value below it means the counter was reset (unit restarted) and counts whole. The first
/// reading only sets the baseline: a total needs two readings, so a source read once (a
/// sampling interval longer than the upload) stays unknown rather than 0.
fn accumulate(total: &mut Option<u64>, last: &mut Option<u64>, cur: Option<u64>) {
    let Some(c) = cur else { return };
    if let Some(l) = *last {
        *total = Some(total.unwrap_or(0) + if c >= l { c - l } else { c });
    }
    *last = Some(c);
}

impl SampleSummary {
    /// Close a phase: the achieved mean interval between rows. On the probe's clock when most
    /// rows are probe ticks (a last row read directly at the end does not change that), else on
    /// the host's, over the rows' own times. Never the phase's wall time over the row count:
    /// the first batch holds ticks the probe wrote before the sampler started, which made the
    /// interval look shorter than asked (98.8 ms at 100 ms in CI).
    fn finish_phase(&mut self) {
        self.mean_interval_seconds = match (self.probe_span, self.host_span) {
            (Some((a, b)), _) if self.probe_rows >= 2 && self.probe_rows * 2 >= self.count => {
                Some((b - a) / (self.probe_rows - 1) as f64)
            }
            (_, Some((a, b))) if self.count >= 2 => Some((b - a) / (self.count - 1) as f64),
            _ => None,
        };
    }

    /// Fill in the per-interval columns of `s` and fold it in.
    pub fn add(&mut self, s: &mut Sample) {
        // CPU %: over the probe's own clock between the two ticks, never the host's.
        if let (Some(t), Some(u)) = (s.probe_t_seconds, s.target_cpu_usage_usec) {
            if let Some((pt, pu)) = self.last.cpu_at {
                let inc = if u >= pu { u - pu } else { u };
                if t > pt {
                    s.target_cpu_percent = Some(round2(inc as f64 / 1e4 / (t - pt)));
                }
            }
            self.last.cpu_at = Some((t, u));
        }
        if let Some(q) = s.host_qemu_cpu_seconds {
            if let Some((pt, pq)) = self.last.qemu_at {
                if s.t_seconds > pt {
                    s.host_qemu_cpu_percent = Some(round2((q - pq).max(0.0) * 100.0 / (s.t_seconds - pt)));
                }
                self.host_qemu_cpu_seconds = Some(self.host_qemu_cpu_seconds.unwrap_or(0.0) + (q - pq).max(0.0));
            } else {
                self.host_qemu_cpu_seconds = Some(0.0);
            }
            self.last.qemu_at = Some((s.t_seconds, q));
        }
        accumulate(&mut self.cpu_usec, &mut self.last.cpu_usec, s.target_cpu_usage_usec);
        accumulate(&mut self.io_r, &mut self.last.io_r, s.target_io_read_bytes);
        accumulate(&mut self.io_w, &mut self.last.io_w, s.target_io_write_bytes);
        accumulate(&mut self.stall_usec, &mut self.last.stall_usec, s.memory_pressure_some_total_usec);
        self.target_cpu_seconds = self.cpu_usec.map(|u| u as f64 / 1e6);
        self.target_io_read_bytes = self.io_r;
        self.target_io_write_bytes = self.io_w;
        self.memory_stall_some_seconds = self.stall_usec.map(|u| u as f64 / 1e6);
        self.count += 1;
        self.host_span = Some((self.host_span.map_or(s.t_seconds, |(a, _)| a), s.t_seconds));
        if let Some(t) = s.probe_t_seconds {
            self.probe_rows += 1;
            self.probe_span = Some((self.probe_span.map_or(t, |(a, _)| a), t));
        }
        // `Option::max` keeps a known value over None; the minimum needs care (None < Some).
        self.peak_cgroup_memory_bytes = self.peak_cgroup_memory_bytes.max(s.cgroup_memory_current_bytes);
        self.peak_working_set_bytes = self.peak_working_set_bytes.max(s.cgroup_memory_working_set_bytes);
        self.peak_anon_bytes = self.peak_anon_bytes.max(s.cgroup_memory_anon_bytes);
        self.peak_file_bytes = self.peak_file_bytes.max(s.cgroup_memory_file_bytes);
        self.peak_kernel_bytes = self.peak_kernel_bytes.max(s.cgroup_memory_kernel_bytes);
        self.peak_sock_bytes = self.peak_sock_bytes.max(s.cgroup_memory_sock_bytes);
        self.peak_file_dirty_bytes = self.peak_file_dirty_bytes.max(s.cgroup_memory_file_dirty_bytes);
        self.min_guest_mem_available_bytes = opt_min(self.min_guest_mem_available_bytes, s.guest_mem_available_bytes);
        self.peak_host_qemu_rss_bytes = self.peak_host_qemu_rss_bytes.max(s.host_qemu_rss_bytes);
        self.peak_target_cpu_percent = opt_max(self.peak_target_cpu_percent, s.target_cpu_percent);
        self.peak_memory_pressure_some_avg10 = opt_max(self.peak_memory_pressure_some_avg10, s.memory_pressure_some_avg10_percent);
        self.peak_memory_pressure_full_avg10 = opt_max(self.peak_memory_pressure_full_avg10, s.memory_pressure_full_avg10_percent);
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Where the sampler reads from.
pub struct Sources {
    pub domain: Domain,
    pub agent: Agent,
    pub cgroup_dir: String,
    pub qemu_pid: Option<i32>,
    probe: Option<Probe>,
}

struct Probe {
    handle: i64,
    buf: Vec<u8>,
    /// The probe's CPU time in the newest tick read.
    last_cpu: Option<f64>,
    /// Host ticks since the probe's file was last read, and how many host ticks one read
    /// serves: the guest agent's CPU is per call, so the ticks are fetched in batches.
    since_pull: usize,
    pull_every: usize,
    /// Host-side readings since the last read, to pair with the ticks it brings.
    host: Vec<Sample>,
    /// Ticks read while starting, for the first rows.
    carry: Vec<ProbeTick>,
    /// Host ticks in a row without a new probe tick.
    stale: u32,
    /// Guest-wide (busy, total) jiffies at the previous row, for the busy percentage.
    prev_jiffies: Option<(u64, u64)>,
    first_cpu: Option<f64>,
}

/// How often the probe's file is read: about twice a second, every host tick when the
/// interval is longer than that. Pure.
pub fn pull_every(interval: Duration) -> usize {
    ((500 / interval.as_millis().max(1)) as usize).clamp(1, 10)
}

/// The host reading to pair with each tick of a batch read at host time `now`. The newest tick
/// was written just before `now`; the others, earlier by their distance on the probe's clock.
/// Each gets the reading nearest that estimate. Pure.
pub fn pair(tick_ts: &[f64], host_ts: &[f64], now: f64) -> Vec<usize> {
    let Some(&newest) = tick_ts.last() else { return Vec::new() };
    tick_ts
        .iter()
        .map(|&t| {
            let est = now - (newest - t);
            (0..host_ts.len()).min_by(|&a, &b| (host_ts[a] - est).abs().total_cmp(&(host_ts[b] - est).abs())).unwrap_or(0)
        })
        .collect()
}

impl Sources {
    pub fn new(domain: Domain, agent: Agent, cgroup_dir: String, qemu_pid: Option<i32>) -> Sources {
        Sources { domain, agent, cgroup_dir, qemu_pid, probe: None }
    }

    /// Start the probe in the guest and wait for its first line. Blocking.
    pub fn start_probe(&mut self, interval: Duration, memory_only: bool, max: Duration) -> Result<(), String> {
        let a = &self.agent;
        let ms = interval.as_millis().to_string();
        let secs = max.as_secs().max(1).to_string();
        let mut args = vec!["--cgroup", &self.cgroup_dir, "--out", PROBE_OUT, "--interval-ms", &ms, "--max-seconds", &secs];
        if memory_only {
            args.push("--memory-only");
        }
        a.spawn(PROBE_BIN, &args).map_err(|e| format!("cannot start {PROBE_BIN}: {e}"))?;
        let t0 = Instant::now();
        let stop = || {
            let _ = a.touch(&format!("{PROBE_OUT}.stop"));
        };
        let handle = loop {
            match a.open(PROBE_OUT, "r") {
                Ok(h) => break h,
                Err(e) if t0.elapsed() > Duration::from_secs(10) => {
                    stop();
                    return Err(format!("the probe wrote nothing: {e}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let mut p = Probe {
            handle,
            buf: Vec::new(),
            last_cpu: None,
            since_pull: 0,
            pull_every: pull_every(interval),
            host: Vec::new(),
            carry: Vec::new(),
            stale: 0,
            prev_jiffies: None,
            first_cpu: None,
        };
        while p.carry.is_empty() {
            if t0.elapsed() > Duration::from_secs(10) {
                a.close(handle);
                stop();
                return Err("the probe wrote no complete line".into());
            }
            p.carry = Self::pull(a, &mut p);
            std::thread::sleep(Duration::from_millis(20));
        }
        p.first_cpu = p.last_cpu;
        self.probe = Some(p);
        Ok(())
    }

    /// The ticks written since the last read, oldest first.
    fn pull(agent: &Agent, p: &mut Probe) -> Vec<ProbeTick> {
        p.buf.extend(agent.read_new(p.handle));
        p.since_pull = 0;
        let mut ticks = std::mem::take(&mut p.carry);
        ticks.extend(probe::take_lines(&mut p.buf).iter().filter_map(|l| probe::parse_line(l)));
        if let Some(c) = ticks.iter().rev().find_map(|t| t.probe_cpu_seconds) {
            p.last_cpu = Some(c);
        }
        ticks
    }

    /// Stop the probe (it sees the stop file within one interval) and close its file.
    /// Returns the probe's CPU seconds while sampling.
    pub fn stop_probe(&mut self) -> Option<f64> {
        let mut p = self.probe.take()?;
        let _ = self.agent.touch(&format!("{PROBE_OUT}.stop"));
        std::thread::sleep(Duration::from_millis(200));
        Self::pull(&self.agent, &mut p);
        self.agent.close(p.handle);
        match (p.first_cpu, p.last_cpu) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        }
    }

    /// Take the host-side readings now; return the rows that are complete. With the probe, a
    /// row is one probe tick (its guest time in `probe_t_seconds`) with the host reading
    /// nearest to it, and ticks are fetched every [`pull_every`] host ticks, or now with `drain`
    /// (the end, a phase change): so most calls return no row, and one call a batch. Without
    /// the probe every call is a row, read directly.
    pub fn samples(&mut self, t_seconds: f64, uploaded: u64, drain: bool) -> Vec<Sample> {
        let mut host = Sample { t_seconds: (t_seconds * 1000.0).round() / 1000.0, uploaded_bytes: uploaded, ..Default::default() };
        if let Some(pid) = self.qemu_pid {
            host.host_qemu_rss_bytes = crate::proc::rss_bytes(pid);
            host.host_qemu_cpu_seconds = crate::proc::cpu_seconds(pid);
        }
        if let Ok(stats) = self.domain.memory_stats(0) {
            for st in stats {
                // libvirt reports KiB; tags from virDomainMemoryStatTags.
                let v = Some(st.val * 1024);
                match st.tag {
                    virt::sys::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON => host.balloon_actual_bytes = v,
                    virt::sys::VIR_DOMAIN_MEMORY_STAT_USABLE => host.balloon_usable_bytes = v,
                    virt::sys::VIR_DOMAIN_MEMORY_STAT_RSS => host.balloon_rss_bytes = v,
                    _ => {}
                }
            }
        }
        let Some(p) = self.probe.as_mut() else {
            self.direct(&mut host);
            return vec![host];
        };
        p.host.push(host);
        // A probe that stopped ticking is asked every host tick, and each one becomes a row.
        if !drain && p.stale < 10 && p.since_pull + 1 < p.pull_every {
            p.since_pull += 1;
            return Vec::new();
        }
        let ticks = Self::pull(&self.agent, p);
        let host_ts: Vec<f64> = p.host.iter().map(|h| h.t_seconds).collect();
        let tick_ts: Vec<f64> = ticks.iter().map(|t| t.t).collect();
        let mut rows = Vec::new();
        for (tick, i) in ticks.iter().zip(pair(&tick_ts, &host_ts, t_seconds)) {
            let mut s = p.host[i].clone();
            fill_from_probe(&mut s, tick, &mut p.prev_jiffies);
            rows.push(s);
        }
        let newest = p.host.pop().expect("pushed above");
        p.host.clear();
        if rows.is_empty() {
            p.stale += if p.stale < 10 { p.pull_every as u32 } else { 1 };
            // No new tick for a while: the probe died (or the guest is stalled); keep measuring
            // memory directly rather than leave the rows out.
            if p.stale >= 10 || drain {
                let mut s = newest;
                if p.stale >= 10 {
                    self.direct(&mut s);
                }
                rows.push(s);
            }
        } else {
            p.stale = 0;
        }
        rows
    }

    /// memory.current, memory.stat and MemAvailable read through the agent, without the probe.
    fn direct(&self, s: &mut Sample) {
        s.cgroup_memory_current_bytes = self.agent.read_string(&format!("{}/memory.current", self.cgroup_dir)).ok().and_then(|t| memory::cgroup_number(&t));
        if let Ok(t) = self.agent.read_string(&format!("{}/memory.stat", self.cgroup_dir)) {
            s.set_memory_stat(&memory::memory_stat(&t));
        }
        s.guest_mem_available_bytes = self.agent.read_string("/proc/meminfo").ok().and_then(|t| memory::mem_available(&t));
    }
}

fn fill_from_probe(s: &mut Sample, t: &ProbeTick, prev_jiffies: &mut Option<(u64, u64)>) {
    s.probe_t_seconds = Some((t.t * 1000.0).round() / 1000.0);
    s.cgroup_memory_current_bytes = t.memory_current;
    if let Some(m) = &t.memory_stat {
        s.set_memory_stat(m);
    }
    s.guest_mem_available_bytes = t.mem_available;
    s.target_cpu_usage_usec = t.cpu_usage_usec;
    s.target_cpu_user_usec = t.cpu_user_usec;
    s.target_cpu_system_usec = t.cpu_system_usec;
    s.target_io_read_bytes = t.io_rbytes;
    s.target_io_write_bytes = t.io_wbytes;
    s.target_io_read_ops = t.io_rios;
    s.target_io_write_ops = t.io_wios;
    s.cpu_pressure_some_avg10_percent = t.cpu_pressure.some_avg10;
    s.cpu_pressure_some_total_usec = t.cpu_pressure.some_total_usec;
    s.memory_pressure_some_avg10_percent = t.memory_pressure.some_avg10;
    s.memory_pressure_full_avg10_percent = t.memory_pressure.full_avg10;
    s.memory_pressure_some_total_usec = t.memory_pressure.some_total_usec;
    s.memory_pressure_full_total_usec = t.memory_pressure.full_total_usec;
    s.io_pressure_some_avg10_percent = t.io_pressure.some_avg10;
    s.io_pressure_full_avg10_percent = t.io_pressure.full_avg10;
    s.io_pressure_some_total_usec = t.io_pressure.some_total_usec;
    s.io_pressure_full_total_usec = t.io_pressure.full_total_usec;
    s.guest_pgmajfault = t.pgmajfault;
    s.guest_pswpin = t.pswpin;
    s.guest_pswpout = t.pswpout;
    if let Some((busy, total)) = t.guest_cpu_jiffies {
        if let Some((pb, pt)) = *prev_jiffies
            && total > pt {
                s.guest_cpu_busy_all_cpus_percent = Some(round2((busy.saturating_sub(pb)) as f64 * 100.0 / (total - pt) as f64));
            }
        *prev_jiffies = Some((busy, total));
    }
}

fn thread_cpu_seconds() -> Option<f64> {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).ok()?;
    Some(ts.tv_sec() as f64 + ts.tv_nsec() as f64 / 1e9)
}

pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Result<PhaseSummaries, String>>>,
}

/// What the workload tells the sampler: bytes moved so far, and the phase (upload, then
/// download). Shared with the HTTP side.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub uploaded: Arc<AtomicU64>,
    pub downloaded: Arc<AtomicU64>,
    downloading: Arc<AtomicBool>,
}

impl Progress {
    pub fn start_download(&self) {
        self.downloading.store(true, Ordering::Relaxed);
    }
}

/// The summary of the upload and, when the file was fetched back, of the download. Counters and
/// rates run on across the switch; peaks and totals are per phase. The sampler's own cost
/// (thread, probe, wall time) is in `upload` and covers both phases.
#[derive(Debug, Clone, Default)]
pub struct PhaseSummaries {
    pub upload: SampleSummary,
    pub download: Option<SampleSummary>,
}

/// A sampler dropped without `stop` (its cell was cut short) stops too, rather than polling a
/// destroyed domain for the rest of the process.
impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Sampler {
    /// Start sampling every `interval` into `csv_path` until [`Sampler::stop`]. The probe must
    /// already run (or have failed: `probe_error`).
    pub fn start(
        mut sources: Sources,
        interval: Duration,
        progress: Progress,
        csv_path: PathBuf,
        probe_error: Option<String>,
    ) -> std::io::Result<Sampler> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let mut writer = csv::Writer::from_path(&csv_path)?;
        let handle = std::thread::Builder::new().name("perfvm-sampler".into()).spawn(move || {
            let cpu0 = thread_cpu_seconds();
            let t0 = Instant::now();
            let mut summary = SampleSummary { probe_error, ..Default::default() };
            let mut upload: Option<SampleSummary> = None;
            let mut next = t0;
            let mut last_flush = t0;
            // At least one sample, even for an upload shorter than the interval.
            loop {
                let stopping = flag.load(Ordering::Relaxed);
                if stopping {
                    // Let the probe write one more line, so the last row sees the upload's end.
                    std::thread::sleep(interval.min(Duration::from_secs(1)));
                }
                let switching = upload.is_none() && progress.downloading.load(Ordering::Relaxed);
                let t = t0.elapsed().as_secs_f64();
                let phase = if upload.is_some() { "download" } else { "upload" };
                // At a phase change the ticks taken so far still belong to the upload.
                for mut s in sources.samples(t, progress.uploaded.load(Ordering::Relaxed), stopping || switching) {
                    s.phase = phase.into();
                    s.downloaded_bytes = progress.downloaded.load(Ordering::Relaxed);
                    summary.add(&mut s);
                    writer.serialize(&s).map_err(|e| format!("samples CSV: {e}"))?;
                }
                if switching {
                    // Peaks and totals start over for the download; rates continue from the
                    // last counters seen.
                    summary.finish_phase();
                    let fresh = SampleSummary { probe_error: summary.probe_error.clone(), last: summary.last.clone(), ..Default::default() };
                    upload = Some(std::mem::replace(&mut summary, fresh));
                }
                if last_flush.elapsed() >= Duration::from_secs(1) {
                    writer.flush().map_err(|e| format!("samples CSV: {e}"))?;
                    last_flush = Instant::now();
                }
                if stopping {
                    break;
                }
                next += interval;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    // Sampling is slower than the interval: do not try to catch up in a burst.
                    next = now;
                }
            }
            writer.flush().map_err(|e| format!("samples CSV: {e}"))?;
            summary.finish_phase();
            let (mut up, down) = match upload {
                Some(u) => (u, Some(summary)),
                None => (summary, None),
            };
            up.probe_cpu_seconds = sources.stop_probe();
            up.sampler_thread_cpu_seconds = match (cpu0, thread_cpu_seconds()) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            };
            up.wall_seconds = Some(t0.elapsed().as_secs_f64());
            Ok(PhaseSummaries { upload: up, download: down })
        })?;
        Ok(Sampler { stop, handle: Some(handle) })
    }

    /// Stop after one final sample and return the summaries.
    pub fn stop(mut self) -> Result<PhaseSummaries, String> {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.handle.take().expect("stopped once");
        handle.join().map_err(|_| "sampler thread panicked".to_string())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_tracks_peaks_and_minimum_ignoring_gaps() {
        let mut sum = SampleSummary::default();
        let mk = |cur: Option<u64>, avail: Option<u64>, rss: Option<u64>| Sample {
            cgroup_memory_current_bytes: cur,
            guest_mem_available_bytes: avail,
            host_qemu_rss_bytes: rss,
            ..Default::default()
        };
        sum.add(&mut mk(Some(10), Some(500), None));
        sum.add(&mut mk(None, Some(300), Some(7)));
        sum.add(&mut mk(Some(30), None, Some(5)));
        assert_eq!(sum.count, 3);
        assert_eq!(sum.peak_cgroup_memory_bytes, Some(30));
        assert_eq!(sum.min_guest_mem_available_bytes, Some(300));
        assert_eq!(sum.peak_host_qemu_rss_bytes, Some(7));
    }

    #[test]
    fn memory_parts_peak_separately_and_the_working_set_leaves_out_inactive_cache() {
        let mut sum = SampleSummary::default();
        let tick = |current: u64, anon: u64, file: u64, inactive: u64| {
            let mut s = Sample { cgroup_memory_current_bytes: Some(current), ..Default::default() };
            let m = memory::MemoryStat { anon: Some(anon), file: Some(file), kernel: Some(current - anon - file), inactive_file: Some(inactive), ..Default::default() };
            s.set_memory_stat(&m);
            s
        };
        // A server streaming to disk: the cache grows, anon stays small.
        let mut a = tick(110, 5, 100, 98);
        sum.add(&mut a);
        assert_eq!(a.cgroup_memory_working_set_bytes, Some(12));
        sum.add(&mut tick(210, 6, 200, 150));
        sum.add(&mut tick(150, 4, 140, 139));
        assert_eq!(sum.peak_cgroup_memory_bytes, Some(210));
        assert_eq!(sum.peak_working_set_bytes, Some(60));
        assert_eq!(sum.peak_anon_bytes, Some(6));
        assert_eq!(sum.peak_file_bytes, Some(200));
        assert_eq!(sum.peak_kernel_bytes, Some(6));
        // A row without memory.stat (the probe died, an old kernel) changes no part's peak.
        sum.add(&mut Sample { cgroup_memory_current_bytes: Some(300), ..Default::default() });
        assert_eq!(sum.peak_working_set_bytes, Some(60));
        assert_eq!(sum.peak_cgroup_memory_bytes, Some(300));
    }

    #[test]
    fn counters_become_rates_and_survive_a_reset() {
        let mut sum = SampleSummary::default();
        let mk = |t: f64, cpu: u64, w: u64, stall: u64, qemu: f64| Sample {
            t_seconds: t,
            probe_t_seconds: Some(t),
            target_cpu_usage_usec: Some(cpu),
            target_io_write_bytes: Some(w),
            memory_pressure_some_total_usec: Some(stall),
            host_qemu_cpu_seconds: Some(qemu),
            ..Default::default()
        };
        let mut a = mk(0.0, 1_000_000, 100, 0, 10.0);
        sum.add(&mut a);
        assert_eq!(a.target_cpu_percent, None, "no rate without a previous row");
        let mut b = mk(0.5, 1_250_000, 1100, 200_000, 10.5);
        sum.add(&mut b);
        assert_eq!(b.target_cpu_percent, Some(50.0));
        assert_eq!(b.host_qemu_cpu_percent, Some(100.0));
        // The unit restarted: counters start again from zero.
        let mut c = mk(1.0, 100_000, 50, 300_000, 11.0);
        sum.add(&mut c);
        assert_eq!(sum.target_cpu_seconds, Some(0.35));
        assert_eq!(sum.target_io_write_bytes, Some(1050));
        assert_eq!(sum.memory_stall_some_seconds, Some(0.3));
        assert_eq!(sum.host_qemu_cpu_seconds, Some(1.0));
        assert_eq!(sum.peak_target_cpu_percent, Some(50.0));
    }

    #[test]
    fn ticks_are_fetched_in_batches_and_paired_with_the_nearest_host_reading() {
        assert_eq!(pull_every(Duration::from_millis(100)), 5);
        assert_eq!(pull_every(Duration::from_millis(1000)), 1);
        assert_eq!(pull_every(Duration::from_millis(10)), 10);
        // Five ticks 0.1 s apart on the probe's clock (which started earlier), host readings
        // every 0.1 s; the batch is read at host time 1.0.
        let ticks = [7.05, 7.15, 7.25, 7.35, 7.45];
        let host = [0.6, 0.7, 0.8, 0.9, 1.0];
        assert_eq!(pair(&ticks, &host, 1.0), vec![0, 1, 2, 3, 4]);
        // A slow read: two ticks map to one reading rather than to ones that do not exist.
        assert_eq!(pair(&[1.0, 1.4, 1.5], &[0.5, 1.0], 1.0), vec![0, 1, 1]);
        assert_eq!(pair(&[], &host, 1.0), Vec::<usize>::new());
    }

    #[test]
    fn the_interval_achieved_is_on_the_probes_clock_when_rows_are_ticks() {
        let mut sum = SampleSummary::default();
        // The first batch: ticks the probe wrote before the sampler started, all paired with
        // the first host reading (t 0.0); then batches read late.
        for (t, host) in [(5.0, 0.0), (5.1, 0.0), (5.2, 0.0), (5.3, 0.05), (5.4, 0.3)] {
            sum.add(&mut Sample { t_seconds: host, probe_t_seconds: Some(t), ..Default::default() });
        }
        sum.finish_phase();
        assert!((sum.mean_interval_seconds.unwrap() - 0.1).abs() < 1e-9);
        // A last row read directly at the end (no new tick): still the ticks' interval.
        sum.add(&mut Sample { t_seconds: 0.4, ..Default::default() });
        sum.finish_phase();
        assert!((sum.mean_interval_seconds.unwrap() - 0.1).abs() < 1e-9);
        // A probe that died: rows read directly, on the host's clock, over the rows' own times.
        let mut direct = SampleSummary::default();
        for t in [1.0, 1.25, 1.5] {
            direct.add(&mut Sample { t_seconds: t, ..Default::default() });
        }
        direct.finish_phase();
        assert!((direct.mean_interval_seconds.unwrap() - 0.25).abs() < 1e-9);
        let mut one = SampleSummary::default();
        one.add(&mut Sample::default());
        one.finish_phase();
        assert_eq!(one.mean_interval_seconds, None, "one row has no interval");
    }

    #[test]
    fn guest_busy_share_from_jiffies() {
        let mut prev = None;
        let mut s = Sample::default();
        let mut t = ProbeTick { guest_cpu_jiffies: Some((100, 1000)), ..Default::default() };
        fill_from_probe(&mut s, &t, &mut prev);
        assert_eq!(s.guest_cpu_busy_all_cpus_percent, None);
        t.guest_cpu_jiffies = Some((150, 1100));
        fill_from_probe(&mut s, &t, &mut prev);
        assert_eq!(s.guest_cpu_busy_all_cpus_percent, Some(50.0));
    }

    #[test]
    fn a_counter_absent_for_a_while_counts_whole_when_it_returns() {
        let (mut total, mut last) = (None, None);
        accumulate(&mut total, &mut last, Some(500));
        assert_eq!(total, None, "one reading is a baseline, not a total");
        accumulate(&mut total, &mut last, Some(800));
        assert_eq!(total, Some(300));
        accumulate(&mut total, &mut last, None);
        // Recreated cgroup: a new counter that is already above the old one is still a reset
        // only if it went down; here it went down.
        accumulate(&mut total, &mut last, Some(200));
        assert_eq!(total, Some(500));
    }

    #[test]
    fn csv_header_names_units_and_leaves_unknown_empty() {
        let mut w = csv::Writer::from_writer(vec![]);
        w.serialize(Sample { t_seconds: 0.5, uploaded_bytes: 3, ..Default::default() }).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        let header = text.lines().next().unwrap();
        assert!(header.starts_with(
            "t_seconds,uploaded_bytes,cgroup_memory_current_bytes,guest_mem_available_bytes,host_qemu_rss_bytes,balloon_actual_bytes,balloon_usable_bytes,balloon_rss_bytes,"
        ));
        for col in header.split(',') {
            assert!(
                ["_seconds", "_bytes", "_usec", "_percent", "_ops", "pgmajfault", "pswpin", "pswpout", "phase"].iter().any(|u| col.ends_with(u)),
                "column {col} names no unit"
            );
        }
        let row = text.lines().nth(1).unwrap();
        assert!(row.starts_with("0.5,3,,"));
        for (col, v) in header.split(',').zip(row.split(',')) {
            if !["t_seconds", "uploaded_bytes", "downloaded_bytes"].contains(&col) {
                assert_eq!(v, "", "missing sources are empty, never zero: {col} in {row}");
            }
        }
    }
}
