//! `test-files/`: generated files kept on disk for reuse (`perfvm files generate`), each with a
//! `.sha256` beside it in sha256sum's format. A file is reused only when its bytes are exactly
//! what its kind, seed and size generate; anything else is rewritten.

use super::content::ContentKind;
use super::payload::{CHUNK, Payload};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct TestFile {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    /// It was already there with the right bytes.
    pub reused: bool,
}

/// `random-100M-s1.bin`, `compressible2-1G-s7.bin`.
pub fn file_name(kind: ContentKind, size: u64, seed: u64) -> String {
    format!("{}-{}-s{seed}.bin", kind.file_label(), crate::size::ByteSize(size).label())
}

fn sidecar(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

/// The file for (kind, seed, size) in `dir`, written unless an identical one is there.
pub fn ensure(dir: &Path, kind: ContentKind, seed: u64, size: u64) -> std::io::Result<TestFile> {
    std::fs::create_dir_all(dir)?;
    let name = file_name(kind, size, seed);
    let path = dir.join(&name);
    let payload = Payload::Generated { kind, seed, size };
    if let Some(sha) = matches(&path, &payload)? {
        let recorded = std::fs::read_to_string(sidecar(&path)).unwrap_or_default();
        if recorded.split_whitespace().next() != Some(sha.as_str()) {
            crate::paths::write_atomic(&sidecar(&path), format!("{sha}  {name}\n").as_bytes())?;
        }
        return Ok(TestFile { path, size, sha256: sha, reused: true });
    }
    // Write beside the target and rename: a crash never leaves a half file under the real name.
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        let mut chunks = payload.open()?;
        while let Some(c) = chunks.next_chunk()? {
            f.write_all(&c)?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok::<_, std::io::Error>(chunks.finish())
    })();
    let sha = match res {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    crate::paths::write_atomic(&sidecar(&path), format!("{sha}  {name}\n").as_bytes())?;
    Ok(TestFile { path, size, sha256: sha, reused: false })
}

/// If `path` holds exactly the payload's bytes, their sha256 (one pass: read and generate in
/// lockstep, compare, hash).
fn matches(path: &Path, payload: &Payload) -> std::io::Result<Option<String>> {
    let Ok(meta) = std::fs::metadata(path) else { return Ok(None) };
    if !meta.is_file() || meta.len() != payload.size() {
        return Ok(None);
    }
    let mut f = std::fs::File::open(path)?;
    let mut chunks = payload.open()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    while let Some(want) = chunks.next_chunk()? {
        let got = &mut buf[..want.len()];
        f.read_exact(got)?;
        if got != &want[..] {
            return Ok(None);
        }
        hasher.update(got);
    }
    Ok(Some(hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_once_then_reuses_and_repairs() {
        let dir = tempfile::tempdir().unwrap();
        let size = CHUNK as u64 * 2 + 3;
        let a = ensure(dir.path(), ContentKind::Text, 9, size).unwrap();
        assert!(!a.reused);
        assert_eq!(a.path.file_name().unwrap(), "text-2097155B-s9.bin");
        assert_eq!(std::fs::metadata(&a.path).unwrap().len(), size);
        let want = super::super::payload::sha256_of(&Payload::Generated { kind: ContentKind::Text, seed: 9, size }).unwrap();
        assert_eq!(a.sha256, want);
        assert_eq!(std::fs::read_to_string(sidecar(&a.path)).unwrap(), format!("{want}  text-2097155B-s9.bin\n"));

        let b = ensure(dir.path(), ContentKind::Text, 9, size).unwrap();
        assert!(b.reused);
        assert_eq!(b.sha256, want);

        // One flipped byte: not reused, rewritten with the right bytes.
        let mut bytes = std::fs::read(&a.path).unwrap();
        bytes[CHUNK + 1] ^= 1;
        std::fs::write(&a.path, &bytes).unwrap();
        let c = ensure(dir.path(), ContentKind::Text, 9, size).unwrap();
        assert!(!c.reused);
        assert_eq!(super::super::payload::sha256_of(&Payload::File { path: c.path.clone(), size }).unwrap(), want);
        // No temporary file is left.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn names_carry_kind_size_and_seed() {
        assert_eq!(file_name(ContentKind::Random, 100 << 20, 1), "random-100M-s1.bin");
        assert_eq!(file_name(ContentKind::Compressible(2.0), 1 << 30, 7), "compressible2-1G-s7.bin");
    }
}
