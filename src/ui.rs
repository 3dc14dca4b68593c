//! What a person sees: phase lines and an upload progress bar on stderr, a one-screen summary on
//! stdout. Plain lines when stderr is not a terminal (CI, nohup).

use crate::pipeline::{Phase, Reporter};
use crate::results::model::CellResult;
use crate::size::human;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static QUIET: AtomicBool = AtomicBool::new(false);

/// `-q`: no phase lines or progress from here on.
pub fn set_quiet(q: bool) {
    QUIET.store(q, Ordering::Relaxed);
}

pub struct ConsoleReporter {
    start: Instant,
    /// Bars on a terminal; plain lines otherwise (CI, nohup).
    multi: Option<indicatif::MultiProgress>,
    matrix_bar: Mutex<Option<indicatif::ProgressBar>>,
    uploads: Mutex<HashMap<String, Arc<AtomicBool>>>,
    /// `-q`: lines that say something (warnings, where results are) only; no progress.
    quiet: bool,
}

impl ConsoleReporter {
    pub fn new() -> ConsoleReporter {
        let quiet = QUIET.load(Ordering::Relaxed);
        let multi = (std::io::stderr().is_terminal() && !quiet).then(indicatif::MultiProgress::new);
        ConsoleReporter { start: Instant::now(), multi, matrix_bar: Mutex::new(None), uploads: Mutex::new(HashMap::new()), quiet }
    }

