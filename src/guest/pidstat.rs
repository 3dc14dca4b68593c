//! CPU time from a `/proc/PID/stat` line. Shared with `perfvm-probe` (included there by path), so
//! the guest and the host read it the same way.

/// utime + stime in seconds (USER_HZ is 100 on Linux). The command name is in parentheses and
/// may hold spaces, so fields are counted after its closing `)`.
pub fn cpu_seconds(stat: &str) -> Option<f64> {
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pid_stat_cpu() {
        let stat = "412 (qemu ga) S 1 412 412 0 -1 4194560 1022 0 3 0 150 50 0 0 20 0 2 0 1101 1000 100";
        assert_eq!(super::cpu_seconds(stat), Some(2.0));
        assert_eq!(super::cpu_seconds("garbage"), None);
    }
}
