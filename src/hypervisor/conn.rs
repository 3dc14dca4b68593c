//! The libvirt connection and host-wide queries (versions, perfvm's own domains).

use super::domain_xml::{CellOwner, parse_owner};
use super::{METADATA_NS, NAME_PREFIX};
use virt::connect::Connect;
use virt::domain::Domain;

pub const DEFAULT_URI: &str = "qemu:///system";

#[derive(Debug, thiserror::Error)]
pub enum VirtError {
    #[error("cannot connect to libvirt at {uri}: {message}. Is libvirtd running? (`scripts/setup.sh` starts virtlogd and libvirtd; `perfvm doctor` checks)")]
    Connect { uri: String, message: String },
    #[error("libvirt: {0}")]
    Call(String),
}

impl From<virt::error::Error> for VirtError {
    fn from(e: virt::error::Error) -> Self {
        VirtError::Call(e.message().to_string())
    }
}

/// Open a connection. libvirt's default error callback prints every error to stderr, which we
/// report ourselves, so it is switched off.
pub fn open(uri: &str) -> Result<Connect, VirtError> {
    virt::error::clear_error_callback();
    Connect::open(Some(uri)).map_err(|e| VirtError::Connect { uri: uri.to_string(), message: e.message().to_string() })
}

/// Whether the connection still reaches libvirtd (false once the daemon has stopped).
pub fn alive(conn: &Connect) -> bool {
    matches!(conn.is_alive(), Ok(true))
}

/// libvirt and hypervisor versions as "9.0.0" / "7.2.0".
pub fn versions(conn: &Connect) -> (Option<String>, Option<String>) {
    let fmt = |v: u32| format!("{}.{}.{}", v / 1_000_000, (v / 1000) % 1000, v % 1000);
    (conn.lib_version().ok().map(fmt), conn.hyp_version().ok().map(fmt))
}

/// A domain perfvm created, with the owner facts from its metadata (None if unreadable).
pub struct OwnedDomain {
    pub domain: Domain,
    pub name: String,
    pub owner: Option<CellOwner>,
}

/// Every domain whose name starts with `perfvm-`.
pub fn perfvm_domains(conn: &Connect) -> Result<Vec<OwnedDomain>, VirtError> {
    let mut out = Vec::new();
    for domain in conn.list_all_domains(0)? {
        let Ok(name) = domain.name() else { continue };
        if !name.starts_with(NAME_PREFIX) {
            continue;
        }
        let owner = domain
            .metadata(virt::sys::VIR_DOMAIN_METADATA_ELEMENT as i32, Some(METADATA_NS), 0)
            .ok()
            .and_then(|xml| parse_owner(&xml));
        out.push(OwnedDomain { domain, name, owner });
    }
    Ok(out)
}

/// Domains left behind by perfvm processes of this machine that no longer exist (killed with
/// SIGKILL, crashed). A domain of a live perfvm process, or of another machine's perfvm on a
/// shared host, is never included.
pub fn orphaned_domains(conn: &Connect) -> Result<Vec<OwnedDomain>, VirtError> {
    let me = crate::proc::machine_id();
    Ok(perfvm_domains(conn)?
        .into_iter()
        .filter(|d| match &d.owner {
            Some(o) => !o.keep && o.machine.as_ref().is_none_or(|m| *m == me) && !crate::proc::pid_alive(o.pid as i32),
            None => false,
        })
        .collect())
}

/// Work directories in perfvm's cache with no running domain whose owner process is gone (a
/// kept guest destroyed by hand, a crash between prepare and boot, libvirt lost mid-cell).
pub fn orphaned_work_dirs(conn: &Connect) -> Result<Vec<std::path::PathBuf>, VirtError> {
    let cells = crate::paths::cells_dir(&crate::paths::cache_dir());
    let running: Vec<String> = perfvm_domains(conn)?.into_iter().map(|d| d.name).collect();
    let mut out = Vec::new();
    for e in std::fs::read_dir(&cells).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(NAME_PREFIX) || running.contains(&name) {
            continue;
        }
        let owner: Option<i32> = std::fs::read_to_string(e.path().join("owner.pid")).ok().and_then(|t| t.trim().parse().ok());
        if owner.is_none_or(|pid| !crate::proc::pid_alive(pid)) {
            out.push(e.path());
        }
    }
    Ok(out)
}

/// Destroy orphaned domains and remove their work directories, then (with `work_dirs`) the
/// orphaned work directories without a domain: only judged against this machine's own libvirtd
/// (`qemu:///system`), since a cell of another host has no domain here. Returns what was removed.
pub fn remove_orphans(conn: &Connect, work_dirs: bool) -> Result<Vec<String>, VirtError> {
    let cells = crate::paths::cells_dir(&crate::paths::cache_dir());
    let mut removed = Vec::new();
    // A remote host keeps a cell's files as volumes in perfvm's pool.
    let pool = conn.lookup_storage_pool_by_name(super::pool::POOL_NAME).ok();
    for d in orphaned_domains(conn)? {
        let _ = d.domain.destroy();
        let _ = d.domain.undefine();
        if let Some(p) = &pool {
            for v in super::pool::cell_volumes(&d.name) {
                let _ = super::pool::delete(p, &v);
            }
        }
        if let Some(o) = &d.owner {
            // Only ever a direct child of perfvm's own cells directory.
            if o.work_dir.parent() == Some(cells.as_path()) {
                let _ = std::fs::remove_dir_all(&o.work_dir);
            }
        }
        removed.push(d.name);
    }
    for dir in if work_dirs { orphaned_work_dirs(conn)? } else { Vec::new() } {
        if std::fs::remove_dir_all(&dir).is_ok() {
            removed.push(format!("{} (files)", dir.file_name().unwrap_or_default().to_string_lossy()));
        }
    }
    Ok(removed)
}
