//! What the uploaded bytes look like. Servers that compress, deduplicate or scan content behave
//! differently on random, empty and text data, so the kind is a choice and recorded in results.
//! Every kind is deterministic: same kind, seed and size give the same bytes.

use rand_chacha::ChaCha8Rng;
use rand_core::Rng;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ContentKind {
    /// ChaCha8 output: incompressible (the default, and the old harness's kind).
    Random,
    Zeros,
    /// ASCII words and lines, like a log or a CSV file (compresses ~3×).
    Text,
    /// Compresses by about this ratio (≥ 1): each 4 KiB block is 1/ratio random bytes, then zeros.
    Compressible(f64),
}

/// Block size for `Compressible`: small enough that any compressor sees the structure.
const BLOCK: usize = 4096;

const WORDS: [&str; 32] = [
    "the", "upload", "server", "memory", "request", "stream", "buffer", "virtual", "machine", "cell", "file", "byte",
    "status", "header", "chunk", "guest", "host", "result", "sample", "peak", "disk", "page", "cache", "write", "read",
    "kernel", "socket", "port", "body", "length", "time", "value",
];

impl ContentKind {
    pub fn parse(s: &str) -> Result<ContentKind, String> {
        let err = || format!("'{s}' is not a content kind: use random, zeros, text or compressible:RATIO (e.g. compressible:2)");
        Ok(match s {
            "random" => ContentKind::Random,
            "zeros" => ContentKind::Zeros,
            "text" => ContentKind::Text,
            _ => {
                let r: f64 = s.strip_prefix("compressible:").ok_or_else(err)?.parse().map_err(|_| err())?;
                if !(1.0..=1000.0).contains(&r) {
                    return Err(format!("'{s}': the ratio must be between 1 and 1000"));
                }
                ContentKind::Compressible(r)
            }
        })
    }

    /// As typed and as recorded: `random`, `compressible:2`.
    pub fn label(&self) -> String {
        match self {
            ContentKind::Random => "random".into(),
            ContentKind::Zeros => "zeros".into(),
            ContentKind::Text => "text".into(),
            ContentKind::Compressible(r) => format!("compressible:{r}"),
        }
    }

    /// For file names: `compressible2`, `compressible1.5`.
    pub fn file_label(&self) -> String {
        self.label().replace(':', "")
    }

    /// Fill `buf` with the next bytes of this kind. Chunks are always filled whole but the last,
    /// so the sequence depends only on kind, seed and size.
    pub fn fill(&self, rng: &mut ChaCha8Rng, buf: &mut [u8]) {
        match *self {
            ContentKind::Random => rng.fill_bytes(buf),
            ContentKind::Zeros => buf.fill(0),
            ContentKind::Text => fill_text(rng, buf),
            ContentKind::Compressible(r) => {
                let random = ((BLOCK as f64 / r).round() as usize).clamp(1, BLOCK);
                for block in buf.chunks_mut(BLOCK) {
                    let n = random.min(block.len());
                    rng.fill_bytes(&mut block[..n]);
                    block[n..].fill(0);
                }
            }
        }
    }
}

fn fill_text(rng: &mut ChaCha8Rng, buf: &mut [u8]) {
    let mut i = 0;
    let mut col = 0;
    while i < buf.len() {
        let r = rng.next_u32();
        let word = WORDS[(r & 31) as usize].as_bytes();
        for &b in word.iter().chain(if col > 60 { b"\n" } else { b" " }) {
            if i == buf.len() {
                return;
            }
            buf[i] = b;
            i += 1;
        }
        col = if col > 60 { 0 } else { col + word.len() + 1 };
        // Now and then a number, as logs and CSVs have.
        if r >> 28 == 0 {
            for b in format!("{} ", r >> 8).bytes() {
                if i == buf.len() {
                    return;
                }
                buf[i] = b;
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    fn bytes(kind: ContentKind, n: usize) -> Vec<u8> {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut b = vec![7u8; n];
        kind.fill(&mut rng, &mut b);
        b
    }

    #[test]
    fn kinds_parse_and_label_back() {
        for s in ["random", "zeros", "text", "compressible:2", "compressible:1.5"] {
            assert_eq!(ContentKind::parse(s).unwrap().label(), s);
        }
        assert_eq!(ContentKind::parse("compressible:2").unwrap().file_label(), "compressible2");
        for bad in ["", "Random", "compressible", "compressible:0.5", "compressible:x", "compressible:inf", "compressible:NaN", "zeros; rm"] {
            assert!(ContentKind::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn each_kind_looks_like_itself() {
        let n = 1 << 16;
        assert!(bytes(ContentKind::Zeros, n).iter().all(|&b| b == 0));
        let text = bytes(ContentKind::Text, n);
        assert!(text.iter().all(|&b| b == b'\n' || b == b' ' || b.is_ascii_alphanumeric()));
        assert!(text.iter().filter(|&&b| b == b'\n').count() > n / 100, "lines");
        let zeros = |b: &[u8]| b.iter().filter(|&&x| x == 0).count() as f64 / b.len() as f64;
        let c4 = bytes(ContentKind::Compressible(4.0), n);
        assert!((zeros(&c4) - 0.75).abs() < 0.01, "{}", zeros(&c4));
        assert!(zeros(&bytes(ContentKind::Random, n)) < 0.01);
        assert!(zeros(&bytes(ContentKind::Compressible(1.0), n)) < 0.01);
    }
}
