//! Host process facts from procfs.

/// True if a process with this pid exists (signal 0 probes without touching it).
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// Resident set size of a process in bytes.
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let p = procfs::process::Process::new(pid).ok()?;
    let statm = p.statm().ok()?;
    Some(statm.resident * procfs::page_size())
}

/// This process's peak resident set size (VmHWM) in bytes.
pub fn own_peak_rss_bytes() -> Option<u64> {
    let p = procfs::process::Process::myself().ok()?;
    p.status().ok()?.vmhwm.map(|kib| kib * 1024)
}

/// Process names (comm) of every running process; used to tell whether a daemon runs.
pub fn running(comm: &str) -> bool {
    procfs::process::all_processes()
        .map(|it| {
            it.flatten().any(|p| p.stat().map(|s| s.comm == comm).unwrap_or(false))
        })
        .unwrap_or(false)
}

/// Host memory: (MemTotal, MemAvailable) in bytes.
pub fn host_memory() -> Option<(u64, u64)> {
    use procfs::Current;
    let m = procfs::Meminfo::current().ok()?;
    Some((m.mem_total, m.mem_available.unwrap_or(m.mem_free)))
}

/// CPU seconds (user + system) a process has used.
pub fn cpu_seconds(pid: i32) -> Option<f64> {
    let p = procfs::process::Process::new(pid).ok()?;
    let st = p.stat().ok()?;
    Some((st.utime + st.stime) as f64 / procfs::ticks_per_second() as f64)
}

/// This machine's identity for domain ownership: /etc/machine-id, else the host name.
pub fn machine_id() -> String {
    std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| nix::sys::utsname::uname().ok().map(|u| u.nodename().to_string_lossy().into_owned()))
        .unwrap_or_default()
}

/// Ask the kernel for a free port on 127.0.0.1. qemu binds it moments later; a clash with
/// another process in between makes the domain fail to start, which is retried by the caller.
pub fn free_loopback_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A program of that name is on PATH.
pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_with_rss() {
        let me = std::process::id() as i32;
        assert!(pid_alive(me));
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(!pid_alive(0));
        assert!(!pid_alive(i32::MAX));
        let (total, avail) = host_memory().unwrap();
        assert!(total >= avail && avail > 0);
    }
}