    /// A log line that does not tear the bars.
    pub fn line(&self, text: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    /// Matrix progress: a bar on a terminal, a line otherwise.
    pub fn matrix_progress(&self, done: usize, failed: usize, total: usize, remaining: usize, eta: &str) {
        if self.quiet {
            return;
        }
        let text = format!("{done}/{total} done ({failed} failed), {remaining} remaining, eta ~{eta}");
        let Some(m) = &self.multi else {
            eprintln!("[matrix] {text}");
            return;
        };
        let mut bar = self.matrix_bar.lock().unwrap();
        let b = bar.get_or_insert_with(|| {
            let b = m.insert(0, indicatif::ProgressBar::new(total as u64));
            b.set_style(
                indicatif::ProgressStyle::with_template("matrix [{bar:30}] {msg} (elapsed {elapsed})")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        b.set_length(total as u64);
        b.set_position(done as u64);
        b.set_message(text);
    }

    pub fn finish(&self) {
        if let Some(b) = self.matrix_bar.lock().unwrap().take() {
            b.finish_and_clear();
        }
    }
}

impl Default for ConsoleReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for ConsoleReporter {
    fn phase(&self, cell: &str, phase: Phase) {
        if self.quiet {
            return;
        }
        self.line(&format!("[{:7.1}s] {cell}: {}", self.start.elapsed().as_secs_f64(), phase.as_str()));
    }

    fn upload(&self, cell: &str, total: u64, sent: Arc<AtomicU64>) {
        if self.quiet {
            return;
        }
        let done = Arc::new(AtomicBool::new(false));
        self.uploads.lock().unwrap().insert(cell.to_string(), done.clone());
        let cell = cell.to_string();
        match &self.multi {
            Some(m) => {
                let bar = m.add(indicatif::ProgressBar::new(total));
                bar.set_style(
                    indicatif::ProgressStyle::with_template("  {msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar.set_message(cell);
                std::thread::spawn(move || {
                    while !done.load(Ordering::Relaxed) {
                        bar.set_position(sent.load(Ordering::Relaxed));
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    bar.finish_and_clear();
                });
            }
            None => {
                // One line every 10 s keeps CI logs alive without flooding them.
                std::thread::spawn(move || {
                    let t0 = Instant::now();
                    let mut last = Instant::now();
                    while !done.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(200));
                        if last.elapsed() >= Duration::from_secs(10) {
                            last = Instant::now();
                            let s = sent.load(Ordering::Relaxed);
                            eprintln!("  {cell}: uploaded {} of {} ({:.0} s)", human(s), human(total), t0.elapsed().as_secs_f64());
                        }
                    }
                });
            }
        }
    }

    fn upload_done(&self, cell: &str) {
        if let Some(done) = self.uploads.lock().unwrap().remove(cell) {
            done.store(true, Ordering::Relaxed);
        }
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "-".into())
}

fn secs(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}s")).unwrap_or_else(|| "-".into())
}

/// One screen about one cell.
pub fn summary(r: &CellResult, dir: &Path) -> String {
    let mut s = String::new();
    let verdict = if r.success { "SUCCESS".to_string() } else { format!("FAILED ({})", r.exit_reason) };
    s.push_str(&format!("\n{} — cell {} ({} MiB RAM, {} file, {}, {} vCPU)\n", verdict, r.cell, r.ram_mb, r.file_size, r.accel, r.cpus));
    s.push_str(&format!("  target        {} ({} mode), image {}\n", r.target.name, r.target.mode, r.image_id));
    if let Some(e) = &r.error {
        s.push_str(&format!("  error         {e}\n"));
    }
    let what = match r.concurrency {
        1 => human(r.file_size_bytes),
        n => format!("{n} × {}", human(r.file_size_bytes)),
    };
    s.push_str(&format!(
        "  upload        {what} ({}, {}) in {} → {} MiB/s, HTTP {}\n",
        r.content_kind,
        r.transfer,
        secs(r.duration_seconds),
        r.throughput_mbps.map(|t| format!("{t:.1}")).unwrap_or_else(|| "-".into()),
        opt(r.http_status)
    ));
    if r.uploads.len() > 1 {
        for u in &r.uploads {
            s.push_str(&format!(
                "    {}  {} → {} MiB/s, HTTP {}, verified {}\n",
                u.name,
                secs(u.duration_seconds),
                opt(u.throughput_mbps),
                opt(u.http_status),
                opt(u.verified)
            ));
        }
    }
    if let Some(d) = &r.download {
        s.push_str(&format!(
            "  download      {} in {} → {} MiB/s, HTTP {}, verified {}, target peak {}\n",
            human(d.bytes),
            secs(d.duration_seconds),
            opt(d.throughput_mbps),
            opt(d.http_status),
            opt(d.verified),
            d.peak_memory_bytes.map(human).unwrap_or_else(|| "-".into())
        ));
    }
    let of_ram = |b: u64| format!(" ({:.0}% of guest RAM)", 100.0 * b as f64 / (r.ram_mb as f64 * 1048576.0));
    let h = |b: Option<u64>| b.map(human).unwrap_or_else(|| "-".into());
    let metric = if r.peak_memory_metric == crate::results::model::METRIC_WORKING_SET { "working set" } else { "memory.peak" };
    s.push_str(&format!(
        "  target memory peak {} {}{}, initial {}\n",
        metric,
        h(r.peak_memory_bytes),
        r.peak_memory_bytes.map(of_ram).unwrap_or_default(),
        h(r.initial_memory_bytes),
    ));
    if let Some(m) = &r.memory {
        s.push_str(&format!(
            "                anon {}, page cache {} (dirty {}), kernel {}; memory.peak {} (page cache included; the samples' highest total was {} below it)\n",
            h(m.anon_peak_bytes),
            h(m.file_peak_bytes),
            h(m.file_dirty_peak_bytes),
            h(m.kernel_peak_bytes),
            h(m.cgroup_peak_bytes),
            h(m.sampled_below_cgroup_peak_bytes),
        ));
    }
    s.push_str(&format!(
        "  target cpu    {} s, avg {}%, peak {}%; disk written {}; memory pressure peak {} (some avg10), stalled {} s\n",
        opt(r.target_cpu_seconds),
        opt(r.target_cpu_avg_percent),
        opt(r.target_cpu_peak_percent),
        r.target_io_write_bytes.map(human).unwrap_or_else(|| "-".into()),
        opt(r.memory_pressure_peak_some_avg10),
        opt(r.memory_stall_some_seconds)
    ));
    s.push_str(&format!(
        "  host qemu     cpu {}% of a core during the upload\n",
        opt(r.host_qemu_cpu_avg_percent)
    ));
    if let Some(f) = &r.host_facts {
        s.push_str(&format!(
            "  host          {}, {} CPUs, kernel {}, governor {}, THP {}; load {} at start; during the upload {}% of its CPU on other work, {}% stolen\n",
            f.cpu_model.as_deref().unwrap_or("-"),
            opt(f.cpus),
            f.kernel.as_deref().unwrap_or("-"),
            f.governor.as_deref().unwrap_or("-"),
            f.thp.as_deref().unwrap_or("-"),
            opt(f.load1_at_start),
            opt(f.other_cpu_percent),
            opt(f.steal_percent),
        ));
        if let Some(w) = crate::hostfacts::noise_warning(f) {
            s.push_str(&format!("  WARNING       {w}\n"));
        }
    }
    if let Some(c) = &r.sampler_cost {
        s.push_str(&format!(
            "  sampler cost  {}% of one core (host thread {} s, guest probe {} s, guest agent {} s){}\n",
            opt(c.percent_of_one_core),
            opt(c.host_thread_cpu_seconds),
            opt(c.guest_probe_cpu_seconds),
            opt(c.guest_agent_cpu_seconds),
            c.probe_error.as_ref().map(|e| format!("; probe not running: {e}")).unwrap_or_default()
        ));
    }
    s.push_str(&format!(
        "  guest/host    min MemAvailable {}, host qemu peak RSS {}\n",
        r.guest_min_mem_available_bytes.map(human).unwrap_or_else(|| "-".into()),
        r.host_qemu_peak_rss_bytes.map(human).unwrap_or_else(|| "-".into())
    ));
    s.push_str(&format!(
        "  integrity     verified {}, oom kills {}, restarts {}{}\n",
        match (r.verified, r.verification.as_ref().map(hashed_where)) {
            (Some(true), how) => format!("yes (sha256 matches{})", how.unwrap_or_default()),
            (Some(false), how) => format!("NO (sha256 differs or file missing{})", how.unwrap_or_default()),
            (None, _) => "not checked".to_string(),
        },
        opt(r.oom_kills),
        opt(r.restarts),
        match r.restarts_before_upload {
            Some(n) if n > 0 => format!(" (and {n} before it became healthy)"),
            _ => String::new(),
        }
    ));
    let p = &r.phases;
    s.push_str(&format!(
        "  phases        prepare {} {} {} agent {} {} healthy {}{} upload {} collect {} teardown {}\n",
        secs(p.prepare),
        if r.boot == crate::results::model::Boot::Saved { "restore" } else { "boot" },
        secs(p.boot),
        secs(p.agent),
        match p.deliver {
            Some(d) => format!("deliver {}", secs(Some(d))),
            None => format!("cloud-init {}", secs(p.cloud_init)),
        },
        secs(p.healthy),
        p.login.map(|l| format!(" login {}", secs(Some(l)))).unwrap_or_default(),
        secs(p.upload),
        secs(p.collect),
        secs(p.teardown)
    ));
    if let Some(st) = &r.saved_state {
        s.push_str(&format!(
            "  boot          restored from saved guest {} (slot {}){}{}\n",
            st.id,
            st.slot,
            st.built_seconds.map(|b| format!("; booted and saved first, in {b:.1}s")).unwrap_or_default(),
            st.rebuilt_because.as_ref().map(|w| format!(", as the copy there could not be restored: {w}")).unwrap_or_default()
        ));
    }
    s.push_str(&format!("  samples       {} every {} ms\n", r.sample_count, r.sample_interval_ms));
    s.push_str(&format!("  result        {}\n", dir.join("result.json").display()));
    s
}

impl crate::matrix::run::Ui for ConsoleReporter {
    fn line(&self, text: &str) {
        ConsoleReporter::line(self, text);
    }
    fn matrix_progress(&self, done: usize, failed: usize, total: usize, remaining: usize, eta_seconds: f64) {
        ConsoleReporter::matrix_progress(self, done, failed, total, remaining, &crate::size::fmt_secs(eta_seconds));
    }
    fn finish(&self) {
        ConsoleReporter::finish(self);
    }
}


/// ", hashed on the host in 1.9s", or in the guest, with why the host could not.
fn hashed_where(v: &crate::results::model::Verification) -> String {
    let on = match v.by {
        crate::results::model::Verify::Host => "on the host",
        crate::results::model::Verify::Guest => "in the guest",
    };
    let why = v.fallback.as_ref().map(|f| format!(" (not on the host: {f})")).unwrap_or_default();
    format!(", hashed {on} in {:.1}s{why}", v.seconds)
}
