//! Shared rate limits on a Redis Cluster of three masters: GCRA limits and
//! quotas work across slots, and every key carries a hash tag, so each
//! limit's script touches one slot.

use crate::common;

use std::collections::BTreeSet;

use regex::Regex;

use common::*;

/// Subjects that each get a key; enough that their keys land on more than
/// one master unless slots are ignored.
const SUBJECTS: usize = 8;

#[tokio::test]
async fn cluster_store_limits_with_hash_tags() {
    let cluster = RedisCluster::start();
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let store = StoreConfig::cluster(&cluster);
    let prefix = store.key_prefix.clone();
    let config = config_for(&upstream, &[&provider]).rate_limit(3, "1m").route(
        "id: quota-route\nmatch: { path: /faults/headers, methods: [GET] }\nupstream: users\nrequire: { scopes: [read:users] }\nrate_limits: [daily]",
    );
    let yaml = with_store(
        &config.yaml(),
        &store,
        &["daily: { quota: 2, window: day, key: [subject] }"],
    );
    let gateways = [Gateway::start(&yaml).await, Gateway::start(&yaml).await];

    for index in 0..SUBJECTS {
        let token = provider
            .forge()
            .subject(&format!("cluster-subject-{index}"))
            .sign();
        let mut rate = Vec::new();
        for attempt in 0..4 {
            let gateway = &gateways[attempt % 2];
            rate.push(gateway.get("/users").bearer(&token).send().await.status());
        }
        assert_eq!(
            rate,
            vec![200, 200, 200, 429],
            "subject {index}: GCRA 3 per minute"
        );
        let mut quota = Vec::new();
        for attempt in 0..3 {
            let gateway = &gateways[attempt % 2];
            quota.push(
                gateway
                    .get("/faults/headers")
                    .bearer(&token)
                    .send()
                    .await
                    .status(),
            );
        }
        assert_eq!(
            quota,
            vec![200, 200, 429],
            "subject {index}: daily quota of 2"
        );
    }
    assert_eq!(
        upstream.count().await,
        (SUBJECTS * 5) as u64,
        "requests that reached the upstream"
    );

    let tagged = Regex::new(&format!(
        r"^{}:(gcra|quota):\{{([0-9a-f]{{32}})\}}(:[0-9]+)?$",
        regex::escape(&prefix)
    ))
    .expect("the key pattern is valid");
    let keys = cluster.keys(&format!("{prefix}:*"));
    let gcra = keys.iter().filter(|key| key.contains(":gcra:")).count();
    let quota = keys.iter().filter(|key| key.contains(":quota:")).count();
    assert_eq!(gcra, SUBJECTS, "one GCRA key per subject: {keys:?}");
    assert_eq!(quota, SUBJECTS, "one quota key per subject: {keys:?}");
    for key in &keys {
        let tag = tagged
            .captures(key)
            .unwrap_or_else(|| panic!("key {key:?} is not <prefix>:<kind>:{{<32 hex>}}"))[2]
            .to_string();
        let key_slot = cluster.cli(&["CLUSTER", "KEYSLOT", key]);
        let tag_slot = cluster.cli(&["CLUSTER", "KEYSLOT", &tag]);
        assert_eq!(key_slot, tag_slot, "key {key:?} hashes by its tag");
    }

    let masters_used: BTreeSet<u16> = cluster
        .nodes()
        .iter()
        .filter(|node| !node.keys(&format!("{prefix}:*")).is_empty())
        .map(RedisServer::port)
        .collect();
    assert!(
        masters_used.len() >= 2,
        "the keys of {SUBJECTS} subjects all landed on one master: {masters_used:?}"
    );
}
