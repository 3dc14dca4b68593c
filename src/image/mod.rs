//! The guest base image: built from the recipe in `vm-images/`, cached under
//! `<cache>/images/<id>/` and reused while the recipe is unchanged.

pub mod build;
pub mod import;
pub mod layout;
pub mod peek;
pub mod recipe;

use std::path::{Path, PathBuf};

/// A built image in the cache: what a cell boots.
#[derive(Debug, Clone)]
pub struct Image {
    pub id: String,
    pub dir: PathBuf,
}

impl Image {
    pub fn disk(&self) -> PathBuf {
        self.dir.join("rootfs.qcow2")
    }
    pub fn kernel(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }
    pub fn initrd(&self) -> PathBuf {
        self.dir.join("initrd.img")
    }
    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join("manifest.json")
    }
    pub fn manifest(&self) -> Option<Manifest> {
        let text = std::fs::read_to_string(self.manifest_path()).ok()?;
        serde_json::from_str(&text).ok()
    }
    /// An image counts as present only when its manifest, written last, exists.
    pub fn is_complete(&self) -> bool {
        self.manifest_path().is_file() && self.disk().is_file()
    }

    /// How the guest starts: perfvm's images and root-filesystem imports boot their kernel
    /// directly; a whole-disk import boots through its own bootloader.
    pub fn boot(&self) -> Boot {
        if self.kernel().is_file() && self.initrd().is_file() {
            let cmdline = self.manifest().and_then(|m| m.cmdline).unwrap_or_else(|| DEFAULT_CMDLINE.to_string());
            Boot::Direct { kernel: self.kernel(), initrd: self.initrd(), cmdline }
        } else {
            Boot::Firmware
        }
    }
}

/// The kernel command line of a direct boot: the root filesystem is the first virtio disk.
pub const DEFAULT_CMDLINE: &str = "root=/dev/vda rw console=ttyS0";

#[derive(Debug, Clone, PartialEq)]
pub enum Boot {
    Direct { kernel: PathBuf, initrd: PathBuf, cmdline: String },
    /// The disk's own bootloader (BIOS firmware).
    Firmware,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub id: String,
    pub created: chrono::DateTime<chrono::Utc>,
    pub suite: String,
    pub packages: Vec<String>,
    pub kernel_version: String,
    pub root_size_gib: u64,
    pub disk_bytes: u64,
    pub build_seconds: f64,
    pub perfvm_version: String,
    /// `--image`: the user's file this image was imported from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `--cmdline` of an imported root-filesystem image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
}

pub fn image_for(cache: &Path, id: &str) -> Image {
    Image { id: id.to_string(), dir: crate::paths::images_dir(cache).join(id) }
}

/// Every complete image in the cache.
pub fn list(cache: &Path) -> std::io::Result<Vec<Image>> {
    let dir = crate::paths::images_dir(cache);
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let img = image_for(cache, &name);
        if img.is_complete() {
            out.push(img);
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// A running perfvm's hold on an image: a shared lock on `<images>/.<id>.use` for as long as
/// its cells may boot it. Removing or rebuilding the image takes the lock exclusively, so it
/// never happens under a live cell's overlay.
#[derive(Debug)]
pub struct InUse {
    _file: std::fs::File,
}

fn use_file(cache: &Path, id: &str) -> std::io::Result<std::fs::File> {
    let images = crate::paths::images_dir(cache);
    std::fs::create_dir_all(&images)?;
    std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(images.join(format!(".{id}.use")))
}

/// Hold image `id` while this process's cells may boot it.
pub fn hold(cache: &Path, id: &str) -> std::io::Result<InUse> {
    let f = use_file(cache, id)?;
    f.lock_shared()?;
    Ok(InUse { _file: f })
}

/// The exclusive side: Err when a running perfvm holds the image.
pub fn exclusive(cache: &Path, id: &str) -> anyhow::Result<std::fs::File> {
    let f = use_file(cache, id)?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!("image {id} is in use by a running perfvm; wait for its cells to end"),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// Remove one cached image. Refuses names that are not plain ids, and images in use.
pub fn remove(cache: &Path, id: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
        "'{id}' is not an image id (see `perfvm image list`)"
    );
    let img = image_for(cache, id);
    anyhow::ensure!(img.dir.is_dir(), "no image '{id}' in {}", crate::paths::images_dir(cache).display());
    let _only_us = exclusive(cache, id)?;
    std::fs::remove_dir_all(&img.dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_in_use_is_neither_removed_nor_rebuilt() {
        let d = tempfile::tempdir().unwrap();
        let img = image_for(d.path(), "bookworm-abc");
        std::fs::create_dir_all(&img.dir).unwrap();
        let held = hold(d.path(), "bookworm-abc").unwrap();
        let e = remove(d.path(), "bookworm-abc").unwrap_err();
        assert!(e.to_string().contains("in use by a running perfvm"), "{e}");
        assert!(img.dir.is_dir());
        // Two processes may use it at once.
        let _also = hold(d.path(), "bookworm-abc").unwrap();
        drop(held);
        drop(_also);
        remove(d.path(), "bookworm-abc").unwrap();
        assert!(!img.dir.exists());
    }
}
