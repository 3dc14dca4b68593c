//! Where perfvm keeps things on the host. Everything libvirt's qemu must read (images, overlays,
//! seeds) lives under the cache dir, outside any user's home, so the `libvirt-qemu` user can reach it.

use std::path::{Path, PathBuf};

/// `PERFVM_CACHE_DIR` or `/var/cache/perfvm`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("PERFVM_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/perfvm"))
}

pub fn images_dir(cache: &Path) -> PathBuf {
    cache.join("images")
}

/// Per-cell working files (overlay, seed, console log); removed at teardown.
pub fn cells_dir(cache: &Path) -> PathBuf {
    cache.join("cells")
}

/// A project directory: `$env_var`, else `name/` in the current directory if it holds `marker`,
/// else the one in the source tree perfvm was built from.
fn project_dir(env_var: &str, name: &str, marker: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var) {
        return PathBuf::from(p);
    }
    let local = PathBuf::from(name);
    if local.join(marker).exists() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// The image recipe directory (`PERFVM_RECIPE_DIR`, `./vm-images`, the source tree's).
pub fn recipe_dir() -> PathBuf {
    project_dir("PERFVM_RECIPE_DIR", "vm-images", "recipe.toml")
}

/// The cloud-init template directory (`PERFVM_CLOUD_INIT_DIR`, `./cloud-init`, the source tree's).
pub fn cloud_init_dir() -> PathBuf {
    project_dir("PERFVM_CLOUD_INIT_DIR", "cloud-init", "user-data.yaml")
}

/// Shipped target profiles (`PERFVM_TARGETS_DIR`, `./targets`, the source tree's).
pub fn targets_dir() -> PathBuf {
    project_dir("PERFVM_TARGETS_DIR", "targets", "README.md")
}

/// Files that profiles make on the host (`[host] prepare`), kept across runs.
pub fn target_files_dir(cache: &Path) -> PathBuf {
    cache.join("targets")
}

/// A binary built beside perfvm by the same `cargo build`, or `$env_var`.
fn sibling_binary(env_var: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var) {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// The reference target (`PERFVM_TARGET_BIN`).
pub fn target_binary() -> PathBuf {
    sibling_binary("PERFVM_TARGET_BIN", "perfvm-target")
}

/// The in-guest sampler (`PERFVM_PROBE_BIN`).
pub fn probe_binary() -> PathBuf {
    sibling_binary("PERFVM_PROBE_BIN", "perfvm-probe")
}

/// Create a directory tree that libvirt's unprivileged qemu user can traverse.
pub fn ensure_shared_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
}

/// Write a file atomically: a temp file in the same directory, fsync, rename, then fsync the
/// directory so the rename itself survives a crash. Readers see the old content or the new one,
/// never a torn write.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn write_atomic_fails_cleanly_in_missing_dir() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope/a.json");
        assert!(write_atomic(&p, b"x").is_err());
    }
}
