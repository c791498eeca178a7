//! `portcullis review` run as a process: the payments example against its
//! reviewed list of expected findings, exit statuses, input errors, and
//! golden JSON and SARIF reports of a small fixture.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use portcullis::config::yaml::{self, Node, Value as Yaml};
use serde_json::Value;

/// The payments example's legacy HMAC secret: the 32 bytes HS256 requires,
/// so the gateway accepts the file, but only 7 distinct byte values, so the
/// review reports it.
const WEAK_SECRET: &str = "changemechangemechangemechangeme";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `portcullis review` in the repository root, so report paths are
/// relative and stable.
fn review(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .current_dir(root())
        .arg("review")
        .args(args)
        .env("FICTIONALPAY_LEGACY_HMAC", WEAK_SECRET)
        .env("REDIS_PASSWORD", "example-redis-password")
        .output()
        .expect("the portcullis binary runs")
}

fn payments_json() -> Value {
    let output = review(&[
        "-c",
        "examples/payments/portcullis.yaml",
        "--openapi",
        "examples/payments/payments-api.yaml",
        "--openapi",
        "examples/payments/cards-api.yaml",
        "--format",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        !stderr.contains("warning:"),
        "the gateway would reject the example: {stderr}"
    );
    serde_json::from_slice(&output.stdout).expect("the report is JSON")
}

fn field<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match &node.value {
        Yaml::Mapping(entries) => entries
            .iter()
            .find(|(k, _)| portcullis::config::reader::scalar_text(k) == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn field_text(node: &Node, key: &str) -> Option<String> {
    field(node, key)
        .and_then(portcullis::config::reader::scalar_text)
        .map(str::to_string)
}

/// Tells whether a reported finding is the expected entry.
fn matches(expected: &Node, finding: &Value) -> bool {
    if finding["id"].as_str() != field_text(expected, "id").as_deref() {
        return false;
    }
    if let Some(at) = field_text(expected, "at") {
        if finding["config"]["key_path"].as_str() != Some(at.as_str()) {
            return false;
        }
    }
    if let Some(line) = field_text(expected, "line") {
        if finding["config"]["line"].as_u64().map(|n| n.to_string()) != Some(line) {
            return false;
        }
    }
    if let Some(operation) = field_text(expected, "operation") {
        let reported = format!(
            "{} {}",
            finding["openapi"]["method"].as_str().unwrap_or_default(),
            finding["openapi"]["path"].as_str().unwrap_or_default()
        );
        if reported != operation {
            return false;
        }
    }
    if let Some(pointer) = field_text(expected, "server") {
        if finding["openapi"]["pointer"].as_str() != Some(pointer.as_str()) {
            return false;
        }
    }
    if let Some(severity) = field_text(expected, "severity") {
        if finding["severity"].as_str() != Some(severity.as_str()) {
            return false;
        }
    }
    true
}

#[test]
fn payments_example_reports_exactly_expected() {
    let text =
        std::fs::read_to_string(root().join("examples/payments/expected-findings.yaml")).unwrap();
    let expected = yaml::parse(&text).unwrap();
    let Some(Yaml::Sequence(entries)) = field(&expected, "findings").map(|n| &n.value) else {
        panic!("expected-findings.yaml has no findings list");
    };
    let mappings = field(&expected, "mappings").expect("a mappings section");
    let report = payments_json();
    let mut reported: Vec<Value> = report["findings"].as_array().unwrap().clone();

    for entry in entries {
        let id = field_text(entry, "id").unwrap();
        let position = reported.iter().position(|finding| matches(entry, finding));
        let Some(position) = position else {
            panic!("expected finding on line {} not reported: {id}", entry.line);
        };
        let finding = reported.remove(position);
        let expected_mappings: Vec<String> = match field(mappings, &id).map(|n| &n.value) {
            Some(Yaml::Sequence(items)) => items
                .iter()
                .filter_map(portcullis::config::reader::scalar_text)
                .map(str::to_string)
                .collect(),
            _ => panic!("no mappings listed for {id}"),
        };
        let got: Vec<String> = serde_json::from_value(finding["mappings"].clone()).unwrap();
        assert_eq!(got, expected_mappings, "mappings of {id}");
    }
    let unexpected: Vec<String> = reported
        .iter()
        .map(|f| {
            format!(
                "{} at {} {}",
                f["id"], f["config"]["key_path"], f["openapi"]["pointer"]
            )
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "findings on things done right: {unexpected:#?}"
    );
}

#[test]
fn payments_example_controls_never_claim_compliance() {
    let report = payments_json();
    for entry in report["controls_in_place"].as_array().unwrap() {
        let support = entry["support"].as_str().unwrap();
        assert!(
            ["supported", "partial", "not_evidenced", "outside_gateway"].contains(&support),
            "{support}"
        );
        let topic = entry["topic"].as_str().unwrap();
        if topic == "Retention of audit and log records" {
            assert_eq!(
                support, "outside_gateway",
                "the gateway has no retention setting"
            );
        }
        if topic == "Audit trail" {
            assert_eq!(
                support, "partial",
                "the audit trail covers the gateway only"
            );
        }
    }
    let text = report.to_string();
    assert!(!text.contains(WEAK_SECRET), "the report shows the secret");
    assert!(!text.to_ascii_lowercase().contains("compliant"));
}

#[test]
fn config_alone_lists_checks_needing_documents() {
    let output = review(&[
        "-c",
        "examples/payments/portcullis.yaml",
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let skipped: Vec<&str> = report["skipped_checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    for id in ["PX-DATA-001", "PX-INV-001", "PX-AUTHZ-002", "PX-SSRF-001"] {
        assert!(
            skipped.contains(&id),
            "{id} not listed as skipped: {skipped:?}"
        );
    }
    let public: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == "PX-AUTH-001")
        .collect();
    assert_eq!(
        public.len(),
        3,
        "sign-in, password-reset and health are public"
    );
}

#[test]
fn fail_on_sets_exit_status() {
    let cases = [
        (
            "critical finding fails at critical",
            vec![
                "--openapi",
                "examples/payments/cards-api.yaml",
                "--fail-on",
                "critical",
            ],
            1,
        ),
        (
            "no critical finding without documents",
            vec!["--fail-on", "critical"],
            0,
        ),
        ("high findings fail by default", vec![], 1),
    ];
    for (description, extra, status) in cases {
        let mut args = vec![
            "-c",
            "examples/payments/portcullis.yaml",
            "--format",
            "json",
        ];
        args.extend(extra);
        assert_eq!(review(&args).status.code(), Some(status), "{description}");
    }
}

#[test]
fn unusable_inputs_exit_2_with_message() {
    let cases = [
        (
            "Swagger 2.0",
            "tests/data/review/swagger.yaml",
            "Swagger 2.0 documents are not supported",
        ),
        (
            "invalid YAML",
            "tests/data/review/invalid.yaml",
            "invalid YAML",
        ),
        (
            "missing file",
            "tests/data/review/absent.yaml",
            "cannot read the file",
        ),
    ];
    for (description, document, message) in cases {
        let output = review(&[
            "-c",
            "tests/data/review/gateway.yaml",
            "--openapi",
            document,
        ]);
        assert_eq!(output.status.code(), Some(2), "{description}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{description}: {stderr}");
        assert!(!stderr.contains("panicked"), "{description}: {stderr}");
    }
    let output = review(&["-c", "tests/data/review/gateway.yaml", "--format", "pdf"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "unknown format is a usage error"
    );
}

#[test]
fn rejected_config_warned_then_reviewed() {
    let output = review(&["-c", "tests/data/review/gateway.yaml", "--format", "json"]);

    let rejection = "the gateway would reject this configuration: tests/data/review/gateway.yaml:17:9: routes[1].id: expected letters, digits, '-' and '_' (at most 64)";
    let stderr = String::from_utf8_lossy(&output.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("warning:"))
        .collect();
    assert_eq!(warnings, [format!("warning: {rejection}")], "{stderr}");
    assert_eq!(output.status.code(), Some(1), "findings still fail the run");
    let report: Value = serde_json::from_slice(&output.stdout).expect("the report is JSON");
    assert_eq!(report["notes"][0], rejection);
    let public_login = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["id"] == "PX-AUTH-001");
    assert!(public_login, "the review went on: {report:#}");
}

#[test]
fn rejection_warning_hides_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let inline = "inline-review-secret-4f2e";
    let short = "short-review-secret-8b1d";
    let config = format!(
        "upstreams:\n  api: {{ url: https://api.example }}\nauthentication:\n  issuers:\n    - issuer: https://inline.example\n      audiences: [api]\n      algorithm: HS256\n      secret: {inline}\n    - issuer: https://short.example\n      audiences: [api]\n      algorithm: HS256\n      secret: {{ env: PORTCULLIS_TEST_REVIEW_SHORT_SECRET }}\nroutes:\n  - id: api\n    match: {{ path: /api, methods: [GET] }}\n    upstream: api\n"
    );
    let path = dir.path().join("secrets.yaml");
    std::fs::write(&path, config).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["review", "--format", "json", "-c"])
        .arg(&path)
        .env("PORTCULLIS_TEST_REVIEW_SHORT_SECRET", short)
        .output()
        .expect("the portcullis binary runs");

    let stderr = String::from_utf8_lossy(&output.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("warning: the gateway would reject this configuration: "))
        .collect();
    assert_eq!(warnings.len(), 2, "{stderr}");
    assert!(
        warnings[0].ends_with("secrets.yaml:8:15: authentication.issuers[0].secret: expected { env: NAME } or { file: PATH }; secrets are not written inline"),
        "{stderr}"
    );
    assert!(
        warnings[1].contains("authentication.issuers[1].secret: unusable secret:"),
        "{stderr}"
    );
    let all = format!("{}{stderr}", String::from_utf8_lossy(&output.stdout));
    assert!(
        !all.contains(inline),
        "the inline secret was printed: {all}"
    );
    assert!(!all.contains(short), "the short secret was printed: {all}");
}

/// Compares output with a golden file; `UPDATE_GOLDEN=1` rewrites it.
fn assert_golden(output: &[u8], golden: &Path) {
    let text = String::from_utf8(output.to_vec()).unwrap();
    let text = text.replace(env!("CARGO_PKG_VERSION"), "<version>");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(golden, &text).unwrap();
    }
    let expected =
        std::fs::read_to_string(golden).expect("golden file exists; run with UPDATE_GOLDEN=1");
    assert_eq!(text, expected, "output differs from {}", golden.display());
}

fn fixture(format: &str) -> Output {
    review(&[
        "-c",
        "tests/data/review/gateway.yaml",
        "--openapi",
        "tests/data/review/api.yaml",
        "--format",
        format,
    ])
}

#[test]
fn json_report_matches_golden() {
    let output = fixture("json");
    assert_golden(
        &output.stdout,
        &root().join("tests/data/review/golden.json"),
    );
}

#[test]
fn sarif_report_matches_golden() {
    let output = fixture("sarif");
    assert_golden(
        &output.stdout,
        &root().join("tests/data/review/golden.sarif"),
    );
}

/// Compiles the OASIS SARIF 2.1.0 schema vendored under
/// `tests/data/review/sarif/` (see its NOTICE.md), with `format` checked
/// as an assertion so URIs and dates are validated too.
fn sarif_validator() -> jsonschema::Validator {
    let text =
        std::fs::read_to_string(root().join("tests/data/review/sarif/sarif-schema-2.1.0.json"))
            .unwrap();
    // NOTE: the published schema's `language` patterns end in `]?$`, an
    // unmatched `]` that ECMA-262 reads as a literal but this validator
    // rejects as an invalid regex. The file stays as published; the copy in
    // memory escapes the bracket, which matches the same strings.
    let broken = r#""^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$""#;
    assert!(
        text.contains(broken),
        "the schema's language pattern changed"
    );
    let text = text.replace(broken, r#""^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}\\]?$""#);
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(true)
        .build(&schema)
        .expect("the SARIF schema compiles")
}

/// Lists every schema violation of a SARIF log, one line each.
fn sarif_violations(validator: &jsonschema::Validator, log: &Value) -> Vec<String> {
    validator
        .iter_errors(log)
        .map(|error| format!("{}: {error}", error.instance_path()))
        .collect()
}

#[test]
fn sarif_reports_valid_against_schema() {
    let validator = sarif_validator();
    let cases = [
        ("small fixture with documents", fixture("sarif").stdout),
        (
            "payments example with documents",
            review(&[
                "-c",
                "examples/payments/portcullis.yaml",
                "--openapi",
                "examples/payments/payments-api.yaml",
                "--openapi",
                "examples/payments/cards-api.yaml",
                "--format",
                "sarif",
            ])
            .stdout,
        ),
        (
            "payments configuration alone",
            review(&[
                "-c",
                "examples/payments/portcullis.yaml",
                "--format",
                "sarif",
            ])
            .stdout,
        ),
    ];
    for (description, output) in cases {
        let log: Value = serde_json::from_slice(&output).expect("the SARIF log is JSON");
        let violations = sarif_violations(&validator, &log);
        assert!(violations.is_empty(), "{description}: {violations:#?}");
        assert!(
            !log["runs"][0]["results"].as_array().unwrap().is_empty(),
            "{description}: no results to validate"
        );
    }
}

#[test]
fn sarif_schema_rejects_broken_log() {
    let validator = sarif_validator();
    let mut log: Value = serde_json::from_slice(&fixture("sarif").stdout).unwrap();
    log["runs"][0]["results"][0]["level"] = "fatal".into();
    log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] =
        0.into();
    let violations = sarif_violations(&validator, &log);
    assert!(
        violations.iter().any(|v| v.contains("/level")),
        "{violations:#?}"
    );
    assert!(
        violations.iter().any(|v| v.contains("/startLine")),
        "{violations:#?}"
    );
}

/// Checks what the schema cannot: each result names the rule at its index.
#[test]
fn sarif_results_point_at_their_rules() {
    let log: Value = serde_json::from_slice(&fixture("sarif").stdout).unwrap();
    let run = &log["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    for result in run["results"].as_array().unwrap() {
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], result["ruleId"]);
    }
}

