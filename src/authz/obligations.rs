//! Response obligations of a tier-2 decision: the `obligations` member of
//! a rule's object value, read into field rules that the mask stage applies
//! to the upstream response.
//!
//! ```json
//! {"allow": true, "obligations": {"mask": ["email", "$.card.number",
//!   {"path": "ssn", "style": "pseudonym"}]}}
//! ```
//!
//! `mask` lists field names (every member of that name at any depth, as
//! `$..name`), field paths starting with `$` (see [`FieldPath`]) and objects
//! `{"path": name or path, "style": "redact" | "pci" | "pseudonym"}`. The
//! default style is `redact`. Anything else fails the whole decision, so a
//! policy error never lets a response out unmasked. Error messages name the
//! position of the problem and never the values, which a rule may have
//! copied from the input.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::mask::config::RouteMasking;
use crate::mask::{FieldPath, FieldRule, MaskRules, MaskStyle};

/// Maximum entries of `obligations.mask`. Every rule is tried on every
/// member of a response, so a runaway list would slow every response down.
pub const MAX_MASK_FIELDS: usize = 1024;

/// Maximum distinct obligation values kept parsed by an
/// [`ObligationCache`]. The cache starts over when it is full.
pub const MAX_CACHED_OBLIGATIONS: usize = 256;

const STYLES: &str = "redact, pci or pseudonym";

/// The obligations of one decision, parsed.
#[derive(Debug)]
pub struct Obligations {
    /// Fields to mask, in the order the rule listed them.
    pub mask: Vec<FieldRule>,
    /// Maskings built from `mask` and a route's own rules, keyed by route id
    /// and whether the caller has the route's unmask scope.
    maskings: Mutex<HashMap<(String, bool), Arc<RouteMasking>>>,
}

/// Problem that makes an `obligations` value unusable. `index` is the
/// position in `obligations.mask`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObligationError {
    NotAnObject {
        found: &'static str,
    },
    UnknownMember,
    MaskNotAList {
        found: &'static str,
    },
    TooManyFields {
        count: usize,
    },
    InvalidEntry {
        index: usize,
        found: &'static str,
    },
    UnknownEntryMember {
        index: usize,
    },
    MissingPath {
        index: usize,
    },
    PathNotAString {
        index: usize,
        found: &'static str,
    },
    EmptyName {
        index: usize,
    },
    InvalidPath {
        index: usize,
        offset: usize,
        expected: &'static str,
    },
    InvalidStyle {
        index: usize,
    },
}

impl fmt::Display for ObligationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObligationError::NotAnObject { found } => {
                write!(f, "obligations: expected an object, found {found}")
            }
            ObligationError::UnknownMember => {
                write!(f, "obligations: unknown member, expected only `mask`")
            }
            ObligationError::MaskNotAList { found } => {
                write!(f, "obligations.mask: expected a list, found {found}")
            }
            ObligationError::TooManyFields { count } => write!(
                f,
                "obligations.mask: {count} entries, expected at most {MAX_MASK_FIELDS}"
            ),
            ObligationError::InvalidEntry { index, found } => write!(
                f,
                "obligations.mask[{index}]: expected a field name, a path or an object, found {found}"
            ),
            ObligationError::UnknownEntryMember { index } => write!(
                f,
                "obligations.mask[{index}]: unknown member, expected only `path` and `style`"
            ),
            ObligationError::MissingPath { index } => {
                write!(f, "obligations.mask[{index}].path: missing")
            }
            ObligationError::PathNotAString { index, found } => write!(
                f,
                "obligations.mask[{index}].path: expected a string, found {found}"
            ),
            ObligationError::EmptyName { index } => {
                write!(f, "obligations.mask[{index}]: empty field name")
            }
            ObligationError::InvalidPath {
                index,
                offset,
                expected,
            } => write!(
                f,
                "obligations.mask[{index}]: invalid field path, expected {expected} at byte {offset}"
            ),
            ObligationError::InvalidStyle { index } => write!(
                f,
                "obligations.mask[{index}].style: expected {STYLES}"
            ),
        }
    }
}

impl std::error::Error for ObligationError {}

impl Obligations {
    /// Parses a decision's `obligations` member (see the module
    /// documentation).
    pub fn parse(value: &Value) -> Result<Obligations, ObligationError> {
        let Value::Object(members) = value else {
            return Err(ObligationError::NotAnObject { found: kind(value) });
        };
        if members.keys().any(|key| key != "mask") {
            return Err(ObligationError::UnknownMember);
        }

        let mask = match members.get("mask") {
            None => Vec::new(),
            Some(Value::Array(entries)) => parse_mask(entries)?,
            Some(other) => return Err(ObligationError::MaskNotAList { found: kind(other) }),
        };
        Ok(Obligations {
            mask,
            maskings: Mutex::new(HashMap::new()),
        })
    }

