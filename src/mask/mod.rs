//! Response masking engine: rewrites personal and payment data in response
//! bodies before they leave the gateway. Fields are selected by path
//! ([`path`]) or found by detectors anywhere in the body ([`detect`]), then
//! rewritten in a masking style ([`style`]).
//!
//! [`Masker`] only transforms parsed JSON and text. [`response`] reads,
//! decompresses and size-limits an upstream body, runs the masker on it
//! and fixes the headers; [`config`] reads the rules of each route.

pub mod config;
pub mod detect;
pub mod encoding;
pub mod path;
pub mod response;
mod stream;
pub mod style;

use std::borrow::Cow;
use std::ops::Range;

use serde_json::Value;

pub use crate::mask::detect::{Detector, Pattern};
pub use crate::mask::path::{FieldPath, PathError};
pub use crate::mask::style::{MaskStyle, PseudonymKey, PseudonymKeyError, REDACTED};

use crate::mask::path::ChildKey;

/// Masking rules of one route.
#[derive(Clone, Debug, Default)]
pub struct MaskRules {
    /// Fields masked whole, wherever their content. When several paths
    /// select the same value, the first rule in this list sets the style.
    /// A path that selects an object or array masks every string, number
    /// and boolean inside it and keeps keys and nulls.
    pub fields: Vec<FieldRule>,
    /// Detectors run over every string and number that no field rule
    /// selected, and over text bodies. Where matches overlap the longer one
    /// wins, then the earlier rule.
    pub detectors: Vec<DetectorRule>,
}

/// Field path and the style its values are masked in.
#[derive(Clone, Debug)]
pub struct FieldRule {
    pub path: FieldPath,
    pub style: MaskStyle,
}

/// Detector and the style its matches are masked in.
#[derive(Clone, Debug)]
pub struct DetectorRule {
    pub detector: Detector,
    pub style: MaskStyle,
}

/// Caller-specific inputs of one masking run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Context<'a> {
    /// Key of the tenant, for the pseudonym style. Without it pseudonym
    /// rules redact.
    pub pseudonym_key: Option<&'a PseudonymKey>,
    /// Whether the caller has the route's unmask scope, in which case
    /// nothing is masked.
    pub unmask: bool,
}

/// Masked text body and the number of matches that were rewritten.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskedText<'a> {
    pub text: Cow<'a, str>,
    pub count: usize,
}

/// Masking engine built once per route from its rules.
#[derive(Clone, Debug)]
pub struct Masker {
    rules: MaskRules,
}

/// Progress of every field rule at one value, as one word per rule. Bit `s`
/// of word `r` is set when rule `r` has matched its first `s` segments there.
/// A rule can be at several depths of its path at once, because a
/// descendant segment also stays where it is. Paths have at most
/// [`path::MAX_SEGMENTS`] segments, so every depth fits in the word.
type States = smallvec::SmallVec<[u64; 4]>;

impl Masker {
    pub fn new(rules: MaskRules) -> Masker {
        Masker { rules }
    }

    /// Masks `value` in place and returns how many strings, numbers and
    /// booleans were rewritten. A number with a detector match becomes a
    /// string holding the masked text.
    pub fn mask_json(&self, value: &mut Value, context: &Context) -> usize {
        if context.unmask {
            return 0;
        }

        self.mask_node(value, &self.root_states(), context)
    }

    /// Masks the JSON document in `json` in one pass, without building a
    /// tree, and returns the masked bytes and how many values were
    /// rewritten; `None` when nothing was. Member order is kept. Fails when
    /// `json` is not exactly one JSON value.
    pub fn mask_json_bytes(
        &self,
        json: &[u8],
        context: &Context,
    ) -> Result<Option<(Vec<u8>, usize)>, serde_json::Error> {
        if context.unmask {
            serde_json::from_slice::<serde::de::IgnoredAny>(json)?;
            return Ok(None);
        }
        stream::mask_json_bytes(self, json, context)
    }

    fn root_states(&self) -> States {
        smallvec::smallvec![1; self.rules.fields.len()]
    }

