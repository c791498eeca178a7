use serde_json::json;

use super::*;

mod detectors;
mod document;
mod paths;
mod random;

const TENANT_KEY: &[u8] = b"tenant-a-pseudonym-key-0123456789";

fn field(path: &str, style: MaskStyle) -> FieldRule {
    FieldRule {
        path: FieldPath::parse(path).unwrap(),
        style,
    }
}

fn detector(detector: Detector, style: MaskStyle) -> DetectorRule {
    DetectorRule { detector, style }
}

fn redact_fields(paths: &[&str]) -> Masker {
    Masker::new(MaskRules {
        fields: paths
            .iter()
            .map(|path| field(path, MaskStyle::Redact))
            .collect(),
        detectors: Vec::new(),
    })
}

fn all_detectors(style: MaskStyle) -> Masker {
    Masker::new(MaskRules {
        fields: Vec::new(),
        detectors: [
            Detector::Card,
            Detector::Email,
            Detector::Phone,
            Detector::Iban,
        ]
        .into_iter()
        .map(|kind| detector(kind, style))
        .collect(),
    })
}

#[test]
fn each_path_form_selects_fields() {
    let cases = [
        (
            "top-level member",
            "$.ssn",
            json!({"ssn": "123-45-6789", "name": "Ann"}),
            json!({"ssn": REDACTED, "name": "Ann"}),
            1,
        ),
        (
            "nested member",
            "$.a.b",
            json!({"a": {"b": "x", "c": "y"}, "b": "z"}),
            json!({"a": {"b": REDACTED, "c": "y"}, "b": "z"}),
            1,
        ),
        (
            "wildcard over top-level array",
            "$[*].card.number",
            json!([{"card": {"number": "n1", "brand": "visa"}}, {"card": {"number": "n2"}}, {"x": 1}]),
            json!([{"card": {"number": REDACTED, "brand": "visa"}}, {"card": {"number": REDACTED}}, {"x": 1}]),
            2,
        ),
        (
            "descendant at every depth",
            "$..email",
            json!({"email": "a", "users": [{"email": "b", "profile": {"email": "c"}}], "emails": "d"}),
            json!({"email": REDACTED, "users": [{"email": REDACTED, "profile": {"email": REDACTED}}], "emails": "d"}),
            3,
        ),
        (
            "trailing wildcard",
            "$.items[*]",
            json!({"items": ["a", 2, true, null], "other": "b"}),
            json!({"items": [REDACTED, REDACTED, REDACTED, null], "other": "b"}),
            3,
        ),
        (
            "quoted name with space",
            "$['odd key']",
            json!({"odd key": "secret", "odd": "kept"}),
            json!({"odd key": REDACTED, "odd": "kept"}),
            1,
        ),
        (
            "index",
            "$.items[1]",
            json!({"items": ["a", "b", "c"]}),
            json!({"items": ["a", REDACTED, "c"]}),
            1,
        ),
        (
            "object selected masks its leaves",
            "$.address",
            json!({"address": {"street": "Main St 1", "zip": 12345, "geo": [1.5, 2.5], "unit": null}}),
            json!({"address": {"street": REDACTED, "zip": REDACTED, "geo": [REDACTED, REDACTED], "unit": null}}),
            4,
        ),
        (
            "missing field leaves body unchanged",
            "$.ssn",
            json!({"name": "Ann"}),
            json!({"name": "Ann"}),
            0,
        ),
        (
            "member name does not select array index",
            "$.items.0",
            json!({"items": ["a"]}),
            json!({"items": ["a"]}),
            0,
        ),
        (
            "descendant then child at two depths at once",
            "$..a.b",
            json!({"a": {"a": {"b": 1}, "b": 2}, "b": 3}),
            json!({"a": {"a": {"b": REDACTED}, "b": REDACTED}, "b": 3}),
            2,
        ),
        (
            "two descendant segments",
            "$..a..c",
            json!({"a": {"x": [{"c": 1}], "a": {"c": 2}}, "c": 3}),
            json!({"a": {"x": [{"c": REDACTED}], "a": {"c": REDACTED}}, "c": 3}),
            2,
        ),
        (
            "descendant wildcard then name",
            "$..*.id",
            json!({"id": 1, "u": {"id": 2, "v": [{"id": 3}]}}),
            json!({"id": 1, "u": {"id": REDACTED, "v": [{"id": REDACTED}]}}),
            2,
        ),
        (
            "nested matches of a descendant path counted once",
            "$..secret",
            json!({"secret": {"secret": "x"}}),
            json!({"secret": {"secret": REDACTED}}),
            1,
        ),
    ];

    for (description, path, mut body, expected, count) in cases {
        let streamed = redact_fields(&[path])
            .mask_json_bytes(&serde_json::to_vec(&body).unwrap(), &Context::default())
            .unwrap()
            .map(|(bytes, count)| (serde_json::from_slice::<Value>(&bytes).unwrap(), count));
        let masked = redact_fields(&[path]).mask_json(&mut body, &Context::default());

        let streamed = streamed.unwrap_or_else(|| (body.clone(), 0));
        assert_eq!(streamed, (body.clone(), masked), "{description}: streamed");

        assert_eq!(body, expected, "{description}");
        assert_eq!(masked, count, "{description}: count");
    }
}

