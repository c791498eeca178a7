//! Configuration of tier-2 authorization: where the Rego policies are, how
//! long an evaluation may take, and the decision cache.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::authz::policy::PolicySet;
use crate::config::reader::MapReader;
use crate::config::resolve_path;

pub struct PoliciesConfig {
    /// The loaded bundle, when policies are evaluated in-process.
    pub set: Option<Arc<PolicySet>>,
    /// The external OPA server, when policies are evaluated there.
    pub server: Option<Arc<crate::authz::opa_server::OpaServer>>,
    /// Identifies the policies for the decision cache and the decision log:
    /// the bundle's content hash, or `opa:<url>`.
    pub version: String,
    /// An evaluation over this denies with `policy_error`. Default 10ms.
    pub budget: Duration,
    /// Decisions are reused this long for the same bundle, rule, tenant and
    /// input. Default 30s; 0s turns the cache off.
    pub cache_ttl: Duration,
    /// Default 10 000 decisions.
    pub cache_max_entries: usize,
    pub decision_log: DecisionLogConfig,
}

/// The parts of a decision log record beyond the decision itself.
#[derive(Debug, Clone, Default)]
pub struct DecisionLogConfig {
    /// Log the input document and the rule's result. Default false: the
    /// input holds claims and headers, personal data in many deployments.
    pub include_input: bool,
    /// JSON pointers (`/input/headers`, `/result/obligations`) removed from
    /// the logged input and result.
    pub drop: Vec<String>,
    /// JSON pointers whose values are replaced by `"****"`.
    pub mask: Vec<String>,
}

impl std::fmt::Debug for PoliciesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoliciesConfig")
            .field("version", &self.version)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

/// Reads `policies` and loads the bundle; every compile problem is reported
/// at its file:line:column.
pub fn read(top: &MapReader, base_dir: &Path) -> Option<Option<PoliciesConfig>> {
    let Some(map) = top.map("policies") else {
        return top.get("policies").is_none().then_some(None);
    };
    let paths = map.strings("paths");
    let server = read_server(&map);
    let bad_server = server.is_none() && map.get("opa").is_some();
    let sources = usize::from(map.get("paths").is_some()) + usize::from(map.get("opa").is_some());
    if sources != 1 {
        let message = "expected exactly one of paths (policies evaluated in-process) or opa (an external OPA server)";
        map.problems.at(map.node, &map.path, message);
    }
    let budget = map.duration(
        "budget",
        Duration::from_micros(100),
        Duration::from_secs(10),
    );
    let failed_budget = budget.is_none() && map.get("budget").is_some();
    let mut cache_ttl = Duration::from_secs(30);
    let mut cache_max_entries = 10_000;
    let mut decision_log = DecisionLogConfig::default();
    let mut bad_log = false;
    if let Some(log) = map.map("decision_log") {
        decision_log.include_input = log.bool("include_input").unwrap_or(false);
        for (key, list) in [
            ("drop", &mut decision_log.drop),
            ("mask", &mut decision_log.mask),
        ] {
            let Some(pointers) = log.strings(key) else {
                bad_log |= log.get(key).is_some();
                continue;
            };
            for pointer in pointers {
                if !(pointer.starts_with("/input") || pointer.starts_with("/result")) {
                    let message = format!("expected a JSON pointer under /input or /result such as /input/headers, found {pointer:?}");
                    log.problems
                        .at(log.get(key).unwrap(), &log.child_path(key), message);
                    bad_log = true;
                }
                list.push(pointer);
            }
        }
        log.finish();
    }
    if let Some(cache) = map.map("cache") {
        cache_ttl = cache
            .duration("ttl", Duration::ZERO, Duration::from_secs(3600))
            .unwrap_or(cache_ttl);
        cache_max_entries = cache
            .integer("max_entries", 0, 10_000_000)
            .map_or(cache_max_entries, |v| v as usize);
        cache.finish();
    }
    map.finish();

    if sources != 1 || bad_server {
        return None;
    }
    let budget = budget.unwrap_or(Duration::from_millis(10));
    if let Some((url, timeout)) = server {
        if failed_budget || bad_log {
            return None;
        }
        let server = crate::authz::opa_server::OpaServer::new(&url, timeout);
        return Some(Some(PoliciesConfig {
            set: None,
            server: Some(Arc::new(server)),
            version: format!("opa:{url}"),
            budget,
            cache_ttl,
            cache_max_entries,
            decision_log,
        }));
    }
    let paths: Vec<_> = paths?.iter().map(|p| resolve_path(base_dir, p)).collect();
    let set = match PolicySet::load(&paths) {
        Ok(set) => set,
        Err(problems) => {
            for problem in problems {
                // The problem is reported at the policy file's own location.
                let location = match (problem.line, problem.column) {
                    (Some(line), Some(column)) => format!("{}:{line}:{column}", problem.file),
                    (Some(line), None) => format!("{}:{line}", problem.file),
                    _ => problem.file.clone(),
                };
                top.problems
                    .elsewhere(location, "policies", problem.message);
            }
            return None;
        }
    };
    if failed_budget || bad_log {
        return None;
    }
    Some(Some(PoliciesConfig {
        version: set.version().to_string(),
        set: Some(Arc::new(set)),
        server: None,
        budget,
        cache_ttl,
        cache_max_entries,
        decision_log,
    }))
}

