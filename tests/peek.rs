//! Reading a file out of a qcow2 disk on the host (`image::peek`), without a guest: an ext4
//! filesystem made here, under a qcow2 overlay like a cell's. Needs qemu-storage-daemon, debugfs
//! and FUSE as root, as a cell's host verification does.

use perfvm::image::peek::{self, Export, PeekError};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A cell-like directory: `overlay.qcow2` over a qcow2 holding an ext4 filesystem with
/// /srv/files/f.bin (3 MiB + 5 bytes of a pattern). Returns that file's sha256.
fn disk(dir: &Path) -> String {
    let content: Vec<u8> = (0..(3 << 20) + 5).map(|i: u32| (i * 7 % 251) as u8).collect();
    std::fs::create_dir_all(dir.join("root/srv/files")).unwrap();
    std::fs::write(dir.join("root/srv/files/f.bin"), &content).unwrap();
    let raw = dir.join("fs.raw");
    run(Command::new("mkfs.ext4").args(["-q", "-F", "-d"]).arg(dir.join("root")).arg(&raw).arg("32M"));
    run(Command::new("qemu-img").args(["convert", "-q", "-O", "qcow2"]).arg(&raw).arg(dir.join("base.qcow2")));
    run(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"]).arg(dir.join("base.qcow2")).arg(dir.join("overlay.qcow2")));
    hex::encode(Sha256::digest(&content))
}

fn mounted(p: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mounts").unwrap().contains(&p.display().to_string())
}

#[test]
#[ignore = "needs qemu-storage-daemon, debugfs and FUSE as root: run with --include-ignored (CI does)"]
fn a_file_is_read_from_a_qcow2_chain_and_the_export_goes_with_it() {
    assert!(peek::unavailable().is_none(), "{:?}", peek::unavailable());
    let tmp = tempfile::tempdir().unwrap();
    let want = disk(tmp.path());
    let file = tmp.path().join(peek::EXPORT);
    let e = Export::start(&tmp.path().join("overlay.qcow2"), &file, Duration::from_secs(30)).unwrap();
    assert!(mounted(&file));
    assert_eq!(e.sha256("/srv/files/f.bin").unwrap(), (want, (3 << 20) + 5));
    assert!(matches!(e.sha256("/srv/files/nope.bin"), Err(PeekError::NotFound(_))));
    assert!(matches!(e.sha256("/a\"b"), Err(PeekError::Read(_))), "a path debugfs cannot quote");
    drop(e);
    assert!(!mounted(&file) && !file.exists(), "unmounted and removed");

    let e = Export::start(Path::new("/nonexistent/overlay.qcow2"), &file, Duration::from_secs(30));
    assert!(matches!(e, Err(PeekError::Export(ref m)) if m.contains("/nonexistent/overlay.qcow2")), "{:?}", e.err());
}

/// perfvm killed while it read a cell's disk: the daemon dies with it (its parent-death signal)
/// and leaves the export mounted, a dead FUSE mount no one can remove. Removing the cell's
/// directory (a resumed run, `perfvm cleanup`) detaches it first.
#[test]
#[ignore = "needs qemu-storage-daemon, debugfs and FUSE as root: run with --include-ignored (CI does)"]
fn a_dead_export_left_mounted_does_not_block_removing_the_cell() {
    let tmp = tempfile::tempdir().unwrap();
    let cell = tmp.path().join("perfvm-256-1M-r1-a1-dead");
    std::fs::create_dir(&cell).unwrap();
    disk(&cell);
    let file = cell.join(peek::EXPORT);
    let e = Export::start(&cell.join("overlay.qcow2"), &file, Duration::from_secs(30)).unwrap();
    std::mem::forget(e);
    run(Command::new("pkill").args(["-KILL", "-f"]).arg(format!("mountpoint={}", file.display())));
    std::thread::sleep(Duration::from_millis(300));
    assert!(mounted(&file), "the dead daemon's mount stays");
    assert!(std::fs::remove_dir_all(&cell).is_err(), "and blocks a plain removal");
    peek::remove_cell_dir(&cell).unwrap();
    assert!(!cell.exists() && !mounted(&file));
}
