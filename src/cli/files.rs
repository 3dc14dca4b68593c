//! `perfvm files generate`: reusable upload files in `test-files/`.

use super::FilesCommand;
use crate::size::human;
use crate::upload::files;
use anyhow::{Context, Result};

pub fn run(cmd: FilesCommand) -> Result<i32> {
    match cmd {
        FilesCommand::Generate { sizes, kind, seed, dir } => {
            for size in sizes {
                let t = std::time::Instant::now();
                let f = files::ensure(&dir, kind, seed, size.bytes()).with_context(|| format!("cannot write {} in {}", files::file_name(kind, size.bytes(), seed), dir.display()))?;
                let secs = t.elapsed().as_secs_f64();
                println!(
                    "{}  {}  {}  ({} in {secs:.1} s, {:.0} MiB/s)",
                    f.path.display(),
                    human(f.size),
                    f.sha256,
                    if f.reused { "verified and reused" } else { "written" },
                    f.size as f64 / (1 << 20) as f64 / secs.max(1e-6)
                );
            }
        }
    }
    Ok(0)
}
