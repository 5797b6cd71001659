//! Retry delays after transient provider errors.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::config::DeliveryConfig;

/// The delay before attempt `attempt + 1`: exponential from `retry_base_ms`, capped, jittered.
pub fn delay(config: &DeliveryConfig, attempt: u32) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(config.retry_base_ms))
        .with_max_delay(Duration::from_millis(config.retry_max_ms))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempt.saturating_sub(1) as usize)
        .unwrap_or(Duration::from_millis(config.retry_max_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_under_the_cap() {
        let config = DeliveryConfig {
            retry_base_ms: 100,
            retry_max_ms: 1000,
            ..DeliveryConfig::default()
        };
        let first = delay(&config, 1);
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(200));
        let fourth = delay(&config, 4);
        assert!(fourth >= Duration::from_millis(800), "{fourth:?}");
        for attempt in 1..20 {
            assert!(delay(&config, attempt) <= Duration::from_millis(2000));
        }
    }
}
