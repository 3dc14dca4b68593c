//! Byte sizes as users type them: `100M`, `1G`, `1.5G` are binary (1G = 1024^3, like dd);
//! `MB`/`GB` are decimal (1GB = 10^9). A bare number is bytes.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("empty size; write e.g. 100M or 1G")]
    Empty,
    #[error("'{0}' is not a size: write a number and a unit, e.g. 100M, 1.5G, 500MB")]
    Malformed(String),
    #[error("'{input}' has an unknown unit '{unit}': use K, M, G, T (binary, 1G = 1024^3) or KB, MB, GB, TB (decimal)")]
    UnknownUnit { input: String, unit: String },
    #[error("'{0}' is too large")]
    TooLarge(String),
    #[error("'{0}' is zero; a size must be at least one byte")]
    Zero(String),
}

const KI: u64 = 1024;

fn multiplier(unit: &str) -> Option<u64> {
    Some(match unit {
        "" | "B" => 1,
        "K" | "KI" | "KIB" => KI,
        "M" | "MI" | "MIB" => KI.pow(2),
        "G" | "GI" | "GIB" => KI.pow(3),
        "T" | "TI" | "TIB" => KI.pow(4),
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    })
}

impl ByteSize {
    pub const MIB: u64 = 1024 * 1024;
    pub const GIB: u64 = 1024 * 1024 * 1024;

    pub fn parse(input: &str) -> Result<ByteSize, SizeError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(SizeError::Empty);
        }
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.matches('.').count() > 1 {
            return Err(SizeError::Malformed(input.to_string()));
        }
        let unit_up = unit.trim().to_ascii_uppercase();
        let mult = multiplier(&unit_up).ok_or_else(|| SizeError::UnknownUnit {
            input: input.to_string(),
            unit: unit.trim().to_string(),
        })?;
        // Integers are exact; fractions go through f64, rounded to whole bytes.
        let bytes = if let Some((int, frac)) = num.split_once('.') {
            let int: u64 = int.parse().map_err(|_| SizeError::TooLarge(input.to_string()))?;
            let frac_val: f64 = format!("0.{frac}").parse().map_err(|_| SizeError::Malformed(input.to_string()))?;
            let whole = int.checked_mul(mult).ok_or_else(|| SizeError::TooLarge(input.to_string()))?;
            whole
                .checked_add((frac_val * mult as f64).round() as u64)
                .ok_or_else(|| SizeError::TooLarge(input.to_string()))?
        } else {
            let n: u64 = num.parse().map_err(|_| SizeError::TooLarge(input.to_string()))?;
            n.checked_mul(mult).ok_or_else(|| SizeError::TooLarge(input.to_string()))?
        };
        if bytes == 0 {
            return Err(SizeError::Zero(input.to_string()));
        }
        Ok(ByteSize(bytes))
    }

    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Size in MiB, the unit of the result's `*_mb` fields.
    pub fn mib(self) -> f64 {
        self.0 as f64 / Self::MIB as f64
    }

    /// A short, stable label used in cell names, CSV and summaries: `1G`, `100M`, `1536M`,
    /// `500000000B`. Parsing the label gives back the same size.
    pub fn label(self) -> String {
        let b = self.0;
        for (unit, m) in [("T", KI.pow(4)), ("G", KI.pow(3)), ("M", KI.pow(2)), ("K", KI)] {
            if b.is_multiple_of(m) {
                return format!("{}{unit}", b / m);
            }
        }
        format!("{b}B")
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

impl std::str::FromStr for ByteSize {
    type Err = SizeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ByteSize::parse(s)
    }
}

/// Human form for messages: "1.50 GiB".
pub fn human(bytes: u64) -> String {
    humansize::format_size(bytes, humansize::BINARY)
}

