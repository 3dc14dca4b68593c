//! The results history: every finished cell of every run, also kept in one embedded SQLite
//! database (`results/perfvm.sqlite` by default), so trends across runs can be asked for. The
//! per-run JSON/CSV files stay the primary output; the database can be rebuilt from them
//! (`perfvm db import`). Writes are transactions; WAL and a busy timeout let several perfvm
//! processes write at once.

pub mod schema;

use crate::results::model::CellResult;
use anyhow::{Context, Result};
use rusqlite::{Connection, params};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `--db PATH`, else `PERFVM_DB`, else `perfvm.sqlite` in the results directory.
pub fn db_path(flag: Option<&Path>, results_dir: &Path) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("PERFVM_DB").map(PathBuf::from))
        .unwrap_or_else(|| results_dir.join("perfvm.sqlite"))
}

pub struct Db {
    conn: Connection,
}

/// Records a run's cells as they finish. The history is secondary to the run's own files: if
/// it cannot be written, say so once and go on.
pub struct Recorder {
    db: Option<Db>,
    path: PathBuf,
    pub run: RunRow,
    /// Results of the run recorded so far (`record_new`).
    recorded: usize,
}

impl Recorder {
    pub fn open(path: PathBuf, run: RunRow) -> Recorder {
        let db = match Db::open(&path) {
            Ok(db) => Some(db),
            Err(e) => {
                eprintln!("perfvm: warning: history not recorded ({e:#}); the run's own files are complete");
                None
            }
        };
        Recorder { db, path, run, recorded: 0 }
    }

    pub fn record(&mut self, cells: &[&CellResult]) {
        if let Some(db) = &mut self.db
            && let Err(e) = db.record(&self.run, cells) {
                eprintln!("perfvm: warning: cannot record in {} ({e:#}); `perfvm db import` can add this run later", self.path.display());
                self.db = None;
            }
    }

