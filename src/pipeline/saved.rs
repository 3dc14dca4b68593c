//! `--boot saved`: the cell takes a slot of a saved guest (built the first time: the image booted
//! cold with perfvm's files but no target, then saved by libvirt), restores it onto its own
//! overlay with its own port forward, sets the guest's clock, and starts its target through the
//! guest agent. The cache itself (keys, slots, checks, the restore XML) is `crate::saved`'s.

use super::cell::{CellConfig, CellEnv, CellError, blocking};
use super::{boot, ready};
use crate::cloudinit::seed;
use crate::guest::agent::Agent;
use crate::hypervisor::domain_xml::{self, DomainSpec, escape};
use crate::hypervisor::guard::DomainGuard;
use crate::results::model::{ExitReason, SavedState};
use crate::saved::{self, Key, Meta, Parts, Slot, Taken};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use virt::domain::Domain;

/// A slot held for one cell, ready to restore.
pub struct Restorable {
    pub slot: Slot,
    template: String,
    pub info: SavedState,
}

fn harness(m: impl Into<String>) -> CellError {
    CellError::new(ExitReason::HarnessError, m)
}

fn guest_files(env: &CellEnv) -> Vec<crate::profile::DeliveredFile> {
    [seed::harness_files(crate::paths::probe_binary()), env.target.files.clone()].concat()
}

fn build_docs(env: &CellEnv, instance_id: &str) -> Result<seed::SeedDocs, CellError> {
    seed::render_docs(&env.templates.0, &env.templates.1, &env.target, &guest_files(env), instance_id, None, None).map_err(|e| harness(format!("cloud-init: {e:#}")))
}

/// What defines the saved guest of this cell's shape.
pub fn key(env: &CellEnv, cfg: &CellConfig) -> Result<Key, CellError> {
    let disk = env.image.disk();
    let m = std::fs::metadata(&disk).map_err(|e| harness(format!("{}: {e}", disk.display())))?;
    let mtime = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
    let mut h = Sha256::new();
    h.update(build_docs(env, "perfvm-saved")?.user_data.as_bytes());
    for f in guest_files(env) {
        h.update(format!("\n{} {:o}\n", f.guest, f.mode).as_bytes());
        h.update(std::fs::read(&f.host).map_err(|e| harness(format!("{}: {e}", f.host.display())))?);
    }
    let (libvirt, qemu) = crate::hypervisor::conn::versions(&env.host.conn);
    static PERFVM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let perfvm = PERFVM.get_or_init(|| std::env::current_exe().ok().and_then(|p| saved::sha256_file(&p).ok()).map(|h| h[..16].to_string()).unwrap_or_default());
    Ok(Key {
        format: saved::FORMAT,
        image_id: env.image.id.clone(),
        image_disk: format!("{}:{mtime}", m.len()),
        ram_mib: cfg.ram_mib,
        cpus: cfg.cpus,
        accel: cfg.accel.as_str().to_string(),
        guest_sha256: hex::encode(h.finalize()),
        perfvm: perfvm.clone(),
        hypervisor: format!("libvirt {} qemu {}", libvirt.unwrap_or_default(), qemu.unwrap_or_default()),
    })
}

/// A slot of this cell's saved guest, held until the result is dropped: a built one that checks
/// out, else one this call builds (or builds again, saying why). While another cell or perfvm
/// builds the same state, this waits for it rather than build it twice. A build that fails
/// leaves its console as `console-build.log` in `out`.
pub async fn take(env: &CellEnv, cfg: &CellConfig, out: &std::path::Path, cancel: &CancellationToken) -> Result<Restorable, CellError> {
    let key = key(env, cfg)?;
    let id = key.id();
    let give_up = Instant::now() + cfg.timeout * 2;
    let mut said = false;
    loop {
        let cache = env.cache.clone();
        let state = id.clone();
        let taken = blocking(move || saved::try_take(&cache, &state).map_err(|e| harness(format!("saved guest {state}: {e}")))).await?;
        let (slot, rebuilt_because) = match taken {
            Some(Taken::Built(slot)) => {
                let (k, s) = (key.clone(), slot);
                let (slot, checked) = blocking(move || {
                    let r = saved::check(&s, &k);
                    Ok((s, r))
                })
                .await?;
                match checked {
                    Ok(_) => return restorable(slot, id, None, None),
                    Err(why) => {
                        eprintln!("perfvm: {}: saved guest {id} (slot {}) cannot be restored: {why}; building it again", cfg.cell, slot.index);
                        (slot, Some(why))
                    }
                }
            }
            Some(Taken::Empty(slot)) => {
                let why = std::fs::read_to_string(slot.path(saved::REBUILD_REASON)).ok();
                (slot, why)
            }
            None => {
                if !said {
                    eprintln!("perfvm: {}: waiting for saved guest {id}: another cell is building it, or all {} copies are in use", cfg.cell, saved::MAX_SLOTS);
                    said = true;
                }
                if Instant::now() > give_up {
                    return Err(harness(format!(
                        "saved guest {id}: no copy became free within {} s (at most {} cells of one RAM size run from saved guests at once: lower --jobs)",
                        (cfg.timeout * 2).as_secs(),
                        saved::MAX_SLOTS
                    )));
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    _ = cancel.cancelled() => return Err(harness("interrupted by a signal")),
                }
            }
        };
        eprintln!("perfvm: {}: booting and saving a guest for {} MiB, {} vCPU (once; later cells of this shape restore it)", cfg.cell, cfg.ram_mib, cfg.cpus);
        let t0 = Instant::now();
        if let Err(mut e) = build(env, cfg, &slot, &key, cancel).await {
            let _ = std::fs::copy(slot.path(saved::BUILD_CONSOLE), out.join("console-build.log"));
            let _ = slot.clear();
            e.message = format!("saving a booted guest: {}{}", e.message, if out.join("console-build.log").is_file() { " (its console: console-build.log)" } else { "" });
            return Err(e);
        }
        return restorable(slot, id, Some(t0.elapsed().as_secs_f64()), rebuilt_because);
    }
}