    /// Returns whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.mask.is_empty()
    }

    /// Returns whether a field is masked in the pseudonym style, which
    /// needs a pseudonym key.
    pub fn needs_pseudonym_key(&self) -> bool {
        self.mask
            .iter()
            .any(|rule| rule.style == MaskStyle::Pseudonym)
    }

    /// Returns the masking of one response of route `route_id`, built on
    /// first use. These fields come first, so their style wins where a
    /// route rule selects the same value. The route's own fields and
    /// detectors follow unless the caller has the route's unmask scope
    /// (`unmask`). The route's body limit applies (1 MiB without a route
    /// `mask` section). A response that cannot be masked is blocked,
    /// whatever the route's `on_error`.
    pub fn masking(
        &self,
        route_id: &str,
        route: Option<&RouteMasking>,
        unmask: bool,
    ) -> Arc<RouteMasking> {
        let mut maskings = self
            .maskings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (route_id.to_owned(), unmask);
        maskings
            .entry(key)
            .or_insert_with(|| Arc::new(self.build_masking(route, unmask)))
            .clone()
    }

    fn build_masking(&self, route: Option<&RouteMasking>, unmask: bool) -> RouteMasking {
        let mut rules = MaskRules {
            fields: self.mask.clone(),
            detectors: Vec::new(),
        };
        if let Some(route) = route.filter(|_| !unmask) {
            rules.fields.extend(route.rules().fields.iter().cloned());
            rules.detectors = route.rules().detectors.clone();
        }

        let mut masking = RouteMasking::new(rules);
        if let Some(route) = route {
            masking.max_body_bytes = route.max_body_bytes;
        }
        masking
    }
}

fn parse_mask(entries: &[Value]) -> Result<Vec<FieldRule>, ObligationError> {
    if entries.len() > MAX_MASK_FIELDS {
        return Err(ObligationError::TooManyFields {
            count: entries.len(),
        });
    }
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| parse_entry(index, entry))
        .collect()
}

fn parse_entry(index: usize, entry: &Value) -> Result<FieldRule, ObligationError> {
    match entry {
        Value::String(source) => Ok(FieldRule {
            path: parse_path(index, source)?,
            style: MaskStyle::Redact,
        }),
        Value::Object(members) => parse_entry_object(index, members),
        other => Err(ObligationError::InvalidEntry {
            index,
            found: kind(other),
        }),
    }
}

fn parse_entry_object(
    index: usize,
    members: &Map<String, Value>,
) -> Result<FieldRule, ObligationError> {
    if members.keys().any(|key| key != "path" && key != "style") {
        return Err(ObligationError::UnknownEntryMember { index });
    }

    let source = match members.get("path") {
        None => return Err(ObligationError::MissingPath { index }),
        Some(Value::String(source)) => source,
        Some(other) => {
            return Err(ObligationError::PathNotAString {
                index,
                found: kind(other),
            })
        }
    };
    let style = match members.get("style").map(Value::as_str) {
        None => MaskStyle::Redact,
        Some(Some("redact")) => MaskStyle::Redact,
        Some(Some("pci")) => MaskStyle::Pci,
        Some(Some("pseudonym")) => MaskStyle::Pseudonym,
        Some(_) => return Err(ObligationError::InvalidStyle { index }),
    };
    Ok(FieldRule {
        path: parse_path(index, source)?,
        style,
    })
}

/// Reads a path starting with `$`, or else a field name selected at any
/// depth (`email` becomes `$..['email']`).
fn parse_path(index: usize, source: &str) -> Result<FieldPath, ObligationError> {
    if source.is_empty() {
        return Err(ObligationError::EmptyName { index });
    }
    let parsed = if source.starts_with('$') {
        FieldPath::parse(source)
    } else {
        let escaped = source.replace('\\', "\\\\").replace('\'', "\\'");
        FieldPath::parse(&format!("$..['{escaped}']"))
    };
    parsed.map_err(|error| ObligationError::InvalidPath {
        index,
        offset: error.offset,
        expected: error.expected,
    })
}

/// Returns the JSON type of `value`, for messages that must not show it.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Parsed obligations per distinct value, so that identical decisions
/// (common with the decision cache) parse and build their masking once.
/// One cache belongs to one configuration generation.
#[derive(Debug, Default)]
pub struct ObligationCache {
    entries: Mutex<HashMap<String, Arc<Obligations>>>,
}

impl ObligationCache {
    /// Returns the parsed obligations of `value`, parsing it on first use.
    /// Errors are not cached.
    pub fn get_or_parse(&self, value: &Value) -> Result<Arc<Obligations>, ObligationError> {
        // Equal values give equal text unless serde_json keeps member order
        // (its `preserve_order` feature), where the worst case is a miss.
        let key = value.to_string();
        if let Some(found) = self.lock().get(&key) {
            return Ok(found.clone());
        }

        let parsed = Arc::new(Obligations::parse(value)?);
        let mut entries = self.lock();
        if entries.len() >= MAX_CACHED_OBLIGATIONS {
            entries.clear();
        }
        entries.insert(key, parsed.clone());
        Ok(parsed)
    }

    /// Returns how many distinct values are cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Returns whether no value is cached.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Obligations>>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests;
