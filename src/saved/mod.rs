//! Saved guests (`--boot saved`): a guest booted once, its memory and device state saved by
//! libvirt, and restored for each cell onto a fresh overlay of its disk as it was at the save.
//! This room owns the cache of saved states, `<cache>/saved/<id>/slot-N/`: what defines one
//! (its key), a slot that one cell at a time holds, whether what is on disk may be restored,
//! and the restore XML. Booting and saving a guest are the pipeline's (pipeline/saved.rs).
//!
//! One saved state runs as one guest at a time: libvirt restores it under the name and UUID it
//! was saved with. Parallel cells take slots, each a state of its own.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Bumped when what a saved state holds, or how it is restored, changes.
pub const FORMAT: u32 = 1;
pub const MEMORY: &str = "memory.save";
/// The guest's disk as it was at the save: read-only from then on, the backing of each cell's overlay.
pub const DISK: &str = "disk.qcow2";
pub const SEED: &str = "seed.iso";
/// The restore XML, with the per-cell parts as placeholders.
pub const XML: &str = "domain.xml";
/// Written last: a slot without it is not built (or its build was cut off).
pub const META: &str = "meta.json";
pub const BUILD_CONSOLE: &str = "build-console.log";
/// Why a slot was unmarked as built after a failed restore: told by the cell that builds it again.
pub const REBUILD_REASON: &str = "rebuild-reason";
const LOCK: &str = "lock";
/// Held (briefly) while slots are looked over or the state removed, so that one process's
/// look at the slots never sees another's look as cells holding them.
const TAKE_LOCK: &str = "take.lock";
/// At most this many slots per state (cells of one state at once, over all perfvm processes).
pub const MAX_SLOTS: u32 = 4;

/// Everything that defines a saved state: a change of any of it is another state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Key {
    pub format: u32,
    pub image_id: String,
    /// The image's disk as it is (size and modification time): a rebuilt image under the same
    /// id must not be the backing of a disk saved on the old one.
    pub image_disk: String,
    pub ram_mib: u64,
    pub cpus: u32,
    pub accel: String,
    /// sha256 of what the build puts into the guest: the rendered user-data and each delivered
    /// file (the sampler's probe, the target's files).
    pub guest_sha256: String,
    /// perfvm's own executable (sha256, 16 hex digits): how it boots, saves and restores a guest
    /// is part of what a saved guest is, so a new perfvm build is a new saved guest.
    pub perfvm: String,
    /// libvirt's and qemu's versions: a saved state is read back by the qemu that wrote it.
    pub hypervisor: String,
}

impl Key {
    pub fn id(&self) -> String {
        let json = serde_json::to_vec(self).expect("a key serializes");
        format!("s{}", &hex::encode(Sha256::digest(&json))[..15])
    }
}

/// What a built slot says of itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub key: Key,
    pub memory_bytes: u64,
    pub memory_sha256: String,
    pub disk_bytes: u64,
    pub disk_sha256: String,
    pub built: chrono::DateTime<chrono::Utc>,
    pub build_seconds: f64,
}

pub fn saved_dir(cache: &Path) -> PathBuf {
    cache.join("saved")
}

/// One slot of a state, held by this process (an exclusive lock on its `lock` file) until dropped.
#[derive(Debug)]
pub struct Slot {
    pub dir: PathBuf,
    pub state: String,
    pub index: u32,
    _lock: File,
}

impl Slot {
    /// The domain name the state was saved under, and restores under.
    pub fn name(&self) -> String {
        slot_name(&self.state, self.index)
    }
    pub fn uuid(&self) -> String {
        uuid_of(&self.name())
    }
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
    /// Everything of the slot but its lock: before a build, or when what is there cannot be used.
    pub fn clear(&self) -> std::io::Result<()> {
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            if e.file_name() != LOCK {
                let p = e.path();
                if p.is_dir() { crate::image::peek::remove_cell_dir(&p)? } else { remove_file_if_any(&p)? }
            }
        }
        Ok(())
    }
}

