//! One cell, top to bottom: prepare → boot → ready → upload while sampling → collect →
//! teardown. `steps` is that list and nothing else; each step lives in its own module, the
//! verdict is pure (`verdict`), what the cell holds is given back in one place (`teardown`),
//! and this file keeps the clock and makes sure that whatever happens (error, timeout,
//! Ctrl-C, panic) the domain is destroyed, its files removed, and a complete `result.json`
//! written.

pub mod boot;
pub mod cell;
pub mod collect;
pub mod hooks;
pub mod prepare;
pub mod ready;
pub mod record;
pub mod saved;
pub mod teardown;
pub mod verify;
pub mod state;
pub mod verdict;
pub mod workload;

pub use cell::{CellConfig, CellEnv, CellError, Phase, Reporter, UPLOAD_NAME, blocking};

use crate::guest::agent::Agent;
use crate::results::model::{CellResult, ExitReason, FailureKind};
use state::Cell;
use std::path::Path;
use std::time::{Duration, Instant};
use teardown::Resources;
use tokio_util::sync::CancellationToken;

/// What the error of a cell whose libvirt connection was lost starts with.
pub const LIBVIRT_LOST: &str = "libvirt connection lost (libvirtd stopped?)";

/// How many times a cell boots again after a stalled boot. A real early-boot hang is seen here
/// about once in 60 TCG boots: two in a row after a first stall would be rare, but a cell run
/// alone (`perfvm run`) has no matrix retry behind it.
const REBOOTS_AFTER_STALL: u32 = 2;

/// One cell. A boot that stalled before the guest agent answered is not a property of the
/// target: the cell boots again from a fresh overlay (at most `REBOOTS_AFTER_STALL` times), keeps
/// each stalled console and result as `console-stalled-N.log` and `result-stalled-N.json`, and
/// records `boot_stalls`.
///
/// With `--boot saved` the cell first takes a slot of its saved guest (built if need be), and
/// runs as that slot's domain.
pub async fn run_cell(env: &CellEnv, cfg: &CellConfig, out_dir: &Path, cancel: &CancellationToken, rep: &dyn Reporter) -> CellResult {
    let restorable = match cfg.boot {
        crate::results::model::Boot::Cold => None,
        crate::results::model::Boot::Saved => match saved::take(env, cfg, out_dir, cancel).await {
            Ok(r) => Some(r),
            Err(e) => {
                let mut r = record::base(env, cfg);
                (r.exit_reason, r.failure, r.error) = (e.reason, Some(e.kind), Some(e.message));
                if cancel.is_cancelled() {
                    (r.interrupted, r.failure) = (true, Some(FailureKind::Interrupted));
                } else if e.kind == FailureKind::Infrastructure && !crate::hypervisor::conn::alive(&env.host.conn) {
                    r.failure = Some(FailureKind::HostLost);
                }
                write(out_dir, &r);
                return r;
            }
        },
    };
    let slot_cfg;
    let cfg = match &restorable {
        Some(r) => {
            slot_cfg = CellConfig { domain_name: r.slot.name(), ..cfg.clone() };
            &slot_cfg
        }
        None => cfg,
    };
    let saved = restorable.as_ref();
    let mut res = run_once(env, cfg, saved, out_dir, cancel, rep).await;
    let mut stalls = 0;
    while res.failure == Some(FailureKind::BootStalled) && !cancel.is_cancelled() && stalls < REBOOTS_AFTER_STALL {
        stalls += 1;
        let _ = std::fs::rename(out_dir.join("console.log"), out_dir.join(format!("console-stalled-{stalls}.log")));
        // Kept aside, not as the attempt's result: a perfvm killed during the next boot must
        // leave an attempt without a result (run again on resume), not the stalled one's boot_failed.
        let _ = std::fs::rename(out_dir.join(crate::rundir::RESULT), out_dir.join(format!("result-stalled-{stalls}.json")));
        eprintln!("perfvm: {}: {}; booting it once more", cfg.cell, res.error.as_deref().unwrap_or(""));
        res = run_once(env, cfg, saved, out_dir, cancel, rep).await;
        res.boot_stalls = stalls;
        write(out_dir, &res);
    }
    res
}

/// A result for a cell that could not run its pipeline at all (a panic in a matrix task).
pub fn failed_result(env: &CellEnv, cfg: &CellConfig, message: String) -> CellResult {
    let mut r = record::base(env, cfg);
    r.error = Some(message);
    r.failure = Some(FailureKind::Infrastructure);
    r
}

