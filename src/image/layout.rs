//! Where a file's bytes lie in the host's files under a guest's disk, so the host can read them
//! straight from its page cache (~8 GB/s here) rather than through a FUSE export and debugfs
//! (~0.4 GB/s, both on the same two cores as the hashing). Two maps are joined: the file's
//! extents in the ext4 filesystem (debugfs `stat` and `dump_extents`) and the disk's clusters in
//! its qcow2 chain (`qemu-img map`). Pure: the text comes from those tools, this decides.
//! Anything either map cannot say plainly (inline data, block-mapped files, compressed or
//! encrypted clusters, an external data file) is `None`: the caller reads the slow way.

use serde::Deserialize;

/// A stretch of the file, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Reads as zeros: a hole, an unwritten extent, a zero or unallocated cluster.
    Zero(u64),
    /// `len` bytes at `offset` in the chain's `layer`-th file (0: the overlay).
    Read { layer: usize, offset: u64, len: u64 },
}

/// A file's size and extents, from debugfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMap {
    pub size: u64,
    /// (first logical block, first physical block, blocks, unwritten), as debugfs lists them.
    pub extents: Vec<(u64, u64, u64, bool)>,
}

const EXTENTS_FL: u64 = 0x80000;
const INLINE_DATA_FL: u64 = 0x1000_0000;

/// `stat` and `dump_extents -l` of one file. None unless it is an extent-mapped file.
pub fn file_map(stat: &str, dump_extents: &str) -> Option<FileMap> {
    let flags = stat.split("Flags: 0x").nth(1)?.split_whitespace().next().and_then(|f| u64::from_str_radix(f, 16).ok())?;
    if flags & EXTENTS_FL == 0 || flags & INLINE_DATA_FL != 0 || !stat.contains("Type: regular") {
        return None;
    }
    // "User: 0 Group: 0 Project: 0 Size: 100000" (the fragment line has a Size too).
    let user = stat.lines().find(|l| l.trim_start().starts_with("User:"))?;
    let size = user.split("Size:").nth(1)?.trim().parse().ok()?;
    if !dump_extents.contains("Level") {
        return None; // no listing at all (an empty file still has its header)
    }
    let mut extents = Vec::new();
    for line in dump_extents.lines().skip_while(|l| !l.trim_start().starts_with("Level")).skip(1) {
        // " 1/ 1   1/ 10      0 -  24280   8487 -  32767  24281 Uninit"
        let t: Vec<&str> = line.split_whitespace().collect();
        let dash = |i: usize| t.get(i).filter(|s| **s == "-").is_some();
        let num = |i: usize| t.get(i).and_then(|s| s.parse::<u64>().ok());
        // Level and entries are "a/ b" pairs: find the logical range after them.
        let at = t.iter().position(|s| *s == "-")?.checked_sub(1)?;
        if !(dash(at + 1) && dash(at + 4)) {
            return None;
        }
        let (lo, hi, p, len) = (num(at)?, num(at + 2)?, num(at + 3)?, num(at + 6)?);
        if hi + 1 - lo != len {
            return None;
        }
        let rest = &t[at + 7..];
        if rest.iter().any(|f| *f != "Uninit") {
            return None;
        }
        extents.push((lo, p, len, !rest.is_empty()));
    }
    Some(FileMap { size, extents })
}

/// One layer of a disk's chain, from `qemu-img info --backing-chain --output=json`.
#[derive(Debug, Deserialize)]
struct Layer {
    filename: String,
    format: String,
    #[serde(default)]
    encrypted: bool,
    #[serde(rename = "format-specific", default)]
    specific: Option<serde_json::Value>,
}

/// The chain's files, overlay first. None when one is not a plain qcow2 or raw file.
pub fn chain(info_json: &str) -> Option<Vec<String>> {
    let layers: Vec<Layer> = serde_json::from_str(info_json).ok()?;
    let plain = |l: &Layer| {
        (l.format == "qcow2" || l.format == "raw")
            && !l.encrypted
            && l.specific.as_ref().and_then(|s| s.pointer("/data/data-file")).is_none()
            && !l.filename.contains(':')
    };
    (!layers.is_empty() && layers.iter().all(plain)).then(|| layers.into_iter().map(|l| l.filename).collect())
}

/// A stretch of the disk, from `qemu-img map --output=json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Cluster {
    pub start: u64,
    pub length: u64,
    pub depth: usize,
    pub zero: bool,
    pub data: bool,
    pub offset: Option<u64>,
}

pub fn clusters(map_json: &str) -> Option<Vec<Cluster>> {
    let mut c: Vec<Cluster> = serde_json::from_str(map_json).ok()?;
    c.sort_by_key(|c| c.start);
    Some(c)
}

