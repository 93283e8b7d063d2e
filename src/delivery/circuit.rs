//! The per-endpoint circuit breaker.
//!
//! Closed: requests flow; `failure_threshold` consecutive failed attempts open it.
//! Open: no requests for `recovery_time`; jobs wait in the queue, spending no attempts.
//! Half-open: exactly one probe; success closes, failure reopens.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Requests flow; counts consecutive failures.
    Closed {
        /// Consecutive failed attempts.
        failures: u32,
    },
    /// No requests until `until`.
    Open {
        /// When a probe may go.
        until: Instant,
    },
    /// One probe is in flight.
    HalfOpen,
}

impl State {
    /// The gauge value: 0 closed, 1 open, 2 half-open.
    pub fn gauge(&self) -> u64 {
        match self {
            State::Closed { .. } => 0,
            State::Open { .. } => 1,
            State::HalfOpen => 2,
        }
    }
}

/// How a caller may send its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The circuit is closed.
    Normal,
    /// The caller's request is the half-open probe; report its result with `probe = true`.
    Probe,
}

/// A circuit breaker. `admit` waits while the circuit is open or a probe is in flight.
#[derive(Debug)]
pub struct Circuit {
    state: Mutex<State>,
    changed: Notify,
    threshold: u32,
    recovery: Duration,
}

impl Circuit {
    /// A closed breaker.
    pub fn new(threshold: u32, recovery: Duration) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            changed: Notify::new(),
            threshold: threshold.max(1),
            recovery,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a request may go. Returns whether it is the half-open probe, and calls
    /// `on_change` with the new state when this call moved the breaker to half-open.
    pub async fn admit(&self, on_change: impl Fn(State)) -> Admit {
        loop {
            let changed = self.changed.notified();
            let wait_until = {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                match *s {
                    State::Closed { .. } => return Admit::Normal,
                    State::Open { until } if Instant::now() >= until => {
                        *s = State::HalfOpen;
                        on_change(*s);
                        return Admit::Probe;
                    }
                    State::Open { until } => Some(until),
                    State::HalfOpen => None,
                }
            };
            match wait_until {
                Some(until) => {
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep_until(until) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// Gives back the half-open probe without a verdict: its request was never sent (the
    /// message's transform failed), so the next request becomes the probe at once.
    pub fn release_probe(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if *s == State::HalfOpen {
            *s = State::Open {
                until: Instant::now(),
            };
            drop(s);
            self.changed.notify_waiters();
        }
    }

    /// Reports an attempt's result; returns the new state if it changed.
    pub fn record(&self, success: bool, probe: bool) -> Option<State> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let before = *s;
        let after = match (before, success, probe) {
            (State::HalfOpen, true, true) => State::Closed { failures: 0 },
            (State::HalfOpen, false, true) => State::Open {
                until: Instant::now() + self.recovery,
            },
            (State::Closed { .. }, true, _) => State::Closed { failures: 0 },
            (State::Closed { failures }, false, _) if failures + 1 >= self.threshold => {
                State::Open {
                    until: Instant::now() + self.recovery,
                }
            }
            (State::Closed { failures }, false, _) => State::Closed {
                failures: failures + 1,
            },
            // Late answers to requests sent before the circuit opened change nothing.
            (other, _, _) => other,
        };
        *s = after;
        drop(s);
        if after != before {
            self.changed.notify_waiters();
        }
        (after.gauge() != before.gauge()).then_some(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_and_probes_after_recovery() {
        let c = Circuit::new(3, Duration::from_secs(60));
        assert_eq!(c.admit(|_| {}).await, Admit::Normal);
        assert_eq!(c.record(false, false), None);
        assert_eq!(c.record(false, false), None);
        assert!(matches!(c.record(false, false), Some(State::Open { .. })));
        let t0 = Instant::now();
        assert_eq!(c.admit(|_| {}).await, Admit::Probe);
        assert!(
            Instant::now() >= t0 + Duration::from_secs(60),
            "no request while open"
        );
        assert_eq!(c.state(), State::HalfOpen);
        assert_eq!(c.record(true, true), Some(State::Closed { failures: 0 }));
        assert_eq!(c.admit(|_| {}).await, Admit::Normal);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_given_back_without_a_verdict_lets_the_next_request_probe_at_once() {
        let c = Circuit::new(1, Duration::from_secs(60));
        assert!(matches!(c.record(false, false), Some(State::Open { .. })));
        assert_eq!(c.admit(|_| {}).await, Admit::Probe);
        c.release_probe();
        let t0 = Instant::now();
        assert_eq!(c.admit(|_| {}).await, Admit::Probe);
        assert_eq!(Instant::now(), t0, "no second recovery time");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_for_another_recovery_time() {
        let c = Circuit::new(1, Duration::from_secs(10));
        c.record(false, false);
        assert_eq!(c.admit(|_| {}).await, Admit::Probe);
        assert!(matches!(c.record(false, true), Some(State::Open { .. })));
        let t1 = Instant::now();
        assert_eq!(c.admit(|_| {}).await, Admit::Probe);
        assert!(Instant::now() >= t1 + Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn only_one_probe_goes_while_half_open() {
        let c = std::sync::Arc::new(Circuit::new(1, Duration::from_secs(1)));
        c.record(false, false);
        assert_eq!(c.admit(|_| {}).await, Admit::Probe);
        let c2 = c.clone();
        let second = tokio::spawn(async move { c2.admit(|_| {}).await });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            !second.is_finished(),
            "a second request must wait for the probe"
        );
        c.record(true, true);
        assert_eq!(second.await.unwrap(), Admit::Normal);
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let c = Circuit::new(2, Duration::from_secs(1));
        c.record(false, false);
        c.record(true, false);
        assert_eq!(c.record(false, false), None);
        assert_eq!(c.state(), State::Closed { failures: 1 });
    }
}
