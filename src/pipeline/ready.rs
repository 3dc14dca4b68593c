//! Ready: the guest agent answers, cloud-init has finished (the target is installed and its unit
//! started), and the target's health check passes over the loopback forward. Each wait ends at
//! the cell's deadline and watches the domain so a dead guest fails fast.

use super::cell::{CellError, blocking};
use crate::accel::Accel;
use crate::results::model::ExitReason;
use crate::guest::agent::Agent;
use crate::guest::unit;
use crate::profile::{Health, TargetSpec};
use std::time::{Duration, Instant};
use virt::domain::{Domain, DomainState};

fn boot_failed(m: impl Into<String>) -> CellError {
    CellError::new(ExitReason::BootFailed, m)
}

/// Fail if the domain is no longer running: paused (KVM emulation failure), shut off, crashed.
fn check_alive(dom: &Domain, accel: Accel) -> Result<(), CellError> {
    let (state, reason) = dom.state().map_err(|e| boot_failed(format!("domain vanished: {}", e.message())))?;
    match state {
        virt::enumutil::Enum::Known(DomainState::Running) | virt::enumutil::Enum::Known(DomainState::Blocked) => Ok(()),
        virt::enumutil::Enum::Known(DomainState::Paused) if accel == Accel::Kvm => Err(boot_failed(format!(
            "the guest paused during boot ({reason:?}); under KVM this is an emulation failure of the host's KVM module: use --accel tcg (see console.log)"
        ))),
        other => Err(boot_failed(format!("the guest stopped during boot (state {other:?}, {reason:?}); see console.log"))),
    }
}

