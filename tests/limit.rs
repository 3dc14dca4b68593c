//! `perfvm limit` end to end, on real guests: the breaking point of the reference target, checked
//! against what is known about it without the search (docs/limit.md).
//!
//! The stream mode writes as it receives, so its working set stays small whatever the file: a
//! search over RAM that the guest itself fits in passes everywhere. The memory mode holds the
//! whole body before it writes: the least RAM for a 128M upload must hold 128 MiB more than the
//! guest's own needs (measured in the stream search's probe), and the point just below the limit
//! must fail with the OOM killer.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

fn limit(results: &Path, args: &[&str]) -> (Option<i32>, String, Value, std::path::PathBuf) {
    let mut full = vec!["limit", "--results-dir", results.to_str().unwrap(), "--timeout", "400", "--retries", "0"];
    full.extend_from_slice(args);
    let out = perfvm(&full);
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("--- perfvm {full:?}\n{text}");
    let dir = run_dirs(results).into_iter().find(|d| d.join("limit.json").is_file()).unwrap_or_else(|| panic!("no limit.json under {}\n{text}", results.display()));
    let doc: Value = serde_json::from_slice(&std::fs::read(dir.join("limit.json")).unwrap()).unwrap();
    (out.status.code(), text, doc, dir)
}

#[test]
#[ignore = "boots real guests (about 5 min under TCG)"]
fn memory_mode_needs_the_body_plus_the_guest_and_ooms_just_below_while_stream_passes_everywhere() {
    let _one = vm_lock();
    let mib = |v: &Value| v.as_f64().unwrap();

    // Stream mode over 256..320 MiB: two points, the hardest first; it passes there, and with
    // --confirm 1 that one probe is the whole search.
    let stream_results = tempfile::tempdir().unwrap();
    let (code, text, doc, dir) = limit(stream_results.path(), &["--file-size", "128M", "--target-mode", "stream", "--ram-range", "256..320", "--resolution", "64", "--confirm", "1"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(doc["outcome"], "passes_everywhere", "{doc:#}");
    assert!(text.contains("passes everywhere in 256..320 MiB"), "{text}");
    assert_eq!((doc["limit"].as_u64(), doc["passing"]["passed"].as_u64(), doc["probes"].as_array().unwrap().len()), (Some(256), Some(1), 1), "{doc:#}");
    let probe = read_result(&dir.join(doc["probes"][0]["result_file"].as_str().unwrap()));
    assert!(probe.success && probe.verified == Some(true), "{probe:?}");
    // What the guest itself uses: its RAM less what was left available and the target's share.
    let guest_own = probe.ram_mb as f64 - probe.guest_min_mem_available_bytes.unwrap() as f64 / MIB as f64 - probe.peak_memory_mb.unwrap();
    assert!(guest_own > 16.0, "the guest's own needs: {guest_own:.1} MiB");
    assert_domain_gone(probe.domain.as_deref().unwrap());

    // Memory mode every 16 MiB over a range around the body plus the guest's own needs: from a
    // step below it to five steps above. Never below 208 MiB: at 192 MiB this image's /run is too
    // small for systemd to reload its units, and the cell fails before the upload (docs/limit.md).
    let floor = 128.0 + guest_own;
    let low = ((floor as u64 / 16) * 16).saturating_sub(16).max(208);
    let range = format!("{low}..{}", low + 80);
    let results = tempfile::tempdir().unwrap();
    let args = ["--file-size", "128M", "--target-mode", "memory", "--ram-range", range.as_str(), "--resolution", "16"];
    let (code, text, doc, dir) = limit(results.path(), &args);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(doc["outcome"], "found", "the limit is inside {range}: {doc:#}");
    let found = doc["limit"].as_u64().unwrap();
    // The guest's own needs are an estimate (MemAvailable counts what the kernel thinks it can
    // reclaim): the limit may sit one step below body + guest, never more.
    assert!(found as f64 + 16.0 >= floor, "limit {found} MiB below the body (128 MiB) plus the guest's own {guest_own:.1} MiB");
    assert!((found as f64) <= floor + 48.0, "limit {found} MiB more than three steps above the body plus the guest ({floor:.0} MiB)");
    let passing = &doc["passing"];
    assert_eq!((passing["value"].as_u64(), passing["passed"].as_u64(), passing["probes"].as_u64()), (Some(found), Some(2), Some(2)), "confirmed: {doc:#}");
    assert!(mib(&passing["peak_memory_mb"]) >= 128.0, "the body is held whole: {passing}");
    let failing = &doc["failing"];
    assert_eq!(failing["value"].as_u64(), Some(found - 16), "the point just below failed: {doc:#}");
    let failures = failing["failures"].as_array().unwrap();
    assert!(!failures.is_empty() && failures.iter().all(|f| f["exit_reason"] == "oom_killed"), "just below the limit the OOM killer ends it: {failing}");
    for p in doc["probes"].as_array().unwrap() {
        let r = read_result(&dir.join(p["result_file"].as_str().unwrap()));
        assert_eq!((r.success, p["passed"].as_bool()), (r.success, Some(r.success)));
        assert_domain_gone(r.domain.as_deref().unwrap());
    }
    // The files a matrix has, and the answer at the top of summary.txt and in the report.
    for f in ["results.json", "matrix.csv", "report.html", "report.md"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let summary = std::fs::read_to_string(dir.join("summary.txt")).unwrap();
    assert!(summary.lines().next().unwrap().contains(&format!("{found} MiB")), "{summary}");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<h2>Limit</h2>") && html.contains("guest RAM (MiB)"), "the probes on the RAM axis");

    // The same command again: nothing to probe, the same answer; recorded in the history.
    let probes = doc["probes"].as_array().unwrap().len();
    let (code, text, again, _) = limit(results.path(), &args);
    assert_eq!((code, again["limit"].as_u64(), again["probes"].as_array().unwrap().len()), (Some(0), Some(found), probes), "{text}");
    assert!(text.contains("0 probe(s) now"), "{text}");
    let out = perfvm(&["history", "--results-dir", results.path().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(dir.file_name().unwrap().to_str().unwrap()), "{}", String::from_utf8_lossy(&out.stdout));
}
