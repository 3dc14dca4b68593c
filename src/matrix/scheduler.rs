//! The matrix scheduler: which cell runs next, on which host, and what a finished attempt means
//! for the rest. Cells start while their cost (guest RAM + qemu's overhead) fits a host's
//! budget and jobs; an infrastructure failure is retried (`--retries`); a cell whose host was
//! lost moves to another host without using a retry, and with no host left the run stops;
//! `--stop-on-failure` and Ctrl-C start nothing new; under `--target-rsd` a shape gets one more
//! repetition while its throughput is not steady. Cells run through a [`CellRunner`], so the
//! policies are unit-tested with a fake one; the real one is the cell pipeline.

use super::schedule::{self, Slot};
use crate::plan::key::CellKey;
use crate::plan::repeats::{self, Adaptive};
use crate::results::model::{CellResult, FailureKind};
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// One attempt of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    pub key: CellKey,
    pub attempt: u32,
}

/// Runs one attempt of a cell on a host (by index) to its final result, whatever happens in it;
/// with `cancel` cancelled it tears down and returns an interrupted result.
pub trait CellRunner: Send + Sync + 'static {
    fn run(&self, host: usize, job: Job, cancel: CancellationToken) -> Pin<Box<dyn Future<Output = CellResult> + Send>>;
}

/// What the scheduler tells the caller as the run goes: the caller writes the exports, the
/// history and the progress the user sees.
pub trait Events {
    fn line(&mut self, text: &str);
    /// An attempt finished (not interrupted): `results` is every finished attempt so far,
    /// `unsettled` the cells queued or running. An error (the results disk is full) stops the run.
    fn finished(&mut self, results: &[CellResult], unsettled: &HashSet<CellKey>) -> anyhow::Result<()>;
    /// Cells finished now and before, failed now, planned, still to run, and the mean seconds a
    /// cell has taken per job so far.
    fn progress(&mut self, done: usize, failed: usize, planned: usize, remaining: usize, eta_seconds: f64);
}

/// The rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Retries of a cell after an infrastructure failure.
    pub retries: u32,
    pub stop_on_failure: bool,
    /// `--target-rsd`: repetitions decided from settled results.
    pub adaptive: Option<Adaptive>,
    /// What a cell costs a host's budget beyond its guest RAM (MiB).
    pub overhead_mib: u64,
}

/// A cell waiting to run: its attempt number, and how often it moved off a lost host (moves
/// do not count against `--retries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub key: CellKey,
    pub attempt: u32,
    pub moves: u32,
}

/// What to do with a cell, from its finished attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// It has a final result: a measurement, or infrastructure failures with retries used up.
    Done,
    /// Run this attempt, having moved off lost hosts this often.
    Run { attempt: u32, moves: u32 },
}

/// Failures a matrix tries again (a second stalled boot included).
fn retried(kind: Option<FailureKind>) -> bool {
    matches!(kind, Some(FailureKind::Infrastructure | FailureKind::BootStalled))
}

/// Decide from the finished attempts of one cell (interrupted ones excluded), as a running
/// matrix would have: attempts lost with their host do not count against `retries`. Pure.
pub fn next(finished: &[CellResult], retries: u32) -> Next {
    if finished.iter().any(|r| !retried(r.failure) && r.failure != Some(FailureKind::HostLost)) {
        return Next::Done;
    }
    let moves = finished.iter().filter(|r| r.failure == Some(FailureKind::HostLost)).count() as u32;
    if finished.len() as u32 - moves > retries {
        Next::Done
    } else {
        Next::Run { attempt: finished.iter().map(|r| r.attempt).max().unwrap_or(0) + 1, moves }
    }
}

/// Why the run stopped before every planned cell had a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// Every host that could run the cells left was lost; during this cell.
    HostsLost { during: String },
    /// The cells left fit no host that remains.
    NothingFits { cells: Vec<String> },
    /// `--stop-on-failure`, after this cell.
    Failure { cell: String },
}

