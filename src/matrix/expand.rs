//! Matrix expansion, filters and the run key. Pure.

use crate::size::ByteSize;
use sha2::{Digest, Sha256};

/// One cell of a matrix: a RAM size, a file size, uploads at once, a repetition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellKey {
    pub ram_mib: u64,
    pub size: ByteSize,
    pub concurrency: u32,
    pub repeat: u32,
}

/// Uploads at once, at most.
pub const MAX_CONCURRENCY: u32 = 64;

impl CellKey {
    /// The cell a result belongs to.
    pub fn of(r: &crate::results::model::CellResult) -> CellKey {
        CellKey { ram_mib: r.ram_mb, size: ByteSize(r.file_size_bytes), concurrency: r.concurrency, repeat: r.repeat }
    }

    /// `512-1G` (one upload at a time) or `512-1G-c4` — the cell's shape, shared by its
    /// repetitions.
    pub fn shape(&self) -> String {
        match self.concurrency {
            1 => format!("{}-{}", self.ram_mib, self.size.label()),
            c => format!("{}-{}-c{c}", self.ram_mib, self.size.label()),
        }
    }
    /// `512-1G-r2` — unique within a run; names its directory.
    pub fn id(&self) -> String {
        format!("{}-r{}", self.shape(), self.repeat)
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MatrixError {
    #[error("--{0} is empty: give at least one value")]
    Empty(&'static str),
    #[error("--{flag} lists {value} twice")]
    Duplicate { flag: &'static str, value: String },
    #[error("--repeat {0}: use 1 or more")]
    Repeat(u32),
    #[error("--concurrency {0}: use 1 to 64 uploads at once")]
    Concurrency(u32),
    #[error("filter '{0}': write RAM/SIZE, e.g. 512/1G, 512/* or */1G")]
    Filter(String),
    #[error("--only/--skip leave no cell to run")]
    NothingSelected,
}

/// A `RAM/SIZE` pattern; `*` matches anything.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    ram: Option<u64>,
    size: Option<ByteSize>,
}

impl Pattern {
    pub fn parse(s: &str) -> Result<Pattern, MatrixError> {
        let bad = || MatrixError::Filter(s.to_string());
        let (r, z) = s.split_once('/').ok_or_else(bad)?;
        let ram = match r.trim() {
            "*" => None,
            v => Some(v.parse::<u64>().map_err(|_| bad())?),
        };
        let size = match z.trim() {
            "*" => None,
            v => Some(ByteSize::parse(v).map_err(|_| bad())?),
        };
        Ok(Pattern { ram, size })
    }

    pub fn matches(&self, k: &CellKey) -> bool {
        self.ram.is_none_or(|r| r == k.ram_mib) && self.size.is_none_or(|s| s == k.size)
    }
}

pub fn parse_patterns(list: &[String]) -> Result<Vec<Pattern>, MatrixError> {
    list.iter().flat_map(|s| s.split(',')).filter(|s| !s.trim().is_empty()).map(Pattern::parse).collect()
}

fn check_list<T: PartialEq + std::fmt::Display>(flag: &'static str, v: &[T]) -> Result<(), MatrixError> {
    if v.is_empty() {
        return Err(MatrixError::Empty(flag));
    }
    for (i, a) in v.iter().enumerate() {
        if v[..i].contains(a) {
            return Err(MatrixError::Duplicate { flag, value: a.to_string() });
        }
    }
    Ok(())
}

/// Every cell in a stable order: RAM, size, concurrency (ascending), then repetition.
pub fn expand(rams: &[u64], sizes: &[ByteSize], concurrency: &[u32], repeat: u32) -> Result<Vec<CellKey>, MatrixError> {
    check_list("ram", rams)?;
    check_list("file-size", sizes)?;
    check_list("concurrency", concurrency)?;
    if let Some(&c) = concurrency.iter().find(|&&c| c == 0 || c > MAX_CONCURRENCY) {
        return Err(MatrixError::Concurrency(c));
    }
    if repeat == 0 {
        return Err(MatrixError::Repeat(repeat));
    }
    let mut rams = rams.to_vec();
    let mut sizes = sizes.to_vec();
    let mut levels = concurrency.to_vec();
    rams.sort_unstable();
    sizes.sort_unstable();
    levels.sort_unstable();
    let mut out = Vec::with_capacity(rams.len() * sizes.len() * levels.len() * repeat as usize);
    for &ram_mib in &rams {
        for &size in &sizes {
            for &concurrency in &levels {
                for repeat in 1..=repeat {
                    out.push(CellKey { ram_mib, size, concurrency, repeat });
                }
            }
        }
    }
    Ok(out)
}

/// Keep cells that match some `only` pattern (all if none) and no `skip` pattern.
pub fn select(cells: Vec<CellKey>, only: &[Pattern], skip: &[Pattern]) -> Result<Vec<CellKey>, MatrixError> {
    let out: Vec<CellKey> = cells
        .into_iter()
        .filter(|k| only.is_empty() || only.iter().any(|p| p.matches(k)))
        .filter(|k| !skip.iter().any(|p| p.matches(k)))
        .collect();
    if out.is_empty() {
        return Err(MatrixError::NothingSelected);
    }
    Ok(out)
}

/// Everything that defines a run's cells. Filters are not part of it: running a filtered subset
/// and later the rest fills the same run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct RunDefinition {
    pub ram_mib: Vec<u64>,
    pub file_sizes: Vec<String>,
    pub repeat: u32,
    pub target: String,
    pub target_mode: String,
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
    pub adaptive: Option<super::adaptive::Adaptive>,
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

    fn sz(s: &str) -> ByteSize {
        ByteSize::parse(s).unwrap()
    }

    #[test]
    fn expands_in_stable_order() {
        let cells = expand(&[1024, 256], &[sz("1G"), sz("100M")], &[1], 2).unwrap();
        let ids: Vec<String> = cells.iter().map(|c| c.id()).collect();
        assert_eq!(
            ids,
            ["256-100M-r1", "256-100M-r2", "256-1G-r1", "256-1G-r2", "1024-100M-r1", "1024-100M-r2", "1024-1G-r1", "1024-1G-r2"]
        );
    }

    #[test]
    fn concurrency_is_a_third_dimension_that_leaves_single_upload_ids_alone() {
        let cells = expand(&[512], &[sz("1G")], &[4, 1], 1).unwrap();
        let ids: Vec<String> = cells.iter().map(|c| c.id()).collect();
        assert_eq!(ids, ["512-1G-r1", "512-1G-c4-r1"]);
    }

    #[test]
    fn seed_matrix_has_twenty_cells() {
        let sizes: Vec<ByteSize> = ["100M", "500M", "1G", "2G", "5G"].iter().map(|s| sz(s)).collect();
        assert_eq!(expand(&[256, 512, 1024, 2048], &sizes, &[1], 1).unwrap().len(), 20);
    }

    #[test]
    fn rejects_empty_duplicates_and_zero_repeat() {
        assert_eq!(expand(&[], &[sz("1G")], &[1], 1), Err(MatrixError::Empty("ram")));
        assert_eq!(expand(&[512], &[], &[1], 1), Err(MatrixError::Empty("file-size")));
        assert!(matches!(expand(&[512, 512], &[sz("1G")], &[1], 1), Err(MatrixError::Duplicate { flag: "ram", .. })));
        // 1G and 1024M are the same size.
        assert!(matches!(expand(&[512], &[sz("1G"), sz("1024M")], &[1], 1), Err(MatrixError::Duplicate { flag: "file-size", .. })));
        assert_eq!(expand(&[512], &[sz("1G")], &[1], 0), Err(MatrixError::Repeat(0)));
        assert_eq!(expand(&[512], &[sz("1G")], &[0], 1), Err(MatrixError::Concurrency(0)));
        assert_eq!(expand(&[512], &[sz("1G")], &[65], 1), Err(MatrixError::Concurrency(65)));
        assert!(matches!(expand(&[512], &[sz("1G")], &[4, 4], 1), Err(MatrixError::Duplicate { flag: "concurrency", .. })));
    }

    #[test]
    fn filters_select_by_ram_and_size() {
        let cells = expand(&[256, 512], &[sz("100M"), sz("1G")], &[1], 1).unwrap();
        let only = parse_patterns(&["512/*".into()]).unwrap();
        let got = select(cells.clone(), &only, &[]).unwrap();
        assert_eq!(got.iter().map(|c| c.id()).collect::<Vec<_>>(), ["512-100M-r1", "512-1G-r1"]);
        let skip = parse_patterns(&["*/1G,256/100M".into()]).unwrap();
        let got = select(cells.clone(), &[], &skip).unwrap();
        assert_eq!(got.iter().map(|c| c.id()).collect::<Vec<_>>(), ["512-100M-r1"]);
        let only = parse_patterns(&["256/1024M".into()]).unwrap();
        assert_eq!(select(cells.clone(), &only, &[]).unwrap().len(), 1);
        assert_eq!(select(cells, &[], &parse_patterns(&["*/*".into()]).unwrap()), Err(MatrixError::NothingSelected));
        assert!(matches!(Pattern::parse("512"), Err(MatrixError::Filter(_))));
        assert!(matches!(Pattern::parse("x/1G"), Err(MatrixError::Filter(_))));
        assert!(matches!(Pattern::parse("512/1Q"), Err(MatrixError::Filter(_))));
    }

    fn def() -> RunDefinition {
        RunDefinition {
            ram_mib: vec![256, 512],
            file_sizes: vec!["100M".into(), "1G".into()],
            repeat: 1,
            target: "perfvm-target".into(),
            target_mode: "stream".into(),
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
            |d: &mut RunDefinition| d.cpus = 4,
            |d: &mut RunDefinition| d.content_kind = "zeros".into(),
            |d: &mut RunDefinition| d.chunked = true,
            |d: &mut RunDefinition| d.download = true,
            |d: &mut RunDefinition| {
                d.adaptive = Some(crate::matrix::adaptive::Adaptive { min_repeats: 3, max_repeats: 10, target_rsd_percent: 5.0 })
            },
        ] {
            let mut c = def();
            change(&mut c);
            assert_ne!(a.key(), c.key());
        }
    }
}
