//! The libvirt connection and host-wide queries (versions, perfvm's own domains).

use super::domain_xml::{CellOwner, parse_owner};
use super::{METADATA_NS, NAME_PREFIX, VirtError};
use virt::connect::Connect;
use virt::domain::Domain;

pub const DEFAULT_URI: &str = "qemu:///system";

/// Keepalive: a peer that answers no ping for `KEEPALIVE_INTERVAL` × (`KEEPALIVE_COUNT` + 1)
/// seconds (a partitioned host, a frozen libvirtd) has its connection closed, and every call
/// waiting on it fails instead of hanging: the bound of every libvirt call perfvm makes.
pub const KEEPALIVE_INTERVAL: i32 = 5;
pub const KEEPALIVE_COUNT: u32 = 3;

/// libvirt's default event loop, run on a thread of its own: keepalive needs one.
fn event_loop() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        if virt::event::event_register_default_impl().is_ok() {
            let _ = std::thread::Builder::new().name("libvirt-events".into()).spawn(|| {
                loop {
                    if virt::event::event_run_default_impl().is_err() {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                }
            });
        }
    });
}

/// How long opening a connection may take (ssh to a remote host included).
pub const OPEN_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Open a connection, with keepalive, within `OPEN_LIMIT`.
pub fn open(uri: &str) -> Result<Connect, VirtError> {
    open_within(uri, OPEN_LIMIT)
}

/// libvirt's default error callback prints every error to stderr, which perfvm reports itself,
/// so it is switched off.
fn open_now(uri: &str) -> Result<Connect, VirtError> {
    virt::error::clear_error_callback();
    event_loop();
    let conn = Connect::open(Some(uri)).map_err(|e| VirtError::Connect { uri: uri.to_string(), message: e.message().to_string() })?;
    // A local connection has nothing to keep alive (libvirt says so): not an error.
    let _ = conn.set_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT);
    Ok(conn)
}

/// Open a connection within `limit`: a host that does not answer (a partition, a frozen ssh)
/// is an error, not a perfvm waiting forever. The attempt left running is abandoned.
pub fn open_within(uri: &str, limit: std::time::Duration) -> Result<Connect, VirtError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let u = uri.to_string();
    std::thread::spawn(move || {
        let _ = tx.send(open_now(&u));
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| Err(VirtError::Connect { uri: uri.to_string(), message: format!("no answer within {} s", limit.as_secs()) }))
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
