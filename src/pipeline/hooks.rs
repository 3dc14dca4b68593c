//! Hooks: shell commands around a cell. On the host, `--hook-before-cell` (before the guest is
//! prepared) and `--hook-after-cell` (after teardown), with the cell's facts in `PERFVM_*`
//! variables; in the guest, a profile's `guest_setup` (after the target is healthy, before the
//! upload) and `guest_teardown` (after collection), run through the agent. Each one's output is
//! saved beside the result, and a failing one fails the cell as the harness's error.

use super::cell::{CellConfig, CellError};
use crate::profile::Redactor;
use crate::results::model::{ExitReason, HookRecord};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a hook may run before it is killed.
pub const HOOK_LIMIT: Duration = Duration::from_secs(300);

/// Run a host hook with `env`, saving its output (redacted) as `<name>.log` in `out_dir`.
pub async fn host(name: &str, cmd: &str, env: &[(&str, String)], out_dir: &Path, t0: Instant, redact: &Redactor) -> (HookRecord, Result<(), CellError>) {
    let at = t0.elapsed().as_secs_f64();
    let (code, text) = run_host(cmd, env, HOOK_LIMIT).await;
    finish(name, at, code, &redact.redact(&text), out_dir)
}

/// `sh -c cmd` in a process group of its own, killed whole (whatever it started in the
/// background too) when it runs over `limit`: its exit code and output.
async fn run_host(cmd: &str, env: &[(&str, String)], limit: Duration) -> (Option<i32>, String) {
    let mut c = tokio::process::Command::new("sh");
    c.args(["-c", cmd])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => return (None, format!("cannot run sh: {e}\n")),
    };
    let group = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(o)) => (o.status.code(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))),
        Ok(Err(e)) => (None, format!("cannot run sh: {e}\n")),
        Err(_) => {
            if let Some(g) = group {
                let _ = nix::sys::signal::killpg(g, nix::sys::signal::Signal::SIGKILL);
            }
            (None, format!("killed after {} s\n", limit.as_secs()))
        }
    }
}

/// Run a guest hook through the agent (blocking), saving its output (redacted) as `<name>.log`.
pub fn guest(agent: &crate::guest::agent::Agent, name: &str, cmd: &str, out_dir: &Path, t0: Instant, redact: &Redactor) -> (HookRecord, Result<(), CellError>) {
    let at = t0.elapsed().as_secs_f64();
    let (code, text) = match agent.exec("/bin/sh", &["-c", cmd], HOOK_LIMIT) {
        Ok(o) => (Some(o.exit_code as i32), format!("{}{}", o.stdout_str(), String::from_utf8_lossy(&o.stderr))),
        Err(e) => (None, format!("{e}\n")),
    };
    finish(name, at, code, &redact.redact(&text), out_dir)
}

fn finish(name: &str, at: f64, code: Option<i32>, text: &str, out_dir: &Path) -> (HookRecord, Result<(), CellError>) {
    let file = format!("{name}.log");
    let saved = crate::paths::write_atomic(&out_dir.join(&file), text.as_bytes()).is_ok();
    let rec = HookRecord { name: name.to_string(), at_seconds: crate::results::model::round3(at), exit_code: code, output: saved.then(|| file.clone()) };
    let res = match code {
        Some(0) => Ok(()),
        Some(c) => Err(CellError::new(ExitReason::HarnessError, format!("{name} failed with exit status {c}; see {file}"))),
        None => Err(CellError::new(ExitReason::HarnessError, format!("{name} did not finish: {}", text.trim()))),
    };
    (rec, res)
}

/// The cell's facts for host hooks.
pub fn env(cfg: &CellConfig, target: &str, out_dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("PERFVM_RUN_ID", cfg.run_id.clone()),
        ("PERFVM_CELL", cfg.cell.clone()),
        ("PERFVM_RAM_MB", cfg.ram_mib.to_string()),
        ("PERFVM_FILE_SIZE", cfg.file_size.label()),
        ("PERFVM_FILE_SIZE_BYTES", cfg.file_size.bytes().to_string()),
        ("PERFVM_CONCURRENCY", cfg.concurrency.max(1).to_string()),
        ("PERFVM_REPEAT", cfg.repeat.to_string()),
        ("PERFVM_ATTEMPT", cfg.attempt.to_string()),
        ("PERFVM_TARGET", target.to_string()),
        ("PERFVM_DOMAIN", cfg.domain_name.clone()),
        ("PERFVM_CELL_DIR", std::path::absolute(out_dir).unwrap_or_else(|_| out_dir.to_path_buf()).display().to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hook_over_its_limit_is_killed_with_what_it_started() {
        let d = tempfile::tempdir().unwrap();
        let pidfile = d.path().join("bg.pid");
        let (code, text) = run_host(&format!("sleep 60 & echo $! > {}; wait", pidfile.display()), &[], Duration::from_secs(1)).await;
        assert_eq!(code, None);
        assert!(text.starts_with("killed after 1 s"), "{text}");
        let bg: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        // Reaped by init once killed: gone within moments.
        let t = Instant::now();
        while crate::proc::pid_alive(bg) && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!crate::proc::pid_alive(bg), "the hook's background sleep {bg} outlived it");
    }

    #[tokio::test]
    async fn host_hooks_get_the_env_and_fail_the_cell_on_error() {
        let d = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let (rec, res) = host("hook-before-cell", "echo cell=$PERFVM_CELL; echo err >&2", &[("PERFVM_CELL", "512-1G".into())], d.path(), t0, &Redactor::default()).await;
        assert!(res.is_ok());
        assert_eq!(rec.exit_code, Some(0));
        assert_eq!(std::fs::read_to_string(d.path().join("hook-before-cell.log")).unwrap(), "cell=512-1G\nerr\n");
        let (rec, res) = host("hook-after-cell", "echo no; exit 3", &[], d.path(), t0, &Redactor::default()).await;
        assert_eq!(rec.exit_code, Some(3));
        let e = res.unwrap_err();
        assert_eq!(e.reason, ExitReason::HarnessError);
        assert!(e.message.contains("hook-after-cell failed with exit status 3; see hook-after-cell.log"), "{}", e.message);
        // What a hook prints of the cell's secret is saved redacted.
        let mut t = crate::profile::TargetSpec::reference(crate::profile::TargetMode::Stream, "/x".into());
        t.upload.auth = Some(crate::profile::Auth::Basic { user: "u".into() });
        let secret = crate::profile::Secret::generate();
        let (_, res) = host("guest-setup", &format!("echo token={}", secret.expose()), &[], d.path(), t0, &t.redactor(&secret)).await;
        assert!(res.is_ok());
        assert_eq!(std::fs::read_to_string(d.path().join("guest-setup.log")).unwrap(), "token=<secret>\n");
    }
}
