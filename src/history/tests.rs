use super::*;

fn sample() -> CellResult {
    serde_json::from_str(include_str!("../../tests/data/result-sample.json")).unwrap()
}

fn cell(ram: u64, size: &str, repeat: u32, attempt: u32, thr: f64, peak_mb: u64, ok: bool) -> CellResult {
    let mut r = sample();
    let s = crate::size::ByteSize::parse(size).unwrap();
    r.ram_mb = ram;
    r.file_size = s.label();
    r.file_size_bytes = s.bytes();
    r.concurrency = 1;
    r.repeat = repeat;
    r.attempt = attempt;
    r.throughput_mbps = ok.then_some(thr);
    r.peak_memory_bytes = Some(peak_mb << 20);
    r.peak_memory_metric = crate::results::model::METRIC_WORKING_SET.into();
    r.memory = Some(crate::results::model::MemoryBreakdown {
        working_set_peak_bytes: r.peak_memory_bytes,
        cgroup_peak_bytes: Some((peak_mb + 256) << 20),
        ..Default::default()
    });
    r.success = ok;
    r.exit_reason = if ok { crate::results::model::ExitReason::Success } else { crate::results::model::ExitReason::BootFailed };
    r
}

fn run(id: &str, started: &str, label: Option<&str>) -> RunRow {
    RunRow {
        id: id.into(),
        dir: format!("/r/{id}"),
        kind: "matrix".into(),
        started: Some(started.into()),
        target: "perfvm-target".into(),
        target_mode: "stream".into(),
        accel: "tcg".into(),
        image_id: "bookworm-x".into(),
        perfvm_version: "0.1.0".into(),
        label: label.map(str::to_string),
        ..Default::default()
    }
}

#[test]
fn a_new_database_gets_every_migration() {
    let d = tempfile::tempdir().unwrap();
    let db = Db::open(&d.path().join("sub/h.sqlite")).unwrap();
    assert_eq!(schema::version(db.conn()).unwrap(), schema::MIGRATIONS.len() as u32);
    let mode: String = db.conn().pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    // Opening again migrates nothing and keeps the version.
    drop(db);
    let db = Db::open(&d.path().join("sub/h.sqlite")).unwrap();
    assert_eq!(schema::version(db.conn()).unwrap(), schema::MIGRATIONS.len() as u32);
}

#[test]
fn a_version_1_database_is_migrated_with_its_rows() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("h.sqlite");
    {
        let mut c = Connection::open(&path).unwrap();
        assert_eq!(schema::migrate_to(&mut c, Some(1)).unwrap(), 1);
        c.execute_batch(
            "INSERT INTO runs (id, dir, kind, target, target_mode, accel, image_id, perfvm_version, started)
               VALUES ('old', '/r/old', 'matrix', 'perfvm-target', 'stream', 'tcg', 'img', '0.0.9', '2026-01-01T00:00:00Z');
             INSERT INTO cells (run_id, cell, ram_mb, file_size, file_size_bytes, concurrency, repeat, attempt, timestamp, target,
               image_id, accel, exit_reason, success, duration_seconds, throughput_mbps, peak_memory_bytes, result_json)
               VALUES ('old', '512-1G', 512, '1G', 1073741824, 1, 1, 1, '2026-01-01T00:00:00Z', 'perfvm-target', 'img', 'tcg', 'success', 1, 20.0, 51.2, 12582912, '{\"target\": {\"name\": \"perfvm-target\", \"mode\": \"memory\"}}');",
        )
        .unwrap();
    }
    let mut db = Db::open(&path).unwrap();
    assert_eq!(schema::version(db.conn()).unwrap(), schema::MIGRATIONS.len() as u32);
    let old = db.trend(512, 1 << 30, 1, None, None).unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].throughput_mbps, Some(51.2));
    // Its peak was memory.peak: kept as that, never shown as a working set.
    assert_eq!((old[0].peak_memory_mb, old[0].memory_peak_mb), (None, Some(12.0)));
    assert_eq!(old[0].target_mode.as_deref(), Some("memory"), "the mode, from the result it kept");
    // New rows carry the new columns; old ones have them empty.
    db.record(&run("new", "2026-02-01T00:00:00Z", None), &[&cell(512, "1G", 1, 1, 60.0, 11, true)]).unwrap();
    let cpu: Vec<Option<i64>> = db.conn().prepare("SELECT sample_count FROM cells ORDER BY run_id").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    assert_eq!(cpu[1], None, "the old row");
    assert!(cpu[0].is_some(), "the new row");
    assert_eq!(db.trend(512, 1 << 30, 1, Some("perfvm-target"), None).unwrap().len(), 2);
}

