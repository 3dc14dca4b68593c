//! Verify: the sha256 of every stored file, independent of what the target claims.
//! `--verify host` (the default) freezes the guest's filesystems and reads the files from its
//! disk on the host (`image::peek`), at native speed. Where that cannot work (the disk is on
//! another host, a file is not on the ext4 filesystem that fills the disk, the host lacks the
//! tools) or fails, the guest hashes them with sha256sum, as `--verify guest` always does
//! (emulated under TCG: ~70 MB/s), and the result says why.

use crate::guest::agent::Agent;
use crate::image::peek::{Disk, Export, PeekError};
use crate::results::model::{Verification, Verify};
use std::time::{Duration, Instant};

/// Per stored file: its sha256 (None: missing or not hashed) and whether it exists (None: not
/// known); how that was found; and what went wrong on the way.
#[derive(Debug, Default)]
pub struct Hashed {
    pub sha256: Vec<Option<String>>,
    pub exists: Vec<Option<bool>>,
    pub record: Option<Verification>,
    pub notes: Vec<String>,
}

/// Hash `paths` (none: nothing to do) the way `how` asks, the guest's sha256sum taking at most
/// `budget`. Blocking.
pub fn hash(agent: &Agent, how: Verify, disk: Option<Disk>, paths: &[String], budget: Duration) -> Hashed {
    if paths.is_empty() {
        return Hashed::default();
    }
    let t0 = Instant::now();
    let fallback = match how {
        Verify::Guest => None,
        Verify::Host => match on_host(agent, disk, paths) {
            Ok(mut h) => {
                h.record = Some(Verification { by: Verify::Host, seconds: t0.elapsed().as_secs_f64(), fallback: None });
                return h;
            }
            Err(why) => Some(why),
        },
    };
    let mut h = in_guest(agent, paths, budget);
    h.record = Some(Verification { by: Verify::Guest, seconds: t0.elapsed().as_secs_f64(), fallback });
    h
}

/// Where a stored file is, as the guest sees it.
#[derive(Debug, PartialEq)]
enum Place {
    /// Not there (or not a regular file).
    Missing,
    /// On the filesystem that fills the cell's disk, at this path (symlinks resolved).
    OnDisk(String),
    /// Somewhere the host cannot read: why.
    Elsewhere(String),
}

/// Prints the disk's device number, then per path `real-path TAB maj:min TAB fstype`, or `-`.
const LOCATE: &str = r#"printf 'disk\t%s\n' "$(cat /sys/block/vda/dev)"
for p; do
  r=$(realpath -e -- "$p" 2>/dev/null) && [ -f "$r" ] || { echo -; continue; }
  printf '%s\t%s\n' "$r" "$(findmnt -n -r -o MAJ:MIN,FSTYPE -T "$r" | tr ' ' '\t')"
done"#;

/// `LOCATE`'s output, one place per path. Pure.
fn places(out: &str, n: usize) -> Result<Vec<Place>, String> {
    let mut lines = out.lines();
    let disk = lines.next().and_then(|l| l.strip_prefix("disk\t")).map(str::trim).filter(|d| !d.is_empty()).ok_or_else(|| format!("no disk vda in the guest: {out:?}"))?;
    let found: Vec<Place> = lines
        .map(|l| {
            if l == "-" {
                return Place::Missing;
            }
            let f: Vec<&str> = l.split('\t').collect();
            match f.as_slice() {
                [real, dev, fs] if *dev == disk && matches!(*fs, "ext2" | "ext3" | "ext4") => Place::OnDisk(real.to_string()),
                [real, dev, fs] => Place::Elsewhere(format!("{real} is on {fs} (device {dev}), not the ext4 filesystem of the cell's disk (device {disk})")),
                _ => Place::Elsewhere(format!("cannot tell where {l:?} is")),
            }
        })
        .collect();
    if found.len() != n {
        return Err(format!("looked for {n} files, heard of {}", found.len()));
    }
    Ok(found)
}

fn on_host(agent: &Agent, disk: Option<Disk>, paths: &[String]) -> Result<Hashed, String> {
    let disk = disk.ok_or("the cell's disk is on another host")?;
    if let Some(e) = crate::image::peek::unavailable() {
        return Err(e.to_string());
    }
    let mut args = vec!["-c", LOCATE, "sh"];
    args.extend(paths.iter().map(String::as_str));
    let out = agent.exec("/bin/sh", &args, Duration::from_secs(60)).map_err(|e| format!("cannot find the stored files: {e}"))?;
    let places = places(&out.stdout_str(), paths.len())?;
    if let Some(why) = places.iter().find_map(|p| if let Place::Elsewhere(w) = p { Some(w.clone()) } else { None }) {
        return Err(why);
    }
    if !places.iter().any(|p| matches!(p, Place::OnDisk(_))) {
        return Ok(from(vec![None; places.len()]));
    }
    let n = agent.freeze().map_err(|e| format!("cannot freeze the guest's filesystems: {e}"))?;
    if n == 0 {
        // Nothing was written out: the disk may not hold the files yet.
        let _ = agent.thaw();
        return Err("the guest froze no filesystem".into());
    }
    let read = read_frozen(&disk, &places);
    let thawed = agent.thaw();
    let hashes = match (read, thawed) {
        (Ok(h), Ok(())) => h,
        (Ok(h), Err(e)) => return Ok(Hashed { notes: vec![format!("the guest's {n} filesystems stay frozen: {e}")], ..from(h) }),
        (Err(e), Ok(())) => return Err(format!("reading the disk: {e}")),
        (Err(e), Err(t)) => return Err(format!("reading the disk: {e}; and the guest's filesystems stay frozen: {t}")),
    };
    Ok(from(hashes))
}

