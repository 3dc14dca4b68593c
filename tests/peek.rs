//! Reading a file out of a qcow2 disk on the host (`image::peek`), without a guest: an ext4
//! filesystem made here, under a qcow2 overlay like a cell's. Needs qemu-storage-daemon, debugfs
//! and FUSE as root, as a cell's host verification does.

use perfvm::image::peek::{self, Export, PeekError, Way};
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
    let h = e.sha256("/srv/files/f.bin").unwrap();
    assert_eq!((h.sha256.as_str(), h.len, h.way), (want.as_str(), (3 << 20) + 5, Way::Direct));
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

fn pattern(n: usize, k: u32) -> Vec<u8> {
    (0..n as u32).map(|i| (i.wrapping_mul(k) % 253) as u8).collect()
}

/// The direct read (extents joined with the qcow2 chain's clusters) against debugfs `cat` and
/// the bytes as written: a file in the base, one the overlay changed, one the overlay added
/// across its clusters, an unwritten (fallocated) extent, a file with a hole, an empty file.
#[test]
#[ignore = "needs qemu-storage-daemon, debugfs and FUSE as root: run with --include-ignored (CI does)"]
fn the_direct_read_agrees_with_debugfs_on_every_kind_of_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (base_f, over_g) = (pattern((1 << 20) + 3, 7), pattern((5 << 20) + 11, 13));
    std::fs::create_dir_all(d.join("root/s")).unwrap();
    std::fs::write(d.join("root/s/base.bin"), &base_f).unwrap();
    std::fs::write(d.join("root/s/changed.bin"), pattern(300_000, 3)).unwrap();
    std::fs::write(d.join("root/s/empty.bin"), b"").unwrap();
    let raw = d.join("fs.raw");
    run(Command::new("mkfs.ext4").args(["-q", "-F", "-b", "4096", "-d"]).arg(d.join("root")).arg(&raw).arg("64M"));
    run(Command::new("qemu-img").args(["convert", "-q", "-O", "qcow2"]).arg(&raw).arg(d.join("base.qcow2")));
    // What the guest then did, into the overlay only: a new file, a changed one, an fallocated
    // one given a size, and one with a hole (written at 1 MiB into an empty file).
    std::fs::write(d.join("g.bin"), &over_g).unwrap();
    let changed = pattern(300_000, 5);
    std::fs::write(d.join("changed.bin"), &changed).unwrap();
    std::fs::write(d.join("tail.bin"), pattern(5000, 11)).unwrap();
    let w = |cmd: &str| run(Command::new("debugfs").args(["-w", "-R", cmd]).arg(&raw));
    w(&format!("write {} /s/g.bin", d.join("g.bin").display()));
    // The fallocated file takes the old changed.bin's freed blocks, which still hold its bytes:
    // read as data, they would not be the zeros the file reads as.
    w("rm /s/changed.bin");
    w("write /dev/null /s/unwritten.bin");
    w("fallocate /s/unwritten.bin 0 9");
    w("sif /s/unwritten.bin size 40000");
    w(&format!("write {} /s/changed.bin", d.join("changed.bin").display()));
    let holed = d.join("holed.bin");
    {
        let f = std::fs::File::create(&holed).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &pattern(5000, 11), 1 << 20).unwrap();
    }
    w(&format!("write {} /s/holed.bin", holed.display()));
    run(Command::new("qemu-img").args(["convert", "-q", "-O", "qcow2", "-F", "qcow2", "-B"]).arg(d.join("base.qcow2")).arg(&raw).arg(d.join("overlay.qcow2")));

    let file = d.join(peek::EXPORT);
    let e = Export::start(&d.join("overlay.qcow2"), &file, Duration::from_secs(30)).unwrap();
    let sha = |b: &[u8]| hex::encode(Sha256::digest(b));
    let mut holed_bytes = vec![0u8; 1 << 20];
    holed_bytes.extend(pattern(5000, 11));
    let cases: Vec<(&str, String)> = vec![
        ("/s/base.bin", sha(&base_f)),
        ("/s/changed.bin", sha(&changed)),
        ("/s/g.bin", sha(&over_g)),
        ("/s/unwritten.bin", sha(&[0u8; 40000])),
        ("/s/holed.bin", sha(&holed_bytes)),
        ("/s/empty.bin", sha(b"")),
    ];
    for (path, want) in cases {
        let direct = e.sha256(path).unwrap();
        assert_eq!(direct.way, Way::Direct, "{path} was not read directly");
        assert_eq!(direct.sha256, want, "{path} read directly");
        let slow = e.sha256_debugfs(path).unwrap();
        assert_eq!((slow.sha256, slow.len), (want, direct.len), "{path} through debugfs");
    }
    assert!(matches!(e.sha256("/s/nope.bin"), Err(PeekError::NotFound(_))));
}
