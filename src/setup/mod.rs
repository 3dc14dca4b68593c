//! From what the user asked for to hosts ready for cells, before any VM starts: the cells'
//! numbers checked against the host and the image (`check`), acceleration chosen, the target
//! resolved with its host files made (`target`), the image (or a profile's variant) built or
//! imported, each host connected, leftovers of dead perfvm processes removed, a remote host's
//! pool and image prepared. `doctor` checks the same preconditions without running anything.

pub mod check;
pub mod doctor;
pub mod target;

use crate::accel::{self, Accel, AccelChoice, KvmProbe};
use crate::error::InputError;
use crate::hosts::spec::{Access, HostSpec};
use crate::hosts::Host;
use crate::image::recipe;
use crate::pipeline::{CellConfig, CellEnv};
use crate::plan::key::CellKey;
use crate::profile::TargetMode;
use crate::size::{ByteSize, human};
use crate::upload::client::Transfer;
use crate::upload::content::ContentKind;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::Duration;

/// How each cell of a command runs.
#[derive(Debug, Clone)]
pub struct CellSettings {
    pub cpus: u32,
    pub timeout_s: u64,
    pub seed: u64,
    pub content: ContentKind,
    pub transfer: Transfer,
    pub download: bool,
    pub sample_interval_ms: u64,
    pub sample_memory_only: bool,
    pub verify: crate::results::model::Verify,
    pub boot: crate::results::model::Boot,
    pub hook_before: Option<String>,
    pub hook_after: Option<String>,
}

impl CellSettings {
    /// What of these settings changes a cell's cost (for estimates).
    pub fn way(&self) -> crate::plan::estimate::Way {
        crate::plan::estimate::Way {
            saved: self.boot == crate::results::model::Boot::Saved,
            host_hash: self.verify == crate::results::model::Verify::Host,
            download: self.download,
        }
    }
}

/// Where a run's inputs come from when not from the project directory (`matrix --from`).
#[derive(Debug, Clone)]
pub struct Inputs {
    pub recipe_dir: PathBuf,
    pub cloud_init_dir: PathBuf,
}

/// What every command that runs cells is given.
#[derive(Debug, Clone)]
pub struct Options {
    pub cell: CellSettings,
    pub accel: AccelChoice,
    /// `--target`: the reference target's name, a shipped profile's name, or a profile's path,
    /// each with its mode; several only in a matrix.
    pub targets: Vec<target::TargetArg>,
    /// `--target-mode`: the reference target's mode where its entry has none.
    pub target_mode: Option<TargetMode>,
    /// `--image` (bring your own).
    pub image: Option<crate::image::import::Source>,
    pub hosts: Vec<HostSpec>,
    pub results_dir: PathBuf,
    /// The history database (`--db`), and the label recorded with the run.
    pub db: Option<PathBuf>,
    pub label: Option<String>,
    pub inputs: Option<Inputs>,
}

impl Options {
    /// One cell's configuration. `domain_tag` makes its domain's name unique on the host.
    pub fn cell_config(&self, accel: Accel, run_id: &str, key: &CellKey, attempt: u32, domain_tag: &str) -> CellConfig {
        let c = &self.cell;
        let cell = key.id();
        CellConfig {
            run_id: run_id.to_string(),
            domain_name: format!("{}{cell}-{domain_tag}", crate::hypervisor::NAME_PREFIX),
            cell,
            ram_mib: key.ram_mib,
            file_size: key.size,
            cpus: c.cpus,
            accel,
            timeout: Duration::from_secs(c.timeout_s),
            seed: c.seed,
            content: c.content,
            file: None,
            transfer: c.transfer,
            concurrency: key.concurrency,
            download: c.download,
            sample_interval: Duration::from_millis(c.sample_interval_ms),
            sample_memory_only: c.sample_memory_only,
            verify: c.verify,
            boot: c.boot,
            keep_vm: false,
            ssh_key: None,
            repeat: key.repeat,
            attempt,
            matrix_target: (!key.target.is_none()).then(|| key.target.as_str().to_string()),
            hook_before: c.hook_before.clone(),
            hook_after: c.hook_after.clone(),
        }
    }

    /// The one target of a command that measures one (`run`, `limit`).
    pub fn one_target(&self, command: &str) -> Result<&target::TargetArg, InputError> {
        match self.targets.as_slice() {
            [t] => Ok(t),
            [] => Err(InputError("--target: give a target".into())),
            _ => Err(InputError(format!("perfvm {command} measures one target; to measure several side by side use perfvm matrix --target a,b"))),
        }
    }

    pub fn db_path(&self) -> PathBuf {
        crate::history::db_path(self.db.as_deref(), &self.results_dir)
    }
}

