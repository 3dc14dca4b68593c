//! `perfvm run`: one cell.

use super::RunArgs;
use crate::accel::{self, Accel, KvmProbe};
use crate::image::{self, recipe};
use crate::pipeline::{CellConfig, CellEnv};
use crate::results::model::ExitReason;
use crate::size::{ByteSize, human};
use crate::ui;
use crate::upload::client::Transfer;
use anyhow::{Context, Result};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Smallest guest that boots the image with cloud-init (measured: 256 MiB leaves 170 MiB free).
pub const MIN_RAM_MIB: u64 = 128;
/// Host memory a running qemu needs beyond guest RAM. Under TCG the translation cache is large
/// (measured ~1.06–1.08 GiB RSS for 256–512 MiB guests).
pub fn qemu_overhead_mib(accel: Accel) -> u64 {
    match accel {
        Accel::Tcg => 1200,
        Accel::Kvm => 300,
    }
}

use crate::error::InputError;

/// What the host and the image allow a cell.
#[derive(Debug, Clone, Copy)]
pub struct HostLimits {
    pub available_bytes: u64,
    pub accel: Accel,
    pub root_size_gib: u64,
}

/// What uploads may store on the guest's root filesystem: the OS takes ~0.5 GiB, and a margin
/// is kept for logs.
fn disk_room(root_size_gib: u64) -> u64 {
    root_size_gib.saturating_sub(1) * ByteSize::GIB
}

/// Check the numbers of a cell against each other and the host. Pure.
pub fn validate_cell(ram_mib: u64, file_size: ByteSize, cpus: u32, timeout_s: u64, interval_ms: u64, host: HostLimits) -> Result<(), InputError> {
    let HostLimits { available_bytes: host_available_bytes, accel, root_size_gib } = host;
    let e = |s: String| Err(InputError(s));
    if ram_mib < MIN_RAM_MIB {
        return e(format!("--ram {ram_mib}: a guest needs at least {MIN_RAM_MIB} MiB to boot"));
    }
    ram_fits(ram_mib, host_available_bytes, accel, "this host")?;
    let disk_room = disk_room(root_size_gib);
    if file_size.bytes() > disk_room {
        return e(format!(
            "--file-size {file_size}: the guest root filesystem is {root_size_gib} GiB, so at most {} can be stored (raise root_size_gib in vm-images/recipe.toml)",
            human(disk_room)
        ));
    }
    if cpus == 0 || cpus > 64 {
        return e(format!("--cpus {cpus}: use 1 to 64"));
    }
    if timeout_s < 30 {
        return e(format!("--timeout {timeout_s}: a guest needs ~30 s to boot under TCG; use at least 30"));
    }
    if !(10..=60_000).contains(&interval_ms) {
        return e(format!("--sample-interval {interval_ms}: use 10 to 60000 ms"));
    }
    Ok(())
}

/// Guest RAM plus qemu's overhead against a host's available memory; `host` names it in the
/// message. Pure.
pub fn ram_fits(ram_mib: u64, available_bytes: u64, accel: Accel, host: &str) -> Result<(), InputError> {
    let overhead = qemu_overhead_mib(accel);
    let fits = (available_bytes / ByteSize::MIB).saturating_sub(overhead);
    if ram_mib > fits {
        return Err(InputError(format!(
            "--ram {ram_mib}: {host} has {} available and qemu needs ~{overhead} MiB beyond guest RAM under {accel}, so at most {fits} MiB fits",
            human(available_bytes)
        )));
    }
    Ok(())
}

/// A cell's configuration from the shared options. `domain_tag` makes the domain name unique.
pub fn cell_config(c: &super::CellArgs, accel: Accel, run_id: &str, ram: u64, size: ByteSize, cell: &str, domain_tag: &str) -> CellConfig {
    CellConfig {
        run_id: run_id.to_string(),
        cell: cell.to_string(),
        domain_name: format!("{}{cell}-{domain_tag}", crate::hypervisor::NAME_PREFIX),
        ram_mib: ram,
        file_size: size,
        cpus: c.cpus,
        accel,
        timeout: Duration::from_secs(c.timeout),
        seed: c.seed,
        content: c.kind,
        file: None,
        transfer: if c.chunked { Transfer::Chunked } else { Transfer::ContentLength },
        concurrency: 1,
        download: c.download,
        sample_interval: Duration::from_millis(c.sample_interval),
        sample_memory_only: c.sample_memory_only,
        keep_vm: false,
        ssh_key: None,
        repeat: 1,
        attempt: 1,
        hook_before: c.hook_before_cell.clone(),
        hook_after: c.hook_after_cell.clone(),
    }
}

