//! Reading files out of a running guest's disk on the host, at native speed. With the guest's
//! filesystems frozen (written out, the ext4 journal checkpointed), qemu-storage-daemon exports
//! the cell's overlay and the image under it as one raw file over FUSE (read-only, without
//! qemu's lock, which the running guest holds), debugfs reads the ext4 filesystem in it without
//! mounting it, and the bytes are hashed here. Nothing the target says is trusted, and the
//! guest's emulated CPU does none of the work. Where debugfs and `qemu-img map` together place
//! every byte of a file in the chain's own files (`layout`), the bytes are read from those
//! directly, without the export or debugfs in the way (2.1x faster at 1G, 3.0x at 5G, measured
//! in docs/performance.md); else through them.

use super::layout::{self, Cluster, Piece};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum PeekError {
    #[error("{0} is not installed")]
    Missing(&'static str),
    #[error("no FUSE here (/dev/fuse is missing: modprobe fuse)")]
    NoFuse,
    #[error("qemu-storage-daemon: {0}")]
    Export(String),
    #[error("debugfs: {0}")]
    Read(String),
    #[error("no such file in the guest's filesystem: {0}")]
    NotFound(String),
}

/// What the host needs to read a guest's disk: None when it has it, else what is missing.
pub fn unavailable() -> Option<PeekError> {
    if !crate::proc::on_path("qemu-storage-daemon") {
        return Some(PeekError::Missing("qemu-storage-daemon (qemu-system-common)"));
    }
    if !crate::proc::on_path("debugfs") {
        return Some(PeekError::Missing("debugfs (e2fsprogs)"));
    }
    if !Path::new("/dev/fuse").exists() {
        return Some(PeekError::NoFuse);
    }
    None
}

/// A cell's disk as the host can read it: its overlay, and where to export it.
pub struct Disk {
    pub overlay: PathBuf,
    pub export: PathBuf,
}

/// A disk exported as a raw file at `file` while this lives. Dropping it unmounts the file and
/// ends the daemon.
pub struct Export {
    file: PathBuf,
    daemon: Child,
    disk: PathBuf,
    /// The chain's files and clusters and the filesystem's block size, found once per export
    /// (None: not plain enough to read directly).
    layout: OnceLock<Option<Layout>>,
}

/// How a file's bytes were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Straight from the chain's files, placed by its extents and the disk's clusters.
    Direct,
    /// debugfs `cat` through the export.
    Debugfs,
}

/// A file's sha256 and length as read on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashed {
    pub sha256: String,
    pub len: u64,
    pub way: Way,
}

