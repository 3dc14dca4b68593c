//! The target's systemd unit as systemd sees it (through the agent: `systemctl show`), and
//! whether it is dead for good. A server that exits at start is restarted a few times and then
//! given up on ("start request repeated too quickly", seen here 50 s into a cell); waiting for
//! its port after that only runs out the cell's timeout.

use super::agent::{Agent, AgentError};
use std::time::Duration;

/// The properties `systemctl show` gives for the unit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnitState {
    /// ActiveState: active, activating, deactivating, failed, inactive…
    pub active: String,
    /// SubState: running, auto-restart, dead, failed…
    pub sub: String,
    /// Result: success, exit-code, signal, start-limit-hit, oom-kill…
    pub result: String,
    pub restarts: Option<u64>,
    /// The main process's last exit status (or signal number).
    pub exit_status: Option<i64>,
}

/// A unit restarted this often without passing its health check is crash-looping, even where
/// systemd's start limit never trips (a server that dies after a few seconds each time).
pub const CRASH_LOOP_RESTARTS: u64 = 10;

pub const PROPERTIES: &str = "ActiveState,SubState,Result,NRestarts,ExecMainStatus";

/// Parse `systemctl show -p PROPERTIES` output. Pure.
pub fn parse(text: &str) -> UnitState {
    let prop = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix('=')).map(str::trim).unwrap_or("").to_string();
    UnitState {
        active: prop("ActiveState"),
        sub: prop("SubState"),
        result: prop("Result"),
        restarts: prop("NRestarts").parse().ok(),
        exit_status: prop("ExecMainStatus").parse().ok(),
    }
}

impl UnitState {
    /// Why the unit will not come up any more, if it will not: systemd gave up on it, it exited
    /// without a restart to follow, or it is crash-looping. Only meaningful once the unit was
    /// started (after cloud-init). Pure.
    pub fn dead(&self) -> Option<String> {
        let restarts = self.restarts.unwrap_or(0);
        let status = self.exit_status.map(|s| format!(", last exit status {s}")).unwrap_or_default();
        match (self.active.as_str(), self.sub.as_str()) {
            ("failed", _) => Some(format!("systemd gave up on it after {restarts} restart(s) (result {}{status})", self.result)),
            ("inactive", "dead") => Some(format!("its main process exited ({}{status}) and systemd will not restart it", self.result)),
            _ if restarts >= CRASH_LOOP_RESTARTS => Some(format!("it crash-loops: {restarts} restarts without passing its health check{status}")),
            _ => None,
        }
    }

    /// Still starting or between restarts: a restart count read now may grow within RestartSec.
    pub fn settling(&self) -> bool {
        self.sub == "auto-restart" || self.active == "activating"
    }
}

/// The unit's state now. Blocking.
pub fn state(agent: &Agent, unit: &str) -> Result<UnitState, String> {
    let o = agent
        .exec("/usr/bin/systemctl", &["show", "-p", PROPERTIES, unit], Duration::from_secs(30))
        .map_err(|e: AgentError| format!("unit state unknown: {e}"))?;
    if o.exit_code != 0 {
        return Err(format!("systemctl show exited {}", o.exit_code));
    }
    Ok(parse(&o.stdout_str()))
}

/// The last lines the unit's own processes wrote to the journal (not systemd's lines about it,
/// which `dead` sums up), each once, for an error message. Blocking.
pub fn journal_tail(agent: &Agent, unit: &str, lines: usize) -> Option<String> {
    let field = format!("_SYSTEMD_UNIT={unit}");
    let o = agent.exec("/usr/bin/journalctl", &["-b", &field, "-n", "50", "--no-pager", "-o", "cat"], Duration::from_secs(30)).ok()?;
    let tail = last_distinct(&o.stdout_str(), lines);
    (!tail.is_empty()).then(|| tail.join(" | "))
}

/// The last `n` distinct non-empty lines, in the order of their last appearance: a server that
/// was restarted five times printed the same complaint five times. Pure.
pub fn last_distinct(text: &str, n: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        out.retain(|l| l != line);
        out.push(line.to_string());
    }
    let skip = out.len().saturating_sub(n);
    out.split_off(skip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_systemctl_show() {
        let u = parse("ActiveState=failed\nSubState=failed\nResult=start-limit-hit\nNRestarts=5\nExecMainStatus=1\n");
        assert_eq!(u, UnitState { active: "failed".into(), sub: "failed".into(), result: "start-limit-hit".into(), restarts: Some(5), exit_status: Some(1) });
        let blank = parse("");
        assert_eq!(blank.restarts, None);
        assert_eq!(blank.dead(), None, "nothing known is not dead");
    }

    #[test]
    fn repeated_complaints_are_told_once() {
        let text = "starting\ncannot open log\n\nstarting\ncannot open log\nstarting\ncannot open log\n";
        assert_eq!(last_distinct(text, 8), ["starting", "cannot open log"]);
        assert_eq!(last_distinct("a\nb\nc\n", 2), ["b", "c"]);
        assert!(last_distinct("", 3).is_empty());
    }

    #[test]
    fn dead_for_good_only_when_systemd_will_not_bring_it_back() {
        let u = |active: &str, sub: &str, result: &str, n: u64| UnitState { active: active.into(), sub: sub.into(), result: result.into(), restarts: Some(n), exit_status: Some(1) };
        let gave_up = u("failed", "failed", "start-limit-hit", 5).dead().unwrap();
        assert!(gave_up.contains("gave up on it after 5 restart(s)") && gave_up.contains("start-limit-hit") && gave_up.contains("exit status 1"), "{gave_up}");
        assert!(u("inactive", "dead", "success", 0).dead().unwrap().contains("will not restart"));
        assert_eq!(u("activating", "auto-restart", "exit-code", 3).dead(), None, "a restart is coming");
        assert_eq!(u("active", "running", "success", 2).dead(), None, "flapped, now up");
        assert!(u("activating", "auto-restart", "exit-code", CRASH_LOOP_RESTARTS).dead().unwrap().contains("crash-loops"));
        assert!(u("activating", "auto-restart", "exit-code", 1).settling());
        assert!(!u("active", "running", "success", 1).settling());
    }
}
