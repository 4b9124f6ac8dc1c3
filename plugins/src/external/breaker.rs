//! A circuit breaker per external provider: when a provider keeps failing,
//! calls fail fast here instead of piling up on it (and on the callers).
//!
//! ```text
//!            consecutive failures >= failure_threshold, or
//!            error rate >= error_rate over >= min_calls in the window
//!   Closed ─────────────────────────────────────────────────────────► Open
//!     ▲                                                               │
//!     │ half_open_probes probes succeeded     cooldown passed (the    │
//!     │                                       next call is a probe)   ▼
//!     └────────────────────────────────────────────────────────── HalfOpen
//!                      a probe failed: Open again, for another cooldown ─┘
//! ```
//!
//! What counts as a failure is the caller's call ([`Outcome`]): a provider
//! that answers "bad request" is healthy. Time is passed in, so the state
//! machine is tested without sleeping.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When a breaker opens and how it recovers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open it (0: never on this count).
    pub failure_threshold: u32,
    /// Share of failed calls in the window that opens it (0: never on rate).
    pub error_rate: f64,
    /// Calls the window must hold before the rate counts.
    pub min_calls: u32,
    /// How far back the rate looks.
    pub window: Duration,
    /// How long it stays open before letting probes through.
    pub cooldown: Duration,
    /// Probes let through at once when half-open; that many successes close it.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            error_rate: 0.5,
            min_calls: 20,
            window: Duration::from_secs(30),
            cooldown: Duration::from_secs(30),
            half_open_probes: 1,
        }
    }
}

/// How a call the breaker let through ended, as far as the provider's
/// health goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The provider answered (even "bad request": it is healthy).
    Healthy,
    /// It failed: connection error, timeout, 5xx, 429.
    Failed,
}

/// The state, as `/metrics` (`synod_breaker_state`: 0, 1, 2) and the
/// provider list show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    pub fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        }
    }
}

/// A call the breaker refused: it is open (or its probes are all out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// When a call may be tried again.
    pub retry_after: Duration,
}

/// Leave to make one call; hand it back to [`Breaker::record`].
#[derive(Debug)]
#[must_use = "a permit must be recorded, or a half-open breaker keeps a probe slot taken"]
pub struct Permit {
    probe: bool,
}

#[derive(Debug)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { out: u32, succeeded: u32 },
}

#[derive(Debug)]
struct Inner {
    state: State,
    consecutive_failures: u32,
    /// (when, failed) of the calls in the window.
    recent: VecDeque<(Instant, bool)>,
    /// Times it opened, for the provider list.
    opened: u64,
}

/// One provider's breaker.
#[derive(Debug)]
pub struct Breaker {
    cfg: BreakerConfig,
    inner: Mutex<Inner>,
}

