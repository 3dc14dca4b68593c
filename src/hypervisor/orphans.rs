//! What dead perfvm processes left on a host: domains whose owner process is gone, and cell
//! files without a domain; and removing them. Never a live process's, never a kept guest, never
//! another machine's.

use super::VirtError;
use super::conn::{OwnedDomain, perfvm_domains};
use super::NAME_PREFIX;
use virt::connect::Connect;

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

/// `perfvm cleanup`: connect to `uri` and remove what dead perfvm processes left there (their
/// cell files too when it is this machine's libvirtd). Returns what was removed.
pub fn cleanup(uri: &str) -> Result<Vec<String>, VirtError> {
    let conn = super::conn::open(uri)?;
    remove_orphans(&conn, uri == super::conn::DEFAULT_URI)
}
