//! The libvirt connection and host-wide queries (versions, perfvm's own domains).

use super::domain_xml::{CellOwner, parse_owner};
use super::{METADATA_NS, NAME_PREFIX, VirtError};
use virt::connect::Connect;
use virt::domain::Domain;

pub const DEFAULT_URI: &str = "qemu:///system";

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
