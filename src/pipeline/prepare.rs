//! Prepare: the cell's work directory, its cloud-init seed ISO and secret, and its files placed
//! where the host's qemu reads them (`Host::place`: an overlay here, or volumes and a tunnel on
//! a remote host).

use super::cell::{CellConfig, CellEnv, CellError};
use crate::cloudinit::seed;
use crate::hosts::{self, Placed};
use crate::results::model::ExitReason;
use std::path::PathBuf;

/// A cell's files on this machine; removed when dropped unless kept.
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
        crate::image::peek::remove_cell_dir(&self.path)
    }
    pub fn seed(&self) -> PathBuf {
        self.path.join(hosts::SEED)
    }
    pub fn console_log(&self) -> PathBuf {
        self.path.join(hosts::CONSOLE)
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
    pub placed: Placed,
    /// Made for this cell; the target gets it through its unit, the uploads through auth.
    pub secret: crate::profile::Secret,
    pub ssh_port: Option<u16>,
}

/// A cell's work directory, `<cells>/<domain>`, with its owner recorded before it gets its
/// name: made as a hidden directory holding an `owner` file, then renamed into place, so a perfvm
/// that looks for leftovers at that moment never finds a cell directory without its owner.
/// Leftovers of a gone owner under the same name are removed; a live one's are never touched.
pub fn work_dir(cells: &std::path::Path, domain: &str) -> Result<WorkDir, String> {
    let path = cells.join(domain);
    if path.exists() {
        let owner = std::fs::read_to_string(path.join(crate::hypervisor::orphans::OWNER_FILE)).unwrap_or_default();
        let owner = owner.trim();
        if owner != crate::owner::me() && crate::owner::state(&crate::paths::cache_dir(), owner) == crate::owner::State::Alive {
            return Err(format!("{} belongs to a running perfvm (owner {owner})", path.display()));
        }
        crate::image::peek::remove_cell_dir(&path).map_err(|e| format!("stale {}: {e}", path.display()))?;
    }
    let tmp = cells.join(format!(".new-{domain}"));
    let _ = std::fs::remove_dir_all(&tmp);
    crate::paths::ensure_shared_dir(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    std::fs::write(tmp.join(crate::hypervisor::orphans::OWNER_FILE), crate::owner::me()).map_err(|e| format!("cannot write the owner of {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    Ok(WorkDir { path, keep: false })
}

/// `saved_disk`: the disk of the saved guest the cell restores (`--boot saved`): its overlay goes
/// on that, and it gets no seed (the guest was configured before it was saved; the target comes
/// through the agent).
pub fn prepare(env: &CellEnv, cfg: &CellConfig, saved_disk: Option<&std::path::Path>) -> Result<Prepared, CellError> {
    let err = |m: String| CellError::new(ExitReason::HarnessError, m);
    let cells = crate::paths::cells_dir(&env.cache);
    crate::paths::ensure_shared_dir(&cells).map_err(|e| err(format!("cannot create {}: {e}", cells.display())))?;
    let work = work_dir(&cells, &cfg.domain_name).map_err(err)?;

    let secret = crate::profile::Secret::generate();
    if let Some(disk) = saved_disk {
        let placed = hosts::place_local(&work.path, disk).map_err(err)?;
        return Ok(Prepared { work, placed, secret, ssh_port: None });
    }
    // A fresh instance-id per cell makes cloud-init treat every boot as a first boot.
    let instance_id = format!("{}-{}", cfg.domain_name, std::process::id());
    let files = [seed::harness_files(crate::paths::probe_binary()), env.target.files.clone()].concat();
    let docs = seed::render_docs(&env.templates.0, &env.templates.1, &env.target, &files, &instance_id, cfg.ssh_key.as_ref(), Some(&secret))
        .map_err(|e| err(format!("cloud-init: {e:#}")))?;
    seed::write_iso(&docs, &files, &work.path, &work.seed()).map_err(|e| err(format!("seed: {e:#}")))?;
    let ssh_port = match &cfg.ssh_key {
        Some(_) => Some(crate::proc::free_loopback_port().map_err(|e| err(format!("no free loopback port: {e}")))?),
        None => None,
    };
    let placed = env.host.place(&cfg.domain_name, &work.path, &env.image).map_err(err)?;
    Ok(Prepared { work, placed, secret, ssh_port })
}
