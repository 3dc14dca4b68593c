//! `--boot saved`: cells restored from a guest booted and saved once. They boot real guests
//! (`#[ignore]`d in a plain `cargo test`; CI runs them with --include-ignored).

mod common;

use common::{MIB, Running, cell, domains_of, perfvm, vm_lock};
use perfvm::results::model::{Boot, CellResult, ExitReason, Verify};

fn saved_state(r: &CellResult) -> &perfvm::results::model::SavedState {
    r.saved_state.as_ref().expect("saved_state recorded")
}

fn assert_restored_and_verified(r: &CellResult) {
    assert_eq!(r.exit_reason, ExitReason::Success, "{:?}", r.error);
    assert_eq!(r.boot, Boot::Saved);
    assert_eq!(r.verified, Some(true));
    assert_eq!(r.verification.as_ref().map(|v| v.by), Some(Verify::Host));
    let p = &r.phases;
    assert!(p.boot.is_some() && p.agent.is_some() && p.deliver.is_some() && p.healthy.is_some(), "{p:?}");
    assert_eq!(p.cloud_init, None, "no cloud-init in a restored guest");
}

/// The same cell cold and from a saved guest: the first saved cell builds the state, the next
/// restores it; the target's memory is the same within noise (it starts fresh in both: the
/// saved guest holds no target); a saved state whose memory file changed is built again, never
/// restored; memory mode at 256 MiB is OOM-killed as on a cold boot.
#[test]
#[ignore = "boots real guests: run with --include-ignored (CI does)"]
fn a_saved_guest_is_built_once_restored_checked_and_measures_the_same() {
    let args = ["--ram", "256", "--file-size", "16M"];
    let (cold, _, _) = cell(&args);
    assert_eq!(cold.boot, Boot::Cold);
    assert_eq!(cold.saved_state, None);

    let saved_args = [&args[..], &["--boot", "saved"]].concat();
    let (first, _, out) = cell(&saved_args);
    assert_eq!(out.status.code(), Some(0));
    assert_restored_and_verified(&first);
    let st = saved_state(&first).clone();
    let (second, dir, _) = cell(&saved_args);
    assert_restored_and_verified(&second);
    let st2 = saved_state(&second);
    assert_eq!((st2.id.as_str(), st2.slot, st2.built_seconds), (st.id.as_str(), st.slot, None), "restored, not built again");
    // Restored in seconds, not booted: the cold boot's agent + cloud-init took ~30 s here.
    let (cold_ready, saved_ready) = (cold.phases.agent.unwrap() + cold.phases.cloud_init.unwrap(), second.phases.agent.unwrap() + second.phases.deliver.unwrap());
    assert!(saved_ready < cold_ready, "saved {saved_ready} s, cold {cold_ready} s");
    assert!(dir.join("console.log").is_file());

    // The target's own memory, cold against saved: a few hundred KiB of noise on ~2 MiB.
    let anon = |r: &CellResult| r.memory.as_ref().and_then(|m| m.anon_peak_bytes).expect("anon sampled") as f64;
    let (a, b) = (anon(&cold), anon(&second));
    assert!((a - b).abs() < 1.0 * MIB as f64 + 0.25 * a, "anon peak cold {a} saved {b}");
    let ws = |r: &CellResult| r.peak_memory_bytes.unwrap() as f64;
    assert!((ws(&cold) - ws(&second)).abs() < 2.0 * MIB as f64 + 0.25 * ws(&cold), "working set cold {} saved {}", ws(&cold), ws(&second));

    // Same size, other bytes: found by its sha256 and built again.
    let slot_dir = perfvm::saved::saved_dir(&perfvm::paths::cache_dir()).join(&st.id).join(format!("slot-{}", st.slot));
    let memory = slot_dir.join(perfvm::saved::MEMORY);
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&memory).unwrap();
        f.seek(SeekFrom::Start(4 * MIB)).unwrap();
        f.write_all(b"corrupt").unwrap();
    }
    let (third, _, _) = cell(&saved_args);
    assert_restored_and_verified(&third);
    let why = saved_state(&third).rebuilt_because.clone().expect("rebuilt, and why");
    assert!(why.contains("memory.save has changed"), "{why}");
    assert!(saved_state(&third).built_seconds.is_some());

    let (oom, _, out) = cell(&["--ram", "256", "--file-size", "320M", "--target-mode", "memory", "--boot", "saved"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(oom.exit_reason, ExitReason::OomKilled, "{:?}", oom.error);
    assert!(oom.oom_kills.unwrap() >= 1);
    assert_eq!(saved_state(&oom).id, st.id, "memory mode shares the guest: the mode is in the unit, not the guest");
    assert!(oom.peak_memory_bytes.unwrap() > 100 * MIB);
}

/// A profile target (its own image variant, files and set-up commands) from a saved guest.
#[test]
#[ignore = "boots real guests: run with --include-ignored (CI does)"]
fn a_profile_target_runs_from_a_saved_guest() {
    let (r, _, _) = cell(&["--ram", "384", "--file-size", "8M", "--target", "dufs", "--boot", "saved"]);
    assert_restored_and_verified(&r);
    assert_eq!(r.target.name, "dufs");
    // Its own saved guest: of the profile's image variant, at its RAM.
    let st = saved_state(&r);
    let meta = perfvm::saved::saved_dir(&perfvm::paths::cache_dir()).join(&st.id).join(format!("slot-{}", st.slot)).join(perfvm::saved::META);
    let meta: perfvm::saved::Meta = serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
    assert_eq!((meta.key.image_id.as_str(), meta.key.ram_mib), (r.image_id.as_str(), 384));
}

/// Bad combinations are refused before anything boots.
#[test]
fn saved_boot_refuses_what_it_cannot_do() {
    let out = common::perfvm(&["run", "--ram", "256", "--file-size", "1M", "--boot", "saved", "--ssh-key", "/nonexistent.pub"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--ssh-key needs --boot cold"), "{err}");
    let out = common::perfvm(&["run", "--ram", "256", "--file-size", "1M", "--boot", "saved", "--keep-vm"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--keep-vm needs --boot cold"));
    let out = common::perfvm(&["run", "--ram", "256", "--file-size", "1M", "--boot", "warm"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cold"), "the choices are listed");
}

/// libvirt cannot autodestroy a restored guest with perfvm's connection: a perfvm killed with
/// SIGKILL mid-upload leaves it running. The next perfvm removes it (its owner is dead) before
/// its cells start, and restores the same slot, whose lock died with the killed process.
#[test]
#[ignore = "boots real guests: run with --include-ignored (CI does)"]
fn a_restored_cell_killed_with_sigkill_is_cleaned_up_and_the_slot_reused() {
    let _vm = vm_lock();
    let results = tempfile::tempdir().unwrap();
    let rd = results.path().to_str().unwrap();
    let p = Running::spawn(&["run", "--ram", "256", "--file-size", "128M", "--boot", "saved", "--timeout", "300", "--results-dir", rd]);
    p.wait_for(": upload", 300);
    let pid = p.pid();
    let left = domains_of(pid);
    assert_eq!(left.len(), 1, "{left:?}");
    p.signal(nix::sys::signal::Signal::SIGKILL);
    let (code, _) = p.wait(30);
    assert_eq!(code, None, "killed by a signal");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(domains_of(pid), left, "a restored guest outlives its perfvm");

    let out = perfvm(&["run", "--ram", "256", "--file-size", "1M", "--boot", "saved", "--timeout", "300", "--results-dir", rd]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("removed what dead perfvm processes left on") && err.contains(&left[0]), "{err}");
    assert!(domains_of(pid).is_empty());
    let dir = common::run_dirs(results.path()).into_iter().max().unwrap();
    let r = common::read_result(&dir.join("result.json"));
    assert_eq!(r.boot, Boot::Saved);
    assert_eq!(r.domain.as_deref(), Some(left[0].as_str()), "the same slot, restored again");
    assert_eq!(saved_state(&r).built_seconds, None, "restored, not built");
    common::assert_no_leftovers(&r);
}