fn from(h: Vec<Option<String>>) -> Hashed {
    Hashed { exists: h.iter().map(|h| Some(h.is_some())).collect(), sha256: h, ..Hashed::default() }
}

/// With the guest frozen: each file's sha256, None for one that is not there.
fn read_frozen(disk: &Disk, places: &[Place]) -> Result<Vec<Option<String>>, PeekError> {
    let export = Export::start(&disk.overlay, &disk.export, Duration::from_secs(30))?;
    places
        .iter()
        .map(|p| match p {
            Place::OnDisk(path) => export.sha256(path).map(|h| Some(h.sha256)),
            _ => Ok(None),
        })
        .collect()
}

fn in_guest(agent: &Agent, paths: &[String], budget: Duration) -> Hashed {
    let mut h = Hashed::default();
    let mut args = vec!["--"];
    args.extend(paths.iter().map(String::as_str));
    match agent.exec("/usr/bin/sha256sum", &args, budget) {
        Ok(o) => {
            h.sha256 = parse_sha256sum(&o.stdout_str(), paths);
            // sha256sum reads every file it can; one it could not is missing.
            h.exists = h.sha256.iter().map(|s| Some(s.is_some())).collect();
            if o.exit_code != 0 {
                h.notes.push(format!("sha256sum: {}", String::from_utf8_lossy(&o.stderr).trim()));
            }
        }
        Err(e) => {
            h.sha256 = vec![None; paths.len()];
            h.exists = vec![None; paths.len()];
            h.notes.push(format!("sha256 not computed: {e}"));
        }
    }
    h
}

/// `sha256sum` output: the hash of each of `paths` that it could read.
fn parse_sha256sum(out: &str, paths: &[String]) -> Vec<Option<String>> {
    paths
        .iter()
        .map(|p| {
            out.lines().find_map(|l| {
                let (hash, name) = l.split_once("  ")?;
                (name == p && hash.len() == 64).then(|| hash.to_string())
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256sum_lines_are_matched_to_paths() {
        let h = |c: char| c.to_string().repeat(64);
        let out = format!("{}  /d/a.bin\n{}  /d/c.bin\n", h('a'), h('c'));
        let paths: Vec<String> = ["/d/a.bin", "/d/b.bin", "/d/c.bin"].map(String::from).to_vec();
        assert_eq!(parse_sha256sum(&out, &paths), vec![Some(h('a')), None, Some(h('c'))]);
        assert_eq!(parse_sha256sum("", &paths[..1]), vec![None]);
    }

    #[test]
    fn files_on_the_disk_filesystem_are_read_on_the_host_others_not() {
        let out = "disk\t254:0\n/var/lib/t/a.bin\t254:0\text4\n-\n/tmp/c.bin\t0:45\ttmpfs\n";
        let p = places(out, 3).unwrap();
        assert_eq!(p[0], Place::OnDisk("/var/lib/t/a.bin".into()));
        assert_eq!(p[1], Place::Missing);
        let Place::Elsewhere(why) = &p[2] else { panic!("{:?}", p[2]) };
        assert!(why.contains("/tmp/c.bin is on tmpfs") && why.contains("254:0"), "{why}");
    }

    #[test]
    fn a_partition_of_the_disk_is_not_the_disk() {
        // A bring-your-own image with its root on vda1 (254:1): debugfs would need an offset.
        let p = places("disk\t254:0\n/srv/x\t254:1\text4\n", 1).unwrap();
        assert!(matches!(&p[0], Place::Elsewhere(_)), "{p:?}");
    }

    #[test]
    fn an_answer_that_does_not_fit_is_refused() {
        assert!(places("", 1).is_err(), "no disk line");
        assert!(places("disk\t\n-\n", 1).is_err(), "no vda");
        assert!(places("disk\t254:0\n-\n", 2).unwrap_err().contains("looked for 2 files, heard of 1"));
        let p = places("disk\t254:0\ngarbage\n", 1).unwrap();
        assert!(matches!(&p[0], Place::Elsewhere(w) if w.contains("cannot tell")), "{p:?}");
    }
}
