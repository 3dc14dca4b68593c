//! End-to-end tests that boot real guests under libvirt. They need `scripts/setup.sh` to have
//! run (libvirtd up) and take ~1 minute each under TCG, so they are `#[ignore]`d in a plain
//! `cargo test`; CI runs them with `cargo test --release -- --include-ignored`.
//! The bad-input tests need no VM and always run.

mod common;

use common::{MIB, VM, cell, perfvm, run_dirs, samples};
use perfvm::results::model::{CellResult, ExitReason, Verify};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The parts of a result's memory, in bytes: (working set, anon, page cache, memory.peak).
fn memory_parts(r: &CellResult) -> (u64, u64, u64, u64) {
    let m = r.memory.as_ref().expect("memory split up");
    (
        m.working_set_peak_bytes.expect("working set sampled"),
        m.anon_peak_bytes.expect("anon sampled"),
        m.file_peak_bytes.expect("page cache sampled"),
        m.cgroup_peak_bytes.expect("memory.peak read"),
    )
}

/// Plain streaming, like most servers: the process stays small while the page cache of the file
/// it writes fills the cgroup; the headline (the working set) leaves that cache out.
#[test]
#[ignore = "boots a real guest: run with --include-ignored (CI does)"]
fn stream_mode_uploads_64m_in_constant_memory() {
    let (r, dir, out) = cell(&["--ram", "512", "--file-size", "64M", "--target-mode", "stream"]);
    let (ws, anon, cache, cgroup_peak) = memory_parts(&r);
    assert_eq!(r.peak_memory_metric, "working_set");
    assert_eq!(r.peak_memory_bytes, Some(ws));
    assert!(anon < 16 * MIB, "anon {anon}: the stream target holds no more than a buffer");
    assert!(ws < 32 * MIB, "working set {ws}");
    assert!(cache >= 56 * MIB, "page cache {cache}: about the file written (64 MiB)");
    assert!(cgroup_peak >= 60 * MIB, "memory.peak {cgroup_peak} counts that cache");
    assert_eq!(r.exit_reason, ExitReason::Success, "{:?}", r.error);
    assert!(r.success);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(r.verified, Some(true));
    assert_eq!(r.sha256, r.guest_sha256);
    // Read from the frozen guest's disk on the host (the default): the file's last pages were
    // still dirty in the guest's page cache when the upload ended, and the freeze wrote them.
    let v = r.verification.as_ref().expect("verification recorded");
    assert_eq!((v.by, v.fallback.as_deref()), (Verify::Host, None));
    assert_eq!(r.http_status, Some(201));
    assert_eq!(r.file_size_bytes, 64 * MIB);
    assert_eq!(r.bytes_sent, Some(64 * MIB));
    let peak = r.peak_memory_bytes.expect("peak measured");
    assert!(peak < 64 * MIB, "stream mode peak {peak} must stay under 64 MiB");
    assert!(r.initial_memory_bytes.unwrap() > 0);
    assert_eq!(r.oom_kills, Some(0));
    assert_eq!(r.restarts, Some(0));
    assert!(r.throughput_mbps.unwrap() > 0.0 && r.duration_seconds.unwrap() > 0.0);
    assert!(r.host_qemu_peak_rss_bytes.unwrap() > 512 * MIB, "qemu RSS includes guest RAM");
    let p = &r.phases;
    for (name, v) in [("boot", p.boot), ("agent", p.agent), ("cloud_init", p.cloud_init), ("healthy", p.healthy), ("upload", p.upload), ("collect", p.collect), ("teardown", p.teardown)] {
        assert!(v.is_some(), "phase {name} timed");
    }
    let rows = samples(&dir);
    assert!(rows.len() >= 2, "at least the baseline and a final sample");
    assert_eq!(rows.len() as u64, r.sample_count);
    let interval = r.sample_mean_interval_ms.expect("achieved interval recorded");
    assert!(interval >= 99.0, "never faster than asked: {interval}");
    let journal = std::fs::read_to_string(dir.join("journal.log")).unwrap();
    assert!(journal.contains("PUT /upload/perfvm-upload.bin"), "target's request log in the journal:\n{journal}");

    // CPU, I/O, pressure. Plain writes: what reached the disk during the upload is what the
    // kernel's writeback flushed so far (the rest is still dirty in the page cache).
    let written = r.target_io_write_bytes.expect("io.stat sampled");
    assert!(written > 0 && written <= 80 * MIB, "bytes written {written} (of a 64 MiB file)");
    assert!(r.target_cpu_seconds.unwrap() > 0.0);
    assert!(r.target_cpu_avg_percent.unwrap() > 0.0);
    assert!(r.memory_pressure_peak_some_avg10.is_some(), "PSI is on in the guest kernel");
    assert!(r.host_qemu_cpu_seconds.unwrap() > 0.0);
    let cost = r.sampler_cost.expect("sampler cost measured");
    assert_eq!(cost.probe_error, None, "the in-guest probe ran");
    assert!(cost.guest_probe_cpu_seconds.is_some() && cost.host_thread_cpu_seconds.is_some());
    assert_eq!(r.sample_sources.as_deref(), Some("full"));
    let header = csv::Reader::from_path(dir.join("samples.csv")).unwrap().headers().unwrap().clone();
    for col in ["target_cpu_percent", "target_io_write_bytes", "memory_pressure_some_avg10_percent", "guest_cpu_busy_all_cpus_percent", "host_qemu_cpu_percent"] {
        let i = header.iter().position(|h| h == col).unwrap_or_else(|| panic!("column {col}"));
        assert!(rows.iter().skip(1).any(|r| !r[i].is_empty()), "column {col} has values");
    }
}

