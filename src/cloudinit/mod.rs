//! The cloud-init NoCloud seed of a cell: rendered user-data/meta-data plus files to install,
//! packed into an ISO labelled `cidata` and attached as a virtio disk.

pub mod render;
pub mod seed;