/// The file's bytes as pieces of the chain's files, in order; None where some byte cannot be
/// placed plainly (data without an offset: compressed; a layer the chain does not have).
pub fn plan(file: &FileMap, block: u64, disk: &[Cluster], layers: usize) -> Option<Vec<Piece>> {
    let mut out: Vec<Piece> = Vec::new();
    let mut push = |p: Piece| match (out.last_mut(), &p) {
        (Some(Piece::Zero(a)), Piece::Zero(b)) => *a += b,
        (Some(Piece::Read { layer: l, offset: o, len: n }), Piece::Read { layer, offset, len }) if l == layer && *o + *n == *offset => *n += len,
        _ => out.push(p),
    };
    let mut extents = file.extents.clone();
    extents.sort();
    let mut at = 0u64; // bytes of the file placed so far
    for (lo, p, len, unwritten) in extents {
        let start = lo.checked_mul(block)?;
        if start >= file.size {
            break; // blocks past the end (preallocated): not the file's
        }
        if start < at {
            return None; // overlapping extents: not a map to trust
        }
        if start > at {
            push(Piece::Zero(start - at));
        }
        let n = (len * block).min(file.size - start);
        if unwritten {
            push(Piece::Zero(n));
        } else {
            for piece in on_disk(p.checked_mul(block)?, n, disk, layers)? {
                push(piece);
            }
        }
        at = start + n;
    }
    if at < file.size {
        push(Piece::Zero(file.size - at));
    }
    Some(out)
}

/// `len` bytes at disk offset `pos`, as pieces of the chain's files.
fn on_disk(mut pos: u64, len: u64, disk: &[Cluster], layers: usize) -> Option<Vec<Piece>> {
    let end = pos + len;
    let mut out = Vec::new();
    let mut i = disk.partition_point(|c| c.start + c.length <= pos);
    while pos < end {
        let c = disk.get(i).filter(|c| c.start <= pos)?;
        let n = (c.start + c.length).min(end) - pos;
        if c.zero || !c.data {
            out.push(Piece::Zero(n));
        } else {
            let offset = c.offset?;
            if c.depth >= layers {
                return None;
            }
            out.push(Piece::Read { layer: c.depth, offset: offset + (pos - c.start), len: n });
        }
        pos += n;
        i += 1;
    }
    Some(out)
}

