//! Snapshots: one `.tar.zst` with a matrix run's inputs (its definition, the target's profile
//! and the files beside it, the image recipe, the cloud-init templates, perfvm's version) and
//! its results, so the same cells can be run again elsewhere (`perfvm matrix --from`). Secrets
//! are never in it: they are made per cell and never written, and what is saved has them
//! redacted.

use crate::results::export::json::RunMetadata;
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// 2: the profile's directory is no longer packed whole, only the profile and the files it
/// delivers from beside it (`packed` lists them).
pub const FORMAT: u32 = 2;

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
    /// Every file packed from the profile's directory, relative to it.
    #[serde(default)]
    pub packed: Vec<String>,
}

/// Where the parts of an extracted snapshot are.
pub struct Extracted {
    pub manifest: Manifest,
    pub recipe_dir: PathBuf,
    pub cloud_init_dir: PathBuf,
    pub profile: Option<PathBuf>,
    pub results: PathBuf,
}

fn add_file(tar: &mut tar::Builder<impl std::io::Write>, path: &str, data: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, path, data)?;
    Ok(())
}

fn add_dir(tar: &mut tar::Builder<impl std::io::Write>, src: &Path, name: &str) -> Result<()> {
    for f in crate::image::recipe::recipe_files(src).with_context(|| format!("cannot read {}", src.display()))? {
        // Temp files of atomic writes in progress, and the run's lock, are not part of it.
        if f.0.contains(".tmp-") || f.0 == ".lock" {
            continue;
        }
        add_file(tar, &format!("{name}/{}", f.0), &f.1)?;
    }
    Ok(())
}

