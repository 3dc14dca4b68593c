//! Several hosts, end to end: a second, independent libvirtd on this machine behind sshd on
//! 127.0.0.1 (scripts/second-host.sh), reached by a qemu+ssh URI, so perfvm treats it as another
//! machine (storage-pool uploads, ssh tunnels). `#[ignore]`d like the other VM tests; CI runs them.

mod common;

use common::{attempt_results, perfvm, read_result, Running};
use perfvm::results::model::{CellResult, ExitReason, Verify};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A second libvirt host for one test, stopped (with any qemu it left) when dropped.
struct SecondHost {
    dir: tempfile::TempDir,
    uri: String,
}

impl SecondHost {
    fn start() -> SecondHost {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let out = std::process::Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/second-host.sh"))
            .args(["start", dir.path().to_str().unwrap(), &port.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "second-host.sh: {}", String::from_utf8_lossy(&out.stderr));
        let uri = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(uri.starts_with("qemu+ssh://root@127.0.0.1:"), "{uri}");
        SecondHost { dir, uri }
    }

    /// Files in its pool (the host's own /var/lib/libvirt, private to it).
    fn pool_files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path().join("lib/images/perfvm"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Whether a guest runs on it now (its libvirtd keeps a pid file per running domain, beside
    /// its own driver.pid).
    fn runs_a_guest(&self) -> bool {
        std::fs::read_dir(self.dir.path().join("run/qemu")).into_iter().flatten().flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.ends_with(".pid") && n != "driver.pid"
        })
    }

    /// Freeze its libvirtd (SIGSTOP): the host answers nothing, as behind a network partition.
    fn freeze_libvirtd(&self) {
        let pid: i32 = std::fs::read_to_string(self.dir.path().join("libvirtd.pid")).unwrap().trim().parse().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGSTOP).unwrap();
    }
}

impl Drop for SecondHost {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/second-host.sh"))
            .args(["stop", self.dir.path().to_str().unwrap()])
            .status();
    }
}

/// hosts.toml with this machine's libvirtd ("here") and the second host ("h2"), one job each.
fn hosts_file(dir: &Path, h2: &str, extra: &str) -> PathBuf {
    let p = dir.join("hosts.toml");
    std::fs::write(
        &p,
        format!("[[host]]\nname = \"here\"\nuri = \"qemu:///system\"\nmemory_mib = 4000\njobs = 1\n\n[[host]]\nname = \"h2\"\nuri = \"{h2}\"\nmemory_mib = 4000\njobs = 1\n{extra}"),
    )
    .unwrap();
    p
}

