//! The results history: every run records its cells in one SQLite database; `perfvm history`
//! lists runs and trends; `perfvm db import` rebuilds it from run directories, also from two
//! processes at once.

mod common;

use common::*;
use std::path::Path;

fn fake_run(dir: &Path, name: &str, ram: u64, thr: f64) {
    let mut r: perfvm::results::model::CellResult = serde_json::from_str(include_str!("data/result-sample.json")).unwrap();
    r.ram_mb = ram;
    r.throughput_mbps = Some(thr);
    r.timestamp = chrono::Utc::now();
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("result.json"), serde_json::to_vec(&r).unwrap()).unwrap();
}

#[test]
fn two_importers_at_once_record_every_run_and_history_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("h.sqlite");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for i in 0..40 {
        fake_run(&a, &format!("run-a-{i:02}"), 512, 50.0 + i as f64);
        fake_run(&b, &format!("run-b-{i:02}"), 512, 10.0 + i as f64);
    }
    let dirs = |p: &Path| -> Vec<String> { run_dirs(p).iter().map(|d| d.display().to_string()).collect() };
    let spawn = |p: &Path| {
        let mut c = command();
        c.args(["db", "import", "--db", db.to_str().unwrap()]).args(dirs(p));
        c.spawn().unwrap()
    };
    let (mut x, mut y) = (spawn(&a), spawn(&b));
    assert!(x.wait().unwrap().success() && y.wait().unwrap().success());
    let out = perfvm(&["history", "--db", db.to_str().unwrap(), "--format", "csv"]);
    assert_eq!(out.status.code(), Some(0));
    let csv = String::from_utf8_lossy(&out.stdout);
    assert_eq!(csv.lines().count(), 81, "a header and 80 runs:\n{csv}");
    // The sample's cell: 512 MiB with its file size, across all 80 runs.
    let r: perfvm::results::model::CellResult = serde_json::from_str(include_str!("data/result-sample.json")).unwrap();
    let cell = format!("512/{}", r.file_size);
    let out = perfvm(&["history", "--db", db.to_str().unwrap(), "--cell", &cell, "--format", "json"]);
    let pts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pts.as_array().unwrap().len(), 80);
    let out = perfvm(&["history", "--db", db.to_str().unwrap(), "--cell", &cell]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("THROUGHPUT MiB/s"));
    // Importing again changes nothing (the same attempts are replaced, not added).
    let out = perfvm(&["db", "import", "--db", db.to_str().unwrap(), &dirs(&a)[0]]);
    assert_eq!(out.status.code(), Some(0));
    let out = perfvm(&["history", "--db", db.to_str().unwrap(), "--format", "csv"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 81);
}

