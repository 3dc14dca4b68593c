//! The one owner of the results directory's layout. Nothing else builds a path into it.
//!
//! ```text
//! results/
//!   perfvm.sqlite                      the history database (history::db_path)
//!   <yyyymmdd-hhmmss>-<cell>-<tag>/    a single cell (`perfvm run`): result.json, samples.csv,
//!                                      console.log, journal.log, hook logs
//!   matrix-<key>[.N]/                  a matrix run: .lock, matrix.csv, results.json,
//!                                      summary.txt, report.html, report.md, plan.toml (--plan)
//!     cells/<cell-id>/a<attempt>/      one attempt, laid out like a single cell
//!   limit-<key>[.N]/                   a limit search (`perfvm limit`): laid out like a matrix
//!                                      run (its probes are its cells), and limit.json
//! ```
//!
//! Every file is written atomically (`paths::write_atomic`), so a crash leaves the old version
//! or the new one. `result.json` is written and read here only;
//! results of an older schema are upgraded as they are read.

pub mod attempts;
pub mod lock;

use crate::results::export::json::RunMetadata;
use crate::results::model::CellResult;
use anyhow::Context;
use std::path::{Path, PathBuf};

pub const RESULT: &str = "result.json";
pub const MATRIX_DOC: &str = "results.json";
/// A limit search's answer and its evidence.
pub const LIMIT_DOC: &str = "limit.json";
/// `--plan`'s file as given (a snapshot packs it with the rest of the run directory).
pub const PLAN: &str = "plan.toml";

/// Keep the plan a matrix run was started (or resumed) with.
pub fn write_plan(run_dir: &Path, text: &str) -> std::io::Result<()> {
    crate::paths::write_atomic(&run_dir.join(PLAN), text.as_bytes())
}

/// A new run id: sortable by time, unique on this host.
pub fn new_run_id(label: &str) -> String {
    let now = chrono::Utc::now();
    let rand: u32 = rand_core::Rng::next_u32(&mut <rand_chacha::ChaCha8Rng as rand_core::SeedableRng>::seed_from_u64(
        now.timestamp_nanos_opt().unwrap_or(0) as u64 ^ ((std::process::id() as u64) << 32),
    ));
    format!("{}-{label}-{:04x}", now.format("%Y%m%d-%H%M%S"), rand & 0xffff)
}