#[test]
fn each_style_applied_to_fields() {
    let key = PseudonymKey::new(TENANT_KEY).unwrap();
    let pseudonym = key.pseudonym("Ann Example");
    let cases = [
        (
            "redact",
            MaskStyle::Redact,
            json!("Ann Example"),
            json!(REDACTED),
        ),
        (
            "pci on string",
            MaskStyle::Pci,
            json!("4111 1111 1111 1111"),
            json!("4111 11** **** 1111"),
        ),
        (
            "pci on number",
            MaskStyle::Pci,
            json!(4111111111111111u64),
            json!("411111******1111"),
        ),
        (
            "pseudonym",
            MaskStyle::Pseudonym,
            json!("Ann Example"),
            json!(pseudonym),
        ),
    ];

    for (description, style, value, expected) in cases {
        let masker = Masker::new(MaskRules {
            fields: vec![field("$.value", style)],
            detectors: Vec::new(),
        });
        let context = Context {
            pseudonym_key: Some(&key),
            unmask: false,
        };
        let mut body = json!({ "value": value });

        masker.mask_json(&mut body, &context);

        assert_eq!(body["value"], expected, "{description}");
    }
}

#[test]
fn detectors_mask_inside_strings() {
    let cases = [
        (
            "card in sentence",
            MaskStyle::Pci,
            "paid with 4111 1111 1111 1111 today",
            "paid with 4111 11** **** 1111 today",
        ),
        (
            "email redacted",
            MaskStyle::Redact,
            "mail alice@example.com now",
            "mail [REDACTED] now",
        ),
        (
            "phone redacted",
            MaskStyle::Redact,
            "call +44 20 7946 0958",
            "call [REDACTED]",
        ),
        (
            "iban redacted",
            MaskStyle::Redact,
            "to DE89 3704 0044 0532 0130 00.",
            "to [REDACTED].",
        ),
        (
            "two kinds in one string",
            MaskStyle::Redact,
            "alice@example.com, 5500-0000-0000-0004",
            "[REDACTED], [REDACTED]",
        ),
        (
            "order id kept",
            MaskStyle::Redact,
            "order 20261204123008",
            "order 20261204123008",
        ),
    ];

    for (description, style, text, expected) in cases {
        let mut body = json!({ "note": text });

        all_detectors(style).mask_json(&mut body, &Context::default());

        assert_eq!(body["note"], expected, "{description}");
    }
}

#[test]
fn detectors_walk_nested_values() {
    let mut body = json!({
        "orders": [
            {"id": 20261204123008u64, "pan": 4111111111111111u64, "total": 12.5},
            {"id": 1000000000123453u64, "contact": {"emails": ["a@example.com", "kept"]}}
        ],
        "active": true,
        "missing": null
    });

    let count = all_detectors(MaskStyle::Pci).mask_json(&mut body, &Context::default());

    assert_eq!(count, 2);
    assert_eq!(body["orders"][0]["pan"], json!("411111******1111"));
    assert_eq!(body["orders"][0]["id"], json!(20261204123008u64));
    assert_eq!(body["orders"][0]["total"], json!(12.5));
    assert_eq!(body["orders"][1]["id"], json!(1000000000123453u64));
    assert_eq!(
        body["orders"][1]["contact"]["emails"],
        json!(["*@*******.***", "kept"])
    );
    assert_eq!(body["active"], json!(true));
    assert_eq!(body["missing"], json!(null));
}

