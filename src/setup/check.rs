//! Checks of a cell's numbers against each other, the host and the image, before any VM
//! starts. Pure; each message names the flag and what would work.

use crate::accel::Accel;
use crate::error::InputError;
use crate::size::{ByteSize, human};

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

/// The longest `--timeout`: a week (deadlines further out overflow the clock).
pub const MAX_TIMEOUT_S: u64 = 7 * 24 * 3600;

/// What the host and the image allow a cell.
#[derive(Debug, Clone, Copy)]
pub struct HostLimits {
    pub available_bytes: u64,
    pub accel: Accel,
    pub root_size_gib: u64,
}

/// What uploads may store on the guest's root filesystem: the OS takes ~0.5 GiB, and a margin
/// is kept for logs.
pub fn disk_room(root_size_gib: u64) -> u64 {
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
    if timeout_s > MAX_TIMEOUT_S {
        return e(format!("--timeout {timeout_s}: use at most {MAX_TIMEOUT_S} s (a week)"));
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
        let e = validate_cell(512, ByteSize(1), 2, u64::MAX / 2, 100, HOST).unwrap_err().0;
        assert!(e.contains("at most 604800"), "{e}");
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
