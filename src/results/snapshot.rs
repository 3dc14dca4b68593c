//! Snapshots: one `.tar.zst` with a matrix run's inputs (its definition, the target's profile
//! and the files beside it, the image recipe, the cloud-init templates, perfvm's version) and
//! its results, so the same cells can be run again elsewhere (`perfvm matrix --from`). Secrets
//! are never in it: they are made per cell and never written, and what is saved has them
//! redacted.

use crate::results::export::json::RunMetadata;
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub perfvm_version: String,
    pub created: chrono::DateTime<chrono::Utc>,
    /// The run directory's name.
    pub run: String,
    pub metadata: RunMetadata,
    /// The profile's file name under `inputs/profile/`, when the target came from a profile.
    pub profile_file: Option<String>,
}

/// Where the parts of an extracted snapshot are.
pub struct Extracted {
    pub manifest: Manifest,
    pub recipe_dir: PathBuf,
    pub cloud_init_dir: PathBuf,
    pub profile: Option<PathBuf>,
    pub results: PathBuf,
}

fn add_dir(tar: &mut tar::Builder<impl std::io::Write>, src: &Path, name: &str) -> Result<()> {
    for f in crate::image::recipe::recipe_files(src).with_context(|| format!("cannot read {}", src.display()))? {
        // Temp files of atomic writes in progress, and the run's lock, are not part of it.
        if f.0.contains(".tmp-") || f.0 == ".lock" {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(f.1.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, format!("{name}/{}", f.0), f.1.as_slice())?;
    }
    Ok(())
}

/// Pack `run_dir` (a matrix run) with the given input directories into `out`.
pub fn create(run_dir: &Path, recipe_dir: &Path, cloud_init_dir: &Path, out: &Path) -> Result<Manifest> {
    #[derive(serde::Deserialize)]
    struct Doc {
        metadata: RunMetadata,
    }
    let results = run_dir.join("results.json");
    let doc: Doc = serde_json::from_slice(&std::fs::read(&results).with_context(|| format!("{}: not a matrix run directory (no results.json)", run_dir.display()))?)
        .with_context(|| format!("cannot read {}", results.display()))?;
    let meta = doc.metadata;
    // The profile must be the one the run used: its hash is in the run's definition.
    let profile = match &meta.target_profile {
        Some(p) => {
            let p = PathBuf::from(p);
            let text = std::fs::read(&p).with_context(|| format!("the run's target profile {} is gone", p.display()))?;
            let sha = hex::encode(Sha256::digest(&text));
            if !meta.definition.target_mode.ends_with(&sha[..12]) {
                bail!("the target profile {} changed since the run (its hash is not the run's); a snapshot would not reproduce it", p.display());
            }
            Some(p)
        }
        None => None,
    };
    let recipe = crate::image::recipe::load(recipe_dir)?;
    if !meta.image_id.starts_with(&recipe.id) {
        bail!("the image recipe in {} (id {}) is not the one the run used ({}); a snapshot would not reproduce it", recipe_dir.display(), recipe.id, meta.image_id);
    }
    let manifest = Manifest {
        format: FORMAT,
        perfvm_version: env!("CARGO_PKG_VERSION").to_string(),
        created: chrono::Utc::now(),
        run: run_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        metadata: meta,
        profile_file: profile.as_ref().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()),
    };
    let tmp = out.with_extension("part");
    let file = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let zst = zstd::Encoder::new(file, 9)?;
    let mut tar = tar::Builder::new(zst);
    let json = serde_json::to_vec_pretty(&manifest)?;
    let mut h = tar::Header::new_gnu();
    h.set_size(json.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "snapshot.json", json.as_slice())?;
    add_dir(&mut tar, recipe_dir, "inputs/vm-images")?;
    add_dir(&mut tar, cloud_init_dir, "inputs/cloud-init")?;
    if let Some(p) = &profile {
        // The whole directory: a profile may deliver files from beside it ({profile_dir}).
        add_dir(&mut tar, p.parent().unwrap_or(Path::new(".")), "inputs/profile")?;
    }
    add_dir(&mut tar, run_dir, "results")?;
    let zst = tar.into_inner()?;
    zst.finish()?.sync_all()?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(manifest)
}

/// Unpack a snapshot into `dest` (which must not exist yet). tar refuses paths leaving `dest`.
pub fn extract(archive: &Path, dest: &Path) -> Result<Extracted> {
    let file = std::fs::File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let zst = zstd::Decoder::new(file).with_context(|| format!("{}: not a zstd file", archive.display()))?;
    std::fs::create_dir_all(dest)?;
    let mut tar = tar::Archive::new(zst);
    for entry in tar.entries().with_context(|| format!("{}: not a perfvm snapshot", archive.display()))? {
        let mut e = entry?;
        if !e.unpack_in(dest)? {
            bail!("{}: an entry would land outside the snapshot directory", archive.display());
        }
    }
    let m: Manifest = serde_json::from_slice(&std::fs::read(dest.join("snapshot.json")).with_context(|| format!("{}: no snapshot.json: not a perfvm snapshot", archive.display()))?)?;
    if m.format != FORMAT {
        bail!("{}: snapshot format {} (this perfvm reads {FORMAT})", archive.display(), m.format);
    }
    Ok(Extracted {
        recipe_dir: dest.join("inputs/vm-images"),
        cloud_init_dir: dest.join("inputs/cloud-init"),
        profile: m.profile_file.as_ref().map(|f| dest.join("inputs/profile").join(f)),
        results: dest.join("results"),
        manifest: m,
    })
}