/// Everything `run` needs, checked: the resolved accel, recipe, target and libvirt connection.
pub struct Checked {
    pub accel: Accel,
    /// The hosts ready for cells, in the order given (at least one).
    pub envs: Vec<(crate::hosts::spec::HostSpec, CellEnv)>,
    /// Hosts given but not usable, with the reason.
    pub skipped: Vec<String>,
}

/// The size of a file given with `--file`: a readable regular file, not empty.
fn file_size_of(p: &std::path::Path) -> Result<ByteSize, InputError> {
    let m = std::fs::metadata(p).map_err(|e| InputError(format!("--file {}: {e}", p.display())))?;
    if !m.is_file() {
        return Err(InputError(format!("--file {}: not a regular file", p.display())));
    }
    if m.len() == 0 {
        return Err(InputError(format!("--file {}: the file is empty", p.display())));
    }
    std::fs::File::open(p).map_err(|e| InputError(format!("--file {}: {e}", p.display())))?;
    Ok(ByteSize(m.len()))
}

/// Common pre-flight for cells (RAM, file size, uploads at once): input, accel, results dir,
/// recipe, target, libvirt, image.
pub fn preflight(common: &super::CellArgs, cells: &[(u64, ByteSize, u32)]) -> Result<Checked> {
    let probe = KvmProbe::read();
    let accel = accel::resolve(common.accel, &probe).map_err(InputError)?;
    let (recipe_dir, cloud_init_dir) = match &common.inputs {
        Some(i) => (i.recipe_dir.clone(), i.cloud_init_dir.clone()),
        None => (crate::paths::recipe_dir(), crate::paths::cloud_init_dir()),
    };
    let loaded = recipe::load(&recipe_dir).map_err(|e| InputError(e.to_string()))?;
    let byo = common.image.source();
    let root_size_gib = match &byo {
        Some(src) => crate::image::import::check(src).map_err(|e| InputError(format!("{e:#}")))?.virtual_size / ByteSize::GIB,
        None => loaded.recipe.root_size_gib,
    };
    // RAM is checked against this machine before any connection when every host is this
    // machine as it is; otherwise against the roomiest host once they are reached.
    let specs = common.hosts.specs()?;
    let only_here = specs.iter().all(|s| s.access == crate::hosts::spec::Access::Local && s.memory_mib.is_none());
    let available = match only_here {
        true => crate::proc::host_memory().context("cannot read /proc/meminfo")?.1,
        false => u64::MAX,
    };
    let host = HostLimits { available_bytes: available, accel, root_size_gib };
    for &(ram, size, concurrency) in cells {
        validate_cell(ram, size, common.cpus, common.timeout, common.sample_interval, host)?;
        if concurrency == 0 || concurrency > crate::plan::key::MAX_CONCURRENCY {
            return Err(InputError(format!("--concurrency {concurrency}: use 1 to {} uploads at once", crate::plan::key::MAX_CONCURRENCY)).into());
        }
        let stored = size.bytes().saturating_mul(concurrency as u64);
        let room = disk_room(root_size_gib);
        if stored > room {
            return Err(InputError(format!(
                "--concurrency {concurrency} × {size}: the guest must store {} but its root filesystem holds at most {}",
                human(stored),
                human(room)
            ))
            .into());
        }
    }
    let choice = super::target::choose(&common.target)?;
    let needs_reference = matches!(choice, super::target::Choice::Reference);
    let target_bin = crate::paths::target_binary();
    for bin in [needs_reference.then_some(&target_bin), Some(&crate::paths::probe_binary())].into_iter().flatten() {
        if !bin.is_file() {
            return Err(InputError(format!("{} is missing: build it with `cargo build --release` (it is built beside perfvm)", bin.display())).into());
        }
    }
    let templates = crate::cloudinit::seed::load_templates(&cloud_init_dir).map_err(|e| InputError(format!("{e:#}")))?;
    // Hosts that cannot be reached are skipped with a warning, as long as one can.
    let mut reachable = Vec::new();
    let mut skipped = Vec::new();
    for spec in specs {
        match crate::hypervisor::conn::open(&spec.uri) {
            Ok(conn) => reachable.push((spec, conn)),
            Err(e) => skipped.push(format!("{}: {e}", spec.name)),
        }
    }
    if reachable.is_empty() {
        return Err(InputError(skipped.join("; ")).into());
    }
    if !only_here {
        let (spec, room) = reachable
            .iter()
            .map(|(spec, conn)| (spec, crate::hosts::room(spec, conn).memory_mib))
            .max_by_key(|(_, m)| *m)
            .expect("one host at least");
        let name = format!("the roomiest host ({}{})", spec.name, if spec.memory_mib.is_some() { ", memory_mib" } else { "" });
        for &(ram, _, _) in cells {
            ram_fits(ram, room.saturating_mul(ByteSize::MIB), accel, &name)?;
        }
    }
    // Last of the checks, since it creates the results directory.
    crate::results::store::check_writable(&common.results_dir).map_err(InputError)?;
    let cache = crate::paths::cache_dir();
    let target = super::target::spec(&choice, common.target_mode, &cache)?;
    if common.download && target.download.is_none() {
        return Err(InputError(format!("--download: target {} has no [download] url in its profile", target.name)).into());
    }
    let image = match &byo {
        Some(src) => {
            if !target.packages.is_empty() {
                return Err(InputError(format!(
                    "--image with --target {}: the profile installs Debian packages ({}) into perfvm's image; put them into your image and use a profile without [image] packages",
                    target.name,
                    target.packages.join(", ")
                ))
                .into());
            }
            crate::image::import::import(&cache, src)?
        }
        // A profile's packages make an image variant, built once and cached like the base.
        None => image::build::ensure(&cache, &loaded.with_packages(&target.packages))?,
    };
    let shared = Shared { cache, image, target, templates };
    let mut envs = Vec::new();
    for (spec, conn) in reachable {
        match on_host(&spec, conn, &shared) {
            Ok(env) => envs.push((spec, env)),
            Err(e) => skipped.push(format!("{}: {e:#}", spec.name)),
        }
    }
    if envs.is_empty() {
        anyhow::bail!("no host can run cells: {}", skipped.join("; "));
    }
    for s in &skipped {
        eprintln!("perfvm: warning: host skipped: {s}");
    }
    Ok(Checked { accel, envs, skipped })
}