#[test]
#[ignore = "boots a real guest: run with --include-ignored (CI does)"]
fn memory_mode_larger_than_ram_is_oom_killed_and_recorded() {
    let (r, dir, out) = cell(&["--ram", "256", "--file-size", "320M", "--target-mode", "memory"]);
    assert!(!r.success);
    assert_eq!(out.status.code(), Some(1), "a target failure exits 1");
    let oom = r.oom_kills.expect("oom kills counted");
    assert_eq!(r.exit_reason, ExitReason::OomKilled, "{oom} oom kills: {:?}", r.error);
    assert!(oom >= 1);
    assert_ne!(r.verified, Some(true), "an OOM-killed upload is never verified");
    assert!(r.peak_memory_bytes.unwrap() > 100 * MIB, "the buffer grew before the kill");
    assert!(r.phases.teardown.is_some());

    // Memory pressure shows before the kill: stall time grew between the first sample and the
    // sample with the highest memory.current (the moment before the OOM killer struck).
    let rows = samples(&dir);
    let header = csv::Reader::from_path(dir.join("samples.csv")).unwrap().headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (cur, stall) = (col("cgroup_memory_current_bytes"), col("memory_pressure_some_total_usec"));
    let num = |r: &csv::StringRecord, i: usize| r[i].parse::<u64>().ok();
    let peak_row = rows.iter().max_by_key(|r| num(r, cur).unwrap_or(0)).unwrap();
    let first_stall = rows.iter().find_map(|r| num(r, stall)).expect("memory.pressure sampled");
    let stall_at_peak = num(peak_row, stall).expect("stall at peak");
    assert!(stall_at_peak > first_stall, "memory stall grew before the kill: {first_stall} -> {stall_at_peak}");
    assert!(r.memory_stall_some_seconds.unwrap() > 0.0);
}

#[test]
#[ignore = "boots a real guest: run with --include-ignored (CI does)"]
fn memory_mode_that_fits_holds_the_whole_file() {
    // From a saved guest (as the drop-cache cell): the reference runs above boot cold.
    let (r, _dir, _) = cell(&["--ram", "512", "--file-size", "64M", "--target-mode", "memory", "--boot", "saved"]);
    assert_eq!(r.boot, perfvm::results::model::Boot::Saved);
    assert_eq!(r.exit_reason, ExitReason::Success, "{:?}", r.error);
    assert_eq!(r.verified, Some(true));
    let peak = r.peak_memory_bytes.unwrap();
    assert!(peak >= 64 * MIB, "memory mode peak {peak} must be at least the file size");
    let (ws, anon, _, _) = memory_parts(&r);
    assert!(anon >= 64 * MIB, "anon {anon}: the body is held whole in the heap");
    assert!(ws >= anon, "the working set {ws} includes anon {anon}");
}

