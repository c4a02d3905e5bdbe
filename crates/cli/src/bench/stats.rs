//! Latency summaries: nearest-rank percentiles, mean and standard deviation, in milliseconds.

use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub stddev: f64,
}

/// Milliseconds, to the microsecond.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The nearest-rank percentile `p` (0–100] of sorted samples: the smallest sample with at
/// least `p`% of the samples at or below it.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Latency {
    /// Summarizes the samples (sorting them).
    pub fn of(samples: &mut [Duration]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let n = samples.len() as f64;
        let secs: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
        let mean = secs.iter().sum::<f64>() / n;
        let var = secs.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n;
        let round = |s: f64| (s * 1e6).round() / 1e3;
        Latency {
            p50: ms(percentile(samples, 50.0)),
            p95: ms(percentile(samples, 95.0)),
            p99: ms(percentile(samples, 99.0)),
            min: ms(samples[0]),
            max: ms(samples[samples.len() - 1]),
            mean: round(mean),
            stddev: round(var.sqrt()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&u| Duration::from_micros(u)).collect()
    }

    #[test]
    fn percentiles_are_ordered_for_any_samples() {
        // Uniform, skewed, constant, one sample, two samples, a long tail.
        let cases: Vec<Vec<u64>> = vec![
            (1..=1000).collect(),
            (1..=1000).map(|i| i * i).collect(),
            vec![7; 50],
            vec![42],
            vec![5, 1],
            (0..999).map(|_| 100).chain([1_000_000]).collect(),
        ];
        for case in cases {
            let l = Latency::of(&mut micros(&case));
            assert!(
                l.min <= l.p50 && l.p50 <= l.p95 && l.p95 <= l.p99 && l.p99 <= l.max,
                "{case:?}: {l:?}"
            );
            assert!(l.min <= l.mean && l.mean <= l.max, "{l:?}");
            assert!(l.stddev >= 0.0);
        }
    }

    #[test]
    fn nearest_rank_values() {
        let mut s = micros(&(1..=100).collect::<Vec<_>>());
        let l = Latency::of(&mut s);
        assert_eq!((l.p50, l.p95, l.p99), (0.05, 0.095, 0.099));
        assert_eq!((l.min, l.max, l.mean), (0.001, 0.1, 0.051));
        // 1..=100 µs: the population standard deviation is 28.866 µs.
        assert_eq!(l.stddev, 0.029);
        // Unsorted input is sorted first.
        let mut s = micros(&[30, 10, 20]);
        let l = Latency::of(&mut s);
        assert_eq!((l.min, l.p50, l.max), (0.01, 0.02, 0.03));
    }

    #[test]
    fn a_tail_shows_in_p99_not_p50() {
        let mut s = micros(
            &(0..1000)
                .map(|i| if i < 985 { 100 } else { 50_000 })
                .collect::<Vec<_>>(),
        );
        let l = Latency::of(&mut s);
        assert_eq!(l.p50, 0.1);
        assert_eq!(l.p95, 0.1);
        assert_eq!(l.p99, 50.0);
    }

    #[test]
    fn no_samples_is_all_zero() {
        assert_eq!(Latency::of(&mut []), Latency::default());
    }
}
