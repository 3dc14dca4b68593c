//! What dead perfvm processes left on a host: domains, cell work directories here, and cell
//! volumes in a remote host's pool; and removing them. Whose a thing is, is its owner id
//! (`crate::owner`): left by a perfvm whose owner lock is free in this machine's cache. Never a
//! live process's, never a kept guest, never another machine's or another container's.
//! Domains of an older perfvm (no owner id) are judged as it judged them: this machine's, and
//! their pid gone.

use super::VirtError;
use super::conn::{OwnedDomain, perfvm_domains};
use super::NAME_PREFIX;
use super::domain_xml::CellOwner;
use crate::owner::State;
use std::path::{Path, PathBuf};
use virt::connect::Connect;

/// The file in a cell's work directory that holds its owner id.
pub const OWNER_FILE: &str = "owner";

/// A gone owner's lock file marks what it left, possibly on a host not visited since: kept a
/// month, then forgotten.
const FORGET_AFTER: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// Hidden directories of cells being made are left alone this long (a perfvm that died
/// between making one and naming it leaves it behind).
const MAKING: std::time::Duration = std::time::Duration::from_secs(3600);

/// Whether a domain with these owner facts is a dead perfvm's. Pure but for the owner lock.
pub fn domain_is_orphan(o: &CellOwner, cache: &Path, machine: &str) -> bool {
    if o.keep {
        return false;
    }
    match &o.owner {
        Some(id) => crate::owner::state(cache, id) == State::Gone,
        None => o.machine.as_deref().is_none_or(|m| m == machine) && !crate::proc::pid_alive(o.pid as i32),
    }
}

/// Domains left behind by perfvm processes that no longer run (killed with SIGKILL, crashed,
/// when libvirt did not end them with their connection).
pub fn orphaned_domains(conn: &Connect) -> Result<Vec<OwnedDomain>, VirtError> {
    let (cache, me) = (crate::paths::cache_dir(), crate::proc::machine_id());
    Ok(perfvm_domains(conn)?.into_iter().filter(|d| d.owner.as_ref().is_some_and(|o| domain_is_orphan(o, &cache, &me))).collect())
}

/// Whether a cell work directory (not a running domain's) is a dead perfvm's: its owner's lock
/// is free, or (an older perfvm's) its owner.pid is gone. A hidden one being made is left alone
/// until it is an hour old.
pub fn work_dir_is_orphan(dir: &Path, cache: &Path) -> bool {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let making = name.starts_with(".new-");
    if !(name.starts_with(NAME_PREFIX) || making) {
        return false;
    }
    if making && std::fs::metadata(dir).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_none_or(|age| age < MAKING) {
        return false;
    }
    match std::fs::read_to_string(dir.join(OWNER_FILE)) {
        Ok(id) => crate::owner::state(cache, id.trim()) == State::Gone,
        Err(_) => {
            let pid: Option<i32> = std::fs::read_to_string(dir.join("owner.pid")).ok().and_then(|t| t.trim().parse().ok());
            pid.is_some_and(|p| !crate::proc::pid_alive(p))
        }
    }
}

/// Work directories in perfvm's cache with no running domain whose owner is gone (a kept guest
/// destroyed by hand, a guest libvirt ended with its dead owner's connection, a crash between
/// prepare and boot).
pub fn orphaned_work_dirs(conn: &Connect) -> Result<Vec<PathBuf>, VirtError> {
    let cache = crate::paths::cache_dir();
    let cells = crate::paths::cells_dir(&cache);
    let running: Vec<String> = perfvm_domains(conn)?.into_iter().map(|d| d.name).collect();
    Ok(std::fs::read_dir(&cells)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.file_name().is_some_and(|n| running.iter().any(|r| r.as_str() == n)))
        .filter(|p| work_dir_is_orphan(p, &cache))
        .collect())
}

/// Cell volumes in the host's perfvm pool whose owner is gone: a remote guest ends with its
/// connection, its files do not.
pub fn orphaned_volumes(conn: &Connect) -> Result<Vec<String>, VirtError> {
    let Ok(pool) = conn.lookup_storage_pool_by_name(super::pool::POOL_NAME) else { return Ok(Vec::new()) };
    let cache = crate::paths::cache_dir();
    Ok(super::pool::volume_names(&pool)?
        .into_iter()
        .filter(|n| super::pool::volume_owner(n).is_some_and(|id| crate::owner::state(&cache, id) == State::Gone))
        .collect())
}

