//! Reuses a policy decision for an identical request for a short time, so
//! that repeated requests skip the Rego evaluation.
//!
//! A decision is reused only for the same bundle version, rule and tenant
//! and the same values of the input parts the rule reads. The caller names
//! those parts ([`DecisionKey::new`]); naming too few serves a decision
//! made for a different request, so the default is the whole input. A rule
//! that reads the clock (`time.now_ns()`) can see its decision reused up to
//! the TTL after it would have changed, so keep the TTL short for such
//! rules. Errors are never cached.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::digest::{digest, SHA256};
use serde_json::Value;

use super::policy::{Decision, POLICY_ERROR};

/// The identity of a cacheable evaluation: bundle version, rule, tenant and
/// input digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DecisionKey {
    version: String,
    rule: String,
    tenant: Option<String>,
    /// SHA-256 of the canonical JSON of the input parts the rule reads.
    input: [u8; 32],
}

impl DecisionKey {
    /// Builds the key of one evaluation. `input_paths` are dotted paths into
    /// the input (`token.sub`, `route.params.id`, `scopes`); `None` covers
    /// the whole input. A path that is absent from the input is hashed as
    /// absent, which differs from a present `null`.
    pub fn new(
        version: &str,
        rule: &str,
        tenant: Option<&str>,
        input: &Value,
        input_paths: Option<&[&str]>,
    ) -> DecisionKey {
        let mut canonical = Vec::new();
        match input_paths {
            None => write_canonical(input, &mut canonical),
            Some(paths) => {
                // An object of path to value, so paths are sorted and an
                // absent path is simply left out.
                let selected: serde_json::Map<String, Value> = paths
                    .iter()
                    .filter_map(|path| {
                        lookup(input, path).map(|value| (path.to_string(), value.clone()))
                    })
                    .collect();
                write_canonical(&Value::Object(selected), &mut canonical);
            }
        }

        let mut hashed = [0u8; 32];
        hashed.copy_from_slice(digest(&SHA256, &canonical).as_ref());
        DecisionKey {
            version: version.to_string(),
            rule: rule.to_string(),
            tenant: tenant.map(str::to_string),
            input: hashed,
        }
    }
}

/// Follows a dotted path; a segment indexes an array when it is a number.
fn lookup<'a>(input: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(input, |node, segment| match node {
        Value::Object(members) => members.get(segment),
        Value::Array(items) => segment
            .parse::<usize>()
            .ok()
            .and_then(|index| items.get(index)),
        _ => None,
    })
}

/// JSON with object keys sorted at every level and no whitespace, so equal
/// documents hash equally whatever their key order.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(members) => {
            let mut keys: Vec<&String> = members.keys().collect();
            keys.sort();
            out.push(b'{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                write_canonical(&members[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    // serde_json fails only on I/O errors and non-string map keys, and
    // neither can happen for a scalar written to a Vec.
    let _ = serde_json::to_writer(out, value);
}

struct Entry {
    decision: Decision,
    expires: Instant,
    /// Matches the insertion record in `State::order` that owns the entry.
    generation: u64,
}

#[derive(Default)]
struct State {
    version: Option<String>,
    entries: HashMap<DecisionKey, Entry>,
    /// Insertion order, oldest first. Every entry has a record; a record
    /// whose generation no longer matches its entry is stale.
    order: VecDeque<(DecisionKey, u64)>,
    next_generation: u64,
}

impl State {
    fn switch_version(&mut self, version: &str) {
        if self.version.as_deref() != Some(version) {
            self.entries.clear();
            self.order.clear();
            self.version = Some(version.to_string());
        }
    }

    fn is_current(&self, key: &DecisionKey, generation: u64) -> bool {
        self.entries
            .get(key)
            .is_some_and(|entry| entry.generation == generation)
    }

    /// Drops stale records and expired entries from the front. All entries
    /// share one TTL, so expired entries are always the oldest.
    fn drop_expired(&mut self, now: Instant) {
        while let Some((key, generation)) = self.order.front() {
            let keep = self
                .entries
                .get(key)
                .is_some_and(|entry| entry.generation == *generation && entry.expires > now);
            if keep {
                return;
            }
            if self.is_current(key, *generation) {
                self.entries.remove(key);
            }
            self.order.pop_front();
        }
    }

    /// Removes the oldest entry; returns false when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((key, generation)) = self.order.pop_front() {
            if self.is_current(&key, generation) {
                self.entries.remove(&key);
                return true;
            }
        }
        false
    }
}

/// A bounded, TTL-limited cache of decisions, safe to share between
/// threads. It empties itself on the first key with a new bundle version.
pub struct DecisionCache {
    ttl: Duration,
    max_entries: usize,
    state: Mutex<State>,
}

impl DecisionCache {
    /// Creates a cache keeping each decision for `ttl` and at most `max_entries`
    /// decisions, evicting the oldest first. A zero TTL or size caches
    /// nothing.
    pub fn new(ttl: Duration, max_entries: usize) -> DecisionCache {
        DecisionCache {
            ttl,
            max_entries,
            state: Mutex::new(State::default()),
        }
    }

    /// Returns the decision cached for `key` if it has not expired at `now`.
    pub fn get(&self, key: &DecisionKey, now: Instant) -> Option<Decision> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.switch_version(&key.version);
        let entry = state.entries.get(key)?;
        if entry.expires <= now {
            state.entries.remove(key);
            return None;
        }
        Some(entry.decision.clone())
    }

    /// Caches `decision` for `key` from `now` on, unless it is a
    /// `policy_error`.
    pub fn insert(&self, key: DecisionKey, decision: &Decision, now: Instant) {
        if decision.reason == POLICY_ERROR || self.ttl.is_zero() || self.max_entries == 0 {
            return;
        }
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.switch_version(&key.version);
        state.drop_expired(now);
        // A replaced entry gets a new record at the back, which keeps the
        // records in expiry order; its old record turns stale.
        state.entries.remove(&key);
        while state.entries.len() >= self.max_entries {
            if !state.evict_oldest() {
                break;
            }
        }

        let generation = state.next_generation;
        state.next_generation += 1;
        state.order.push_back((key.clone(), generation));
        state.entries.insert(
            key,
            Entry {
                decision: decision.clone(),
                expires: now + self.ttl,
                generation,
            },
        );
    }

    /// Returns the number of cached decisions, expired ones included until
    /// they are dropped.
    pub fn len(&self) -> usize {
        let state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
