//! Prepare: the cell's work directory with a qcow2 overlay on the base image, the cloud-init
//! seed ISO, and a free loopback port for the forward.

use super::{CellConfig, CellEnv, CellError};
use crate::cloudinit::seed;
use crate::results::model::ExitReason;
use std::path::PathBuf;
use std::process::Command;

/// A cell's files on the host; removed when dropped unless kept.
pub struct WorkDir {
    pub path: PathBuf,
    keep: bool,
}

impl WorkDir {
    pub fn keep(&mut self) {
        self.keep = true;
    }
    pub fn remove(&mut self) -> std::io::Result<()> {
        if self.keep || !self.path.exists() {
            return Ok(());
        }
        self.keep = true; // once
        std::fs::remove_dir_all(&self.path)
    }
    pub fn overlay(&self) -> PathBuf {
        self.path.join("overlay.qcow2")
    }
    pub fn seed(&self) -> PathBuf {
        self.path.join("seed.iso")
    }
    pub fn console_log(&self) -> PathBuf {
        self.path.join("console.log")
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("perfvm: cannot remove {}: {e}", self.path.display());
        }
    }
}

pub struct Prepared {
    pub work: WorkDir,
    /// Made for this cell; the target gets it through its unit, the uploads through auth.
    pub secret: crate::profile::Secret,
    /// Where perfvm reaches the target: 127.0.0.1 here (the forward itself, or the tunnel's end).
    pub host_port: u16,
    /// The forward's port on the hypervisor host's loopback (= host_port on a local host).
    pub forward_port: u16,
    pub ssh_port: Option<u16>,
    /// On a remote host: the overlay, seed and console log in its pool, and the ssh tunnel.
    pub remote: Option<(crate::hosts::RemoteCell, crate::hosts::tunnel::Tunnel)>,
}

pub fn prepare(env: &CellEnv, cfg: &CellConfig) -> Result<Prepared, CellError> {
    let err = |m: String| CellError::new(ExitReason::HarnessError, m);
    let cells = crate::paths::cells_dir(&env.cache);
    crate::paths::ensure_shared_dir(&cells).map_err(|e| err(format!("cannot create {}: {e}", cells.display())))?;
    let path = cells.join(&cfg.domain_name);
    if path.exists() {
        // Never touch a live cell's files; a dead process's leftovers are fair game.
        let owner: Option<i32> = std::fs::read_to_string(path.join("owner.pid")).ok().and_then(|t| t.trim().parse().ok());
        if let Some(pid) = owner.filter(|&p| p != std::process::id() as i32 && crate::proc::pid_alive(p)) {
            return Err(err(format!("{} belongs to running perfvm pid {pid}", path.display())));
        }
        std::fs::remove_dir_all(&path).map_err(|e| err(format!("stale {}: {e}", path.display())))?;
    }
    crate::paths::ensure_shared_dir(&path).map_err(|e| err(format!("cannot create {}: {e}", path.display())))?;
    let work = WorkDir { path, keep: false };
    // Lets `perfvm cleanup` tell a live cell's files from a dead process's.
    std::fs::write(work.path.join("owner.pid"), std::process::id().to_string()).map_err(|e| err(format!("cannot write owner.pid: {e}")))?;

    // A remote host makes the overlay itself, on its copy of the image.
    if env.host.remote.is_none() {
        let out = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(env.image.disk())
            .arg(work.overlay())
            .output()
            .map_err(|e| err(format!("cannot run qemu-img: {e}")))?;
        if !out.status.success() {
            return Err(err(format!("qemu-img create failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
        }
    }

    // A fresh instance-id per cell makes cloud-init treat every boot as a first boot.
    let instance_id = format!("{}-{}", cfg.domain_name, std::process::id());
    let files = [seed::harness_files(crate::paths::probe_binary()), env.target.files.clone()].concat();
    let secret = crate::profile::Secret::generate();
    let docs = seed::render_docs(&env.templates.0, &env.templates.1, &env.target, &files, &instance_id, cfg.ssh_key.as_ref(), &secret)
        .map_err(|e| err(format!("cloud-init: {e:#}")))?;
    seed::write_iso(&docs, &files, &work.path, &work.seed()).map_err(|e| err(format!("seed: {e:#}")))?;
    let ssh_port = match &cfg.ssh_key {
        Some(_) => Some(crate::proc::free_loopback_port().map_err(|e| err(format!("no free loopback port: {e}")))?),
        None => None,
    };
    let Some(remote) = &env.host.remote else {
        let host_port = crate::proc::free_loopback_port().map_err(|e| err(format!("no free loopback port: {e}")))?;
        return Ok(Prepared { work, secret, host_port, forward_port: host_port, ssh_port, remote: None });
    };
    let files = crate::hosts::RemoteCell::create(&env.conn, remote, &cfg.domain_name, &work.seed())
        .map_err(|e| err(format!("files on host {}: {e}", env.host.name)))?;
    let forward_port = files.port;
    let tunnel = crate::hosts::tunnel::Tunnel::open(&remote.ssh, forward_port, &work.path.join("ssh-tunnel.log"), std::time::Duration::from_secs(30))
        .map_err(|e| err(format!("tunnel to host {}: {e}", env.host.name)))?;
    Ok(Prepared { work, secret, host_port: tunnel.local_port, forward_port, ssh_port, remote: Some((files, tunnel)) })
}