/// Make sure the results directory exists and is writable, before any VM starts.
pub fn check_writable(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("results dir {} cannot be created: {e}", dir.display()))?;
    let probe = dir.join(format!(".perfvm-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| format!("results dir {} is not writable: {e}", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// A single cell's run directory, made.
pub fn create_single(results: &Path, run_id: &str) -> std::io::Result<PathBuf> {
    let path = results.join(run_id);
    std::fs::create_dir_all(&path)?;
    Ok(path)
}

/// A matrix run's directory: `<key>` for the first run of a definition, `<key>.2`, `<key>.3`…
/// after `--fresh`. Without `fresh` the newest one is resumed.
pub fn matrix_dir(results: &Path, key: &str, fresh: bool) -> PathBuf {
    let mut newest: Option<(u32, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir(results) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = if name == key { Some(1) } else { name.strip_prefix(key).and_then(|r| r.strip_prefix('.')).and_then(|n| n.parse::<u32>().ok()) };
            if let Some(n) = n
                && newest.as_ref().is_none_or(|(m, _)| n > *m)
            {
                newest = Some((n, e.path()));
            }
        }
    }
    match (newest, fresh) {
        (None, _) => results.join(key),
        (Some((_, p)), false) => p,
        (Some((n, _)), true) => results.join(format!("{key}.{}", n + 1)),
    }
}

/// Write a cell's `result.json` into its directory (an attempt's, or a single run's).
pub fn write_result(dir: &Path, r: &CellResult) -> std::io::Result<()> {
    let mut data = serde_json::to_vec_pretty(r).map_err(std::io::Error::other)?;
    data.push(b'\n');
    crate::paths::write_atomic(&dir.join(RESULT), &data)
}

/// A cell's `result.json`, upgraded to this schema; None if absent or unreadable.
pub fn read_result(dir: &Path) -> Option<CellResult> {
    let mut r: CellResult = serde_json::from_str(&std::fs::read_to_string(dir.join(RESULT)).ok()?).ok()?;
    r.upgrade();
    Some(r)
}

/// What a run directory holds: a matrix run's metadata and repetition statistics (from
/// results.json), or a single cell's result alone (result.json); every attempt, upgraded.
pub struct RunDoc {
    pub metadata: Option<RunMetadata>,
    pub repeats: Vec<crate::results::export::json::RepeatSummary>,
    pub cells: Vec<CellResult>,
}

pub fn read_run(dir: &Path) -> anyhow::Result<RunDoc> {
    #[derive(serde::Deserialize)]
    struct Doc {
        metadata: RunMetadata,
        #[serde(default)]
        repeats: Vec<crate::results::export::json::RepeatSummary>,
        cells: Vec<CellResult>,
    }
    let matrix = dir.join(MATRIX_DOC);
    if matrix.is_file() {
        let mut doc: Doc = serde_json::from_slice(&std::fs::read(&matrix)?).with_context(|| format!("cannot read {}", matrix.display()))?;
        doc.cells.iter_mut().for_each(CellResult::upgrade);
        if doc.metadata.run_uid.is_none() {
            doc.metadata.run_uid = Some(legacy_uid(dir, &doc.metadata.started));
        }
        return Ok(RunDoc { metadata: Some(doc.metadata), repeats: doc.repeats, cells: doc.cells });
    }
    let single = dir.join(RESULT);
    let text = std::fs::read(&single).with_context(|| format!("{} is not a run directory (no {MATRIX_DOC} of a matrix or {RESULT} of a cell)", dir.display()))?;
    let mut r: CellResult = serde_json::from_slice(&text).with_context(|| format!("cannot read {}", single.display()))?;
    r.upgrade();
    Ok(RunDoc { metadata: None, repeats: Vec::new(), cells: vec![r] })
}

/// A limit search's `limit.json`; None if the run is not one (or the file cannot be read).
pub fn read_limit(dir: &Path) -> Option<crate::results::export::limit::LimitDoc> {
    serde_json::from_slice(&std::fs::read(dir.join(LIMIT_DOC)).ok()?).ok()
}

/// Where an attempt's or a single cell's files are, relative to its run directory: `.` for a
/// single cell's run.
pub fn cell_rel(r: &CellResult, matrix: bool) -> String {
    if matrix { attempts::attempt_rel(&r.key(), r.attempt) } else { ".".into() }
}

/// A matrix run's identity as its results.json holds it: when it first started and its uid
/// (made now for a new run, or one of an older perfvm that had none).
pub fn matrix_identity(dir: &Path) -> (chrono::DateTime<chrono::Utc>, String) {
    let v: Option<serde_json::Value> = std::fs::read_to_string(dir.join(MATRIX_DOC)).ok().and_then(|t| serde_json::from_str(&t).ok());
    let started = v.as_ref().and_then(|v| v["metadata"]["started"].as_str()?.parse().ok());
    let uid = v.as_ref().and_then(|v| v["metadata"]["run_uid"].as_str().map(str::to_string));
    match (started, uid) {
        (Some(s), Some(u)) => (s, u),
        (Some(s), None) => (s, legacy_uid(dir, &s)),
        (None, _) => (chrono::Utc::now(), new_uid()),
    }
}

/// A random run uid (8 hex digits).
pub fn new_uid() -> String {
    let mut b = [0u8; 4];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    hex::encode(b)
}

/// The uid of a run made before runs had one: from its directory's name and start, so it is the
/// same every time the run is read (importing it twice is idempotent).
pub fn legacy_uid(dir: &Path, started: &chrono::DateTime<chrono::Utc>) -> String {
    use sha2::Digest;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    hex::encode(&sha2::Sha256::digest(format!("{name}@{}", started.to_rfc3339()))[..4])
}

/// Every result.json under the results directory (single runs and matrix attempts), best
/// effort: what past cells took, for estimates.
pub fn past_results(results: &Path) -> Vec<CellResult> {
    fn walk(d: &Path, depth: u32, out: &mut Vec<CellResult>) {
        let Ok(it) = std::fs::read_dir(d) else { return };
        for e in it.flatten() {
            let p = e.path();
            if p.is_dir() && depth > 0 {
                walk(&p, depth - 1, out);
            } else if p.file_name().is_some_and(|n| n == RESULT)
                && let Some(r) = read_result(d)
            {
                out.push(r);
            }
        }
    }
    let mut out = Vec::new();
    walk(results, 4, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_unique_and_labelled() {
        let a = new_run_id("512-1G");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_run_id("512-1G");
        assert!(a.contains("-512-1G-"));
        assert_ne!(a, b);
    }

    #[test]
    fn unwritable_results_dir_is_reported() {
        let e = check_writable(Path::new("/proc/perfvm-nope")).unwrap_err();
        assert!(e.contains("/proc/perfvm-nope"), "{e}");
        let d = tempfile::tempdir().unwrap();
        check_writable(&d.path().join("a/b")).unwrap();
    }

    #[test]
    fn matrix_dir_resumes_the_newest_and_fresh_makes_a_new_one() {
        let d = tempfile::tempdir().unwrap();
        let k = "matrix-abc";
        assert_eq!(matrix_dir(d.path(), k, false), d.path().join(k));
        assert_eq!(matrix_dir(d.path(), k, true), d.path().join(k));
        std::fs::create_dir(d.path().join(k)).unwrap();
        assert_eq!(matrix_dir(d.path(), k, false), d.path().join(k));
        assert_eq!(matrix_dir(d.path(), k, true), d.path().join("matrix-abc.2"));
        std::fs::create_dir(d.path().join("matrix-abc.2")).unwrap();
        std::fs::create_dir(d.path().join("matrix-abcd")).unwrap();
        assert_eq!(matrix_dir(d.path(), k, false), d.path().join("matrix-abc.2"));
    }

    #[test]
    fn results_are_written_one_way_and_old_ones_read_upgraded() {
        let d = tempfile::tempdir().unwrap();
        // A result written by perfvm before schema 2, its host lost: read, it says so in a field.
        let mut old: serde_json::Value = serde_json::from_str(include_str!("../../tests/data/result-sample.json")).unwrap();
        old["exit_reason"] = "harness_error".into();
        old["success"] = false.into();
        old["error"] = "boot: libvirt connection lost (libvirtd stopped?); what failed: define".into();
        std::fs::write(d.path().join(RESULT), serde_json::to_vec(&old).unwrap()).unwrap();
        let r = read_result(d.path()).unwrap();
        assert_eq!(r.failure, Some(crate::results::model::FailureKind::HostLost));
        write_result(d.path(), &r).unwrap();
        let text = std::fs::read_to_string(d.path().join(RESULT)).unwrap();
        assert!(text.ends_with("}\n") && text.contains("\"failure\": \"host_lost\""), "{text}");
        assert_eq!(past_results(d.path()).len(), 1);
        assert!(read_result(&d.path().join("none")).is_none());
    }
}
