//! Bring your own image (`--image`): a user's disk imported into the cache once (converted to
//! qcow2, keyed by the file's path, size and mtime) so cells boot it exactly like perfvm's own,
//! through a per-cell overlay. Two forms: a root filesystem with `--kernel`/`--initrd` (direct
//! boot), or a whole bootable disk started by its own bootloader. `inspect` says what an image
//! lacks (`perfvm doctor --image`).

use super::{Image, Manifest, build};
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `--image` and friends, as given.
#[derive(Debug, Clone)]
pub struct Source {
    pub disk: PathBuf,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub cmdline: Option<String>,
}

/// What `qemu-img info` says of a disk.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskInfo {
    pub format: String,
    pub virtual_size: u64,
    pub backing: Option<String>,
}

pub fn disk_info(path: &Path) -> Result<DiskInfo> {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .output()
        .context("cannot run qemu-img (run scripts/setup.sh)")?;
    if !out.status.success() {
        bail!("{}: not a disk image qemu can read: {}", path.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    parse_info(&String::from_utf8_lossy(&out.stdout)).with_context(|| format!("{}: unexpected qemu-img info output", path.display()))
}

fn parse_info(json: &str) -> Result<DiskInfo> {
    let v: serde_json::Value = serde_json::from_str(json)?;
    Ok(DiskInfo {
        format: v["format"].as_str().context("no format")?.to_string(),
        virtual_size: v["virtual-size"].as_u64().context("no virtual-size")?,
        backing: v["backing-filename"].as_str().map(str::to_string),
    })
}

/// Checks that need no VM: the files exist, the disk is a standalone qcow2 or raw image, the
/// kernel comes with its initrd. Returns the disk's facts.
pub fn check(src: &Source) -> Result<DiskInfo> {
    for (flag, p) in [("--image", Some(&src.disk)), ("--kernel", src.kernel.as_ref()), ("--initrd", src.initrd.as_ref())] {
        if let Some(p) = p {
            let m = std::fs::metadata(p).with_context(|| format!("{flag} {}", p.display()))?;
            if !m.is_file() {
                bail!("{flag} {}: not a regular file", p.display());
            }
        }
    }
    if src.kernel.is_some() != src.initrd.is_some() {
        bail!("--kernel and --initrd go together (a root-filesystem image boots that kernel directly)");
    }
    if src.cmdline.is_some() && src.kernel.is_none() {
        bail!("--cmdline is for direct boot with --kernel; a bootable disk has its own");
    }
    if let Some(c) = &src.cmdline
        && c.chars().any(|ch| ch.is_control()) {
            bail!("--cmdline: one line without control characters");
        }
    let info = disk_info(&src.disk)?;
    if info.format != "qcow2" && info.format != "raw" {
        bail!("--image {}: format {} (use qcow2 or raw; `qemu-img convert -O qcow2` converts)", src.disk.display(), info.format);
    }
    if let Some(b) = &info.backing {
        bail!("--image {}: has a backing file ({b}); flatten it first: qemu-img convert -O qcow2 IN OUT", src.disk.display());
    }
    Ok(info)
}

/// The cache id of an import: the files' paths, sizes and mtimes, so an edited image is
/// imported again and an unchanged one reused.
pub fn import_id(src: &Source) -> Result<String> {
    let mut h = Sha256::new();
    for p in [Some(&src.disk), src.kernel.as_ref(), src.initrd.as_ref()].into_iter().flatten() {
        let abs = std::path::absolute(p)?;
        let m = std::fs::metadata(p)?;
        let mtime = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
        h.update(abs.to_string_lossy().as_bytes());
        h.update(m.len().to_le_bytes());
        h.update(mtime.to_le_bytes());
    }
    h.update(src.cmdline.as_deref().unwrap_or("").as_bytes());
    Ok(format!("byo-{}", &hex::encode(h.finalize())[..12]))
}

/// Import `src` into the cache (once) and return the image cells boot.
pub fn import(cache: &Path, src: &Source) -> Result<Image> {
    let info = check(src)?;
    let id = import_id(src)?;
    let what = format!("importing {} as {id}", src.disk.display());
    build::into_cache(cache, &id, false, &what, |tmp, started| {
        let log = tmp.join("build.log");
        let mut convert = Command::new("qemu-img");
        convert.args(["convert", "-f", &info.format, "-O", "qcow2"]).arg(&src.disk).arg(tmp.join("rootfs.qcow2"));
        build::step(&log, "qcow2 (qemu-img convert)", convert)?;
        if let (Some(k), Some(i)) = (&src.kernel, &src.initrd) {
            std::fs::copy(k, tmp.join("vmlinuz")).with_context(|| format!("cannot copy {}", k.display()))?;
            std::fs::copy(i, tmp.join("initrd.img")).with_context(|| format!("cannot copy {}", i.display()))?;
        }
        for f in ["rootfs.qcow2", "vmlinuz", "initrd.img"] {
            use std::os::unix::fs::PermissionsExt;
            let p = tmp.join(f);
            if p.exists() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))?;
            }
        }
        Ok(Manifest {
            id: id.clone(),
            created: chrono::Utc::now(),
            suite: "byo".into(),
            packages: Vec::new(),
            kernel_version: src.kernel.as_ref().and_then(|k| k.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            root_size_gib: info.virtual_size / crate::size::ByteSize::GIB,
            disk_bytes: std::fs::metadata(tmp.join("rootfs.qcow2"))?.len(),
            build_seconds: started.elapsed().as_secs_f64(),
            perfvm_version: env!("CARGO_PKG_VERSION").to_string(),
            source: Some(std::path::absolute(&src.disk)?.display().to_string()),
            cmdline: src.kernel.as_ref().map(|_| src.cmdline.clone().unwrap_or_else(|| super::DEFAULT_CMDLINE.to_string())),
        })
    })
}

