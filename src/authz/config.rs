//! Configuration of tier-2 authorization: where the Rego policies are, how
//! long an evaluation may take, and the decision cache.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::authz::policy::PolicySet;
use crate::config::reader::MapReader;
use crate::config::resolve_path;

pub struct PoliciesConfig {
    /// The loaded bundle.
    pub set: Arc<PolicySet>,
    /// An evaluation over this denies with `policy_error`. Default 10ms.
    pub budget: Duration,
    /// Decisions are reused this long for the same bundle, rule, tenant and
    /// input. Default 30s; 0s turns the cache off.
    pub cache_ttl: Duration,
    /// Default 10 000 decisions.
    pub cache_max_entries: usize,
}

impl std::fmt::Debug for PoliciesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoliciesConfig").field("version", &self.set.version()).field("budget", &self.budget).finish_non_exhaustive()
    }
}

/// Reads `policies` and loads the bundle; every compile problem is reported
/// at its file:line:column.
pub fn read(top: &MapReader, base_dir: &Path) -> Option<Option<PoliciesConfig>> {
    let Some(map) = top.map("policies") else {
        return top.get("policies").is_none().then_some(None);
    };
    let paths = map.strings("paths");
    if map.get("paths").is_none() {
        map.missing("paths", "a list of .rego files or directories, with their .json/.yaml data documents");
    }
    let budget = map.duration("budget", Duration::from_micros(100), Duration::from_secs(10));
    let failed_budget = budget.is_none() && map.get("budget").is_some();
    let mut cache_ttl = Duration::from_secs(30);
    let mut cache_max_entries = 10_000;
    if let Some(cache) = map.map("cache") {
        cache_ttl = cache.duration("ttl", Duration::ZERO, Duration::from_secs(3600)).unwrap_or(cache_ttl);
        cache_max_entries = cache.integer("max_entries", 0, 10_000_000).map_or(cache_max_entries, |v| v as usize);
        cache.finish();
    }
    map.finish();

    let paths: Vec<_> = paths?.iter().map(|p| resolve_path(base_dir, p)).collect();
    let set = match PolicySet::load(&paths) {
        Ok(set) => set,
        Err(problems) => {
            for problem in problems {
                // The policy file's own location says where to look.
                let location = match (problem.line, problem.column) {
                    (Some(line), Some(column)) => format!("{}:{line}:{column}", problem.file),
                    (Some(line), None) => format!("{}:{line}", problem.file),
                    _ => problem.file.clone(),
                };
                top.problems.elsewhere(location, "policies", problem.message);
            }
            return None;
        }
    };
    if failed_budget {
        return None;
    }
    Some(Some(PoliciesConfig {
        set: Arc::new(set),
        budget: budget.unwrap_or(Duration::from_millis(10)),
        cache_ttl,
        cache_max_entries,
    }))
}
