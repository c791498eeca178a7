//! Clean logs: card numbers, email addresses, subjects and credentials
//! planted in requests, tokens, request bodies and upstream responses never
//! reach a line the gateway writes, at debug level, whichever stage logs,
//! nor its audit trail.

use http::Method;
use serde_json::json;

use crate::common;
use common::{
    config_for, record_credential, AuditFiles, Gateway, Provider, ProviderOptions, Upstream,
};

const CARD: &str = "4111111111111111";
const CARD_DASHED: &str = "5500-0000-0000-0004";
const CARD_SPACED: &str = "3782 822463 10005";
const EMAIL: &str = "planted.person@example.org";
const SUBJECT: &str = "subject-planted-7731";
const COOKIE: &str = "session=planted-cookie-4c1e";
const QUERY_TOKEN: &str = "planted-query-token-91d2";
const BAD_TOKEN: &str = "planted.invalid.token-5f0a";

const POLICY: &str = "package create\n\nallow if startswith(input.body.name, \"A\")\n";

/// Returns the suite's routes with a policy that reads the body on `create-user`,
/// a decision log that includes the whole input, and log scrubbing that
/// pseudonymises subjects.
fn config(
    upstream: &Upstream,
    provider: &Provider,
    policy_dir: &std::path::Path,
    audit: &AuditFiles,
) -> String {
    std::fs::write(policy_dir.join("create.rego"), POLICY).expect("writing the policy");
    let yaml = config_for(upstream, &[provider]).yaml().replacen(
        "    match: { path: /users, methods: [POST] }\n    upstream: users\n    require: { scopes: [write:users] }",
        "    match: { path: /users, methods: [POST] }\n    upstream: users\n    require: { scopes: [write:users], policy: data.create.allow, policy_body: true }",
        1,
    );
    assert!(yaml.contains("policy_body: true"), "the route text changed");
    format!(
        "{yaml}\npolicies:\n  paths: [\"{}\"]\n  decision_log:\n    include_input: true\n\n\
         logging:\n  detectors: [email, phone, iban]\n  pii_fields: [identity.subject]\n{}",
        policy_dir.display(),
        audit.section("")
    )
}

#[tokio::test]
async fn logs_scrub_planted_data() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let policy_dir = tempfile::tempdir().expect("creating a temp dir");
    let audit = AuditFiles::new();
    let config = config(&upstream, &provider, policy_dir.path(), &audit);
    let mut gateway = Gateway::start(&config).await;
    let scopes = "read:users write:users";
    // A client id names an application, not a person, so audit records
    // keep it; the forge would otherwise copy the subject into it.
    let token = |subject: &str| {
        let forge = provider.forge().subject(subject).scope(scopes);
        forge.claim("client_id", json!("reporting-app")).sign()
    };
    let planted_subject = token(SUBJECT);
    let email_subject = token(EMAIL);
    for credential in [COOKIE, QUERY_TOKEN, BAD_TOKEN] {
        record_credential(credential);
    }

    // (description, request, expected status)
    let cases = [
        (
            "card in the path",
            gateway
                .get(&format!("/users/{CARD}"))
                .bearer(&planted_subject),
            400,
        ),
        (
            "dashed card and a token in the query",
            gateway
                .get(&format!(
                    "/users?q={CARD_DASHED}&access_token={QUERY_TOKEN}"
                ))
                .bearer(&planted_subject),
            400,
        ),
        (
            "email in the path, subject pseudonymised",
            gateway
                .get(&format!("/users/{EMAIL}"))
                .bearer(&planted_subject),
            404,
        ),
        (
            "email as the token subject",
            gateway.get("/users").bearer(&email_subject),
            200,
        ),
        (
            "card and email in a body the policy reads and the decision log records",
            gateway
                .request(Method::POST, "/users")
                .bearer(&planted_subject)
                .json(&json!({ "name": format!("Ann {CARD_SPACED}"), "email": EMAIL })),
            201,
        ),
        (
            "planted data in headers echoed back by the upstream",
            gateway
                .request(Method::POST, "/faults/echo")
                .bearer(&planted_subject)
                .header("cookie", COOKIE)
                .header("x-card", CARD)
                .header("x-email", EMAIL)
                .body(format!("card={CARD}")),
            200,
        ),
        (
            "an invalid token",
            gateway
                .get("/users")
                .header("authorization", &format!("Bearer {BAD_TOKEN}")),
            401,
        ),
    ];
    let requests = cases.len();
    for (description, request, expected) in cases {
        let response = request.send().await;
        assert_eq!(
            response.status(),
            expected,
            "{description}: {}",
            response.text()
        );
    }
    let status = gateway.stop().await;
    assert!(status.success(), "the gateway exited with {status}");

    let records = audit.records();
    assert_eq!(
        records.len(),
        requests + 1,
        "one audit record per request and a checkpoint"
    );
    let logs = gateway.logs() + &serde_json::to_string(&records).expect("records as JSON");
    for evidence in [
        "pan_in_url",
        "policy decision",
        "[REDACTED]",
        "\"pn_",
        "request served",
    ] {
        assert!(
            logs.contains(evidence),
            "no log line holds {evidence:?}, so the scan below proves little:\n{logs}"
        );
    }
    let planted = [
        CARD,
        CARD_DASHED,
        CARD_SPACED,
        EMAIL,
        SUBJECT,
        COOKIE,
        QUERY_TOKEN,
        BAD_TOKEN,
        planted_subject.as_str(),
        email_subject.as_str(),
    ];
    for value in planted {
        assert!(
            !logs.contains(value),
            "a gateway log or audit record holds the planted value {value:?}:\n{logs}"
        );
    }
}
