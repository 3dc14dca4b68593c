//! Collect: what the kernel and systemd recorded about the target (exact memory high-water mark,
//! OOM kills, restarts), the unit's journal, and last the stored files' sha256 (`verify`: on the
//! host from the guest's frozen disk, or in the guest). Every item is best-effort: a missing one
//! is recorded as unknown, never invented.

use crate::guest::agent::Agent;
use crate::guest::memory::{self, MemoryEvents};
use crate::guest::unit;
use crate::profile::TargetSpec;
use crate::results::model::Verify;
use crate::image::peek::Disk;
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct Collected {
    pub memory_peak_bytes: Option<u64>,
    pub events: Option<MemoryEvents>,
    pub kernel_oom_kills: Option<u64>,
    pub restarts: Option<u64>,
    /// Per stored file: its sha256, None if it does not exist or could not be hashed.
    pub guest_sha256: Vec<Option<String>>,
    /// Per stored file: whether it exists (None: could not be checked).
    pub stored_file_exists: Vec<Option<bool>>,
    /// How they were hashed.
    pub verification: Option<crate::results::model::Verification>,
    pub journal: Option<String>,
    pub notes: Vec<String>,
}

impl Collected {
    /// OOM kills from every source: the cgroup's counter resets when systemd recreates the
    /// cgroup on restart, the kernel log does not. (`Option::max` keeps a known value over None.)
    pub fn oom_kills(&self) -> Option<u64> {
        self.events.map(|e| e.oom_kill).max(self.kernel_oom_kills)
    }
}

/// Where each accepted upload landed: the profile's template, perhaps with values from the
/// upload's answer (a server that says where it stored the file). None for an upload that was
/// not accepted or whose answer lacked a value; those are noted. Pure.
pub fn stored_paths(target: &TargetSpec, outcomes: &[crate::upload::client::UploadOutcome], vars: &[std::collections::BTreeMap<String, String>]) -> (Vec<Option<String>>, Vec<String>) {
    let mut notes = Vec::new();
    let paths = outcomes
        .iter()
        .zip(vars)
        .map(|(o, vars)| {
            if !o.accepted() {
                return None;
            }
            let mut v = vars.clone();
            for c in &target.upload_capture {
                match crate::upload::session::capture(c, &o.response_headers, &o.response_body) {
                    Ok(val) => {
                        v.insert(c.var.clone(), val);
                    }
                    Err(e) => {
                        notes.push(format!("upload of {}: {e}", vars.get("name").map(String::as_str).unwrap_or("?")));
                        return None;
                    }
                }
            }
            target.stored_path_with(&v)
        })
        .collect();
    (paths, notes)
}

/// Time the in-guest sha256sum of `size` bytes may take: generous, since TCG hashes slowly
/// (~70 MB/s measured). Hashing on the host takes far less, but may fall back to the guest.
pub fn hash_budget(size: u64) -> Duration {
    Duration::from_secs(30) + Duration::from_secs_f64(size as f64 / (20.0 * 1024.0 * 1024.0))
}

/// Upper bound in practice of everything in `collect` but the sha256: two file reads (5 s per
/// agent call), a few commands, and up to 5 s waiting for a restarting unit to settle.
pub const FIXED_BUDGET: Duration = Duration::from_secs(150);

/// The target unit's journal for this boot.
pub fn journal(agent: &Agent, unit: &str) -> Result<String, crate::guest::agent::AgentError> {
    agent
        .exec("/usr/bin/journalctl", &["-b", "-u", unit, "--no-pager", "-o", "short-monotonic"], Duration::from_secs(30))
        .map(|o| o.stdout_str())
}

/// The unit once it has settled: a target killed a moment ago sits in `auto-restart` for
/// RestartSec before systemd counts the restart, so wait that out (bounded).
fn settled_unit(agent: &Agent, unit: &str) -> Result<unit::UnitState, String> {
    let mut st = unit::state(agent, unit)?;
    for _ in 0..10 {
        if !st.settling() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        st = unit::state(agent, unit)?;
    }
    Ok(st)
}

/// What collection found after the uploads: the guest's facts, where each upload was stored,
/// what a profile could not capture from an answer, and whether the guest still ran.
pub struct Found {
    pub collected: Collected,
    pub stored: Vec<Option<String>>,
    pub capture_notes: Vec<String>,
    pub guest_alive: bool,
}