#[test]
fn unicode_escapes_decoded_before_detection() {
    let cases = [
        (
            "escaped digit",
            r#"{"note":"\u0034111 1111 1111 1111"}"#,
            "[REDACTED]",
        ),
        (
            "escaped at sign",
            r#"{"note":"alice\u0040example.com"}"#,
            "[REDACTED]",
        ),
        (
            "non-ascii neighbours",
            r#"{"note":"Zahlung f\u00fcr 4111111111111111 \u2713"}"#,
            "Zahlung für [REDACTED] ✓",
        ),
        (
            "escaped card in nested array",
            r#"{"a":[{"b":"5500\u002d0000\u002d0000\u002d0004"}]}"#,
            "[REDACTED]",
        ),
    ];

    for (description, raw, expected) in cases {
        let mut body: Value = serde_json::from_str(raw).unwrap();

        let count = all_detectors(MaskStyle::Redact).mask_json(&mut body, &Context::default());

        let masked = body
            .pointer("/note")
            .or_else(|| body.pointer("/a/0/b"))
            .unwrap();
        assert_eq!(masked, expected, "{description}");
        assert_eq!(count, 1, "{description}: count");
    }
}

#[test]
fn unmask_scope_leaves_body_unchanged() {
    let masker = Masker::new(MaskRules {
        fields: vec![field("$.ssn", MaskStyle::Redact)],
        detectors: vec![detector(Detector::Card, MaskStyle::Pci)],
    });
    let original = json!({"ssn": "123-45-6789", "pan": "4111111111111111"});
    let mut body = original.clone();
    let context = Context {
        pseudonym_key: None,
        unmask: true,
    };

    let count = masker.mask_json(&mut body, &context);
    let text = masker.mask_text("pan 4111111111111111", &context);

    assert_eq!(count, 0);
    assert_eq!(body, original);
    assert_eq!(text.count, 0);
    assert!(matches!(text.text, Cow::Borrowed("pan 4111111111111111")));
}

#[test]
fn field_rule_wins_over_detectors() {
    let key = PseudonymKey::new(TENANT_KEY).unwrap();
    let masker = Masker::new(MaskRules {
        fields: vec![field("$.email", MaskStyle::Pseudonym)],
        detectors: vec![detector(Detector::Email, MaskStyle::Redact)],
    });
    let context = Context {
        pseudonym_key: Some(&key),
        unmask: false,
    };
    let mut body = json!({"email": "alice@example.com", "backup": "alice@example.com"});

    let count = masker.mask_json(&mut body, &context);

    assert_eq!(count, 2);
    assert_eq!(body["email"], json!(key.pseudonym("alice@example.com")));
    assert_eq!(body["backup"], json!(REDACTED));
}

#[test]
fn first_matching_field_rule_sets_style() {
    let masker = Masker::new(MaskRules {
        fields: vec![
            field("$.card.number", MaskStyle::Pci),
            field("$..number", MaskStyle::Redact),
        ],
        detectors: Vec::new(),
    });
    let mut body = json!({"card": {"number": "4111111111111111"}, "phone": {"number": "555"}});

    masker.mask_json(&mut body, &Context::default());

    assert_eq!(body["card"]["number"], json!("411111******1111"));
    assert_eq!(body["phone"]["number"], json!(REDACTED));
}

#[test]
fn detector_pseudonym_stable_across_formats() {
    let key = PseudonymKey::new(TENANT_KEY).unwrap();
    let masker = Masker::new(MaskRules {
        fields: Vec::new(),
        detectors: vec![detector(Detector::Card, MaskStyle::Pseudonym)],
    });
    let context = Context {
        pseudonym_key: Some(&key),
        unmask: false,
    };
    let mut body = json!([
        "4111 1111 1111 1111",
        4111111111111111u64,
        "4111-1111-1111-1111"
    ]);

    let count = masker.mask_json(&mut body, &context);

    let expected = key.pseudonym("4111111111111111");
    assert_eq!(count, 3);
    assert_eq!(body, json!([expected, expected, expected]));
}

#[test]
fn pseudonym_without_key_redacts() {
    let masker = Masker::new(MaskRules {
        fields: vec![field("$.name", MaskStyle::Pseudonym)],
        detectors: Vec::new(),
    });
    let mut body = json!({"name": "Ann"});

    masker.mask_json(&mut body, &Context::default());

    assert_eq!(body["name"], json!(REDACTED));
}

