//! `--target NAME|PATH`: which server a cell measures, resolved into a `TargetSpec` with its
//! host files made (a profile's `[host] prepare` runs once, under a lock).

use crate::error::InputError;
use crate::profile::parse::{self as profile, HostPaths, Profile};
use crate::profile::{REFERENCE_NAME, TargetMode, TargetSpec};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// One `--target` entry: a name or a profile's path, and for the reference target its mode
/// (`perfvm-target:memory`).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetArg {
    pub name: String,
    pub mode: Option<TargetMode>,
}

impl TargetArg {
    /// `NAME`, `PATH`, or `NAME:MODE` where MODE is a reference-target mode.
    pub fn parse(s: &str) -> Result<TargetArg, InputError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(InputError("--target: empty name (give a target, e.g. dufs or perfvm-target:memory)".into()));
        }
        if let Some((name, mode)) = s.rsplit_once(':') {
            if let Some(m) = TargetMode::parse(mode) {
                return Ok(TargetArg { name: name.to_string(), mode: Some(m) });
            }
            if name == REFERENCE_NAME {
                return Err(InputError(format!("--target {s}: unknown mode {mode:?}; use stream, drop-cache or memory")));
            }
        }
        Ok(TargetArg { name: s.to_string(), mode: None })
    }
}

/// A target resolved from its `--target` entry, and its name in a matrix of several (none when
/// it is the only one).
pub struct Chosen {
    pub choice: Choice,
    pub mode: Option<TargetMode>,
    pub tag: crate::plan::key::TargetTag,
}

impl Chosen {
    /// The target's name, as results record it.
    pub fn name(&self) -> &str {
        match &self.choice {
            Choice::Reference => REFERENCE_NAME,
            Choice::Profile(p) => &p.spec.name,
        }
    }
}

/// Every `--target` entry resolved; `mode` (`--target-mode`) applies to those without their own.
/// With several, each gets its tag (the profile's name, or `perfvm-target-MODE`), and two
/// entries naming the same target are refused.
pub fn choose_all(targets: &[TargetArg], mode: Option<TargetMode>) -> Result<Vec<Chosen>, InputError> {
    if targets.is_empty() {
        return Err(InputError("--target: give at least one target".into()));
    }
    let several = targets.len() > 1;
    let mut out: Vec<Chosen> = Vec::new();
    for t in targets {
        let choice = choose(&t.name)?;
        // --target-mode alone with one profile is a mistake; with several it is for the
        // reference entries.
        if let Choice::Profile(p) = &choice {
            if t.mode.is_some() || (mode.is_some() && !several) {
                return Err(InputError(format!("--target-mode is for the reference target ({REFERENCE_NAME}), not {}", p.spec.name)));
            }
        }
        let mode = if matches!(choice, Choice::Reference) { t.mode.or(mode) } else { None };
        let tag = match (several, &choice) {
            (false, _) => crate::plan::key::TargetTag::NONE,
            (true, Choice::Reference) => crate::plan::key::TargetTag::new(&format!("{REFERENCE_NAME}-{}", mode.unwrap_or(TargetMode::Stream).as_str())),
            (true, Choice::Profile(p)) => crate::plan::key::TargetTag::new(&p.spec.name),
        };
        if several && out.iter().any(|c| c.tag == tag) {
            return Err(InputError(format!("--target lists {} twice", tag.as_str())));
        }
        out.push(Chosen { choice, mode, tag });
    }
    Ok(out)
}

/// Where `--target` points: the built-in reference server or a profile file.
pub enum Choice {
    Reference,
    Profile(Box<Profile>),
}

/// A shipped profile's name (`targets/NAME.toml`) or a path to a `.toml` file.
pub fn choose(target: &str) -> Result<Choice, InputError> {
    if target == REFERENCE_NAME {
        return Ok(Choice::Reference);
    }
    let path = if target.contains('/') || target.ends_with(".toml") {
        PathBuf::from(target)
    } else {
        if !target.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || target.is_empty() {
            return Err(InputError(format!("--target {target:?}: a profile name (letters, digits, '-') or a path to a .toml file")));
        }
        let p = crate::paths::targets_dir().join(format!("{target}.toml"));
        if !p.is_file() {
            return Err(InputError(format!("--target {target}: no such target; known: {} (or give a profile file's path)", known_names().join(", "))));
        }
        p
    };
    profile::load(&path).map(|p| Choice::Profile(Box::new(p))).map_err(|e| InputError(format!("--target: {e}")))
}

/// The reference target and every shipped profile's name.
pub fn known_names() -> Vec<String> {
    let mut names = vec![REFERENCE_NAME.to_string()];
    names.extend(shipped().into_iter().map(|(p, _)| p.file_stem().unwrap_or_default().to_string_lossy().into_owned()));
    names
}