/// Hosts ready for cells.
pub struct Ready {
    pub accel: Accel,
    /// The hosts that can run cells, in the order given (at least one), each with one
    /// environment per target, in the order of `tags`.
    pub hosts: Vec<(HostSpec, Vec<CellEnv>)>,
    /// Each target's tag (one `NONE` when there is one target).
    pub tags: Vec<crate::plan::key::TargetTag>,
    /// Hosts given but not usable, with the reason.
    pub skipped: Vec<String>,
}

impl Ready {
    /// Each host with the environment of the one target (`run`, `limit`).
    pub fn one_target(&mut self) -> Vec<(HostSpec, CellEnv)> {
        std::mem::take(&mut self.hosts).into_iter().map(|(h, mut envs)| (h, envs.swap_remove(0))).collect()
    }
}

/// What checking the input found, before anything is connected, built or run.
pub struct Valid {
    pub accel: Accel,
    loaded: recipe::LoadedRecipe,
    /// Every host is this machine as it is (RAM was checked against it).
    only_here: bool,
    targets: Vec<target::Chosen>,
    templates: (String, String),
}

impl Valid {
    /// The (first) target's name, as results record it.
    pub fn target_name(&self) -> &str {
        self.targets[0].name()
    }

    /// Every target's name.
    pub fn target_names(&self) -> Vec<&str> {
        self.targets.iter().map(|t| t.name()).collect()
    }
}

/// Check cells of these shapes (RAM, file size, uploads at once) against the host and the
/// image, the target, the recipe, the binaries and the templates: every check a run makes
/// before it connects to a host or builds anything (`matrix --list` makes them too).
pub fn validate(o: &Options, cells: &[(u64, ByteSize, u32)]) -> Result<Valid> {
    let accel = accel::resolve(o.accel, &KvmProbe::read()).map_err(InputError)?;
    let (recipe_dir, cloud_init_dir) = match &o.inputs {
        Some(i) => (i.recipe_dir.clone(), i.cloud_init_dir.clone()),
        None => (crate::paths::recipe_dir(), crate::paths::cloud_init_dir()),
    };
    let loaded = recipe::load(&recipe_dir).map_err(|e| InputError(e.to_string()))?;
    let root_size_gib = match &o.image {
        Some(src) => crate::image::import::check(src).map_err(|e| InputError(format!("{e:#}")))?.virtual_size / ByteSize::GIB,
        None => loaded.recipe.root_size_gib,
    };
    // RAM is checked against this machine before any connection when every host is this
    // machine as it is; otherwise against the roomiest host once they are reached.
    let only_here = o.hosts.iter().all(|s| s.access == Access::Local && s.memory_mib.is_none());
    let available = match only_here {
        true => crate::proc::host_memory().context("cannot read /proc/meminfo")?.1,
        false => u64::MAX,
    };
    let limits = check::HostLimits { available_bytes: available, accel, root_size_gib };
    let c = &o.cell;
    if c.boot == crate::results::model::Boot::Saved && o.hosts.iter().any(|h| h.access != Access::Local) {
        return Err(InputError("--boot saved runs cells on this machine only: a remote host boots them cold (drop --boot saved, or the remote hosts)".into()).into());
    }
    for &(ram, size, concurrency) in cells {
        check::validate_cell(ram, size, c.cpus, c.timeout_s, c.sample_interval_ms, limits)?;
        if concurrency == 0 || concurrency > crate::plan::key::MAX_CONCURRENCY {
            return Err(InputError(format!("--concurrency {concurrency}: use 1 to {} uploads at once", crate::plan::key::MAX_CONCURRENCY)).into());
        }
        let stored = size.bytes().saturating_mul(concurrency as u64);
        let room = check::disk_room(root_size_gib);
        if stored > room {
            return Err(InputError(format!("--concurrency {concurrency} × {size}: the guest must store {} but its root filesystem holds at most {}", human(stored), human(room))).into());
        }
    }
    let targets = target::choose_all(&o.targets, o.target_mode)?;
    let target_bin = crate::paths::target_binary();
    let needs_reference = targets.iter().any(|t| matches!(t.choice, target::Choice::Reference));
    for bin in [needs_reference.then_some(&target_bin), Some(&crate::paths::probe_binary())].into_iter().flatten() {
        if !bin.is_file() {
            return Err(InputError(format!("{} is missing: build it with `cargo build --release` (it is built beside perfvm)", bin.display())).into());
        }
    }
    let templates = crate::cloudinit::seed::load_templates(&cloud_init_dir).map_err(|e| InputError(format!("{e:#}")))?;
    Ok(Valid { accel, loaded, only_here, targets, templates })
}

