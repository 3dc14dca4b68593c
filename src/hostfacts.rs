//! The machine a cell ran on, and how busy it was while the cell uploaded. A cell measured on a
//! loaded host is slower than its target deserves (docs/parallel.md: two 2-vCPU guests on two
//! cores ran at 0.27×), so every result says what the host was and whether it was quiet.
//!
//! Static facts come from this machine's /proc and /sys, or, for a remote host, from what
//! libvirt tells of it (model, CPUs, MHz). The load during the upload is read from /proc/stat
//! around the transfers, and is only known for this machine.

use crate::results::model::HostFacts;


/// The facts of this machine that do not change between cells.
pub fn local() -> HostFacts {
    HostFacts {
        cpu_model: cpu_model(&read("/proc/cpuinfo").unwrap_or_default()),
        cpus: std::thread::available_parallelism().ok().map(|n| n.get() as u32),
        mhz: read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").and_then(|s| s.trim().parse::<u64>().ok()).map(|khz| (khz / 1000) as u32),
        kernel: nix::sys::utsname::uname().ok().map(|u| u.release().to_string_lossy().into_owned()),
        governor: read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").map(|s| s.trim().to_string()),
        thp: read("/sys/kernel/mm/transparent_hugepage/enabled").and_then(|s| bracketed(&s)),
        ..HostFacts::default()
    }
}

/// A remote host's facts as libvirt knows them: `model` is the libvirt CPU model of the host's
/// capabilities (e.g. `Skylake-Client-IBRS`), not the marketing name /proc/cpuinfo has.
pub fn remote(conn: &virt::connect::Connect) -> HostFacts {
    let info = conn.node_info().ok();
    let caps = conn.capabilities().unwrap_or_default();
    HostFacts {
        cpu_model: capabilities_cpu_model(&caps),
        cpus: info.as_ref().map(|i| i.cpus),
        mhz: info.as_ref().map(|i| i.mhz).filter(|m| *m > 0),
        ..HostFacts::default()
    }
}

/// The 1-minute load average of this machine now.
pub fn load1() -> Option<f64> {
    read("/proc/loadavg")?.split_whitespace().next()?.parse().ok()
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string())
}

/// `always [madvise] never` → `madvise`.
fn bracketed(s: &str) -> Option<String> {
    let a = s.find('[')?;
    let b = s[a..].find(']')? + a;
    Some(s[a + 1..b].to_string())
}

fn capabilities_cpu_model(caps: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(caps).ok()?;
    let cpu = doc.descendants().find(|n| n.has_tag_name("host"))?.children().find(|n| n.has_tag_name("cpu"))?;
    let text = |tag: &str| cpu.children().find(|n| n.has_tag_name(tag)).and_then(|n| n.text()).map(str::trim);
    let model = text("model")?;
    Some(match text("vendor") {
        Some(v) => format!("{v} {model}"),
        None => model.to_string(),
    })
}

/// This machine's CPU time at one instant: the whole host from /proc/stat, and the two
/// processes whose CPU is the cell's own (its qemu and perfvm, which runs the uploads).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuSnapshot {
    /// Jiffies of all CPUs: busy (user, nice, system, irq, softirq; guest time is inside user),
    /// steal, and everything.
    pub busy: u64,
    pub steal: u64,
    pub total: u64,
    pub qemu_seconds: f64,
    pub own_seconds: f64,
}

impl CpuSnapshot {
    /// None when /proc/stat or either process cannot be read.
    pub fn take(qemu_pid: i32) -> Option<CpuSnapshot> {
        let (busy, steal, total) = proc_stat_cpu(&read("/proc/stat")?)?;
        Some(CpuSnapshot { busy, steal, total, qemu_seconds: crate::proc::cpu_seconds(qemu_pid)?, own_seconds: crate::proc::cpu_seconds(std::process::id() as i32)? })
    }
}

/// The `cpu` line of /proc/stat as (busy, steal, total) jiffies.
fn proc_stat_cpu(stat: &str) -> Option<(u64, u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line.split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0)).collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest, guest_nice are inside user, nice)
    let busy = at(0) + at(1) + at(2) + at(5) + at(6);
    let steal = at(7);
    Some((busy, steal, busy + at(3) + at(4) + steal))
}

