//! Sampling memory while the upload runs, on its own thread (libvirt and agent calls block).
//! Each tick reads the target unit's cgroup memory.current and the guest's MemAvailable through
//! the guest agent, the domain's balloon stats through libvirt, and the qemu process RSS from
//! procfs. Rows go to the samples CSV as they are taken, so a crash keeps what was sampled.

use crate::guest::agent::Agent;
use crate::guest::memory;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use virt::domain::Domain;

/// One row of `samples.csv`. Units are in the column names; an unreadable source is empty.
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
}

/// What the sampler saw, for the result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleSummary {
    pub count: u64,
    pub peak_cgroup_memory_bytes: Option<u64>,
    pub min_guest_mem_available_bytes: Option<u64>,
    pub peak_host_qemu_rss_bytes: Option<u64>,
    /// Mean seconds between samples (how close we came to the requested interval).
    pub mean_interval_seconds: Option<f64>,
}

impl SampleSummary {
    pub fn add(&mut self, s: &Sample) {
        self.count += 1;
        let max = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        };
        let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        self.peak_cgroup_memory_bytes = max(self.peak_cgroup_memory_bytes, s.cgroup_memory_current_bytes);
        self.min_guest_mem_available_bytes = min(self.min_guest_mem_available_bytes, s.guest_mem_available_bytes);
        self.peak_host_qemu_rss_bytes = max(self.peak_host_qemu_rss_bytes, s.host_qemu_rss_bytes);
    }
}

/// Where the sampler reads from.
#[derive(Clone)]
pub struct Sources {
    pub domain: Domain,
    pub agent: Agent,
    pub cgroup_dir: String,
    pub qemu_pid: Option<i32>,
}

impl Sources {
    /// Take one sample now.
    pub fn sample(&self, t_seconds: f64, uploaded: u64) -> Sample {
        let mut s = Sample { t_seconds: (t_seconds * 1000.0).round() / 1000.0, uploaded_bytes: uploaded, ..Default::default() };
        s.cgroup_memory_current_bytes = self
            .agent
            .read_string(&format!("{}/memory.current", self.cgroup_dir))
            .ok()
            .and_then(|t| memory::cgroup_number(&t));
        s.guest_mem_available_bytes = self.agent.read_string("/proc/meminfo").ok().and_then(|t| memory::mem_available(&t));
        s.host_qemu_rss_bytes = self.qemu_pid.and_then(crate::proc::rss_bytes);
        if let Ok(stats) = self.domain.memory_stats(0) {
            for st in stats {
                // libvirt reports KiB; tags from virDomainMemoryStatTags.
                let v = Some(st.val * 1024);
                match st.tag {
                    virt::sys::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON => s.balloon_actual_bytes = v,
                    virt::sys::VIR_DOMAIN_MEMORY_STAT_USABLE => s.balloon_usable_bytes = v,
                    virt::sys::VIR_DOMAIN_MEMORY_STAT_RSS => s.balloon_rss_bytes = v,
                    _ => {}
                }
            }
        }
        s
    }
}

pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Result<SampleSummary, String>>>,
}

/// A sampler dropped without `stop` (its cell was cut short) stops too, rather than polling a
/// destroyed domain for the rest of the process.
impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Sampler {
    /// Start sampling every `interval` into `csv_path` until [`Sampler::stop`].
    pub fn start(sources: Sources, interval: Duration, uploaded: Arc<AtomicU64>, csv_path: PathBuf) -> std::io::Result<Sampler> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let mut writer = csv::Writer::from_path(&csv_path)?;
        let handle = std::thread::Builder::new().name("perfvm-sampler".into()).spawn(move || {
            let t0 = Instant::now();
            let mut summary = SampleSummary::default();
            let mut next = t0;
            let mut last_flush = t0;
            // At least one sample, even for an upload shorter than the interval.
            loop {
                let s = sources.sample(t0.elapsed().as_secs_f64(), uploaded.load(Ordering::Relaxed));
                summary.add(&s);
                writer.serialize(&s).map_err(|e| format!("samples CSV: {e}"))?;
                if last_flush.elapsed() >= Duration::from_secs(1) {
                    writer.flush().map_err(|e| format!("samples CSV: {e}"))?;
                    last_flush = Instant::now();
                }
                if flag.load(Ordering::Relaxed) {
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
            if summary.count > 1 {
                summary.mean_interval_seconds = Some(t0.elapsed().as_secs_f64() / (summary.count - 1) as f64);
            }
            Ok(summary)
        })?;
        Ok(Sampler { stop, handle: Some(handle) })
    }

    /// Stop after one final sample and return the summary.
    pub fn stop(mut self) -> Result<SampleSummary, String> {
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
        sum.add(&mk(Some(10), Some(500), None));
        sum.add(&mk(None, Some(300), Some(7)));
        sum.add(&mk(Some(30), None, Some(5)));
        assert_eq!(sum.count, 3);
        assert_eq!(sum.peak_cgroup_memory_bytes, Some(30));
        assert_eq!(sum.min_guest_mem_available_bytes, Some(300));
        assert_eq!(sum.peak_host_qemu_rss_bytes, Some(7));
    }

    #[test]
    fn csv_header_names_units() {
        let mut w = csv::Writer::from_writer(vec![]);
        w.serialize(Sample { t_seconds: 0.5, uploaded_bytes: 3, ..Default::default() }).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        let header = text.lines().next().unwrap();
        assert_eq!(
            header,
            "t_seconds,uploaded_bytes,cgroup_memory_current_bytes,guest_mem_available_bytes,host_qemu_rss_bytes,balloon_actual_bytes,balloon_usable_bytes,balloon_rss_bytes"
        );
        // Missing sources are empty, never zero.
        assert_eq!(text.lines().nth(1).unwrap(), "0.5,3,,,,,,");
    }
}
