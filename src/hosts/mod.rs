//! Several libvirt hosts. `spec` says which hosts and how each is reached (pure); this file makes
//! a remote host ready for cells (its pool and the image's volumes, uploaded once and keyed by
//! image id) and holds a remote cell's files; `tunnel` reaches a remote guest's port over ssh.
//! A local host needs none of it: its files are passed by path, as with one host.

pub mod spec;
pub mod tunnel;

use crate::hypervisor::VirtError;
use crate::hypervisor::pool;
use crate::image::{Boot, Image};
use spec::SshTarget;
use std::path::Path;
use virt::connect::Connect;
use virt::storage_pool::StoragePool;

/// A libvirt host ready for cells: this machine, or another one reached over ssh. Every
/// difference between the two is a method here (where a cell's files go, how its guest's port
/// is reached, what can be watched), so the pipeline never asks which one it has.
pub struct Host {
    pub name: String,
    pub uri: String,
    pub conn: Connect,
    remote: Option<std::sync::Arc<Remote>>,
    /// What the host is, read once (CPU, kernel, …), for every result.
    facts: crate::results::model::HostFacts,
}

/// Where a cell's disk, seed and console log are for the host's qemu, and how its forwarded
/// port is reached from here. Dropping it removes a remote host's volumes and ends the tunnel;
/// a local cell's files live in its work directory.
pub enum Placed {
    Local { work: std::path::PathBuf, port: u16 },
    Remote { files: RemoteCell, tunnel: tunnel::Tunnel },
}

/// The paths a domain's XML names, as the host sees them.
pub struct DomainFiles {
    pub boot: Boot,
    pub disk: std::path::PathBuf,
    pub seed: std::path::PathBuf,
    pub console: std::path::PathBuf,
}

impl Host {
    pub fn local(name: String, uri: String, conn: Connect) -> Host {
        Host { name, uri, conn, remote: None, facts: crate::hostfacts::local() }
    }

    pub fn remote(name: String, uri: String, conn: Connect, remote: Remote) -> Host {
        let facts = crate::hostfacts::remote(&conn);
        Host { name, uri, conn, remote: Some(std::sync::Arc::new(remote)), facts }
    }

    /// How perfvm reaches a guest here, as results record it.
    pub fn access(&self) -> &'static str {
        if self.remote.is_some() { "ssh-tunnel" } else { "local" }
    }

    /// The host's facts, with this machine's load now (a remote host's load is not known).
    pub fn facts_now(&self) -> crate::results::model::HostFacts {
        let mut f = self.facts.clone();
        if self.remote.is_none() {
            f.load1_at_start = crate::hostfacts::load1();
        }
        f
    }

    /// qemu's pid, when qemu runs on this machine (its RSS and CPU are then sampled).
    pub fn qemu_pid(&self, domain: &str) -> Option<i32> {
        if self.remote.is_some() { None } else { local_qemu_pid(domain) }
    }

    /// A new connection to the same host, for teardown when the cell's own one died: Ctrl-C on
    /// a terminal kills the ssh that libvirt runs for a remote host. None for this machine,
    /// whose connection only dies with libvirtd (a new one would not help, or would start it
    /// again where it is socket-activated).
    pub fn reconnect(&self) -> Option<Result<Connect, String>> {
        self.remote.is_some().then(|| crate::hypervisor::conn::open_within(&self.uri, std::time::Duration::from_secs(30)).map_err(|e| format!("cannot reconnect to {}: {e}", self.uri)))
    }

    /// Put a cell's files where this host's qemu reads them. Locally the overlay is made in
    /// `work` on the image (qemu-img) and the forward takes a free loopback port; remotely the
    /// overlay, the seed and the console log become volumes in the host's pool, and an ssh
    /// tunnel reaches the guest's forward.
    pub fn place(&self, domain: &str, work: &std::path::Path, image: &Image) -> Result<Placed, String> {
        let Some(remote) = &self.remote else {
            return place_local(work, &image.disk());
        };
        let files = RemoteCell::create(&self.conn, remote, domain, &work.join(SEED)).map_err(|e| format!("files on host {}: {e}", self.name))?;
        let tunnel = tunnel::Tunnel::open(&remote.ssh, files.port, &work.join(TUNNEL_LOG), std::time::Duration::from_secs(30))
            .map_err(|e| format!("tunnel to host {}: {e}", self.name))?;
        Ok(Placed::Remote { files, tunnel })
    }

    /// What a cell's domain XML names: the image's boot and the cell's files, by the host's paths.
    pub fn domain_files(&self, placed: &Placed, image: &Image) -> DomainFiles {
        match placed {
            Placed::Local { work, .. } => DomainFiles { boot: image.boot(), disk: work.join(OVERLAY), seed: work.join(SEED), console: work.join(CONSOLE) },
            // Placed remotely only on a remote host, whose copy of the image it boots.
            Placed::Remote { files, .. } => DomainFiles {
                boot: self.remote.as_ref().map(|r| r.boot.clone()).unwrap_or_else(|| image.boot()),
                disk: files.overlay.clone().into(),
                seed: files.seed.clone().into(),
                console: files.console.clone().into(),
            },
        }
    }
}

