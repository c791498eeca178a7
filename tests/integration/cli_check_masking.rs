//! `portcullis check` on the `mask` section of routes, the top-level
//! `masking` section and the tenants' pseudonym keys: each problem reported
//! with its location and exact text, and never a key.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A key of 32 bytes, the shortest accepted.
const KEY: &str = "masking-test-pseudonym-key-00001";

fn check(dir: &Path, config: &str, environment: &[(&str, &str)]) -> Output {
    let path: PathBuf = dir.join("mask.yaml");
    std::fs::write(&path, config).expect("writing the config");
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c"])
        .arg(&path)
        .envs(environment.iter().copied())
        .output()
        .expect("running portcullis check")
}

fn stderr_lines(output: &Output, dir: &Path) -> Vec<String> {
    let text = String::from_utf8_lossy(&output.stderr);
    let prefix = format!("{}/", dir.display());
    text.lines().map(|line| line.replace(&prefix, "")).collect()
}

/// A route whose `mask` section is `mask` (indented by six spaces), with
/// `top` appended as top-level sections.
fn config(mask: &str, top: &str) -> String {
    let mask: String = mask.lines().map(|line| format!("      {line}\n")).collect();
    format!(
        "upstreams:\n  api: {{ url: http://127.0.0.1:1 }}\nroutes:\n  - id: api\n    match: {{ path: /api, methods: [GET] }}\n    upstream: api\n    authentication: none\n    mask:\n{mask}{top}"
    )
}

