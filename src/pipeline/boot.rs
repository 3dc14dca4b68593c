//! Boot: render the domain XML and start a transient domain through libvirt.

use super::cell::{CellConfig, CellEnv, CellError};
use super::prepare::Prepared;
use crate::hypervisor::domain_xml::{self, DomainSpec};
use crate::hypervisor::guard::DomainGuard;
use crate::results::model::ExitReason;

pub fn spec(env: &CellEnv, cfg: &CellConfig, p: &Prepared) -> DomainSpec {
    let files = env.host.domain_files(&p.placed, &env.image);
    DomainSpec {
        name: cfg.domain_name.clone(),
        uuid: None,
        accel: cfg.accel,
        ram_mib: cfg.ram_mib,
        cpus: cfg.cpus,
        boot: files.boot,
        disk: files.disk,
        seed: files.seed,
        console_log: files.console,
        host_port: p.placed.forward_port(),
        guest_port: env.target.guest_port,
        ssh_port: p.ssh_port,
        owner_pid: std::process::id(),
        owner_machine: crate::proc::machine_id(),
        owner_id: crate::owner::me().to_string(),
        run_id: cfg.run_id.clone(),
        work_dir: p.work.path.clone(),
        keep: cfg.keep_vm,
    }
}

pub fn boot(env: &CellEnv, spec: &DomainSpec) -> Result<DomainGuard, CellError> {
    let xml = domain_xml::render(spec);
    // A guest ends with perfvm's connection to its host, however that ends (SIGKILL, a lost
    // network, a crash): left running it would hold the host's memory until someone noticed.
    // Except a guest kept on purpose (`--keep-vm`).
    let flags = if spec.keep { 0 } else { virt::sys::VIR_DOMAIN_START_AUTODESTROY };
    let dom = env
        .host
        .conn
        .create_domain_xml(&xml, flags)
        .map_err(|e| CellError::new(ExitReason::BootFailed, format!("libvirt could not start the domain: {}", e.message())))?;
    Ok(DomainGuard::new(dom, spec.name.clone()))
}
