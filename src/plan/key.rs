//! A cell's identity in a run: target, RAM, file size, uploads at once, repetition. Pure.

use crate::size::ByteSize;

/// One cell of a matrix: a RAM size, a file size, uploads at once, a repetition, and in a matrix
/// of several targets, which one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellKey {
    pub ram_mib: u64,
    pub size: ByteSize,
    pub concurrency: u32,
    pub repeat: u32,
    /// Empty when the run has one target, so that its cells keep their names.
    pub target: TargetTag,
}

/// Uploads at once, at most.
pub const MAX_CONCURRENCY: u32 = 64;

impl CellKey {
    /// `512-1G` (one upload at a time) or `512-1G-c4`, prefixed `dufs-` in a matrix of several
    /// targets — the cell's shape, shared by its repetitions.
    pub fn shape(&self) -> String {
        let base = match self.concurrency {
            1 => format!("{}-{}", self.ram_mib, self.size.label()),
            c => format!("{}-{}-c{c}", self.ram_mib, self.size.label()),
        };
        match self.target.as_str() {
            "" => base,
            t => format!("{t}-{base}"),
        }
    }
    /// `512-1G-r2` — unique within a run; names its directory.
    pub fn id(&self) -> String {
        format!("{}-r{}", self.shape(), self.repeat)
    }
}

/// A target's name in a matrix of several (`dufs`, `perfvm-target-memory`): inline, so that a
/// cell's key stays a plain value. Letters, digits, `-`, `_` and `.`, at most `TargetTag::MAX`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetTag {
    // Bytes first, zero-padded: tags order as their names do.
    bytes: [u8; TargetTag::MAX],
    len: u8,
}

impl TargetTag {
    pub const MAX: usize = 40;
    /// No tag: the run has one target.
    pub const NONE: TargetTag = TargetTag { bytes: [0; TargetTag::MAX], len: 0 };

    /// A tag from a name: other characters become `-`, and it is cut at `MAX` bytes.
    pub fn new(name: &str) -> TargetTag {
        let mut t = TargetTag::NONE;
        for c in name.chars().take(Self::MAX) {
            let c = if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' };
            t.bytes[t.len as usize] = c as u8;
            t.len += 1;
        }
        t
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).expect("ASCII by construction")
    }

    pub fn is_none(&self) -> bool {
        self.len == 0
    }
}

impl Default for TargetTag {
    fn default() -> TargetTag {
        TargetTag::NONE
    }
}

impl std::fmt::Debug for TargetTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_prefixes_the_cell_and_is_safe_as_a_file_name() {
        let k = CellKey { ram_mib: 256, size: ByteSize::parse("64M").unwrap(), concurrency: 1, repeat: 2, target: TargetTag::NONE };
        assert_eq!(k.id(), "256-64M-r2", "one target: names as before");
        let t = CellKey { target: TargetTag::new("dufs"), ..k };
        assert_eq!(t.id(), "dufs-256-64M-r2");
        assert_eq!(TargetTag::new("../my server").as_str(), "..-my-server");
        assert_eq!(TargetTag::new(&"x".repeat(99)).as_str().len(), TargetTag::MAX);
        assert_ne!(k, t);
        assert!(TargetTag::new("abcdefgh-long") < TargetTag::new("dufs"), "in name order, not by length");
    }
}