#[test]
fn a_database_from_a_newer_perfvm_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("h.sqlite");
    Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let e = Db::open(&path).err().unwrap();
    assert!(format!("{e:#}").contains("schema version 99"), "{e:#}");
}

#[test]
fn trend_takes_final_attempts_and_means_over_repeats() {
    let d = tempfile::tempdir().unwrap();
    let mut db = Db::open(&d.path().join("h.sqlite")).unwrap();
    // Night 1: repeat 1 failed once (infrastructure) then passed; repeat 2 passed.
    let n1 = [cell(512, "1G", 1, 1, 0.0, 0, false), cell(512, "1G", 1, 2, 50.0, 10, true), cell(512, "1G", 2, 1, 70.0, 14, true), cell(256, "1G", 1, 1, 40.0, 9, true)];
    db.record(&run("night1", "2026-11-28T01:00:00Z", Some("v1.0")), &n1.iter().collect::<Vec<_>>()).unwrap();
    db.record(&run("night2", "2026-11-29T01:00:00Z", Some("v1.1")), &[&cell(512, "1G", 1, 1, 30.0, 40, true)]).unwrap();
    let t = db.trend(512, 1 << 30, 1, Some("perfvm-target"), None).unwrap();
    assert_eq!(t.iter().map(|p| p.run_id.as_str()).collect::<Vec<_>>(), ["night1", "night2"], "oldest first");
    assert_eq!((t[0].repeats, t[0].passed), (2, 2));
    assert_eq!(t[0].throughput_mbps, Some(60.0));
    assert_eq!(t[0].peak_memory_mb, Some(12.0));
    assert_eq!(t[0].max_peak_memory_mb, Some(14.0));
    assert_eq!(t[1].peak_memory_mb, Some(40.0), "the creep shows");
    assert_eq!(t[1].memory_peak_mb, Some(296.0), "memory.peak beside it");
    assert_eq!(t[1].label.as_deref(), Some("v1.1"));
    assert!(db.trend(512, 1 << 30, 1, Some("dufs"), None).unwrap().is_empty());
    let runs = db.runs().unwrap();
    assert_eq!(runs[0].0.id, "night2", "newest first");
    assert_eq!(runs[1].1, RunCounts { cells: 3, passed: 3, failed: 0 });
    // Recording the same attempt again replaces it, never duplicates.
    db.record(&run("night2", "2026-11-29T01:00:00Z", None), &[&cell(512, "1G", 1, 1, 31.0, 40, true)]).unwrap();
    let t = db.trend(512, 1 << 30, 1, None, None).unwrap();
    assert_eq!(t[1].throughput_mbps, Some(31.0));
    assert_eq!(t[1].label.as_deref(), Some("v1.1"), "a later record without a label keeps it");
}

#[test]
fn import_reads_single_cell_run_directories() {
    let d = tempfile::tempdir().unwrap();
    let run_dir = d.path().join("20261130-010203-512-1G-abcd");
    std::fs::create_dir_all(&run_dir).unwrap();
    std::fs::write(run_dir.join("result.json"), serde_json::to_vec(&cell(512, "1G", 1, 1, 42.0, 12, true)).unwrap()).unwrap();
    let mut db = Db::open(&d.path().join("h.sqlite")).unwrap();
    assert_eq!(import(&mut db, std::slice::from_ref(&run_dir)).unwrap(), (1, 1));
    let runs = db.runs().unwrap();
    assert_eq!(runs[0].0.id, "20261130-010203-512-1G-abcd");
    assert_eq!(runs[0].0.kind, "run");
    let e = import(&mut db, &[d.path().join("nope")]).unwrap_err();
    assert!(format!("{e:#}").contains("not a run directory"), "{e:#}");
}