/// Everything before the first cell, for cells of these shapes (RAM, file size, uploads at
/// once). `say` reports what takes a while (an image upload to a host).
pub fn preflight(o: &Options, cells: &[(u64, ByteSize, u32)], say: &dyn Fn(String)) -> Result<Ready> {
    let Valid { accel, loaded, only_here, targets, templates } = validate(o, cells)?;
    // Hosts that cannot be reached are skipped with a warning, as long as one can.
    let mut reachable = Vec::new();
    let mut skipped = Vec::new();
    for spec in &o.hosts {
        match crate::hypervisor::conn::open(&spec.uri) {
            Ok(conn) => reachable.push((spec.clone(), conn)),
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
            check::ram_fits(ram, room.saturating_mul(ByteSize::MIB), accel, &name)?;
        }
    }
    // Last of the checks, since it creates the results directory.
    crate::rundir::check_writable(&o.results_dir).map_err(InputError)?;
    let cache = crate::paths::cache_dir();
    // Each target's spec and image (a profile's packages make an image variant, built once
    // and cached like the base), held for as long as cells may boot it.
    let mut per_target = Vec::new();
    for chosen in &targets {
        let target = target::spec(&chosen.choice, chosen.mode, &cache)?;
        if o.cell.download && target.download.is_none() {
            return Err(InputError(format!("--download: target {} has no [download] url in its profile", target.name)).into());
        }
        let image = match &o.image {
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
            None => crate::image::build::ensure(&cache, &loaded.with_packages(&target.packages))?,
        };
        let in_use = std::sync::Arc::new(crate::image::hold(&cache, &image.id).with_context(|| format!("cannot hold image {}", image.id))?);
        per_target.push((target, image, in_use));
    }
    let mut hosts = Vec::new();
    'hosts: for (spec, conn) in reachable {
        let mut envs = Vec::new();
        let mut conn = Some(conn);
        for (target, image, in_use) in &per_target {
            // One connection per target's environment: a host's state (a remote pool's image
            // volumes) is per image.
            let c = match conn.take() {
                Some(c) => c,
                None => match crate::hypervisor::conn::open(&spec.uri) {
                    Ok(c) => c,
                    Err(e) => {
                        skipped.push(format!("{}: {e}", spec.name));
                        continue 'hosts;
                    }
                },
            };
            match on_host(&spec, c, image, say) {
                Ok(host) => envs.push(CellEnv { host, cache: cache.clone(), image: image.clone(), image_in_use: in_use.clone(), target: target.clone(), templates: templates.clone() }),
                Err(e) => {
                    skipped.push(format!("{}: {e:#}", spec.name));
                    continue 'hosts;
                }
            }
        }
        hosts.push((spec, envs));
    }
    if hosts.is_empty() {
        anyhow::bail!("no host can run cells: {}", skipped.join("; "));
    }
    for s in &skipped {
        say(format!("warning: host skipped: {s}"));
    }
    Ok(Ready { accel, hosts, tags: targets.iter().map(|t| t.tag).collect(), skipped })
}

/// A host ready for cells: a local host as it is; a remote one gets the pool and the image's
/// volumes first (uploaded once per image id). Leftovers of this machine's dead perfvm
/// processes are removed on every host (domains record the machine that made them).
fn on_host(spec: &HostSpec, conn: virt::connect::Connect, image: &crate::image::Image, say: &dyn Fn(String)) -> Result<Host> {
    let removed = crate::hypervisor::orphans::remove_orphans(&conn, spec.uri == crate::hypervisor::conn::DEFAULT_URI)?;
    if !removed.is_empty() {
        say(format!("removed what dead perfvm processes left on {}: {}", spec.name, removed.join(", ")));
    }
    Ok(match &spec.access {
        Access::Local => Host::local(spec.name.clone(), spec.uri.clone(), conn),
        Access::Ssh(ssh) => {
            let r = crate::hosts::prepare_remote(&conn, ssh.clone(), &spec.pool_path, image, say).with_context(|| format!("host {} ({})", spec.name, spec.uri))?;
            Host::remote(spec.name.clone(), spec.uri.clone(), conn, r)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_and_limit_take_one_target_and_say_where_several_go() {
        let arg = |s: &str| target::TargetArg::parse(s).unwrap();
        let mut o = Options {
            cell: CellSettings { cpus: 2, timeout_s: 600, seed: 1, content: ContentKind::Random, transfer: Transfer::ContentLength, download: false, sample_interval_ms: 100, sample_memory_only: false, verify: Default::default(), boot: Default::default(), hook_before: None, hook_after: None },
            accel: AccelChoice::Tcg,
            targets: vec![arg("dufs")],
            target_mode: None,
            image: None,
            hosts: Vec::new(),
            results_dir: "results".into(),
            db: None,
            label: None,
            inputs: None,
        };
        assert_eq!(o.one_target("run").unwrap().name, "dufs");
        o.targets.push(arg("perfvm-target:memory"));
        let e = o.one_target("limit").unwrap_err().0;
        assert!(e.contains("perfvm limit measures one target") && e.contains("perfvm matrix --target a,b"), "{e}");
    }
}