/// One finding of `inspect`.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub ok: bool,
    pub what: String,
    pub fix: String,
}

/// What a cell needs inside the image: (description, any of these paths, how to get it).
const NEEDS: &[(&str, &[&str], &str)] = &[
    ("systemd", &["/usr/lib/systemd/systemd", "/lib/systemd/systemd"], "install systemd-sysv"),
    ("cloud-init", &["/usr/bin/cloud-init"], "install cloud-init (perfvm configures the guest through a NoCloud seed)"),
    ("qemu-guest-agent", &["/usr/sbin/qemu-ga", "/usr/bin/qemu-ga"], "install qemu-guest-agent (perfvm samples and verifies through it)"),
    ("sha256sum", &["/usr/bin/sha256sum"], "install coreutils (in-guest verification)"),
    ("dmesg", &["/usr/bin/dmesg", "/bin/dmesg"], "install util-linux (OOM kills are read from the kernel log)"),
];

/// Look inside an image without booting it: find its ext4 root filesystem (the whole disk, or a
/// partition of an MBR/GPT disk) and check for what cells need. Converts to a sparse raw file
/// in `scratch` first (debugfs reads raw ext4 at an offset).
pub fn inspect(src: &Source, scratch: &Path) -> Result<Vec<Finding>> {
    let info = check(src)?;
    let mut out = vec![Finding { ok: true, what: format!("{} is {} ({} virtual)", src.disk.display(), info.format, crate::size::human(info.virtual_size)), fix: String::new() }];
    let raw = scratch.join("inspect.raw");
    let st = Command::new("qemu-img").args(["convert", "-f", &info.format, "-O", "raw"]).arg(&src.disk).arg(&raw).output()?;
    if !st.status.success() {
        bail!("qemu-img convert failed: {}", String::from_utf8_lossy(&st.stderr).trim());
    }
    let head = read_head(&raw, 64 * 1024)?;
    let offsets: Vec<u64> = std::iter::once(0).chain(partition_offsets(&head)).collect();
    let root = offsets.into_iter().find(|off| debugfs_has(&raw, *off, "/etc").unwrap_or(false));
    let Some(off) = root else {
        let _ = std::fs::remove_file(&raw);
        out.push(Finding { ok: false, what: "an ext4 root filesystem (whole disk or an MBR/GPT partition)".into(), fix: "perfvm looks inside ext4 only; other filesystems may still boot, but cannot be checked here".into() });
        return Ok(out);
    };
    out.push(Finding { ok: true, what: if off == 0 { "ext4 root filesystem on the whole disk".into() } else { format!("ext4 root filesystem in a partition at offset {off}") }, fix: String::new() });
    for (what, paths, fix) in NEEDS {
        let found = paths.iter().any(|p| debugfs_has(&raw, off, p).unwrap_or(false));
        out.push(Finding { ok: found, what: (*what).to_string(), fix: (*fix).to_string() });
    }
    let direct = src.kernel.is_some();
    if off == 0 && !direct {
        out.push(Finding { ok: false, what: "a bootloader (a whole-filesystem image has none)".into(), fix: "give --kernel and --initrd to boot it directly".into() });
    }
    if off != 0 && !direct {
        let code = head[..440].iter().any(|b| *b != 0);
        out.push(Finding { ok: code, what: "BIOS boot code in the MBR".into(), fix: "perfvm boots a whole disk with SeaBIOS: it needs a BIOS bootloader (GRUB i386-pc); UEFI-only disks are not supported".into() });
    }
    if off != 0 && direct {
        out.push(Finding { ok: false, what: "direct boot of a partitioned disk".into(), fix: "the kernel's root=/dev/vda expects a whole-disk filesystem: set --cmdline root=/dev/vda1 …, or boot it without --kernel".into() });
    }
    let _ = std::fs::remove_file(&raw);
    Ok(out)
}