/// What every host's cells share.
struct Shared {
    cache: std::path::PathBuf,
    image: crate::image::Image,
    target: crate::profile::TargetSpec,
    templates: (String, String),
}

/// Cells' environment on one host: a local host as it is; a remote one gets the pool and the
/// image's volumes first (uploaded once per image id). Leftovers of this machine's dead perfvm
/// processes are removed on every host (domains record the machine that made them).
fn on_host(spec: &crate::hosts::spec::HostSpec, conn: virt::connect::Connect, s: &Shared) -> Result<CellEnv> {
    use crate::hosts::spec::Access;
    let removed = crate::hypervisor::orphans::remove_orphans(&conn, spec.uri == crate::hypervisor::conn::DEFAULT_URI)?;
    if !removed.is_empty() {
        eprintln!("perfvm: removed {} domain(s) left by dead perfvm processes on {}: {}", removed.len(), spec.name, removed.join(", "));
    }
    let remote = match &spec.access {
        Access::Local => None,
        Access::Ssh(ssh) => {
            let say = |m: String| eprintln!("perfvm: {m}");
            let r = crate::hosts::prepare_remote(&conn, ssh.clone(), &spec.pool_path, &s.image, &say)
                .with_context(|| format!("host {} ({})", spec.name, spec.uri))?;
            Some(std::sync::Arc::new(r))
        }
    };
    Ok(CellEnv {
        conn,
        host: crate::hosts::HostInfo { name: spec.name.clone(), uri: spec.uri.clone(), remote },
        cache: s.cache.clone(),
        image: s.image.clone(),
        target: s.target.clone(),
        templates: s.templates.clone(),
    })
}