/// Destroy orphaned domains, delete orphaned cell volumes, and (with `work_dirs`) remove the
/// orphaned work directories: only judged against this machine's own libvirtd
/// (`qemu:///system`), since a cell of another host has no domain here. Returns what was removed.
pub fn remove_orphans(conn: &Connect, work_dirs: bool) -> Result<Vec<String>, VirtError> {
    let cache = crate::paths::cache_dir();
    let cells = crate::paths::cells_dir(&cache);
    let mut removed = Vec::new();
    for d in orphaned_domains(conn)? {
        let _ = d.domain.destroy();
        let _ = d.domain.undefine();
        if let Some(o) = &d.owner {
            // Only ever a direct child of perfvm's own cells directory.
            if o.work_dir.parent() == Some(cells.as_path()) {
                let _ = crate::image::peek::remove_cell_dir(&o.work_dir);
            }
        }
        removed.push(d.name);
    }
    if let Ok(pool) = conn.lookup_storage_pool_by_name(super::pool::POOL_NAME) {
        for v in orphaned_volumes(conn)? {
            if super::pool::delete(&pool, &v).is_ok() {
                removed.push(format!("{v} (volume)"));
            }
        }
    }
    for dir in if work_dirs { orphaned_work_dirs(conn)? } else { Vec::new() } {
        if crate::image::peek::remove_cell_dir(&dir).is_ok() {
            removed.push(format!("{} (files)", dir.file_name().unwrap_or_default().to_string_lossy()));
        }
    }
    crate::owner::forget_old(&cache, FORGET_AFTER);
    Ok(removed)
}

/// `perfvm cleanup`: connect to `uri` and remove what dead perfvm processes left there (their
/// cell files too when it is this machine's libvirtd). Returns what was removed.
pub fn cleanup(uri: &str) -> Result<Vec<String>, VirtError> {
    let conn = super::conn::open(uri)?;
    remove_orphans(&conn, uri == super::conn::DEFAULT_URI)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owner::Owner;

    fn owner(id: Option<&str>, pid: u32, keep: bool) -> CellOwner {
        CellOwner { pid, machine: Some("m1".into()), owner: id.map(str::to_string), run_id: "r".into(), work_dir: "/c/cells/x".into(), keep }
    }

    #[test]
    fn a_domain_is_an_orphan_only_when_its_owner_lock_is_free_here() {
        let cache = tempfile::tempdir().unwrap();
        let live = Owner::register(cache.path()).unwrap();
        let dead = Owner::register(cache.path()).unwrap();
        let dead_id = dead.id.clone();
        drop(dead);
        // A pid that does not exist here says nothing: the owner's lock decides.
        assert!(!domain_is_orphan(&owner(Some(&live.id), 999_999_999, false), cache.path(), "m1"), "a live perfvm's, whatever its pid");
        assert!(domain_is_orphan(&owner(Some(&dead_id), std::process::id(), false), cache.path(), "m1"), "a dead one's, whatever its pid");
        assert!(!domain_is_orphan(&owner(Some(&dead_id), 1, true), cache.path(), "m1"), "kept on purpose");
        // Another container's or machine's owner: no lock file here, never reaped.
        assert!(!domain_is_orphan(&owner(Some("0123456789abcdef"), 999_999_999, false), cache.path(), "m1"));
        // An older perfvm's metadata: this machine's and its pid gone.
        assert!(domain_is_orphan(&owner(None, 999_999_999, false), cache.path(), "m1"));
        assert!(!domain_is_orphan(&owner(None, 999_999_999, false), cache.path(), "m2"));
    }

    #[test]
    fn a_work_dir_being_made_or_of_a_live_owner_is_never_an_orphan() {
        let cache = tempfile::tempdir().unwrap();
        let cells = cache.path().join("cells");
        let live = Owner::register(cache.path()).unwrap();
        let dead = Owner::register(cache.path()).unwrap();
        let mk = |name: &str, owner: Option<&str>| {
            let d = cells.join(name);
            std::fs::create_dir_all(&d).unwrap();
            if let Some(o) = owner {
                std::fs::write(d.join(OWNER_FILE), o).unwrap();
            }
            d
        };
        let a = mk("perfvm-a", Some(&live.id));
        let b = mk("perfvm-b", Some(&dead.id));
        let making = mk(".new-perfvm-c", None);
        let stranger = mk("perfvm-d", None);
        drop(dead);
        assert!(!work_dir_is_orphan(&a, cache.path()));
        assert!(work_dir_is_orphan(&b, cache.path()));
        assert!(!work_dir_is_orphan(&making, cache.path()), "a cell being made, its owner not yet written");
        assert!(!work_dir_is_orphan(&stranger, cache.path()), "nobody's known: left alone");
    }
}
