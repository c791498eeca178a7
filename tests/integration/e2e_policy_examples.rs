//! The example policies of `examples/users-api/policies` end to end: a
//! gateway serving two tenants (acme and globex, distinguished by host), each
//! owning the issuer of its own OIDC provider process, in front of the
//! Express upstream. Routes decide by the example rules:
//!
//! | route | method and path | tier 1 | rule |
//! | --- | --- | --- | --- |
//! | get-user | GET /users/{id} | read:users | data.users.allow_read |
//! | update-user | PUT /users/{id} | write:users | data.users.allow_write |
//! | create-user | POST /users | write:users | data.users.allow_write |
//! | delete-user | DELETE /users/{id} | write:users | data.users.allow_delete |
//!
//! The directory in `data.json` puts u-alice and u-bob in acme and u-carol
//! in globex. acme reads roles from `realm_access.roles` (Keycloak),
//! globex from `roles` (Entra). The upstream returns 404 for these ids, so
//! what each case checks is whether the request reached the upstream, by
//! its recorded requests, and which decision the gateway logged.

use crate::common;

use common::tenants::{tenant_host, tenants_config, TenantSource, TenantSpec};
use common::{unix_now, Gateway, Provider, ProviderOptions, Response, TokenForge, Upstream};
use http::Method;
use serde_json::{json, Value};

/// The example bundle, loaded as it is shipped.
const POLICIES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/users-api/policies");

