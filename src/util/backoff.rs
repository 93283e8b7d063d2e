//! The one reconnect policy of every loop that talks to Redis: waits double from 100 ms up
//! to a cap (5 s unless a setting says otherwise), each drawn from the upper half of its
//! base ("equal jitter") so that replicas do not retry in lockstep, and no wait ever exceeds
//! the cap. A wait ends early when shutdown is requested, so a loop that is retrying never
//! holds up the exit.
//!
//! The doubling schedule comes from `backon`, the maintained successor of `backoff`
//! (RUSTSEC-2025-0012). Its own jitter is not used: it adds up to one more base on top of
//! the capped delay, so a 1 s cap could wait almost 2 s, and the pub/sub resubscribe delay
//! (`[redis] resubscribe_max_delay`) promises the cap as an upper bound. The jitter here
//! scales the capped base down instead.

use std::time::Duration;

use backon::BackoffBuilder;
use tokio_util::sync::CancellationToken;

/// The first wait after a failure.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest wait of loops that have no setting of their own.
pub const DEFAULT_CAP: Duration = Duration::from_secs(5);

/// The waits of one retrying loop: call [`Backoff::wait`] after each failure and
/// [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    cap: Duration,
    attempt: usize,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(DEFAULT_CAP)
    }
}

impl Backoff {
    /// Waits that double from [`FIRST_DELAY`] up to `cap` (a cap below the first delay is
    /// the only wait).
    pub fn new(cap: Duration) -> Self {
        Self { cap, attempt: 0 }
    }

    /// The wait cap.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// Starts again from the first delay (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The base of the `n`-th wait (0-based) without jitter: `100 ms × 2^n`, capped.
    pub fn base(&self, n: usize) -> Duration {
        let first = FIRST_DELAY.min(self.cap);
        let exact = backon::ExponentialBuilder::default()
            .with_min_delay(first)
            .with_factor(2.0)
            .with_max_delay(self.cap)
            .with_max_times(n + 1)
            .build()
            .nth(n)
            .unwrap_or(self.cap);
        // backon multiplies in f32, which puts 3.2 s at 3.200000048 s; whole milliseconds
        // are what the schedule means.
        Duration::from_millis(exact.as_secs_f64().mul_add(1000.0, 0.5) as u64).min(self.cap)
    }

    /// The next wait; `unit` in [0, 1) picks where in the upper half of the base it falls.
    /// Never more than the cap.
    pub fn next_delay_with(&mut self, unit: f64) -> Duration {
        let base = self.base(self.attempt);
        // The schedule stops growing at the cap, so the count need not grow past the point
        // where it is reached (and cannot overflow in a loop that fails for months).
        if base < self.cap {
            self.attempt += 1;
        }
        base.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0)).min(self.cap)
    }

    /// The next wait, with random jitter.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(rand::random::<f64>())
    }

    /// Sleeps the next wait. Returns `false` without waiting out the delay when `shutdown`
    /// fires first (the caller stops), `true` when the loop should try again.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = shutdown.cancelled() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_100ms_up_to_the_cap() {
        let b = Backoff::new(Duration::from_secs(1));
        let ms: Vec<u128> = (0..7).map(|n| b.base(n).as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1000, 1000, 1000]);
        let b = Backoff::default();
        assert_eq!(b.base(5), Duration::from_millis(3200));
        assert_eq!(b.base(6), DEFAULT_CAP);
        assert_eq!(b.base(60), DEFAULT_CAP);
    }

    #[test]
    fn no_wait_exceeds_the_cap_whatever_the_jitter() {
        for cap_ms in [50, 100, 250, 1000, 5000] {
            let cap = Duration::from_millis(cap_ms);
            for unit in [0.0, 0.3, 0.999_999, 1.0, 7.0, -1.0] {
                let mut b = Backoff::new(cap);
                for _ in 0..40 {
                    assert!(
                        b.next_delay_with(unit) <= cap,
                        "cap {cap_ms} ms, unit {unit}"
                    );
                }
            }
        }
    }

    #[test]
    fn jitter_draws_from_the_upper_half_of_the_base() {
        let mut low = Backoff::default();
        let mut high = Backoff::default();
        for n in 0..10 {
            let base = low.base(n);
            assert_eq!(low.next_delay_with(0.0), base / 2);
            assert_eq!(high.next_delay_with(1.0), base);
        }
    }

    #[test]
    fn reset_starts_again_from_the_first_delay() {
        let mut b = Backoff::default();
        for _ in 0..10 {
            b.next_delay_with(1.0);
        }
        assert_eq!(b.next_delay_with(1.0), DEFAULT_CAP);
        b.reset();
        assert_eq!(b.next_delay_with(1.0), FIRST_DELAY);
    }

    #[test]
    fn a_cap_below_the_first_delay_is_the_only_wait() {
        let mut b = Backoff::new(Duration::from_millis(40));
        assert_eq!(b.next_delay_with(1.0), Duration::from_millis(40));
        assert_eq!(b.next_delay_with(1.0), Duration::from_millis(40));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_once_when_shutdown_is_requested() {
        let stop = CancellationToken::new();
        let mut b = Backoff::new(Duration::from_secs(3600));
        for _ in 0..20 {
            b.next_delay_with(1.0);
        }
        stop.cancel();
        let started = tokio::time::Instant::now();
        assert!(!b.wait(&stop).await);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_without_shutdown_sleeps_at_most_the_cap_and_says_try_again() {
        let stop = CancellationToken::new();
        let mut b = Backoff::new(Duration::from_millis(800));
        for _ in 0..10 {
            let started = tokio::time::Instant::now();
            assert!(b.wait(&stop).await);
            assert!(started.elapsed() <= Duration::from_millis(800));
        }
    }
}
