//! The host side of `perfvm-probe` (src/bin/perfvm-probe.rs): parse its JSON lines into
//! numbers. Pure. Every field is optional: a source the guest kernel lacks stays empty.

use super::memory;

/// Pressure stall information of one resource (`*.pressure`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pressure {
    pub some_avg10: Option<f64>,
    pub full_avg10: Option<f64>,
    /// Cumulative stall, microseconds.
    pub some_total_usec: Option<u64>,
    pub full_total_usec: Option<u64>,
}

/// One tick of the probe.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeTick {
    /// Seconds since the probe started (guest clock).
    pub t: f64,
    /// The probe's own CPU time so far.
    pub probe_cpu_seconds: Option<f64>,
    pub memory_current: Option<u64>,
    /// What the memory is (anon, page cache, kernel…); None without memory.stat.
    pub memory_stat: Option<memory::MemoryStat>,
    pub oom_kill: Option<u64>,
    pub mem_available: Option<u64>,
    pub swap_total: Option<u64>,
    pub cpu_usage_usec: Option<u64>,
    pub cpu_user_usec: Option<u64>,
    pub cpu_system_usec: Option<u64>,
    pub io_rbytes: Option<u64>,
    pub io_wbytes: Option<u64>,
    pub io_rios: Option<u64>,
    pub io_wios: Option<u64>,
    pub cpu_pressure: Pressure,
    pub memory_pressure: Pressure,
    pub io_pressure: Pressure,
    /// Guest-wide CPU jiffies from /proc/stat: (busy, total).
    pub guest_cpu_jiffies: Option<(u64, u64)>,
    pub pgmajfault: Option<u64>,
    pub pswpin: Option<u64>,
    pub pswpout: Option<u64>,
}

/// `key value` lines (cpu.stat, vmstat, memory.events).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key).then(|| it.next()?.parse().ok()).flatten()
    })
}

/// io.stat: one line per device, `MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=..`; summed.
pub fn io_stat(text: &str) -> (Option<u64>, Option<u64>, Option<u64>, Option<u64>) {
    let mut sums = [None::<u64>; 4];
    for line in text.lines() {
        for kv in line.split_whitespace().skip(1) {
            let Some((k, v)) = kv.split_once('=') else { continue };
            let idx = match k {
                "rbytes" => 0,
                "wbytes" => 1,
                "rios" => 2,
                "wios" => 3,
                _ => continue,
            };
            if let Ok(v) = v.parse::<u64>() {
                sums[idx] = Some(sums[idx].unwrap_or(0) + v);
            }
        }
    }
    (sums[0], sums[1], sums[2], sums[3])
}

