//! The integration suite, built as one test binary: the end-to-end tests
//! drive real processes on loopback (the gateway binary, an Express
//! upstream, an OIDC provider, Redis servers), the others exercise the
//! library against real files and published test vectors.
//!
//! One binary instead of one per file keeps a fresh build small and quick
//! to link. Run one file's tests with its module name as the filter, for
//! example `cargo test --test integration e2e_redis::`.

mod common;
mod policy_support;

mod attack_catalogue;
mod audit_log;
mod cli_check;
mod cli_check_masking;
mod decision_cache;
mod e2e_api_keys;
mod e2e_attacks;
mod e2e_audit;
mod e2e_auth;
mod e2e_clean_logs;
mod e2e_introspection;
mod e2e_jwks;
mod e2e_masking;
mod e2e_opa_server;
mod e2e_policy;
mod e2e_policy_examples;
mod e2e_policy_obligations;
mod e2e_proxy;
mod e2e_redis;
mod e2e_redis_cluster;
mod e2e_redis_outage;
mod e2e_redis_tls;
mod e2e_reload;
mod e2e_revocation;
mod e2e_smuggling;
mod e2e_step_up;
mod e2e_tenants;
mod e2e_timeouts;
mod e2e_tls;
mod e2e_token_service;
mod opa_oracle;
mod policy_evaluate;
mod policy_input;
mod policy_load;
mod policy_tests;
mod review;
mod wycheproof;