/// Poll `probe` (blocking, through the agent) every 500 ms until it gives `Some`, the domain
/// stops, `watch` fails, or the deadline passes. Agent errors are transient while the guest boots.
async fn poll<T: Send + 'static>(
    dom: &Domain,
    agent: &Agent,
    accel: Accel,
    deadline: Instant,
    what: &'static str,
    probe: fn(&Agent) -> Result<Option<T>, crate::guest::agent::AgentError>,
    watch: &mut (dyn FnMut() -> Result<(), CellError> + Send),
) -> Result<T, CellError> {
    let mut last = String::from("no answer yet");
    loop {
        let (d, a) = (dom.clone(), agent.clone());
        let res = blocking(move || {
            check_alive(&d, accel)?;
            Ok(probe(&a))
        })
        .await?;
        match res {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = e.to_string(),
        }
        if Instant::now() >= deadline {
            return Err(boot_failed(format!("{what} before the cell timeout (last: {last}); see console.log")));
        }
        watch()?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Wait for the agent. With the guest's console log (a local host), a console silent for
/// `stall` before the agent answers ends the wait early: a guest kernel that hung in early
/// boot (seen once in a CI run here, right after "NET: Registered PF_INET")
/// did not recover in the 400 s it was given, and would otherwise hold the cell until its timeout.
/// So does a kernel that reports a CPU stuck for `LOCKUP_SECS` or more (a soft lockup): seen in
/// a seed matrix here, both vCPUs stuck from 8 s into the boot, the console printing a lockup
/// report every ~28 s (so never silent) until the cell's timeout, 600 s later.
pub async fn wait_agent(dom: &Domain, agent: &Agent, accel: Accel, deadline: Instant, console: Option<&std::path::Path>, stall: Duration) -> Result<(), CellError> {
    let mut watch = ConsoleWatch { path: console.map(|p| p.to_path_buf()), stall, seen: (0, Instant::now()), scanned: 0 };
    poll(dom, agent, accel, deadline, "the guest agent never answered", |a| a.ping(2).map(Some), &mut || watch.check()).await
}

/// A CPU reported stuck this long before the agent answers is a hung boot. The kernel's
/// watchdog first reports after ~20 s (twice watchdog_thresh); a CPU that is merely slow under
/// a loaded emulator catches up well before a minute.
pub const LOCKUP_SECS: u64 = 60;

/// The console log's length and when it last changed, and how far it was read for lockups.
struct ConsoleWatch {
    path: Option<std::path::PathBuf>,
    stall: Duration,
    seen: (u64, Instant),
    scanned: u64,
}

impl ConsoleWatch {
    fn check(&mut self) -> Result<(), CellError> {
        let Some(path) = &self.path else { return Ok(()) };
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if len != self.seen.0 {
            self.seen = (len, Instant::now());
            let (upto, lockup) = read_from(path, self.scanned).map(|t| scan_lockups(&t)).unwrap_or((0, None));
            self.scanned += upto;
            if let Some((secs, line)) = lockup.filter(|(secs, _)| *secs >= LOCKUP_SECS) {
                return Err(CellError::boot_stalled(format!(
                    "the boot stalled: the guest kernel reports a CPU stuck for {secs} s before the guest agent answered ({line:?}); see console.log"
                )));
            }
            return Ok(());
        }
        if self.seen.1.elapsed() < self.stall {
            return Ok(());
        }
        let text = std::fs::read(path).unwrap_or_default();
        let last = String::from_utf8_lossy(&text).lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        Err(CellError::boot_stalled(format!(
            "the boot stalled: no console output for {} s before the guest agent answered (last line: {last:?}); see console.log",
            self.stall.as_secs()
        )))
    }
}

/// The bytes of `path` from `offset` on.
fn read_from(path: &std::path::Path, offset: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

/// In new console bytes: how many make whole lines (the rest is read again next time), and the
/// longest soft lockup reported in them ("watchdog: BUG: soft lockup - CPU#0 stuck for 48s!"),
/// with its line. Pure.
fn scan_lockups(bytes: &[u8]) -> (u64, Option<(u64, String)>) {
    let whole = bytes.iter().rposition(|&b| b == b'\n').map(|i| i + 1).unwrap_or(0);
    let text = String::from_utf8_lossy(&bytes[..whole]);
    let worst = text
        .lines()
        .filter(|l| l.contains("soft lockup"))
        .filter_map(|l| {
            let after = l.split("stuck for ").nth(1)?;
            let secs: u64 = after.split('s').next()?.trim().parse().ok()?;
            Some((secs, l.trim().to_string()))
        })
        .max_by_key(|(s, _)| *s);
    (whole as u64, worst)
}

/// cloud-init writes boot-finished after runcmd, i.e. after the target set-up script ran.
pub async fn wait_cloud_init(dom: &Domain, agent: &Agent, accel: Accel, deadline: Instant) -> Result<(), CellError> {
    poll(dom, agent, accel, deadline, "cloud-init did not finish", |a| {
        a.file_exists("/var/lib/cloud/instance/boot-finished").map(|done| done.then_some(()))
    }, &mut || Ok(()))
    .await?;
    let a = agent.clone();
    let result = blocking(move || Ok(a.read_string("/run/cloud-init/result.json").ok())).await?;
    if let Some(errors) = result.as_deref().and_then(cloud_init_errors) {
        return Err(boot_failed(format!("cloud-init reported errors: {errors}")));
    }
    Ok(())
}

/// The `errors` of cloud-init's result.json, if any.
pub fn cloud_init_errors(result_json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(result_json).ok()?;
    let errs = v["v1"]["errors"].as_array()?;
    if errs.is_empty() {
        return None;
    }
    Some(errs.iter().map(|e| e.as_str().map(str::to_string).unwrap_or_else(|| e.to_string())).collect::<Vec<_>>().join("; "))
}

/// How often the unit's state is asked while waiting for the health check (one agent exec).
const UNIT_CHECK_EVERY: Duration = Duration::from_secs(2);

/// The target's health check: an HTTP status through the forward, or (no path in the profile) a
/// socket of the unit's own processes listening on the port in the guest. Meanwhile the unit is
/// watched: one that systemd gave up on (or that exited for good, or crash-loops) ends the wait
/// at once as `target_crashed`, with its last journal lines. `restarts` gets the unit's restart
/// count as last seen (on success: once it passed).
pub async fn wait_healthy(
    target: &TargetSpec,
    base: &str,
    dom: &Domain,
    agent: &Agent,
    accel: Accel,
    deadline: Instant,
    restarts: &mut Option<u64>,
) -> Result<(), CellError> {
    let client = crate::upload::client::http_client();
    let mut last = String::from("no answer yet");
    let mut unit_checked = Instant::now();
    loop {
        let passed = match &target.health {
            Health::Http { path, status } => {
                let url = format!("{base}{path}");
                match crate::upload::client::health_once(&client, &url, *status).await {
                    Ok(()) => true,
                    Err(e) => {
                        last = e;
                        false
                    }
                }
            }
            Health::Tcp => {
                let (a, cg, port) = (agent.clone(), target.cgroup_dir(), target.guest_port);
                match blocking(move || Ok(unit_listens(&a, &cg, port))).await? {
                    Ok(true) => true,
                    Ok(false) => {
                        last = format!("no process of the unit listens on port {port}");
                        false
                    }
                    Err(e) => {
                        last = e;
                        false
                    }
                }
            }
        };
        if passed {
            let (a, unit) = (agent.clone(), target.unit.clone());
            if let Ok(st) = blocking(move || Ok(unit::state(&a, &unit))).await? {
                *restarts = st.restarts;
            }
            return Ok(());
        }
        if unit_checked.elapsed() >= UNIT_CHECK_EVERY {
            unit_checked = Instant::now();
            let (d, a, unit) = (dom.clone(), agent.clone(), target.unit.clone());
            let dead = blocking(move || {
                check_alive(&d, accel)?;
                let Ok(st) = unit::state(&a, &unit) else { return Ok((None, None)) };
                let why = st.dead().map(|why| {
                    let tail = unit::journal_tail(&a, &unit, 8).map(|t| format!("; its last journal lines: {t}")).unwrap_or_default();
                    format!("the target's unit {unit} will not come up: {why}{tail}; see journal.log")
                });
                Ok((st.restarts, why))
            })
            .await?;
            if dead.0.is_some() {
                *restarts = dead.0;
            }
            if let Some(why) = dead.1 {
                return Err(CellError::new(ExitReason::TargetCrashed, why));
            }
        }
        if Instant::now() >= deadline {
            return Err(boot_failed(match &target.health {
                Health::Http { path, .. } => format!("the target's health check {base}{path} never passed (last: {last}); see journal.log"),
                Health::Tcp => format!("the target never listened on port {} in the guest (last: {last}); see journal.log", target.guest_port),
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether a process of the unit listens on `port`, asked of perfvm-probe in the guest (it reads
/// the processes' socket inodes, which the agent's file calls cannot). Blocking.
fn unit_listens(agent: &Agent, cgroup_dir: &str, port: u16) -> Result<bool, String> {
    let p = port.to_string();
    let o = agent
        .exec(crate::sampler::PROBE_BIN, &["--listening", &p, "--cgroup", cgroup_dir], Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    match o.stdout_str().trim() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(format!("{} --listening: exit {}: {}", crate::sampler::PROBE_BIN, o.exit_code, String::from_utf8_lossy(&o.stderr).trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_lockups_are_found_in_whole_lines_only() {
        let log = b"[    8.375460] random: crng init done\n[   56.476407] watchdog: BUG: soft lockup - CPU#0 stuck for 48s! [systemd:1]\n[   84.476257] watchdog: BUG: soft lockup - CPU#0 stuck for 74s! [systemd:1]\n[   85.1] watchdog: BUG: soft lockup - CPU#1 stuck for 99";
        let (upto, worst) = scan_lockups(log);
        assert_eq!(&log[upto as usize..], b"[   85.1] watchdog: BUG: soft lockup - CPU#1 stuck for 99", "the unfinished line waits");
        let (secs, line) = worst.unwrap();
        assert_eq!(secs, 74);
        assert!(line.ends_with("stuck for 74s! [systemd:1]"));
        assert_eq!(scan_lockups(b"[ 29.3] rcu: INFO: rcu_preempt self-detected stall on CPU\n").1, None, "an RCU stall alone is not one");
        assert_eq!(scan_lockups(b"no newline yet").0, 0);
    }

    #[test]
    fn cloud_init_errors_are_extracted() {
        assert_eq!(cloud_init_errors(r#"{"v1": {"datasource": "x", "errors": []}}"#), None);
        assert_eq!(
            cloud_init_errors(r#"{"v1": {"errors": ["('scripts_user', RuntimeError('failed'))"]}}"#).unwrap(),
            "('scripts_user', RuntimeError('failed'))"
        );
        assert_eq!(cloud_init_errors("not json"), None);
    }
}