/// The cache-dropping mode syncs and drops the file's pages as it goes: everything stays small,
/// memory.peak too. Hashed in the guest (`--verify guest`), the path the host's falls back to.
#[test]
#[ignore = "boots a real guest: run with --include-ignored (CI does)"]
fn drop_cache_mode_keeps_even_the_page_cache_small() {
    let (r, _dir, _) = cell(&["--ram", "512", "--file-size", "64M", "--target-mode", "drop-cache", "--verify", "guest", "--boot", "saved"]);
    assert_eq!(r.exit_reason, ExitReason::Success, "{:?}", r.error);
    assert_eq!(r.verified, Some(true));
    let v = r.verification.as_ref().expect("verification recorded");
    assert_eq!((v.by, v.fallback.as_deref()), (Verify::Guest, None));
    assert_eq!(r.target.mode, "drop-cache");
    let (ws, anon, cache, cgroup_peak) = memory_parts(&r);
    assert!(anon < 16 * MIB && ws < 32 * MIB, "anon {anon}, working set {ws}");
    assert!(cache < 32 * MIB, "page cache {cache}: dropped every 8 MiB");
    assert!(cgroup_peak < 48 * MIB, "memory.peak {cgroup_peak}");
    // It syncs as it goes: the whole file reached the disk through its cgroup during the upload.
    let written = r.target_io_write_bytes.expect("io.stat sampled");
    assert!((60 * MIB..=80 * MIB).contains(&written), "bytes written {written} should be about the file size (64 MiB)");
}