/// The steps of a cell, in order.
async fn steps(c: &mut Cell<'_>) -> Result<(), CellError> {
    let (env, cfg) = (c.env, c.cfg);
    if let Some(cmd) = &cfg.hook_before {
        c.host_hook("hook-before-cell", cmd, Vec::new()).await?;
    }

    c.enter(Phase::Prepare);
    let saved_disk = c.saved.map(|r| r.slot.path(crate::saved::DISK));
    let p = tokio::task::block_in_place(|| prepare::prepare(env, cfg, saved_disk.as_deref()))?;
    let spec = boot::spec(env, cfg, &p);
    let base = format!("http://127.0.0.1:{}", p.placed.local_port());
    (c.res.host_port, c.res.ssh_port) = (Some(p.placed.local_port()), p.ssh_port);
    let secret = p.secret.clone();
    (c.held.work, c.held.placed, c.held.redactor) = (Some(p.work), Some(p.placed), env.target.redactor(&p.secret));

    c.enter(Phase::Boot);
    let guard = tokio::task::block_in_place(|| match c.saved {
        None => boot::boot(env, &spec),
        Some(r) => saved::restore(env, &spec, r),
    })?;
    let dom = guard.domain().clone();
    c.held.domain = Some(guard);
    let agent = Agent::new(dom.clone());

    c.enter(Phase::Agent);
    // A restored guest prints nothing to its console: silence there is no stall.
    let console = c.held.placed.as_ref().and_then(|p| p.console_here()).filter(|_| c.saved.is_none());
    ready::wait_agent(&dom, &agent, cfg.accel, c.deadline, console.as_deref(), boot_stall()).await?;
    c.held.agent = Some(agent.clone());

    if c.saved.is_none() {
        c.enter(Phase::CloudInit);
        ready::wait_cloud_init(&dom, &agent, cfg.accel, c.deadline).await?;
    } else {
        c.enter(Phase::Deliver);
        saved::deliver(&dom, &agent, &env.target, &secret, c.deadline).await?;
    }

    c.enter(Phase::Healthy);
    ready::wait_healthy(&env.target, &base, &dom, &agent, cfg.accel, c.deadline, &mut c.res.restarts_before_upload).await?;
    c.close();

    // A login and per-file set-up requests, if the profile has them; not part of the upload.
    if env.target.login.is_some() || !env.target.before_upload.is_empty() {
        c.enter(Phase::Login);
    }
    let session = crate::upload::session::open(&env.target, &base, &cfg.upload_names(), &secret, c.time_left())
        .await
        .map_err(|e| CellError::new(ExitReason::HttpError, e))?;
    c.close();
    if let Some(cmd) = &env.target.guest_setup {
        c.guest_hook("guest-setup", cmd, &agent).await?;
    }

    c.enter(Phase::Upload);
    let plan = workload::UploadPlan::new(env, cfg, &base, &session, &secret, c.deadline, c.out.join("samples.csv"));
    let sources = crate::sampler::Sources::new(dom.clone(), agent.clone(), env.target.cgroup_dir(), env.host.qemu_pid(&cfg.domain_name));
    let report = workload::run(sources, plan, cfg, c.rep).await;
    c.reachable()?;
    let report = report?;
    record::upload(&mut c.res, &report, cfg);

    c.enter(Phase::Collect);
    let disk = c.held.placed.as_ref().and_then(|p| p.disk_here());
    let found = collect::after_upload(&agent, &dom, &env.target, &report, &session.vars, cfg.file_size.bytes(), cfg.verify, disk).await?;
    c.close();
    c.judge(&report, found);

    if let Some(cmd) = &env.target.guest_teardown
        && let Err(e) = c.guest_hook("guest-teardown", cmd, &agent).await
    {
        c.fail(ExitReason::HarnessError, e.message);
    }
    Ok(())
}

async fn run_once(env: &CellEnv, cfg: &CellConfig, saved: Option<&saved::Restorable>, out: &Path, cancel: &CancellationToken, rep: &dyn Reporter) -> CellResult {
    let t0 = Instant::now();
    let mut res = record::base(env, cfg);
    res.saved_state = saved.map(|r| r.info.clone());
    let mut cell = Cell { env, cfg, out, rep, saved, res, held: Resources::default(), t0, deadline: t0 + cfg.timeout, phase: None, phase_started: None };
    // Collection has its own budget beyond --timeout: the in-guest sha256 of every file.
    let hard_deadline = cell.deadline + collect::hash_budget(cfg.total_bytes()) + collect::FIXED_BUDGET;
    let outcome = tokio::select! {
        // A cell that finished in the same instant as a signal counts as finished.
        biased;
        r = tokio::time::timeout_at(hard_deadline.into(), steps(&mut cell)) => r.unwrap_or_else(|_| Err(CellError::new(ExitReason::Timeout, ""))),
        _ = cancel.cancelled() => Err(CellError::new(ExitReason::HarnessError, "interrupted by a signal")),
    };
    if let Err(e) = outcome {
        cell.failed(e, cancel).await;
    }
    cell.save_console().await;
    cell.res.error = cell.res.error.take().map(|e| cell.held.redact(&e));
    cell.settle_failure();
    // Written before teardown too, so a crash during teardown loses nothing measured.
    write(out, &cell.res);
    cell.teardown(cancel).await;
    cell.res.harness_peak_rss_bytes = crate::proc::own_peak_rss_bytes();
    cell.res.error = cell.res.error.take().map(|e| cell.held.redact(&e));
    cell.settle_failure();
    write(out, &cell.res);
    cell.res
}

pub(crate) fn write(out: &Path, r: &CellResult) {
    if let Err(e) = crate::rundir::write_result(out, r) {
        eprintln!("perfvm: cannot write result to {}: {e}", out.display());
    }
}

/// How long a guest's console may stay silent before its agent answers: 90 s, or
/// PERFVM_BOOT_STALL_SECS. A normal boot here prints within seconds all the way to the agent.
pub(crate) fn boot_stall() -> Duration {
    let secs = std::env::var("PERFVM_BOOT_STALL_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(90);
    Duration::from_secs(secs)
}