#[test]
fn longer_then_earlier_detector_wins_overlap() {
    let digits = Pattern::new("sixteen_digits", "[0-9]{16}").unwrap();
    let prefix = Pattern::new("prefix", "4111").unwrap();
    let masker = Masker::new(MaskRules {
        fields: Vec::new(),
        detectors: vec![
            detector(Detector::Pattern(prefix), MaskStyle::Redact),
            detector(Detector::Pattern(digits), MaskStyle::Redact),
            detector(Detector::Card, MaskStyle::Pci),
        ],
    });

    let masked = masker.mask_text("4111111111111111", &Context::default());

    assert_eq!(masked.text, REDACTED);
    assert_eq!(masked.count, 1);
}

#[test]
fn text_body_masked_by_detectors() {
    let masker = all_detectors(MaskStyle::Redact);
    let cases = [
        (
            "log-like line",
            "user=alice@example.com pan=4111-1111-1111-1111 at 2026-12-04T12:30:00Z",
            "user=[REDACTED] pan=[REDACTED] at 2026-12-04T12:30:00Z",
            2,
        ),
        (
            "csv row",
            "42,Ann,+14155552671,DE89370400440532013000\n",
            "42,Ann,[REDACTED],[REDACTED]\n",
            2,
        ),
        ("nothing to mask", "order 42 shipped", "order 42 shipped", 0),
    ];

    for (description, text, expected, count) in cases {
        let masked = masker.mask_text(text, &Context::default());

        assert_eq!(masked.text, expected, "{description}");
        assert_eq!(masked.count, count, "{description}: count");
        if count == 0 {
            assert!(
                matches!(masked.text, Cow::Borrowed(_)),
                "{description}: borrowed"
            );
        }
    }
}

/// Masks `body` in one pass and returns the masked document.
fn mask_bytes(masker: &Masker, body: &str) -> serde_json::Value {
    let context = Context {
        pseudonym_key: None,
        unmask: false,
    };
    match masker.mask_json_bytes(body.as_bytes(), &context).unwrap() {
        Some((masked, _)) => serde_json::from_slice(&masked).unwrap(),
        None => serde_json::from_str(body).unwrap(),
    }
}

/// A pattern skipped after one search of the whole body must still mask
/// every string it matches: escaped strings and anchored patterns, whose
/// whole-body search could miss them, are searched per string.
#[test]
fn pattern_skip_keeps_every_match() {
    let pattern = |source: &str| {
        Masker::new(MaskRules {
            fields: Vec::new(),
            detectors: vec![detector(
                Detector::Pattern(Pattern::new("order", source).unwrap()),
                MaskStyle::Redact,
            )],
        })
    };
    let cases = [
        (
            "plain match",
            "ORD-[0-9]{8}",
            r#"{"a": "ORD-12345678", "b": "x"}"#,
            json!({"a": REDACTED, "b": "x"}),
        ),
        (
            "no match anywhere",
            "ORD-[0-9]{8}",
            r#"{"a": "ORD-1234", "b": "x"}"#,
            json!({"a": "ORD-1234", "b": "x"}),
        ),
        (
            "match only after unescaping",
            "ORD-[0-9]{8}",
            r#"{"a": "\u004FRD-12345678"}"#,
            json!({"a": REDACTED}),
        ),
        (
            "anchored pattern, which never matches the whole body",
            "^ORD-[0-9]{8}$",
            r#"{"a": "ORD-12345678", "b": "ORD-12345678 and more"}"#,
            json!({"a": REDACTED, "b": "ORD-12345678 and more"}),
        ),
        (
            "word boundary",
            r"\bORD-[0-9]{8}\b",
            r#"{"a": "ref ORD-12345678."}"#,
            json!({"a": format!("ref {REDACTED}.")}),
        ),
    ];

    for (description, source, body, expected) in cases {
        assert_eq!(
            mask_bytes(&pattern(source), body),
            expected,
            "{description}"
        );
    }
}

#[test]
fn longest_path_masks_at_its_depth() {
    let path = format!("${}", ".a".repeat(path::MAX_SEGMENTS));
    let mut body = json!("secret");
    for _ in 0..path::MAX_SEGMENTS {
        body = json!({ "a": body, "b": "kept" });
    }
    let masker = redact_fields(&[&path]);

    let (streamed, count) = masker
        .mask_json_bytes(&serde_json::to_vec(&body).unwrap(), &Context::default())
        .unwrap()
        .unwrap();
    let masked = masker.mask_json(&mut body, &Context::default());

    let text = String::from_utf8(streamed).unwrap();
    assert_eq!((count, masked), (1, 1));
    assert!(
        !text.contains("secret") && text.contains(REDACTED),
        "{text}"
    );
    assert_eq!(text.matches("kept").count(), path::MAX_SEGMENTS);
}
