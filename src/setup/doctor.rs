//! `perfvm doctor`: every precondition of a cell, each with what to do when it fails. The
//! checks are here; the CLI prints them.

use crate::accel::{AccelChoice, KvmProbe, resolve};
use crate::image::recipe;
use crate::proc::on_path;
use crate::size::human;
use anyhow::Result;
use std::path::Path;

pub struct Check {
    pub ok: bool,
    pub what: String,
    /// What to do about it, when it failed.
    pub fix: Option<String>,
}

fn check(ok: bool, what: impl Into<String>, fix: impl Into<String>) -> Check {
    Check { ok, what: what.into(), fix: (!ok).then(|| fix.into()) }
}

fn free_bytes(path: &std::path::Path) -> Option<u64> {
    // The nearest existing ancestor: the directory may not exist yet.
    let mut p = std::path::absolute(path).ok()?;
    while !p.exists() {
        p = p.parent()?.to_path_buf();
    }
    let s = nix::sys::statvfs::statvfs(&p).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// libvirt's two daemons perfvm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    Virtlogd,
    Libvirtd,
}

impl Daemon {
    fn name(self) -> &'static str {
        match self {
            Daemon::Virtlogd => "virtlogd",
            Daemon::Libvirtd => "libvirtd",
        }
    }
    /// Its socket, where systemd listens for it.
    fn socket(self) -> &'static str {
        match self {
            Daemon::Virtlogd => "/run/libvirt/virtlogd-sock",
            Daemon::Libvirtd => "/run/libvirt/libvirt-sock",
        }
    }
}

/// Whether this host runs systemd as PID 1 (sd_booted's test).
pub fn systemd_booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn socket_listens(path: &str) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// The check of a daemon. Under systemd the daemons are socket-activated (libvirtd exits when
/// idle, which is fine): what must be up is the socket, and the fix is its unit, never a second
/// daemon started by hand beside systemd's. Without systemd, the daemon itself. Pure.
pub fn daemon_check(d: Daemon, systemd: bool, up: bool) -> Check {
    let n = d.name();
    if systemd {
        check(up, format!("{n} socket {} (systemd, socket-activated)", d.socket()), format!("systemctl enable --now {n}.socket (or scripts/setup.sh)"))
    } else {
        check(up, format!("{n} running (no systemd: started by hand)"), format!("start it: {n} -d (or scripts/setup.sh)"))
    }
}

