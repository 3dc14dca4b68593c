//! Targets from profiles, end to end: the three shipped real servers (nginx WebDAV from Debian,
//! dufs from crates.io, uploadserver from PyPI) each pass a verified cell through the same
//! pipeline and matrix code as the reference target; a profile's secret never reaches a saved
//! file; broken profiles and images fail the way docs/targets.md says; `--image` boots a user's disk.

mod common;

use common::*;
use perfvm::results::model::{ExitReason, Verify};
use std::time::Instant;

fn assert_verified(r: &perfvm::results::model::CellResult, name: &str, status: u16) {
    assert_eq!(r.exit_reason, ExitReason::Success, "{name}: {:?}", r.error);
    assert!(r.success);
    assert_eq!(r.target.name, name);
    assert_eq!(r.target.mode, "profile");
    assert_eq!(r.target.profile_sha256.as_ref().map(String::len), Some(64));
    assert_eq!(r.http_status, Some(status));
    assert_eq!(r.verified, Some(true), "the stored file's sha256 was checked");
    assert_eq!(r.guest_sha256, r.sha256);
    // Every shipped profile stores on the guest's root filesystem: read on the host.
    let v = r.verification.as_ref().expect("verification recorded");
    assert_eq!((v.by, v.fallback.as_deref()), (Verify::Host, None), "{name}");
    assert!(r.peak_memory_bytes.unwrap() > 0);
}

#[test]
#[ignore = "boots a real guest: run with --include-ignored (CI does)"]
fn nginx_webdav_from_debian_packages_passes_a_verified_cell() {
    let (r, _dir, out) = cell(&["--ram", "512", "--file-size", "128M", "--target", "nginx-webdav"]);
    assert_verified(&r, "nginx-webdav", 201);
    assert_eq!(out.status.code(), Some(0));
    // A real server that streams to disk: small anon, while memory.peak holds the page cache of
    // the file it wrote (what perfvm's headline was before the working set).
    let m = r.memory.as_ref().expect("memory split up");
    let (anon, cgroup_peak) = (m.anon_peak_bytes.unwrap(), m.cgroup_peak_bytes.unwrap());
    assert!(anon < 32 * MIB, "anon {anon}");
    assert!(cgroup_peak > 100 * MIB, "memory.peak {cgroup_peak}");
    assert!(r.peak_memory_bytes.unwrap() < 64 * MIB, "the headline working set {:?}", r.peak_memory_bytes);
    // Its packages made an image variant of its own, beside the base image.
    let base = perfvm::image::recipe::load(&perfvm::paths::recipe_dir()).unwrap().id;
    assert!(r.image_id.starts_with(&format!("{base}-")) && r.image_id != base, "{}", r.image_id);
}

#[test]
#[ignore = "boots a real guest: run with --include-ignored (CI does)"]
fn uploadserver_from_pypi_takes_a_multipart_post_with_auth() {
    let (r, dir, _) = cell(&["--ram", "512", "--file-size", "24M", "--target", "uploadserver", "--download"]);
    assert_verified(&r, "uploadserver", 204);
    let d = r.download.as_ref().expect("download record");
    assert_eq!(d.verified, Some(true));
    let journal = std::fs::read_to_string(dir.join("journal.log")).unwrap();
    assert!(journal.contains("[Uploaded]"), "uploadserver logged the upload:\n{journal}");
}

