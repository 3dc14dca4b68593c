//! The uploaded file: ChaCha8 output from a seed. Deterministic (same seed and size, same bytes
//! and sha256), incompressible, generated chunk by chunk and never held whole in memory.

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

pub const CHUNK: usize = 1 << 20;

/// Generates the payload in chunks, hashing as it goes.
pub struct Generator {
    rng: ChaCha8Rng,
    remaining: u64,
    hasher: Sha256,
}

impl Generator {
    pub fn new(seed: u64, size: u64) -> Generator {
        Generator { rng: ChaCha8Rng::seed_from_u64(seed), remaining: size, hasher: Sha256::new() }
    }

    pub fn next_chunk(&mut self) -> Option<Bytes> {
        if self.remaining == 0 {
            return None;
        }
        let n = (self.remaining as usize).min(CHUNK);
        let mut buf = vec![0u8; n];
        self.rng.fill_bytes(&mut buf);
        self.hasher.update(&buf);
        self.remaining -= n as u64;
        Some(Bytes::from(buf))
    }

    /// The sha256 of everything generated; call after the last chunk.
    pub fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

/// sha256 of the payload without sending it.
pub fn sha256_of(seed: u64, size: u64) -> String {
    let mut g = Generator::new(seed, size);
    while g.next_chunk().is_some() {}
    g.finish()
}

/// Generate on a dedicated thread into a bounded channel (4 chunks in flight), so generation
/// overlaps sending and memory stays bounded. The join handle yields the sha256 once all chunks
/// were produced, or None if the receiver went away first.
pub fn spawn(seed: u64, size: u64) -> (tokio::sync::mpsc::Receiver<Bytes>, std::thread::JoinHandle<Option<String>>) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let h = std::thread::Builder::new()
        .name("perfvm-payload".into())
        .spawn(move || {
            let mut g = Generator::new(seed, size);
            while let Some(c) = g.next_chunk() {
                if tx.blocking_send(c).is_err() {
                    return None;
                }
            }
            Some(g.finish())
        })
        .expect("spawn payload thread");
    (rx, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_seed_dependent() {
        let a = sha256_of(1, 3 * CHUNK as u64 + 17);
        assert_eq!(a, sha256_of(1, 3 * CHUNK as u64 + 17));
        assert_ne!(a, sha256_of(2, 3 * CHUNK as u64 + 17));
        assert_ne!(a, sha256_of(1, 3 * CHUNK as u64 + 16));
    }

    #[test]
    fn exact_size_and_hash_matches_bytes() {
        let size = 2 * CHUNK as u64 + 5;
        let mut g = Generator::new(7, size);
        let mut all = Vec::new();
        while let Some(c) = g.next_chunk() {
            assert!(c.len() <= CHUNK);
            all.extend_from_slice(&c);
        }
        assert_eq!(all.len() as u64, size);
        assert_eq!(g.finish(), hex::encode(Sha256::digest(&all)));
    }

    #[test]
    fn incompressible() {
        // Random bytes: every byte value appears, none dominates.
        let mut g = Generator::new(3, CHUNK as u64);
        let c = g.next_chunk().unwrap();
        let mut counts = [0u32; 256];
        for b in c.iter() {
            counts[*b as usize] += 1;
        }
        let expect = CHUNK as f64 / 256.0;
        assert!(counts.iter().all(|&n| (n as f64 - expect).abs() < expect * 0.1));
    }

    #[test]
    fn threaded_generator_agrees() {
        let (mut rx, h) = spawn(5, 3 * CHUNK as u64);
        let mut n = 0;
        while let Some(c) = rx.blocking_recv() {
            n += c.len();
        }
        assert_eq!(n, 3 * CHUNK);
        assert_eq!(h.join().unwrap().unwrap(), sha256_of(5, 3 * CHUNK as u64));
    }
}