    /// Masks detector matches in a text body and counts them.
    pub fn mask_text<'t>(&self, text: &'t str, context: &Context) -> MaskedText<'t> {
        if context.unmask {
            return MaskedText {
                text: Cow::Borrowed(text),
                count: 0,
            };
        }

        match self.mask_detected(text, context) {
            Some((masked, count)) => MaskedText {
                text: Cow::Owned(masked),
                count,
            },
            None => MaskedText {
                text: Cow::Borrowed(text),
                count: 0,
            },
        }
    }

    fn mask_node(&self, value: &mut Value, states: &[u64], context: &Context) -> usize {
        if let Some(style) = self.completed_style(states) {
            return mask_whole(value, style, context);
        }

        match value {
            // NOTE: member names are never scanned by detectors, so an object
            // keyed by email address or card number leaks its keys.
            Value::Object(members) => members
                .iter_mut()
                .map(|(name, child)| {
                    let next = self.advance(states, ChildKey::Name(name));
                    self.mask_node(child, &next, context)
                })
                .sum(),
            Value::Array(items) => items
                .iter_mut()
                .enumerate()
                .map(|(index, child)| {
                    let next = self.advance(states, ChildKey::Index(index));
                    self.mask_node(child, &next, context)
                })
                .sum(),
            Value::String(text) => match self.mask_detected(text, context) {
                Some((masked, _)) => {
                    *text = masked;
                    1
                }
                None => 0,
            },
            Value::Number(number) => match self.mask_detected(&number.to_string(), context) {
                Some((masked, _)) => {
                    *value = Value::String(masked);
                    1
                }
                None => 0,
            },
            Value::Bool(_) | Value::Null => 0,
        }
    }

    /// Returns the style of the first field rule whose whole path matched.
    fn completed_style(&self, states: &[u64]) -> Option<MaskStyle> {
        self.rules
            .fields
            .iter()
            .zip(states)
            .find(|(rule, depths)| *depths >> rule.path.segments().len() & 1 == 1)
            .map(|(rule, _)| rule.style)
    }

    /// Returns the style of the first field rule whose whole path the
    /// child under `key` completes: the style of `advance(states, key)`,
    /// without computing those states.
    fn completed_style_of_child(&self, states: &[u64], key: ChildKey<'_>) -> Option<MaskStyle> {
        self.rules
            .fields
            .iter()
            .zip(states)
            .find(|(rule, depths)| {
                // A path without segments selects the root only.
                let segments = rule.path.segments();
                let Some(last) = segments.len().checked_sub(1) else {
                    return false;
                };
                *depths >> last & 1 == 1 && segments[last].selector.selects(key)
            })
            .map(|(rule, _)| rule.style)
    }

    /// Computes the path states of the child under `key`. A descendant
    /// segment stays active below the child as well, so it can match at any
    /// depth.
    fn advance(&self, states: &[u64], key: ChildKey<'_>) -> States {
        self.rules
            .fields
            .iter()
            .zip(states)
            .map(|(rule, &depths)| advance_rule(rule.path.segments(), depths, key))
            .collect()
    }

    /// Rewrites every detector match in `text`, or returns `None` when
    /// nothing matched.
    fn mask_detected(&self, text: &str, context: &Context) -> Option<(String, usize)> {
        self.mask_detected_except(text, context, 0)
    }

    /// Returns the bit set of the detectors that cannot match any string of
    /// the JSON body `json`, which the body's strings then skip. Only a
    /// body without escapes qualifies, because only there is every decoded
    /// string a substring of the body.
    fn detectors_absent_from(&self, json: &[u8]) -> u64 {
        let has_pattern = self
            .rules
            .detectors
            .iter()
            .any(|rule| matches!(rule.detector, Detector::Pattern(_)));
        if !has_pattern || json.contains(&b'\\') {
            return 0;
        }
        let mut absent = 0;
        for (index, rule) in self.rules.detectors.iter().enumerate().take(64) {
            if rule.detector.absent_from(json) {
                absent |= 1 << index;
            }
        }
        absent
    }

    /// Masks like [`Masker::mask_detected`], without the detectors whose
    /// bit is set in `skip`.
    fn mask_detected_except(
        &self,
        text: &str,
        context: &Context,
        skip: u64,
    ) -> Option<(String, usize)> {
        let matches = self.find_matches(text, skip);
        if matches.is_empty() {
            return None;
        }

        let mut masked = String::with_capacity(text.len());
        let mut copied = 0;
        for (span, rule) in &matches {
            let rule = &self.rules.detectors[*rule];
            masked.push_str(&text[copied..span.start]);
            masked.push_str(&style::apply(
                rule.style,
                &text[span.clone()],
                Some(&rule.detector),
                context.pseudonym_key,
            ));
            copied = span.end;
        }
        masked.push_str(&text[copied..]);

        Some((masked, matches.len()))
    }

    /// Finds the matches of every detector not in `skip`, sorted and
    /// without overlaps.
    fn find_matches(&self, text: &str, skip: u64) -> Vec<(Range<usize>, usize)> {
        let mut matches: Vec<(Range<usize>, usize)> = Vec::new();
        let shape = detect::Shape::of(text);
        for (rule, detector_rule) in self.rules.detectors.iter().enumerate() {
            if rule < 64 && skip & (1 << rule) != 0 {
                continue;
            }
            for span in detector_rule.detector.find_with(text, &shape) {
                matches.push((span, rule));
            }
        }

        matches.sort_by(|(a, rule_a), (b, rule_b)| {
            a.start
                .cmp(&b.start)
                .then(b.len().cmp(&a.len()))
                .then(rule_a.cmp(rule_b))
        });

        let mut kept: Vec<(Range<usize>, usize)> = Vec::with_capacity(matches.len());
        for (span, rule) in matches {
            let overlaps = kept.last().is_some_and(|(last, _)| span.start < last.end);
            if !overlaps {
                kept.push((span, rule));
            }
        }
        kept
    }
}

/// Advances one rule's depths (see [`States`]) from a value to its child
/// under `key`. A completed path has no next segment and ends there.
fn advance_rule(segments: &[path::Segment], depths: u64, key: ChildKey<'_>) -> u64 {
    let mut next = 0;
    let mut pending = depths;
    while pending != 0 {
        let depth = pending.trailing_zeros() as usize;
        pending &= pending - 1;
        let Some(segment) = segments.get(depth) else {
            continue;
        };
        if segment.selector.selects(key) {
            next |= 1 << (depth + 1);
        }
        if segment.descendant {
            next |= 1 << depth;
        }
    }
    next
}

/// Masks a value selected by a field rule: scalars whole, containers leaf
/// by leaf.
fn mask_whole(value: &mut Value, style: MaskStyle, context: &Context) -> usize {
    let text = match value {
        Value::Object(members) => {
            return members
                .values_mut()
                .map(|child| mask_whole(child, style, context))
                .sum();
        }
        Value::Array(items) => {
            return items
                .iter_mut()
                .map(|child| mask_whole(child, style, context))
                .sum();
        }
        Value::Null => return 0,
        Value::String(text) => std::mem::take(text),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
    };

    *value = Value::String(style::apply(style, &text, None, context.pseudonym_key));
    1
}

#[cfg(test)]
mod tests;