/// Seconds as a person reads them: `42s`, `2m05s`, `2h01m`.
pub fn fmt_secs(s: f64) -> String {
    if s >= 3600.0 {
        format!("{:.0}h{:02.0}m", (s / 3600.0).floor(), (s % 3600.0) / 60.0)
    } else if s >= 60.0 {
        format!("{:.0}m{:02.0}s", (s / 60.0).floor(), s % 60.0)
    } else {
        format!("{s:.0}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_units_like_dd() {
        assert_eq!(ByteSize::parse("100M").unwrap().0, 100 * 1024 * 1024);
        assert_eq!(ByteSize::parse("1G").unwrap().0, 1 << 30);
        assert_eq!(ByteSize::parse("1g").unwrap().0, 1 << 30);
        assert_eq!(ByteSize::parse("1GiB").unwrap().0, 1 << 30);
        assert_eq!(ByteSize::parse("1.5G").unwrap().0, 3 << 29);
        assert_eq!(ByteSize::parse("64K").unwrap().0, 65536);
        assert_eq!(ByteSize::parse("2T").unwrap().0, 2 << 40);
    }

    #[test]
    fn decimal_units_and_bytes() {
        assert_eq!(ByteSize::parse("500MB").unwrap().0, 500_000_000);
        assert_eq!(ByteSize::parse("1GB").unwrap().0, 1_000_000_000);
        assert_eq!(ByteSize::parse("1.5GB").unwrap().0, 1_500_000_000);
        assert_eq!(ByteSize::parse("4096").unwrap().0, 4096);
        assert_eq!(ByteSize::parse(" 7B ").unwrap().0, 7);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(ByteSize::parse("").unwrap_err(), SizeError::Empty);
        assert!(matches!(ByteSize::parse("0").unwrap_err(), SizeError::Zero(_)));
        assert!(matches!(ByteSize::parse("0G").unwrap_err(), SizeError::Zero(_)));
        assert!(matches!(ByteSize::parse("1X").unwrap_err(), SizeError::UnknownUnit { .. }));
        assert!(matches!(ByteSize::parse("G").unwrap_err(), SizeError::Malformed(_)));
        assert!(matches!(ByteSize::parse("-1G").unwrap_err(), SizeError::Malformed(_)));
        assert!(matches!(ByteSize::parse("1..5G").unwrap_err(), SizeError::Malformed(_)));
        assert!(matches!(ByteSize::parse(".5G").unwrap_err(), SizeError::Malformed(_)));
        assert!(matches!(ByteSize::parse("99999999999T").unwrap_err(), SizeError::TooLarge(_)));
        assert!(matches!(ByteSize::parse("1 G B").unwrap_err(), SizeError::UnknownUnit { .. }));
    }

    #[test]
    fn label_round_trips() {
        for s in ["100M", "1G", "5G", "64M", "1536M", "1K", "7B", "500000000B"] {
            let b = ByteSize::parse(s).unwrap();
            assert_eq!(b.label(), s);
            assert_eq!(ByteSize::parse(&b.label()).unwrap(), b);
        }
        assert_eq!(ByteSize::parse("1.5G").unwrap().label(), "1536M");
        assert_eq!(ByteSize::parse("1024M").unwrap().label(), "1G");
    }

    #[test]
    fn mib_is_binary() {
        assert_eq!(ByteSize::parse("1G").unwrap().mib(), 1024.0);
    }

    proptest::proptest! {
        /// Whatever is typed, the parser answers with a size or an error, never a panic.
        #[test]
        fn any_input_parses_or_errs(s in proptest::prelude::any::<String>()) {
            let _ = ByteSize::parse(&s);
        }

        #[test]
        fn labels_parse_back(n in 1u64..) {
            proptest::prop_assert_eq!(ByteSize::parse(&ByteSize(n).label()), Ok(ByteSize(n)));
        }

        /// `<n><unit>` is exactly n × unit, or TooLarge when that overflows.
        #[test]
        fn number_and_unit(n in 1u64..1 << 44, unit in "(|B|K|M|G|T|KB|MB|GB|TB|k|m|g|t|KiB|MiB|GiB|TiB)") {
            let mult = multiplier(&unit.to_ascii_uppercase()).unwrap();
            let input = format!("{n}{unit}");
            match n.checked_mul(mult) {
                Some(b) => proptest::prop_assert_eq!(ByteSize::parse(&input), Ok(ByteSize(b))),
                None => proptest::prop_assert_eq!(ByteSize::parse(&input), Err(SizeError::TooLarge(input.clone()))),
            }
        }
    }
}

#[cfg(test)]
mod fmt_tests {
    #[test]
    fn durations_read_well() {
        assert_eq!(super::fmt_secs(42.0), "42s");
        assert_eq!(super::fmt_secs(125.0), "2m05s");
        assert_eq!(super::fmt_secs(7260.0), "2h01m");
    }
}
