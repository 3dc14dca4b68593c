//! The database schema and its migrations. `PRAGMA user_version` is the schema version; each
//! migration runs once, in a transaction, in order. A database from a newer perfvm is refused
//! rather than written with the wrong columns.

use anyhow::{Result, bail};
use rusqlite::Connection;

/// Migrations in order: index 0 makes version 1, and so on. Never edit one that shipped; add.
pub const MIGRATIONS: &[&str] = &[
    // 1: runs and every cell attempt, with the result JSON whole.
    "CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        dir TEXT NOT NULL,
        kind TEXT NOT NULL,
        run_key TEXT,
        started TEXT,
        finished TEXT,
        target TEXT NOT NULL,
        target_mode TEXT NOT NULL,
        accel TEXT NOT NULL,
        image_id TEXT NOT NULL,
        host TEXT,
        perfvm_version TEXT NOT NULL,
        label TEXT,
        git_rev TEXT
    );
    CREATE TABLE cells (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        cell TEXT NOT NULL,
        ram_mb INTEGER NOT NULL,
        file_size TEXT NOT NULL,
        file_size_bytes INTEGER NOT NULL,
        concurrency INTEGER NOT NULL,
        repeat INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        timestamp TEXT NOT NULL,
        target TEXT NOT NULL,
        image_id TEXT NOT NULL,
        accel TEXT NOT NULL,
        exit_reason TEXT NOT NULL,
        success INTEGER NOT NULL,
        duration_seconds REAL,
        throughput_mbps REAL,
        peak_memory_bytes INTEGER,
        result_json TEXT NOT NULL,
        PRIMARY KEY (run_id, cell, repeat, attempt)
    );",
    // 2: the samples' summary and the profile's hash as columns, and an index for "the same
    // cell across runs".
    "ALTER TABLE cells ADD COLUMN target_profile_sha256 TEXT;
    ALTER TABLE cells ADD COLUMN target_cpu_seconds REAL;
    ALTER TABLE cells ADD COLUMN sample_count INTEGER;
    ALTER TABLE cells ADD COLUMN guest_min_mem_available_bytes INTEGER;
    ALTER TABLE cells ADD COLUMN memory_pressure_peak_some_avg10 REAL;
    ALTER TABLE cells ADD COLUMN host_qemu_peak_rss_bytes INTEGER;
    CREATE INDEX cells_same_cell ON cells (target, ram_mb, file_size_bytes, concurrency);
    CREATE INDEX runs_started ON runs (started);",
    // 3: the memory split up. peak_memory_bytes is the working set from results of schema 2 on,
    // memory.peak before (the page cache of the file written included): the metric says which,
    // and memory.peak has a column of its own for every row.
    "ALTER TABLE cells ADD COLUMN peak_memory_metric TEXT NOT NULL DEFAULT 'memory.peak';
    ALTER TABLE cells ADD COLUMN working_set_peak_bytes INTEGER;
    ALTER TABLE cells ADD COLUMN anon_peak_bytes INTEGER;
    ALTER TABLE cells ADD COLUMN file_peak_bytes INTEGER;
    ALTER TABLE cells ADD COLUMN cgroup_peak_bytes INTEGER;
    ALTER TABLE cells ADD COLUMN restarts_before_upload INTEGER;
    UPDATE cells SET cgroup_peak_bytes = peak_memory_bytes;",
    // 4: each cell's target mode: a matrix of several targets may hold the reference target in
    // two modes, whose trends must not be averaged together.
    "ALTER TABLE cells ADD COLUMN target_mode TEXT;
    UPDATE cells SET target_mode = json_extract(result_json, '$.target.mode');",
];

pub fn version(conn: &Connection) -> Result<u32> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as u32)
}

/// Apply the migrations the database has not had, up to `upto` (all when None).
pub fn migrate_to(conn: &mut Connection, upto: Option<u32>) -> Result<u32> {
    let target = upto.unwrap_or(MIGRATIONS.len() as u32);
    // The check and the migrations in one write transaction: two processes opening a new
    // database at once do not both migrate it.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current = version(&tx)?;
    if current > MIGRATIONS.len() as u32 {
        bail!("the history database has schema version {current}, newer than this perfvm knows ({}): use a newer perfvm or another --db", MIGRATIONS.len());
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize).take(target.saturating_sub(current) as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    let v = version(&tx)?;
    tx.commit()?;
    Ok(v)
}

pub fn migrate(conn: &mut Connection) -> Result<u32> {
    migrate_to(conn, None)
}