/// Two targets side by side from a plan (the reference target and dufs, from crates.io) × 2 RAM:
/// one scheduler runs both, each cell is named by its target, matrix.csv, summary.txt and the
/// report show both; interrupted after its first cell, the same command finishes the rest
/// without redoing it.
#[test]
#[ignore = "boots real guests: run with --include-ignored (CI does)"]
fn a_plan_of_two_targets_measures_both_side_by_side_and_resumes() {
    let _one = vm_lock();
    let results = tempfile::tempdir().unwrap();
    let plan = results.path().join("plan.toml");
    std::fs::write(&plan, "targets = [\"perfvm-target:stream\", \"dufs\"]\nram = [384, 512]\nfile_size = [\"16M\"]\njobs = 1\ntimeout = 400\ndownload = true\nresults_dir = \"out\"\n").unwrap();
    let check = perfvm(&["plan", "check", plan.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stderr));
    let args = ["matrix", "--plan", plan.to_str().unwrap()];
    let out_dir = results.path().join("out");

    // Interrupted once the first cell is in matrix.csv.
    let first = Running::spawn(&args);
    let rows = |d: &std::path::Path| csv::Reader::from_path(d.join("matrix.csv")).map(|mut r| r.records().count()).unwrap_or(0);
    let t0 = Instant::now();
    let run = loop {
        if let Some(d) = run_dirs(&out_dir).pop()
            && rows(&d) > 0
        {
            break d;
        }
        assert!(t0.elapsed().as_secs() < 900, "no cell finished");
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    first.signal(nix::sys::signal::Signal::SIGINT);
    let (code, log) = first.wait(120);
    assert_eq!(code, Some(130), "{log}");
    let before: Vec<(std::path::PathBuf, Vec<u8>)> = attempt_results(&run).into_iter().filter(|p| !read_result(p).interrupted).map(|p| { let b = std::fs::read(&p).unwrap(); (p, b) }).collect();
    assert!(!before.is_empty() && before.len() < 4, "{} finished before the resume", before.len());

    let out = perfvm(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{}\n{err}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains(&format!("{} already finished", before.len())), "the resume keeps what was finished: {err}");
    for (p, bytes) in &before {
        assert_eq!(&std::fs::read(p).unwrap(), bytes, "{} was redone", p.display());
    }

    let mut rdr = csv::Reader::from_path(run.join("matrix.csv")).unwrap();
    let header = rdr.headers().unwrap().clone();
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    let recs: Vec<_> = rdr.records().map(|r| r.unwrap()).collect();
    let mut seen: Vec<(String, String, String)> = recs.iter().map(|r| (r[col("target")].to_string(), r[col("target_mode")].to_string(), r[col("ram_mb")].to_string())).collect();
    seen.sort();
    assert_eq!(seen, [("dufs", "profile", "384"), ("dufs", "profile", "512"), ("perfvm-target", "stream", "384"), ("perfvm-target", "stream", "512")].map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())));
    assert!(recs.iter().all(|r| &r[col("exit_reason")] == "success"));
    let results_of = |tag: &str| attempt_results(&run).into_iter().map(|p| read_result(&p)).filter(|r| r.matrix_target.as_deref() == Some(tag)).collect::<Vec<_>>();
    for r in results_of("dufs") {
        assert_verified(&r, "dufs", 201);
        assert!(r.cell.starts_with("dufs-"), "{}", r.cell);
        assert_eq!(r.download.as_ref().and_then(|d| d.verified), Some(true), "the download carried the auth too");
    }
    let reference = results_of("perfvm-target-stream");
    assert_eq!(reference.len(), 2);
    for r in reference {
        assert!(r.success && r.verified == Some(true) && r.target.name == "perfvm-target" && r.cell.starts_with("perfvm-target-stream-"), "{}: {:?}", r.cell, r.error);
    }
    // One grid per target, the best of each RAM × size, the limits; the report draws both.
    let summary = std::fs::read_to_string(run.join("summary.txt")).unwrap();
    for part in ["== perfvm-target-stream (perfvm-target, stream mode)", "== dufs (dufs, profile mode)", "== best at each RAM × size", "== limits at each RAM"] {
        assert!(summary.contains(part), "summary.txt lacks {part:?}:\n{summary}");
    }
    let dom = render_headless(&run.join("report.html"));
    assert!(dom.contains("Targets side by side"), "the report has no side-by-side section");
    let panel = &dom[dom.find("Targets side by side").unwrap()..];
    assert!(panel.contains("dufs") && panel.contains("perfvm-target-stream"), "both targets are drawn");
}

