//! The circuit breaker in front of the shared store. After a run of failed
//! calls it opens: requests skip the store at once (and take the route's
//! fallback) instead of each waiting for a timeout. Once the open period
//! has passed, one request probes the store; success closes the circuit,
//! failure opens it again for twice as long, up to a maximum.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::ratelimit::config::CircuitConfig;

/// The action a request takes with the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Call the store.
    Call,
    /// Call the store as the probe of an open circuit.
    Probe,
    /// Skip the store; it is expected back in the given time.
    Skip(Duration),
}

/// A change of state worth a log line and a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened,
    Closed,
}

pub struct Circuit {
    config: CircuitConfig,
    state: Mutex<State>,
}

struct State {
    failures: u32,
    open_until: Option<Instant>,
    open_for: Duration,
    probing: bool,
}

impl Circuit {
    pub fn new(config: CircuitConfig) -> Self {
        Circuit {
            config,
            state: Mutex::new(State {
                failures: 0,
                open_until: None,
                open_for: config.open_for,
                probing: false,
            }),
        }
    }

    pub fn admit(&self, now: Instant) -> Admit {
        let mut state = self.lock();
        let Some(until) = state.open_until else {
            return Admit::Call;
        };
        if now < until {
            return Admit::Skip(until - now);
        }
        if state.probing {
            return Admit::Skip(state.open_for);
        }
        state.probing = true;
        Admit::Probe
    }

    pub fn is_open(&self) -> bool {
        self.lock().open_until.is_some()
    }

    pub fn success(&self) -> Option<Transition> {
        let mut state = self.lock();
        state.failures = 0;
        state.probing = false;
        state.open_for = self.config.open_for;
        state.open_until.take().map(|_| Transition::Closed)
    }

    pub fn failure(&self, now: Instant) -> Option<Transition> {
        let mut state = self.lock();
        state.failures = state.failures.saturating_add(1);
        if state.probing {
            state.probing = false;
            state.open_for = (state.open_for * 2).min(self.config.max_open_for);
            state.open_until = Some(now + state.open_for);
            return None;
        }
        if state.open_until.is_none() && state.failures >= self.config.failures {
            state.open_until = Some(now + state.open_for);
            return Some(Transition::Opened);
        }
        None
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn circuit() -> Circuit {
        Circuit::new(CircuitConfig {
            failures: 2,
            open_for: 100 * MS,
            max_open_for: 300 * MS,
        })
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let circuit = circuit();
        let start = Instant::now();

        assert_eq!(circuit.failure(start), None);
        assert_eq!(circuit.success(), None, "a success resets the run");
        assert_eq!(circuit.failure(start), None);
        assert_eq!(circuit.failure(start), Some(Transition::Opened));

        assert_eq!(circuit.admit(start + 40 * MS), Admit::Skip(60 * MS));
    }

    #[test]
    fn one_probe_at_a_time_and_backoff_doubles_to_the_maximum() {
        let circuit = circuit();
        let start = Instant::now();
        circuit.failure(start);
        circuit.failure(start);

        let mut now = start + 100 * MS;
        for expected_open_for in [200, 300, 300] {
            assert_eq!(circuit.admit(now), Admit::Probe);
            assert!(matches!(circuit.admit(now), Admit::Skip(_)), "second probe");
            assert_eq!(circuit.failure(now), None);
            assert_eq!(
                circuit.admit(now),
                Admit::Skip(expected_open_for * MS),
                "open period after a failed probe"
            );
            now += expected_open_for * MS;
        }

        assert_eq!(circuit.admit(now), Admit::Probe);
        assert_eq!(circuit.success(), Some(Transition::Closed));
        assert_eq!(circuit.admit(now), Admit::Call);
        assert!(!circuit.is_open());
    }
}
