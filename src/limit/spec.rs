//! What a limit search asks, checked: the value searched (guest RAM for a fixed file, or the file
//! size at a fixed RAM), the range, the resolution, and the points of the range that can be
//! probed (the grid). Pure; each error names the flag and says what would work.

use crate::plan::key::CellKey;
use crate::setup::check::MIN_RAM_MIB;
use crate::size::ByteSize;

/// The question.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Question {
    /// The smallest guest RAM (MiB) at which an upload of this size passes.
    Ram {
        #[serde(with = "size_label")]
        file_size: ByteSize,
    },
    /// The largest file that passes with this guest RAM (MiB).
    FileSize { ram_mib: u64 },
}

impl Question {
    pub fn searched(&self) -> crate::results::export::limit::Searched {
        match self {
            Question::Ram { .. } => crate::results::export::limit::Searched::Ram,
            Question::FileSize { .. } => crate::results::export::limit::Searched::FileSize,
        }
    }

    fn range_flag(&self) -> &'static str {
        match self {
            Question::Ram { .. } => "--ram-range",
            Question::FileSize { .. } => "--size-range",
        }
    }

    /// A value of the searched axis as people read it: `320 MiB`, `1536M`.
    pub fn label(&self, value: u64) -> String {
        match self {
            Question::Ram { .. } => format!("{value} MiB"),
            Question::FileSize { .. } => ByteSize(value).label(),
        }
    }
}

/// A size in JSON as its label (`128M`): what run keys hash and people read.
mod size_label {
    use crate::size::ByteSize;

    pub fn serialize<S: serde::Serializer>(b: &ByteSize, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&b.label())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        ByteSize::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Both ends of a range, included: MiB for RAM, bytes for file sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Range {
    pub low: u64,
    pub high: u64,
}

/// The default ranges: from the smallest guest that boots to what a large host gives, and from
/// a small upload to one that takes minutes under TCG (and fits the image's 24 GiB root).
pub const DEFAULT_RAM_RANGE: Range = Range { low: MIN_RAM_MIB, high: 4096 };
pub const DEFAULT_SIZE_RANGE: Range = Range { low: 16 << 20, high: 8 << 30 };

/// How close the answer must be: the step between neighbouring points, absolute (MiB for RAM,
/// bytes for sizes) or relative to the value (percent).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    Step(u64),
    Percent(f64),
}

/// 16 MiB for RAM (a guest's RAM is usually chosen in steps like it); 5 % for file sizes, whose
/// ranges span orders of magnitude.
pub const DEFAULT_RAM_RESOLUTION: Resolution = Resolution::Step(16);
pub const DEFAULT_SIZE_RESOLUTION: Resolution = Resolution::Percent(5.0);