fn only_run_dir(results: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = common::run_dirs(results).into_iter().filter(|d| d.join("results.json").is_file()).collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

/// The final attempt of each cell, by cell; panics if a cell has two finished non-retried ones.
fn finals(run_dir: &Path) -> (Vec<CellResult>, BTreeMap<String, CellResult>) {
    let all: Vec<CellResult> = attempt_results(run_dir).iter().map(|p| read_result(p)).collect();
    let mut last: BTreeMap<String, CellResult> = BTreeMap::new();
    for r in &all {
        let key = format!("{}-{}", r.ram_mb, r.file_size);
        if last.get(&key).is_none_or(|p| p.attempt < r.attempt) {
            last.insert(key, r.clone());
        }
    }
    (all, last)
}

#[test]
#[ignore = "boots real guests on two libvirt hosts: run with --include-ignored (CI does)"]
fn a_matrix_spreads_over_two_hosts_and_each_host_gets_the_image_once() {
    let _one = common::vm_lock();
    let h2 = SecondHost::start();
    let tmp = tempfile::tempdir().unwrap();
    // A third host that cannot be reached is skipped with a warning; the run goes on.
    let unreachable = "[[host]]\nname = \"gone\"\nuri = \"qemu+ssh://root@127.0.0.1:1/system?no_verify=1\"\n";
    let hosts = hosts_file(tmp.path(), &h2.uri, unreachable);
    let results = tmp.path().join("results");
    let r = results.to_str().unwrap();
    let t = Instant::now();
    let run = Running::spawn(&["matrix", "--ram", "256,384", "--file-size", "1M,2M", "--cpus", "1", "--hosts", hosts.to_str().unwrap(), "--results-dir", r, "--timeout", "400"]);
    let (code, log) = run.wait(900);
    eprintln!("two hosts: {:.1} s wall", t.elapsed().as_secs_f64());
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("host skipped: gone"), "{log}");
    assert_eq!(log.matches("uploading image").count(), 1, "{log}");

    let run_dir = only_run_dir(&results);
    let (all, last) = finals(&run_dir);
    assert_eq!(all.len(), 4, "one attempt per cell");
    assert_eq!(last.len(), 4);
    let mut by_host: BTreeMap<String, usize> = BTreeMap::new();
    for r in last.values() {
        assert_eq!(r.exit_reason, ExitReason::Success, "{:?}", r.error);
        assert_eq!(r.verified, Some(true));
        let host = r.host.clone().unwrap();
        *by_host.entry(host.clone()).or_default() += 1;
        let dir = run_dir.join("cells").join(format!("{}-{}-r1/a1", r.ram_mb, r.file_size));
        let console = std::fs::read_to_string(dir.join("console.log")).unwrap();
        assert!(console.contains("Linux version"), "{host}: {console}");
        match host.as_str() {
            "h2" => {
                assert_eq!(r.access.as_deref(), Some("ssh-tunnel"));
                assert_eq!(r.host_uri.as_deref(), Some(h2.uri.as_str()));
                // qemu runs on the other host: its process is not visible here, nor its disk,
                // so the guest hashed the file, and the result says why.
                assert_eq!(r.host_qemu_peak_rss_bytes, None);
                let v = r.verification.as_ref().expect("verification recorded");
                assert_eq!(v.by, Verify::Guest);
                assert_eq!(v.fallback.as_deref(), Some("the cell's disk is on another host"));
            }
            "here" => {
                assert_eq!(r.access.as_deref(), Some("local"));
                assert!(r.host_qemu_peak_rss_bytes.is_some());
                assert_eq!(r.verification.as_ref().map(|v| (v.by, v.fallback.is_none())), Some((Verify::Host, true)));
            }
            h => panic!("unexpected host {h}"),
        }
    }
    assert_eq!(by_host.len(), 2, "both hosts ran cells: {by_host:?}");
    let csv = std::fs::read_to_string(run_dir.join("matrix.csv")).unwrap();
    assert!(csv.lines().next().unwrap().contains(",host,") && csv.contains(",h2,") && csv.contains(",here,"), "{csv}");
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("results.json")).unwrap()).unwrap();
    let listed = meta["metadata"]["hosts"].to_string();
    assert!(listed.contains("here (qemu:///system, local)") && listed.contains("h2 (qemu+ssh://") && listed.contains("skipped: gone"), "{listed}");
    // The image stays on h2 for the next run; nothing of a cell does.
    let files = h2.pool_files();
    assert!(files.iter().all(|f| f.starts_with("image-")), "{files:?}");
    assert_eq!(files.len(), 4, "{files:?}");

    // A second run: the image on h2 is reused, not uploaded again.
    let again = perfvm(&["matrix", "--ram", "256", "--file-size", "1M", "--cpus", "1", "--hosts", hosts.to_str().unwrap(), "--results-dir", r, "--timeout", "400", "--only", "256/1M", "--fresh"]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(0), "{err}");
    assert!(!err.contains("uploading image"), "{err}");
}