/// A snapshot for the provider list and `/health`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerView {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    /// Calls and failures in the window.
    pub window_calls: u32,
    pub window_failures: u32,
    pub opened: u64,
    /// While open: how long until probes go through.
    pub retry_after: Option<Duration>,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig) -> Breaker {
        Breaker {
            cfg,
            inner: Mutex::new(Inner {
                state: State::Closed,
                consecutive_failures: 0,
                recent: VecDeque::new(),
                opened: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is a few counters, consistent after every statement: a
        // panic elsewhere while holding the lock leaves nothing half-done.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// May a call go out now? Open: no, until the cooldown has passed; then
    /// the breaker is half-open and lets `half_open_probes` calls through.
    pub fn admit(&self, now: Instant) -> Result<Permit, Refused> {
        let mut inner = self.lock();
        if let State::Open { until } = inner.state {
            if now < until {
                return Err(Refused { retry_after: until - now });
            }
            inner.state = State::HalfOpen { out: 0, succeeded: 0 };
        }
        match &mut inner.state {
            State::Closed => Ok(Permit { probe: false }),
            State::HalfOpen { out, succeeded } => {
                if *out + *succeeded < self.cfg.half_open_probes.max(1) {
                    *out += 1;
                    Ok(Permit { probe: true })
                } else {
                    // The probes are out; their answers decide.
                    Err(Refused { retry_after: Duration::from_secs(1) })
                }
            }
            State::Open { .. } => unreachable!("an open breaker past its cooldown became half-open above"),
        }
    }

    /// Records how a call it admitted ended.
    pub fn record(&self, permit: Permit, now: Instant, outcome: Outcome) {
        let failed = outcome == Outcome::Failed;
        let mut inner = self.lock();
        inner.recent.push_back((now, failed));
        let window = self.cfg.window;
        while inner.recent.front().is_some_and(|(at, _)| now.saturating_duration_since(*at) > window) {
            inner.recent.pop_front();
        }
        inner.consecutive_failures = if failed { inner.consecutive_failures + 1 } else { 0 };
        let cooldown = self.cfg.cooldown;
        match &mut inner.state {
            State::HalfOpen { out, succeeded } if permit.probe => {
                *out = out.saturating_sub(1);
                if failed {
                    inner.state = State::Open { until: now + cooldown };
                    inner.opened += 1;
                } else {
                    *succeeded += 1;
                    if *succeeded >= self.cfg.half_open_probes.max(1) {
                        inner.state = State::Closed;
                        inner.recent.clear();
                        inner.consecutive_failures = 0;
                    }
                }
            }
            // A call admitted while closed that ends after the breaker
            // opened or went half-open changes nothing but the counts.
            State::HalfOpen { .. } | State::Open { .. } => {}
            State::Closed => {
                if failed && self.trips(&inner) {
                    inner.state = State::Open { until: now + cooldown };
                    inner.opened += 1;
                }
            }
        }
    }

    fn trips(&self, inner: &Inner) -> bool {
        let c = &self.cfg;
        if c.failure_threshold > 0 && inner.consecutive_failures >= c.failure_threshold {
            return true;
        }
        let calls = inner.recent.len() as u32;
        let failures = inner.recent.iter().filter(|(_, f)| *f).count() as u32;
        c.error_rate > 0.0 && calls >= c.min_calls.max(1) && f64::from(failures) >= c.error_rate * f64::from(calls)
    }

    pub fn view(&self, now: Instant) -> BreakerView {
        let inner = self.lock();
        let (state, retry_after) = match inner.state {
            State::Closed => (BreakerState::Closed, None),
            // Past its cooldown it is half-open in all but name: the next
            // call is a probe.
            State::Open { until } if now >= until => (BreakerState::HalfOpen, None),
            State::Open { until } => (BreakerState::Open, Some(until - now)),
            State::HalfOpen { .. } => (BreakerState::HalfOpen, None),
        };
        let window_calls = inner.recent.iter().filter(|(at, _)| now.saturating_duration_since(*at) <= self.cfg.window);
        let (calls, failures) = window_calls.fold((0, 0), |(c, f), (_, failed)| (c + 1, f + u32::from(*failed)));
        BreakerView {
            state,
            consecutive_failures: inner.consecutive_failures,
            window_calls: calls,
            window_failures: failures,
            opened: inner.opened,
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            error_rate: 0.0,
            min_calls: 1,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
            half_open_probes: 2,
        }
    }

    fn call(b: &Breaker, now: Instant, outcome: Outcome) -> Result<(), Refused> {
        let p = b.admit(now)?;
        b.record(p, now, outcome);
        Ok(())
    }

    #[test]
    fn consecutive_failures_open_it_and_it_fails_fast_until_the_cooldown() {
        let t0 = Instant::now();
        let b = Breaker::new(cfg());
        call(&b, t0, Outcome::Failed).unwrap();
        call(&b, t0, Outcome::Failed).unwrap();
        // A success in between resets the count: the control case.
        call(&b, t0, Outcome::Healthy).unwrap();
        call(&b, t0, Outcome::Failed).unwrap();
        call(&b, t0, Outcome::Failed).unwrap();
        assert_eq!(b.view(t0).state, BreakerState::Closed);
        call(&b, t0, Outcome::Failed).unwrap();
        assert_eq!(b.view(t0).state, BreakerState::Open);
        let refused = b.admit(t0 + Duration::from_secs(2)).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(3));
        assert_eq!(b.view(t0).opened, 1);
    }

    #[test]
    fn half_open_lets_a_few_probes_through_and_closes_on_their_success() {
        let t0 = Instant::now();
        let b = Breaker::new(cfg());
        for _ in 0..3 {
            call(&b, t0, Outcome::Failed).unwrap();
        }
        let t1 = t0 + Duration::from_secs(5);
        let p1 = b.admit(t1).unwrap();
        let p2 = b.admit(t1).unwrap();
        assert!(b.admit(t1).is_err(), "only two probes at once");
        assert_eq!(b.view(t1).state, BreakerState::HalfOpen);
        b.record(p1, t1, Outcome::Healthy);
        assert_eq!(b.view(t1).state, BreakerState::HalfOpen, "one success of two");
        b.record(p2, t1, Outcome::Healthy);
        assert_eq!(b.view(t1).state, BreakerState::Closed);
        call(&b, t1, Outcome::Healthy).unwrap();
    }

    #[test]
    fn a_failed_probe_opens_it_again_for_a_whole_cooldown() {
        let t0 = Instant::now();
        let b = Breaker::new(cfg());
        for _ in 0..3 {
            call(&b, t0, Outcome::Failed).unwrap();
        }
        let t1 = t0 + Duration::from_secs(6);
        let p = b.admit(t1).unwrap();
        b.record(p, t1, Outcome::Failed);
        assert_eq!(b.view(t1).state, BreakerState::Open);
        assert_eq!(b.admit(t1 + Duration::from_secs(1)).unwrap_err().retry_after, Duration::from_secs(4));
        assert_eq!(b.view(t1).opened, 2);
    }

    #[test]
    fn the_error_rate_opens_it_only_over_enough_calls_in_the_window() {
        let t0 = Instant::now();
        let b = Breaker::new(BreakerConfig { failure_threshold: 0, error_rate: 0.5, min_calls: 10, ..cfg() });
        // Alternating: never two failures in a row, half of them failed.
        for i in 0..9 {
            let o = if i % 2 == 0 { Outcome::Failed } else { Outcome::Healthy };
            call(&b, t0, o).unwrap();
        }
        assert_eq!(b.view(t0).state, BreakerState::Closed, "9 calls are fewer than min_calls");
        call(&b, t0, Outcome::Healthy).unwrap();
        assert_eq!(b.view(t0).state, BreakerState::Closed, "a success never opens it");
        call(&b, t0, Outcome::Failed).unwrap();
        assert_eq!(b.view(t0).state, BreakerState::Open, "6 of 11 failed");
    }

    #[test]
    fn old_calls_leave_the_window() {
        let t0 = Instant::now();
        let b = Breaker::new(BreakerConfig { failure_threshold: 0, error_rate: 0.5, min_calls: 4, ..cfg() });
        for _ in 0..3 {
            call(&b, t0, Outcome::Failed).unwrap();
        }
        // 11 s later the three failures are out of the 10 s window.
        let t1 = t0 + Duration::from_secs(11);
        for _ in 0..3 {
            call(&b, t1, Outcome::Healthy).unwrap();
        }
        call(&b, t1, Outcome::Failed).unwrap();
        let v = b.view(t1);
        assert_eq!((v.state, v.window_calls, v.window_failures), (BreakerState::Closed, 4, 1));
    }

    #[test]
    fn a_call_that_ends_after_the_breaker_opened_is_no_probe() {
        let t0 = Instant::now();
        let b = Breaker::new(cfg());
        let slow = b.admit(t0).unwrap();
        for _ in 0..3 {
            call(&b, t0, Outcome::Failed).unwrap();
        }
        b.record(slow, t0, Outcome::Healthy);
        assert_eq!(b.view(t0).state, BreakerState::Open, "a late success of a closed-state call does not close it");
    }
}
