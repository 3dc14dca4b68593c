//! Resume bookkeeping, derived from the run directory alone: `cells/<cell-id>/a<attempt>/` holds
//! one attempt, finished when its `result.json` exists and is not marked interrupted.

use crate::plan::key::CellKey;
use crate::results::model::CellResult;
use std::path::{Path, PathBuf};

pub fn cell_dir(run: &Path, key: &CellKey) -> PathBuf {
    run.join("cells").join(key.id())
}

pub fn attempt_dir(run: &Path, key: &CellKey, attempt: u32) -> PathBuf {
    run.join(attempt_rel(key, attempt))
}

/// `cells/<cell-id>/a<attempt>`, relative to the run directory (as exports and reports name it).
pub fn attempt_rel(key: &CellKey, attempt: u32) -> String {
    format!("cells/{}/a{attempt}", key.id())
}

/// What to do with a cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// It has a final result: a measurement, or infrastructure failures with retries used up.
    Done,
    /// Run this attempt number.
    Run(u32),
}

/// Decide from the finished attempts of one cell (interrupted ones excluded). Attempts whose
/// host was lost (libvirtd gone) do not count against `retries`, as in a running matrix, where
/// such a cell moves to another host. Pure.
pub fn next(finished: &[CellResult], retries: u32) -> Next {
    if finished.iter().any(|r| !r.exit_reason.is_infrastructure()) {
        return Next::Done;
    }
    let n = finished.iter().filter(|r| !host_lost(r)).count() as u32;
    if n > retries {
        Next::Done
    } else {
        Next::Run(finished.iter().map(|r| r.attempt).max().unwrap_or(0) + 1)
    }
}

/// The attempt failed because its libvirt connection was lost, not because of the cell.
pub fn host_lost(r: &CellResult) -> bool {
    r.exit_reason.is_infrastructure() && r.error.as_deref().is_some_and(|e| e.contains(crate::pipeline::LIBVIRT_LOST))
}

/// Finished attempts of a cell, by attempt number. Read-only: attempts still running (no
/// result yet) are left alone.
pub fn finished_attempts(run: &Path, key: &CellKey) -> Vec<CellResult> {
    let mut out: Vec<CellResult> = attempt_dirs(run, key)
        .iter()
        .filter_map(|p| read(p))
        .filter(|r| !r.interrupted)
        .collect();
    out.sort_by_key(|r| r.attempt);
    out
}

/// Remove attempts that are not measurements: interrupted (Ctrl-C) or without a result (crash,
/// SIGKILL). A result.json that exists but cannot be read (another perfvm version) is moved
/// aside, never deleted. Only under the run lock, before scheduling.
pub fn discard_unfinished(run: &Path, key: &CellKey) -> usize {
    let mut n = 0;
    for p in attempt_dirs(run, key) {
        let file = p.join("result.json");
        let gone = if !file.exists() || read(&p).is_some_and(|r| r.interrupted) {
            std::fs::remove_dir_all(&p).is_ok()
        } else if read(&p).is_none() {
            let aside = p.with_extension(format!("unreadable-{}", std::process::id()));
            std::fs::rename(&p, aside).is_ok()
        } else {
            false
        };
        n += gone as usize;
    }
    n
}

/// `a<N>` directories of a cell.
fn attempt_dirs(run: &Path, key: &CellKey) -> Vec<PathBuf> {
    std::fs::read_dir(cell_dir(run, key))
        .map(|it| {
            it.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n.to_str().is_some_and(|n| n.starts_with('a') && n[1..].parse::<u32>().is_ok())))
                .collect()
        })
        .unwrap_or_default()
}

fn read(attempt: &Path) -> Option<CellResult> {
    serde_json::from_str(&std::fs::read_to_string(attempt.join("result.json")).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::model::ExitReason;

    fn r(attempt: u32, reason: ExitReason) -> CellResult {
        let mut r: CellResult = serde_json::from_str(include_str!("../../tests/data/result-sample.json")).unwrap();
        r.attempt = attempt;
        r.exit_reason = reason;
        r.success = reason == ExitReason::Success;
        r
    }

    #[test]
    fn next_attempt_rules() {
        assert_eq!(next(&[], 1), Next::Run(1));
        assert_eq!(next(&[r(1, ExitReason::Success)], 1), Next::Done);
        // Target failures are results, never retried.
        assert_eq!(next(&[r(1, ExitReason::OomKilled)], 1), Next::Done);
        assert_eq!(next(&[r(1, ExitReason::Timeout)], 3), Next::Done);
        // Infrastructure failures are retried up to --retries times.
        assert_eq!(next(&[r(1, ExitReason::BootFailed)], 1), Next::Run(2));
        assert_eq!(next(&[r(1, ExitReason::BootFailed), r(2, ExitReason::HarnessError)], 1), Next::Done);
        assert_eq!(next(&[r(1, ExitReason::BootFailed)], 0), Next::Done);
        assert_eq!(next(&[r(1, ExitReason::BootFailed), r(2, ExitReason::Success)], 1), Next::Done);
        // A lost host is not the cell's failure: it does not use up a retry.
        let mut lost = r(1, ExitReason::HarnessError);
        lost.error = Some(format!("boot: {}; what failed: define", crate::pipeline::LIBVIRT_LOST));
        assert!(host_lost(&lost) && !host_lost(&r(1, ExitReason::HarnessError)));
        assert_eq!(next(&[lost.clone(), r(2, ExitReason::BootFailed)], 1), Next::Run(3));
        assert_eq!(next(&[lost, r(2, ExitReason::BootFailed), r(3, ExitReason::BootFailed)], 1), Next::Done);
    }

    #[test]
    fn interrupted_and_incomplete_attempts_are_discarded() {
        let run = tempfile::tempdir().unwrap();
        let key = CellKey { ram_mib: 512, size: crate::size::ByteSize::parse("1G").unwrap(), concurrency: 1, repeat: 1 };
        let write = |a: u32, res: &CellResult| {
            let d = attempt_dir(run.path(), &key, a);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("result.json"), serde_json::to_vec(res).unwrap()).unwrap();
        };
        write(1, &r(1, ExitReason::BootFailed));
        let mut int = r(2, ExitReason::HarnessError);
        int.interrupted = true;
        write(2, &int);
        std::fs::create_dir_all(attempt_dir(run.path(), &key, 3)).unwrap(); // SIGKILL: no result
        let got = finished_attempts(run.path(), &key);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].attempt, 1);
        // Reading never deletes (an attempt may still be running); discarding does.
        assert!(attempt_dir(run.path(), &key, 3).exists());
        assert_eq!(discard_unfinished(run.path(), &key), 2);
        assert!(attempt_dir(run.path(), &key, 1).exists());
        assert!(!attempt_dir(run.path(), &key, 2).exists());
        assert!(!attempt_dir(run.path(), &key, 3).exists());
        assert_eq!(next(&got, 1), Next::Run(2));
        // An unreadable result (another perfvm version) is kept aside, not deleted.
        let d4 = attempt_dir(run.path(), &key, 4);
        std::fs::create_dir_all(&d4).unwrap();
        std::fs::write(d4.join("result.json"), "{\"from\": \"the future\"}").unwrap();
        assert_eq!(discard_unfinished(run.path(), &key), 1);
        assert!(!d4.exists());
        let aside = std::fs::read_dir(cell_dir(run.path(), &key)).unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with("a4.unreadable-"));
        assert!(aside);
    }
}
