//! Configuration of rate-limit policies: how many requests, per what
//! period, counted per which key.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use crate::config::reader::{found, scalar_text, MapReader};
use crate::ratelimit::gcra::Quota;

/// One part of a rate-limit key. A request is counted under the
/// combination of all parts of a policy's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The client IP (after trusted proxies), IPv6 grouped by prefix.
    Ip,
    /// The token's `sub`.
    Subject,
    /// The client id (`azp`, else `client_id`).
    Client,
    /// The route id.
    Route,
    /// The tenant the request belongs to.
    Tenant,
    /// A claim value, by dotted path.
    Claim(String),
}

/// A named rate-limit policy.
#[derive(Debug)]
pub struct RateLimitPolicy {
    pub name: String,
    pub quota: Quota,
    pub key: Vec<KeyPart>,
}

/// One year as humantime counts it (365.25 days), so messages print "1year".
const MAX_PERIOD: Duration = Duration::from_secs(31_557_600);

const KEY_PARTS: &[&str] = &["ip", "subject", "client", "route", "tenant", "claim:<path>"];

pub fn read_policies(top: &MapReader) -> Option<HashMap<String, Arc<RateLimitPolicy>>> {
    let mut policies = HashMap::new();
    let Some(section) = top.map("rate_limits") else {
        return top.get("rate_limits").is_none().then_some(policies);
    };
    let mut ok = true;
    for (name, key_node, node) in section.named_entries() {
        let path = section.child_path(&name);
        if !is_policy_name(&name) {
            let message = "expected a policy name of letters, digits, '-' and '_' (at most 64)";
            section.problems.at(key_node, &path, message);
            ok = false;
        }
        let Some(map) = MapReader::open(node, &path, section.problems) else {
            ok = false;
            continue;
        };
        match read_policy(&map, &name) {
            Some(policy) => {
                policies.insert(name, Arc::new(policy));
            }
            None => ok = false,
        }
        map.finish();
    }
    ok.then_some(policies)
}

/// Policy names go into the `RateLimit` header as structured-field strings
/// and into metric labels, so they are kept to a safe alphabet.
fn is_policy_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn read_policy(map: &MapReader, name: &str) -> Option<RateLimitPolicy> {
    let requests = map.integer("requests", 1, u32::MAX as u64);
    if map.get("requests").is_none() {
        map.missing("requests", "the number of requests allowed per period");
    }
    let period = map.duration("per", Duration::from_millis(1), MAX_PERIOD);
    if map.get("per").is_none() {
        map.missing("per", "a period such as 1s, 1m or 1h");
    }
    let burst = map.integer("burst", 1, u32::MAX as u64);
    let key = read_key(map);
    let failed_burst = burst.is_none() && map.get("burst").is_some();

    let requests = NonZeroU32::new(requests? as u32)?;
    let burst = burst
        .map(|b| NonZeroU32::new(b as u32).unwrap())
        .unwrap_or(requests);
    let quota = match Quota::with_burst(requests, period?, burst) {
        Ok(quota) => quota,
        Err(error) => {
            map.problems
                .at(map.node, &map.path, format!("invalid quota: {error}"));
            return None;
        }
    };
    if failed_burst {
        return None;
    }
    Some(RateLimitPolicy {
        name: name.to_string(),
        quota,
        key: key?,
    })
}

fn read_key(map: &MapReader) -> Option<Vec<KeyPart>> {
    let Some(items) = map.list("key") else {
        if map.get("key").is_none() {
            map.missing(
                "key",
                "a list of key parts from ip, subject, client, route, tenant, claim:<path>",
            );
        }
        return None;
    };
    let mut parts = Vec::new();
    let mut ok = true;
    for (path, node) in &items {
        let part = match scalar_text(node) {
            Some("ip") => Some(KeyPart::Ip),
            Some("subject") => Some(KeyPart::Subject),
            Some("client") => Some(KeyPart::Client),
            Some("route") => Some(KeyPart::Route),
            Some("tenant") => Some(KeyPart::Tenant),
            Some(text) => text
                .strip_prefix("claim:")
                .filter(|p| !p.is_empty())
                .map(|p| KeyPart::Claim(p.to_string())),
            None => None,
        };
        match part {
            Some(part) => parts.push(part),
            None => {
                let mut message = format!(
                    "expected one of {}, found {}",
                    KEY_PARTS.join(", "),
                    found(node)
                );
                if let Some(s) = scalar_text(node)
                    .and_then(|t| crate::config::reader::did_you_mean(t, KEY_PARTS.iter().copied()))
                {
                    message.push_str(&format!("; did you mean {s:?}?"));
                }
                map.problems.at(node, path, message);
                ok = false;
            }
        }
    }
    if items.is_empty() {
        map.problems.at(
            map.get("key").unwrap(),
            &map.child_path("key"),
            "expected at least one key part",
        );
        ok = false;
    }
    ok.then_some(parts)
}

/// Reads `global_rate_limits`: names of policies applied to every route.
pub fn read_global(
    top: &MapReader,
    declared: &[String],
    policies: Option<&HashMap<String, Arc<RateLimitPolicy>>>,
) -> Option<Vec<Arc<RateLimitPolicy>>> {
    resolve_names(top, "global_rate_limits", declared, policies)
}

/// Resolves a list of policy names (or a single name) under `key`. A name
/// that is declared but whose policy is invalid was already reported.
pub fn resolve_names(
    map: &MapReader,
    key: &'static str,
    declared: &[String],
    policies: Option<&HashMap<String, Arc<RateLimitPolicy>>>,
) -> Option<Vec<Arc<RateLimitPolicy>>> {
    let Some(node) = map.get(key) else {
        return Some(Vec::new());
    };
    let names = map.strings(key)?;
    let mut resolved = Vec::new();
    let mut ok = true;
    for name in names {
        if !declared.contains(&name) {
            let mut message = format!("no rate-limit policy named {name:?} in rate_limits");
            if let Some(s) =
                crate::config::reader::did_you_mean(&name, declared.iter().map(String::as_str))
            {
                message.push_str(&format!("; did you mean {s:?}?"));
            }
            map.problems.at(node, &map.child_path(key), message);
            ok = false;
            continue;
        }
        match policies.and_then(|p| p.get(&name)) {
            Some(policy) => resolved.push(policy.clone()),
            None => ok = false,
        }
    }
    ok.then_some(resolved)
}
