//! `perfvm run`: one cell on one host, in a run directory of its own, recorded in the history.

use crate::error::InputError;
use crate::hosts::spec::Access;
use crate::pipeline::Reporter;
use crate::plan::key::CellKey;
use crate::results::model::CellResult;
use crate::setup::{self, Options};
use crate::size::ByteSize;
use anyhow::{Context, Result};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// What only a single cell has.
#[derive(Debug, Clone, Default)]
pub struct SingleOptions {
    pub ram: u64,
    /// `--file-size`, or `--file` (a file of the user's: its size and bytes).
    pub file_size: Option<ByteSize>,
    pub file: Option<PathBuf>,
    pub concurrency: u32,
    pub keep_vm: bool,
    /// `--ssh-key`: the public key file.
    pub ssh_key: Option<PathBuf>,
}

pub struct Ran {
    pub result: CellResult,
    pub run_dir: PathBuf,
    /// The libvirt URI of the host it ran on (to reach a kept guest).
    pub uri: String,
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

/// Run the cell. `say` is told what set-up does that takes a while, and the cell's facts.
pub async fn run(o: &Options, s: &SingleOptions, cancel: &CancellationToken, rep: &dyn Reporter, say: &dyn Fn(String)) -> Result<Ran> {
    o.one_target("run")?;
    if o.cell.boot == crate::results::model::Boot::Saved && s.ssh_key.is_some() {
        return Err(InputError("--ssh-key needs --boot cold: the key is given to the guest by cloud-init as it boots, which a saved guest did long before".into()).into());
    }
    if o.cell.boot == crate::results::model::Boot::Saved && s.keep_vm {
        return Err(InputError("--keep-vm needs --boot cold: a kept guest would hold its saved guest's name (one restored copy at a time) after perfvm ends".into()).into());
    }
    let ssh_key = match &s.ssh_key {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| InputError(format!("--ssh-key {}: {e}", p.display())))?;
            Some(crate::cloudinit::seed::SshKey::parse(&text).map_err(|e| InputError(format!("--ssh-key {}: {e}", p.display())))?)
        }
        None => None,
    };
    let (size, file) = match (&s.file, s.file_size) {
        (Some(p), _) => (file_size_of(p)?, Some(std::path::absolute(p).unwrap_or_else(|_| p.clone()))),
        (None, Some(size)) => (size, None),
        (None, None) => return Err(InputError("give --file-size SIZE or --file PATH".into()).into()),
    };
    if o.hosts.len() > 1 {
        return Err(InputError(format!("perfvm run runs one cell on one host; {} hosts were given (spread cells with `perfvm matrix`)", o.hosts.len())).into());
    }
    if o.hosts[0].access != Access::Local && (s.keep_vm || s.ssh_key.is_some()) {
        return Err(InputError("--keep-vm and --ssh-key need a local host: a remote guest's ports are reached through a tunnel that ends with the cell".into()).into());
    }
    let mut ready = tokio::task::block_in_place(|| setup::preflight(o, &[(s.ram, size, s.concurrency)], say))?;
    let env = ready.one_target().remove(0).1;
    let key = CellKey { ram_mib: s.ram, size, concurrency: s.concurrency, repeat: 1, target: crate::plan::key::TargetTag::NONE };
    let run_id = crate::rundir::new_run_id(&key.shape());
    let run_dir = crate::rundir::create_single(&o.results_dir, &run_id).with_context(|| format!("cannot create the run directory in {}", o.results_dir.display()))?;
    // Unique on the host: the run id's random tail and our pid.
    let tag = format!("{}-{}", run_id.rsplit('-').next().unwrap_or("0"), std::process::id());
    let mut cfg = o.cell_config(ready.accel, &run_id, &key, 1, &tag);
    // A single cell is named by its shape, without the repetition.
    (cfg.cell, cfg.domain_name) = (key.shape(), format!("{}{}-{tag}", crate::hypervisor::NAME_PREFIX, key.shape()));
    (cfg.file, cfg.keep_vm, cfg.ssh_key) = (file, s.keep_vm, ssh_key);
    say(format!(
        "cell {} ({} MiB RAM, {} vCPU, {}, target {} {}, image {})",
        cfg.cell, cfg.ram_mib, cfg.cpus, cfg.accel, env.target.name, env.target.mode, env.image.id
    ));
    let result = crate::pipeline::run_cell(&env, &cfg, &run_dir, cancel, rep).await;
    if !result.interrupted {
        crate::history::Recorder::open(o.db_path(), crate::history::single_run(&run_dir, &result, o.label.as_deref())).record(&[&result]);
    }
    Ok(Ran { result, run_dir, uri: env.host.uri.clone() })
}