    /// Record the results added since the last call: a run's results only grow, and recording
    /// what is already in the database changes nothing.
    pub fn record_new(&mut self, results: &[CellResult]) {
        let new = results.get(self.recorded..).unwrap_or_default();
        self.record(&new.iter().collect::<Vec<_>>());
        self.recorded = results.len();
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A run as the database knows it.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct RunRow {
    /// A single cell's run directory name (time and a random tag), or a matrix run's directory
    /// name and uid (`matrix-<key>@<uid>`): unique, also across results directories.
    pub id: String,
    pub dir: String,
    /// `matrix` or `run`.
    pub kind: String,
    pub run_key: Option<String>,
    pub started: Option<String>,
    pub finished: Option<String>,
    pub target: String,
    pub target_mode: String,
    pub accel: String,
    pub image_id: String,
    pub host: Option<String>,
    pub perfvm_version: String,
    pub label: Option<String>,
    pub git_rev: Option<String>,
}

impl Db {
    /// Open (creating it and its directory if needed) and bring the schema up to date.
    pub fn open(path: &Path) -> Result<Db> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut conn = Connection::open(path).with_context(|| format!("cannot open the history database {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        // WAL: readers never block the writer and a crash mid-write loses only that transaction.
        // Switching to it needs the database to itself, and SQLite answers "locked" at once
        // (without waiting) when another process holds it: retry for a while.
        let started = std::time::Instant::now();
        loop {
            let mode: rusqlite::Result<String> = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0));
            match mode {
                Ok(_) => break,
                Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::DatabaseBusy && started.elapsed() < Duration::from_secs(30) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e).with_context(|| format!("cannot use WAL mode in {}", path.display())),
            }
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::migrate(&mut conn).with_context(|| format!("cannot migrate {}", path.display()))?;
        Ok(Db { conn })
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Record a run and some of its cell attempts in one transaction (replacing what an earlier
    /// record of the same attempts said).
    pub fn record(&mut self, run: &RunRow, cells: &[&CellResult]) -> Result<()> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO runs (id, dir, kind, run_key, started, finished, target, target_mode, accel, image_id, host, perfvm_version, label, git_rev)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT(id) DO UPDATE SET dir = excluded.dir, finished = COALESCE(excluded.finished, runs.finished),
               started = COALESCE(runs.started, excluded.started), label = COALESCE(excluded.label, runs.label),
               git_rev = COALESCE(excluded.git_rev, runs.git_rev)",
            params![run.id, run.dir, run.kind, run.run_key, run.started, run.finished, run.target, run.target_mode, run.accel, run.image_id, run.host, run.perfvm_version, run.label, run.git_rev],
        )?;
        for r in cells {
            let k = r.key();
            tx.execute(
                "INSERT OR REPLACE INTO cells (run_id, cell, ram_mb, file_size, file_size_bytes, concurrency, repeat, attempt, timestamp,
                   target, target_profile_sha256, image_id, accel, exit_reason, success, duration_seconds, throughput_mbps,
                   peak_memory_bytes, target_cpu_seconds, sample_count, guest_min_mem_available_bytes,
                   memory_pressure_peak_some_avg10, host_qemu_peak_rss_bytes, result_json,
                   peak_memory_metric, working_set_peak_bytes, anon_peak_bytes, file_peak_bytes, cgroup_peak_bytes, restarts_before_upload, target_mode)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24,
                   ?25, ?26, ?27, ?28, ?29, ?30, ?31)",
                params![
                    run.id,
                    k.shape(),
                    r.ram_mb as i64,
                    r.file_size,
                    r.file_size_bytes as i64,
                    r.concurrency.max(1) as i64,
                    r.repeat as i64,
                    r.attempt as i64,
                    r.timestamp.to_rfc3339(),
                    r.target.name,
                    r.target.profile_sha256,
                    r.image_id,
                    r.accel.to_string(),
                    r.exit_reason.as_str(),
                    r.success,
                    r.duration_seconds,
                    r.throughput_mbps,
                    r.peak_memory_bytes.map(|b| b as i64),
                    r.target_cpu_seconds,
                    r.sample_count as i64,
                    r.guest_min_mem_available_bytes.map(|b| b as i64),
                    r.memory_pressure_peak_some_avg10,
                    r.host_qemu_peak_rss_bytes.map(|b| b as i64),
                    serde_json::to_string(r)?,
                    r.peak_memory_metric,
                    r.working_set_peak_bytes().map(|b| b as i64),
                    r.memory.as_ref().and_then(|m| m.anon_peak_bytes).map(|b| b as i64),
                    r.memory.as_ref().and_then(|m| m.file_peak_bytes).map(|b| b as i64),
                    r.cgroup_peak_bytes().map(|b| b as i64),
                    r.restarts_before_upload.map(|n| n as i64),
                    r.target.mode,
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Runs, newest first, with counts of their final cells (the last attempt of each cell
    /// and repetition decides), in one query.
    pub fn runs(&self) -> Result<Vec<(RunRow, RunCounts)>> {
        let mut st = self.conn.prepare(
            "SELECT r.id, r.dir, r.kind, r.run_key, r.started, r.finished, r.target, r.target_mode, r.accel, r.image_id, r.host,
                    r.perfvm_version, r.label, r.git_rev, COUNT(c.cell), COALESCE(SUM(c.success), 0)
             FROM runs r LEFT JOIN cells c ON c.run_id = r.id
               AND c.attempt = (SELECT MAX(attempt) FROM cells d WHERE d.run_id = c.run_id AND d.cell = c.cell AND d.repeat = c.repeat)
             GROUP BY r.id
             ORDER BY r.started DESC, r.id DESC",
        )?;
        let rows = st.query_map([], |row| {
            let run = RunRow {
                id: row.get(0)?,
                dir: row.get(1)?,
                kind: row.get(2)?,
                run_key: row.get(3)?,
                started: row.get(4)?,
                finished: row.get(5)?,
                target: row.get(6)?,
                target_mode: row.get(7)?,
                accel: row.get(8)?,
                image_id: row.get(9)?,
                host: row.get(10)?,
                perfvm_version: row.get(11)?,
                label: row.get(12)?,
                git_rev: row.get(13)?,
            };
            let (cells, passed): (i64, i64) = (row.get(14)?, row.get(15)?);
            Ok((run, RunCounts { cells: cells as usize, passed: passed as usize, failed: (cells - passed) as usize }))
        })?;
        rows.map(|r| r.map_err(Into::into)).collect()
    }

    /// The same cell (RAM, size, uploads at once) of one target across runs, oldest first: the
    /// mean over the final attempts of its repetitions.
    /// One point per run and target (and mode: the reference target's modes are different
    /// servers); `target` and `mode` narrow it to one.
    pub fn trend(&self, ram_mb: u64, size_bytes: u64, concurrency: u32, target: Option<&str>, mode: Option<&str>) -> Result<Vec<TrendPoint>> {
        let mut st = self.conn.prepare(
            "SELECT r.id, r.started, r.label, c.target, COUNT(*), SUM(c.success), AVG(c.throughput_mbps), AVG(c.working_set_peak_bytes),
                    MAX(c.working_set_peak_bytes), AVG(c.cgroup_peak_bytes), c.target_mode
             FROM cells c JOIN runs r ON r.id = c.run_id
             WHERE c.ram_mb = ?1 AND c.file_size_bytes = ?2 AND c.concurrency = ?3 AND (?4 IS NULL OR c.target = ?4)
               AND (?5 IS NULL OR c.target_mode = ?5)
               AND c.attempt = (SELECT MAX(attempt) FROM cells d WHERE d.run_id = c.run_id AND d.cell = c.cell AND d.repeat = c.repeat)
             GROUP BY r.id, c.target, c.target_mode
             ORDER BY r.started, r.id, c.target, c.target_mode",
        )?;
        let rows = st.query_map(params![ram_mb as i64, size_bytes as i64, concurrency as i64, target, mode], |row| {
            Ok(TrendPoint {
                run_id: row.get(0)?,
                started: row.get(1)?,
                label: row.get(2)?,
                target: row.get(3)?,
                repeats: row.get::<_, i64>(4)? as usize,
                passed: row.get::<_, i64>(5)? as usize,
                throughput_mbps: row.get(6)?,
                peak_memory_mb: row.get::<_, Option<f64>>(7)?.map(|b| crate::results::model::round3(b / 1048576.0)),
                max_peak_memory_mb: row.get::<_, Option<f64>>(8)?.map(|b| crate::results::model::round3(b / 1048576.0)),
                memory_peak_mb: row.get::<_, Option<f64>>(9)?.map(|b| crate::results::model::round3(b / 1048576.0)),
                target_mode: row.get(10)?,
            })
        })?;
        rows.map(|r| r.map_err(Into::into)).collect()
    }
}

impl Db {
    /// A run's id from what a user typed: the id itself, or the directory name of exactly one
    /// recorded run (`matrix-<key>` for `matrix-<key>@<uid>`). Err names the candidates.
    pub fn resolve_run(&self, given: &str) -> Result<Option<String>, String> {
        let mut st = self.conn.prepare("SELECT id FROM runs WHERE id = ?1 OR id LIKE ?2 ESCAPE '\\' ORDER BY started").map_err(|e| e.to_string())?;
        let like = format!("{}@%", given.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        let ids: Vec<String> = st.query_map(rusqlite::params![given, like], |r| r.get(0)).map_err(|e| e.to_string())?.flatten().collect();
        if ids.iter().any(|i| i == given) {
            return Ok(Some(given.to_string()));
        }
        match ids.len() {
            0 => Ok(None),
            1 => Ok(ids.into_iter().next()),
            _ => Err(format!("{given} names {} runs in the history: {}", ids.len(), ids.join(", "))),
        }
    }

    /// Every recorded attempt of a run, by its id.
    pub fn run_results(&self, run_id: &str) -> Result<Vec<CellResult>> {
        let mut st = self.conn.prepare("SELECT result_json FROM cells WHERE run_id = ?1")?;
        let rows = st.query_map([run_id], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for json in rows {
            out.push(serde_json::from_str(&json?).context("a result in the database does not parse")?);
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct RunCounts {
    pub cells: usize,
    pub passed: usize,
    pub failed: usize,
}

/// One run's value of a cell.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrendPoint {
    pub run_id: String,
    pub started: Option<String>,
    pub label: Option<String>,
    pub target: String,
    /// Repetitions of the cell in that run (final attempts), and how many passed.
    pub repeats: usize,
    pub passed: usize,
    /// Means over the repetitions (successful ones have a throughput). The peak is the working
    /// set (none for runs of a perfvm before it was measured); memory.peak is there for every
    /// run, page cache included.
    pub throughput_mbps: Option<f64>,
    pub peak_memory_mb: Option<f64>,
    pub max_peak_memory_mb: Option<f64>,
    pub memory_peak_mb: Option<f64>,
    /// `stream`, `drop-cache`, `memory` or `profile`.
    pub target_mode: Option<String>,
}

impl TrendPoint {
    /// The target as `--target` names it: `perfvm-target:memory` for a reference mode, else its name.
    pub fn target_label(&self) -> String {
        match self.target_mode.as_deref() {
            Some(m) if m != "profile" => format!("{}:{m}", self.target),
            _ => self.target.clone(),
        }
    }
}

/// The run row of a matrix run directory, from its metadata: its id is the directory's name
/// and the run's uid, so runs of one definition in two results directories stay two runs.
pub fn matrix_run(run_dir: &Path, meta: &crate::results::export::json::RunMetadata, label: Option<&str>) -> RunRow {
    let uid = meta.run_uid.clone().unwrap_or_else(|| crate::rundir::legacy_uid(run_dir, &meta.started));
    RunRow {
        id: format!("{}@{uid}", dir_name(run_dir)),
        dir: std::path::absolute(run_dir).unwrap_or_else(|_| run_dir.to_path_buf()).display().to_string(),
        kind: "matrix".into(),
        run_key: Some(meta.run_key.clone()),
        started: Some(meta.started.to_rfc3339()),
        finished: meta.finished.map(|f| f.to_rfc3339()),
        target: meta.target.clone(),
        target_mode: meta.target_mode.clone(),
        accel: meta.accel.clone(),
        image_id: meta.image_id.clone(),
        host: Some(meta.host.clone()),
        perfvm_version: meta.perfvm_version.clone(),
        label: label.map(str::to_string),
        git_rev: meta.git_rev.clone(),
    }
}

/// The run row of a single cell's run directory (`perfvm run`).
pub fn single_run(run_dir: &Path, r: &CellResult, label: Option<&str>) -> RunRow {
    RunRow {
        id: dir_name(run_dir),
        dir: std::path::absolute(run_dir).unwrap_or_else(|_| run_dir.to_path_buf()).display().to_string(),
        kind: "run".into(),
        run_key: None,
        started: Some(r.timestamp.to_rfc3339()),
        finished: Some(r.timestamp.to_rfc3339()),
        target: r.target.name.clone(),
        target_mode: r.target.mode.clone(),
        accel: r.accel.to_string(),
        image_id: r.image_id.clone(),
        host: nix::sys::utsname::uname().ok().map(|u| u.nodename().to_string_lossy().into_owned()),
        perfvm_version: r.perfvm_version.clone(),
        label: label.map(str::to_string),
        git_rev: None,
    }
}

fn dir_name(run_dir: &Path) -> String {
    std::path::absolute(run_dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| run_dir.display().to_string())
}

/// Import run directories (a matrix's or a single cell's): every attempt found on disk.
/// Returns (runs, cells) imported.
pub fn import(db: &mut Db, dirs: &[PathBuf]) -> Result<(usize, usize)> {
    let mut cells = 0;
    for dir in dirs {
        let doc = crate::rundir::read_run(dir)?;
        let (meta, attempts) = (doc.metadata, doc.cells);
        let run = match (&meta, attempts.first()) {
            (Some(m), _) => matrix_run(dir, m, None),
            (None, Some(r)) => single_run(dir, r, None),
            (None, None) => continue,
        };
        db.record(&run, &attempts.iter().collect::<Vec<_>>())?;
        cells += attempts.len();
    }
    Ok((dirs.len(), cells))
}

#[cfg(test)]
mod tests;
