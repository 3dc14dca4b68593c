//! `perfvm report`, `perfvm snapshot` and `perfvm cleanup`: one library call each, printed.

use crate::error::InputError;

pub fn report(run_dir: &std::path::Path, db: Option<&std::path::Path>) -> anyhow::Result<i32> {
    if !run_dir.is_dir() {
        return Err(InputError(format!("{} is not a directory", run_dir.display())).into());
    }
    // By default the database of the results directory the run lives in.
    let results_dir = std::path::absolute(run_dir)?.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let db = crate::history::db_path(db, &results_dir);
    for p in crate::report::write(run_dir, Some(&db)).map_err(|e| InputError(format!("{e:#}")))? {
        println!("{}", p.display());
    }
    Ok(0)
}

pub fn snapshot(run_dir: &std::path::Path, out: &std::path::Path) -> anyhow::Result<i32> {
    let m = crate::results::snapshot::create(run_dir, &crate::paths::recipe_dir(), &crate::paths::cloud_init_dir(), out)
        .map_err(|e| InputError(format!("{e:#}")))?;
    let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    println!(
        "{}: snapshot of {} ({} cells × {} RAM sizes, target {}), {}",
        out.display(),
        m.run,
        m.metadata.definition.file_sizes.len(),
        m.metadata.definition.ram_mib.len(),
        m.metadata.target,
        crate::size::human(size)
    );
    println!("run it again: perfvm matrix --from {}", out.display());
    Ok(0)
}

pub fn cleanup(uri: &str) -> anyhow::Result<i32> {
    let removed = crate::hypervisor::orphans::cleanup(uri).map_err(|e| match e {
        crate::hypervisor::VirtError::Connect { .. } => anyhow::Error::from(InputError(e.to_string())),
        e => e.into(),
    })?;
    if removed.is_empty() {
        println!("nothing to clean up");
    } else {
        println!("removed: {}", removed.join(", "));
    }
    Ok(0)
}