/// Bad input, tried systematically: every value gets exit code 2, a message naming the problem,
/// and nothing written. Values that could reach a shell, YAML or a path are among them.
#[test]
fn bad_input_is_refused_before_any_vm() {
    let results = tempfile::tempdir().unwrap();
    let rd = results.path().join("r");
    let rds = rd.to_str().unwrap();
    let run = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec!["run", "--ram", "512", "--file-size", "1M"];
        v.extend_from_slice(extra);
        v
    };
    let matrix = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec!["matrix", "--ram", "256,512", "--file-size", "1M"];
        v.extend_from_slice(extra);
        v
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        // zero, negative, huge, non-numeric, unicode
        (vec!["run", "--ram", "0", "--file-size", "1G"], "--ram 0"),
        (vec!["run", "--ram", "-1", "--file-size", "1G"], "-1"),
        (vec!["run", "--ram", "100000000", "--file-size", "1G"], "--ram 100000000"),
        (vec!["run", "--ram", "99999999999999999999999", "--file-size", "1G"], "number too large"),
        (vec!["run", "--ram", "lots", "--file-size", "1G"], "invalid digit"),
        (vec!["run", "--ram", "５１２", "--file-size", "1G"], "invalid digit"),
        (vec!["run", "--ram", "512", "--file-size", "0"], "zero"),
        (vec!["run", "--ram", "512", "--file-size", "-5M"], "-5"),
        (vec!["run", "--ram", "512", "--file-size", "1X"], "unknown unit"),
        (vec!["run", "--ram", "512", "--file-size", "1Ｇ"], "unknown unit"),
        (vec!["run", "--ram", "512", "--file-size", "100G"], "--file-size 100G"),
        (vec!["run", "--ram", "512", "--file-size", "99999999999T"], "too large"),
        (vec!["run", "--ram", "512", "--file-size", ""], "empty size"),
        // shell and YAML metacharacters, path traversal
        (vec!["run", "--ram", "512", "--file-size", "1G; rm -rf /"], "unknown unit"),
        (vec!["run", "--ram", "512", "--file-size", "$(reboot)"], "not a size"),
        (vec!["run", "--ram", "512", "--file-size", "1M\nruncmd: [reboot]"], "unknown unit"),
        (vec!["run", "--ram", "512", "--file-size", "../../etc/passwd"], "not a size"),
        (run(&["--accel", "xen"]), "xen"),
        (run(&["--cpus", "0"]), "--cpus 0"),
        (run(&["--cpus", "65"]), "--cpus 65"),
        (run(&["--timeout", "1"]), "--timeout 1"),
        (run(&["--timeout", "-30"]), "unexpected argument"),
        (run(&["--timeout", "9223372036854775807"]), "--timeout 9223372036854775807: use at most"),
        (run(&["--sample-interval", "0"]), "--sample-interval 0"),
        (run(&["--sample-interval", "99999999"]), "--sample-interval 99999999"),
        (run(&["--seed", "x"]), "invalid digit"),
        (run(&["--target-mode", "`id`"]), "`id`"),
        (matrix(&["--jobs", "0"]), "--jobs 0"),
        (matrix(&["--repeat", "0"]), "--repeat 0"),
        (matrix(&["--target-rsd", "0"]), "--target-rsd 0"),
        (matrix(&["--target-rsd", "NaN"]), "--target-rsd NaN"),
        (matrix(&["--target-rsd", "5", "--min-repeats", "1"]), "--min-repeats 1"),
        (matrix(&["--target-rsd", "5", "--min-repeats", "4", "--max-repeats", "3"]), "--max-repeats 3 is under --min-repeats 4"),
        (matrix(&["--target-rsd", "5", "--repeat", "3"]), "cannot be used with"),
        (matrix(&["--max-repeats", "5"]), "--target-rsd"),
        (matrix(&["--only", "../../*"]), "../../*"),
        (matrix(&["--only", "512/1Q"]), "512/1Q"),
        (matrix(&["--skip", "*/*"]), "no cell"),
        (vec!["matrix", "--ram", "512,512", "--file-size", "1M"], "512"),
        (vec!["matrix", "--ram", "512", "--file-size", "1G,1024M"], "1G twice"),
        (vec!["matrix", "--ram", "", "--file-size", "1M"], "ram"),
    ];
    for (args, expect) in cases {
        let mut full = args.clone();
        full.extend(["--results-dir", rds]);
        let out = perfvm(&full);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: expected {expect:?} in {err}");
        assert!(err.lines().count() <= 6, "{args:?}: a short error, not a dump: {err}");
        assert!(!rd.exists(), "{args:?} left {}", rd.display());
    }
}

