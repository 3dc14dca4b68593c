//! Helpers shared by the end-to-end test binaries: running perfvm, watching its progress lines,
//! and checking that nothing of a cell is left on the host.
#![allow(dead_code)] // each test binary uses a different subset

use perfvm::results::model::CellResult;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One guest at a time: parallel TCG guests on 2 cores would only slow each other down. Every
/// test that talks to libvirt holds it (some stop libvirtd).
pub static VM: Mutex<()> = Mutex::new(());

pub fn vm_lock() -> std::sync::MutexGuard<'static, ()> {
    VM.lock().unwrap_or_else(|e| e.into_inner())
}

pub const MIB: u64 = 1 << 20;

pub fn command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_perfvm"));
    c.env("PERFVM_TARGET_BIN", env!("CARGO_BIN_EXE_perfvm-target"))
        .env("PERFVM_PROBE_BIN", env!("CARGO_BIN_EXE_perfvm-probe"))
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

pub fn perfvm(args: &[&str]) -> Output {
    command().args(args).output().expect("run perfvm")
}

pub fn run_dirs(results: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(results)
        .map(|it| it.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default()
}

/// A result.json written by perfvm: it validates against the documented schema, and parses.
pub fn read_result(path: &Path) -> CellResult {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    validate(&text, path);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Validate result.json text against docs/result.schema.json.
pub fn validate(text: &str, path: &Path) {
    let schema: serde_json::Value = serde_json::from_str(&perfvm::results::model::json_schema()).unwrap();
    let v = jsonschema::validator_for(&schema).expect("the schema compiles");
    let doc: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let errors: Vec<String> = v.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{} does not match docs/result.schema.json: {errors:?}", path.display());
}

/// Run one cell and return its result, checking what every cell must leave behind.
pub fn cell(args: &[&str]) -> (CellResult, PathBuf, Output) {
    let _one = vm_lock();
    let results = tempfile::tempdir().unwrap().keep();
    let mut full = vec!["run", "--results-dir", results.to_str().unwrap(), "--timeout", "400"];
    full.extend_from_slice(args);
    let out = perfvm(&full);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("--- perfvm {full:?}\n{stdout}\n{stderr}");
    let dirs = run_dirs(&results);
    assert_eq!(dirs.len(), 1, "exactly one run dir");
    let dir = dirs[0].clone();
    let result = read_result(&dir.join("result.json"));
    assert_no_leftovers(&result);
    assert!(dir.join("console.log").is_file(), "console log saved");
    assert_not_writable_by_others(&dir);
    (result, dir, out)
}

/// Files perfvm writes as root are not group- or world-writable.
pub fn assert_not_writable_by_others(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()));
    for p in paths {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o022, 0, "{} has mode {:o}", p.display(), mode & 0o7777);
    }
}

pub fn connect() -> virt::connect::Connect {
    perfvm::hypervisor::conn::open(perfvm::hypervisor::conn::DEFAULT_URI).expect("libvirt")
}

/// No domain and no work directory of this cell survive the perfvm process.
pub fn assert_no_leftovers(r: &CellResult) {
    let name = r.domain.clone().expect("domain name recorded");
    assert_domain_gone(&name);
}

pub fn assert_domain_gone(name: &str) {
    let doms = perfvm::hypervisor::conn::perfvm_domains(&connect()).unwrap();
    assert!(!doms.iter().any(|d| d.name == name), "domain {name} left behind");
    let work = perfvm::paths::cells_dir(&perfvm::paths::cache_dir()).join(name);
    assert!(!work.exists(), "work dir {} left behind", work.display());
}

/// A running perfvm domain by name.
pub fn domain(name: &str) -> virt::domain::Domain {
    perfvm::hypervisor::conn::perfvm_domains(&connect())
        .unwrap()
        .into_iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("domain {name} not running"))
        .domain
}

/// Names of the running domains owned by perfvm process `pid`.
pub fn domains_of(pid: u32) -> Vec<String> {
    perfvm::hypervisor::conn::perfvm_domains(&connect())
        .unwrap()
        .into_iter()
        .filter(|d| d.owner.as_ref().is_some_and(|o| o.pid == pid))
        .map(|d| d.name)
        .collect()
}

pub fn samples(dir: &Path) -> Vec<csv::StringRecord> {
    let mut rd = csv::Reader::from_path(dir.join("samples.csv")).unwrap();
    rd.records().map(|r| r.unwrap()).collect()
}

pub fn csv_rows(path: &Path) -> usize {
    csv::Reader::from_path(path).map(|mut r| r.records().count()).unwrap_or(0)
}

/// Every `cells/<cell>/a<n>/result.json` of a matrix run.
pub fn attempt_results(run_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for cell in std::fs::read_dir(run_dir.join("cells")).into_iter().flatten().flatten() {
        for att in std::fs::read_dir(cell.path()).into_iter().flatten().flatten() {
            let p = att.path().join("result.json");
            if p.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A perfvm process in the background whose progress lines (stderr) the test can wait for.
pub struct Running {
    pub child: Child,
    lines: Receiver<String>,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    pub fn spawn(args: &[&str]) -> Running {
        Running::spawn_with(command().args(args))
    }

    pub fn spawn_with(cmd: &mut Command) -> Running {
        let mut child = cmd.stderr(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("spawn perfvm");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stderr, stdout) = (child.stderr.take().unwrap(), child.stdout.take().unwrap());
        let l = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  | {line}");
                l.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let l = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("  > {line}");
                l.lock().unwrap().push(line);
            }
        });
        Running { child, lines: rx, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait for a stderr line containing `needle`; panics after `secs`.
    pub fn wait_for(&self, needle: &str, secs: u64) -> String {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("no line with {needle:?} within {secs} s"),
                Err(RecvTimeoutError::Disconnected) => panic!("perfvm ended before printing {needle:?}"),
            }
        }
    }

    /// Wait for the exit code, killing the process after `secs`.
    pub fn wait(mut self, secs: u64) -> (Option<i32>, String) {
        let end = Instant::now() + Duration::from_secs(secs);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("perfvm still running after {secs} s");
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        // Let the reader threads drain.
        std::thread::sleep(Duration::from_millis(200));
        (status.code(), self.log.lock().unwrap().join("\n"))
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig).unwrap();
    }
}

/// Every file under `dir`, recursively.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// perfvm's own image (built if missing), for tests that make images of their own from it.
pub fn base_image() -> perfvm::image::Image {
    let base = perfvm::image::recipe::load(&perfvm::paths::recipe_dir()).unwrap();
    perfvm::image::build::ensure(&perfvm::paths::cache_dir(), &base).unwrap()
}

/// The DOM of an HTML file as headless Chromium renders it (scripts, if any, have run).
pub fn render_headless(html: &Path) -> String {
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", std::path::absolute(html).unwrap().display()))
        .output()
        .expect("chromium (installed by scripts/setup.sh) renders the report");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