/// Every saved file of a run: where the target printed `leaked-token=<its secret>`, perfvm wrote
/// `<secret>` instead.
fn assert_secret_redacted(dir: &std::path::Path) {
    let journal = std::fs::read_to_string(dir.join("journal.log")).unwrap();
    assert!(journal.contains("leaked-token=<secret>"), "the target printed its secret and perfvm redacted it:\n{journal}");
    for f in walk(dir) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        for (i, _) in text.match_indices("leaked-token=") {
            let rest = &text[i + "leaked-token=".len()..];
            assert!(rest.starts_with("<secret>"), "{} holds the secret: {}", f.display(), &rest[..rest.len().min(30)]);
        }
    }
}

#[test]
#[ignore = "boots a real guest: run with --include-ignored (CI does)"]
fn a_profiles_secret_is_redacted_from_everything_saved() {
    // From a saved guest: its secret reaches the guest through the agent (the unit written on
    // delivery), a path a cold boot's seed does not take; the suite also spares a boot.
    let (r, dir, _) = cell(&["--ram", "256", "--file-size", "4M", "--target", "tests/data/profiles/leaky.toml", "--boot", "saved"]);
    assert_eq!(r.boot, perfvm::results::model::Boot::Saved);
    // No [health]: the TCP listen check; verify = false: success, but never verified true.
    assert_eq!(r.exit_reason, ExitReason::Success, "{:?}", r.error);
    assert_eq!(r.verified, None);
    assert_eq!(r.target.name, "leaky");
    assert_secret_redacted(&dir);
}

/// The host reads what is really on the guest's disk, not what anyone says is there: a profile
/// whose stored path holds other bytes (1 MiB of zeros, put there by its guest_setup) fails
/// verification with that file's hash.
#[test]
#[ignore = "boots a real guest: run with --include-ignored (CI does)"]
fn the_host_hashes_what_is_on_the_guests_disk() {
    let (r, _dir, out) = cell(&["--ram", "256", "--file-size", "1M", "--target", "tests/data/profiles/decoy.toml"]);
    assert_eq!(r.exit_reason, ExitReason::VerifyFailed, "{:?}", r.error);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(r.verified, Some(false));
    let v = r.verification.as_ref().expect("verification recorded");
    assert_eq!((v.by, v.fallback.as_deref()), (Verify::Host, None));
    let zeros = "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58";
    assert_eq!(r.guest_sha256.as_deref(), Some(zeros), "sha256 of 1 MiB of zeros");
    assert_ne!(r.sha256.as_deref(), Some(zeros));
}

/// A server that exits at start (here: it cannot open its log file) is restarted by systemd a few
/// times and given up on; the cell ends right then, in the server's own words, not at the
/// timeout (it used to wait out the whole --timeout, 642 s at the default).
#[test]
#[ignore = "boots a real guest: run with --include-ignored (CI does)"]
fn a_target_that_exits_at_start_is_known_dead_in_seconds() {
    let (r, dir, out) = cell(&["--ram", "256", "--file-size", "4M", "--target", "tests/data/profiles/exits.toml"]);
    assert_eq!(r.exit_reason, ExitReason::TargetCrashed, "{:?}", r.error);
    assert_eq!(out.status.code(), Some(1), "the target's failure, not the harness's");
    let e = r.error.as_deref().unwrap();
    assert!(e.contains("will not come up") && e.contains("gave up"), "{e}");
    assert!(e.contains("cannot open /var/log/exits/server.log"), "the server's own words in the error: {e}");
    assert!(r.restarts_before_upload.unwrap_or(0) >= 3, "restarts seen: {:?}", r.restarts_before_upload);
    // systemd gives up within ~6 s of the first start (5 restarts, RestartSec=1); the cell may
    // take one unit check (2 s) and the journal read after that.
    let waited = r.phases.healthy.expect("the health wait ended");
    assert!(waited < 60.0, "known dead after {waited} s of waiting for health, not at the 400 s timeout");
    assert!(std::fs::read_to_string(dir.join("journal.log")).unwrap().contains("cannot open"));
}