#[derive(Debug)]
pub struct Outcome {
    /// Every finished attempt: from before (resume) and from now.
    pub results: Vec<CellResult>,
    /// The cells wanted in the end (with `--target-rsd`, the repetitions decided).
    pub planned: Vec<CellKey>,
    pub stopped: Option<Stopped>,
    pub interrupted: bool,
    /// Cells still queued when the run ended (a retry, a move): not settled, not judged.
    pub unsettled: HashSet<CellKey>,
    /// Seconds the run took.
    pub wall_seconds: f64,
}

pub struct Scheduler {
    pub policy: Policy,
    /// The hosts' names, budgets and jobs, in the runner's host order.
    pub hosts: Vec<String>,
    pub slots: Vec<Slot>,
    /// Every selected cell, up to the most repetitions a cell may get.
    pub selected: Vec<CellKey>,
    /// A cell's seconds as the cost model has them (the ETA, corrected by the cells run).
    pub model: crate::plan::estimate::Cost,
}

impl Scheduler {
    fn cost(&self, k: &CellKey) -> u64 {
        k.ram_mib + self.policy.overhead_mib
    }

    /// The cells wanted now given the settled results; without `--target-rsd`, all selected.
    fn planned(&self, results: &[CellResult], unsettled: &HashSet<CellKey>) -> Vec<CellKey> {
        let settled = crate::results::export::settled(crate::results::export::finals(results).into_iter().filter(|r| !unsettled.contains(&r.key())));
        repeats::planned(&self.selected, &settled, self.policy.adaptive.as_ref())
    }

    /// Where a run stands given the attempts already finished: each cell's next step, the cells
    /// wanted now, and those still to run.
    fn resume(&self, results: &[CellResult]) -> (std::collections::HashMap<CellKey, Next>, Vec<CellKey>, Vec<Pending>) {
        let mut next_of = std::collections::HashMap::new();
        for k in &self.selected {
            let mine: Vec<CellResult> = results.iter().filter(|r| r.key() == *k).cloned().collect();
            next_of.insert(*k, next(&mine, self.policy.retries));
        }
        // A cell queued for a retry is not settled: its last attempt is not its final one.
        let retrying: HashSet<CellKey> = next_of.iter().filter(|(_, n)| matches!(n, Next::Run { attempt, .. } if *attempt > 1)).map(|(k, _)| *k).collect();
        let planned = self.planned(results, &retrying);
        let pending = planned
            .iter()
            .filter_map(|k| match next_of.get(k) {
                Some(Next::Run { attempt, moves }) => Some(Pending { key: *k, attempt: *attempt, moves: *moves }),
                _ => None,
            })
            .collect();
        (next_of, planned, pending)
    }

    /// The cells wanted now, and those of them still to run, given those finished.
    pub fn counts(&self, finished: &[CellResult]) -> (usize, HashSet<CellKey>) {
        let (_, planned, pending) = self.resume(finished);
        (planned.len(), pending.iter().map(|p| p.key).collect())
    }