#[test]
fn html_report_self_contained_and_escaped() {
    let html = String::from_utf8(fixture("html").stdout).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("<script"), "no scripts");
    assert!(!html.contains("<img"), "a route id was not escaped");
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(html.contains("Shop &lt;API&gt; &amp; &quot;orders&quot;"));
    assert!(!html.contains("src=\"http"), "no external assets");
    assert!(!html.contains("href=\"http"), "no external links");
    for section in [
        "Summary",
        "Findings by API",
        "Findings by standard",
        "Controls in place",
    ] {
        assert!(
            html.contains(&format!("<h2>{section}</h2>")),
            "{section} missing"
        );
    }
}

/// Headless Chromium without network access of its own.
const CHROMIUM_FLAGS: [&str; 7] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
];

/// Renders the payments report in headless Chromium, when installed, and
/// checks that a screenshot comes out.
#[test]
fn html_report_renders_in_chromium() {
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        // scripts/test-all.sh installs it and sets this, so CI never skips.
        assert!(
            std::env::var_os("PORTCULLIS_REQUIRE_CHROMIUM").is_none(),
            "PORTCULLIS_REQUIRE_CHROMIUM is set but /usr/bin/chromium is missing"
        );
        eprintln!("skipped: /usr/bin/chromium is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.html");
    let screenshot = dir.path().join("report.png");
    let output = review(&[
        "-c",
        "examples/payments/portcullis.yaml",
        "--openapi",
        "examples/payments/payments-api.yaml",
        "--openapi",
        "examples/payments/cards-api.yaml",
        "--format",
        "html",
        "-o",
        report.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let profile = dir.path().join("profile");
    let status = Command::new(chromium)
        .args(CHROMIUM_FLAGS)
        .arg("--window-size=1280,2000")
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(format!("file://{}", report.display()))
        .output()
        .expect("chromium runs");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let dom = Command::new(chromium)
        .args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", report.display()))
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&dom.stdout);
    for rendered in ["PX-AUTH-002", "PX-DATA-001", "<table", "critical"] {
        assert!(
            dom.contains(rendered),
            "the rendered page lacks {rendered:?}"
        );
    }

    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    assert!(
        png.len() > 20_000,
        "the screenshot looks empty: {} bytes",
        png.len()
    );
}