#[test]
fn two_writers_at_once_lose_nothing() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("h.sqlite");
    Db::open(&path).unwrap();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut db = Db::open(&path).unwrap();
                for i in 0..60 {
                    let cells: Vec<CellResult> = (1..=4).map(|rep| cell(512, "1G", rep, 1, i as f64, 10, true)).collect();
                    db.record(&run(&format!("w{w}-{i}"), &format!("2026-11-29T00:{:02}:00Z", i), None), &cells.iter().collect::<Vec<_>>()).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let db = Db::open(&path).unwrap();
    let (runs, cells): (i64, i64) = db.conn().query_row("SELECT (SELECT COUNT(*) FROM runs), (SELECT COUNT(*) FROM cells)", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((runs, cells), (120, 480));
    let ok: String = db.conn().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
}

/// A matrix run's results.json as perfvm writes it, with `uid` (None: a run of an older perfvm).
fn matrix_dir(results: &Path, started: &str, uid: Option<&str>, thr: f64) -> PathBuf {
    let dir = results.join("matrix-0123456789ab");
    std::fs::create_dir_all(&dir).unwrap();
    let mut meta = serde_json::json!({
        "run_key": "matrix-0123456789ab", "perfvm_version": "0", "git_rev": null, "host": "h", "kernel": "k",
        "libvirt_version": null, "qemu_version": null, "accel": "tcg", "image_id": "i", "target": "perfvm-target",
        "target_mode": "stream", "jobs": 1, "started": started, "finished": null,
        "definition": { "ram_mib": [512], "file_sizes": ["1G"], "repeat": 1, "target": "perfvm-target", "target_mode": "stream",
          "image_id": "i", "accel": "tcg", "cpus": 2, "timeout_s": 600, "seed": 1, "sample_interval_ms": 100 }
    });
    if let Some(u) = uid {
        meta["run_uid"] = u.into();
    }
    let doc = serde_json::json!({"metadata": meta, "summary": {}, "cells": [cell(512, "1G", 1, 1, thr, 10, true)]});
    std::fs::write(dir.join("results.json"), serde_json::to_vec(&doc).unwrap()).unwrap();
    dir
}

#[test]
fn runs_of_one_definition_in_two_results_directories_stay_two_runs() {
    let d = tempfile::tempdir().unwrap();
    let mut db = Db::open(&d.path().join("h.sqlite")).unwrap();
    // Two fresh CI workspaces ran the same definition: the same run directory name in each.
    let a = matrix_dir(&d.path().join("ws1"), "2026-12-01T00:00:00Z", Some("aaaa0001"), 40.0);
    let b = matrix_dir(&d.path().join("ws2"), "2026-12-02T00:00:00Z", Some("bbbb0002"), 60.0);
    import(&mut db, &[a.clone(), b]).unwrap();
    let runs = db.runs().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs.iter().map(|(r, _)| r.id.as_str()).collect::<Vec<_>>(), ["matrix-0123456789ab@bbbb0002", "matrix-0123456789ab@aaaa0001"]);
    let t = db.trend(512, 1 << 30, 1, None, None).unwrap();
    assert_eq!(t.iter().map(|p| p.throughput_mbps).collect::<Vec<_>>(), [Some(40.0), Some(60.0)], "neither replaced the other's cells");
    // Importing again changes nothing.
    import(&mut db, &[a]).unwrap();
    assert_eq!(db.runs().unwrap().len(), 2);
    // The directory name finds a run when it names one; both, it says so.
    assert!(db.resolve_run("matrix-0123456789ab").unwrap_err().contains("names 2 runs"));
    assert_eq!(db.resolve_run("matrix-0123456789ab@aaaa0001").unwrap().as_deref(), Some("matrix-0123456789ab@aaaa0001"));
    assert_eq!(db.resolve_run("nope").unwrap(), None);
    // A run of an older perfvm (no uid) gets one from its name and start: the same each time.
    let old = matrix_dir(&d.path().join("ws3"), "2026-11-01T00:00:00Z", None, 50.0);
    import(&mut db, std::slice::from_ref(&old)).unwrap();
    import(&mut db, &[old]).unwrap();
    assert_eq!(db.runs().unwrap().len(), 3);
}

#[test]
fn the_reference_targets_modes_are_separate_trends_even_in_one_run() {
    let d = tempfile::tempdir().unwrap();
    let mut db = Db::open(&d.path().join("h.sqlite")).unwrap();
    let with = |mode: &str, tag: &str, thr: f64| {
        let mut r = cell(512, "1G", 1, 1, thr, 10, true);
        r.target.mode = mode.into();
        r.matrix_target = Some(tag.into());
        r
    };
    let (s, m) = (with("stream", "perfvm-target-stream", 50.0), with("memory", "perfvm-target-memory", 30.0));
    db.record(&run("both", "2026-12-03T01:00:00Z", None), &[&s, &m]).unwrap();
    let t = db.trend(512, 1 << 30, 1, Some("perfvm-target"), None).unwrap();
    let got: Vec<(String, Option<f64>)> = t.iter().map(|p| (p.target_label(), p.throughput_mbps)).collect();
    assert_eq!(got, [("perfvm-target:memory".to_string(), Some(30.0)), ("perfvm-target:stream".to_string(), Some(50.0))], "never averaged together");
    let only = db.trend(512, 1 << 30, 1, Some("perfvm-target"), Some("stream")).unwrap();
    assert_eq!((only.len(), only[0].throughput_mbps), (1, Some(50.0)));
}