fn restorable(slot: Slot, id: String, built_seconds: Option<f64>, rebuilt_because: Option<String>) -> Result<Restorable, CellError> {
    let template = std::fs::read_to_string(slot.path(saved::XML)).map_err(|e| harness(format!("saved guest {id}: {e}")))?;
    let info = SavedState { id, slot: slot.index, built_seconds: built_seconds.map(|s| (s * 1000.0).round() / 1000.0), rebuilt_because };
    Ok(Restorable { slot, template, info })
}

/// Boot the image cold into `slot` with perfvm's files but no target, wait for cloud-init, save
/// it, and record what was saved. Everything is written before `meta.json`, which is last: a
/// build cut off anywhere leaves a slot that is not built. A signal ends only the waits for the
/// guest: once the save began it runs to its end, so nothing writes into the slot after its
/// lock is given back.
async fn build(env: &CellEnv, cfg: &CellConfig, slot: &Slot, key: &Key, cancel: &CancellationToken) -> Result<(), CellError> {
    let t0 = Instant::now();
    let name = slot.name();
    let files = guest_files(env);
    {
        let (slot_dir, seed_path, disk) = (slot.dir.clone(), slot.path(saved::SEED), slot.path(saved::DISK));
        let docs = build_docs(env, &name)?;
        let image_disk = env.image.disk();
        slot.clear().map_err(|e| harness(format!("cannot clear {}: {e}", slot.dir.display())))?;
        tokio::task::block_in_place(|| {
            clear_leftover(env, &name)?;
            seed::write_iso(&docs, &files, &slot_dir, &seed_path).map_err(|e| harness(format!("seed: {e:#}")))?;
            crate::hosts::overlay(&image_disk, &disk).map_err(harness)
        })?;
    }
    let port = crate::proc::free_loopback_port().map_err(|e| harness(format!("no free loopback port: {e}")))?;
    let spec = DomainSpec {
        name: name.clone(),
        uuid: Some(slot.uuid()),
        accel: cfg.accel,
        ram_mib: cfg.ram_mib,
        cpus: cfg.cpus,
        boot: env.image.boot(),
        disk: slot.path(saved::DISK),
        seed: slot.path(saved::SEED),
        console_log: slot.path(saved::BUILD_CONSOLE),
        host_port: port,
        guest_port: env.target.guest_port,
        ssh_port: None,
        owner_pid: std::process::id(),
        owner_machine: crate::proc::machine_id(),
        owner_id: crate::owner::me().to_string(),
        run_id: cfg.run_id.clone(),
        work_dir: slot.dir.clone(),
        keep: false,
    };
    let mut guard = tokio::task::block_in_place(|| boot::boot(env, &spec))?;
    let dom = guard.domain().clone();
    let agent = Agent::new(dom.clone());
    let deadline = Instant::now() + cfg.timeout;
    let booted = async {
        ready::wait_agent(&dom, &agent, cfg.accel, deadline, Some(&spec.console_log), super::boot_stall()).await?;
        ready::wait_cloud_init(&dom, &agent, cfg.accel, deadline).await
    };
    tokio::select! {
        r = booted => r?,
        _ = cancel.cancelled() => return Err(harness("interrupted by a signal")),
    }
    let memory = slot.path(saved::MEMORY);
    let save_to = memory.clone();
    blocking(move || {
        let _ = agent.exec("/bin/sync", &[], Duration::from_secs(60));
        save(&dom, &save_to)
    })
    .await?;
    // libvirt stopped the guest as it saved it.
    guard.forget();

    let conn = env.host.conn.clone();
    let (memory_path, disk, xml_path, meta_path) = (memory.clone(), slot.path(saved::DISK), slot.path(saved::XML), slot.path(saved::META));
    let build_parts = Parts {
        disk: escape(&spec.disk.to_string_lossy()),
        console: escape(&spec.console_log.to_string_lossy()),
        netdev: escape(&domain_xml::netdev(&spec)),
        metadata: String::new(),
    };
    let key = key.clone();
    blocking(move || {
        let xml = conn.save_image_xml_desc(&memory_path.to_string_lossy(), 0).map_err(|e| harness(format!("cannot read the saved guest's XML: {}", e.message())))?;
        let template = saved::template(&xml, &build_parts).map_err(harness)?;
        std::fs::write(&xml_path, template).map_err(|e| harness(format!("{}: {e}", xml_path.display())))?;
        // Never written again: each cell's overlay stacks on it, and it must match the memory.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&disk, std::fs::Permissions::from_mode(0o444)).map_err(|e| harness(format!("{}: {e}", disk.display())))?;
        let io = |p: &std::path::Path, e: std::io::Error| harness(format!("{}: {e}", p.display()));
        let meta = Meta {
            key,
            memory_bytes: std::fs::metadata(&memory_path).map_err(|e| io(&memory_path, e))?.len(),
            memory_sha256: saved::sha256_file(&memory_path).map_err(|e| io(&memory_path, e))?,
            disk_bytes: std::fs::metadata(&disk).map_err(|e| io(&disk, e))?.len(),
            disk_sha256: saved::sha256_file(&disk).map_err(|e| io(&disk, e))?,
            built: chrono::Utc::now(),
            build_seconds: (t0.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        };
        crate::paths::write_atomic(&meta_path, serde_json::to_string_pretty(&meta).expect("meta serializes").as_bytes()).map_err(|e| io(&meta_path, e))
    })
    .await
}

/// libvirt's save of a running guest to `path` (memory and device state; the guest stops).
/// The `virt` crate does not wrap virDomainSaveFlags.
fn save(dom: &Domain, path: &std::path::Path) -> Result<(), CellError> {
    let to = std::ffi::CString::new(path.to_string_lossy().as_bytes()).map_err(|e| harness(e.to_string()))?;
    // SAFETY: a live domain pointer and a NUL-terminated path that outlive the call.
    let rc = unsafe { virt::sys::virDomainSaveFlags(dom.as_ptr(), to.as_ptr(), std::ptr::null(), 0) };
    if rc < 0 {
        return Err(CellError::new(ExitReason::BootFailed, format!("libvirt could not save the guest: {}", virt::error::Error::last_error().message())));
    }
    Ok(())
}

/// A domain under a slot's name that its owner left behind (killed with SIGKILL: libvirt cannot
/// autodestroy a restored guest), destroyed; one of a live perfvm is an error (never touched).
fn clear_leftover(env: &CellEnv, name: &str) -> Result<(), CellError> {
    let Ok(dom) = env.host.conn.lookup_domain_by_name(name) else { return Ok(()) };
    let owner = dom.metadata(virt::sys::VIR_DOMAIN_METADATA_ELEMENT as i32, Some(crate::hypervisor::METADATA_NS), 0).ok().and_then(|m| domain_xml::parse_owner(&m));
    let dead = owner.as_ref().is_some_and(|o| crate::hypervisor::orphans::domain_is_orphan(o, &env.cache, &crate::proc::machine_id()));
    if !dead {
        return Err(harness(format!("{name} is running and not a leftover (a --keep-vm guest, or another perfvm's): destroy it with `virsh destroy {name}` if it is not needed")));
    }
    eprintln!("perfvm: {name}: a saved guest left running by a perfvm that was killed: destroying it");
    dom.destroy().map_err(|e| harness(format!("cannot destroy {name}: {}", e.message())))
}

/// Restore the slot's guest as this cell's domain: its overlay, console, port forward and owner.
pub fn restore(env: &CellEnv, spec: &DomainSpec, r: &Restorable) -> Result<DomainGuard, CellError> {
    clear_leftover(env, &spec.name)?;
    let xml = saved::fill(
        &r.template,
        &Parts {
            disk: escape(&spec.disk.to_string_lossy()),
            console: escape(&spec.console_log.to_string_lossy()),
            netdev: escape(&domain_xml::netdev(spec)),
            metadata: domain_xml::metadata(spec),
        },
    );
    let failed = |what: &str, e: virt::error::Error| CellError::new(ExitReason::BootFailed, format!("libvirt could not {what} the saved guest: {}", e.message()));
    if let Err(e) = env.host.conn.restore_domain_flags(&r.slot.path(saved::MEMORY).to_string_lossy(), Some(&xml), 0) {
        // Its name is free, its files checked: libvirt refuses the state itself (a qemu changed
        // under the same version, say). Unmarked as built, so the next cell (a retry) builds it
        // again and says why.
        let err = failed("restore", e);
        let _ = std::fs::write(r.slot.path(saved::REBUILD_REASON), &err.message);
        let _ = std::fs::remove_file(r.slot.path(saved::META));
        return Err(CellError { message: format!("{} (it will be built again)", err.message), ..err });
    }
    match env.host.conn.lookup_domain_by_name(&spec.name) {
        Ok(dom) => Ok(DomainGuard::new(dom, spec.name.clone())),
        Err(e) => {
            // Running but not found by name: by its UUID, then gone (never left running).
            if let Ok(d) = env.host.conn.lookup_domain_by_uuid_string(&r.slot.uuid()) {
                let _ = d.destroy();
            }
            Err(failed("find", e))
        }
    }
}

/// A restored guest's clock (it stopped at the save), then the target: its unit with this cell's
/// secret, the profile's set-up, and the start, as cloud-init does on a cold boot.
pub async fn deliver(dom: &Domain, agent: &Agent, target: &crate::profile::TargetSpec, secret: &crate::profile::Secret, deadline: Instant) -> Result<(), CellError> {
    let (dom, agent) = (dom.clone(), agent.clone());
    let unit_path = format!("/etc/systemd/system/{}", target.unit);
    let unit = target.unit_file(secret);
    let script = deliver_script(&unit_path, &target.unit, target.setup_commands(secret).as_deref());
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
    blocking(move || {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        dom.set_time(now.as_secs() as i64, now.subsec_nanos() as i32, 0)
            .map_err(|e| harness(format!("cannot set the restored guest's clock: {}", e.message())))?;
        agent.write_file(&unit_path, unit.as_bytes()).map_err(|e| harness(format!("cannot write {unit_path}: {e}")))?;
        let out = agent.exec("/bin/sh", &["-c", &script], left).map_err(|e| harness(e.to_string()))?;
        if out.exit_code != 0 {
            return Err(CellError::new(
                ExitReason::BootFailed,
                format!("the target's set-up failed in the guest (exit {}): {}", out.exit_code, String::from_utf8_lossy(&out.stderr).trim()),
            ));
        }
        Ok(())
    })
    .await
}

/// What a restored guest runs once its unit file is written. `start`, not cold boot's `enable
/// --now`: a restored guest never boots again, and enabling costs systemd a reload. No reload
/// either when systemd reads the new unit as it is first asked about it (the saved guest's
/// systemd never loaded it: its build removed the file): reloading takes seconds under TCG.
/// Pure.
fn deliver_script(unit_path: &str, unit: &str, target_setup: Option<&str>) -> String {
    let mut s = format!("set -eu\nchmod 0644 {unit_path}\n");
    if let Some(cmds) = target_setup {
        s.push_str(cmds.trim_end());
        s.push('\n');
    }
    s.push_str(&format!(
        "state=$(systemctl show -p LoadState -p NeedDaemonReload {unit})\n\
         case \"$state\" in *LoadState=loaded*) ;; *) state=reload ;; esac\n\
         case \"$state\" in *NeedDaemonReload=no*) ;; *) systemctl daemon-reload ;; esac\n\
         systemctl start {unit}\n"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_guest_writes_sets_up_then_starts_its_target() {
        let s = deliver_script("/etc/systemd/system/t.service", "t.service", Some("mkdir -p /srv/x\n"));
        let (chmod, setup, reload, start) = (s.find("chmod 0644 /etc/systemd/system/t.service").unwrap(), s.find("mkdir -p /srv/x\n").unwrap(), s.find("systemctl daemon-reload").unwrap(), s.find("systemctl start t.service").unwrap());
        assert!(s.starts_with("set -eu\n") && chmod < setup && setup < reload && reload < start, "{s}");
        assert!(!s.contains("enable"), "never enabled: that reloads systemd");
        // The reload is only for a unit systemd does not see as written: run the decision.
        let decide = |show: &str| {
            let body: String = s.lines().filter(|l| l.starts_with("case")).collect::<Vec<_>>().join("\n");
            let script = format!("state='{show}'\nsystemctl() {{ echo \"$@\"; }}\n{body}\n");
            String::from_utf8(std::process::Command::new("sh").arg("-c").arg(script).output().unwrap().stdout).unwrap()
        };
        assert_eq!(decide("NeedDaemonReload=no\nLoadState=loaded"), "");
        assert_eq!(decide("LoadState=loaded\nNeedDaemonReload=yes"), "daemon-reload\n");
        assert_eq!(decide("LoadState=not-found\nNeedDaemonReload=no"), "daemon-reload\n");
    }
}