/// A server that fails its first starts and then comes up is measured; its restarts are counted
/// before the upload, not held against it.
#[test]
#[ignore = "boots a real guest: run with --include-ignored (CI does)"]
fn a_target_that_flaps_then_comes_up_is_measured_with_its_restarts_before_the_upload() {
    // Started by the delivery of a saved guest (`systemctl start`), under the same Restart=.
    let (r, _dir, _) = cell(&["--ram", "256", "--file-size", "8M", "--target", "tests/data/profiles/flaps.toml", "--boot", "saved"]);
    assert_eq!(r.exit_reason, ExitReason::Success, "{:?}", r.error);
    assert_eq!(r.boot, perfvm::results::model::Boot::Saved);
    assert_eq!(r.verified, Some(true));
    assert_eq!(r.restarts_before_upload, Some(2));
    assert_eq!(r.restarts, Some(0), "none during the upload");
}

#[test]
#[ignore = "boots a real guest: run with --include-ignored (CI does)"]
fn copyparty_from_pypi_logs_in_and_says_where_it_stored_the_file() {
    let (r, _dir, _) = cell(&["--ram", "512", "--file-size", "24M", "--target", "copyparty", "--download"]);
    assert_verified(&r, "copyparty", 201);
    assert!(r.phases.login.is_some(), "the login is a phase of its own");
    assert_eq!(r.download.as_ref().and_then(|d| d.verified), Some(true), "the download carried the session cookie");
}

/// A target that rejects uploads without a valid session: the login flow works, a wrong
/// password fails at the login step, and a profile without the login fails loudly at the upload.
#[test]
#[ignore = "boots a real guest: run with --include-ignored (CI does)"]
fn a_login_flow_gets_a_session_and_broken_ones_fail_loudly() {
    let (r, dir, _) = cell(&["--ram", "256", "--file-size", "8M", "--target", "tests/data/profiles/login.toml", "--download"]);
    assert_verified(&r, "login-test", 201);
    assert!(r.phases.login.is_some());
    assert_eq!(r.download.as_ref().and_then(|d| d.verified), Some(true));
    assert_secret_redacted(&dir);

    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string("tests/data/profiles/login.toml").unwrap();
    let wrong = tmp.path().join("wrong-password.toml");
    std::fs::write(&wrong, good.replace("form = { password = \"{secret}\" }", "form = { password = \"{secret}-not\" }")).unwrap();
    let (r, dir, out) = cell(&["--ram", "256", "--file-size", "1M", "--target", wrong.to_str().unwrap()]);
    assert_eq!(r.exit_reason, ExitReason::HttpError);
    assert_eq!(out.status.code(), Some(1));
    let e = r.error.as_deref().unwrap();
    assert!(e.contains("login: POST /login answered HTTP 403"), "{e}");
    assert!(r.phases.upload.is_none(), "nothing was uploaded");
    assert_secret_redacted(&dir);

    let none = tmp.path().join("no-login.toml");
    let text = good.replace("[login]\nurl = \"/login\"\nform = { password = \"{secret}\" }\nexpect = [200]\nexpect_cookie = \"perfvm_session\"\n", "");
    assert!(!text.contains("[login]"));
    std::fs::write(&none, text).unwrap();
    let (r, _dir, _) = cell(&["--ram", "256", "--file-size", "1M", "--target", none.to_str().unwrap()]);
    assert_eq!(r.exit_reason, ExitReason::HttpError);
    assert_eq!(r.http_status, Some(401));
    assert!(r.error.as_deref().unwrap().contains("login required"), "{:?}", r.error);
    assert_ne!(r.verified, Some(true));
}

