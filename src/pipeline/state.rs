//! A cell in progress: its result so far, what it holds, and its clock; and what happens to it
//! when a step fails, when its logs are saved, and when it is torn down. The steps themselves
//! are in `mod.rs`.

use super::cell::{CellConfig, CellEnv, CellError, Phase, Reporter, blocking};
use super::teardown::Resources;
use super::{LIBVIRT_LOST, collect, hooks, record, verdict, workload};
use crate::guest::agent::Agent;
use crate::results::model::{CellResult, ExitReason, FailureKind, PhaseTimes, round3};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A cell in progress: its result so far, what it holds, and its clock.
pub struct Cell<'a> {
    pub env: &'a CellEnv,
    pub cfg: &'a CellConfig,
    pub out: &'a Path,
    pub rep: &'a dyn Reporter,
    /// `--boot saved`: the slot of the saved guest this cell restores.
    pub saved: Option<&'a super::saved::Restorable>,
    pub res: CellResult,
    pub held: Resources,
    pub t0: Instant,
    /// Boot, readiness and the upload must be done by then (`--timeout`).
    pub deadline: Instant,
    /// The last phase entered (what a failure is told as), and when it began while it runs.
    pub phase: Option<Phase>,
    pub phase_started: Option<Instant>,
}

impl Cell<'_> {
    /// Close the phase under way (its time goes into the result) and begin `p`.
    pub fn enter(&mut self, p: Phase) {
        self.close();
        (self.phase, self.phase_started) = (Some(p), Some(Instant::now()));
        self.rep.phase(&self.cfg.cell, p);
    }

    /// Close the phase under way; a phase timed otherwise (the upload's own wall time) keeps
    /// its figure.
    pub fn close(&mut self) {
        if let (Some(p), Some(t)) = (self.phase, self.phase_started.take())
            && let Some(slot) = phase_slot(&mut self.res.phases, p)
            && slot.is_none()
        {
            *slot = Some(round3(t.elapsed().as_secs_f64()));
        }
    }

    pub fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1))
    }

    /// The cell failed after its upload (a hook, teardown): say why, keep what it measured.
    pub fn fail(&mut self, reason: ExitReason, why: String) {
        self.res.error = Some(match self.res.error.take() {
            Some(prev) => format!("{prev}; {why}"),
            None => why,
        });
        if self.res.success {
            self.res.success = false;
            self.res.exit_reason = reason;
        }
    }

    /// What the cell measured and found after its uploads, and its verdict, into the result.
    pub fn judge(&mut self, report: &workload::UploadReport, found: collect::Found) {
        let c = &found.collected;
        if let Some(j) = &c.journal {
            self.save_text("journal.log", j, |r| &mut r.journal);
        }
        record::memory(&mut self.res, report, c.memory_peak_bytes);
        self.res.oom_kills = c.oom_kills();
        let names = self.cfg.upload_names();
        let download = report.download.as_ref().map(|d| (d, record::download(&names[0], d, self.res.sha256.as_deref(), report, c.memory_peak_bytes)));
        let v = verdict::judge(&verdict::Facts {
            names: &names,
            outcomes: &report.outcomes,
            stored_paths: &found.stored,
            size: self.cfg.file_size.bytes(),
            collected: c,
            restarts_before: self.res.restarts_before_upload,
            download: download.as_ref().map(|(d, r)| (*d, r)),
            verify_possible: self.env.target.stored.is_some(),
            guest_alive: found.guest_alive,
            samples_error: report.samples_error.as_deref(),
            capture_notes: found.capture_notes.clone(),
        });
        self.res.download = download.map(|(_, r)| r);
        self.res.guest_sha256 = v.uploads[0].guest_sha256.clone();
        self.res.verification = c.verification.clone();
        (self.res.uploads, self.res.verified, self.res.restarts) = (v.uploads, v.verified, v.restarts);
        self.res.exit_reason = v.exit_reason;
        self.res.success = v.exit_reason == ExitReason::Success;
        if !v.notes.is_empty() {
            self.res.error = Some(v.notes.join("; "));
        }
    }

    /// The way to the guest is still there; a remote guest's dead tunnel fails the harness,
    /// not the target.
    pub fn reachable(&mut self) -> Result<(), CellError> {
        let Some(Err(log)) = self.held.placed.as_mut().map(|p| p.reachable()) else { return Ok(()) };
        if let Some(w) = &self.held.work {
            let _ = std::fs::copy(w.path.join(log), self.out.join(log));
        }
        Err(CellError::new(ExitReason::HarnessError, format!("the ssh tunnel to host {} ended (see {log})", self.env.host.name)))
    }

    pub async fn host_hook(&mut self, name: &str, cmd: &str, extra: Vec<(&'static str, String)>) -> Result<(), CellError> {
        let mut vars = hooks::env(self.cfg, &self.env.target.name, self.out);
        vars.extend(extra);
        let (rec, r) = hooks::host(name, cmd, &vars, self.out, self.t0, &self.held.redactor).await;
        self.res.hooks.push(rec);
        r
    }

    pub async fn guest_hook(&mut self, name: &'static str, cmd: &str, agent: &Agent) -> Result<(), CellError> {
        let (a, dir, cmd, t0, redact) = (agent.clone(), self.out.to_path_buf(), cmd.to_string(), self.t0, self.held.redactor.clone());
        let (rec, r) = blocking(move || Ok(hooks::guest(&a, name, &cmd, &dir, t0, &redact))).await?;
        self.res.hooks.push(rec);
        r
    }

    /// Save a log beside the result, without the secret; `field` names it in the result.
    pub fn save_text(&mut self, name: &str, text: &str, field: fn(&mut CellResult) -> &mut Option<String>) {
        match crate::paths::write_atomic(&self.out.join(name), self.held.redact(text).as_bytes()) {
            Ok(()) => *field(&mut self.res) = Some(name.to_string()),
            Err(e) => eprintln!("perfvm: cannot save {name}: {e}"),
        }
    }

    /// A step failed: the result says how (the phase, the exit reason, what that means for a
    /// matrix), and the unit's journal is saved when the agent was up.
    pub async fn failed(&mut self, mut e: CellError, cancel: &CancellationToken) {
        let phase = self.phase;
        self.close();
        let name = phase.map(Phase::as_str).unwrap_or("start");
        if e.reason == ExitReason::Timeout && e.message.is_empty() {
            // Not ready in time is a failure to boot; a slow upload is the target's; a slow
            // collection is ours.
            e = CellError::new(
                match phase {
                    Some(Phase::Upload) | Some(Phase::Login) => ExitReason::Timeout,
                    Some(Phase::Collect) => ExitReason::HarnessError,
                    _ => ExitReason::BootFailed,
                },
                match phase {
                    Some(Phase::Collect) => "collection exceeded its time budget".to_string(),
                    _ => format!("cell timeout of {} s reached during {name}", self.cfg.timeout.as_secs()),
                },
            );
        }
        // Every libvirt call fails once libvirtd is gone: say so instead of the symptom.
        if !cancel.is_cancelled() && !crate::hypervisor::conn::alive(&self.env.host.conn) {
            e = CellError { reason: ExitReason::HarnessError, kind: FailureKind::HostLost, message: format!("{LIBVIRT_LOST}; what failed: {}", e.message) };
        }
        self.res.exit_reason = e.reason;
        self.res.failure = Some(e.kind);
        self.res.success = false;
        // Only a cell cut short by the signal is interrupted: one that finished in the same
        // moment, or is in its teardown, keeps its result.
        self.res.interrupted = cancel.is_cancelled();
        // A step's own error may name the phase already (`login: POST /login answered …`).
        self.res.error = Some(if e.message.starts_with(&format!("{name}:")) { e.message } else { format!("{name}: {}", e.message) });
        if self.res.journal.is_none()
            && !cancel.is_cancelled()
            && let Some(agent) = self.held.agent.clone()
        {
            let unit = self.env.target.unit.clone();
            let journal = tokio::time::timeout(Duration::from_secs(20), tokio::task::spawn_blocking(move || collect::journal(&agent, &unit))).await;
            if let Ok(Ok(Ok(text))) = journal {
                self.save_text("journal.log", &text, |r| &mut r.journal);
            }
        }
    }

    /// The console log: the first thing to read when a cell fails (a remote host's is fetched).
    pub async fn save_console(&mut self) {
        let (Some(work), Some(placed)) = (&self.held.work, &self.held.placed) else { return };
        if let Err(e) = tokio::task::block_in_place(|| placed.fetch_console(&work.path)) {
            tracing::debug!("console log from {}: {e}", self.env.host.name);
        }
        if let Ok(text) = std::fs::read(work.console_log()) {
            self.save_text("console.log", &String::from_utf8_lossy(&text), |r| &mut r.console_log);
        }
    }

    /// Give everything back (or keep the guest with `--keep-vm`), then the after-cell hook.
    pub async fn teardown(&mut self, cancel: &CancellationToken) {
        self.rep.phase(&self.cfg.cell, Phase::Teardown);
        let t = Instant::now();
        if self.cfg.keep_vm && !cancel.is_cancelled() {
            self.held.keep();
        }
        // libvirt destroy and removing a multi-GiB overlay block: off the async threads, so
        // parallel cells' uploads are not stalled.
        let errors = tokio::task::block_in_place(|| self.held.teardown(&self.env.host));
        self.res.phases.teardown = Some(round3(t.elapsed().as_secs_f64()));
        if let Some(cmd) = self.cfg.hook_after.as_ref().filter(|_| !cancel.is_cancelled()) {
            super::write(self.out, &self.res);
            let extra = vec![("PERFVM_EXIT_REASON", self.res.exit_reason.as_str().to_string()), ("PERFVM_RESULT", self.out.join(crate::rundir::RESULT).display().to_string())];
            if let Err(e) = self.host_hook("hook-after-cell", cmd, extra).await {
                self.fail(ExitReason::HarnessError, e.message);
            }
        }
        if !errors.is_empty() {
            self.fail(ExitReason::HarnessError, format!("teardown: {}", errors.join("; ")));
        }
    }

    /// What the failure means for a matrix, once the result is settled.
    pub fn settle_failure(&mut self) {
        if self.res.interrupted {
            self.res.failure = Some(FailureKind::Interrupted);
        } else if self.res.success {
            self.res.failure = None;
        } else if self.res.failure.is_none() {
            // Failed by its verdict, a hook or teardown rather than a step's error.
            self.res.failure = FailureKind::of(self.res.exit_reason);
        }
        // An infrastructure failure on a host whose libvirtd went away is the host's.
        if self.res.failure == Some(FailureKind::Infrastructure) && !crate::hypervisor::conn::alive(&self.env.host.conn) {
            self.res.failure = Some(FailureKind::HostLost);
        }
    }
}

/// Where a phase's time goes in the result.
fn phase_slot(t: &mut PhaseTimes, p: Phase) -> Option<&mut Option<f64>> {
    Some(match p {
        Phase::Prepare => &mut t.prepare,
        Phase::Boot => &mut t.boot,
        Phase::Agent => &mut t.agent,
        Phase::CloudInit => &mut t.cloud_init,
        Phase::Deliver => &mut t.deliver,
        Phase::Healthy => &mut t.healthy,
        Phase::Login => &mut t.login,
        Phase::Upload => &mut t.upload,
        Phase::Collect => &mut t.collect,
        // Timed by teardown itself, which is not a step.
        Phase::Teardown => return None,
    })
}

