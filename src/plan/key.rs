//! A cell's identity in a run: RAM, file size, uploads at once, repetition. Pure.

use crate::size::ByteSize;

/// One cell of a matrix: a RAM size, a file size, uploads at once, a repetition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellKey {
    pub ram_mib: u64,
    pub size: ByteSize,
    pub concurrency: u32,
    pub repeat: u32,
}

/// Uploads at once, at most.
pub const MAX_CONCURRENCY: u32 = 64;

impl CellKey {
    /// `512-1G` (one upload at a time) or `512-1G-c4` — the cell's shape, shared by its
    /// repetitions.
    pub fn shape(&self) -> String {
        match self.concurrency {
            1 => format!("{}-{}", self.ram_mib, self.size.label()),
            c => format!("{}-{}-c{c}", self.ram_mib, self.size.label()),
        }
    }
    /// `512-1G-r2` — unique within a run; names its directory.
    pub fn id(&self) -> String {
        format!("{}-r{}", self.shape(), self.repeat)
    }
}

