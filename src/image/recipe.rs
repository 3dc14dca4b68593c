//! The image recipe (`vm-images/recipe.toml` plus the files under `vm-images/rootfs/`) and the
//! image id derived from it. Pure: reading files and hashing, no side effects.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Bumped when the way perfvm turns a recipe into an image changes, so old images are not reused.
const BUILD_FORMAT: u32 = 1;

#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub suite: String,
    pub variant: String,
    /// A Debian mirror URI, a sources.list line, or a file of sources (whatever mmdebstrap takes
    /// as MIRROR). None: mmdebstrap's own default, which adds the updates and security archives.
    #[serde(default)]
    pub mirror: Option<String>,
    pub packages: Vec<String>,
    pub root_size_gib: u64,
    #[serde(default)]
    pub customize: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("image recipe not found: {0} (run perfvm from the project directory or set PERFVM_RECIPE_DIR)")]
    Missing(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("bad image recipe {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A recipe with where it came from and its content hash.
#[derive(Debug, Clone)]
pub struct LoadedRecipe {
    pub dir: PathBuf,
    pub recipe: Recipe,
    /// `<suite>-<12 hex>`: names the cached image.
    pub id: String,
}

impl LoadedRecipe {
    pub fn rootfs_overlay(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// The image variant with `extra` packages (a target profile's): its own id, derived from
    /// the base id and the sorted package list, so it is built once and cached beside the base.
    pub fn with_packages(&self, extra: &[String]) -> LoadedRecipe {
        if extra.is_empty() {
            return self.clone();
        }
        let mut added: Vec<String> = extra.iter().filter(|p| !self.recipe.packages.contains(p)).cloned().collect();
        added.sort();
        added.dedup();
        let mut v = self.clone();
        v.recipe.packages.extend(added.iter().cloned());
        let h = Sha256::digest(added.join("\n").as_bytes());
        v.id = format!("{}-{}", self.id, &hex::encode(h)[..8]);
        v
    }
}

pub fn load(dir: &Path) -> Result<LoadedRecipe, RecipeError> {
    let path = dir.join("recipe.toml");
    if !path.is_file() {
        return Err(RecipeError::Missing(path));
    }
    let text = std::fs::read_to_string(&path).map_err(|source| RecipeError::Io { path: path.clone(), source })?;
    let recipe = parse(&text).map_err(|message| RecipeError::Invalid { path: path.clone(), message })?;
    let files = recipe_files(dir).map_err(|source| RecipeError::Io { path: dir.to_path_buf(), source })?;
    let id = image_id(&recipe.suite, &files);
    Ok(LoadedRecipe { dir: dir.to_path_buf(), recipe, id })
}

pub fn parse(text: &str) -> Result<Recipe, String> {
    let r: Recipe = toml::from_str(text).map_err(|e| e.to_string())?;
    if r.packages.is_empty() {
        return Err("packages is empty".into());
    }
    for p in &r.packages {
        if p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || "+-.:".contains(c)) {
            return Err(format!("'{p}' is not a Debian package name"));
        }
    }
    for required in ["cloud-init", "qemu-guest-agent", "systemd-sysv"] {
        if !r.packages.iter().any(|p| p == required) {
            return Err(format!("packages must include {required}: perfvm drives the guest through it"));
        }
    }
    if !(2..=1024).contains(&r.root_size_gib) {
        return Err(format!("root_size_gib = {} is outside 2..=1024", r.root_size_gib));
    }
    if !r.suite.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || r.suite.is_empty() {
        return Err(format!("suite '{}' is not a Debian suite name", r.suite));
    }
    Ok(r)
}

/// Every regular file of the recipe directory, as (relative path, content), sorted by path.
pub fn recipe_files(dir: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let ty = entry.file_type()?;
            if ty.is_dir() {
                walk(base, &path, out)?;
            } else if ty.is_file() {
                let rel = path.strip_prefix(base).unwrap_or(&path).to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&path)?));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Content hash of the recipe: paths and bytes of every file, length-prefixed so that moving
/// bytes between files changes the id.
pub fn image_id(suite: &str, files: &[(String, Vec<u8>)]) -> String {
    let mut h = Sha256::new();
    h.update(BUILD_FORMAT.to_le_bytes());
    for (path, data) in files {
        h.update((path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update((data.len() as u64).to_le_bytes());
        h.update(data);
    }
    format!("{suite}-{}", &hex::encode(h.finalize())[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
suite = "bookworm"
variant = "minbase"
packages = ["systemd-sysv", "cloud-init", "qemu-guest-agent"]
root_size_gib = 8
"#;

    #[test]
    fn parses_good_recipe() {
        let r = parse(GOOD).unwrap();
        assert_eq!(r.root_size_gib, 8);
        assert!(r.customize.is_empty());
    }

    #[test]
    fn rejects_unknown_keys_and_missing_agent() {
        assert!(parse(&format!("{GOOD}\nfoo = 1")).unwrap_err().contains("foo"));
        let no_agent = GOOD.replace(", \"qemu-guest-agent\"", "");
        assert!(parse(&no_agent).unwrap_err().contains("qemu-guest-agent"));
        let bad_pkg = GOOD.replace("\"cloud-init\"", "\"cloud-init; rm -rf /\"");
        assert!(parse(&bad_pkg).unwrap_err().contains("not a Debian package"));
        let tiny = GOOD.replace("root_size_gib = 8", "root_size_gib = 1");
        assert!(parse(&tiny).unwrap_err().contains("root_size_gib"));
    }

    #[test]
    fn id_changes_with_any_byte_or_path() {
        let a = vec![("recipe.toml".to_string(), b"x".to_vec()), ("rootfs/etc/a".to_string(), b"y".to_vec())];
        let id = image_id("bookworm", &a);
        assert!(id.starts_with("bookworm-") && id.len() == "bookworm-".len() + 12);
        assert_eq!(id, image_id("bookworm", &a.clone()));
        let mut b = a.clone();
        b[1].1 = b"z".to_vec();
        assert_ne!(id, image_id("bookworm", &b));
        let mut c = a.clone();
        c[1].0 = "rootfs/etc/b".into();
        assert_ne!(id, image_id("bookworm", &c));
        // Moving a byte from one file to the other must not collide.
        let d = vec![("recipe.toml".to_string(), b"xy".to_vec()), ("rootfs/etc/a".to_string(), b"".to_vec())];
        assert_ne!(id, image_id("bookworm", &d));
    }

    #[test]
    fn variants_have_their_own_stable_id() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm-images");
        let base = load(&dir).unwrap();
        assert_eq!(base.with_packages(&[]).id, base.id);
        let a = base.with_packages(&["nginx-light".into(), "curl".into()]);
        let b = base.with_packages(&["curl".into(), "nginx-light".into(), "curl".into()]);
        assert_eq!(a.id, b.id, "order and repeats do not matter");
        assert!(a.id.starts_with(&format!("{}-", base.id)) && a.id.len() == base.id.len() + 9);
        assert!(a.recipe.packages.ends_with(&["curl".to_string(), "nginx-light".to_string()]));
        assert_ne!(a.id, base.with_packages(&["nginx-light".into()]).id);
        // Packages the base has already do not make a variant of their own.
        assert_eq!(base.with_packages(&["python3".into()]).recipe.packages, base.recipe.packages);
    }

    #[test]
    fn load_reports_missing_recipe() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load(dir.path()), Err(RecipeError::Missing(_))));
    }

    #[test]
    fn shipped_recipe_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm-images");
        let loaded = load(&dir).unwrap();
        assert!(loaded.recipe.packages.iter().any(|p| p == "linux-image-cloud-amd64"));
    }
}