#[test]
fn bad_history_input_is_refused() {
    let junk = tempfile::tempdir().unwrap();
    let out = perfvm(&["snapshot", junk.path().to_str().unwrap(), "-o", junk.path().join("x.tar.zst").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a matrix run directory"));
    let bogus = junk.path().join("bogus.tar.zst");
    std::fs::write(&bogus, b"not an archive").unwrap();
    let out = perfvm(&["matrix", "--from", bogus.to_str().unwrap(), "--results-dir", junk.path().join("r").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from"));
    let out = perfvm(&["matrix", "--from", bogus.to_str().unwrap(), "--ram", "256"]);
    assert_eq!(out.status.code(), Some(2), "--from replaces the cells of the command line");

    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("none.sqlite");
    let out = perfvm(&["history", "--db", db.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no history database"));
    assert!(!db.exists(), "asking does not create it");
    let out = perfvm(&["history", "--db", db.to_str().unwrap(), "--cell", "512-1G"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("use RAM/SIZE"));
    let out = perfvm(&["db", "import", "--db", db.to_str().unwrap(), tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a run directory"));
}

/// A real matrix, run twice: `perfvm history` shows the cell's two points, and the second run's
/// report has the trend.
#[test]
#[ignore = "boots a real guest: run with --include-ignored (CI does)"]
fn a_matrix_run_twice_makes_a_two_point_trend() {
    let _one = vm_lock();
    let results = tempfile::tempdir().unwrap();
    let rd = results.path().to_str().unwrap();
    for (i, label) in ["first", "second"].iter().enumerate() {
        // From a saved guest: the second run restores what the first saved.
        let mut args = vec!["matrix", "--ram", "256", "--file-size", "2M", "--timeout", "300", "--results-dir", rd, "--label", label, "--boot", "saved"];
        if i > 0 {
            args.push("--fresh");
        }
        let out = perfvm(&args);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let db = results.path().join("perfvm.sqlite");
    assert!(db.is_file(), "recorded in the results directory's database by default");
    let out = perfvm(&["history", "--results-dir", rd]);
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.contains("first") && list.contains("second") && list.contains("2 run(s)"), "{list}");
    let out = perfvm(&["history", "--results-dir", rd, "--cell", "256/2M", "--format", "json"]);
    let pts: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pts.len(), 2);
    assert_eq!(pts[0]["label"], "first");
    assert_eq!(pts[1]["label"], "second");
    assert!(pts.iter().all(|p| p["passed"] == 1 && p["throughput_mbps"].as_f64().unwrap() > 0.0));
    let second = run_dirs(results.path()).into_iter().find(|d| d.file_name().unwrap().to_string_lossy().ends_with(".2")).expect("the --fresh run's dir");
    // The two real runs compared: a table with a verdict per cell.
    let first = run_dirs(results.path()).into_iter().find(|d| !d.file_name().unwrap().to_string_lossy().ends_with(".2")).unwrap();
    let out = perfvm(&["compare", first.to_str().unwrap(), second.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("256-2M") && table.contains("not tested (needs repeats)"), "{table}");
    let out = perfvm(&["compare", "--results-dir", rd, &first.file_name().unwrap().to_string_lossy(), &second.file_name().unwrap().to_string_lossy(), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cells"][0]["runs"][1]["throughput_mbps"]["verdict"], "not_tested", "run ids from the history database work too");

    // The report as a browser renders it: the charts with their lines and points, every cell.
    let dom = render_headless(&second.join("report.html"));
    assert!(dom.contains("<h2>History</h2>") && dom.contains("throughput across runs"), "the trend is in the report");
    // Throughput, peak working set, memory.peak, two history charts, the cell's memory timeline
    // and its memory by kind.
    assert_eq!(dom.matches("<svg").count(), 7, "charts");
    assert!(dom.matches("<circle").count() >= 6, "points drawn");
    assert!(dom.matches("<polyline").count() >= 3, "lines drawn");
    assert!(dom.contains("id=\"cell-256-2M-r1\"") && dom.contains("href=\"#cell-256-2M-r1\""), "the cell and the grid's link to it");

    // A snapshot of the run, and its cells run again from it in another results directory.
    let archive = results.path().join("run.tar.zst");
    let out = perfvm(&["snapshot", second.to_str().unwrap(), "-o", archive.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let listing = std::process::Command::new("tar").args(["--zstd", "-tf"]).arg(&archive).output().unwrap();
    let names = String::from_utf8_lossy(&listing.stdout).into_owned();
    for want in ["snapshot.json", "inputs/vm-images/recipe.toml", "inputs/cloud-init/user-data.yaml", "results/results.json", "results/cells/256-2M-r1/a1/result.json"] {
        assert!(names.lines().any(|l| l == want), "{want} in\n{names}");
    }
    assert!(names.lines().all(|l| l == "snapshot.json" || l.starts_with("inputs/") || l.starts_with("results/")), "{names}");
    let elsewhere = tempfile::tempdir().unwrap();
    let out = perfvm(&["matrix", "--from", archive.to_str().unwrap(), "--results-dir", elsewhere.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let replay = run_dirs(elsewhere.path()).pop().unwrap();
    let finals = attempt_results(&replay);
    assert_eq!(finals.len(), 1);
    let r = read_result(&finals[0]);
    assert!(r.success && r.ram_mb == 256 && r.file_size == "2M", "{:?}", r.error);
    assert_eq!(replay.file_name(), second.file_name().map(|n| n.to_string_lossy().trim_end_matches(".2").to_string()).as_deref().map(std::ffi::OsStr::new), "the same definition, the same run key");
}

/// `perfvm compare` of two runs from the history database, by run id: verdicts from the
/// permutation test, every format, and the CI gate.
#[test]
fn compare_two_recorded_runs_and_gate_on_a_regression() {
    let tmp = tempfile::tempdir().unwrap();
    let db_path = tmp.path().join("h.sqlite");
    let base: perfvm::results::model::CellResult = serde_json::from_str(include_str!("data/result-sample.json")).unwrap();
    let mut db = perfvm::history::Db::open(&db_path).unwrap();
    for (run, thr) in [("night1", 50.0), ("night2", 40.0), ("night3", 50.0)] {
        let cells: Vec<_> = (1..=4)
            .map(|rep| {
                let mut r = base.clone();
                r.repeat = rep;
                r.success = true;
                r.throughput_mbps = Some(thr + rep as f64 * 0.5);
                r
            })
            .collect();
        let row = perfvm::history::RunRow { id: run.into(), target: base.target.name.clone(), ..Default::default() };
        db.record(&row, &cells.iter().collect::<Vec<_>>()).unwrap();
    }
    drop(db);
    let d = db_path.to_str().unwrap();
    let out = perfvm(&["compare", "night1", "night2", "--db", d]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "no gate, no failure");
    assert!(table.contains("-19.") && table.contains("worse (p=0.029)"), "{table}");
    for (fmt, want) in [("csv", "throughput_verdict"), ("json", "\"verdict\": \"worse\""), ("md", "| cell |"), ("html", "class=\"worse\"")] {
        let out = perfvm(&["compare", "night1", "night2", "--db", d, "--format", fmt]);
        assert!(String::from_utf8_lossy(&out.stdout).contains(want), "{fmt}");
    }
    let out = perfvm(&["compare", "night1", "night2", "--db", d, "--fail-on-regression", "10"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("significant regression over 10%"));
    let out = perfvm(&["compare", "night1", "night2", "--db", d, "--fail-on-regression", "25"]);
    assert_eq!(out.status.code(), Some(0), "under the threshold");
    // Three runs: one column group per run against the first, every pair gated.
    let out = perfvm(&["compare", "night1", "night2", "night3", "--db", d, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = &v["cells"][0]["runs"];
    assert_eq!((runs.as_array().unwrap().len(), &runs[1]["throughput_mbps"]["verdict"], &runs[2]["throughput_mbps"]["verdict"]), (3, &"worse".into(), &"no_significant_change".into()), "{v}");
    let out = perfvm(&["compare", "night1", "night3", "night2", "--db", d, "--fail-on-regression", "10"]);
    assert_eq!(out.status.code(), Some(1), "the third run regressed against the first");
    let out = perfvm(&["compare", "night1", "night2", "night3", "--db", d, "--format", "csv"]);
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.lines().filter(|l| l.contains(",night3,")).count() >= 1 && !csv.contains("/4"), "long format, one row per cell and run, no fractions: {csv}");
    let out = perfvm(&["compare", "night1", "no-such-run", "--db", d]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a run directory, nor a run id"));
}