/// Collect after the uploads of `report`, whose names' values (`{name}`, captured ones) are
/// `vars`, each `size` bytes, hashing them as `how` asks (on the host from `disk`, when it is
/// here).
#[allow(clippy::too_many_arguments)]
pub async fn after_upload(
    agent: &Agent,
    dom: &virt::domain::Domain,
    target: &TargetSpec,
    report: &super::workload::UploadReport,
    vars: &[std::collections::BTreeMap<String, String>],
    size: u64,
    how: Verify,
    disk: Option<Disk>,
) -> Result<Found, super::cell::CellError> {
    let (stored, capture_notes) = stored_paths(target, &report.outcomes, vars);
    let collected = run(agent, target, stored.iter().flatten().cloned().collect(), size, how, disk).await?;
    let d = dom.clone();
    let guest_alive = super::cell::blocking(move || Ok(d.is_active().unwrap_or(false))).await?;
    Ok(Found { collected, stored, capture_notes, guest_alive })
}

/// Collect, off the async threads: the sha256 of every stored file (of `size` bytes each) within
/// its budget.
pub async fn run(agent: &Agent, target: &TargetSpec, stored: Vec<String>, size: u64, how: Verify, disk: Option<Disk>) -> Result<Collected, super::cell::CellError> {
    let (a, t) = (agent.clone(), target.clone());
    let budget = hash_budget(size * stored.len() as u64);
    super::cell::blocking(move || Ok(collect(&a, &t, &stored, budget, how, disk))).await
}

/// Blocking; run through `spawn_blocking`. `hash_budget` bounds the in-guest sha256sum of all
/// `stored_paths` (one command for all of them).
pub fn collect(agent: &Agent, target: &TargetSpec, stored_paths: &[String], hash_budget: Duration, how: Verify, disk: Option<Disk>) -> Collected {
    let mut c = Collected::default();
    let cg = target.cgroup_dir();
    c.memory_peak_bytes = memory::memory_peak(agent, &cg);
    c.events = agent.read_string(&format!("{cg}/memory.events")).ok().map(|t| memory::memory_events(&t));

    match settled_unit(agent, &target.unit) {
        Ok(st) => {
            c.restarts = st.restarts;
            // A target that died under the upload and will not come back: say why, in its words.
            if let Some(why) = st.dead() {
                let tail = unit::journal_tail(agent, &target.unit, 8).map(|t| format!("; its last journal lines: {t}")).unwrap_or_default();
                c.notes.push(format!("the target's unit {} is down: {why}{tail}", target.unit));
            }
        }
        Err(e) => c.notes.push(e),
    }
    match agent.exec("/usr/bin/dmesg", &[], Duration::from_secs(30)) {
        Ok(o) if o.exit_code == 0 => {
            let comm = target.service.exec_start.split_whitespace().next().and_then(|p| p.rsplit('/').next()).unwrap_or(&target.name);
            c.kernel_oom_kills = Some(memory::oom_kills_in_kernel_log(&o.stdout_str(), comm));
        }
        Ok(o) => c.notes.push(format!("dmesg exited {}", o.exit_code)),
        Err(e) => c.notes.push(format!("kernel log unknown: {e}")),
    }
    match journal(agent, &target.unit) {
        Ok(text) => c.journal = Some(text),
        Err(e) => c.notes.push(format!("journal not saved: {e}")),
    }
    // Last: hashing on the host freezes the guest's filesystems for a moment.
    let h = super::verify::hash(agent, how, disk, stored_paths, hash_budget);
    (c.guest_sha256, c.stored_file_exists, c.verification) = (h.sha256, h.exists, h.record);
    c.notes.extend(h.notes);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kills_take_the_larger_source() {
        let mut c = Collected::default();
        assert_eq!(c.oom_kills(), None);
        c.kernel_oom_kills = Some(2);
        assert_eq!(c.oom_kills(), Some(2));
        c.events = Some(MemoryEvents { oom_kill: 1, ..Default::default() });
        assert_eq!(c.oom_kills(), Some(2));
        c.kernel_oom_kills = None;
        assert_eq!(c.oom_kills(), Some(1));
    }
}