/// Every check, in order. `image`: a `--image` to look into (without booting it).
pub fn checks(uri: &str, results_dir: &Path, image: Option<&crate::image::import::Source>) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    let setup = "run scripts/setup.sh as root";
    for tool in ["mmdebstrap", "mkfs.ext4", "qemu-img", "genisoimage", "qemu-system-x86_64"] {
        checks.push(check(on_path(tool) || std::path::Path::new("/usr/sbin").join(tool).is_file(), format!("{tool} installed"), setup));
    }
    // Not a failure: without these, cells hash their stored files in the guest (slower).
    checks.push(Check {
        ok: true,
        what: match crate::image::peek::unavailable() {
            None => "stored files verified on the host (qemu-storage-daemon, debugfs, FUSE)".to_string(),
            Some(e) => format!("stored files verified in the guest, slower: {e}"),
        },
        fix: None,
    });
    let systemd = systemd_booted();
    for daemon in [Daemon::Virtlogd, Daemon::Libvirtd] {
        let up = if systemd { socket_listens(daemon.socket()) } else { crate::proc::running(daemon.name()) };
        checks.push(daemon_check(daemon, systemd, up));
    }
    let conn = crate::hypervisor::conn::open(uri);
    match &conn {
        Ok(c) => {
            let (lib, hyp) = crate::hypervisor::conn::versions(c);
            checks.push(check(true, format!("libvirt reachable at {} (libvirt {}, qemu {})", uri, lib.unwrap_or_default(), hyp.unwrap_or_default()), ""));
        }
        Err(e) => checks.push(check(false, format!("libvirt reachable at {}", uri), e.to_string())),
    }
    let probe = KvmProbe::read();
    let accel = resolve(AccelChoice::Auto, &probe).unwrap_or(crate::accel::Accel::Tcg);
    match probe.kvm_unusable_reason() {
        None => checks.push(check(true, format!("acceleration: kvm ({})", probe.vendor_module.unwrap_or("?")), "")),
        Some(why) => checks.push(Check {
            ok: true,
            what: format!("acceleration: tcg (software emulation, slower than KVM); KVM unusable: {why}"),
            fix: None,
        }),
    }
    let cache = crate::paths::cache_dir();
    match recipe::load(&crate::paths::recipe_dir()) {
        Ok(r) => {
            let img = crate::image::image_for(&cache, &r.id);
            checks.push(check(true, format!("image recipe {} (id {})", r.dir.display(), r.id), ""));
            checks.push(check(img.is_complete(), format!("image {} built", r.id), "perfvm image build (≈1–2 min; perfvm run also builds it on first use)"));
        }
        Err(e) => checks.push(check(false, "image recipe", e.to_string())),
    }
    let target = crate::paths::target_binary();
    checks.push(check(target.is_file(), format!("reference target {}", target.display()), "cargo build --release"));
    for (what, path, need) in [
        ("image cache", cache.clone(), 2u64 << 30),
        ("results dir", results_dir.to_path_buf(), 100u64 << 20),
    ] {
        match free_bytes(&path) {
            Some(b) => checks.push(check(b >= need, format!("{what} {}: {} free", path.display(), human(b)), format!("free space on {}", path.display()))),
            None => checks.push(check(false, format!("{what} {}", path.display()), "cannot stat the filesystem")),
        }
    }
    checks.push(check(crate::rundir::check_writable(results_dir).is_ok(), format!("results dir {} writable", results_dir.display()), "choose another --results-dir or fix permissions"));
    checks.push(check(crate::proc::free_loopback_port().is_ok(), "a free port on 127.0.0.1", "no loopback port could be bound"));
    if let Some((total, avail)) = crate::proc::host_memory() {
        let overhead = super::check::qemu_overhead_mib(accel);
        checks.push(check(
            avail / (1 << 20) > overhead + super::check::MIN_RAM_MIB,
            format!("host memory: {} total, {} available; a cell costs its RAM + ~{overhead} MiB under {accel}", human(total), human(avail)),
            "free memory: not even the smallest cell fits",
        ));
    }
    if let Ok(c) = &conn {
        match (crate::hypervisor::conn::perfvm_domains(c), crate::hypervisor::orphans::orphaned_domains(c)) {
            (Ok(all), Ok(orphans)) => {
                let kept = all.iter().filter(|d| d.owner.as_ref().is_some_and(|o| o.keep)).count();
                let names: Vec<String> = orphans.iter().map(|d| d.name.clone()).collect();
                checks.push(check(
                    orphans.is_empty(),
                    format!(
                        "leftover domains: {} orphaned, {kept} kept with --keep-vm, {} owned by running perfvm processes",
                        orphans.len(),
                        all.len() - orphans.len() - kept
                    ),
                    format!("perfvm cleanup (removes {})", names.join(", ")),
                ));
            }
            (Err(e), _) | (_, Err(e)) => checks.push(check(false, "list domains", e.to_string())),
        }
        match crate::hypervisor::orphans::orphaned_work_dirs(c) {
            Ok(dirs) => checks.push(check(
                dirs.is_empty(),
                format!("leftover cell files in {}: {}", crate::paths::cells_dir(&cache).display(), dirs.len()),
                format!(
                    "perfvm cleanup (removes {})",
                    dirs.iter().map(|d| d.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect::<Vec<_>>().join(", ")
                ),
            )),
            Err(e) => checks.push(check(false, "list cell files", e.to_string())),
        }
        match crate::hypervisor::orphans::orphaned_volumes(c) {
            Ok(vols) => checks.push(check(vols.is_empty(), format!("leftover cell volumes in the {} pool: {}", crate::hypervisor::pool::POOL_NAME, vols.len()), format!("perfvm cleanup --connect {uri} (removes {})", vols.join(", ")))),
            Err(e) => checks.push(check(false, "list cell volumes", e.to_string())),
        }
    }
    if let Some(src) = image {
        // A sparse raw copy to look into; beside the image cache, which has room for images.
        let scratch = crate::paths::cache_dir().join(format!(".inspect-{}", std::process::id()));
        std::fs::create_dir_all(&scratch)?;
        let found = crate::image::import::inspect(src, &scratch);
        let _ = std::fs::remove_dir_all(&scratch);
        match found {
            Ok(found) => checks.extend(found.into_iter().map(|f| check(f.ok, format!("--image: {}", f.what), f.fix))),
            Err(e) => checks.push(check(false, "--image", format!("{e:#}"))),
        }
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_systemd_the_socket_is_checked_and_its_unit_is_the_fix() {
        let c = daemon_check(Daemon::Libvirtd, true, false);
        assert!(!c.ok && c.what.contains("/run/libvirt/libvirt-sock"), "{}", c.what);
        assert_eq!(c.fix.as_deref(), Some("systemctl enable --now libvirtd.socket (or scripts/setup.sh)"));
        assert!(!c.fix.unwrap().contains("libvirtd -d"), "never a second daemon beside systemd's");
        assert!(daemon_check(Daemon::Virtlogd, true, true).ok);
        let c = daemon_check(Daemon::Virtlogd, false, false);
        assert_eq!(c.fix.as_deref(), Some("start it: virtlogd -d (or scripts/setup.sh)"));
        assert!(daemon_check(Daemon::Libvirtd, false, true).what.contains("no systemd"));
    }
}
