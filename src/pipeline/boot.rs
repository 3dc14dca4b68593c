//! Boot: render the domain XML and start a transient domain through libvirt.

use super::{CellConfig, CellEnv, CellError};
use crate::results::model::ExitReason;
use crate::hypervisor::domain_xml::{self, DomainSpec};
use crate::hypervisor::guard::DomainGuard;
use super::prepare::Prepared;

pub fn spec(env: &CellEnv, cfg: &CellConfig, p: &Prepared) -> DomainSpec {
    // A remote host's libvirtd opens its own copies of the files, by its own paths.
    let (boot, disk, seed, console_log) = match (&env.host.remote, &p.remote) {
        (Some(r), Some((files, _))) => (r.boot.clone(), files.overlay.clone().into(), files.seed.clone().into(), files.console.clone().into()),
        _ => (env.image.boot(), p.work.overlay(), p.work.seed(), p.work.console_log()),
    };
    DomainSpec {
        name: cfg.domain_name.clone(),
        accel: cfg.accel,
        ram_mib: cfg.ram_mib,
        cpus: cfg.cpus,
        boot,
        disk,
        seed,
        console_log,
        host_port: p.forward_port,
        guest_port: env.target.guest_port,
        ssh_port: p.ssh_port,
        owner_pid: std::process::id(),
        owner_machine: crate::proc::machine_id(),
        run_id: cfg.run_id.clone(),
        work_dir: p.work.path.clone(),
        keep: cfg.keep_vm,
    }
}

pub fn boot(env: &CellEnv, spec: &DomainSpec) -> Result<DomainGuard, CellError> {
    let xml = domain_xml::render(spec);
    // A remote guest ends with this process's connection to its host, however that ends
    // (SIGKILL, a lost network, Ctrl-C on a terminal, which kills the ssh libvirt runs): a
    // guest left running would hold another machine's memory until someone noticed.
    let flags = if env.host.remote.is_some() { virt::sys::VIR_DOMAIN_START_AUTODESTROY } else { 0 };
    let dom = env
        .conn
        .create_domain_xml(&xml, flags)
        .map_err(|e| CellError::new(ExitReason::BootFailed, format!("libvirt could not start the domain: {}", e.message())))?;
    Ok(DomainGuard::new(dom, spec.name.clone()))
}

/// qemu's pid, from the pid file libvirt keeps for each running domain.
pub fn qemu_pid(domain_name: &str) -> Option<i32> {
    std::fs::read_to_string(format!("/run/libvirt/qemu/{domain_name}.pid")).ok()?.trim().parse().ok()
}