/// Shipped profiles, with each one's parse result.
pub fn shipped() -> Vec<(PathBuf, Result<Profile, String>)> {
    let dir = crate::paths::targets_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect())
        .unwrap_or_default();
    paths.sort();
    paths.into_iter().map(|p| {
        let r = profile::load(&p);
        (p, r)
    }).collect()
}

pub fn host_paths(cache: &Path) -> HostPaths {
    let bin = crate::paths::target_binary();
    HostPaths {
        cache: crate::paths::target_files_dir(cache),
        perfvm_bin_dir: bin.parent().map(Path::to_path_buf).unwrap_or_default(),
    }
}

/// The spec for a choice, with the profile's host files made if missing (its `[host] prepare`
/// runs once, under a lock, output shown).
pub fn spec(choice: &Choice, mode: Option<TargetMode>, cache: &Path) -> Result<TargetSpec> {
    match choice {
        Choice::Reference => {
            let bin = crate::paths::target_binary();
            Ok(TargetSpec::reference(mode.unwrap_or(TargetMode::Stream), bin))
        }
        Choice::Profile(p) => {
            if mode.is_some() {
                return Err(InputError(format!("--target-mode is for the reference target ({REFERENCE_NAME}), not {}", p.spec.name)).into());
            }
            let host = host_paths(cache);
            let spec = p.resolve(&host);
            ensure_host_files(p, &spec, &host)?;
            Ok(spec)
        }
    }
}

fn missing(spec: &TargetSpec) -> Vec<PathBuf> {
    spec.files.iter().filter(|f| !f.host.is_file()).map(|f| f.host.clone()).collect()
}

fn ensure_host_files(p: &Profile, spec: &TargetSpec, host: &HostPaths) -> Result<()> {
    if missing(spec).is_empty() {
        return Ok(());
    }
    let Some(cmd) = p.prepare_command(host) else {
        let list: Vec<String> = missing(spec).iter().map(|m| m.display().to_string()).collect();
        return Err(InputError(format!("target {}: missing host file(s) {} and the profile has no [host] prepare to make them", spec.name, list.join(", "))).into());
    };
    crate::paths::ensure_shared_dir(&host.cache).with_context(|| format!("cannot create {}", host.cache.display()))?;
    let lock_path = host.cache.join(format!(".prepare-{}.lock", spec.name));
    let lock = std::fs::File::create(&lock_path).with_context(|| format!("cannot create {}", lock_path.display()))?;
    lock.lock()?;
    // Another perfvm may have made them while we waited.
    if missing(spec).is_empty() {
        return Ok(());
    }
    eprintln!("[target] {}: making host files: {cmd}", spec.name);
    let started = std::time::Instant::now();
    let dir = p.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let status = std::process::Command::new("sh")
        .args(["-ec", &cmd])
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        // Build output goes to our stderr, so stdout stays perfvm's.
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("cannot run the prepare command of {}", spec.name))?;
    anyhow::ensure!(status.success(), "target {}: [host] prepare failed ({status}): {cmd}", spec.name);
    let still: Vec<String> = missing(spec).iter().map(|m| m.display().to_string()).collect();
    anyhow::ensure!(still.is_empty(), "target {}: [host] prepare ran but {} is still missing", spec.name, still.join(", "));
    eprintln!("[target] {}: host files ready in {:.0} s", spec.name, started.elapsed().as_secs_f64());
    Ok(())
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_entries_take_a_mode_after_a_colon() {
        assert_eq!(TargetArg::parse("perfvm-target:memory").unwrap(), TargetArg { name: REFERENCE_NAME.into(), mode: Some(TargetMode::Memory) });
        assert_eq!(TargetArg::parse(" dufs ").unwrap(), TargetArg { name: "dufs".into(), mode: None });
        assert_eq!(TargetArg::parse("my/profile.toml").unwrap().mode, None);
        assert!(TargetArg::parse("perfvm-target:fast").unwrap_err().0.contains("stream, drop-cache or memory"));
        assert!(TargetArg::parse("").is_err());
    }

    #[test]
    fn several_targets_get_tags_and_the_same_one_twice_is_refused() {
        let arg = |s: &str| TargetArg::parse(s).unwrap();
        let one = choose_all(&[arg("perfvm-target")], Some(TargetMode::Memory)).unwrap();
        assert!(one[0].tag.is_none(), "one target: cells keep their names");
        assert_eq!(one[0].mode, Some(TargetMode::Memory));
        let two = choose_all(&[arg("perfvm-target:stream"), arg("perfvm-target")], Some(TargetMode::Memory)).unwrap();
        let tags: Vec<&str> = two.iter().map(|c| c.tag.as_str()).collect();
        assert_eq!(tags, ["perfvm-target-stream", "perfvm-target-memory"], "--target-mode fills in the entries without a mode");
        let twice = choose_all(&[arg("perfvm-target"), arg("perfvm-target:stream")], None).err().unwrap();
        assert!(twice.0.contains("perfvm-target-stream twice"), "{}", twice.0);
        assert!(choose_all(&[], None).is_err());
    }
}
