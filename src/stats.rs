//! Small statistics for repeated cells. Pure.

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n-1); 0 for a single value.
    pub stddev: f64,
    pub min: f64,
    pub max: f64,
    #[serde(default)]
    pub median: f64,
}

pub fn stats(values: &[f64]) -> Option<Stats> {
    if values.is_empty() {
        return None;
    }
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    let var = if n > 1 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
    let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    Some(Stats { n, mean, stddev: var.sqrt(), min, max, median: median(values) })
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Outliers by the modified z-score (Iglewicz and Hoaglin): |0.6745 (x - median) / MAD| > 3.5.
/// When more than half the values are equal (MAD = 0), the mean absolute deviation stands in
/// (scaled by 1.2533); when that is 0 too, nothing is an outlier.
pub fn outliers(values: &[f64]) -> Vec<bool> {
    if values.len() < 3 {
        return vec![false; values.len()];
    }
    let m = median(values);
    let dev: Vec<f64> = values.iter().map(|v| (v - m).abs()).collect();
    let mad = median(&dev);
    let scale = if mad > 0.0 {
        mad / 0.6745
    } else {
        1.2533 * dev.iter().sum::<f64>() / dev.len() as f64
    };
    if scale <= 0.0 {
        return vec![false; values.len()];
    }
    dev.iter().map(|d| d / scale > 3.5).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let s = stats(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert_eq!(s.n, 8);
        assert_eq!(s.mean, 5.0);
        assert!((s.stddev - 2.138).abs() < 0.001);
        assert_eq!((s.min, s.max), (2.0, 9.0));
        assert_eq!(stats(&[3.0]).unwrap().stddev, 0.0);
        assert!(stats(&[]).is_none());
        assert_eq!(s.median, 4.5);
        assert_eq!(stats(&[3.0, 1.0, 2.0]).unwrap().median, 2.0);
    }

    #[test]
    fn modified_z_score_flags_the_odd_one_out() {
        assert_eq!(outliers(&[60.0, 61.0, 59.5, 60.5, 20.0]), [false, false, false, false, true]);
        assert_eq!(outliers(&[60.0, 61.0, 59.5, 60.5, 58.0]), [false; 5]);
        // MAD 0: the mean absolute deviation decides.
        assert_eq!(outliers(&[5.0, 5.0, 5.0, 5.0, 50.0]), [false, false, false, false, true]);
        assert_eq!(outliers(&[5.0, 5.0, 5.0]), [false; 3]);
        assert_eq!(outliers(&[1.0, 100.0]), [false; 2], "too few to call");
    }
}