/// More points than this is a resolution no one means (and a grid not worth holding).
pub const MAX_POINTS: u64 = 100_000;
/// The most probes of one point `--confirm` may ask for.
pub const MAX_CONFIRM: u32 = 20;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("{flag} {given} is inverted: write the smaller end first ({hint})")]
    Inverted { flag: &'static str, given: String, hint: String },
    #[error("{flag} {given} is empty: give two different ends, LOW..HIGH")]
    Empty { flag: &'static str, given: String },
    #[error("--ram-range {given}: a guest needs at least {MIN_RAM_MIB} MiB to boot; start the range at {MIN_RAM_MIB} or above")]
    RamTooSmall { given: String },
    #[error("--resolution {given}: {why}")]
    BadResolution { given: String, why: String },
    #[error("--resolution {given} is larger than {flag} {range}: use at most {most}, or widen the range")]
    ResolutionTooLarge { given: String, flag: &'static str, range: String, most: String },
    #[error("--resolution {given} makes {points} points in {flag} {range}: use a coarser resolution (at most {MAX_POINTS} points)")]
    TooManyPoints { given: String, flag: &'static str, range: String, points: u64 },
    #[error("--confirm {0}: use 1 to {MAX_CONFIRM} (probes of the limit's point that must all pass)")]
    Confirm(u32),
    #[error("--concurrency {0}: use 1 to {max} uploads at once", max = crate::plan::key::MAX_CONCURRENCY)]
    Concurrency(u32),
}

/// `LOW..HIGH` in MiB (`--ram-range`). Syntax only; the ends are checked by [`Spec::new`].
pub fn parse_ram_range(s: &str) -> Result<Range, String> {
    let (a, b) = split_range(s)?;
    let n = |v: &str| v.parse::<u64>().map_err(|_| format!("'{v}' is not a whole number of MiB; write LOW..HIGH, e.g. 128..4096"));
    Ok(Range { low: n(a)?, high: n(b)? })
}

/// `LOW..HIGH` as sizes (`--size-range`), units as everywhere (16M..8G).
pub fn parse_size_range(s: &str) -> Result<Range, String> {
    let (a, b) = split_range(s)?;
    let n = |v: &str| ByteSize::parse(v).map(ByteSize::bytes).map_err(|e| e.to_string());
    Ok(Range { low: n(a)?, high: n(b)? })
}

fn split_range(s: &str) -> Result<(&str, &str), String> {
    s.split_once("..").map(|(a, b)| (a.trim(), b.trim())).ok_or_else(|| format!("'{s}' is not a range: write LOW..HIGH, e.g. 128..4096 or 16M..8G"))
}

/// A checked search: the question, its range and resolution, and the probes the limit needs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Spec {
    pub question: Question,
    pub range: Range,
    pub resolution: Resolution,
    /// Uploads at once in every probe.
    pub concurrency: u32,
}

impl Spec {
    /// The flags' values, checked. `range` and `resolution` default by the question.
    pub fn new(question: Question, range: Option<Range>, resolution: Option<&str>, concurrency: u32) -> Result<Spec, SpecError> {
        let flag = question.range_flag();
        let ram = matches!(question, Question::Ram { .. });
        let range = range.unwrap_or(if ram { DEFAULT_RAM_RANGE } else { DEFAULT_SIZE_RANGE });
        let spec_range = Spec { question, range, resolution: Resolution::Step(1), concurrency };
        let given = spec_range.range_label();
        if range.low > range.high {
            let hint = if ram { format!("{}..{}", range.high, range.low) } else { format!("{}..{}", ByteSize(range.high), ByteSize(range.low)) };
            return Err(SpecError::Inverted { flag, given, hint });
        }
        if range.low == range.high {
            return Err(SpecError::Empty { flag, given });
        }
        if ram && range.low < MIN_RAM_MIB {
            return Err(SpecError::RamTooSmall { given });
        }
        if concurrency == 0 || concurrency > crate::plan::key::MAX_CONCURRENCY {
            return Err(SpecError::Concurrency(concurrency));
        }
        let resolution = match resolution {
            None if ram => DEFAULT_RAM_RESOLUTION,
            None => DEFAULT_SIZE_RESOLUTION,
            Some(text) => parse_resolution(text, ram)?,
        };
        let s = Spec { resolution, ..spec_range };
        let shown = s.resolution_label();
        let width = range.high - range.low;
        match resolution {
            Resolution::Step(step) if step > width => {
                let most = if ram { width.to_string() } else { ByteSize(width).label() };
                return Err(SpecError::ResolutionTooLarge { given: shown, flag, range: given, most });
            }
            Resolution::Percent(p) if range.low as f64 * (1.0 + p / 100.0) > range.high as f64 => {
                let most = format!("{:.0}%", (range.high as f64 / range.low as f64 - 1.0) * 100.0);
                return Err(SpecError::ResolutionTooLarge { given: shown, flag, range: given, most });
            }
            _ => {}
        }
        let points = s.point_count();
        if points > MAX_POINTS {
            return Err(SpecError::TooManyPoints { given: shown, flag, range: given, points });
        }
        Ok(s)
    }

    /// `128..4096 MiB` or `16M..8G`.
    pub fn range_label(&self) -> String {
        match self.question {
            Question::Ram { .. } => format!("{}..{} MiB", self.range.low, self.range.high),
            Question::FileSize { .. } => format!("{}..{}", ByteSize(self.range.low), ByteSize(self.range.high)),
        }
    }

    /// `16 MiB`, `64M` or `5%`.
    pub fn resolution_label(&self) -> String {
        match (self.resolution, self.question) {
            (Resolution::Percent(p), _) => format!("{p}%"),
            (Resolution::Step(s), Question::Ram { .. }) => format!("{s} MiB"),
            (Resolution::Step(s), Question::FileSize { .. }) => ByteSize(s).label(),
        }
    }

    /// Points of the grid, counted without making it (so an absurd resolution is refused cheaply).
    fn point_count(&self) -> u64 {
        let Range { low, high } = self.range;
        match self.resolution {
            Resolution::Step(s) => (high - low).div_ceil(s) + 1,
            Resolution::Percent(p) => ((high as f64 / low as f64).ln() / (1.0 + p / 100.0).ln()).ceil() as u64 + 1,
        }
    }

    /// The points that can be probed, in search order: from the hardest (least RAM, largest
    /// file) to the easiest. Both ends of the range are points.
    pub fn grid(&self) -> Grid {
        let Range { low, high } = self.range;
        let mut values: Vec<u64> = match self.resolution {
            Resolution::Step(s) => (0..).map(|k| low + k * s).take_while(|v| *v < high).collect(),
            Resolution::Percent(p) => {
                // Geometric: every step is p % of its value. Sizes are rounded to the largest
                // unit (MiB, KiB, byte) within a quarter of the step there, so they read well and
                // the steps stay within a quarter of p; RAM to whole MiB.
                let ratio = 1.0 + p / 100.0;
                let mut out = vec![low];
                let mut x = low as f64;
                loop {
                    x *= ratio;
                    let unit = match self.question {
                        Question::Ram { .. } => 1,
                        Question::FileSize { .. } => [ByteSize::MIB, 1024, 1].into_iter().find(|u| *u as f64 <= x * p / 400.0).unwrap_or(1),
                    };
                    let v = ((x / unit as f64).round() as u64) * unit;
                    if v >= high {
                        break;
                    }
                    if v > *out.last().unwrap() {
                        out.push(v);
                    }
                }
                out
            }
        };
        values.push(high);
        if matches!(self.question, Question::FileSize { .. }) {
            values.reverse();
        }
        Grid { question: self.question, concurrency: self.concurrency, points: values }
    }
}

fn parse_resolution(text: &str, ram: bool) -> Result<Resolution, SpecError> {
    let bad = |why: &str| SpecError::BadResolution { given: text.to_string(), why: why.to_string() };
    let t = text.trim();
    if let Some(p) = t.strip_suffix('%') {
        let p: f64 = p.trim().parse().map_err(|_| bad("write a percentage like 5%"))?;
        if !(p.is_finite() && p > 0.0) {
            return Err(bad("give a percentage above 0, e.g. 5%"));
        }
        return Ok(Resolution::Percent(p));
    }
    let step = if ram {
        t.parse::<u64>().map_err(|_| bad("write a step in MiB (e.g. 16) or a percentage (e.g. 5%)"))?
    } else {
        match ByteSize::parse(t) {
            Ok(b) => b.bytes(),
            Err(crate::size::SizeError::Zero(_)) => 0,
            Err(e) => return Err(bad(&format!("{e}; or a percentage, e.g. 5%"))),
        }
    };
    if step == 0 {
        return Err(bad(if ram { "give a step above 0, e.g. 16 (MiB) or 5%" } else { "give a step above 0, e.g. 64M or 5%" }));
    }
    Ok(Resolution::Step(step))
}

/// The points of a search, hardest first, and the cell each probe of a point runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub question: Question,
    pub concurrency: u32,
    /// MiB (RAM) or bytes (file size), from the hardest point to the easiest.
    pub points: Vec<u64>,
}

impl Grid {
    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The cell of a point's `repeat`-th probe.
    pub fn cell(&self, point: usize, repeat: u32) -> CellKey {
        let v = self.points[point];
        let (ram_mib, size) = match self.question {
            Question::Ram { file_size } => (v, file_size),
            Question::FileSize { ram_mib } => (ram_mib, ByteSize(v)),
        };
        CellKey { ram_mib, size, concurrency: self.concurrency, repeat, target: crate::plan::key::TargetTag::NONE }
    }

    /// The point a cell probes, if it is one of this grid's.
    pub fn point_of(&self, k: &CellKey) -> Option<usize> {
        let (v, fixed_ok) = match self.question {
            Question::Ram { file_size } => (k.ram_mib, k.size == file_size),
            Question::FileSize { ram_mib } => (k.size.bytes(), k.ram_mib == ram_mib),
        };
        if !fixed_ok || k.concurrency != self.concurrency {
            return None;
        }
        match self.question {
            // RAM ascends, sizes descend: search the right way.
            Question::Ram { .. } => self.points.binary_search(&v).ok(),
            Question::FileSize { .. } => self.points.binary_search_by(|p| v.cmp(p)).ok(),
        }
    }

    /// The cell shapes (`512-128M`) of every point, for finding the cells already on disk.
    pub fn shapes(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.cell(i, 1).shape()).collect()
    }

    pub fn label(&self, point: usize) -> String {
        self.question.label(self.points[point])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram(size: &str) -> Question {
        Question::Ram { file_size: ByteSize::parse(size).unwrap() }
    }

    #[test]
    fn ram_grids_step_from_the_low_end_and_end_at_the_high_one() {
        let s = Spec::new(ram("128M"), Some(Range { low: 192, high: 512 }), Some("64"), 1).unwrap();
        assert_eq!(s.grid().points, [192, 256, 320, 384, 448, 512]);
        // A step that does not divide the range: the last step is shorter.
        let s = Spec::new(ram("1G"), Some(Range { low: 128, high: 300 }), Some("100"), 1).unwrap();
        assert_eq!(s.grid().points, [128, 228, 300]);
        let d = Spec::new(ram("1G"), None, None, 1).unwrap();
        assert_eq!((d.range, d.resolution), (DEFAULT_RAM_RANGE, Resolution::Step(16)));
        let g = d.grid();
        assert_eq!((g.len(), g.points[0], g.points[1], *g.points.last().unwrap()), (249, 128, 144, 4096));
        // Percent on RAM: geometric, whole MiB.
        let p = Spec::new(ram("1G"), Some(Range { low: 1000, high: 1300 }), Some("10%"), 1).unwrap();
        assert_eq!(p.grid().points, [1000, 1100, 1210, 1300]);
    }

    #[test]
    fn size_grids_are_geometric_largest_first_and_round_to_mib() {
        let q = Question::FileSize { ram_mib: 256 };
        let s = Spec::new(q, None, None, 1).unwrap();
        assert_eq!((s.range, s.resolution), (DEFAULT_SIZE_RANGE, Resolution::Percent(5.0)));
        let g = s.grid();
        assert_eq!(g.points[0], 8 << 30, "the hardest point first: the largest file");
        assert_eq!(*g.points.last().unwrap(), 16 << 20);
        assert!(g.points.windows(2).all(|w| w[0] > w[1]));
        // Every step 5 % give or take a quarter of it (rounding); whole MiB where a step is 4 MiB
        // or more, whole KiB below.
        for w in g.points.windows(2) {
            let r = w[0] as f64 / w[1] as f64;
            assert!(r > 1.0375 && r < 1.0625, "{w:?}: {r}");
        }
        assert!(g.points.iter().filter(|v| **v >= 80 << 20).all(|v| v % ByteSize::MIB == 0));
        assert!(g.points.iter().all(|v| v % 1024 == 0));
        assert_eq!(ByteSize(g.points[g.len() - 2]).label(), "17203K", "16M + 5 %, in KiB");
        assert!(g.len() as u64 <= s.point_count() && g.len() as u64 + 1 >= s.point_count(), "the count that guards the grid's size is about the grid's");
        // An absolute step over small sizes.
        let s = Spec::new(q, Some(parse_size_range("1M..2M").unwrap()), Some("256K"), 1).unwrap();
        assert_eq!(s.grid().points.iter().map(|b| ByteSize(*b).label()).collect::<Vec<_>>(), ["2M", "1792K", "1536K", "1280K", "1M"]);
    }

    #[test]
    fn a_grid_maps_points_to_cells_and_back() {
        let s = Spec::new(Question::FileSize { ram_mib: 256 }, Some(parse_size_range("16M..64M").unwrap()), Some("16M"), 2).unwrap();
        let g = s.grid();
        let k = g.cell(1, 3);
        assert_eq!((k.ram_mib, k.size.label(), k.concurrency, k.repeat), (256, "48M".to_string(), 2, 3));
        assert_eq!(g.point_of(&k), Some(1));
        assert_eq!(g.point_of(&CellKey { concurrency: 1, ..k }), None, "another concurrency is another search");
        assert_eq!(g.point_of(&CellKey { ram_mib: 512, ..k }), None);
        assert_eq!(g.point_of(&CellKey { size: ByteSize(40 << 20), ..k }), None, "between two points");
        let r = Spec::new(ram("128M"), Some(Range { low: 192, high: 512 }), Some("64"), 1).unwrap().grid();
        assert_eq!(r.point_of(&r.cell(4, 1)), Some(4));
        assert_eq!(r.shapes()[0], "192-128M");
        assert_eq!((r.label(0), g.label(0)), ("192 MiB".to_string(), "64M".to_string()));
    }

    #[test]
    fn bad_ranges_and_resolutions_name_the_flag_and_the_fix() {
        let e = |q, range: &str, res: Option<&str>| {
            let r = match q {
                Question::Ram { .. } => parse_ram_range(range).unwrap(),
                Question::FileSize { .. } => parse_size_range(range).unwrap(),
            };
            Spec::new(q, Some(r), res, 1).unwrap_err().to_string()
        };
        let sz = Question::FileSize { ram_mib: 256 };
        assert_eq!(e(ram("1G"), "4096..128", None), "--ram-range 4096..128 MiB is inverted: write the smaller end first (128..4096)");
        assert_eq!(e(sz, "8G..16M", None), "--size-range 8G..16M is inverted: write the smaller end first (16M..8G)");
        assert!(e(ram("1G"), "512..512", None).starts_with("--ram-range 512..512 MiB is empty"));
        assert!(e(sz, "1G..1024M", None).starts_with("--size-range 1G..1G is empty"), "the same size written twice");
        assert!(e(ram("1G"), "64..512", None).contains("at least 128 MiB"));
        assert!(e(ram("1G"), "128..512", Some("0")).starts_with("--resolution 0: give a step above 0"));
        assert!(e(sz, "16M..1G", Some("0")).starts_with("--resolution 0: give a step above 0, e.g. 64M"));
        assert!(e(ram("1G"), "128..512", Some("0%")).starts_with("--resolution 0%: give a percentage above 0"));
        assert!(e(ram("1G"), "128..512", Some("-5%")).contains("above 0"));
        assert!(e(ram("1G"), "128..512", Some("16M")).starts_with("--resolution 16M: write a step in MiB"));
        assert!(e(sz, "16M..1G", Some("1X")).contains("unknown unit"));
        assert_eq!(e(ram("1G"), "128..512", Some("1000")), "--resolution 1000 MiB is larger than --ram-range 128..512 MiB: use at most 384, or widen the range");
        assert_eq!(e(sz, "16M..1G", Some("2G")), "--resolution 2G is larger than --size-range 16M..1G: use at most 1008M, or widen the range");
        assert!(e(sz, "16M..20M", Some("50%")).starts_with("--resolution 50% is larger than --size-range 16M..20M: use at most 25%"));
        assert!(e(sz, "16M..8G", Some("1")).contains("use a coarser resolution"));
        // The largest step the message offers is accepted.
        Spec::new(ram("1G"), Some(Range { low: 128, high: 512 }), Some("384"), 1).unwrap();
        assert!(matches!(Spec::new(ram("1G"), None, None, 0), Err(SpecError::Concurrency(0))));
    }

    #[test]
    fn range_syntax() {
        assert_eq!(parse_ram_range("128..4096"), Ok(Range { low: 128, high: 4096 }));
        assert_eq!(parse_ram_range(" 128 .. 256 "), Ok(Range { low: 128, high: 256 }));
        assert_eq!(parse_size_range("16M..8G"), Ok(Range { low: 16 << 20, high: 8 << 30 }));
        assert!(parse_ram_range("128-4096").unwrap_err().contains("LOW..HIGH"));
        assert!(parse_ram_range("..4096").unwrap_err().contains("whole number"));
        assert!(parse_ram_range("1G..2G").unwrap_err().contains("'1G' is not a whole number of MiB"));
        assert!(parse_size_range("16M..").unwrap_err().contains("empty size"));
        assert!(parse_size_range("16Q..1G").unwrap_err().contains("unknown unit"));
        assert!(parse_size_range("0..1G").unwrap_err().contains("zero"));
    }
}
