//! Order statistics for benchmarks: one definition of median, spread and
//! percentiles, as every report uses them.

use std::time::Duration;

/// The median of `v` (sorted in place): the upper middle element.
pub fn median(v: &mut [f64]) -> f64 {
    median_spread(v).0
}

/// The median of `v` (sorted in place) and its spread, (max - min) /
/// median, printed beside it in the reports.
pub fn median_spread(v: &mut [f64]) -> (f64, f64) {
    assert!(!v.is_empty(), "median of no samples");
    v.sort_by(f64::total_cmp);
    let m = v[v.len() / 2];
    (m, (v[v.len() - 1] - v[0]) / m.max(1e-9))
}

/// The `p` quantile (0.0..=1.0) of `v`, sorting it in place: the sample
/// at the rounded rank.
pub fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    pct_sorted(v, p)
}

/// As [`pct`], for samples already sorted.
pub fn pct_sorted(sorted: &[Duration], p: f64) -> Duration {
    assert!(!sorted.is_empty(), "quantile of no samples");
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A duration as milliseconds with two decimals, as the reports print it.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// This process's resident memory and its peak since [`reset_peak_rss`],
/// in KiB (VmRSS, VmHWM).
pub fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets this process's peak resident memory (VmHWM) to its current one.
pub fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("/proc/self/clear_refs");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_quantiles() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_spread(&mut [4.0, 1.0, 2.0, 3.0]), (3.0, 1.0));
        let mut d: Vec<Duration> = (0..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(pct(&mut d, 0.5), Duration::from_millis(50));
        assert_eq!(pct_sorted(&d, 0.99), Duration::from_millis(99));
        assert_eq!(pct_sorted(&d, 1.0), Duration::from_millis(100));
        assert_eq!(ms(Duration::from_micros(1500)), "1.50 ms");
    }
}