fn read_head(path: &Path, n: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(n);
    std::fs::File::open(path)?.take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Byte offsets of the partitions in an MBR or GPT partition table (`head`: the disk's first
/// bytes, 512-byte sectors). Pure.
pub fn partition_offsets(head: &[u8]) -> Vec<u64> {
    let u32_at = |b: &[u8], i: usize| b.get(i..i + 4).map(|s| u32::from_le_bytes(s.try_into().unwrap()));
    let u64_at = |b: &[u8], i: usize| b.get(i..i + 8).map(|s| u64::from_le_bytes(s.try_into().unwrap()));
    if head.len() < 512 || head[510] != 0x55 || head[511] != 0xAA {
        return Vec::new();
    }
    let entries: Vec<(u8, u32)> = (0..4).map(|i| 446 + 16 * i).map(|e| (head[e + 4], u32_at(head, e + 8).unwrap_or(0))).collect();
    if entries.iter().any(|(t, _)| *t == 0xEE) {
        // GPT: the header in LBA 1 says where the entries are.
        let hdr = &head[512.min(head.len())..];
        if !hdr.starts_with(b"EFI PART") {
            return Vec::new();
        }
        let (Some(lba), Some(count), Some(size)) = (u64_at(hdr, 72), u32_at(hdr, 80), u32_at(hdr, 84)) else { return Vec::new() };
        // An entry is 128 bytes or a larger power of two (UEFI): a header saying otherwise is
        // not a GPT this reads, whatever else its numbers say.
        if size < 128 || !size.is_power_of_two() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for i in 0..count.min(128) as u64 {
            let Some(at) = lba.checked_mul(512).and_then(|b| b.checked_add(i * size as u64)).and_then(|a| usize::try_from(a).ok()) else { break };
            let Some(e) = at.checked_add(size as usize).and_then(|end| head.get(at..end)) else { break };
            if e[..16].iter().any(|b| *b != 0)
                && let Some(first) = u64_at(e, 32).and_then(|f| f.checked_mul(512))
            {
                out.push(first);
            }
        }
        return out;
    }
    entries.into_iter().filter(|(t, start)| *t != 0 && *start != 0).map(|(_, s)| s as u64 * 512).collect()
}

fn debugfs_has(raw: &Path, offset: u64, path: &str) -> Result<bool> {
    let dev = format!("{}?offset={offset}", raw.display());
    let out = Command::new("debugfs").args(["-R", &format!("stat {path}"), &dev]).output().context("cannot run debugfs (e2fsprogs)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(out.status.success() && text.contains("Inode:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_img_info_is_parsed() {
        let i = parse_info(r#"{"virtual-size": 25769803776, "filename": "x", "format": "qcow2", "backing-filename": "/b.qcow2"}"#).unwrap();
        assert_eq!(i, DiskInfo { format: "qcow2".into(), virtual_size: 24 << 30, backing: Some("/b.qcow2".into()) });
        assert!(parse_info("{}").is_err());
    }

    proptest::proptest! {
        /// A crafted partition table (any bytes, with the MBR signature and a GPT header) gives
        /// offsets or none, never a panic.
        #[test]
        fn any_partition_table_parses_without_panicking(mut head in proptest::collection::vec(proptest::num::u8::ANY, 1024..4096), lba in proptest::num::u64::ANY, count in proptest::num::u32::ANY, size in proptest::num::u32::ANY) {
            head[510] = 0x55;
            head[511] = 0xAA;
            head[446 + 4] = 0xEE;
            head[512..520].copy_from_slice(b"EFI PART");
            head[512 + 72..512 + 80].copy_from_slice(&lba.to_le_bytes());
            head[512 + 80..512 + 84].copy_from_slice(&count.to_le_bytes());
            head[512 + 84..512 + 88].copy_from_slice(&size.to_le_bytes());
            let _ = partition_offsets(&head);
        }
    }

    #[test]
    fn a_gpt_with_tiny_entries_is_not_read() {
        let mut gpt = vec![0u8; 4096];
        gpt[510] = 0x55;
        gpt[511] = 0xAA;
        gpt[446 + 4] = 0xEE;
        gpt[512..520].copy_from_slice(b"EFI PART");
        gpt[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        gpt[512 + 80..512 + 84].copy_from_slice(&4u32.to_le_bytes());
        gpt[512 + 84..512 + 88].copy_from_slice(&8u32.to_le_bytes());
        gpt[1024] = 1;
        assert!(partition_offsets(&gpt).is_empty());
    }

    #[test]
    fn partition_tables_give_offsets() {
        let mut mbr = vec![0u8; 1024];
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        mbr[446 + 4] = 0x83;
        mbr[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        assert_eq!(partition_offsets(&mbr), vec![2048 * 512]);
        // GPT: protective MBR, header at LBA 1, entries at LBA 2.
        let mut gpt = vec![0u8; 4096];
        gpt[510] = 0x55;
        gpt[511] = 0xAA;
        gpt[446 + 4] = 0xEE;
        gpt[512..520].copy_from_slice(b"EFI PART");
        gpt[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        gpt[512 + 80..512 + 84].copy_from_slice(&4u32.to_le_bytes());
        gpt[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        let e = 1024 + 128; // second entry
        gpt[e] = 0xAF;
        gpt[e + 32..e + 40].copy_from_slice(&262144u64.to_le_bytes());
        assert_eq!(partition_offsets(&gpt), vec![262144 * 512]);
        assert!(partition_offsets(&[0u8; 512]).is_empty());
    }

    #[test]
    fn bad_sources_are_refused_before_anything_runs() {
        let d = tempfile::tempdir().unwrap();
        let disk = d.path().join("d.qcow2");
        std::fs::write(&disk, b"x").unwrap();
        let src = |k: Option<&str>, i: Option<&str>| Source { disk: disk.clone(), kernel: k.map(|p| d.path().join(p)), initrd: i.map(|p| d.path().join(p)), cmdline: None };
        std::fs::write(d.path().join("k"), b"k").unwrap();
        assert!(check(&src(Some("k"), None)).unwrap_err().to_string().contains("go together"));
        assert!(check(&src(Some("missing"), Some("k"))).unwrap_err().to_string().contains("--kernel"));
        let none = Source { disk: d.path().join("nope.qcow2"), kernel: None, initrd: None, cmdline: None };
        assert!(check(&none).unwrap_err().to_string().contains("--image"));
        let cmd = Source { cmdline: Some("quiet".into()), ..src(None, None) };
        assert!(check(&cmd).unwrap_err().to_string().contains("--cmdline"));
    }
}
