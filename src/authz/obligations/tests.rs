use serde_json::json;

use super::*;
use crate::mask::{Context, Detector, DetectorRule, REDACTED};

fn paths(obligations: &Obligations) -> Vec<(&str, MaskStyle)> {
    obligations
        .mask
        .iter()
        .map(|rule| (rule.path.as_str(), rule.style))
        .collect()
}

/// A description, an obligations value and the paths and styles it parses to.
type ValidCase = (&'static str, Value, &'static [(&'static str, MaskStyle)]);

#[test]
fn valid_obligations_parse() {
    use MaskStyle::*;
    let cases: &[ValidCase] = &[
        ("no mask member", json!({}), &[]),
        ("empty list", json!({"mask": []}), &[]),
        (
            "field name at any depth",
            json!({"mask": ["email"]}),
            &[("$..['email']", Redact)],
        ),
        (
            "path kept as written",
            json!({"mask": ["$[*].card.number"]}),
            &[("$[*].card.number", Redact)],
        ),
        (
            "object without style redacts",
            json!({"mask": [{"path": "phone"}]}),
            &[("$..['phone']", Redact)],
        ),
        (
            "object with each style",
            json!({"mask": [
                {"path": "$.a", "style": "redact"},
                {"path": "$.b", "style": "pci"},
                {"path": "c", "style": "pseudonym"}
            ]}),
            &[("$.a", Redact), ("$.b", Pci), ("$..['c']", Pseudonym)],
        ),
        (
            "name with quote and backslash is escaped",
            json!({"mask": ["it's\\x"]}),
            &[("$..['it\\'s\\\\x']", Redact)],
        ),
        (
            "name with space and dot",
            json!({"mask": ["home address.line"]}),
            &[("$..['home address.line']", Redact)],
        ),
        (
            "order is kept",
            json!({"mask": ["b", "a"]}),
            &[("$..['b']", Redact), ("$..['a']", Redact)],
        ),
    ];
    for (description, value, expected) in cases {
        let parsed = Obligations::parse(value).unwrap_or_else(|e| panic!("{description}: {e}"));
        assert_eq!(&paths(&parsed), expected, "{description}");
    }
}

#[test]
fn invalid_obligations_rejected() {
    use ObligationError::*;
    let too_many: Vec<Value> = (0..=MAX_MASK_FIELDS).map(|_| json!("a")).collect();
    let cases = [
        ("null", json!(null), NotAnObject { found: "null" }),
        ("list", json!(["email"]), NotAnObject { found: "a list" }),
        (
            "unknown member",
            json!({"mask": [], "log": true}),
            UnknownMember,
        ),
        ("misspelt mask", json!({"masks": ["email"]}), UnknownMember),
        (
            "mask a string",
            json!({"mask": "email"}),
            MaskNotAList { found: "a string" },
        ),
        (
            "mask an object",
            json!({"mask": {"path": "a"}}),
            MaskNotAList { found: "an object" },
        ),
        (
            "mask null",
            json!({"mask": null}),
            MaskNotAList { found: "null" },
        ),
        (
            "too many entries",
            json!({"mask": too_many}),
            TooManyFields {
                count: MAX_MASK_FIELDS + 1,
            },
        ),
        (
            "number entry",
            json!({"mask": ["a", 3]}),
            InvalidEntry {
                index: 1,
                found: "a number",
            },
        ),
        (
            "nested list entry",
            json!({"mask": [["a"]]}),
            InvalidEntry {
                index: 0,
                found: "a list",
            },
        ),
        ("empty name", json!({"mask": [""]}), EmptyName { index: 0 }),
        (
            "empty path in object",
            json!({"mask": [{"path": ""}]}),
            EmptyName { index: 0 },
        ),
        (
            "filter path",
            json!({"mask": ["$[?(@.a)]"]}),
            InvalidPath {
                index: 0,
                offset: 2,
                expected: "`*`, an index or a quoted name",
            },
        ),
        (
            "path with trailing dot",
            json!({"mask": ["$.a."]}),
            InvalidPath {
                index: 0,
                offset: 4,
                expected: "a member name or `*`",
            },
        ),
        (
            "object without path",
            json!({"mask": [{"style": "pci"}]}),
            MissingPath { index: 0 },
        ),
        (
            "object path a number",
            json!({"mask": [{"path": 1}]}),
            PathNotAString {
                index: 0,
                found: "a number",
            },
        ),
        (
            "unknown style",
            json!({"mask": [{"path": "a", "style": "hash"}]}),
            InvalidStyle { index: 0 },
        ),
        (
            "style not a string",
            json!({"mask": [{"path": "a", "style": true}]}),
            InvalidStyle { index: 0 },
        ),
        (
            "style in capitals",
            json!({"mask": [{"path": "a", "style": "PCI"}]}),
            InvalidStyle { index: 0 },
        ),
        (
            "unknown object member",
            json!({"mask": ["a", {"path": "b", "on_error": "pass"}]}),
            UnknownEntryMember { index: 1 },
        ),
    ];
    for (description, value, expected) in cases {
        let error = Obligations::parse(&value).expect_err(description);
        assert_eq!(error, expected, "{description}");
    }
}

#[test]
fn error_messages_omit_values() {
    let secret = "ann@example.com";
    let cases = [
        json!({ secret: [] }),
        json!({"mask": secret}),
        json!({"mask": [{"path": secret, "style": secret}]}),
        json!({"mask": [{"path": "a", secret: 1}]}),
        json!({"mask": [format!("$.{secret}")]}),
    ];
    for value in cases {
        let message = Obligations::parse(&value).unwrap_err().to_string();
        assert!(!message.contains("example"), "{message}");
    }
}

#[test]
fn error_message_names_position() {
    let error = Obligations::parse(&json!({"mask": ["a", {"path": "b", "style": "x"}]}));
    assert_eq!(
        error.unwrap_err().to_string(),
        "obligations.mask[1].style: expected redact, pci or pseudonym"
    );
}

#[test]
fn pseudonym_style_needs_key() {
    let redact = Obligations::parse(&json!({"mask": ["a", {"path": "b", "style": "pci"}]}));
    assert!(!redact.unwrap().needs_pseudonym_key());
    let pseudonym = Obligations::parse(&json!({"mask": [{"path": "b", "style": "pseudonym"}]}));
    assert!(pseudonym.unwrap().needs_pseudonym_key());
}

fn route_masking() -> RouteMasking {
    let mut masking = RouteMasking::new(MaskRules {
        fields: vec![FieldRule {
            path: FieldPath::parse("$.ssn").unwrap(),
            style: MaskStyle::Redact,
        }],
        detectors: vec![DetectorRule {
            detector: Detector::Card,
            style: MaskStyle::Pci,
        }],
    });
    masking.max_body_bytes = 4096;
    masking
}

fn masked(masking: &RouteMasking) -> Value {
    let mut body = json!({
        "ssn": "123-45-6789",
        "email": "ann@example.com",
        "note": "card 4111 1111 1111 1111",
        "card": {"number": "4111 1111 1111 1111"}
    });
    masking.masker.mask_json(&mut body, &Context::default());
    body
}

#[test]
fn masking_combines_route_rules() {
    let obligations = Obligations::parse(&json!({"mask": ["email"]})).unwrap();
    let route = route_masking();

    let masking = obligations.masking("users", Some(&route), false);
    let body = masked(&masking);

    assert_eq!(body["email"], REDACTED);
    assert_eq!(body["ssn"], REDACTED);
    assert_eq!(body["note"], "card 4111 11** **** 1111");
    assert_eq!(masking.max_body_bytes, 4096);
    assert_eq!(masking.on_error, crate::mask::config::OnError::Block);
}

#[test]
fn masking_for_unmask_scope_keeps_only_obligations() {
    let obligations = Obligations::parse(&json!({"mask": ["email"]})).unwrap();
    let route = route_masking();

    let masking = obligations.masking("users", Some(&route), true);
    let body = masked(&masking);

    assert_eq!(body["email"], REDACTED);
    assert_eq!(body["ssn"], "123-45-6789");
    assert_eq!(body["note"], "card 4111 1111 1111 1111");
    assert!(!masking.has_detectors);
}

#[test]
fn obligation_style_wins_over_route() {
    let obligations =
        Obligations::parse(&json!({"mask": [{"path": "$.card", "style": "redact"}]})).unwrap();
    let mut route = route_masking();
    route = RouteMasking::new(MaskRules {
        fields: vec![FieldRule {
            path: FieldPath::parse("$.card.number").unwrap(),
            style: MaskStyle::Pci,
        }],
        detectors: route.rules().detectors.clone(),
    });

    let body = masked(&obligations.masking("cards", Some(&route), false));

    assert_eq!(body["card"]["number"], REDACTED);
}

#[test]
fn masking_without_route_section_uses_defaults() {
    let obligations = Obligations::parse(&json!({"mask": ["$.card.number"]})).unwrap();

    let masking = obligations.masking("plain", None, false);
    let body = masked(&masking);

    assert_eq!(body["card"]["number"], REDACTED);
    assert_eq!(body["email"], "ann@example.com");
    assert_eq!(
        masking.max_body_bytes,
        crate::mask::config::DEFAULT_MAX_BODY_BYTES
    );
}

#[test]
fn masking_built_once_per_route() {
    let obligations = Obligations::parse(&json!({"mask": ["email"]})).unwrap();
    let route = route_masking();

    let first = obligations.masking("users", Some(&route), false);
    let again = obligations.masking("users", Some(&route), false);
    let unmasked = obligations.masking("users", Some(&route), true);

    assert!(Arc::ptr_eq(&first, &again));
    assert!(!Arc::ptr_eq(&first, &unmasked));
}

#[test]
fn cache_parses_equal_values_once() {
    let cache = ObligationCache::default();

    let first = cache
        .get_or_parse(&json!({"mask": ["email", "phone"]}))
        .unwrap();
    let again = cache
        .get_or_parse(&json!({"mask": ["email", "phone"]}))
        .unwrap();
    let other = cache.get_or_parse(&json!({"mask": ["phone"]})).unwrap();

    assert!(Arc::ptr_eq(&first, &again));
    assert!(!Arc::ptr_eq(&first, &other));
    assert_eq!(cache.len(), 2);
}

#[test]
fn cache_skips_invalid_values() {
    let cache = ObligationCache::default();

    let result = cache.get_or_parse(&json!({"mask": "email"}));

    assert!(result.is_err());
    assert!(cache.is_empty());
}

#[test]
fn cache_starts_over_when_full() {
    let cache = ObligationCache::default();
    for i in 0..MAX_CACHED_OBLIGATIONS {
        cache
            .get_or_parse(&json!({"mask": [format!("f{i}")]}))
            .unwrap();
    }
    assert_eq!(cache.len(), MAX_CACHED_OBLIGATIONS);

    cache.get_or_parse(&json!({"mask": ["one_more"]})).unwrap();

    assert_eq!(cache.len(), 1);
}
