//! Whose a cell's leftovers are. Every perfvm process has a random owner id and holds an
//! exclusive lock on `<cache>/owners/<id>.lock` for its life; the kernel drops the lock when the
//! process dies, however it dies. A domain, a work directory and a remote volume record the id
//! of the process that made them, and are its leftovers exactly when that lock can be taken
//! here. Nothing is judged by pid (pids repeat across containers sharing one libvirt socket, and
//! across reboots), and an id whose lock file is not in this cache (another container's, another
//! machine's) is never judged gone.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// This process as an owner: its id and the lock it holds.
pub struct Owner {
    pub id: String,
    _lock: std::fs::File,
}

/// What is known of an owner from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Its process holds its lock: a running perfvm's.
    Alive,
    /// Its lock file is here and free: the process is gone.
    Gone,
    /// No lock file here: not this machine's perfvm (or not an owner id at all).
    Unknown,
}

fn dir(cache: &Path) -> PathBuf {
    cache.join("owners")
}

/// An owner id: 16 lowercase hex digits.
pub fn is_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Owner {
    /// A new owner in `cache`, its lock held until it is dropped.
    pub fn register(cache: &Path) -> std::io::Result<Owner> {
        crate::paths::ensure_shared_dir(&dir(cache))?;
        loop {
            let mut b = [0u8; 8];
            std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut b)?;
            let id = hex::encode(b);
            let path = dir(cache).join(format!("{id}.lock"));
            let f = match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            f.lock()?;
            return Ok(Owner { id, _lock: f });
        }
    }
}

/// This process's owner id in perfvm's cache, registered on first use.
pub fn me() -> &'static str {
    static ME: OnceLock<Owner> = OnceLock::new();
    &ME.get_or_init(|| Owner::register(&crate::paths::cache_dir()).expect("register this perfvm's owner lock in the cache")).id
}

/// Whether the owner `id` still runs, as far as this cache can tell.
pub fn state(cache: &Path, id: &str) -> State {
    if !is_id(id) {
        return State::Unknown;
    }
    let Ok(f) = std::fs::OpenOptions::new().write(true).open(dir(cache).join(format!("{id}.lock"))) else { return State::Unknown };
    match f.try_lock() {
        Ok(()) => State::Gone,
        Err(_) => State::Alive,
    }
}

/// Forget a gone owner (its lock file only marks what it left).
pub fn forget(cache: &Path, id: &str) {
    if is_id(id) && state(cache, id) == State::Gone {
        let _ = std::fs::remove_file(dir(cache).join(format!("{id}.lock")));
    }
}

/// Forget every gone owner whose lock file is older than `age`.
pub fn forget_old(cache: &Path, age: std::time::Duration) {
    for e in std::fs::read_dir(dir(cache)).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let old = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|a| a > age);
        if let Some(id) = name.strip_suffix(".lock").filter(|_| old) {
            forget(cache, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_is_alive_while_it_holds_its_lock_and_gone_after() {
        let d = tempfile::tempdir().unwrap();
        let a = Owner::register(d.path()).unwrap();
        assert!(is_id(&a.id));
        assert_eq!(state(d.path(), &a.id), State::Alive);
        let id = a.id.clone();
        drop(a);
        assert_eq!(state(d.path(), &id), State::Gone);
        forget(d.path(), &id);
        assert_eq!(state(d.path(), &id), State::Unknown, "forgotten");
        // Another machine's or container's owner: never judged gone from here.
        assert_eq!(state(d.path(), "0123456789abcdef"), State::Unknown);
        assert_eq!(state(d.path(), "../../etc/passwd"), State::Unknown);
        assert!(!is_id("0123456789ABCDEF") && !is_id("12345"));
    }
}