/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=0` / `full …`.
pub fn pressure(text: &str) -> Pressure {
    let mut p = Pressure::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let kind = it.next();
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else { continue };
            match (kind, k) {
                (Some("some"), "avg10") => p.some_avg10 = v.parse().ok(),
                (Some("full"), "avg10") => p.full_avg10 = v.parse().ok(),
                (Some("some"), "total") => p.some_total_usec = v.parse().ok(),
                (Some("full"), "total") => p.full_total_usec = v.parse().ok(),
                _ => {}
            }
        }
    }
    p
}

/// The `cpu` line of /proc/stat: (busy, total) jiffies; idle and iowait are not busy.
pub fn proc_stat_cpu(line: &str) -> Option<(u64, u64)> {
    let mut it = line.split_whitespace();
    if it.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = it.filter_map(|x| x.parse().ok()).collect();
    if v.len() < 5 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is already in user). Steal is
    // time the host ran something else: neither busy nor idle for the guest, so left out.
    let total: u64 = v.iter().take(7).sum();
    let idle = v[3] + v[4];
    Some((total - idle, total))
}

pub fn parse_line(line: &str) -> Option<ProbeTick> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let files = v.get("files")?.as_object()?;
    let f = |k: &str| files.get(k).and_then(|x| x.as_str());
    let mut t = ProbeTick { t: v.get("t")?.as_f64()?, probe_cpu_seconds: v.get("cpu_s").and_then(|x| x.as_f64()), ..Default::default() };
    t.memory_current = f("memory.current").and_then(memory::cgroup_number);
    t.memory_stat = f("memory.stat").map(memory::memory_stat);
    t.oom_kill = f("memory.events").map(|e| memory::memory_events(e).oom_kill);
    if let Some(m) = f("meminfo") {
        t.mem_available = memory::mem_available(m);
        t.swap_total = memory::meminfo_field(m, "SwapTotal");
    }
    if let Some(c) = f("cpu.stat") {
        t.cpu_usage_usec = keyed(c, "usage_usec");
        t.cpu_user_usec = keyed(c, "user_usec");
        t.cpu_system_usec = keyed(c, "system_usec");
    }
    if let Some(io) = f("io.stat") {
        (t.io_rbytes, t.io_wbytes, t.io_rios, t.io_wios) = io_stat(io);
        // An empty io.stat means the cgroup did no I/O yet: zero is the truth there.
        if io.trim().is_empty() {
            (t.io_rbytes, t.io_wbytes, t.io_rios, t.io_wios) = (Some(0), Some(0), Some(0), Some(0));
        }
    }
    t.cpu_pressure = f("cpu.pressure").map(pressure).unwrap_or_default();
    t.memory_pressure = f("memory.pressure").map(pressure).unwrap_or_default();
    t.io_pressure = f("io.pressure").map(pressure).unwrap_or_default();
    t.guest_cpu_jiffies = f("stat").and_then(proc_stat_cpu);
    if let Some(vm) = f("vmstat") {
        t.pgmajfault = keyed(vm, "pgmajfault");
        // Swap counters only mean something where swap exists.
        if t.swap_total.is_some_and(|s| s > 0) {
            t.pswpin = keyed(vm, "pswpin");
            t.pswpout = keyed(vm, "pswpout");
        }
    }
    Some(t)
}

/// Complete lines out of a growing buffer; the incomplete tail stays in it.
pub fn take_lines(buf: &mut Vec<u8>) -> Vec<String> {
    let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else { return Vec::new() };
    let rest = buf.split_off(last_nl + 1);
    let done = std::mem::replace(buf, rest);
    String::from_utf8_lossy(&done).lines().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probes_own_lines_parse() {
        let mut buf = Vec::new();
        crate::guest::tickline::write_tick(&mut buf, 0.1, Some(0.0), &[("memory.current", b"4096\n"), ("stat", b"cpu  100 0 50 800 50 0 0 0 0 0")]);
        let tick = parse_line(std::str::from_utf8(&buf).unwrap().trim_end()).unwrap();
        assert_eq!(tick.memory_current, Some(4096));
        assert_eq!(tick.guest_cpu_jiffies, Some((150, 1000)));
        assert_eq!(tick.probe_cpu_seconds, Some(0.0));
    }

    const LINE: &str = r#"{"t":1.5,"cpu_s":0.02,"files":{"memory.current":"1048576\n","memory.stat":"anon 524288\nfile 262144\nkernel 131072\ninactive_file 200000\nactive_file 62144\n","memory.events":"low 0\nhigh 0\nmax 0\noom 1\noom_kill 1\n","cpu.stat":"usage_usec 2000000\nuser_usec 1500000\nsystem_usec 500000\nnr_periods 0\n","io.stat":"254:0 rbytes=4096 wbytes=1000 rios=1 wios=2 dbytes=0 dios=0\n254:16 rbytes=4096 wbytes=24 rios=1 wios=1 dbytes=0 dios=0\n","cpu.pressure":"some avg10=1.50 avg60=0.50 avg300=0.10 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n","memory.pressure":"some avg10=12.25 avg60=3.00 avg300=1.00 total=900000\nfull avg10=10.00 avg60=2.00 avg300=0.50 total=700000\n","io.pressure":"some avg10=0.00 avg60=0.00 avg300=0.00 total=10\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=5\n","meminfo":"MemTotal: 223456 kB\nMemAvailable: 174080 kB\nSwapTotal: 0 kB","stat":"cpu  100 0 50 800 50 0 0 0 0 0","vmstat":"pswpin 0\npswpout 0\npgmajfault 77"}}"#;

    #[test]
    fn parses_a_full_tick() {
        let t = parse_line(LINE).unwrap();
        assert_eq!(t.t, 1.5);
        assert_eq!(t.probe_cpu_seconds, Some(0.02));
        assert_eq!(t.memory_current, Some(1 << 20));
        let m = t.memory_stat.unwrap();
        assert_eq!((m.anon, m.file, m.kernel, m.inactive_file, m.sock), (Some(524288), Some(262144), Some(131072), Some(200000), None));
        assert_eq!(t.oom_kill, Some(1));
        assert_eq!(t.mem_available, Some(174080 * 1024));
        assert_eq!((t.cpu_usage_usec, t.cpu_user_usec, t.cpu_system_usec), (Some(2_000_000), Some(1_500_000), Some(500_000)));
        assert_eq!((t.io_rbytes, t.io_wbytes, t.io_rios, t.io_wios), (Some(8192), Some(1024), Some(2), Some(3)));
        assert_eq!(t.memory_pressure.some_avg10, Some(12.25));
        assert_eq!(t.memory_pressure.full_total_usec, Some(700_000));
        assert_eq!(t.cpu_pressure.some_total_usec, Some(12345));
        assert_eq!(t.guest_cpu_jiffies, Some((150, 1000)));
        assert_eq!(t.pgmajfault, Some(77));
        assert_eq!((t.pswpin, t.pswpout), (None, None), "no swap: empty, not zero");
    }

    #[test]
    fn absent_sources_stay_empty() {
        let t = parse_line(r#"{"t":0.1,"files":{"memory.current":"5\n"}}"#).unwrap();
        assert_eq!(t.memory_current, Some(5));
        assert_eq!(t.cpu_usage_usec, None);
        assert_eq!(t.memory_stat, None);
        assert_eq!(t.io_wbytes, None);
        assert_eq!(t.memory_pressure, Pressure::default());
        assert_eq!(t.guest_cpu_jiffies, None);
        assert!(parse_line("not json").is_none());
    }

    #[test]
    fn lines_are_taken_whole() {
        let mut buf = b"{\"a\":1}\n{\"b\":2}\n{\"c\"".to_vec();
        assert_eq!(take_lines(&mut buf), vec!["{\"a\":1}", "{\"b\":2}"]);
        assert_eq!(buf, b"{\"c\"");
        assert!(take_lines(&mut buf).is_empty());
        buf.extend_from_slice(b":3}\n");
        assert_eq!(take_lines(&mut buf), vec!["{\"c\":3}"]);
        assert!(buf.is_empty());
    }
}
