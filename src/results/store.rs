//! The on-disk layout of a run: `results/<run-id>/` holding `result.json`, `samples.csv`,
//! `console.log` and `journal.log`. Every JSON write is atomic.

use std::path::{Path, PathBuf};

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

pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn create(results: &Path, run_id: &str) -> std::io::Result<RunDir> {
        let path = results.join(run_id);
        std::fs::create_dir_all(&path)?;
        Ok(RunDir { path })
    }
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
}
