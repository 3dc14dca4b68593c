//! Parsers for the guest's memory files (cgroup v2 and /proc). Pure.

/// `MemAvailable` from /proc/meminfo, in bytes.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    meminfo_field(meminfo, "MemAvailable")
}

pub fn meminfo_field(meminfo: &str, key: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let (k, rest) = l.split_once(':')?;
        if k.trim() != key {
            return None;
        }
        let mut it = rest.split_whitespace();
        let n: u64 = it.next()?.parse().ok()?;
        Some(match it.next() {
            Some("kB") => n * 1024,
            _ => n,
        })
    })
}

/// A single-number cgroup file (memory.current, memory.peak).
pub fn cgroup_number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The parts of a cgroup's memory.stat that say what its memory is (bytes). `file` is the page
/// cache (tmpfs and shared memory included); `inactive_file` is the part of it the kernel
/// reclaims first. The working set, `memory.current − inactive_file`, is what cAdvisor and the
/// kubelet call a container's memory use (and evict on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStat {
    pub anon: Option<u64>,
    pub file: Option<u64>,
    pub kernel: Option<u64>,
    pub sock: Option<u64>,
    pub shmem: Option<u64>,
    pub file_dirty: Option<u64>,
    pub file_writeback: Option<u64>,
    pub active_file: Option<u64>,
    pub inactive_file: Option<u64>,
}

/// The keys of memory.stat perfvm keeps (the probe sends only these lines).
pub const MEMORY_STAT_KEYS: [&str; 9] = ["anon", "file", "kernel", "sock", "shmem", "file_dirty", "file_writeback", "active_file", "inactive_file"];

pub fn memory_stat(text: &str) -> MemoryStat {
    let mut m = MemoryStat::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(k), Some(v)) = (it.next(), it.next().and_then(|v| v.parse::<u64>().ok())) else { continue };
        let slot = match k {
            "anon" => &mut m.anon,
            "file" => &mut m.file,
            "kernel" => &mut m.kernel,
            "sock" => &mut m.sock,
            "shmem" => &mut m.shmem,
            "file_dirty" => &mut m.file_dirty,
            "file_writeback" => &mut m.file_writeback,
            "active_file" => &mut m.active_file,
            "inactive_file" => &mut m.inactive_file,
            _ => continue,
        };
        *slot = Some(v);
    }
    m
}

/// memory.current − inactive_file (never below zero: the two files are read a moment apart).
pub fn working_set(current: Option<u64>, stat: &MemoryStat) -> Option<u64> {
    Some(current?.saturating_sub(stat.inactive_file?))
}

/// Counters of memory.events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemoryEvents {
    pub low: u64,
    pub high: u64,
    pub max: u64,
    pub oom: u64,
    pub oom_kill: u64,
}

pub fn memory_events(text: &str) -> MemoryEvents {
    let mut ev = MemoryEvents::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(k), Some(v)) = (it.next(), it.next().and_then(|v| v.parse::<u64>().ok())) else { continue };
        match k {
            "low" => ev.low = v,
            "high" => ev.high = v,
            "max" => ev.max = v,
            "oom" => ev.oom = v,
            "oom_kill" => ev.oom_kill = v,
            _ => {}
        }
    }
    ev
}

/// Kernel OOM-killer victims named `comm` in kernel log text (`journalctl -k` / dmesg). The
/// unit's memory.events is reset when systemd recreates the cgroup on restart, so the kernel's
/// own record is the one that survives.
pub fn oom_kills_in_kernel_log(log: &str, comm: &str) -> u64 {
    let needle = format!("({comm})");
    log.lines()
        .filter(|l| l.contains("Out of memory: Killed process") || l.contains("Memory cgroup out of memory: Killed process"))
        .filter(|l| {
            // comm is truncated to 15 characters by the kernel.
            let short: String = comm.chars().take(15).collect();
            l.contains(&needle) || l.contains(&format!("({short})"))
        })
        .count() as u64
}

/// The kernel's memory high-water mark of a cgroup (memory.peak), if readable.
pub fn memory_peak(agent: &crate::guest::agent::Agent, cgroup_dir: &str) -> Option<u64> {
    agent.read_string(&format!("{cgroup_dir}/memory.peak")).ok().and_then(|t| cgroup_number(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meminfo() {
        let m = "MemTotal:         223456 kB\nMemFree:  1000 kB\nMemAvailable:     174080 kB\n";
        assert_eq!(mem_available(m), Some(174080 * 1024));
        assert_eq!(meminfo_field(m, "MemTotal"), Some(223456 * 1024));
        assert_eq!(meminfo_field(m, "Nope"), None);
    }

    #[test]
    fn parses_cgroup_files() {
        assert_eq!(cgroup_number("1234567\n"), Some(1234567));
        assert_eq!(cgroup_number("max\n"), None);
        let ev = memory_events("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n");
        assert_eq!(ev, MemoryEvents { low: 0, high: 0, max: 3, oom: 1, oom_kill: 1 });
    }

    #[test]
    fn parses_memory_stat_and_the_working_set() {
        let text = "anon 2936832\nfile 270532608\nkernel 11534336\nkernel_stack 49152\nsock 0\nshmem 0\nfile_mapped 77824\nfile_dirty 40894464\nfile_writeback 0\ninactive_anon 1249280\ninactive_file 270532608\nactive_file 0\n";
        let m = memory_stat(text);
        assert_eq!(m.anon, Some(2936832));
        assert_eq!(m.file, Some(270532608));
        assert_eq!(m.kernel, Some(11534336));
        assert_eq!(m.file_dirty, Some(40894464));
        assert_eq!((m.active_file, m.inactive_file), (Some(0), Some(270532608)));
        assert_eq!(working_set(Some(285_000_000), &m), Some(285_000_000 - 270532608));
        // Read a moment apart: never negative.
        assert_eq!(working_set(Some(1), &m), Some(0));
        assert_eq!(working_set(None, &m), None);
        assert_eq!(working_set(Some(5), &MemoryStat::default()), None, "no inactive_file, no working set");
        // An older kernel without some keys: those stay unknown.
        let old = memory_stat("anon 5\nfile 7\n");
        assert_eq!((old.anon, old.file, old.kernel), (Some(5), Some(7), None));
    }

    #[test]
    fn counts_oom_victims_by_name() {
        let log = "\
[  40.1] perfvm-target invoked oom-killer: gfp_mask=0x140cca
[  40.2] Out of memory: Killed process 612 (perfvm-target) total-vm:400000kB, anon-rss:200000kB
[  41.0] Out of memory: Killed process 99 (journald) total-vm:1kB
[  50.2] Out of memory: Killed process 700 (perfvm-target) total-vm:400000kB
";
        assert_eq!(oom_kills_in_kernel_log(log, "perfvm-target"), 2);
        assert_eq!(oom_kills_in_kernel_log(log, "other"), 0);
        assert_eq!(
            oom_kills_in_kernel_log("Out of memory: Killed process 1 (a-very-long-nam) x", "a-very-long-name-here"),
            1
        );
    }
}
