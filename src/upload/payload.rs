//! The uploaded bytes: generated from a content kind and a seed (deterministic, produced chunk by
//! chunk and never held whole in memory), or read from a user's file. Hashed as they go.

use super::content::ContentKind;
use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::PathBuf;

pub const CHUNK: usize = 1 << 20;

/// Where the uploaded bytes come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Generated { kind: ContentKind, seed: u64, size: u64 },
    /// A user's file (`--file`); `size` is taken when the cell starts.
    File { path: PathBuf, size: u64 },
}

impl Payload {
    pub fn size(&self) -> u64 {
        match self {
            Payload::Generated { size, .. } | Payload::File { size, .. } => *size,
        }
    }

    /// The content kind as recorded in results: a generated kind, or `file`.
    pub fn kind_label(&self) -> String {
        match self {
            Payload::Generated { kind, .. } => kind.label(),
            Payload::File { .. } => "file".into(),
        }
    }

    /// The payload read chunk by chunk, hashed as it goes.
    pub fn open(&self) -> std::io::Result<Chunks> {
        let source = match self {
            Payload::Generated { kind, seed, .. } => Source::Generated(*kind, Box::new(ChaCha8Rng::seed_from_u64(*seed))),
            Payload::File { path, .. } => Source::File(std::fs::File::open(path)?),
        };
        Ok(Chunks { source, remaining: self.size(), hasher: Sha256::new() })
    }
}

enum Source {
    Generated(ContentKind, Box<ChaCha8Rng>),
    File(std::fs::File),
}

pub struct Chunks {
    source: Source,
    remaining: u64,
    hasher: Sha256,
}

impl Chunks {
    pub fn next_chunk(&mut self) -> std::io::Result<Option<Bytes>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let n = (self.remaining as usize).min(CHUNK);
        let mut buf = vec![0u8; n];
        match &mut self.source {
            Source::Generated(kind, rng) => kind.fill(rng, &mut buf),
            Source::File(f) => f.read_exact(&mut buf).map_err(|e| std::io::Error::new(e.kind(), format!("the file shrank or cannot be read: {e}")))?,
        }
        self.hasher.update(&buf);
        self.remaining -= n as u64;
        Ok(Some(Bytes::from(buf)))
    }

    /// The sha256 of everything read; call after the last chunk.
    pub fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

/// sha256 of a payload without sending it.
pub fn sha256_of(p: &Payload) -> std::io::Result<String> {
    let mut c = p.open()?;
    while c.next_chunk()?.is_some() {}
    Ok(c.finish())
}

/// Produce the payload on a dedicated thread into a bounded channel (4 chunks in flight), so
/// reading or generating overlaps sending and memory stays bounded. The join handle yields the
/// sha256 once every chunk was produced, or why not (a read error, or the receiver went away).
pub fn spawn(p: &Payload) -> (tokio::sync::mpsc::Receiver<Bytes>, std::thread::JoinHandle<Result<String, String>>) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let p = p.clone();
    let h = std::thread::Builder::new()
        .name("perfvm-payload".into())
        .spawn(move || {
            let mut c = p.open().map_err(|e| format!("cannot open the payload: {e}"))?;
            while let Some(chunk) = c.next_chunk().map_err(|e| e.to_string())? {
                if tx.blocking_send(chunk).is_err() {
                    return Err("the upload stopped before the whole payload was sent".into());
                }
            }
            Ok(c.finish())
        })
        .expect("spawn payload thread");
    (rx, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(seed: u64, size: u64) -> Payload {
        Payload::Generated { kind: ContentKind::Random, seed, size }
    }

    fn sha(seed: u64, size: u64) -> String {
        sha256_of(&random(seed, size)).unwrap()
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let a = sha(1, 3 * CHUNK as u64 + 17);
        assert_eq!(a, sha(1, 3 * CHUNK as u64 + 17));
        assert_ne!(a, sha(2, 3 * CHUNK as u64 + 17));
        assert_ne!(a, sha(1, 3 * CHUNK as u64 + 16));
        // The default kind's bytes never change: results of earlier versions stay comparable.
        assert_eq!(sha(1, 1 << 20), "591e63e649579d9a81b73d6868645714da413a9fe13f6b8d5181e26a5f3dfe89");
    }

    #[test]
    fn a_file_of_the_same_bytes_hashes_the_same() {
        let size = 2 * CHUNK as u64 + 9;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let mut c = random(4, size).open().unwrap();
        let mut all = Vec::new();
        while let Some(b) = c.next_chunk().unwrap() {
            all.extend_from_slice(&b);
        }
        std::fs::write(&path, &all).unwrap();
        assert_eq!(sha256_of(&Payload::File { path: path.clone(), size }).unwrap(), sha(4, size));
        // A file shorter than announced is an error, not a short upload.
        let e = sha256_of(&Payload::File { path, size: size + 1 }).unwrap_err();
        assert!(e.to_string().contains("shrank"), "{e}");
    }

    #[test]
    fn exact_size_and_hash_matches_bytes() {
        let size = 2 * CHUNK as u64 + 5;
        let mut g = random(7, size).open().unwrap();
        let mut all = Vec::new();
        while let Some(c) = g.next_chunk().unwrap() {
            assert!(c.len() <= CHUNK);
            all.extend_from_slice(&c);
        }
        assert_eq!(all.len() as u64, size);
        assert_eq!(g.finish(), hex::encode(Sha256::digest(&all)));
    }

    #[test]
    fn incompressible() {
        // Random bytes: every byte value appears, none dominates.
        let mut g = random(3, CHUNK as u64).open().unwrap();
        let c = g.next_chunk().unwrap().unwrap();
        let mut counts = [0u32; 256];
        for b in c.iter() {
            counts[*b as usize] += 1;
        }
        let expect = CHUNK as f64 / 256.0;
        assert!(counts.iter().all(|&n| (n as f64 - expect).abs() < expect * 0.1));
    }

    #[test]
    fn threaded_generator_agrees() {
        let (mut rx, h) = spawn(&random(5, 3 * CHUNK as u64));
        let mut n = 0;
        while let Some(c) = rx.blocking_recv() {
            n += c.len();
        }
        assert_eq!(n, 3 * CHUNK);
        assert_eq!(h.join().unwrap().unwrap(), sha(5, 3 * CHUNK as u64));
    }
}
