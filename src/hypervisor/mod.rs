//! libvirt, through the `virt` crate: the connection, the domain XML (pure), and the guard that
//! destroys a cell's domain on every path.

pub mod conn;
pub mod domain_xml;
pub mod guard;
pub mod pool;

/// Every domain perfvm creates is named with this prefix and tagged with [`METADATA_NS`].
pub const NAME_PREFIX: &str = "perfvm-";
pub const METADATA_NS: &str = "urn:perfvm:cell:1";