    /// Run the matrix. `finished` holds the attempts already on disk (a resume): cells with a
    /// final result are not run again; the others continue at their next attempt.
    pub async fn run(mut self, finished: Vec<CellResult>, runner: Arc<dyn CellRunner>, cancel: CancellationToken, events: &mut dyn Events) -> anyhow::Result<Outcome> {
        let started = std::time::Instant::now();
        let mut results = finished;
        let (next_of, mut planned, mut pending) = self.resume(&results);
        let already = planned.len() - pending.len();
        let mut running: HashSet<CellKey> = HashSet::new();
        let unsettled = |pending: &[Pending], running: &HashSet<CellKey>| -> HashSet<CellKey> { pending.iter().map(|p| p.key).chain(running.iter().copied()).collect() };
        let mut set: tokio::task::JoinSet<(usize, Pending, u64, CellResult, f64)> = tokio::task::JoinSet::new();
        let (mut stop, mut stopped) = (false, None);
        // (real seconds, model seconds) of the attempts run now: how far the model is off here.
        let (mut done_now, mut failed_now, mut timed) = (0usize, 0usize, Vec::<(f64, f64)>::new());
        loop {
            while !stop && !cancel.is_cancelled() {
                let costs: Vec<u64> = pending.iter().map(|p| self.cost(&p.key)).collect();
                let Some((h, i)) = schedule::pick_host(&costs, &self.slots) else { break };
                let job = pending.remove(i);
                let cost = costs[i];
                self.slots[h].budget.take(cost);
                self.slots[h].running += 1;
                running.insert(job.key);
                let fut = runner.run(h, Job { key: job.key, attempt: job.attempt }, cancel.clone());
                set.spawn(async move {
                    let t = std::time::Instant::now();
                    let r = fut.await;
                    (h, job, cost, r, t.elapsed().as_secs_f64())
                });
            }
            let Some(joined) = set.join_next().await else {
                // Nothing runs and nothing can start: the cells left fit no host that remains.
                if !pending.is_empty() && !stop && !cancel.is_cancelled() && stopped.is_none() {
                    let cells: Vec<String> = pending.iter().map(|p| p.key.id()).collect();
                    events.line(&format!("perfvm: {} cell(s) fit no host that is left: {}", cells.len(), cells.join(", ")));
                    stopped = Some(Stopped::NothingFits { cells });
                }
                break;
            };
            let (h, job, cost, r, secs) = joined.map_err(|e| anyhow::anyhow!("a cell task failed: {e}"))?;
            self.slots[h].running -= 1;
            self.slots[h].budget.give(cost);
            running.remove(&job.key);
            if r.interrupted {
                continue;
            }
            timed.push((secs, (self.model)(&job.key)));
            if let Some(w) = r.host_facts.as_ref().and_then(crate::hostfacts::noise_warning) {
                events.line(&format!("perfvm: {}: {w}", job.key.id()));
            }
            // A host whose libvirtd is gone gets no more cells; its cells go to the other hosts.
            // Without any host left no cell can run: stop, keep what is finished.
            let lost = r.failure == Some(FailureKind::HostLost);
            let mut moved = false;
            if lost {
                let others = self.slots.iter().enumerate().any(|(i, s)| i != h && !s.bad);
                if !self.slots[h].bad {
                    self.slots[h].bad = true;
                    events.line(&format!(
                        "perfvm: host {} lost during {}: {}{}",
                        self.hosts.get(h).map(String::as_str).unwrap_or("?"),
                        job.key.id(),
                        crate::pipeline::LIBVIRT_LOST,
                        if others { "; its cells go to the other hosts" } else { "; no new cells start" }
                    ));
                }
                if others && !cancel.is_cancelled() {
                    moved = true;
                } else if !matches!(stopped, Some(Stopped::HostsLost { .. })) {
                    // Whatever stopped the run before, no host is left: that is what to say.
                    stopped = Some(Stopped::HostsLost { during: job.key.id() });
                    stop = true;
                }
            }
            let retry = moved || (retried(r.failure) && job.attempt - job.moves <= self.policy.retries && !cancel.is_cancelled());
            if retry {
                if !moved {
                    events.line(&format!("perfvm: {} attempt {} failed ({}): retrying", job.key.id(), job.attempt, r.exit_reason));
                }
                pending.insert(0, Pending { key: job.key, attempt: job.attempt + 1, moves: job.moves + moved as u32 });
            } else {
                done_now += 1;
                if !r.success {
                    failed_now += 1;
                    if self.policy.stop_on_failure && !stop {
                        events.line(&format!("perfvm: {} failed ({}); --stop-on-failure: no new cells start", job.key.id(), r.exit_reason));
                        stop = true;
                        stopped.get_or_insert(Stopped::Failure { cell: job.key.id() });
                    }
                }
            }
            results.push(r);
            if self.policy.adaptive.is_some() && !retry {
                // One more repetition of this cell's shape when its throughput is not steady yet.
                let now = self.planned(&results, &unsettled(&pending, &running));
                for k in now.iter().filter(|k| !planned.contains(k)) {
                    events.line(&format!("perfvm: {}: throughput not steady yet, adding repetition {}", k.shape(), k.repeat));
                    let (attempt, moves) = match next_of.get(k) {
                        Some(Next::Run { attempt, moves }) => (*attempt, *moves),
                        _ => (1, 0),
                    };
                    pending.push(Pending { key: *k, attempt, moves });
                }
                planned = now;
            }
            events.finished(&results, &unsettled(&pending, &running))?;
            let remaining = pending.len() + self.slots.iter().map(|s| s.running).sum::<usize>();
            let good_jobs: usize = self.slots.iter().filter(|s| !s.bad).map(|s| s.jobs).sum();
            let k = crate::plan::estimate::correction(&timed);
            let left: Vec<f64> = pending.iter().map(|p| p.key).chain(running.iter().copied()).map(|c| (self.model)(&c) * k).collect();
            events.progress(already + done_now, failed_now, planned.len(), remaining, crate::plan::estimate::wall(left, good_jobs));
        }
        let unsettled = unsettled(&pending, &running);
        Ok(Outcome { results, planned, stopped, interrupted: cancel.is_cancelled(), unsettled, wall_seconds: started.elapsed().as_secs_f64() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::schedule::Budget;
    use crate::results::model::ExitReason;
    use crate::size::ByteSize;
    use std::collections::HashMap;
    use std::sync::Mutex;

    fn key(ram: u64, repeat: u32) -> CellKey {
        CellKey { ram_mib: ram, size: ByteSize::parse("1M").unwrap(), concurrency: 1, repeat, target: crate::plan::key::TargetTag::NONE }
    }

    fn result(job: Job, reason: ExitReason, failure: Option<FailureKind>, throughput: f64) -> CellResult {
        let mut r: CellResult = serde_json::from_str(include_str!("../../tests/data/result-sample.json")).unwrap();
        (r.ram_mb, r.file_size_bytes, r.concurrency, r.repeat, r.attempt) = (job.key.ram_mib, job.key.size.bytes(), 1, job.key.repeat, job.attempt);
        (r.exit_reason, r.success, r.failure) = (reason, reason == ExitReason::Success, failure);
        r.throughput_mbps = Some(throughput);
        r.interrupted = failure == Some(FailureKind::Interrupted);
        r
    }

    /// A fake runner: each (cell, attempt) answers what the script says (success otherwise),
    /// and every start is logged with its host.
    #[derive(Default)]
    struct Fake {
        script: HashMap<(u64, u32, u32), (ExitReason, Option<FailureKind>)>,
        throughput: HashMap<(u64, u32), f64>,
        /// Cancel the run when this cell starts (Ctrl-C mid-run).
        cancel_at: Option<(u64, u32)>,
        started: Mutex<Vec<(usize, CellKey, u32)>>,
    }

    impl CellRunner for Fake {
        fn run(&self, host: usize, job: Job, cancel: CancellationToken) -> Pin<Box<dyn Future<Output = CellResult> + Send>> {
            self.started.lock().unwrap().push((host, job.key, job.attempt));
            if self.cancel_at == Some((job.key.ram_mib, job.key.repeat)) {
                cancel.cancel();
            }
            let (reason, failure) = if cancel.is_cancelled() {
                (ExitReason::HarnessError, Some(FailureKind::Interrupted))
            } else {
                self.script.get(&(job.key.ram_mib, job.key.repeat, job.attempt)).copied().unwrap_or((ExitReason::Success, None))
            };
            let tp = self.throughput.get(&(job.key.ram_mib, job.key.repeat)).copied().unwrap_or(50.0);
            let r = result(job, reason, failure, tp);
            Box::pin(async move { r })
        }
    }

    #[derive(Default)]
    struct Log {
        lines: Vec<String>,
        finished: usize,
    }

    impl Events for Log {
        fn line(&mut self, text: &str) {
            self.lines.push(text.to_string());
        }
        fn finished(&mut self, _: &[CellResult], _: &HashSet<CellKey>) -> anyhow::Result<()> {
            self.finished += 1;
            Ok(())
        }
        fn progress(&mut self, _: usize, _: usize, _: usize, _: usize, _: f64) {}
    }

    fn slot(jobs: usize) -> Slot {
        Slot { budget: Budget { total_mib: 100_000, used_mib: 0 }, jobs, running: 0, bad: false }
    }

    fn sched(cells: Vec<CellKey>, hosts: usize, policy: Policy) -> Scheduler {
        Scheduler { policy, hosts: (0..hosts).map(|h| format!("h{h}")).collect(), slots: (0..hosts).map(|_| slot(1)).collect(), selected: cells, model: std::sync::Arc::new(|_| 30.0) }
    }

    const RULES: Policy = Policy { retries: 1, stop_on_failure: false, adaptive: None, overhead_mib: 1200 };

    async fn go(s: Scheduler, before: Vec<CellResult>, fake: Arc<Fake>) -> (Outcome, Log) {
        let mut log = Log::default();
        let out = s.run(before, fake, CancellationToken::new(), &mut log).await.unwrap();
        (out, log)
    }

    fn attempts(o: &Outcome, ram: u64) -> Vec<(u32, ExitReason)> {
        o.results.iter().filter(|r| r.ram_mb == ram).map(|r| (r.attempt, r.exit_reason)).collect()
    }

    #[tokio::test]
    async fn an_infrastructure_failure_is_retried_and_a_target_failure_is_not() {
        let mut fake = Fake::default();
        fake.script.insert((256, 1, 1), (ExitReason::BootFailed, Some(FailureKind::Infrastructure)));
        fake.script.insert((512, 1, 1), (ExitReason::OomKilled, Some(FailureKind::Target)));
        fake.script.insert((1024, 1, 1), (ExitReason::HarnessError, Some(FailureKind::Infrastructure)));
        fake.script.insert((1024, 1, 2), (ExitReason::HarnessError, Some(FailureKind::Infrastructure)));
        let (o, log) = go(sched(vec![key(256, 1), key(512, 1), key(1024, 1)], 1, RULES), vec![], Arc::new(fake)).await;
        assert_eq!(attempts(&o, 256), [(1, ExitReason::BootFailed), (2, ExitReason::Success)]);
        assert_eq!(attempts(&o, 512), [(1, ExitReason::OomKilled)], "a target's failure is a result");
        assert_eq!(attempts(&o, 1024).len(), 2, "--retries 1: two attempts, then it stands");
        assert!(log.lines.iter().any(|l| l.contains("256-1M-r1 attempt 1 failed (boot_failed): retrying")));
        assert_eq!(o.stopped, None);
        assert_eq!(log.finished, 5);
    }

    #[tokio::test]
    async fn a_lost_hosts_cell_moves_to_another_host_without_using_a_retry() {
        let mut fake = Fake::default();
        fake.script.insert((256, 1, 1), (ExitReason::BootFailed, Some(FailureKind::Infrastructure)));
        fake.script.insert((256, 1, 2), (ExitReason::HarnessError, Some(FailureKind::HostLost)));
        let fake = Arc::new(fake);
        let policy = Policy { retries: 1, ..RULES };
        let (o, log) = go(sched(vec![key(256, 1), key(512, 1)], 2, policy), vec![], fake.clone()).await;
        // Attempt 1 failed (a retry used), attempt 2 lost its host (no retry used), attempt 3 ran
        // on the host that is left.
        assert_eq!(attempts(&o, 256).iter().map(|a| a.0).collect::<Vec<_>>(), [1, 2, 3]);
        let started = fake.started.lock().unwrap().clone();
        let lost_host = started.iter().find(|(_, k, a)| k.ram_mib == 256 && *a == 2).unwrap().0;
        let third = started.iter().find(|(_, k, a)| k.ram_mib == 256 && *a == 3).unwrap().0;
        assert_ne!(lost_host, third, "moved off the lost host");
        assert!(started.iter().filter(|(h, _, _)| *h == lost_host).all(|(_, k, a)| !(k.ram_mib == 256 && *a == 3)));
        assert!(log.lines.iter().any(|l| l.contains("lost during 256-1M-r1") && l.contains("go to the other hosts")));
        assert_eq!(o.stopped, None);
        // The only host lost: the run stops with the cells on disk.
        let mut fake = Fake::default();
        fake.script.insert((256, 1, 1), (ExitReason::HarnessError, Some(FailureKind::HostLost)));
        let (o, _) = go(sched(vec![key(256, 1), key(512, 1)], 1, RULES), vec![], Arc::new(fake)).await;
        assert_eq!(o.stopped, Some(Stopped::HostsLost { during: "256-1M-r1".into() }));
        assert!(o.results.iter().all(|r| r.ram_mb == 256), "nothing else started");
    }

    #[tokio::test]
    async fn target_rsd_adds_repetitions_until_steady_or_the_maximum() {
        let mut fake = Fake::default();
        // 256 is steady after three; 512 is noisy and gets the maximum of five.
        for (r, tp) in [(1, 50.0), (2, 50.5), (3, 49.5)] {
            fake.throughput.insert((256, r), tp);
        }
        for (r, tp) in [(1, 50.0), (2, 70.0), (3, 40.0), (4, 60.0), (5, 45.0)] {
            fake.throughput.insert((512, r), tp);
        }
        let adaptive = Adaptive { min_repeats: 3, max_repeats: 5, target_rsd_percent: 5.0 };
        let cells = crate::plan::expand::expand(&[256, 512], &[ByteSize::parse("1M").unwrap()], &[1], &[crate::plan::key::TargetTag::NONE], 5).unwrap();
        let (o, log) = go(sched(cells, 1, Policy { adaptive: Some(adaptive), ..RULES }), vec![], Arc::new(fake)).await;
        assert_eq!(attempts(&o, 256).len(), 3);
        assert_eq!(attempts(&o, 512).len(), 5);
        assert_eq!(o.planned.len(), 8);
        assert!(log.lines.iter().any(|l| l == "perfvm: 512-1M: throughput not steady yet, adding repetition 4"));
        // A failed repetition ends its shape.
        let mut fake = Fake::default();
        fake.script.insert((256, 2, 1), (ExitReason::OomKilled, Some(FailureKind::Target)));
        let cells = crate::plan::expand::expand(&[256], &[ByteSize::parse("1M").unwrap()], &[1], &[crate::plan::key::TargetTag::NONE], 5).unwrap();
        let (o, _) = go(sched(cells, 1, Policy { adaptive: Some(adaptive), ..RULES }), vec![], Arc::new(fake)).await;
        assert_eq!(attempts(&o, 256).len(), 3);
    }

    #[tokio::test]
    async fn ctrl_c_starts_nothing_new_and_keeps_no_interrupted_attempt() {
        let fake = Arc::new(Fake { cancel_at: Some((512, 1)), ..Default::default() });
        let (o, log) = go(sched(vec![key(256, 1), key(512, 1), key(1024, 1)], 1, RULES), vec![], fake.clone()).await;
        assert!(o.interrupted);
        assert_eq!(o.results.iter().map(|r| r.ram_mb).collect::<Vec<_>>(), [256], "the interrupted attempt is not a result");
        assert!(!fake.started.lock().unwrap().iter().any(|(_, k, _)| k.ram_mib == 1024), "nothing new after Ctrl-C");
        assert!(!log.lines.iter().any(|l| l.contains("retrying")), "an interrupted cell is not retried");
    }

    #[tokio::test]
    async fn stop_on_failure_starts_no_new_cell_after_the_first_failure() {
        let mut fake = Fake::default();
        fake.script.insert((256, 1, 1), (ExitReason::HttpError, Some(FailureKind::Target)));
        let fake = Arc::new(fake);
        let (o, _) = go(sched(vec![key(256, 1), key(512, 1)], 1, Policy { stop_on_failure: true, ..RULES }), vec![], fake.clone()).await;
        assert_eq!(o.stopped, Some(Stopped::Failure { cell: "256-1M-r1".into() }));
        assert_eq!(fake.started.lock().unwrap().len(), 1);
        // An infrastructure failure is retried first: it is not the target's failure.
        let mut fake = Fake::default();
        fake.script.insert((256, 1, 1), (ExitReason::BootFailed, Some(FailureKind::Infrastructure)));
        let (o, _) = go(sched(vec![key(256, 1), key(512, 1)], 1, Policy { stop_on_failure: true, ..RULES }), vec![], Arc::new(fake)).await;
        assert_eq!((o.stopped, o.results.len()), (None, 3));
        // A host lost after a stop on failure is still what the run says (nothing can resume
        // without it).
        let mut fake = Fake::default();
        fake.script.insert((256, 1, 1), (ExitReason::HttpError, Some(FailureKind::Target)));
        fake.script.insert((512, 1, 1), (ExitReason::HarnessError, Some(FailureKind::HostLost)));
        let s = Scheduler { slots: vec![slot(2)], ..sched(vec![key(256, 1), key(512, 1)], 1, Policy { stop_on_failure: true, ..RULES }) };
        let (o, _) = go(s, vec![], Arc::new(fake)).await;
        assert_eq!(o.stopped, Some(Stopped::HostsLost { during: "512-1M-r1".into() }));
    }

    #[tokio::test]
    async fn resume_after_a_crash_runs_only_what_has_no_final_result() {
        let done = |ram, attempt, reason, failure| result(Job { key: key(ram, 1), attempt }, reason, failure, 50.0);
        let before = vec![
            done(256, 1, ExitReason::Success, None),
            done(512, 1, ExitReason::OomKilled, Some(FailureKind::Target)),
            // Its host was lost, then it failed once: one retry used, so attempt 3 runs.
            done(1024, 1, ExitReason::HarnessError, Some(FailureKind::HostLost)),
            done(1024, 2, ExitReason::BootFailed, Some(FailureKind::Infrastructure)),
            // Failed twice: retries used up; it stands.
            done(2048, 1, ExitReason::BootFailed, Some(FailureKind::Infrastructure)),
            done(2048, 2, ExitReason::BootFailed, Some(FailureKind::Infrastructure)),
        ];
        let fake = Arc::new(Fake::default());
        let cells = vec![key(256, 1), key(512, 1), key(1024, 1), key(2048, 1), key(4096, 1)];
        let (o, _) = go(sched(cells, 1, RULES), before, fake.clone()).await;
        let started: Vec<(u64, u32)> = fake.started.lock().unwrap().iter().map(|(_, k, a)| (k.ram_mib, *a)).collect();
        assert_eq!(started, [(1024, 3), (4096, 1)]);
        assert_eq!(o.results.len(), 8);
    }

    #[tokio::test]
    async fn cells_that_fit_no_host_end_the_run_with_their_names() {
        let s = Scheduler { policy: RULES, hosts: vec!["here".into()], slots: vec![Slot { budget: Budget { total_mib: 2000, used_mib: 0 }, jobs: 1, running: 0, bad: false }], selected: vec![key(256, 1), key(4096, 1)], model: std::sync::Arc::new(|_| 30.0) };
        let (o, log) = go(s, vec![], Arc::new(Fake::default())).await;
        assert_eq!(o.stopped, Some(Stopped::NothingFits { cells: vec!["4096-1M-r1".into()] }));
        assert_eq!(o.results.len(), 1);
        assert!(log.lines.iter().any(|l| l.contains("fit no host")));
    }

    #[test]
    fn next_attempt_rules() {
        let r = |attempt, reason: ExitReason, failure| result(Job { key: key(512, 1), attempt }, reason, failure, 1.0);
        let infra = Some(FailureKind::Infrastructure);
        assert_eq!(next(&[], 1), Next::Run { attempt: 1, moves: 0 });
        assert_eq!(next(&[r(1, ExitReason::Success, None)], 1), Next::Done);
        assert_eq!(next(&[r(1, ExitReason::OomKilled, Some(FailureKind::Target))], 3), Next::Done);
        assert_eq!(next(&[r(1, ExitReason::BootFailed, infra)], 1), Next::Run { attempt: 2, moves: 0 });
        assert_eq!(next(&[r(1, ExitReason::BootFailed, Some(FailureKind::BootStalled))], 1), Next::Run { attempt: 2, moves: 0 });
        assert_eq!(next(&[r(1, ExitReason::BootFailed, infra), r(2, ExitReason::HarnessError, infra)], 1), Next::Done);
        assert_eq!(next(&[r(1, ExitReason::BootFailed, infra)], 0), Next::Done);
        let lost = r(1, ExitReason::HarnessError, Some(FailureKind::HostLost));
        assert_eq!(next(&[lost.clone(), r(2, ExitReason::BootFailed, infra)], 1), Next::Run { attempt: 3, moves: 1 });
        assert_eq!(next(&[lost, r(2, ExitReason::BootFailed, infra), r(3, ExitReason::BootFailed, infra)], 1), Next::Done);
    }
}
