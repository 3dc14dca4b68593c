//! Matrix expansion and filters: lists of values into cells. Pure.

use super::key::{CellKey, MAX_CONCURRENCY, TargetTag};
use crate::size::ByteSize;

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

/// Every cell in a stable order: RAM, size, concurrency (ascending), target (as given), then
/// repetition: the targets of one shape run side by side, so a stopped matrix compares them.
pub fn expand(rams: &[u64], sizes: &[ByteSize], concurrency: &[u32], targets: &[TargetTag], repeat: u32) -> Result<Vec<CellKey>, MatrixError> {
    check_list("ram", rams)?;
    check_list("file-size", sizes)?;
    check_list("concurrency", concurrency)?;
    if let Some(&c) = concurrency.iter().find(|&&c| c == 0 || c > MAX_CONCURRENCY) {
        return Err(MatrixError::Concurrency(c));
    }
    if repeat == 0 {
        return Err(MatrixError::Repeat(repeat));
    }
    if targets.is_empty() {
        return Err(MatrixError::Empty("target"));
    }
    let mut rams = rams.to_vec();
    let mut sizes = sizes.to_vec();
    let mut levels = concurrency.to_vec();
    rams.sort_unstable();
    sizes.sort_unstable();
    levels.sort_unstable();
    let mut out = Vec::with_capacity(rams.len() * sizes.len() * levels.len() * targets.len() * repeat as usize);
    for &ram_mib in &rams {
        for &size in &sizes {
            for &concurrency in &levels {
                for &target in targets {
                    for repeat in 1..=repeat {
                        out.push(CellKey { ram_mib, size, concurrency, repeat, target });
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sz(s: &str) -> ByteSize {
        ByteSize::parse(s).unwrap()
    }

    #[test]
    fn expands_in_stable_order() {
        let cells = expand(&[1024, 256], &[sz("1G"), sz("100M")], &[1], &[TargetTag::NONE], 2).unwrap();
        let ids: Vec<String> = cells.iter().map(|c| c.id()).collect();
        assert_eq!(
            ids,
            ["256-100M-r1", "256-100M-r2", "256-1G-r1", "256-1G-r2", "1024-100M-r1", "1024-100M-r2", "1024-1G-r1", "1024-1G-r2"]
        );
    }

    #[test]
    fn targets_run_side_by_side_within_each_shape() {
        let t = [TargetTag::new("perfvm-target-stream"), TargetTag::new("dufs")];
        let cells = expand(&[512, 256], &[sz("64M")], &[1], &t, 1).unwrap();
        let ids: Vec<String> = cells.iter().map(|c| c.id()).collect();
        assert_eq!(ids, ["perfvm-target-stream-256-64M-r1", "dufs-256-64M-r1", "perfvm-target-stream-512-64M-r1", "dufs-512-64M-r1"]);
        assert_eq!(expand(&[512], &[sz("1G")], &[1], &[], 1), Err(MatrixError::Empty("target")));
        // A RAM/SIZE filter selects the cell of every target.
        let only = parse_patterns(&["256/*".into()]).unwrap();
        assert_eq!(select(cells, &only, &[]).unwrap().len(), 2);
    }

    #[test]
    fn concurrency_is_a_third_dimension_that_leaves_single_upload_ids_alone() {
        let cells = expand(&[512], &[sz("1G")], &[4, 1], &[crate::plan::key::TargetTag::NONE], 1).unwrap();
        let ids: Vec<String> = cells.iter().map(|c| c.id()).collect();
        assert_eq!(ids, ["512-1G-r1", "512-1G-c4-r1"]);
    }

    #[test]
    fn seed_matrix_has_twenty_cells() {
        let sizes: Vec<ByteSize> = ["100M", "500M", "1G", "2G", "5G"].iter().map(|s| sz(s)).collect();
        assert_eq!(expand(&[256, 512, 1024, 2048], &sizes, &[1], &[crate::plan::key::TargetTag::NONE], 1).unwrap().len(), 20);
    }

    #[test]
    fn rejects_empty_duplicates_and_zero_repeat() {
        assert_eq!(expand(&[], &[sz("1G")], &[1], &[crate::plan::key::TargetTag::NONE], 1), Err(MatrixError::Empty("ram")));
        assert_eq!(expand(&[512], &[], &[1], &[crate::plan::key::TargetTag::NONE], 1), Err(MatrixError::Empty("file-size")));
        assert!(matches!(expand(&[512, 512], &[sz("1G")], &[1], &[crate::plan::key::TargetTag::NONE], 1), Err(MatrixError::Duplicate { flag: "ram", .. })));
        // 1G and 1024M are the same size.
        assert!(matches!(expand(&[512], &[sz("1G"), sz("1024M")], &[1], &[TargetTag::NONE], 1), Err(MatrixError::Duplicate { flag: "file-size", .. })));
        assert_eq!(expand(&[512], &[sz("1G")], &[1], &[crate::plan::key::TargetTag::NONE], 0), Err(MatrixError::Repeat(0)));
        assert_eq!(expand(&[512], &[sz("1G")], &[0], &[crate::plan::key::TargetTag::NONE], 1), Err(MatrixError::Concurrency(0)));
        assert_eq!(expand(&[512], &[sz("1G")], &[65], &[crate::plan::key::TargetTag::NONE], 1), Err(MatrixError::Concurrency(65)));
        assert!(matches!(expand(&[512], &[sz("1G")], &[4, 4], &[crate::plan::key::TargetTag::NONE], 1), Err(MatrixError::Duplicate { flag: "concurrency", .. })));
    }

    #[test]
    fn filters_select_by_ram_and_size() {
        let cells = expand(&[256, 512], &[sz("100M"), sz("1G")], &[1], &[TargetTag::NONE], 1).unwrap();
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
}