/// Between two snapshots, in % of the host's whole CPU (all cores): what was busy besides the
/// cell's qemu and perfvm, and what was stolen. None over too short a time to say.
pub fn load_between(a: &CpuSnapshot, b: &CpuSnapshot, ticks_per_second: f64) -> Option<(f64, f64)> {
    let total = b.total.checked_sub(a.total)? as f64 / ticks_per_second;
    if total < 0.5 {
        return None;
    }
    let busy = b.busy.checked_sub(a.busy)? as f64 / ticks_per_second;
    let steal = b.steal.checked_sub(a.steal)? as f64 / ticks_per_second;
    let mine = (b.qemu_seconds - a.qemu_seconds).max(0.0) + (b.own_seconds - a.own_seconds).max(0.0);
    let pct = |x: f64| (x.max(0.0) / total * 1000.0).round() / 10.0;
    Some((pct(busy - mine), pct(steal)))
}

/// Fill in the load during the upload and say whether it makes the cell noisy.
pub fn set_load(f: &mut HostFacts, other_cpu_percent: f64, steal_percent: f64) {
    f.other_cpu_percent = Some(other_cpu_percent);
    f.steal_percent = Some(steal_percent);
    f.noisy = Some(other_cpu_percent > HostFacts::NOISY_OTHER_CPU_PERCENT || steal_percent > HostFacts::NOISY_STEAL_PERCENT);
}

/// The warning a noisy cell gets, or None.
pub fn noise_warning(f: &HostFacts) -> Option<String> {
    (f.noisy == Some(true)).then(|| {
        format!(
            "the host was busy during the upload ({} % of its CPU went to other work, {} % stolen; thresholds {} % and {} %): throughput and timings may be low",
            f.other_cpu_percent.unwrap_or(0.0),
            f.steal_percent.unwrap_or(0.0),
            HostFacts::NOISY_OTHER_CPU_PERCENT,
            HostFacts::NOISY_STEAL_PERCENT
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_and_sysfs_formats() {
        let stat = "cpu  100 5 50 1000 20 3 2 7 40 0\ncpu0 50 2 25 500 10 1 1 3 20 0\nintr 1\n";
        assert_eq!(proc_stat_cpu(stat), Some((160, 7, 1187)));
        assert_eq!(proc_stat_cpu("cpu 1 2 3 4\n"), Some((6, 0, 10)), "an old kernel's short line");
        assert_eq!(proc_stat_cpu("intr 1\n"), None);
        assert_eq!(bracketed("always [madvise] never\n").as_deref(), Some("madvise"));
        assert_eq!(bracketed("never"), None);
        assert_eq!(cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags : x\n").as_deref(), Some("AMD EPYC 7B13"));
        let caps = "<capabilities><host><uuid>x</uuid><cpu><arch>x86_64</arch><model>Skylake-Client-IBRS</model><vendor>Intel</vendor></cpu></host><guest><cpu><model>no</model></cpu></guest></capabilities>";
        assert_eq!(capabilities_cpu_model(caps).as_deref(), Some("Intel Skylake-Client-IBRS"));
        assert_eq!(capabilities_cpu_model("<capabilities/>"), None);
    }

    #[test]
    fn the_load_beside_the_cell_excludes_its_own_qemu_and_perfvm() {
        let snap = |busy, steal, total, qemu, own| CpuSnapshot { busy, steal, total, qemu_seconds: qemu, own_seconds: own };
        // 10 s on 2 cores at 100 Hz = 2000 jiffies. The cell's qemu used 9 s, perfvm 1 s, the
        // host was busy 14 s: 4 s of 20 went elsewhere, 20 %.
        let a = snap(1000, 0, 10_000, 50.0, 5.0);
        let b = snap(2400, 100, 12_000, 59.0, 6.0);
        assert_eq!(load_between(&a, &b, 100.0), Some((20.0, 5.0)));
        // Quiet: the host's busy time is all the cell's (rounding may leave it a hair below).
        let b = snap(1990, 0, 12_000, 59.0, 6.0);
        assert_eq!(load_between(&a, &b, 100.0), Some((0.0, 0.0)));
        assert_eq!(load_between(&a, &snap(1001, 0, 10_020, 50.0, 5.0), 100.0), None, "0.2 s says nothing");
        assert_eq!(load_between(&b, &a, 100.0), None, "counters went backwards");

        let mut f = HostFacts::default();
        set_load(&mut f, 20.0, 0.0);
        assert_eq!(f.noisy, Some(true));
        assert!(noise_warning(&f).unwrap().contains("20 % of its CPU"));
        set_load(&mut f, HostFacts::NOISY_OTHER_CPU_PERCENT, HostFacts::NOISY_STEAL_PERCENT);
        assert_eq!(f.noisy, Some(false), "at the thresholds is not above them");
        assert_eq!(noise_warning(&f), None);
        set_load(&mut f, 1.0, 6.0);
        assert_eq!(f.noisy, Some(true), "steal alone");
    }
}
