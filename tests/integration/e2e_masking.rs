//! End-to-end response masking: the gateway binary between the Express
//! upstream's personal-data endpoints (`tests/fixtures/lib/pii.js`) and
//! the client, with tokens from the real OIDC provider.
//!
//! Routes under test, all with the same rules:
//!
//! | route | path | mask settings |
//! | --- | --- | --- |
//! | pii | /pii/{*rest} | on_error: block, unmask_scope: read:pii |
//! | pii-pass | /pii-pass/{*rest} | on_error: pass |
//! | pii-small | /pii-small/{*rest} | max_body_bytes: 4KiB |

use crate::common;

use common::{config_for, Gateway, Provider, ProviderOptions, Response, Upstream};
use http::Method;
use serde_json::Value;

/// A pseudonym key of 32 bytes.
const PSEUDONYM_KEY: &str = "e2e-masking-pseudonym-key-000001";

const RULES: &str = "\
fields:
  - { path: \"$[*].ssn\", style: redact }
  - { path: \"$..card.number\", style: pci }
  - { path: \"$..email\", style: pseudonym }
  - { path: \"$[1].name\", style: redact }
  - { path: \"$[0]['name']\", style: redact }
detectors:
  - { type: card, style: pci }
  - { type: email }
  - { type: phone }
  - { type: iban }
  - { type: pattern, name: order_ref, regex: \"ORD-[0-9]{8}\", style: redact }
unmask_scope: read:pii";

/// The upstream, provider and gateway of every test here, plus the
/// directory of the pseudonym key file.
struct Setup {
    upstream: Upstream,
    provider: Provider,
    gateway: Gateway,
    _key_dir: tempfile::TempDir,
}

fn route(id: &str, extra: &str) -> String {
    let rules = format!("{RULES}\n{extra}").trim_end().replace('\n', "\n  ");
    format!(
        "id: {id}\nmatch: {{ path: \"/{id}/{{*rest}}\", methods: [GET] }}\nupstream: users\nrequire: {{ scopes: [read:users] }}\nmask:\n  {rules}"
    )
}

async fn start() -> Setup {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let key_dir = tempfile::tempdir().unwrap();
    let key_path = key_dir.path().join("pseudonym.key");
    std::fs::write(&key_path, PSEUDONYM_KEY).unwrap();

    let mut yaml = config_for(&upstream, &[&provider])
        .route(&route("pii", ""))
        .route(&route("pii-pass", "on_error: pass"))
        .route(&route("pii-small", "max_body_bytes: 4KiB"))
        .yaml();
    yaml.push_str(&format!(
        "\nmasking:\n  pseudonym_key: {{ file: \"{}\" }}\n",
        key_path.display()
    ));
    let gateway = Gateway::start(&yaml).await;
    Setup {
        upstream,
        provider,
        gateway,
        _key_dir: key_dir,
    }
}

async fn get(setup: &Setup, path: &str, token: &str) -> Response {
    setup.gateway.get(path).bearer(token).send().await
}

/// Asserts the headers every masked body gets.
#[track_caller]
fn assert_masked_headers(response: &Response, case: &str) {
    assert_eq!(
        response.status(),
        200,
        "{case}: status; {}",
        response.text()
    );
    assert_eq!(response.header("content-encoding"), None, "{case}");
    assert_eq!(response.header("transfer-encoding"), None, "{case}");
    let length: usize = response
        .header("content-length")
        .unwrap_or_else(|| panic!("{case}: no Content-Length"))
        .parse()
        .unwrap();
    assert_eq!(length, response.text().len(), "{case}: Content-Length");
    for stale in ["etag", "content-md5", "digest", "accept-ranges"] {
        assert_eq!(response.header(stale), None, "{case}: {stale} kept");
    }
    assert_eq!(
        response.header("cache-control"),
        Some("private, max-age=60"),
        "{case}"
    );
    assert_eq!(response.header("vary"), Some("authorization"), "{case}");
}

fn is_pseudonym(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|text| text.len() == 19 && text.starts_with("pn_"))
}

#[tokio::test]
async fn each_rule_masks_users_list() {
    let setup = start().await;
    let token = setup.provider.token("reader", "read:users").await;

    let response = get(&setup, "/pii/users", &token).await;

    assert_masked_headers(&response, "identity");
    let body = response.json();
    let cases = [
        ("wildcard then name", "/0/ssn", "[REDACTED]"),
        ("wildcard on second item", "/1/ssn", "[REDACTED]"),
        ("quoted name in brackets", "/0/name", "[REDACTED]"),
        ("index", "/1/name", "[REDACTED]"),
        (
            "descendant path, pci",
            "/0/card/number",
            "4111 11** **** 1111",
        ),
        ("descendant path, amex", "/1/card/number", "378282*****0005"),
        (
            "card detector in text",
            "/0/notes",
            "paid with 5500-00**-****-0004 for [REDACTED]",
        ),
        ("unicode-escaped card", "/0/legacy_card", "411111******1111"),
        (
            "card as a JSON number",
            "/0/account_number",
            "401288******1881",
        ),
        ("phone +44", "/0/phone", "[REDACTED]"),
        ("phone north american", "/1/phone", "[REDACTED]"),
        (
            "phone in nested arrays",
            "/1/contacts/0/0/phone",
            "[REDACTED]",
        ),
        ("iban grouped", "/0/iban", "[REDACTED]"),
        ("iban unbroken", "/1/iban", "[REDACTED]"),
        ("no sensitive data", "/1/notes", "no card on file"),
        ("expiry kept", "/0/card/expiry", "12/29"),
    ];
    for (description, pointer, expected) in cases {
        assert_eq!(
            body.pointer(pointer),
            Some(&Value::from(expected)),
            "{description}"
        );
    }
    assert_eq!(body.pointer("/0/id"), Some(&Value::from(1)), "ids kept");
    for pointer in ["/0/email", "/1/email", "/1/contacts/0/0/email"] {
        let value = body.pointer(pointer).unwrap();
        assert!(is_pseudonym(value), "{pointer} is {value}");
    }
    assert_ne!(body.pointer("/0/email"), body.pointer("/1/email"));

    let again = get(&setup, "/pii/users", &token).await.json();
    assert_eq!(
        again.pointer("/0/email"),
        body.pointer("/0/email"),
        "stable pseudonym"
    );

    let metrics = setup.gateway.metrics().await;
    let masked = metrics.value("portcullis_masked_values_total", &[("route", "pii")]);
    // 9 values selected by fields and 8 strings or numbers with detector
    // matches (a string with two matches counts once), per response.
    assert_eq!(masked, 2.0 * 17.0, "masked values of two responses");
}

#[tokio::test]
async fn each_encoding_masked_alike() {
    let setup = start().await;
    let token = setup.provider.token("reader", "read:users").await;
    let identity = get(&setup, "/pii/users", &token).await.json();

    let encodings = ["gzip", "deflate", "deflate-raw", "br", "chunked"];
    for encoding in encodings {
        let path = format!("/pii/users?encoding={encoding}");
        let response = get(&setup, &path, &token).await;

        assert_masked_headers(&response, encoding);
        assert_eq!(response.json(), identity, "{encoding}");
    }
}

#[tokio::test]
async fn unmask_scope_sees_clear_values() {
    let setup = start().await;
    let auditor = setup.provider.token("auditor", "read:users read:pii").await;

    let response = get(&setup, "/pii/users", &auditor).await;

    assert_eq!(response.status(), 200);
    let body = response.json();
    assert_eq!(body.pointer("/0/ssn"), Some(&Value::from("123-45-6789")));
    assert_eq!(
        body.pointer("/0/email"),
        Some(&Value::from("ann@example.com"))
    );
    assert_eq!(response.header("etag"), Some("\"users-v1\""));
    assert_eq!(response.header("vary"), Some("authorization"));
    assert_eq!(
        response.header("cache-control"),
        Some("private, max-age=60")
    );

    let gzip = get(&setup, "/pii/users?encoding=gzip", &auditor).await;
    assert_eq!(
        gzip.header("content-encoding"),
        Some("gzip"),
        "sent as encoded"
    );
}

#[tokio::test]
async fn text_masked_by_detectors() {
    let setup = start().await;
    let token = setup.provider.token("reader", "read:users").await;

    let response = get(&setup, "/pii/text", &token).await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text(),
        "Ann <[REDACTED]> paid with 4111-11**-****-1111, call [REDACTED], IBAN [REDACTED], ref [REDACTED]\n"
    );
    let length: usize = response.header("content-length").unwrap().parse().unwrap();
    assert_eq!(length, response.text().len());
}

#[tokio::test]
async fn unmaskable_responses_follow_on_error() {
    let setup = start().await;
    let token = setup.provider.token("reader", "read:users").await;

    // (description, path, status, reason label, sent unmasked)
    let cases = [
        (
            "invalid json blocked",
            "/pii/invalid",
            502,
            "invalid_json",
            false,
        ),
        (
            "invalid json passed",
            "/pii-pass/invalid",
            200,
            "invalid_json",
            true,
        ),
        (
            "over the limit blocked",
            "/pii/big?kb=1100",
            502,
            "body_too_large",
            false,
        ),
        (
            "over the limit passed",
            "/pii-pass/big?kb=1100",
            200,
            "body_too_large",
            true,
        ),
        (
            "small limit blocked",
            "/pii-small/big?kb=8",
            502,
            "body_too_large",
            false,
        ),
        (
            "decompression bomb blocked",
            "/pii/bomb",
            502,
            "body_too_large",
            false,
        ),
        (
            "decompression bomb passed",
            "/pii-pass/bomb",
            200,
            "body_too_large",
            true,
        ),
        (
            "unknown coding blocked",
            "/pii/zstd",
            502,
            "unknown_encoding",
            false,
        ),
        (
            "unknown coding passed",
            "/pii-pass/zstd",
            200,
            "unknown_encoding",
            true,
        ),
        (
            "corrupt gzip blocked",
            "/pii/corrupt",
            502,
            "invalid_encoding",
            false,
        ),
        (
            "partial content blocked",
            "/pii/partial",
            502,
            "partial_content",
            false,
        ),
        (
            "partial content passed",
            "/pii-pass/partial",
            206,
            "partial_content",
            true,
        ),
        (
            "binary body blocked",
            "/pii/binary",
            502,
            "unsupported_content_type",
            false,
        ),
    ];
    for (description, path, status, _, passed) in cases {
        let response = get(&setup, path, &token).await;

        assert_eq!(response.status(), status, "{description}");
        if passed {
            continue;
        }
        assert_eq!(
            response.reason().as_deref(),
            Some("response_unmaskable"),
            "{description}"
        );
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json"),
            "{description}"
        );
    }

    let metrics = setup.gateway.metrics().await;
    for (description, path, _, reason, passed) in cases {
        let route = path.trim_start_matches('/').split('/').next().unwrap();
        let labels = [("route", route), ("reason", reason)];
        assert!(
            metrics.value("portcullis_masking_failures_total", &labels) >= 1.0,
            "{description}: failure counted"
        );
        let passes = metrics.value("portcullis_masking_passes_total", &labels);
        assert_eq!(passes > 0.0, passed, "{description}: pass counted");
    }
    let logs = setup.gateway.logs();
    for value in ["ann@example.com", "4111", "ORD-12345678"] {
        assert!(!logs.contains(value), "{value} logged");
    }
}

#[tokio::test]
async fn passed_bodies_arrive_whole() {
    let setup = start().await;
    let token = setup.provider.token("reader", "read:users").await;

    let big = get(&setup, "/pii-pass/big?kb=1100", &token).await;
    let bomb = get(&setup, "/pii-pass/bomb", &token).await;
    let invalid = get(&setup, "/pii-pass/invalid", &token).await;

    let items: Vec<Value> = serde_json::from_str(&big.text()).expect("whole JSON array");
    assert_eq!(items.len(), 1100);
    assert_eq!(bomb.header("content-encoding"), Some("gzip"));
    assert!(bomb.text().len() < 1 << 20, "the bomb is passed compressed");
    assert_eq!(
        invalid.text(),
        "{\"users\": [{\"email\": \"ann@example.com\""
    );
}

#[tokio::test]
async fn range_requests_get_whole_masked_body() {
    let setup = start().await;
    let token = setup.provider.token("reader", "read:users").await;

    let response = setup
        .gateway
        .get("/pii/users")
        .bearer(&token)
        .header("range", "bytes=0-10")
        .header("if-range", "\"users-v1\"")
        .header("accept-encoding", "zstd, gzip;q=0.5")
        .send()
        .await;

    assert_masked_headers(&response, "range request");
    let requests = setup.upstream.requests().await;
    let forwarded = requests.last().unwrap();
    assert_eq!(forwarded.header("range"), None);
    assert_eq!(forwarded.header("if-range"), None);
    assert_eq!(forwarded.header("accept-encoding"), Some("gzip;q=0.5"));
}

#[tokio::test]
async fn bodiless_responses_pass() {
    let setup = start().await;
    let token = setup.provider.token("reader", "read:users").await;

    let head = setup
        .gateway
        .request(Method::HEAD, "/pii/users")
        .bearer(&token)
        .send()
        .await;
    let empty = get(&setup, "/pii/empty", &token).await;

    assert_eq!(head.status(), 200);
    assert_eq!(head.text(), "");
    assert_eq!(empty.status(), 204);
    assert_eq!(empty.text(), "");
}