/// Reads `opa: { url, timeout }`. The timeout defaults to 100ms.
fn read_server(map: &MapReader) -> Option<(http::Uri, Duration)> {
    let opa = map.map("opa")?;
    let url = opa.required_string("url", "the OPA server's URL, such as http://127.0.0.1:8181");
    let timeout = opa.duration("timeout", Duration::from_millis(1), Duration::from_secs(30));
    let bad_timeout = timeout.is_none() && opa.get("timeout").is_some();
    let uri = url.and_then(|text| {
        let parsed = text.parse::<http::Uri>().ok().filter(|u| u.scheme_str() == Some("http") && u.host().is_some());
        if parsed.is_none() {
            let message = "expected an http:// URL such as http://127.0.0.1:8181 (https is not supported yet)";
            opa.problems.at(opa.get("url").unwrap(), &opa.child_path("url"), message);
        }
        parsed
    });
    opa.finish();
    if bad_timeout {
        return None;
    }
    Some((uri?, timeout.unwrap_or(Duration::from_millis(100))))
}

impl DecisionLogConfig {
    /// Builds the logged `{input, result}` document with the configured
    /// pointers dropped or masked.
    pub fn record(
        &self,
        input: &serde_json::Value,
        result: Option<&serde_json::Value>,
    ) -> serde_json::Value {
        let mut record = serde_json::json!({ "input": input, "result": result });
        for pointer in &self.mask {
            if let Some(value) = record.pointer_mut(pointer) {
                *value = serde_json::Value::String("****".into());
            }
        }
        for pointer in &self.drop {
            remove_pointer(&mut record, pointer);
        }
        record
    }
}

fn remove_pointer(document: &mut serde_json::Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let key = last.replace("~1", "/").replace("~0", "~");
    match document.pointer_mut(parent) {
        Some(serde_json::Value::Object(map)) => {
            map.remove(&key);
        }
        Some(serde_json::Value::Array(items)) => {
            if let Ok(index) = key.parse::<usize>() {
                if index < items.len() {
                    items.remove(index);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_record_drops_and_masks() {
        let config = DecisionLogConfig {
            include_input: true,
            drop: vec!["/input/headers".into(), "/input/token/email".into()],
            mask: vec!["/input/subject".into(), "/input/missing".into()],
        };
        let input = serde_json::json!({ "subject": "alice", "headers": { "accept": "*/*" }, "token": { "email": "a@example.com", "sub": "alice" } });
        let record = config.record(&input, Some(&serde_json::json!(true)));
        assert_eq!(
            record,
            serde_json::json!({ "input": { "subject": "****", "token": { "sub": "alice" } }, "result": true })
        );
    }
}