pub async fn run(args: RunArgs, cancel: CancellationToken) -> Result<i32> {
    let c = &args.common;
    let ssh_key = match &args.ssh_key {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| InputError(format!("--ssh-key {}: {e}", p.display())))?;
            Some(crate::cloudinit::seed::SshKey::parse(&text).map_err(|e| InputError(format!("--ssh-key {}: {e}", p.display())))?)
        }
        None => None,
    };
    let (size, file) = match (&args.file, args.file_size) {
        (Some(p), _) => (file_size_of(p)?, Some(std::path::absolute(p).unwrap_or_else(|_| p.clone()))),
        (None, Some(s)) => (s, None),
        (None, None) => return Err(InputError("give --file-size SIZE or --file PATH".into()).into()),
    };
    let hosts = c.hosts.specs()?;
    if hosts.len() > 1 {
        return Err(InputError(format!("perfvm run runs one cell on one host; {} hosts were given (spread cells with `perfvm matrix`)", hosts.len())).into());
    }
    if hosts[0].access != crate::hosts::spec::Access::Local && (args.keep_vm || args.ssh_key.is_some()) {
        return Err(InputError("--keep-vm and --ssh-key need a local host: a remote guest's ports are reached through a tunnel that ends with the cell".into()).into());
    }
    let mut checked = tokio::task::block_in_place(|| preflight(c, &[(args.ram, size, args.concurrency)]))?;
    let env = checked.envs.remove(0).1;
    let key = crate::plan::key::CellKey { ram_mib: args.ram, size, concurrency: args.concurrency, repeat: 1 };
    let cell = key.shape();
    let run_id = crate::results::store::new_run_id(&cell);
    let run_dir = crate::results::store::RunDir::create(&c.results_dir, &run_id)
        .with_context(|| format!("cannot create the run directory in {}", c.results_dir.display()))?;
    // Unique on the host: the run id's random tail and our pid.
    let suffix = format!("{}-{}", run_id.rsplit('-').next().unwrap_or("0"), std::process::id());
    let mut cfg = cell_config(c, checked.accel, &run_id, args.ram, size, &cell, &suffix);
    cfg.file = file;
    cfg.concurrency = args.concurrency;
    cfg.keep_vm = args.keep_vm;
    cfg.ssh_key = ssh_key;
    eprintln!(
        "perfvm: cell {cell} ({} MiB RAM, {} vCPU, {}, target {} {}, image {})",
        cfg.ram_mib, cfg.cpus, cfg.accel, env.target.name, env.target.mode.as_str(), env.image.id
    );
    let reporter = ui::ConsoleReporter::new();
    let result = crate::pipeline::run_cell(&env, &cfg, &run_dir.path, &cancel, &reporter).await;
    if !result.interrupted {
        let db = crate::history::db_path(c.db.as_deref(), &c.results_dir);
        super::history::Recorder::open(db, crate::history::single_run(&run_dir.path, &result, c.label.as_deref())).record(&[&result]);
    }
    println!("{}", ui::summary(&result, &run_dir.path));
    if args.keep_vm && !cancel.is_cancelled() && result.exit_reason != ExitReason::HarnessError
        && let Some(port) = result.host_port {
            println!(
                "The guest {} is still running. Target: http://127.0.0.1:{port}/{}\nStop it: virsh -c {} destroy {}; then `perfvm cleanup` removes its overlay and seed.",
                cfg.domain_name,
                result.ssh_port.map(|p| format!("\nLog in: ssh -p {p} root@127.0.0.1")).unwrap_or_default(),
                env.host.uri,
                cfg.domain_name
            );
        }
    if cancel.is_cancelled() {
        eprintln!("perfvm: interrupted; the guest was torn down and the partial result kept in {}", run_dir.path.display());
    }
    Ok(crate::exit::for_cell(&result, cancel.is_cancelled()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: HostLimits = HostLimits { available_bytes: 24 * ByteSize::GIB, accel: Accel::Tcg, root_size_gib: 24 };

    fn v(ram: u64, size: &str) -> Result<(), InputError> {
        validate_cell(ram, ByteSize::parse(size).unwrap(), 2, 600, 100, HOST)
    }

    #[test]
    fn accepts_the_seed_matrix() {
        for ram in [256, 512, 1024, 2048] {
            for size in ["100M", "500M", "1G", "2G", "5G"] {
                v(ram, size).unwrap();
            }
        }
    }

    #[test]
    fn rejects_bad_cells_with_the_flag_named() {
        assert!(v(0, "1G").unwrap_err().0.starts_with("--ram 0"));
        let e = v(100_000_000, "1G").unwrap_err().0;
        assert!(e.contains("--ram 100000000") && e.contains("at most"), "{e}");
        let e = v(512, "30G").unwrap_err().0;
        assert!(e.contains("--file-size 30G"), "{e}");
        let e = validate_cell(512, ByteSize(1), 0, 600, 100, HOST).unwrap_err().0;
        assert!(e.contains("--cpus 0"));
        let e = validate_cell(512, ByteSize(1), 2, 5, 100, HOST).unwrap_err().0;
        assert!(e.contains("--timeout 5"));
        let e = validate_cell(512, ByteSize(1), 2, 600, 1, HOST).unwrap_err().0;
        assert!(e.contains("--sample-interval 1"));
    }

    #[test]
    fn host_budget_includes_qemu_overhead() {
        // 2 GiB available: under TCG only ~848 MiB of guest fits, under KVM more.
        let small = |accel| HostLimits { available_bytes: 2 * ByteSize::GIB, accel, root_size_gib: 24 };
        assert!(validate_cell(1024, ByteSize(1), 2, 600, 100, small(Accel::Tcg)).is_err());
        assert!(validate_cell(1024, ByteSize(1), 2, 600, 100, small(Accel::Kvm)).is_ok());
        // A remote host's room is named in the message (checked once it is reached).
        let e = ram_fits(4096, 4 * ByteSize::GIB, Accel::Tcg, "the roomiest host (lab2, memory_mib)").unwrap_err().0;
        assert!(e.starts_with("--ram 4096: the roomiest host (lab2, memory_mib) has ") && e.contains("at most 2896 MiB"), "{e}");
        assert!(ram_fits(2896, 4 * ByteSize::GIB, Accel::Tcg, "x").is_ok());
        assert!(ram_fits(1, 0, Accel::Kvm, "x").is_err(), "nothing available");
    }
}