/// The users routes, each deciding by one example rule. They replace the
/// routes of [`tenants_config`].
const POLICY_ROUTES: &str = "\
routes:
  - id: get-user
    match: { path: \"/users/{id}\", methods: [GET] }
    upstream: users
    require: { scopes: [read:users], policy: data.users.allow_read }
    rate_limits: per-subject

  - id: update-user
    match: { path: \"/users/{id}\", methods: [PUT] }
    upstream: users
    require: { scopes: [write:users], policy: data.users.allow_write }
    rate_limits: per-subject

  - id: create-user
    match: { path: /users, methods: [POST] }
    upstream: users
    require: { scopes: [write:users], policy: data.users.allow_write }
    rate_limits: per-subject

  - id: delete-user
    match: { path: \"/users/{id}\", methods: [DELETE] }
    upstream: users
    require: { scopes: [write:users], policy: data.users.allow_delete }
    rate_limits: per-subject
";

/// Returns the `policies` section. The budget is generous because the
/// tests run a debug build on a shared 2-core machine, where a budget
/// overrun would turn a decision into `policy_error`.
fn policies_section() -> String {
    format!("\npolicies:\n  paths: [\"{POLICIES_DIR}\"]\n  budget: 250ms\n  cache: {{ ttl: 60s, max_entries: 1000 }}\n")
}

const READ_AND_WRITE: &str = "read:users write:users";

/// The upstream, one provider per tenant, and the gateway in front.
struct Stack {
    upstream: Upstream,
    acme: Provider,
    globex: Provider,
    gateway: Gateway,
}

impl Stack {
    async fn start() -> Stack {
        let upstream = Upstream::start();
        let acme = Provider::start(ProviderOptions {
            tenant_claim: Some("acme".into()),
            ..Default::default()
        });
        let globex = Provider::start(ProviderOptions {
            tenant_claim: Some("globex".into()),
            ..Default::default()
        });

        let tenants = tenants_config(&upstream, TenantSource::Host)
            .tenant(TenantSpec::new("acme", &acme).claims("{ roles: [realm_access.roles] }"))
            .tenant(TenantSpec::new("globex", &globex).claims("{ roles: [roles] }"))
            .yaml();
        let (head, _routes) = tenants
            .split_once("\nroutes:\n")
            .expect("the tenant configuration has a routes section");
        let yaml = format!("{head}\n{POLICY_ROUTES}{}", policies_section());

        let gateway = Gateway::start(&yaml).await;
        Stack {
            upstream,
            acme,
            globex,
            gateway,
        }
    }

    fn provider(&self, tenant: &str) -> &Provider {
        match tenant {
            "acme" => &self.acme,
            "globex" => &self.globex,
            other => panic!("no provider for tenant {other}"),
        }
    }

    /// Forges a token of `tenant`'s provider for `subject` with `scope`,
    /// holding `roles` in the claim that tenant's mapping reads.
    fn user(&self, tenant: &str, subject: &str, scope: &str, roles: &[&str]) -> TokenForge {
        let roles = json!(roles);
        let forge = self
            .provider(tenant)
            .forge()
            .subject(subject)
            .scope(scope)
            .claim("tenant_id", json!(tenant));
        match tenant {
            "acme" => forge.claim("realm_access", json!({ "roles": roles })),
            _ => forge.claim("roles", roles),
        }
    }

    /// Sends `method path` to `tenant`'s host with `token`. Writes carry a
    /// JSON user.
    async fn send(&self, tenant: &str, method: &Method, path: &str, token: &str) -> Response {
        let request = self
            .gateway
            .request(method.clone(), path)
            .header("host", &tenant_host(tenant))
            .bearer(token);
        match *method {
            Method::POST | Method::PUT => {
                request
                    .json(&json!({ "name": "Dana Reyes", "email": "dana@example.test" }))
                    .send()
                    .await
            }
            _ => request.send().await,
        }
    }

    /// Sends one case and asserts its outcome at the client, at the
    /// upstream and in the decision log.
    async fn check(&self, case: &Case) {
        self.upstream.reset().await;
        let logged_before = decision_records(&self.gateway).len();

        let response = self
            .send(case.tenant, &case.method, case.path, &case.token)
            .await;

        let label = format!(
            "{} ({} {} on {})",
            case.description, case.method, case.path, case.tenant
        );
        let decisions = decision_records(&self.gateway).split_off(logged_before);
        let requests = self.upstream.requests().await;
        match case.expect {
            Expect::Forwarded => {
                assert_eq!(
                    response.status(),
                    404,
                    "{label}: status; body {}",
                    response.text()
                );
                assert_eq!(
                    response.json()["error"],
                    "not_found",
                    "{label}: the 404 is not the upstream's"
                );
                assert_eq!(requests.len(), 1, "{label}: upstream requests");
                assert_eq!(
                    requests[0].method,
                    case.method.as_str(),
                    "{label}: upstream method"
                );
                assert_eq!(requests[0].url, case.path, "{label}: upstream path");
                assert_eq!(
                    requests[0].raw_values("x-portcullis-tenant"),
                    [case.tenant],
                    "{label}: verified tenant header"
                );
                assert_eq!(
                    decisions.len(),
                    1,
                    "{label}: decision records {decisions:?}"
                );
                assert_eq!(
                    decisions[0]["decision.allowed"], true,
                    "{label}: logged decision"
                );
                assert_eq!(
                    decisions[0]["tenant.id"], case.tenant,
                    "{label}: logged tenant"
                );
            }
            Expect::Denied(reason) => {
                assert_eq!(
                    response.status(),
                    403,
                    "{label}: status; body {}",
                    response.text()
                );
                assert_eq!(
                    response.reason().as_deref(),
                    Some(reason),
                    "{label}: reason"
                );
                assert!(
                    requests.is_empty(),
                    "{label}: a denied request reached the upstream: {requests:?}"
                );
                if reason == "policy_denied" {
                    assert_eq!(
                        decisions.len(),
                        1,
                        "{label}: decision records {decisions:?}"
                    );
                    assert_eq!(
                        decisions[0]["decision.allowed"], false,
                        "{label}: logged decision"
                    );
                    assert_eq!(
                        decisions[0]["reason"], "policy_denied",
                        "{label}: logged reason"
                    );
                    assert_eq!(
                        decisions[0]["tenant.id"], case.tenant,
                        "{label}: logged tenant"
                    );
                } else {
                    assert!(decisions.is_empty(), "{label}: denied before the policy, yet a decision was logged: {decisions:?}");
                }
            }
        }
    }
}

/// Adds `amr` and an `auth_time` `age_seconds` ago (negative: in the
/// future) to a token.
fn login(forge: TokenForge, amr: &[&str], age_seconds: i64) -> TokenForge {
    let auth_time = unix_now() as i64 - age_seconds;
    forge
        .claim("amr", json!(amr))
        .claim("auth_time", json!(auth_time))
}

/// What a case expects.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Allowed and forwarded: exactly this request reaches the upstream.
    Forwarded,
    /// 403 with this reason, and nothing reaches the upstream.
    Denied(&'static str),
}

/// One request: a one-line description, the addressed tenant, the request
/// and what must happen.
struct Case {
    description: &'static str,
    tenant: &'static str,
    method: Method,
    path: &'static str,
    token: String,
    expect: Expect,
}

fn case(
    description: &'static str,
    tenant: &'static str,
    method: Method,
    path: &'static str,
    token: String,
    expect: Expect,
) -> Case {
    Case {
        description,
        tenant,
        method,
        path,
        token,
        expect,
    }
}

/// Returns the `fields` of every `decision_log` record the gateway wrote
/// so far, oldest first.
fn decision_records(gateway: &Gateway) -> Vec<Value> {
    gateway
        .logs()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| record["target"] == "decision_log")
        .map(|record| record["fields"].clone())
        .collect()
}

const POLICY_DENIED: Expect = Expect::Denied("policy_denied");

#[tokio::test]
async fn delete_only_by_admin_of_user_tenant() {
    let stack = Stack::start().await;
    let writer = stack.acme.token("writer", READ_AND_WRITE).await;
    let acme_admin = || {
        stack
            .user("acme", "admin-1", READ_AND_WRITE, &["admin"])
            .sign()
    };
    let globex_admin = || {
        stack
            .user("globex", "admin-2", READ_AND_WRITE, &["admin"])
            .sign()
    };
    // Tokens with admin only in the claim the other tenant's mapping reads.
    let acme_admin_in_roles = stack
        .user("acme", "admin-1", READ_AND_WRITE, &[])
        .claim("roles", json!(["admin"]))
        .sign();
    let globex_admin_in_realm_access = stack
        .user("globex", "admin-2", READ_AND_WRITE, &[])
        .claim("realm_access", json!({ "roles": ["admin"] }))
        .sign();
    let acme_user = stack
        .user("acme", "u-alice", READ_AND_WRITE, &["user"])
        .sign();
    let acme_admin_read_only = stack
        .user("acme", "admin-1", "read:users", &["admin"])
        .sign();
    let delete = Method::DELETE;

    let cases = [
        case(
            "acme admin deletes acme's u-alice",
            "acme",
            delete.clone(),
            "/users/u-alice",
            acme_admin(),
            Expect::Forwarded,
        ),
        case(
            "acme admin deletes acme's u-bob",
            "acme",
            delete.clone(),
            "/users/u-bob",
            acme_admin(),
            Expect::Forwarded,
        ),
        case(
            "globex admin deletes globex's u-carol",
            "globex",
            delete.clone(),
            "/users/u-carol",
            globex_admin(),
            Expect::Forwarded,
        ),
        case(
            "acme admin may not delete globex's u-carol",
            "acme",
            delete.clone(),
            "/users/u-carol",
            acme_admin(),
            POLICY_DENIED,
        ),
        case(
            "acme user without the admin role",
            "acme",
            delete.clone(),
            "/users/u-bob",
            acme_user,
            POLICY_DENIED,
        ),
        case(
            "admin only in roles, which acme's mapping does not read",
            "acme",
            delete.clone(),
            "/users/u-bob",
            acme_admin_in_roles,
            POLICY_DENIED,
        ),
        case(
            "admin only in realm_access.roles, which globex's mapping does not read",
            "globex",
            delete.clone(),
            "/users/u-carol",
            globex_admin_in_realm_access,
            POLICY_DENIED,
        ),
        case(
            "provider's writer token holds no role",
            "acme",
            delete.clone(),
            "/users/u-bob",
            writer,
            POLICY_DENIED,
        ),
        // The route has no tenant parameter to judge a user the directory
        // does not list, so the rule stays false.
        case(
            "user missing from the directory",
            "acme",
            delete.clone(),
            "/users/u-dave",
            acme_admin(),
            POLICY_DENIED,
        ),
        case(
            "admin without write:users stops at tier 1",
            "acme",
            delete.clone(),
            "/users/u-bob",
            acme_admin_read_only,
            Expect::Denied("insufficient_scope"),
        ),
    ];
    for case in &cases {
        stack.check(case).await;
    }
}

#[tokio::test]
async fn globex_admin_deleting_acme_user_forbidden() {
    let stack = Stack::start().await;
    let token = stack
        .user("globex", "admin-2", READ_AND_WRITE, &["admin"])
        .sign();

    // On acme's host, the credential of globex's issuer addresses another
    // tenant, so the tenant binding rejects it before any rule runs.
    let on_acme = case(
        "globex admin on acme's host",
        "acme",
        Method::DELETE,
        "/users/u-alice",
        token.clone(),
        Expect::Denied("tenant_mismatch"),
    );
    stack.check(&on_acme).await;
    let logs = stack.gateway.logs();
    let warning = logs
        .lines()
        .find(|line| line.contains("credential used outside its tenant"))
        .expect("a tenant_mismatch warning in the logs");
    assert!(
        warning.contains("\"tenant.addressed\":\"acme\""),
        "{warning}"
    );
    assert!(
        warning.contains("\"tenant.credential\":\"globex\""),
        "{warning}"
    );

    // On its own host the tenant binding passes and the rule denies,
    // because the directory puts u-alice in acme and the input's tenant is
    // globex.
    let on_globex = case(
        "globex admin on globex's host",
        "globex",
        Method::DELETE,
        "/users/u-alice",
        token,
        POLICY_DENIED,
    );
    stack.check(&on_globex).await;
    let decisions = decision_records(&stack.gateway);
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert_eq!(decisions[0]["policy.rule"], "data.users.allow_delete");
    assert_eq!(decisions[0]["route.id"], "delete-user");
    assert_eq!(decisions[0]["identity.subject"], "admin-2");
    assert_eq!(decisions[0]["cached"], false);
}

#[tokio::test]
async fn read_own_record_unless_read_all() {
    let stack = Stack::start().await;
    let reader = stack.acme.token("reader", "read:users").await;
    let alice = |scope: &str| stack.user("acme", "u-alice", scope, &[]).sign();
    let acme_admin = stack
        .user("acme", "admin-1", "read:users", &["admin"])
        .sign();
    let carol = stack.user("globex", "u-carol", "read:users", &[]).sign();
    let get = Method::GET;

    let cases = [
        case(
            "u-alice reads her own record",
            "acme",
            get.clone(),
            "/users/u-alice",
            alice("read:users"),
            Expect::Forwarded,
        ),
        case(
            "u-alice reads u-bob's record",
            "acme",
            get.clone(),
            "/users/u-bob",
            alice("read:users"),
            POLICY_DENIED,
        ),
        case(
            "ids compare case-sensitively",
            "acme",
            get.clone(),
            "/users/U-ALICE",
            alice("read:users"),
            POLICY_DENIED,
        ),
        case(
            "read:users:all reads any record",
            "acme",
            get.clone(),
            "/users/u-bob",
            alice("read:users read:users:all"),
            Expect::Forwarded,
        ),
        case(
            "the admin role does not grant reading",
            "acme",
            get.clone(),
            "/users/u-bob",
            acme_admin,
            POLICY_DENIED,
        ),
        case(
            "provider's reader token reads its own subject",
            "acme",
            get.clone(),
            "/users/reader",
            reader.clone(),
            Expect::Forwarded,
        ),
        case(
            "provider's reader token reads u-alice",
            "acme",
            get.clone(),
            "/users/u-alice",
            reader,
            POLICY_DENIED,
        ),
        case(
            "u-carol reads her own record on globex",
            "globex",
            get.clone(),
            "/users/u-carol",
            carol,
            Expect::Forwarded,
        ),
        case(
            "read:users:all without read:users stops at tier 1",
            "acme",
            get.clone(),
            "/users/u-bob",
            alice("read:users:all"),
            Expect::Denied("insufficient_scope"),
        ),
    ];
    for case in &cases {
        stack.check(case).await;
    }
}

#[tokio::test]
async fn write_needs_mfa_within_ten_minutes() {
    let stack = Stack::start().await;
    let writer = stack.acme.token("writer", READ_AND_WRITE).await;
    let alice = |amr: &[&str], age_seconds| {
        login(
            stack.user("acme", "u-alice", READ_AND_WRITE, &[]),
            amr,
            age_seconds,
        )
        .sign()
    };
    let admin = |amr: &[&str], age_seconds| {
        login(
            stack.user("acme", "admin-1", READ_AND_WRITE, &["admin"]),
            amr,
            age_seconds,
        )
        .sign()
    };
    let alice_without_login = stack.user("acme", "u-alice", READ_AND_WRITE, &[]).sign();
    let mfa = ["pwd", "mfa"];
    let put = Method::PUT;

    let cases = [
        case(
            "MFA 2 minutes ago, own record",
            "acme",
            put.clone(),
            "/users/u-alice",
            alice(&mfa, 120),
            Expect::Forwarded,
        ),
        case(
            "MFA 9 minutes ago, own record",
            "acme",
            put.clone(),
            "/users/u-alice",
            alice(&mfa, 540),
            Expect::Forwarded,
        ),
        case(
            "MFA 11 minutes ago",
            "acme",
            put.clone(),
            "/users/u-alice",
            alice(&mfa, 660),
            POLICY_DENIED,
        ),
        case(
            "recent login without mfa in amr",
            "acme",
            put.clone(),
            "/users/u-alice",
            alice(&["pwd"], 120),
            POLICY_DENIED,
        ),
        case(
            "auth_time 5 minutes ahead, past the 60 s skew",
            "acme",
            put.clone(),
            "/users/u-alice",
            alice(&mfa, -300),
            POLICY_DENIED,
        ),
        case(
            "no amr and no auth_time",
            "acme",
            put.clone(),
            "/users/u-alice",
            alice_without_login,
            POLICY_DENIED,
        ),
        case(
            "recent MFA, another user's record",
            "acme",
            put.clone(),
            "/users/u-bob",
            alice(&mfa, 120),
            POLICY_DENIED,
        ),
        case(
            "admin with recent MFA writes u-bob",
            "acme",
            put.clone(),
            "/users/u-bob",
            admin(&mfa, 120),
            Expect::Forwarded,
        ),
        case(
            "admin with MFA 11 minutes ago",
            "acme",
            put.clone(),
            "/users/u-bob",
            admin(&mfa, 660),
            POLICY_DENIED,
        ),
        case(
            "admin with recent MFA, globex's u-carol",
            "acme",
            put.clone(),
            "/users/u-carol",
            admin(&mfa, 120),
            POLICY_DENIED,
        ),
        case(
            "provider's writer token carries no amr",
            "acme",
            put.clone(),
            "/users/writer",
            writer,
            POLICY_DENIED,
        ),
        // allow_write judges an existing record (the caller's own, or one
        // of the admin's tenant), so a create, which has no id, is denied.
        case(
            "create by an admin with recent MFA",
            "acme",
            Method::POST,
            "/users",
            admin(&mfa, 120),
            POLICY_DENIED,
        ),
    ];
    for case in &cases {
        stack.check(case).await;
    }
}

#[tokio::test]
async fn decision_cache_separate_per_tenant() {
    let stack = Stack::start().await;
    // The same request from an admin of each tenant: same subject, roles in
    // both tenants' role claims, same path. Only the tenant, its issuer and
    // host differ. u-bob belongs to acme, so only acme's may be allowed.
    // Because the tenant and host are part of the input too, the tenant
    // member of the cache key alone is checked in tests/integration/decision_cache.rs.
    let admin = |tenant: &str| {
        stack
            .user(tenant, "admin-1", READ_AND_WRITE, &["admin"])
            .claim("realm_access", json!({ "roles": ["admin"] }))
            .claim("roles", json!(["admin"]))
            .sign()
    };
    // (tenant, token, status, reason): acme's request reaches the upstream,
    // which returns 404, and globex's is denied by the rule.
    let requests = [
        ("acme", admin("acme"), 404, None),
        ("globex", admin("globex"), 403, Some("policy_denied")),
    ];

    for round in 1..=2 {
        for (tenant, token, status, reason) in &requests {
            let response = stack
                .send(tenant, &Method::DELETE, "/users/u-bob", token)
                .await;
            assert_eq!(
                response.status(),
                *status,
                "round {round} of {tenant}: status; body {}",
                response.text()
            );
            assert_eq!(
                response.reason().as_deref(),
                *reason,
                "round {round} of {tenant}: reason"
            );
        }
    }

    let decisions = decision_records(&stack.gateway);
    let logged: Vec<(&str, bool, bool)> = decisions
        .iter()
        .map(|record| {
            let tenant = record["tenant.id"].as_str().unwrap_or("none");
            (
                tenant,
                record["decision.allowed"] == true,
                record["cached"] == true,
            )
        })
        .collect();
    let expected = [
        ("acme", true, false),
        ("globex", false, false),
        ("acme", true, true),
        ("globex", false, true),
    ];
    assert_eq!(
        logged, expected,
        "(tenant, allowed, cached) of each decision; records {decisions:?}"
    );

    let forwarded = stack.upstream.requests().await;
    let tenants: Vec<Vec<&str>> = forwarded
        .iter()
        .map(|r| r.raw_values("x-portcullis-tenant"))
        .collect();
    assert_eq!(
        tenants,
        [["acme"], ["acme"]],
        "tenants of the forwarded requests"
    );
}

#[tokio::test]
async fn denied_requests_never_reach_upstream() {
    let stack = Stack::start().await;
    let user = |tenant, subject, scope, roles: &[&str]| stack.user(tenant, subject, scope, roles);
    let mfa = ["pwd", "mfa"];
    // Every rule, both tenants, no reset in between.
    let attempts = [
        (
            "acme",
            Method::DELETE,
            "/users/u-bob",
            user("acme", "u-alice", READ_AND_WRITE, &["user"]).sign(),
        ),
        (
            "acme",
            Method::DELETE,
            "/users/u-carol",
            user("acme", "admin-1", READ_AND_WRITE, &["admin"]).sign(),
        ),
        (
            "globex",
            Method::DELETE,
            "/users/u-alice",
            user("globex", "admin-2", READ_AND_WRITE, &["admin"]).sign(),
        ),
        (
            "acme",
            Method::GET,
            "/users/u-bob",
            user("acme", "u-alice", "read:users", &[]).sign(),
        ),
        (
            "globex",
            Method::GET,
            "/users/u-alice",
            user("globex", "u-carol", "read:users", &[]).sign(),
        ),
        (
            "acme",
            Method::PUT,
            "/users/u-alice",
            login(user("acme", "u-alice", READ_AND_WRITE, &[]), &mfa, 660).sign(),
        ),
        (
            "acme",
            Method::POST,
            "/users",
            login(
                user("acme", "admin-1", READ_AND_WRITE, &["admin"]),
                &mfa,
                60,
            )
            .sign(),
        ),
        (
            "globex",
            Method::PUT,
            "/users/u-carol",
            login(user("globex", "u-carol", READ_AND_WRITE, &[]), &["pwd"], 60).sign(),
        ),
    ];

    for (tenant, method, path, token) in &attempts {
        let response = stack.send(tenant, method, path, token).await;
        assert_eq!(
            response.status(),
            403,
            "{method} {path} on {tenant}: {}",
            response.text()
        );
        assert_eq!(
            response.reason().as_deref(),
            Some("policy_denied"),
            "{method} {path} on {tenant}"
        );
    }

    assert_eq!(
        stack.upstream.count().await,
        0,
        "a denied request reached the upstream: {:?}",
        stack.upstream.requests().await
    );
    let denials = stack
        .gateway
        .metrics()
        .await
        .value("portcullis_denials_total", &[("reason", "policy_denied")]);
    assert_eq!(
        denials,
        attempts.len() as f64,
        "policy_denied in portcullis_denials_total"
    );
    let logged_denials = decision_records(&stack.gateway)
        .iter()
        .filter(|record| record["decision.allowed"] == false)
        .count();
    assert_eq!(
        logged_denials,
        attempts.len(),
        "denied decisions in the decision log"
    );
}