/// A host that stops answering mid-matrix (its libvirtd frozen, as behind a network
/// partition): keepalive closes perfvm's connection to it within ~20 s, so its cell ends in a
/// bounded time, recorded as the host's loss, and moves to the other host. Without keepalive the
/// cell's calls (and then its teardown) waited on the silent host forever.
#[test]
#[ignore = "boots real guests on two libvirt hosts: run with --include-ignored (CI does)"]
fn losing_a_host_mid_matrix_moves_its_cells_to_the_other() {
    let _one = common::vm_lock();
    let h2 = SecondHost::start();
    let tmp = tempfile::tempdir().unwrap();
    let hosts = hosts_file(tmp.path(), &h2.uri, "");
    let results = tmp.path().join("results");
    let run = Running::spawn(&["matrix", "--ram", "256,384", "--file-size", "1M,2M", "--cpus", "1", "--hosts", hosts.to_str().unwrap(), "--results-dir", results.to_str().unwrap(), "--timeout", "400"]);
    // Freeze h2's libvirtd while its first guest boots.
    let until = Instant::now() + Duration::from_secs(120);
    while !h2.runs_a_guest() {
        assert!(Instant::now() < until, "no guest started on h2");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(5));
    h2.freeze_libvirtd();
    let frozen = Instant::now();
    let line = run.wait_for("host h2 lost during", 180);
    assert!(line.contains("its cells go to the other hosts"), "{line}");
    let lost_after = frozen.elapsed();
    let (code, log) = run.wait(900);
    assert_eq!(code, Some(0), "{log}");
    assert!(lost_after < Duration::from_secs(120), "the silent host was given up after {lost_after:?}");

    let run_dir = only_run_dir(&results);
    let (all, last) = finals(&run_dir);
    // Every cell recorded once as finished, all on the host that stayed; the lost attempt is
    // kept as an infrastructure failure beside its retry.
    assert_eq!(last.len(), 4);
    for r in last.values() {
        assert_eq!(r.exit_reason, ExitReason::Success, "{:?}", r.error);
        assert_eq!(r.host.as_deref(), Some("here"));
    }
    let lost: Vec<&CellResult> = all.iter().filter(|r| r.host.as_deref() == Some("h2")).collect();
    assert_eq!(lost.len(), 1, "h2 ran one cell before it was lost");
    assert_eq!(lost[0].exit_reason, ExitReason::HarnessError);
    assert!(lost[0].error.as_deref().unwrap_or("").contains("libvirt connection lost"), "{:?}", lost[0].error);
    assert_eq!(all.len(), 5);
    let summary = std::fs::read_to_string(run_dir.join("summary.txt")).unwrap();
    assert!(summary.contains("4/4 cells finished, 4 passed"), "{summary}");
}

/// Ctrl-C on a terminal reaches the whole foreground process group, so it also kills the ssh
/// that libvirt runs for a qemu+ssh connection: the remote guest ends with that connection
/// (autodestroy) and its volumes are removed through a new one. Nothing is left on the host.
/// After SIGKILL, the next perfvm finds the volumes by their owner and removes them.
#[test]
#[ignore = "boots a real guest on a second libvirt host: run with --include-ignored (CI does)"]
fn ctrl_c_on_a_terminal_leaves_nothing_on_a_remote_host() {
    use std::os::unix::process::CommandExt;
    let _one = common::vm_lock();
    let h2 = SecondHost::start();
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let mut cmd = common::command();
    cmd.args(["run", "--ram", "256", "--file-size", "1M", "--cpus", "1", "--connect", &h2.uri, "--results-dir", results.to_str().unwrap(), "--timeout", "400"]);
    // Its own process group, as a shell gives a foreground job; the terminal's SIGINT goes to it.
    cmd.process_group(0);
    let run = Running::spawn_with(&mut cmd);
    run.wait_for(": agent", 300);
    std::thread::sleep(Duration::from_secs(3));
    assert!(h2.runs_a_guest());
    let pgid = nix::unistd::Pid::from_raw(run.pid() as i32);
    nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGINT).unwrap();
    let (code, log) = run.wait(120);
    assert_eq!(code, Some(130), "{log}");
    assert!(!log.contains("cannot destroy") && !log.contains("cannot remove volumes"), "{log}");
    let until = Instant::now() + Duration::from_secs(30);
    while h2.runs_a_guest() {
        assert!(Instant::now() < until, "the guest still runs on h2 30 s after Ctrl-C");
        std::thread::sleep(Duration::from_millis(200));
    }
    let files = h2.pool_files();
    assert!(files.iter().all(|f| f.starts_with("image-")), "cell volumes left on h2: {files:?}");

    // SIGKILL leaves perfvm no chance to clean up: the guest ends with its connection
    // (autodestroy), its volumes stay, readable by root alone, until a perfvm finds them by
    // their owner, whose lock is free now.
    let mut cmd = common::command();
    cmd.args(["run", "--ram", "256", "--file-size", "1M", "--cpus", "1", "--connect", &h2.uri, "--results-dir", results.to_str().unwrap(), "--timeout", "400"]);
    let run = Running::spawn_with(&mut cmd);
    run.wait_for(": agent", 300);
    run.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = run.wait(30);
    let until = Instant::now() + Duration::from_secs(30);
    while h2.runs_a_guest() {
        assert!(Instant::now() < until, "the guest still runs on h2 30 s after SIGKILL");
        std::thread::sleep(Duration::from_millis(200));
    }
    let left: Vec<String> = h2.pool_files().into_iter().filter(|f| f.starts_with("cell-")).collect();
    assert_eq!(left.len(), 3, "overlay, seed and console of the killed cell: {left:?}");
    for f in &left {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(h2.dir.path().join("lib/images/perfvm").join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{f} is readable by others: {:o}", mode & 0o777);
    }
    let doc = perfvm(&["doctor", "--connect", &h2.uri, "--results-dir", results.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&doc.stdout).contains("leftover cell volumes in the perfvm pool: 3"), "{}", String::from_utf8_lossy(&doc.stdout));
    let out = perfvm(&["cleanup", "--connect", &h2.uri]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("(volume)").count(), 3, "{}", String::from_utf8_lossy(&out.stdout));
    let files = h2.pool_files();
    assert!(files.iter().all(|f| f.starts_with("image-")), "cell volumes left on h2 after cleanup: {files:?}");
}