/// A cell's files on this machine: its overlay on `backing` (the image's disk, or a saved
/// guest's) and a free loopback port.
pub fn place_local(work: &Path, backing: &Path) -> Result<Placed, String> {
    overlay(backing, &work.join(OVERLAY))?;
    let port = crate::proc::free_loopback_port().map_err(|e| format!("no free loopback port: {e}"))?;
    Ok(Placed::Local { work: work.to_path_buf(), port })
}

/// A new qcow2 overlay at `dest` on `backing`.
pub fn overlay(backing: &Path, dest: &Path) -> Result<(), String> {
    let out = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(backing)
        .arg(dest)
        .output()
        .map_err(|e| format!("cannot run qemu-img: {e}"))?;
    if !out.status.success() {
        return Err(format!("qemu-img create failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

/// The pid of a domain's qemu on this machine, from the pid file libvirt keeps for it.
pub fn local_qemu_pid(domain: &str) -> Option<i32> {
    std::fs::read_to_string(format!("/run/libvirt/qemu/{domain}.pid")).ok()?.trim().parse().ok()
}

/// A cell's files in its work directory on this machine.
pub const OVERLAY: &str = "overlay.qcow2";
pub const SEED: &str = "seed.iso";
pub const CONSOLE: &str = "console.log";
const TUNNEL_LOG: &str = "ssh-tunnel.log";

impl Placed {
    /// The forward's port on the hypervisor host's loopback (in the domain XML).
    pub fn forward_port(&self) -> u16 {
        match self {
            Placed::Local { port, .. } => *port,
            Placed::Remote { files, .. } => files.port,
        }
    }

    /// Where perfvm reaches the guest's forward: 127.0.0.1 here, the forward itself or the
    /// tunnel's end.
    pub fn local_port(&self) -> u16 {
        match self {
            Placed::Local { port, .. } => *port,
            Placed::Remote { tunnel, .. } => tunnel.local_port,
        }
    }

    /// The console log as qemu writes it, when it is written here (it can then be watched).
    pub fn console_here(&self) -> Option<std::path::PathBuf> {
        match self {
            Placed::Local { work, .. } => Some(work.join(CONSOLE)),
            Placed::Remote { .. } => None,
        }
    }

    /// The cell's disk (its overlay) and where to export it, when it is on this machine and can
    /// be read here.
    pub fn disk_here(&self) -> Option<crate::image::peek::Disk> {
        match self {
            Placed::Local { work, .. } => Some(crate::image::peek::Disk { overlay: work.join(OVERLAY), export: work.join(crate::image::peek::EXPORT) }),
            Placed::Remote { .. } => None,
        }
    }

    /// The way to the guest is still there: a remote guest's ssh tunnel has not died. When it
    /// has, the name of its log (in the work directory) says why.
    pub fn reachable(&mut self) -> Result<(), &'static str> {
        match self {
            Placed::Local { .. } => Ok(()),
            Placed::Remote { tunnel, .. } => if tunnel.alive() { Ok(()) } else { Err(TUNNEL_LOG) },
        }
    }

    /// Bring the console log into `work` (a remote host's daemon wrote it there).
    pub fn fetch_console(&self, work: &std::path::Path) -> Result<(), String> {
        match self {
            Placed::Local { .. } => Ok(()),
            Placed::Remote { files, .. } => files.fetch_console(&work.join(CONSOLE)).map(|_| ()).map_err(|e| e.to_string()),
        }
    }

    /// Remove a remote cell's volumes (through `reconnect` when the cell's connection died) and
    /// end its tunnel; nothing to do for a local cell, whose files go with its work directory.
    pub fn remove(self, reconnect: &mut dyn FnMut() -> Option<Result<Connect, String>>) -> Result<(), String> {
        let Placed::Remote { mut files, tunnel } = self else { return Ok(()) };
        drop(tunnel);
        files.remove().or_else(|e| match reconnect() {
            Some(c) => c.and_then(|c| files.remove_via(&c)).map_err(|again| format!("{e}; {again}")),
            None => Err(e),
        })
    }
}

/// A remote host ready for cells: the pool, and the image as the host sees it.
#[derive(Debug)]
pub struct Remote {
    pub ssh: SshTarget,
    pub pool: StoragePool,
    /// The base image volume and its virtual size (for overlays).
    pub disk: String,
    pub virtual_size: u64,
    /// The image's boot with the host's paths.
    pub boot: Boot,
    /// Forward ports this process's cells hold on the host, so two never pick the same.
    ports: std::sync::Mutex<std::collections::BTreeSet<u16>>,
}

impl Remote {
    fn take_port(&self) -> u16 {
        let mut held = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let p = remote_port();
            if held.insert(p) {
                return p;
            }
        }
    }

    fn release_port(&self, port: u16) {
        self.ports.lock().unwrap_or_else(|e| e.into_inner()).remove(&port);
    }
}

/// What a host offers cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    /// hosts.toml's memory_mib when set; else available memory: this machine's MemAvailable,
    /// a remote host's free memory as libvirt reports it (reclaimable cache left out: set
    /// memory_mib to give more).
    pub memory_mib: u64,
    pub cores: usize,
}

pub fn room(spec: &spec::HostSpec, conn: &Connect) -> Room {
    let (available, cores) = match spec.access {
        spec::Access::Local => (
            crate::proc::host_memory().map(|(_, a)| a >> 20).unwrap_or(0),
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        ),
        spec::Access::Ssh(_) => (conn.free_memory().map(|b| b >> 20).unwrap_or(0), conn.node_info().map(|n| n.cpus as usize).unwrap_or(1)),
    };
    Room { memory_mib: spec.memory_mib.unwrap_or(available), cores }
}

/// The virtual size in a qcow2 header (big-endian u64 at byte 24, after the magic "QFI\xfb").
pub fn qcow2_virtual_size(header: &[u8]) -> Option<u64> {
    if header.len() < 32 || &header[..4] != b"QFI\xfb" {
        return None;
    }
    Some(u64::from_be_bytes(header[24..32].try_into().ok()?))
}

/// Volume names of an image on a host: keyed by image id, so a new image is a new upload and
/// the same image is uploaded once per host.
fn image_volume(id: &str, what: &str) -> String {
    format!("image-{id}.{what}")
}

/// Prepare a remote host: define the pool if needed and upload the image's files unless a
/// complete upload of the same image id is there (the manifest volume is uploaded last and
/// marks it complete). `say` reports what is uploaded.
pub fn prepare_remote(conn: &Connect, ssh: SshTarget, pool_path: &str, image: &Image, say: &dyn Fn(String)) -> Result<Remote, VirtError> {
    let pool = pool::ensure_pool(conn, pool_path)?;
    let header = {
        use std::io::Read;
        let mut h = [0u8; 32];
        std::fs::File::open(image.disk()).and_then(|mut f| f.read_exact(&mut h)).map_err(|e| VirtError::Call(format!("{}: {e}", image.disk().display())))?;
        h
    };
    let virtual_size = qcow2_virtual_size(&header).ok_or_else(|| VirtError::Call(format!("{} is not a qcow2 image", image.disk().display())))?;
    let direct = matches!(image.boot(), Boot::Direct { .. });
    let mut files: Vec<(String, std::path::PathBuf)> = vec![(image_volume(&image.id, "qcow2"), image.disk())];
    if direct {
        files.push((image_volume(&image.id, "vmlinuz"), image.kernel()));
        files.push((image_volume(&image.id, "initrd"), image.initrd()));
    }
    let marker = image_volume(&image.id, "manifest.json");
    let complete = pool::lookup(&pool, &marker)?.is_some() && files.iter().map(|(n, _)| pool::lookup(&pool, n)).collect::<Result<Vec<_>, _>>()?.iter().all(Option::is_some);
    if !complete {
        let t = std::time::Instant::now();
        let bytes: u64 = files.iter().filter_map(|(_, p)| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
        say(format!("uploading image {} ({}) to the {} pool on {}", image.id, crate::size::human(bytes), pool::POOL_NAME, ssh.host));
        let _ = pool::delete(&pool, &marker);
        for (name, path) in &files {
            pool::upload(conn, &pool, name, path)?;
        }
        if image.manifest_path().is_file() {
            pool::upload(conn, &pool, &marker, &image.manifest_path())?;
        } else {
            pool::create_empty(&pool, &marker)?;
        }
        say(format!("image {} uploaded to {} in {:.1} s", image.id, ssh.host, t.elapsed().as_secs_f64()));
    }
    // Paths as the host sees them (the pool may be an older one, elsewhere than pool_path).
    let path = |name: &str| -> Result<String, VirtError> { Ok(pool.lookup_storage_vol_by_name(name)?.path()?) };
    let boot = match image.boot() {
        Boot::Direct { cmdline, .. } => Boot::Direct {
            kernel: path(&image_volume(&image.id, "vmlinuz"))?.into(),
            initrd: path(&image_volume(&image.id, "initrd"))?.into(),
            cmdline,
        },
        Boot::Firmware => Boot::Firmware,
    };
    Ok(Remote { ssh, disk: path(&image_volume(&image.id, "qcow2"))?, pool, virtual_size, boot, ports: Default::default() })
}

/// A port on the remote host's loopback for a guest's forward. The controller cannot ask that
/// host's kernel for a free one; ports below Linux's ephemeral range (32768) are never handed
/// out to outgoing connections, and a clash fails the domain's start (retried as a boot failure).
fn remote_port() -> u16 {
    let mut b = [0u8; 2];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    20_000 + (u16::from_le_bytes(b) % 12_000)
}

/// A remote cell's files in the host's pool (overlay, seed, console log) and its forward port
/// there. Removed and released when dropped.
pub struct RemoteCell {
    remote: std::sync::Arc<Remote>,
    /// The guest's port forward on the host's loopback.
    pub port: u16,
    conn: Connect,
    pool: StoragePool,
    names: Vec<String>,
    console_name: String,
    pub overlay: String,
    pub seed: String,
    pub console: String,
}

impl RemoteCell {
    pub fn create(conn: &Connect, remote: &std::sync::Arc<Remote>, domain: &str, local_seed: &Path) -> Result<RemoteCell, VirtError> {
        let [ov, seed, console] = pool::cell_volumes(crate::owner::me(), domain);
        let mut cell = RemoteCell {
            remote: remote.clone(),
            port: remote.take_port(),
            conn: conn.clone(),
            pool: remote.pool.clone(),
            // Registered before creation, so a failure halfway removes what was made.
            names: vec![ov.clone(), seed.clone(), console.clone()],
            console_name: console.clone(),
            overlay: String::new(),
            seed: String::new(),
            console: String::new(),
        };
        cell.overlay = virt::storage_vol::StorageVol::create_xml(&remote.pool, &pool::overlay_volume_xml(&ov, remote.virtual_size, &remote.disk), 0)?.path()?;
        cell.seed = pool::upload(conn, &remote.pool, &seed, local_seed)?.path()?;
        // Made here, so libvirt knows it without a pool refresh (which fails while another
        // cell's volume job runs); qemu's log daemon writes into it.
        cell.console = pool::create_empty(&remote.pool, &console)?.path()?;
        Ok(cell)
    }

    /// Copy the console log here (it is written on the host by qemu's log daemon).
    pub fn fetch_console(&self, dest: &Path) -> Result<u64, VirtError> {
        pool::download(&self.conn, &self.pool, &self.console_name, dest)
    }

    /// Remove the volumes through another connection to the host, when the cell's died.
    pub fn remove_via(&mut self, conn: &Connect) -> Result<(), String> {
        self.pool = conn.lookup_storage_pool_by_name(pool::POOL_NAME).map_err(|e| format!("cannot find pool {}: {}", pool::POOL_NAME, e.message()))?;
        self.conn = conn.clone();
        self.remove()
    }

    pub fn remove(&mut self) -> Result<(), String> {
        let mut errors = Vec::new();
        // What could not be removed stays listed, for another try (through a new connection).
        for n in std::mem::take(&mut self.names) {
            if let Err(e) = pool::delete(&self.pool, &n) {
                errors.push(format!("{n}: {e}"));
                self.names.push(n);
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(format!("cannot remove volumes on the host: {}", errors.join("; "))) }
    }
}

impl Drop for RemoteCell {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("perfvm: {e}");
        }
        self.remote.release_port(self.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qcow2_header_and_ports() {
        let mut h = b"QFI\xfb".to_vec();
        h.resize(32, 0);
        h[24..32].copy_from_slice(&(24u64 << 30).to_be_bytes());
        assert_eq!(qcow2_virtual_size(&h), Some(24 << 30));
        assert_eq!(qcow2_virtual_size(&[0u8; 32]), None);
        assert_eq!(qcow2_virtual_size(b"QFI"), None);
        for _ in 0..100 {
            assert!((20_000..32_000).contains(&remote_port()));
        }
        assert_eq!(image_volume("bookworm-1", "qcow2"), "image-bookworm-1.qcow2");
    }
}