/// Profiles that cannot work are refused before anything starts: exit 2, the key named.
#[test]
fn broken_profiles_are_refused_with_the_problem_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string("tests/data/profiles/leaky.toml").unwrap();
    let cases = [
        ("missing-port", good.replace("port = 8090\n", ""), "missing field `port`"),
        ("bad-shape", good.replace("method = \"PUT\"", "method = \"PUT\"\nshape = \"form\""), "upload.shape = \"form\""),
        ("port-clash", good.replace("port = 8090", "port = 22"), "clashes with sshd"),
        ("bad-template", good.replace("/upload/{name}", "/upload/{file}"), "unknown placeholder {file}"),
    ];
    for (name, text, want) in cases {
        let p = dir.path().join(format!("{name}.toml"));
        std::fs::write(&p, text).unwrap();
        let results = dir.path().join("results");
        let out = perfvm(&["run", "--ram", "256", "--file-size", "1M", "--target", p.to_str().unwrap(), "--results-dir", results.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert!(!results.exists(), "{name}: nothing written");
        let out = perfvm(&["target", "check", p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "target check {name}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(want));
    }
    let out = perfvm(&["run", "--ram", "256", "--file-size", "1M", "--target", "no-such-target"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("known: perfvm-target, copyparty, dufs, nginx-webdav, uploadserver"));
    let out = perfvm(&["target", "list"]);
    assert_eq!(out.status.code(), Some(0));
    let list = String::from_utf8_lossy(&out.stdout);
    for t in ["perfvm-target", "nginx-webdav", "dufs", "uploadserver", "copyparty"] {
        assert!(list.contains(t), "{list}");
    }
    // The same listing for scripts: one object per target, the same names, all valid.
    let out = perfvm(&["target", "list", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("target list --format json is JSON");
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["perfvm-target", "copyparty", "dufs", "nginx-webdav", "uploadserver"]);
    assert!(rows.iter().all(|r| r["valid"] == true && r["upload"].is_string()), "{rows:?}");
}

#[test]
#[ignore = "boots a real guest: run with --include-ignored (CI does)"]
fn a_health_check_that_never_passes_ends_boot_failed_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string("tests/data/profiles/leaky.toml").unwrap().replace("[upload]", "[health]\npath = \"/never\"\n\n[upload]");
    let p = dir.path().join("never.toml");
    std::fs::write(&p, text).unwrap();
    let timeout = 75;
    let _one = vm_lock();
    let results = dir.path().join("results");
    let t = Instant::now();
    let out = perfvm(&["run", "--ram", "256", "--file-size", "1M", "--target", p.to_str().unwrap(), "--timeout", &timeout.to_string(), "--results-dir", results.to_str().unwrap()]);
    let took = t.elapsed().as_secs();
    let run = run_dirs(&results).pop().expect("a run dir");
    let r = read_result(&run.join("result.json"));
    assert_no_leftovers(&r);
    assert_eq!(r.exit_reason, ExitReason::BootFailed);
    assert_eq!(out.status.code(), Some(69));
    assert!(r.error.as_deref().unwrap().contains("/never never passed"), "{:?}", r.error);
    assert!(took < timeout + 45, "ended {took} s after start with --timeout {timeout}");
    assert!(run.join("console.log").is_file() && run.join("journal.log").is_file(), "console and journal saved");
}

#[test]
#[ignore = "builds an image with mmdebstrap (network): run with --include-ignored (CI does)"]
fn a_package_that_does_not_exist_fails_the_image_build_and_caches_nothing() {
    let _one = vm_lock();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string("tests/data/profiles/leaky.toml").unwrap().replace("[[files]]", "[image]\npackages = [\"perfvm-no-such-package\"]\n\n[[files]]");
    let p = dir.path().join("nopkg.toml");
    std::fs::write(&p, text).unwrap();
    let results = dir.path().join("results");
    let out = perfvm(&["run", "--ram", "256", "--file-size", "1M", "--target", p.to_str().unwrap(), "--results-dir", results.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("perfvm-no-such-package") && err.contains("Unable to locate package"), "apt's message is shown:\n{err}");
    let images = perfvm::paths::images_dir(&perfvm::paths::cache_dir());
    let base = perfvm::image::recipe::load(&perfvm::paths::recipe_dir()).unwrap();
    let variant = base.with_packages(&["perfvm-no-such-package".to_string()]);
    assert!(!images.join(&variant.id).exists(), "nothing cached");
    let leftovers: Vec<_> = std::fs::read_dir(&images).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with(".build-")).collect();
    assert!(leftovers.is_empty(), "no build directory left");
}

/// `--image` with `--kernel/--initrd`: a root-filesystem image outside perfvm's cache (here a
/// raw copy of perfvm's own, converted with qemu-img), imported once and booted directly.
#[test]
#[ignore = "boots a real guest: run with --include-ignored (CI does)"]
fn bring_your_own_root_filesystem_image_boots_directly() {
    let img = base_image();
    let mine = tempfile::tempdir().unwrap();
    let disk = mine.path().join("my-root.raw");
    // Converting and inspecting a 24 GiB disk is heavy: not while another test's guest boots
    // (a 2-core machine; the health-check test's timeout is short).
    let heavy = vm_lock();
    let st = std::process::Command::new("qemu-img").args(["convert", "-O", "raw"]).arg(img.disk()).arg(&disk).status().unwrap();
    assert!(st.success());
    for (from, to) in [(img.kernel(), "vmlinuz-mine"), (img.initrd(), "initrd-mine")] {
        std::fs::copy(from, mine.path().join(to)).unwrap();
    }
    let (k, i) = (mine.path().join("vmlinuz-mine"), mine.path().join("initrd-mine"));
    let out = perfvm(&["doctor", "--image", disk.to_str().unwrap(), "--kernel", k.to_str().unwrap(), "--initrd", i.to_str().unwrap()]);
    drop(heavy);
    let report = String::from_utf8_lossy(&out.stdout);
    for want in ["ok   --image:", "is raw", "ok   --image: ext4 root filesystem on the whole disk", "ok   --image: cloud-init", "ok   --image: qemu-guest-agent"] {
        assert!(report.contains(want), "doctor --image: {want}\n{report}");
    }
    let (r, _dir, _) = cell(&["--ram", "256", "--file-size", "8M", "--image", disk.to_str().unwrap(), "--kernel", k.to_str().unwrap(), "--initrd", i.to_str().unwrap()]);
    assert_eq!(r.exit_reason, ExitReason::Success, "{:?}", r.error);
    assert!(r.image_id.starts_with("byo-"), "{}", r.image_id);
    assert_eq!(r.verified, Some(true));
    let out = perfvm(&["image", "remove", &r.image_id]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // A doctor report on an image without the agent: a plain ext4 filesystem with nothing in it.
    let tree = mine.path().join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/hostname"), "bare\n").unwrap();
    let empty = mine.path().join("empty.raw");
    std::fs::File::create(&empty).unwrap().set_len(64 << 20).unwrap();
    assert!(std::process::Command::new("mkfs.ext4").args(["-q", "-F", "-d"]).arg(&tree).arg(&empty).status().unwrap().success());
    let out = perfvm(&["doctor", "--image", empty.to_str().unwrap()]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(report.contains("FAIL --image: qemu-guest-agent") && report.contains("install qemu-guest-agent"), "{report}");
}

/// `--image` without `--kernel`: a whole disk (MBR, GRUB in the gap, ext4 root partition) that
/// SeaBIOS boots through its own bootloader. Made here by a script from perfvm's root filesystem,
/// since no cloud image can be downloaded on these machines.
#[test]
#[ignore = "boots a real guest: run with --include-ignored (CI does)"]
fn bring_your_own_bootable_disk_boots_through_its_bootloader() {
    let img = base_image();
    let mine = tempfile::tempdir().unwrap();
    let disk = mine.path().join("bootable.raw");
    // Heavy host work: not while another test's guest boots (see above).
    let heavy = vm_lock();
    let st = std::process::Command::new("bash").arg("tests/data/make-bootable-disk.sh").arg(&img.dir).arg(&disk).status().unwrap();
    assert!(st.success());
    let out = perfvm(&["doctor", "--image", disk.to_str().unwrap()]);
    drop(heavy);
    let report = String::from_utf8_lossy(&out.stdout);
    for want in ["ok   --image: ext4 root filesystem in a partition at offset 1048576", "ok   --image: BIOS boot code in the MBR", "ok   --image: qemu-guest-agent"] {
        assert!(report.contains(want), "doctor --image: {want}\n{report}");
    }
    let (r, dir, _) = cell(&["--ram", "384", "--file-size", "8M", "--image", disk.to_str().unwrap()]);
    assert_eq!(r.exit_reason, ExitReason::Success, "{:?}", r.error);
    assert_eq!(r.verified, Some(true));
    let console = std::fs::read_to_string(dir.join("console.log")).unwrap();
    assert!(console.contains("perfvm test disk: booting") && console.contains("root=/dev/vda1"), "GRUB, then the kernel:\n{}", &console[..console.len().min(2000)]);
    let out = perfvm(&["image", "remove", &r.image_id]);
    assert_eq!(out.status.code(), Some(0));
}

/// Hooks run in order: on the host before the cell, in the guest before the upload and after
/// collection (a profile's), on the host after teardown; each one's output is saved. A failing
/// hook fails the cell as the harness's error.
#[test]
#[ignore = "boots a real guest: run with --include-ignored (CI does)"]
fn hooks_run_in_order_and_a_failing_one_fails_the_cell() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string("tests/data/profiles/leaky.toml").unwrap().replace(
        "[upload]",
        "[hooks]\nguest_setup = \"echo set-up-ran > /run/perfvm-hook; cat /run/perfvm-hook\"\nguest_teardown = \"cat /run/perfvm-hook; ls /var/lib/leaky\"\n\n[upload]",
    );
    let profile = tmp.path().join("hooked.toml");
    std::fs::write(&profile, text).unwrap();
    let log = tmp.path().join("host-hooks.log");
    let before = format!("echo before $PERFVM_CELL $PERFVM_RAM_MB $PERFVM_TARGET >> {}", log.display());
    let after = format!("echo after $PERFVM_EXIT_REASON $(test -f $PERFVM_RESULT && echo has-result) >> {}", log.display());
    // From a saved guest: the profile's guest_setup runs after its delivery, as after cloud-init.
    let (r, dir, _) = cell(&["--ram", "256", "--file-size", "2M", "--target", profile.to_str().unwrap(), "--hook-before-cell", &before, "--hook-after-cell", &after, "--boot", "saved"]);
    assert_eq!(r.exit_reason, ExitReason::Success, "{:?}", r.error);
    assert_eq!(r.boot, perfvm::results::model::Boot::Saved);
    let names: Vec<&str> = r.hooks.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["hook-before-cell", "guest-setup", "guest-teardown", "hook-after-cell"]);
    assert!(r.hooks.windows(2).all(|w| w[0].at_seconds <= w[1].at_seconds), "{:?}", r.hooks);
    assert!(r.hooks.iter().all(|h| h.exit_code == Some(0)));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "before 256-2M 256 leaky\nafter success has-result\n");
    assert_eq!(std::fs::read_to_string(dir.join("guest-setup.log")).unwrap(), "set-up-ran\n");
    let teardown = std::fs::read_to_string(dir.join("guest-teardown.log")).unwrap();
    assert!(teardown.starts_with("set-up-ran\n") && teardown.contains("perfvm-upload.bin"), "teardown ran after the upload: {teardown}");

    // A failing host hook before the cell: nothing boots.
    let results = tmp.path().join("results");
    let out = perfvm(&["run", "--ram", "256", "--file-size", "1M", "--hook-before-cell", "echo refusing; exit 7", "--results-dir", results.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(69));
    let run = run_dirs(&results).pop().unwrap();
    let r = read_result(&run.join("result.json"));
    assert_eq!(r.exit_reason, ExitReason::HarnessError);
    assert!(r.error.as_deref().unwrap().contains("hook-before-cell failed with exit status 7"), "{:?}", r.error);
    assert!(r.phases.boot.is_none(), "no guest was started");
    assert_eq!(std::fs::read_to_string(run.join("hook-before-cell.log")).unwrap(), "refusing\n");
}
