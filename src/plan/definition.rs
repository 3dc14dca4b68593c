//! What defines a run's cells, and the run key derived from it. Pure.

use super::repeats::Adaptive;
use crate::size::ByteSize;
use sha2::{Digest, Sha256};

/// Everything that defines a run's cells. Filters are not part of it: running a filtered subset
/// and later the rest fills the same run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct RunDefinition {
    pub ram_mib: Vec<u64>,
    pub file_sizes: Vec<String>,
    pub repeat: u32,
    pub target: String,
    pub target_mode: String,
    /// A matrix of several targets: each one's (name, mode); `target` and `target_mode` are the
    /// first's. Left out with one target, so that older run keys hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<(String, String)>,
    pub image_id: String,
    pub accel: String,
    pub cpus: u32,
    pub timeout_s: u64,
    pub seed: u64,
    pub sample_interval_ms: u64,
    /// Left out of the key when false, so keys of runs made before the option existed hold.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sample_memory_only: bool,
    /// Likewise left out at their defaults ([1], random, content-length, no download).
    #[serde(default = "single", skip_serializing_if = "is_single")]
    pub concurrency: Vec<u32>,
    #[serde(default = "random", skip_serializing_if = "is_random")]
    pub content_kind: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chunked: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub download: bool,
    /// `--target-rsd`: `repeat` is then the most repetitions a cell may get.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<Adaptive>,
    /// Hash of what perfvm puts into every guest: the cloud-init templates and the in-guest
    /// binaries (the sampler's probe, the reference target). An edit of any of them is a new
    /// run, never a resumed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness_sha256: Option<String>,
}

fn single() -> Vec<u32> {
    vec![1]
}

fn is_single(v: &[u32]) -> bool {
    v == [1]
}

fn random() -> String {
    "random".into()
}

fn is_random(s: &str) -> bool {
    s == "random"
}

impl RunDefinition {
    /// Content hash: the same definition gives the same key, on any host, in any list order.
    pub fn key(&self) -> String {
        let mut d = self.clone();
        d.ram_mib.sort_unstable();
        let mut sizes: Vec<ByteSize> = d.file_sizes.iter().filter_map(|s| ByteSize::parse(s).ok()).collect();
        sizes.sort_unstable();
        d.file_sizes = sizes.iter().map(|s| s.label()).collect();
        d.concurrency.sort_unstable();
        let canon = serde_json::to_string(&d).expect("serialize definition");
        let h = Sha256::digest(canon.as_bytes());
        format!("matrix-{}", &hex::encode(h)[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> RunDefinition {
        RunDefinition {
            ram_mib: vec![256, 512],
            file_sizes: vec!["100M".into(), "1G".into()],
            repeat: 1,
            target: "perfvm-target".into(),
            target_mode: "stream".into(),
            targets: Vec::new(),
            image_id: "bookworm-abc".into(),
            accel: "tcg".into(),
            cpus: 2,
            timeout_s: 600,
            seed: 1,
            sample_interval_ms: 100,
            sample_memory_only: false,
            concurrency: vec![1],
            content_kind: "random".into(),
            chunked: false,
            download: false,
            adaptive: None,
            harness_sha256: None,
        }
    }

    #[test]
    fn defaults_of_newer_options_keep_older_run_keys() {
        // The key of this definition before --concurrency/--kind/--chunked/--download existed.
        let canon = serde_json::to_string(&def()).unwrap();
        assert!(!canon.contains("concurrency") && !canon.contains("content_kind") && !canon.contains("chunked") && !canon.contains("adaptive"));
        let mut d = def();
        d.concurrency = vec![4, 1];
        let mut e = def();
        e.concurrency = vec![1, 4];
        assert_eq!(d.key(), e.key());
        assert_ne!(d.key(), def().key());
    }

    #[test]
    fn run_key_is_stable_and_order_independent() {
        let a = def();
        assert_eq!(a.key(), def().key());
        assert!(a.key().starts_with("matrix-"));
        let mut b = def();
        b.ram_mib.reverse();
        b.file_sizes = vec!["1024M".into(), "100M".into()];
        assert_eq!(a.key(), b.key());
        for change in [
            |d: &mut RunDefinition| d.seed = 2,
            |d: &mut RunDefinition| d.accel = "kvm".into(),
            |d: &mut RunDefinition| d.image_id = "x".into(),
            |d: &mut RunDefinition| d.repeat = 3,
            |d: &mut RunDefinition| d.timeout_s = 300,
            |d: &mut RunDefinition| d.target_mode = "memory".into(),
            |d: &mut RunDefinition| d.targets = vec![("perfvm-target".into(), "stream".into()), ("dufs".into(), "profile-ab".into())],
            |d: &mut RunDefinition| d.cpus = 4,
            |d: &mut RunDefinition| d.content_kind = "zeros".into(),
            |d: &mut RunDefinition| d.chunked = true,
            |d: &mut RunDefinition| d.download = true,
            |d: &mut RunDefinition| d.harness_sha256 = Some("ab12".into()),
            |d: &mut RunDefinition| {
                d.adaptive = Some(Adaptive { min_repeats: 3, max_repeats: 10, target_rsd_percent: 5.0 })
            },
        ] {
            let mut c = def();
            change(&mut c);
            assert_ne!(a.key(), c.key());
        }
    }
}