impl Export {
    /// Export `disk` (qcow2, with its backing chain) read-only at `file`, which is created.
    /// Ready when the file has the disk's size (it is empty until the daemon mounts it).
    pub fn start(disk: &Path, file: &Path, within: Duration) -> Result<Export, PeekError> {
        unmount(file);
        std::fs::write(file, b"").map_err(|e| PeekError::Export(format!("{}: {e}", file.display())))?;
        let err = |e: std::io::Error| PeekError::Export(e.to_string());
        let mut cmd = Command::new("qemu-storage-daemon");
        cmd.args([
            "--blockdev",
            &format!("driver=file,node-name=file,filename={},read-only=on,locking=off", opt(disk)),
            "--blockdev",
            "driver=qcow2,node-name=disk,file=file,read-only=on",
            "--export",
            &format!("type=fuse,id=export,node-name=disk,mountpoint={},writable=off", opt(file)),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        // Gone with the thread that started it, should perfvm die mid-read; a mount left by
        // then is detached wherever a cell's directory is removed (`remove_cell_dir`).
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from));
        }
        let mut daemon = cmd.spawn().map_err(err)?;
        let deadline = Instant::now() + within;
        loop {
            if std::fs::metadata(file).map(|m| m.len() > 0).unwrap_or(false) {
                return Ok(Export { file: file.to_path_buf(), daemon, disk: disk.to_path_buf(), layout: OnceLock::new() });
            }
            if let Some(status) = daemon.try_wait().map_err(err)? {
                let mut text = String::new();
                let _ = daemon.stderr.take().map(|mut s| s.read_to_string(&mut text));
                return Err(PeekError::Export(format!("exited ({status}): {}", text.trim())));
            }
            if Instant::now() >= deadline {
                let _ = daemon.kill();
                let _ = daemon.wait();
                unmount(file);
                return Err(PeekError::Export(format!("no export within {} s", within.as_secs())));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The sha256 and length of `path` in the ext2/3/4 filesystem that fills the disk: read
    /// directly where every byte can be placed, else with debugfs.
    pub fn sha256(&self, path: &str) -> Result<Hashed, PeekError> {
        quotable(path)?;
        match self.direct(path)? {
            Some(h) => Ok(h),
            None => self.sha256_debugfs(path),
        }
    }

    /// The file's bytes in the chain's files, hashed in order; Ok(None) where they cannot all be
    /// placed (or a read failed): the caller goes the slow way.
    fn direct(&self, path: &str) -> Result<Option<Hashed>, PeekError> {
        let stat = self.debugfs(&format!("stat \"{path}\""))?;
        let dump = self.debugfs(&format!("dump_extents -l \"{path}\""))?;
        let slow = |why: &str| {
            tracing::debug!("{path}: read with debugfs: {why}");
            Ok(None)
        };
        let Some(file) = layout::file_map(&stat, &dump) else { return slow("not a plain extent-mapped file") };
        let Some(l) = self.layout.get_or_init(|| chain_layout(&self.disk, &self.file)) else { return slow("the disk's chain is not plain qcow2/raw, or no ext2/3/4 superblock") };
        let Some(plan) = layout::plan(&file, l.block, &l.clusters, l.files.len()) else { return slow("some of its bytes have no plain place") };
        match read_pieces(&l.files, &plan) {
            Ok(sha256) => Ok(Some(Hashed { sha256, len: file.size, way: Way::Direct })),
            Err(e) => slow(&e.to_string()),
        }
    }

    /// `debugfs -R cmd` on the export: what it printed, or what it complained of.
    fn debugfs(&self, cmd: &str) -> Result<String, PeekError> {
        let out = Command::new("debugfs").args(["-R", cmd, &self.file.display().to_string()]).stdin(Stdio::null()).output().map_err(|e| PeekError::Read(e.to_string()))?;
        outcome(&String::from_utf8_lossy(&out.stderr), out.status, cmd.split('"').nth(1).unwrap_or(cmd))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The file as debugfs `cat` writes it out of the export, hashed as it comes.
    pub fn sha256_debugfs(&self, path: &str) -> Result<Hashed, PeekError> {
        quotable(path)?;
        let mut child = Command::new("debugfs")
            .args(["-R", &format!("cat \"{path}\""), &self.file.display().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| PeekError::Read(e.to_string()))?;
        let mut out = child.stdout.take().expect("piped");
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        loop {
            let n = out.read(&mut buf).map_err(|e| PeekError::Read(e.to_string()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            len += n as u64;
        }
        let mut stderr = String::new();
        let _ = child.stderr.take().map(|mut s| s.read_to_string(&mut stderr));
        let status = child.wait().map_err(|e| PeekError::Read(e.to_string()))?;
        outcome(&stderr, status, path)?;
        Ok(Hashed { sha256: hex::encode(hasher.finalize()), len, way: Way::Debugfs })
    }
}

/// How a debugfs command on `path` went. It exits 0 when its command failed: what it printed is
/// the only sign.
fn outcome(stderr: &str, status: std::process::ExitStatus, path: &str) -> Result<(), PeekError> {
    match complaint(stderr) {
        Some(c) if c.contains("not found") => Err(PeekError::NotFound(path.to_string())),
        Some(c) => Err(PeekError::Read(c)),
        None if !status.success() => Err(PeekError::Read(format!("exited {status}"))),
        None => Ok(()),
    }
}

fn quotable(path: &str) -> Result<(), PeekError> {
    if path.contains('"') || path.contains('\n') {
        return Err(PeekError::Read(format!("a path debugfs cannot quote: {path:?}")));
    }
    Ok(())
}

/// Where a disk's bytes are: its chain's files (overlay first), their clusters, and the block size
/// of the filesystem that fills it.
struct Layout {
    files: Vec<PathBuf>,
    clusters: Vec<Cluster>,
    block: u64,
}

/// The disk's layout, from qemu-img (`-U`: the running guest holds the lock; its filesystems are
/// frozen, so nothing moves under the read) and the superblock as the export shows it.
fn chain_layout(disk: &Path, export: &Path) -> Option<Layout> {
    let mut sb = [0u8; 2048];
    std::fs::File::open(export).and_then(|f| f.read_exact_at(&mut sb, 0)).ok()?;
    let block = layout::block_size(&sb[1024..])?;
    let ask = |args: &[&str]| {
        let out = Command::new("qemu-img").args(args).arg(disk).stdin(Stdio::null()).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let files = layout::chain(&ask(&["info", "-U", "--backing-chain", "--output=json"])?)?;
    let clusters = layout::clusters(&ask(&["map", "-U", "--output=json"])?)?;
    // qemu-img names a backing file relative to where it was asked from: only absolute ones.
    let files: Vec<PathBuf> = files.into_iter().map(PathBuf::from).collect();
    files.iter().all(|f| f.is_absolute()).then_some(Layout { files, clusters, block })
}

/// Hash the pieces in order, reading in large blocks from the page cache.
fn read_pieces(files: &[PathBuf], plan: &[Piece]) -> std::io::Result<String> {
    let open: Vec<std::fs::File> = files.iter().map(std::fs::File::open).collect::<Result<_, _>>()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 4 << 20];
    for piece in plan {
        let (layer, mut offset, mut left) = match *piece {
            Piece::Zero(n) => (None, 0, n),
            Piece::Read { layer, offset, len } => (Some(layer), offset, len),
        };
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            match layer {
                Some(l) => open[l].read_exact_at(&mut buf[..n], offset)?,
                None => buf[..n].fill(0),
            }
            hasher.update(&buf[..n]);
            offset += n as u64;
            left -= n as u64;
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

impl Drop for Export {
    fn drop(&mut self) {
        unmount(&self.file);
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Detach a FUSE export mounted at `file`, if any: the daemon's own exit leaves the mount behind
/// ("Transport endpoint is not connected"), and a mountpoint cannot be removed.
pub fn unmount(file: &Path) {
    let _ = nix::mount::umount2(file, nix::mount::MntFlags::MNT_DETACH);
}

/// The export's name in a cell's work directory.
pub const EXPORT: &str = "disk-export.raw";

/// Remove a cell's work directory, detaching an export that a killed perfvm left mounted in it
/// first (a mountpoint cannot be removed).
pub fn remove_cell_dir(dir: &Path) -> std::io::Result<()> {
    unmount(&dir.join(EXPORT));
    std::fs::remove_dir_all(dir)
}

/// A path in a qemu `-blockdev` option: commas are doubled.
fn opt(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

/// What debugfs said besides its banner (`debugfs 1.47.0 (5-Feb-2023)`), if anything.
fn complaint(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("debugfs ")).collect();
    (!lines.is_empty()).then(|| lines.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_debugfs_complaints_count() {
        assert_eq!(complaint("debugfs 1.47.0 (5-Feb-2023)\n"), None);
        assert_eq!(complaint(""), None);
        let c = complaint("debugfs 1.47.0 (5-Feb-2023)\n/x/y.bin: File not found by ext2_lookup \n").unwrap();
        assert!(c.contains("not found"), "{c}");
        assert_eq!(complaint("debugfs 1.47.0 (5-Feb-2023)\ndebugfs: Bad magic number in super-block while trying to open x\n").as_deref(), Some("debugfs: Bad magic number in super-block while trying to open x"));
    }

    #[test]
    fn commas_in_paths_are_doubled_for_qemu() {
        assert_eq!(opt(Path::new("/a,b/c.qcow2")), "/a,,b/c.qcow2");
    }
}
