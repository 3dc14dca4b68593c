//! Building the base image: mmdebstrap → ext4 root filesystem (`mkfs.ext4 -d`, no mount or loop
//! device) → qcow2, plus the kernel and initrd for direct kernel boot. The build happens in a
//! private directory that is renamed into place only when complete, under a lock, so no reader
//! ever sees a half-built image and two builders never race.

use super::recipe::LoadedRecipe;
use super::{Image, Manifest, image_for};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Return the cached image for this recipe, building it first if needed.
pub fn ensure(cache: &Path, recipe: &LoadedRecipe) -> Result<Image> {
    let img = image_for(cache, &recipe.id);
    if img.is_complete() {
        return Ok(img);
    }
    build(cache, recipe, false)
}

/// Build the image (or rebuild it with `force`).
pub fn build(cache: &Path, recipe: &LoadedRecipe, force: bool) -> Result<Image> {
    let what = format!("building {} from {}", recipe.id, recipe.dir.display());
    into_cache(cache, &recipe.id, force, &what, |tmp, started| build_into(tmp, recipe, started))
}

/// Make image `id` in the cache with `make`, which fills a private directory that is renamed
/// into place only when complete, under a lock: no reader sees half an image, no two builders race.
pub fn into_cache(cache: &Path, id: &str, force: bool, what: &str, make: impl FnOnce(&Path, Instant) -> Result<Manifest>) -> Result<Image> {
    let images = crate::paths::images_dir(cache);
    crate::paths::ensure_shared_dir(cache)?;
    crate::paths::ensure_shared_dir(&images)
        .with_context(|| format!("cannot create image cache {}", images.display()))?;
    let lock_path = images.join(format!(".{id}.lock"));
    let lock = std::fs::File::create(&lock_path).with_context(|| format!("cannot create {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        eprintln!("[image] another perfvm is making {id}; waiting for it");
        lock.lock()?;
    }
    let img = image_for(cache, id);
    if img.is_complete() && !force {
        return Ok(img);
    }
    // Never replaced under a running cell's overlay.
    let _only_us = if img.dir.exists() { Some(super::exclusive(cache, id)?) } else { None };
    remove_stale_builds(&images);
    let tmp = images.join(format!(".build-{id}-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(tmp.clone());
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    crate::paths::ensure_shared_dir(&tmp)?;

    let started = Instant::now();
    eprintln!("[image] {what} (log: {})", tmp.join("build.log").display());
    let manifest = make(&tmp, started)?;
    std::fs::write(tmp.join("manifest.json"), serde_json::to_vec_pretty(&manifest)?)?;
    sync_dir(&tmp)?;
    if img.dir.exists() {
        std::fs::remove_dir_all(&img.dir)?;
    }
    std::fs::rename(&tmp, &img.dir).context("cannot move the finished image into place")?;
    // The build log stays beside the image for anyone wondering how it was made.
    eprintln!("[image] {id} ready in {:.0} s: {}", started.elapsed().as_secs_f64(), img.dir.display());
    Ok(img)
}

fn build_into(tmp: &Path, loaded: &LoadedRecipe, started: Instant) -> Result<Manifest> {
    let r = &loaded.recipe;
    let log_path = tmp.join("build.log");
    let rootfs = tmp.join("rootfs");
    // The user's choice (a proxy, a local mirror) over the recipe's; with neither, mmdebstrap picks.
    let mirror = std::env::var("PERFVM_MIRROR").ok().filter(|m| !m.is_empty()).or_else(|| r.mirror.clone());

    let mut cmd = Command::new("mmdebstrap");
    cmd.arg(format!("--variant={}", r.variant))
        .arg(format!("--include={}", r.packages.join(",")));
    let overlay = loaded.rootfs_overlay();
    if overlay.is_dir() {
        let abs = overlay.canonicalize()?;
        cmd.arg(format!("--customize-hook=sync-in {} /", shell_quote(&abs.to_string_lossy())));
    }
    for c in &r.customize {
        cmd.arg(format!("--customize-hook=chroot \"$1\" sh -ec {}", shell_quote(c)));
    }
    cmd.arg(&r.suite).arg(&rootfs).args(mirror.as_deref());
    step(&log_path, "debootstrap (mmdebstrap)", cmd)?;

    let boot = rootfs.join("boot");
    let kernel = find_prefixed(&boot, "vmlinuz-")?;
    let initrd = find_prefixed(&boot, "initrd.img-")?;
    let kernel_version = kernel
        .file_name()
        .map(|n| n.to_string_lossy().trim_start_matches("vmlinuz-").to_string())
        .unwrap_or_default();
    std::fs::copy(&kernel, tmp.join("vmlinuz"))?;
    std::fs::copy(&initrd, tmp.join("initrd.img"))?;

    let raw = tmp.join("root.raw");
    // A sparse file: mkfs writes only metadata, the qcow2 stays small.
    std::fs::File::create(&raw)?.set_len(r.root_size_gib * crate::size::ByteSize::GIB)?;
    let mut mkfs = Command::new("mkfs.ext4");
    mkfs.args(["-q", "-F", "-L", "root", "-d"]).arg(&rootfs).arg(&raw);
    step(&log_path, "root filesystem (mkfs.ext4 -d)", mkfs)?;
    std::fs::remove_dir_all(&rootfs)?;

    let disk = tmp.join("rootfs.qcow2");
    let mut convert = Command::new("qemu-img");
    convert.args(["convert", "-O", "qcow2"]).arg(&raw).arg(&disk);
    step(&log_path, "qcow2 (qemu-img convert)", convert)?;
    std::fs::remove_file(&raw)?;

    for f in ["rootfs.qcow2", "vmlinuz", "initrd.img"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.join(f), std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(Manifest {
        id: loaded.id.clone(),
        created: chrono::Utc::now(),
        suite: r.suite.clone(),
        packages: r.packages.clone(),
        kernel_version,
        root_size_gib: r.root_size_gib,
        disk_bytes: std::fs::metadata(&disk)?.len(),
        build_seconds: started.elapsed().as_secs_f64(),
        perfvm_version: env!("CARGO_PKG_VERSION").to_string(),
        source: None,
        cmdline: None,
    })
}

/// Run one build step with its output appended to the build log; on failure show the log's tail.
pub fn step(log_path: &Path, what: &str, mut cmd: Command) -> Result<()> {
    use std::io::Write;
    let t = Instant::now();
    eprintln!("[image]   {what} ...");
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(log_path)?;
    writeln!(log, "\n==> {what}: {cmd:?}")?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?)
        .status()
        .with_context(|| format!("cannot run {:?} (is it installed? run scripts/setup.sh)", cmd.get_program()))?;
    if !status.success() {
        let text = std::fs::read_to_string(log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(25).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("image step '{what}' failed ({status}); last lines of the build log:\n{}", tail.join("\n"));
    }
    eprintln!("[image]   {what} done in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

fn find_prefixed(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("no {} in the new root", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
        .collect();
    found.sort();
    found.pop().with_context(|| format!("no {prefix}* in {}: does the recipe install a kernel?", dir.display()))
}

/// Build directories of processes that died mid-build.
fn remove_stale_builds(images: &Path) {
    let Ok(entries) = std::fs::read_dir(images) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(".build-") else { continue };
        let pid: Option<i32> = rest.rsplit('-').next().and_then(|p| p.parse().ok());
        if let Some(pid) = pid
            && !crate::proc::pid_alive(pid) {
                let _ = std::fs::remove_dir_all(e.path());
            }
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_file() {
            std::fs::File::open(&p)?.sync_all()?;
        }
    }
    Ok(())
}

pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

struct RemoveOnDrop(PathBuf);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_survives_quotes() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn find_prefixed_picks_newest_name() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("vmlinuz-6.1.0-1"), "").unwrap();
        std::fs::write(d.path().join("vmlinuz-6.1.0-2"), "").unwrap();
        assert!(find_prefixed(d.path(), "vmlinuz-").unwrap().ends_with("vmlinuz-6.1.0-2"));
        assert!(find_prefixed(d.path(), "initrd.img-").is_err());
    }
}