/// Image ids name directories in the cache: anything but an id is refused before touching it.
#[test]
fn image_ids_cannot_escape_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let victim = cache.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    for id in ["../victim", "../../", "", "a/b", "x;rm -rf /", "..", "ид"] {
        let out = Command::new(env!("CARGO_BIN_EXE_perfvm"))
            .args(["image", "remove", id])
            .env("PERFVM_CACHE_DIR", cache.path().join("c"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{id:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("image"), "{id:?}");
        assert!(victim.is_dir(), "{id:?} removed something outside the cache");
    }
}

/// `image list --format json`: an empty cache is an empty array, not a sentence.
#[test]
fn image_list_has_a_json_format() {
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_perfvm")).args(["image", "list", "--format", "json"]).env("PERFVM_CACHE_DIR", cache.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(), serde_json::json!([]));
}

#[test]
fn unwritable_results_dir_and_missing_recipe_are_refused() {
    let out = perfvm(&["run", "--ram", "512", "--file-size", "1M", "--results-dir", "/proc/perfvm"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/proc/perfvm"));

    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_perfvm"))
        .args(["run", "--ram", "512", "--file-size", "1M", "--results-dir"])
        .arg(empty.path().join("r"))
        .env("PERFVM_RECIPE_DIR", empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("recipe.toml"), "{err}");
}

#[test]
fn kvm_is_refused_where_it_cannot_run() {
    let probe = perfvm::accel::KvmProbe::read();
    let Some(why) = probe.kvm_unusable_reason() else {
        return; // a host with working KVM accepts it; nothing to refuse here
    };
    let d = tempfile::tempdir().unwrap();
    let out = perfvm(&["run", "--ram", "512", "--file-size", "1M", "--accel", "kvm", "--results-dir", d.path().join("r").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--accel kvm cannot run here") && err.contains(why.split(':').next().unwrap()), "{err}");
}

/// A small matrix, interrupted with SIGINT mid-run and resumed: every cell ends in matrix.csv
/// exactly once, nothing is left running, finished cells are not redone, and a second perfvm on
/// the same run is refused while the first holds it.
#[test]
#[ignore = "boots real guests: run with --include-ignored (CI does)"]
fn matrix_survives_sigint_and_resumes_without_redoing_cells() {
    let _one = VM.lock().unwrap_or_else(|e| e.into_inner());
    let results = tempfile::tempdir().unwrap().keep();
    let rd = results.to_str().unwrap().to_string();
    // --jobs 2 exercises the parallel scheduler (the default here would be 1: 2 cores / 2 vCPUs).
    let args = ["matrix", "--ram", "256,384", "--file-size", "1M,2M", "--jobs", "2", "--timeout", "300", "--results-dir", &rd];
    let mut child = Command::new(env!("CARGO_BIN_EXE_perfvm"))
        .args(args)
        .env("PERFVM_TARGET_BIN", env!("CARGO_BIN_EXE_perfvm-target"))
        .env("PERFVM_PROBE_BIN", env!("CARGO_BIN_EXE_perfvm-probe"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .spawn()
        .unwrap();
    let pid = child.id();

    // Wait for the run directory, then check the lock from a second process.
    let t0 = std::time::Instant::now();
    let run_dir = loop {
        if let Some(d) = run_dirs(&results).into_iter().next()
            && d.join("matrix.csv").exists() {
                break d;
            }
        assert!(t0.elapsed().as_secs() < 300, "matrix never started");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let second = perfvm(&args);
    assert_eq!(second.status.code(), Some(2));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains(&format!("in use by perfvm pid {pid}")), "{err}");

    // Interrupt once the first cell is finished and later ones are under way.
    let csv_rows = |d: &Path| csv::Reader::from_path(d.join("matrix.csv")).map(|mut r| r.records().count()).unwrap_or(0);
    while csv_rows(&run_dir) == 0 {
        assert!(t0.elapsed().as_secs() < 400, "no cell finished");
        assert!(child.try_wait().unwrap().is_none(), "matrix ended before it could be interrupted");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    std::thread::sleep(std::time::Duration::from_secs(8));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "interrupted matrix exits 130");

    // Nothing of the interrupted process survives.
    let conn = perfvm::hypervisor::conn::open(perfvm::hypervisor::conn::DEFAULT_URI).unwrap();
    let mine: Vec<String> = perfvm::hypervisor::conn::perfvm_domains(&conn)
        .unwrap()
        .into_iter()
        .filter(|d| d.owner.as_ref().is_some_and(|o| o.pid == pid))
        .map(|d| d.name)
        .collect();
    assert!(mine.is_empty(), "domains left after SIGINT: {mine:?}");

    let finished_before: Vec<(PathBuf, String)> = common::attempt_results(&run_dir)
        .into_iter()
        .filter_map(|p| {
            let t = std::fs::read_to_string(&p).ok()?;
            let r: CellResult = serde_json::from_str(&t).ok()?;
            (!r.interrupted).then_some((p, t))
        })
        .collect();
    let rows_before = csv_rows(&run_dir);
    assert!(!finished_before.is_empty() && rows_before < 4, "{rows_before} rows before resume");

    // Resume: the same command finishes the rest.
    let out = perfvm(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains(&format!("{} already finished", finished_before.len())), "{err}");
    for (p, text) in &finished_before {
        assert_eq!(&std::fs::read_to_string(p).unwrap(), text, "{} was redone", p.display());
    }
    let mut rd = csv::Reader::from_path(run_dir.join("matrix.csv")).unwrap();
    let mut cells: Vec<(String, String)> = rd.records().map(|r| r.unwrap()).map(|r| (r[0].to_string(), r[1].to_string())).collect();
    cells.sort();
    assert_eq!(
        cells,
        [("256", "1M"), ("256", "2M"), ("384", "1M"), ("384", "2M")].map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let summary = std::fs::read_to_string(run_dir.join("summary.txt")).unwrap();
    assert!(summary.contains("4/4 cells finished, 4 passed"), "{summary}");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(doc["summary"]["passed"], 4);
    assert!(doc["metadata"]["libvirt_version"].is_string());

    // The report is written at the end: every cell in the grid and with a section and timeline.
    let html = std::fs::read_to_string(run_dir.join("report.html")).expect("report.html written");
    for (ram, size) in [("256", "1M"), ("256", "2M"), ("384", "1M"), ("384", "2M")] {
        let anchor = format!("cell-{ram}-{size}-r1");
        assert!(html.contains(&format!("href=\"#{anchor}\"")) && html.contains(&format!("id=\"{anchor}\"")), "{anchor} in report.html");
    }
    // Throughput, peak working set and memory.peak; per cell its memory timeline and its memory
    // by kind, stacked.
    assert_eq!(html.matches("<svg").count(), 3 + 4 * 2, "three summary charts and two per cell");
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert_eq!(md.lines().filter(|l| l.starts_with("| 256 ") || l.starts_with("| 384 ")).count(), 4, "{md}");
}

/// `--target-rsd`: a target no real throughput meets (0.001 %) makes a cell run from
/// --min-repeats up to --max-repeats, one more at a time, and results.json, summary.txt and the
/// reports say why it stopped. The same command again decides the same from the finished
/// results and runs nothing.
#[test]
#[ignore = "boots real guests: run with --include-ignored (CI does)"]
fn target_rsd_adds_repetitions_until_the_maximum_and_records_why() {
    let _one = VM.lock().unwrap_or_else(|e| e.into_inner());
    let results = tempfile::tempdir().unwrap().keep();
    let rd = results.to_str().unwrap().to_string();
    let args = [
        "matrix", "--ram", "256", "--file-size", "1M", "--target-rsd", "0.001", "--min-repeats", "2", "--max-repeats", "3",
        "--jobs", "2", "--timeout", "300", "--results-dir", &rd,
    ];
    let out = perfvm(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{}\n{err}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("2 cells selected (then more while throughput RSD > 0.001 %, at most 3 repetitions per cell)"), "{err}");
    assert!(err.contains("256-1M: throughput not steady yet, adding repetition 3"), "{err}");
    let run_dir = run_dirs(&results).into_iter().next().unwrap();
    let mut rd = csv::Reader::from_path(run_dir.join("matrix.csv")).unwrap();
    let header = rd.headers().unwrap().clone();
    let rep = header.iter().position(|h| h == "repeat").unwrap();
    let mut repeats: Vec<String> = rd.records().map(|r| r.unwrap()[rep].to_string()).collect();
    repeats.sort();
    assert_eq!(repeats, ["1", "2", "3"]);
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(doc["summary"]["cells"], 3, "the cells this run wanted, not the definition's most");
    assert_eq!(doc["metadata"]["definition"]["adaptive"]["target_rsd_percent"], 0.001);
    let stop = &doc["repeats"][0]["stop"];
    assert_eq!(stop["kind"], "max_repeats", "{doc:#}");
    assert_eq!(stop["repetitions"], 3);
    assert!(stop["rsd_percent"].as_f64().unwrap() > 0.001);
    let summary = std::fs::read_to_string(run_dir.join("summary.txt")).unwrap();
    assert!(summary.contains("3/3 cells finished, 3 passed") && summary.contains("3 repetitions (--max-repeats)"), "{summary}");
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains("<h2>Repeats</h2>") && html.contains("3 repetitions (--max-repeats)"));

    let again = perfvm(&args);
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(0), "{err}");
    assert!(err.contains("3 cells selected") && err.contains("3 already finished, 0 to run"), "{err}");
}