fn remove_file_if_any(p: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

pub fn slot_name(state: &str, index: u32) -> String {
    format!("{}saved-{state}-{index}", crate::hypervisor::NAME_PREFIX)
}

/// A UUID fixed by the name (libvirt restores a state only under the UUID it was saved with).
pub fn uuid_of(name: &str) -> String {
    let h = hex::encode(Sha256::digest(name.as_bytes()));
    format!("{}-{}-4{}-8{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

/// What `take` found for this cell.
#[derive(Debug)]
pub enum Taken {
    /// A built slot, held: check it, then restore it.
    Built(Slot),
    /// A slot with nothing usable in it, held: build it.
    Empty(Slot),
}

/// Where each slot stands, as seen from outside (pure input to `choose`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SlotState {
    FreeBuilt,
    FreeEmpty,
    /// Held by a cell that restored it.
    InUse,
    /// Held by a build.
    Building,
}

/// Which slot to take: a free built one first; while another process or cell is building one,
/// wait for it (None) rather than build the same state twice; else the first free empty one.
/// None also when every slot is in use. Pure.
pub fn choose(slots: &[SlotState]) -> Option<usize> {
    if let Some(i) = slots.iter().position(|s| *s == SlotState::FreeBuilt) {
        return Some(i);
    }
    if slots.contains(&SlotState::Building) {
        return None;
    }
    slots.iter().position(|s| *s == SlotState::FreeEmpty)
}

/// Try to take one slot of `state` now: Ok(None) when the caller should wait and try again.
pub fn try_take(cache: &Path, state: &str) -> std::io::Result<Option<Taken>> {
    let dir = saved_dir(cache).join(state);
    crate::paths::ensure_shared_dir(&dir)?;
    let _looking = take_lock(&dir)?;
    let mut held = Vec::new();
    let mut seen = Vec::new();
    for i in 0..MAX_SLOTS {
        let slot_dir = dir.join(format!("slot-{i}"));
        crate::paths::ensure_shared_dir(&slot_dir)?;
        let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(slot_dir.join(LOCK))?;
        let built = slot_dir.join(META).is_file();
        match f.try_lock() {
            Ok(()) => {
                seen.push(if built { SlotState::FreeBuilt } else { SlotState::FreeEmpty });
                held.push(Some(Slot { dir: slot_dir, state: state.to_string(), index: i, _lock: f }));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                seen.push(if built { SlotState::InUse } else { SlotState::Building });
                held.push(None);
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
    // The others' locks go with `held` as it drops.
    Ok(choose(&seen).and_then(|i| {
        let slot = held[i].take()?;
        Some(if seen[i] == SlotState::FreeBuilt { Taken::Built(slot) } else { Taken::Empty(slot) })
    }))
}

fn take_lock(dir: &Path) -> std::io::Result<File> {
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(TAKE_LOCK))?;
    f.lock()?;
    Ok(f)
}

/// Why a built slot must not be restored, if it must not: its meta is unreadable or of another
/// key, or a file is missing, of another size, or (checked once per process per file version)
/// hashes to something else than at the save.
pub fn check(slot: &Slot, key: &Key) -> Result<Meta, String> {
    let text = std::fs::read_to_string(slot.path(META)).map_err(|e| format!("{META}: {e}"))?;
    let meta: Meta = serde_json::from_str(&text).map_err(|e| format!("{META} is not readable: {e}"))?;
    if &meta.key != key {
        return Err("it was saved for something else (stale)".into());
    }
    if !slot.path(XML).is_file() || !slot.path(SEED).is_file() {
        return Err("a file of it is missing".into());
    }
    check_file(&slot.path(MEMORY), meta.memory_bytes, &meta.memory_sha256)?;
    check_file(&slot.path(DISK), meta.disk_bytes, &meta.disk_sha256)?;
    Ok(meta)
}

/// Files already hashed by this process, by (path, size, mtime): a matrix hashes a state once.
static HASHED: std::sync::Mutex<Vec<(PathBuf, u64, std::time::SystemTime)>> = std::sync::Mutex::new(Vec::new());

fn check_file(path: &Path, bytes: u64, sha256: &str) -> Result<(), String> {
    let name = path.file_name().unwrap_or_default().to_string_lossy().to_string();
    let m = std::fs::metadata(path).map_err(|e| format!("{name}: {e}"))?;
    if m.len() != bytes {
        return Err(format!("{name} is {} bytes, was {bytes} when saved", m.len()));
    }
    let version = (path.to_path_buf(), m.len(), m.modified().map_err(|e| format!("{name}: {e}"))?);
    if HASHED.lock().unwrap().contains(&version) {
        return Ok(());
    }
    let got = sha256_file(path).map_err(|e| format!("{name}: {e}"))?;
    if got != sha256 {
        return Err(format!("{name} has changed since it was saved (sha256 {})", &got[..12]));
    }
    HASHED.lock().unwrap().push(version);
    Ok(())
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The per-cell parts of the restore XML (each as it appears in the XML, escaped).
#[derive(Debug, Clone, PartialEq)]
pub struct Parts {
    pub disk: String,
    pub console: String,
    pub netdev: String,
    /// The content of `<metadata>`.
    pub metadata: String,
}

const PLACEHOLDERS: [&str; 4] = ["@@PERFVM_DISK@@", "@@PERFVM_CONSOLE@@", "@@PERFVM_NETDEV@@", "@@PERFVM_METADATA@@"];

/// The restore XML template from the XML libvirt keeps in a saved state: the build's disk,
/// console, port forward and owner replaced by placeholders, and the disk's backing chain left
/// for libvirt to read from the cell's overlay (which has one more layer). Pure.
pub fn template(saved_xml: &str, build: &Parts) -> Result<String, String> {
    let mut t = strip_backing_store(saved_xml);
    let open = t.find("<metadata>").ok_or("no <metadata> in the saved XML")?;
    let close = t.find("</metadata>").ok_or("no </metadata> in the saved XML")?;
    t.replace_range(open + "<metadata>".len()..close, PLACEHOLDERS[3]);
    for (value, ph) in [(&build.disk, PLACEHOLDERS[0]), (&build.console, PLACEHOLDERS[1]), (&build.netdev, PLACEHOLDERS[2])] {
        if !t.contains(value.as_str()) {
            return Err(format!("the saved XML does not name {value:?}"));
        }
        t = t.replace(value.as_str(), ph);
    }
    Ok(t)
}

/// A cell's restore XML. Pure.
pub fn fill(template: &str, cell: &Parts) -> String {
    template
        .replace(PLACEHOLDERS[0], &cell.disk)
        .replace(PLACEHOLDERS[1], &cell.console)
        .replace(PLACEHOLDERS[2], &cell.netdev)
        .replace(PLACEHOLDERS[3], &cell.metadata)
}

/// Drop every `<backingStore …>` element (self-closing or with content, nested). Pure.
fn strip_backing_store(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(start) = rest.find("<backingStore") {
        out.push_str(rest[..start].trim_end_matches([' ', '\t']));
        let mut depth = 0usize;
        let mut i = start;
        loop {
            let Some(next) = rest[i..].find('<') else { i = rest.len(); break };
            let tag_start = i + next;
            let tag_end = rest[tag_start..].find('>').map(|e| tag_start + e + 1).unwrap_or(rest.len());
            let tag = &rest[tag_start..tag_end];
            if tag.starts_with("<backingStore") {
                if !tag.ends_with("/>") {
                    depth += 1;
                }
            } else if tag.starts_with("</backingStore") {
                depth -= 1;
            }
            i = tag_end;
            if depth == 0 {
                break;
            }
        }
        rest = &rest[i..];
        if rest.starts_with('\n') {
            rest = &rest[1..];
            out.push('\n');
        }
        // Keep the line structure: the newline before the element stays.
        if out.ends_with("\n\n") {
            out.pop();
        }
    }
    out.push_str(rest);
    out
}

/// One saved state in the cache, for `perfvm image list`.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub id: String,
    pub slots_built: u32,
    pub bytes: u64,
    pub key: Option<Key>,
}

pub fn list(cache: &Path) -> std::io::Result<Vec<Listed>> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(saved_dir(cache)) else { return Ok(out) };
    for e in rd {
        let e = e?;
        if !e.path().is_dir() {
            continue;
        }
        let mut l = Listed { id: e.file_name().to_string_lossy().to_string(), slots_built: 0, bytes: 0, key: None };
        for i in 0..MAX_SLOTS {
            let d = e.path().join(format!("slot-{i}"));
            if let Ok(meta) = std::fs::read_to_string(d.join(META)).map_err(|_| ()).and_then(|t| serde_json::from_str::<Meta>(&t).map_err(|_| ())) {
                l.slots_built += 1;
                l.bytes += meta.memory_bytes + meta.disk_bytes;
                l.key = Some(meta.key);
            }
        }
        out.push(l);
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Remove a saved state: every slot, unless a cell or build holds one.
pub fn remove(cache: &Path, id: &str) -> anyhow::Result<()> {
    anyhow::ensure!(!id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()), "'{id}' is not a saved state's id (see `perfvm image list`)");
    let dir = saved_dir(cache).join(id);
    anyhow::ensure!(dir.is_dir(), "no saved state '{id}' in {}", saved_dir(cache).display());
    let _looking = take_lock(&dir)?;
    let mut held = Vec::new();
    for i in 0..MAX_SLOTS {
        let p = dir.join(format!("slot-{i}")).join(LOCK);
        if !p.exists() {
            continue;
        }
        let f = std::fs::OpenOptions::new().write(true).open(&p)?;
        match f.try_lock() {
            Ok(()) => held.push(f),
            Err(_) => anyhow::bail!("saved state {id} is in use by a running perfvm; wait for its cells to end"),
        }
    }
    crate::image::peek::remove_cell_dir(&dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key { format: FORMAT, image_id: "bookworm-abc".into(), image_disk: "1:2".into(), ram_mib: 256, cpus: 2, accel: "tcg".into(), guest_sha256: "ff".into(), perfvm: "ab".into(), hypervisor: "9.0.0/7.2.0".into() }
    }

    #[test]
    fn the_id_changes_with_everything_that_defines_a_state() {
        let k = key();
        assert_eq!(k.id(), key().id());
        assert_eq!(k.id().len(), 16);
        for other in [
            Key { ram_mib: 512, ..key() },
            Key { cpus: 1, ..key() },
            Key { accel: "kvm".into(), ..key() },
            Key { image_disk: "1:3".into(), ..key() },
            Key { guest_sha256: "fe".into(), ..key() },
            Key { hypervisor: "9.0.0/8.0.0".into(), ..key() },
            Key { perfvm: "ac".into(), ..key() },
            Key { format: FORMAT + 1, ..key() },
        ] {
            assert_ne!(other.id(), k.id(), "{other:?}");
        }
    }

    #[test]
    fn slots_are_chosen_built_first_never_built_twice_at_once() {
        use SlotState::*;
        assert_eq!(choose(&[InUse, FreeBuilt, FreeEmpty, FreeEmpty]), Some(1));
        // One is being built: wait for it, do not build a second copy meanwhile.
        assert_eq!(choose(&[Building, FreeEmpty, FreeEmpty, FreeEmpty]), None);
        assert_eq!(choose(&[InUse, FreeEmpty, FreeEmpty, FreeEmpty]), Some(1));
        assert_eq!(choose(&[FreeEmpty, FreeEmpty, FreeEmpty, FreeEmpty]), Some(0));
        assert_eq!(choose(&[InUse, InUse, InUse, InUse]), None);
    }

    #[test]
    fn two_takers_get_two_slots_and_a_build_in_progress_makes_others_wait() {
        let d = tempfile::tempdir().unwrap();
        let Some(Taken::Empty(a)) = try_take(d.path(), "s1").unwrap() else { panic!("the first gets an empty slot") };
        assert_eq!(a.index, 0);
        // a is being built (no meta): the next taker waits.
        assert!(try_take(d.path(), "s1").unwrap().is_none());
        std::fs::write(a.path(META), "{}").unwrap();
        // a is built and in use: the next taker builds another.
        let Some(Taken::Empty(b)) = try_take(d.path(), "s1").unwrap() else { panic!("a second slot") };
        assert_eq!(b.index, 1);
        drop(a);
        let Some(Taken::Built(c)) = try_take(d.path(), "s1").unwrap() else { panic!("the built slot, once free") };
        assert_eq!(c.index, 0);
        assert_ne!(c.name(), b.name());
        assert_ne!(c.uuid(), b.uuid());
        assert_eq!(c.uuid(), uuid_of(&c.name()));
    }

    #[test]
    fn a_corrupt_or_stale_slot_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let Some(Taken::Empty(s)) = try_take(d.path(), "s2").unwrap() else { panic!() };
        std::fs::write(s.path(MEMORY), b"memory").unwrap();
        std::fs::write(s.path(DISK), b"disk").unwrap();
        std::fs::write(s.path(XML), b"<domain/>").unwrap();
        std::fs::write(s.path(SEED), b"iso").unwrap();
        let meta = Meta {
            key: key(),
            memory_bytes: 6,
            memory_sha256: sha256_file(&s.path(MEMORY)).unwrap(),
            disk_bytes: 4,
            disk_sha256: sha256_file(&s.path(DISK)).unwrap(),
            built: chrono::Utc::now(),
            build_seconds: 1.0,
        };
        std::fs::write(s.path(META), serde_json::to_string(&meta).unwrap()).unwrap();
        assert_eq!(check(&s, &key()).unwrap(), meta);
        assert!(check(&s, &Key { ram_mib: 512, ..key() }).unwrap_err().contains("stale"));
        // Same size, other bytes (a fresh mtime: hashed again).
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(s.path(DISK), b"DISK").unwrap();
        assert!(check(&s, &key()).unwrap_err().contains("disk.qcow2 has changed"), "{:?}", check(&s, &key()));
        std::fs::write(s.path(MEMORY), b"mem").unwrap();
        assert!(check(&s, &key()).unwrap_err().contains("memory.save is 3 bytes"));
        std::fs::write(s.path(META), "{").unwrap();
        assert!(check(&s, &key()).unwrap_err().contains("not readable"));
        s.clear().unwrap();
        assert_eq!(std::fs::read_dir(&s.dir).unwrap().count(), 1, "only the lock is left");
        drop(s);
        remove(d.path(), "s2").unwrap();
        assert!(!saved_dir(d.path()).join("s2").exists());
    }

    const SAVED: &str = "<domain type='qemu'>
  <name>perfvm-saved-s1-0</name>
  <uuid>u</uuid>
  <metadata>
    <perfvm:cell xmlns:perfvm=\"https://x\">
      <perfvm:pid>1</perfvm:pid>
    </perfvm:cell>
  </metadata>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/c/saved/s1/slot-0/disk.qcow2'/>
      <backingStore type='file'>
        <format type='qcow2'/>
        <source file='/c/images/b/disk.qcow2'/>
        <backingStore/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path='/c/saved/s1/slot-0/build-console.log'/>
    </serial>
    <console type='file'>
      <source path='/c/saved/s1/slot-0/build-console.log'/>
    </console>
  </devices>
  <qemu:commandline>
    <qemu:arg value='user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:4000-:8080'/>
  </qemu:commandline>
</domain>
";

    #[test]
    fn the_restore_xml_changes_only_the_cells_parts() {
        let build = Parts {
            disk: "/c/saved/s1/slot-0/disk.qcow2".into(),
            console: "/c/saved/s1/slot-0/build-console.log".into(),
            netdev: "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:4000-:8080".into(),
            metadata: String::new(),
        };
        let t = template(SAVED, &build).unwrap();
        assert!(!t.contains("backingStore") && !t.contains("/c/images/b"), "{t}");
        let cell = Parts { disk: "/c/cells/x/disk.qcow2".into(), console: "/c/cells/x/console.log".into(), netdev: "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:5000-:8080".into(), metadata: "<m/>".into() };
        let xml = fill(&t, &cell);
        assert!(xml.contains("<source file='/c/cells/x/disk.qcow2'/>\n      <target dev='vda'"), "{xml}");
        assert_eq!(xml.matches("/c/cells/x/console.log").count(), 2);
        assert!(xml.contains("hostfwd=tcp:127.0.0.1:5000-:8080") && !xml.contains("4000"));
        assert!(xml.contains("<metadata><m/></metadata>"));
        assert!(xml.contains("<name>perfvm-saved-s1-0</name>") && xml.contains("<uuid>u</uuid>"), "name and UUID stay");
        assert!(template(SAVED, &Parts { disk: "/elsewhere".into(), ..build }).is_err());
    }
}