/// What a profile needs from its directory: itself and the files it delivers from beside it
/// (`{profile_dir}/…` in `[[files]] host`), relative to the directory; never its dotfiles or
/// anything else there (a `.git`, an `.env`, keys).
pub fn profile_files(profile: &Path) -> Result<Vec<String>> {
    let p = crate::profile::parse::load(profile).map_err(anyhow::Error::msg)?;
    let mut out = vec![profile.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()];
    for (host, _, _) in &p.file_templates {
        if let Some(rel) = host.strip_prefix("{profile_dir}/") {
            if rel.is_empty() || rel.starts_with('/') || rel.split('/').any(|c| c == ".." || c == "." || c.is_empty()) {
                bail!("{}: file {host} leaves the profile's directory", profile.display());
            }
            out.push(rel.to_string());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
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
    // A snapshot holds one target's profile; a run of several would not be reproduced.
    if !meta.definition.targets.is_empty() {
        bail!("{} is a matrix of several targets: a snapshot holds one target's profile and cannot reproduce it yet; keep its plan.toml (or its command line) instead", run_dir.display());
    }
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
        packed: match &profile {
            Some(p) => profile_files(p)?,
            None => Vec::new(),
        },
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
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        for rel in &manifest.packed {
            let data = std::fs::read(dir.join(rel)).with_context(|| format!("cannot read {}", dir.join(rel).display()))?;
            add_file(&mut tar, &format!("inputs/profile/{rel}"), &data)?;
        }
    }
    add_dir(&mut tar, run_dir, "results")?;
    let zst = tar.into_inner()?;
    zst.finish()?.sync_all()?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(manifest)
}

/// The commands an extracted snapshot would have this host run as root, beyond what this
/// perfvm runs anyway: its image recipe's (packages installed, and `customize` commands run in
/// a chroot) unless the recipe is this project's own (`local_recipe`), and its profile's
/// `[host] prepare` unless the profile is one shipped here (`targets`). What runs in the guest is
/// not listed: the guest is the sandbox.
pub fn host_commands(x: &Extracted, local_recipe: &Path, targets: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let theirs = crate::image::recipe::load(&x.recipe_dir)?;
    let ours = crate::image::recipe::load(local_recipe).ok().map(|r| r.id);
    if ours.as_deref() != Some(theirs.id.as_str()) {
        out.push(format!("image recipe {}: install Debian packages {}", theirs.id, theirs.recipe.packages.join(", ")));
        out.extend(theirs.recipe.customize.iter().map(|c| format!("image recipe {}: {c}", theirs.id)));
    }
    if let Some(p) = &x.profile {
        let sha = |path: &Path| std::fs::read(path).ok().map(|t| hex::encode(Sha256::digest(&t)));
        let mine = sha(p);
        let shipped = std::fs::read_dir(targets).into_iter().flatten().flatten().any(|e| e.path().extension().is_some_and(|x| x == "toml") && sha(&e.path()) == mine);
        if !shipped {
            let prof = crate::profile::parse::load(p).map_err(anyhow::Error::msg)?;
            if let Some(cmd) = &prof.prepare {
                out.push(format!("profile {}: [host] prepare: {cmd}", prof.spec.name));
            }
        }
    }
    Ok(out)
}

/// Unpack a snapshot into `dest` (which must not exist yet). tar refuses paths leaving `dest`.
pub fn extract(archive: &Path, dest: &Path) -> Result<Extracted> {
    let file = std::fs::File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let zst = zstd::Decoder::new(file).with_context(|| format!("{}: not a zstd file", archive.display()))?;
    std::fs::create_dir_all(dest)?;
    let mut tar = tar::Archive::new(zst);
    for entry in tar.entries().with_context(|| format!("{}: not a perfvm snapshot", archive.display()))? {
        let mut e = entry?;
        // Files and directories only: a link could point anywhere on this host.
        if !matches!(e.header().entry_type(), tar::EntryType::Regular | tar::EntryType::Directory) {
            bail!("{}: entry {} is not a plain file", archive.display(), e.path().map(|p| p.display().to_string()).unwrap_or_default());
        }
        if !e.unpack_in(dest)? {
            bail!("{}: an entry would land outside the snapshot directory", archive.display());
        }
    }
    let m: Manifest = serde_json::from_slice(&std::fs::read(dest.join("snapshot.json")).with_context(|| format!("{}: no snapshot.json: not a perfvm snapshot", archive.display()))?)?;
    if !(1..=FORMAT).contains(&m.format) {
        bail!("{}: snapshot format {} (this perfvm reads 1 to {FORMAT})", archive.display(), m.format);
    }
    // Every path a snapshot names stays inside it: the profile is a file name in inputs/profile.
    if let Some(f) = &m.profile_file
        && (f.is_empty() || f.contains('/') || f.contains('\\') || f == ".." || f == ".")
    {
        bail!("{}: profile_file {f:?} is not a file name inside the snapshot", archive.display());
    }
    Ok(Extracted {
        recipe_dir: dest.join("inputs/vm-images"),
        cloud_init_dir: dest.join("inputs/cloud-init"),
        profile: m.profile_file.as_ref().map(|f| dest.join("inputs/profile").join(f)),
        results: dest.join("results"),
        manifest: m,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("conf")).unwrap();
        std::fs::write(d.path().join("conf/server.conf"), "listen 8080").unwrap();
        std::fs::write(d.path().join(".env"), "TOKEN=secret").unwrap();
        std::fs::create_dir_all(d.path().join(".git")).unwrap();
        std::fs::write(d.path().join(".git/config"), "[core]").unwrap();
        std::fs::write(
            d.path().join("srv.toml"),
            "name = \"srv\"\nport = 8080\n[host]\nprepare = \"curl -o x http://example.invalid/x\"\n[[files]]\nhost = \"{profile_dir}/conf/server.conf\"\nguest = \"/etc/srv.conf\"\n[[files]]\nhost = \"{cache}/x\"\nguest = \"/usr/local/bin/x\"\n[service]\nexec_start = \"/usr/local/bin/x\"\n[upload]\nmethod = \"PUT\"\nurl = \"/{name}\"\nverify = false\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn only_the_profile_and_what_it_delivers_from_its_directory_are_packed() {
        let d = profile_dir();
        assert_eq!(profile_files(&d.path().join("srv.toml")).unwrap(), ["conf/server.conf", "srv.toml"]);
        let text = std::fs::read_to_string(d.path().join("srv.toml")).unwrap().replace("{profile_dir}/conf/server.conf", "{profile_dir}/../../etc/passwd");
        std::fs::write(d.path().join("bad.toml"), text).unwrap();
        assert!(profile_files(&d.path().join("bad.toml")).unwrap_err().to_string().contains("leaves the profile's directory"));
    }

    /// A snapshot archive with these entries (name, data).
    fn archive(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut tar = tar::Builder::new(zstd::Encoder::new(f.reopen().unwrap(), 3).unwrap());
        for (name, data) in entries {
            add_file(&mut tar, name, data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
        f
    }

    fn manifest(profile_file: &str) -> Vec<u8> {
        let meta: serde_json::Value = serde_json::json!({
            "run_key": "matrix-x", "perfvm_version": "0", "git_rev": null, "host": "h", "kernel": "k",
            "libvirt_version": null, "qemu_version": null, "accel": "tcg", "image_id": "i", "target": "t",
            "target_mode": "profile-x", "jobs": 1, "started": "2026-11-30T00:00:00Z", "finished": null,
            "definition": { "ram_mib": [256], "file_sizes": ["1M"], "repeat": 1, "target": "t", "target_mode": "profile-x",
              "image_id": "i", "accel": "tcg", "cpus": 2, "timeout_s": 600, "seed": 1, "sample_interval_ms": 100 }
        });
        serde_json::to_vec(&serde_json::json!({"format": 2, "perfvm_version": "0", "created": "2026-11-30T00:00:00Z", "run": "matrix-x", "metadata": meta, "profile_file": profile_file})).unwrap()
    }

    #[test]
    fn every_path_a_snapshot_names_stays_inside_it() {
        for bad in ["../../etc/perfvm.toml", "/etc/perfvm.toml", "..", "sub/x.toml"] {
            let a = archive(&[("snapshot.json", &manifest(bad))]);
            let dest = tempfile::tempdir().unwrap();
            let e = extract(a.path(), &dest.path().join("x")).err().unwrap();
            assert!(format!("{e:#}").contains("not a file name inside the snapshot"), "{bad}: {e:#}");
        }
        let a = archive(&[("snapshot.json", &manifest("srv.toml"))]);
        let dest = tempfile::tempdir().unwrap();
        let x = extract(a.path(), &dest.path().join("x")).unwrap();
        assert_eq!(x.profile.unwrap(), dest.path().join("x/inputs/profile/srv.toml"));
    }

    #[test]
    fn a_snapshots_host_commands_are_listed_unless_they_are_this_projects_own() {
        let d = profile_dir();
        let a = archive(&[("snapshot.json", &manifest("srv.toml")), ("inputs/profile/srv.toml", &std::fs::read(d.path().join("srv.toml")).unwrap())]);
        let dest = tempfile::tempdir().unwrap();
        let x = extract(a.path(), &dest.path().join("x")).unwrap();
        // This project's recipe, copied into the snapshot: nothing to list for it.
        let recipe = crate::paths::recipe_dir();
        std::fs::create_dir_all(&x.recipe_dir).unwrap();
        for (name, data) in crate::image::recipe::recipe_files(&recipe).unwrap() {
            let p = x.recipe_dir.join(&name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        let shipped = tempfile::tempdir().unwrap();
        let cmds = host_commands(&x, &recipe, shipped.path()).unwrap();
        assert_eq!(cmds, ["profile srv: [host] prepare: curl -o x http://example.invalid/x"]);
        // The same profile shipped here: nothing needs trust.
        std::fs::copy(d.path().join("srv.toml"), shipped.path().join("srv.toml")).unwrap();
        assert!(host_commands(&x, &recipe, shipped.path()).unwrap().is_empty());
        // A recipe of its own: its packages and customize commands are listed.
        let text = std::fs::read_to_string(x.recipe_dir.join("recipe.toml")).unwrap().replace("customize = [", "customize = [\n  \"touch /owned\",");
        std::fs::write(x.recipe_dir.join("recipe.toml"), text).unwrap();
        let cmds = host_commands(&x, &recipe, shipped.path()).unwrap();
        assert!(cmds.iter().any(|c| c.ends_with("touch /owned")), "{cmds:?}");
        assert!(cmds[0].contains("install Debian packages"), "{cmds:?}");
    }
}
