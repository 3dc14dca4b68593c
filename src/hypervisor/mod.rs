//! libvirt, through the `virt` crate: the connection, the domain XML (pure), and the guard that
//! destroys a cell's domain on every path.

pub mod conn;
pub mod domain_xml;
pub mod guard;
pub mod orphans;
pub mod pool;

/// Every domain perfvm creates is named with this prefix and tagged with [`METADATA_NS`].
pub const NAME_PREFIX: &str = "perfvm-";
pub const METADATA_NS: &str = "urn:perfvm:cell:1";

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

