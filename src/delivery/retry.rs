//! The retry schedule: retry k (1 … `max_retries`) waits `retry_delay × 2^(k-1)`, ±20 %
//! jitter, capped at `max_retry_delay`; a `Retry-After` from the endpoint replaces the
//! computed delay, capped the same way.
//!
//! The exponential part comes from `backon`, the maintained successor of the `backoff`
//! crate (RUSTSEC-2025-0012); the ±20 % jitter is ours because backon's jitter only adds.

use std::time::Duration;

use backon::BackoffBuilder;

/// Retry settings of one endpoint.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Delay before retry 1.
    pub retry_delay: Duration,
    /// Cap of any delay.
    pub max_retry_delay: Duration,
}

impl RetryPolicy {
    /// The delay before retry `k` (1-based) without jitter.
    pub fn base_delay(&self, k: u32) -> Duration {
        let k = k.max(1) as usize;
        backon::ExponentialBuilder::default()
            .with_min_delay(self.retry_delay)
            .with_factor(2.0)
            .with_max_delay(self.max_retry_delay)
            .with_max_times(k)
            .build()
            .nth(k - 1)
            .unwrap_or(self.max_retry_delay)
            .min(self.max_retry_delay)
    }

    /// The delay before retry `k`, with ±20 % jitter (`unit` in [0, 1) picks where), capped.
    pub fn delay(&self, k: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_retry_delay);
        }
        let base = self.base_delay(k).as_secs_f64();
        let jittered = base * (0.8 + 0.4 * unit.clamp(0.0, 1.0));
        Duration::from_secs_f64(jittered).min(self.max_retry_delay)
    }

    /// Whether another retry is allowed after `attempts` attempts.
    pub fn may_retry(&self, attempts: u32) -> bool {
        attempts <= self.max_retries
    }
}

/// Parses `Retry-After`: delay seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> RetryPolicy {
        RetryPolicy {
            max_retries: 5,
            retry_delay: Duration::from_secs(2),
            max_retry_delay: Duration::from_secs(3600),
        }
    }

    #[test]
    fn the_default_schedule_is_2_4_8_16_32_seconds() {
        let p = defaults();
        let secs: Vec<u64> = (1..=5).map(|k| p.base_delay(k).as_secs()).collect();
        assert_eq!(secs, vec![2, 4, 8, 16, 32]);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let p = defaults();
        assert_eq!(p.delay(3, None, 0.0), Duration::from_secs_f64(6.4));
        assert_eq!(p.delay(3, None, 1.0), Duration::from_secs_f64(9.6));
        let mid = p.delay(3, None, 0.5);
        assert!((mid.as_secs_f64() - 8.0).abs() < 1e-9);
    }

    #[test]
    fn delays_are_capped_at_max_retry_delay() {
        let p = RetryPolicy {
            max_retry_delay: Duration::from_secs(10),
            ..defaults()
        };
        assert_eq!(p.base_delay(5), Duration::from_secs(10));
        assert_eq!(p.delay(5, None, 1.0), Duration::from_secs(10));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(99)), 0.5),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn retry_after_replaces_the_computed_delay() {
        let p = defaults();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7)), 0.0),
            Duration::from_secs(7)
        );
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("12", now), Some(Duration::from_secs(12)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn five_retries_mean_six_attempts() {
        let p = defaults();
        assert!(p.may_retry(5));
        assert!(!p.may_retry(6));
    }
}
