//! One perfvm per run directory. The lock is an flock on `<run>/.lock`, released by the kernel
//! when its holder dies, so a stale lock of a dead process is simply taken over. The file also
//! holds the holder's pid, for the message.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("run {dir} is in use by perfvm pid {pid}; wait for it or stop it (a second perfvm on one run would mix results)")]
    Held { dir: String, pid: String },
    #[error("cannot lock {0}: {1}")]
    Io(String, std::io::Error),
}

pub fn acquire(run: &Path) -> Result<RunLock, LockError> {
    let path = run.join(".lock");
    let io = |e| LockError::Io(path.display().to_string(), e);
    let mut file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(LockError::Held { dir: run.display().to_string(), pid: pid.trim().to_string() });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    write!(file, "{}", std::process::id()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(RunLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_pid_and_lock_frees_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let a = acquire(d.path()).unwrap();
        // flock locks belong to the open file description: a second open conflicts even in-process.
        let e = acquire(d.path()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&std::process::id().to_string()), "{msg}");
        drop(a);
        acquire(d.path()).unwrap();
    }

    #[test]
    fn stale_pid_file_without_lock_is_taken_over() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".lock"), "999999").unwrap();
        acquire(d.path()).unwrap();
        assert_eq!(std::fs::read_to_string(d.path().join(".lock")).unwrap(), std::process::id().to_string());
    }
}