#[test]
fn host_lists_are_checked_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("hosts.toml");
    std::fs::write(&bad, "[[host]]\nuri = \"qemu:///system\"\nmemroy_mib = 4000\n").unwrap();
    let r = tmp.path().join("results");
    let r = r.to_str().unwrap();
    for (args, want) in [
        (vec!["matrix", "--ram", "256", "--file-size", "1M", "--hosts", bad.to_str().unwrap()], "unknown field"),
        (vec!["matrix", "--ram", "256", "--file-size", "1M", "--hosts", "/nonexistent/hosts.toml"], "--hosts /nonexistent/hosts.toml"),
        (vec!["matrix", "--ram", "256", "--file-size", "1M", "--connect", "qemu+tcp://hv2/system"], "qemu+ssh"),
        (vec!["matrix", "--ram", "256", "--file-size", "1M", "--connect", "qemu:///system", "--connect", "qemu:///system"], "listed twice"),
        (vec!["run", "--ram", "256", "--file-size", "1M", "--connect", "qemu:///system", "--connect", "qemu+ssh://hv2/system"], "one cell on one host"),
        (vec!["run", "--ram", "256", "--file-size", "1M", "--connect", "qemu+ssh://hv2/system", "--keep-vm"], "--keep-vm"),
        (vec!["matrix", "--ram", "256", "--file-size", "1M", "--connect", "qemu+ssh://hv2/system", "--hosts", bad.to_str().unwrap()], "give the hosts one way"),
    ] {
        let mut full = args.clone();
        full.extend(["--results-dir", r]);
        let out = perfvm(&full);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(!Path::new(r).join("perfvm.sqlite").exists(), "nothing recorded");
}

/// With hosts.toml, --ram is checked against the hosts once they are reached (the roomiest one,
/// its memory_mib when set), not against this machine alone. Needs libvirtd, boots nothing.
#[test]
#[ignore = "connects to libvirtd: run with --include-ignored (CI does)"]
fn a_cell_too_big_for_every_host_is_refused_naming_the_roomiest() {
    let tmp = tempfile::tempdir().unwrap();
    let hosts = tmp.path().join("hosts.toml");
    std::fs::write(&hosts, "[[host]]\nuri = \"qemu:///system\"\nname = \"small\"\nmemory_mib = 2000\n").unwrap();
    let r = tmp.path().join("results");
    for cmd in ["run", "matrix"] {
        let out = perfvm(&[cmd, "--ram", "1024", "--file-size", "1M", "--accel", "tcg", "--hosts", hosts.to_str().unwrap(), "--results-dir", r.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(err.contains("--ram 1024: the roomiest host (small, memory_mib) has") && err.contains("at most 800 MiB fits"), "{cmd}: {err}");
    }
    assert!(!r.exists(), "refused before the results directory is made");
}
