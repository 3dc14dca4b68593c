//! A matrix run's attempts: `cells/<cell-id>/a<attempt>/` holds one, finished when its
//! `result.json` exists and is not marked interrupted. What to run next is the scheduler's.

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

/// Where an attempt's result.json is, relative to its run directory.
pub fn result_rel(r: &CellResult) -> String {
    format!("{}/{}", attempt_rel(&r.key(), r.attempt), super::RESULT)
}

/// The ids of the cells that have a directory in a run (`512-1G-r1`, …), in no order: what a
/// run whose cells are not known in advance (a limit search) has on disk.
pub fn cell_ids(run: &Path) -> Vec<String> {
    std::fs::read_dir(run.join("cells"))
        .map(|it| it.flatten().filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
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
        let file = p.join(super::RESULT);
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
    super::read_result(attempt)
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
    fn interrupted_and_incomplete_attempts_are_discarded() {
        let run = tempfile::tempdir().unwrap();
        let key = CellKey { ram_mib: 512, size: crate::size::ByteSize::parse("1G").unwrap(), concurrency: 1, repeat: 1, target: crate::plan::key::TargetTag::NONE };
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