#[test]
fn mask_problems_reported_with_location() {
    let cases = [
        (
            "unknown key",
            "fieldz: []\ndetectors: [{ type: card }]",
            "mask.yaml:9:7: routes[0].mask.fieldz: unknown key \"fieldz\"; did you mean \"fields\"?",
        ),
        (
            "unknown detector type",
            "detectors: [{ type: passport }]",
            "mask.yaml:9:27: routes[0].mask.detectors[0].type: expected one of card, email, phone, iban, pattern, found \"passport\"",
        ),
        (
            "unknown style",
            "fields: [{ path: $.ssn, style: hash }]",
            "mask.yaml:9:38: routes[0].mask.fields[0].style: expected one of redact, pci, pseudonym, found \"hash\"",
        ),
        (
            "style typo suggested",
            "fields: [{ path: $.ssn, style: redcat }]",
            "mask.yaml:9:38: routes[0].mask.fields[0].style: expected one of redact, pci, pseudonym, found \"redcat\"; did you mean \"redact\"?",
        ),
        (
            "invalid path",
            "fields: [{ path: \"$.a[\", style: redact }]",
            "mask.yaml:9:24: routes[0].mask.fields[0].path: invalid field path `$.a[`: expected `*`, an index or a quoted name at byte 4",
        ),
        (
            "filter path",
            "fields: [{ path: \"$[?(@.a)]\" }]",
            "mask.yaml:9:24: routes[0].mask.fields[0].path: invalid field path `$[?(@.a)]`: expected `*`, an index or a quoted name at byte 2",
        ),
        (
            "invalid regex",
            "detectors: [{ type: pattern, name: ref, regex: \"ORD-[0-9\" }]",
            "mask.yaml:9:54: routes[0].mask.detectors[0].regex: invalid regular expression: unclosed character class",
        ),
        (
            "regex on a built-in detector",
            "detectors: [{ type: card, regex: \"[0-9]+\" }]",
            "mask.yaml:9:40: routes[0].mask.detectors[0].regex: regex applies to type: pattern only, not to card",
        ),
        (
            "pattern without name",
            "detectors: [{ type: pattern, regex: \"ORD-[0-9]{8}\" }]",
            "mask.yaml:9:19: routes[0].mask.detectors[0].name: missing; expected a detector name such as order_ref",
        ),
        (
            "no rules",
            "on_error: pass",
            "mask.yaml:9:15: routes[0].mask: expected at least one entry under fields or detectors",
        ),
        (
            "unknown on_error",
            "detectors: [{ type: email }]\non_error: ignore",
            "mask.yaml:10:17: routes[0].mask.on_error: expected one of block, pass, found \"ignore\"",
        ),
        (
            "limit too large",
            "detectors: [{ type: email }]\nmax_body_bytes: 1GiB",
            "mask.yaml:10:23: routes[0].mask.max_body_bytes: expected a size from 1 to 67108864 bytes such as 16KiB or 1MiB, found \"1GiB\"",
        ),
        (
            "scope with a space",
            "detectors: [{ type: email }]\nunmask_scope: \"read pii\"",
            "mask.yaml:10:21: routes[0].mask.unmask_scope: expected one OAuth scope (printable ASCII, no spaces or quotes), found \"read pii\"",
        ),
        (
            "pseudonym without any key",
            "fields: [{ path: $..email, style: pseudonym }]",
            "mask.yaml:9:41: routes[0].mask.fields[0].style: style pseudonym needs a key for requests without a tenant; set masking.pseudonym_key to { env: NAME } or { file: PATH }",
        ),
    ];

    let mut mismatches = Vec::new();
    for (description, mask, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let output = check(dir.path(), &config(mask, ""), &[]);

        assert_eq!(output.status.code(), Some(1), "{description}");
        let lines = stderr_lines(&output, dir.path());
        if lines[0] != expected || lines.len() != 2 {
            mismatches.push(format!(
                "{description}:\n  expected {expected}\n  found    {}",
                lines.join("\n  ")
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn short_pseudonym_key_rejected_without_echo() {
    let short = "short-key-value";
    let dir = tempfile::tempdir().unwrap();
    let top = "masking:\n  pseudonym_key: { env: MASK_TEST_KEY }\n";
    let mask = "fields: [{ path: $..email, style: pseudonym }]";

    let output = check(dir.path(), &config(mask, top), &[("MASK_TEST_KEY", short)]);

    assert_eq!(output.status.code(), Some(1));
    let lines = stderr_lines(&output, dir.path());
    assert_eq!(
        lines[0],
        "mask.yaml:11:18: masking.pseudonym_key: pseudonym key is 15 bytes long; expected at least 32 random bytes"
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        lines.join("\n")
    );
    assert!(!all.contains(short), "the key was printed: {all}");
}

#[test]
fn tenant_without_pseudonym_key_reported() {
    let dir = tempfile::tempdir().unwrap();
    let top = "\
masking:
  pseudonym_key: { env: MASK_TEST_KEY }
api_keys:
  file: keys.json
  secret: { env: MASK_TEST_KEY }
tenants:
  - id: acme
    pseudonym_key: { env: MASK_TEST_KEY }
  - id: globex
";
    std::fs::write(dir.path().join("keys.json"), "{\"keys\": []}").unwrap();
    let mask = "fields: [{ path: $..email, style: pseudonym }]";

    let output = check(dir.path(), &config(mask, top), &[("MASK_TEST_KEY", KEY)]);

    let lines = stderr_lines(&output, dir.path());
    assert_eq!(
        lines[0],
        "mask.yaml:9:41: routes[0].mask.fields[0].style: style pseudonym needs a key for every tenant; set pseudonym_key for tenant globex",
        "{}",
        lines.join("\n")
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn complete_mask_section_accepted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pseudonym.key"), KEY).unwrap();
    let mask = "\
fields:
  - { path: \"$[*].ssn\", style: redact }
  - { path: \"$..card.number\", style: pci }
  - { path: \"$..email\", style: pseudonym }
detectors:
  - { type: card, style: pci }
  - { type: email }
  - { type: phone }
  - { type: iban }
  - { type: pattern, name: order_ref, regex: \"ORD-[0-9]{8}\", style: redact }
unmask_scope: read:pii
max_body_bytes: 2MiB
on_error: pass";
    let top = "masking:\n  pseudonym_key: { file: pseudonym.key }\n";

    let output = check(dir.path(), &config(mask, top), &[]);

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
