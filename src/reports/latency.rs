//! Times to delivery kept as a histogram of 1% wide buckets: memory stays bounded however many
//! messages a report covers, and percentiles are within 1%.

/// Bucket width: each bucket's upper edge is this times its lower.
const GROWTH: f64 = 1.01;

/// Counts of durations (in milliseconds) per logarithmic bucket.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencyHistogram {
    buckets: Vec<u64>,
    count: u64,
}

impl LatencyHistogram {
    /// Count one duration.
    pub fn record(&mut self, millis: i64) {
        let i = bucket(millis.max(0) as f64);
        if self.buckets.len() <= i {
            self.buckets.resize(i + 1, 0);
        }
        self.buckets[i] += 1;
        self.count += 1;
    }

    /// How many were counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q` quantile (0 < q ≤ 1) in seconds, by nearest rank; `None` when empty.
    pub fn quantile_seconds(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        let i = self.buckets.iter().position(|n| {
            seen += n;
            seen >= rank
        })?;
        let millis = (GROWTH.powf(i as f64 + 0.5) - 1.0).max(0.0);
        Some(millis.round() / 1000.0)
    }
}

fn bucket(millis: f64) -> usize {
    ((millis + 1.0).ln() / GROWTH.ln()).floor() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_one_percent() {
        let mut h = LatencyHistogram::default();
        for ms in 1..=1000 {
            h.record(ms * 10);
        }
        let median = h.quantile_seconds(0.5).unwrap();
        let p95 = h.quantile_seconds(0.95).unwrap();
        assert!((median - 5.0).abs() <= 0.05, "{median}");
        assert!((p95 - 9.5).abs() <= 0.095, "{p95}");
        assert_eq!(h.count(), 1000);
        assert_eq!(LatencyHistogram::default().quantile_seconds(0.5), None);
    }

    #[test]
    fn a_year_fits_in_a_few_thousand_buckets() {
        let mut h = LatencyHistogram::default();
        h.record(365 * 24 * 3600 * 1000);
        assert!(h.buckets.len() < 2600);
    }
}