/// The filesystem's block size, from the ext2/3/4 superblock 1024 bytes into the disk.
pub fn block_size(superblock: &[u8]) -> Option<u64> {
    let magic = u16::from_le_bytes(superblock.get(56..58)?.try_into().ok()?);
    let log = u32::from_le_bytes(superblock.get(24..28)?.try_into().ok()?);
    (magic == 0xEF53 && log <= 6).then(|| 1024u64 << log)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "Inode: 12   Type: regular    Mode:  0644   Flags: 0x80000\nGeneration: 0    Version: 0x00000000:00000000\nUser:     0   Group:     0   Project:     0   Size: 10000\nFile ACL: 0\nFragment:  Address: 0    Number: 0    Size: 0\n";

    fn cluster(start: u64, length: u64, depth: usize, data: bool, offset: Option<u64>) -> Cluster {
        Cluster { start, length, depth, zero: !data, data, offset }
    }

    #[test]
    fn extents_are_read_from_debugfs_as_it_prints_them() {
        // As debugfs 1.47 printed them for real files (a 1K-block filesystem, an fallocated file).
        let dump = "Level Entries       Logical      Physical Length Flags\n 0/ 0   1/  1     0 -     7  4385 -  4392      8 \n 0/ 0   2/  2     9 -    20  4483 -  4494     12 Uninit\n";
        let m = file_map(STAT, dump).unwrap();
        assert_eq!(m.size, 10000);
        assert_eq!(m.extents, vec![(0, 4385, 8, false), (9, 4483, 12, true)]);
        let deep = "Level Entries         Logical        Physical Length Flags\n 1/ 1   1/ 10      0 -  24280   8487 -  32767  24281 \n 1/ 1   5/ 10 122327 - 122327 131328 - 131328      1 \n";
        assert_eq!(file_map(STAT, deep).unwrap().extents, vec![(0, 8487, 24281, false), (122327, 131328, 1, false)]);
    }

    #[test]
    fn what_is_not_a_plain_extent_mapped_file_is_left_to_the_slow_way() {
        let dump = "Level Entries       Logical      Physical Length Flags\n 0/ 0   1/  1     0 -     7  4385 -  4392      8 \n";
        assert!(file_map(&STAT.replace("0x80000", "0x10080000"), dump).is_none(), "inline data");
        assert!(file_map(&STAT.replace("0x80000", "0x0"), dump).is_none(), "block-mapped");
        assert!(file_map(&STAT.replace("regular", "directory"), dump).is_none());
        assert!(file_map(STAT, &dump.replace("8 \n", "9 \n")).is_none(), "a length that does not add up");
        assert!(file_map(STAT, &format!("{dump}garbage - here\n")).is_none());
        assert!(file_map(STAT, "").is_none(), "no extent listing at all");
        // An empty file has a listing with no extents.
        let empty = STAT.replace("Size: 10000", "Size: 0");
        assert_eq!(file_map(&empty, "Level Entries       Logical      Physical Length Flags\n").unwrap().extents, vec![]);
    }

    #[test]
    fn holes_unwritten_extents_and_clusters_become_zeros_and_reads_in_order() {
        // 1 KiB blocks. The disk: 0-48K in the overlay at 1 MiB, 48K-64K unallocated, then the base.
        let disk = vec![cluster(0, 48 << 10, 0, true, Some(1 << 20)), cluster(48 << 10, 16 << 10, 1, false, None), cluster(64 << 10, 1 << 20, 1, true, Some(5 << 20))];
        // Blocks 0-7 written, 8 a hole, 9-20 unwritten, 21-36 across the overlay's end into the
        // unallocated stretch; the file ends inside that last extent.
        let m = FileMap { size: 30_000, extents: vec![(9, 100, 12, true), (0, 40, 8, false), (21, 44, 16, false)] };
        let p = plan(&m, 1024, &disk, 2).unwrap();
        let want = vec![
            Piece::Read { layer: 0, offset: (1 << 20) + 40 * 1024, len: 8192 },
            Piece::Zero(1024 + 12 * 1024),
            Piece::Read { layer: 0, offset: (1 << 20) + 44 * 1024, len: 4096 },
            Piece::Zero(30_000 - 21 * 1024 - 4096),
        ];
        assert_eq!(p, want);
        // From the base, and a hole at the end of the file.
        let m = FileMap { size: 8192, extents: vec![(0, 64, 1, false)] };
        assert_eq!(plan(&m, 1024, &disk, 2).unwrap(), vec![Piece::Read { layer: 1, offset: 5 << 20, len: 1024 }, Piece::Zero(7168)]);
        // Blocks past the end (preallocated by the writer) are not read.
        let m = FileMap { size: 100, extents: vec![(0, 0, 1, false), (5, 30, 3, false)] };
        assert_eq!(plan(&m, 1024, &disk, 2).unwrap(), vec![Piece::Read { layer: 0, offset: 1 << 20, len: 100 }]);
        // Overlapping extents are not a map to trust.
        let m = FileMap { size: 4096, extents: vec![(0, 0, 2, false), (1, 9, 1, false)] };
        assert!(plan(&m, 1024, &disk, 2).is_none());
    }

    #[test]
    fn a_compressed_cluster_or_a_missing_layer_is_not_planned() {
        let m = FileMap { size: 4096, extents: vec![(0, 0, 1, false)] };
        assert!(plan(&m, 4096, &[cluster(0, 65536, 0, true, None)], 1).is_none(), "data without an offset");
        assert!(plan(&m, 4096, &[cluster(0, 65536, 2, true, Some(0))], 2).is_none(), "depth past the chain");
        assert!(plan(&m, 4096, &[cluster(4096, 65536, 0, true, Some(0))], 1).is_none(), "a gap in the map");
    }

    #[test]
    fn chains_of_plain_files_only() {
        let info = r#"[{"filename": "/c/overlay.qcow2", "format": "qcow2", "format-specific": {"type": "qcow2", "data": {"compat": "1.1"}}}, {"filename": "/i/rootfs.qcow2", "format": "qcow2"}]"#;
        assert_eq!(chain(info).unwrap(), vec!["/c/overlay.qcow2", "/i/rootfs.qcow2"]);
        assert!(chain(&info.replace(r#""compat": "1.1""#, r#""data-file": "/x.raw""#)).is_none());
        assert!(chain(&info.replace(r#""format": "qcow2"}]"#, r#""format": "qcow2", "encrypted": true}]"#)).is_none());
        assert!(chain(&info.replace("/i/rootfs.qcow2", "nbd://x")).is_none());
        assert!(chain(&info.replace(r#""format": "qcow2"}]"#, r#""format": "vmdk"}]"#)).is_none());
        assert!(chain("[]").is_none());
    }

    #[test]
    fn superblock_block_size() {
        let mut sb = vec![0u8; 1024];
        sb[56..58].copy_from_slice(&0xEF53u16.to_le_bytes());
        sb[24..28].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(block_size(&sb), Some(4096));
        sb[56] = 0;
        assert_eq!(block_size(&sb), None);
    }
}
