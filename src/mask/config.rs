//! Configuration of response masking: a route's `mask` section, the
//! top-level `masking` section and the tenants' `pseudonym_key`, read into
//! a [`Masker`] built once per route.

use std::path::Path;

use crate::config::reader::{found, MapReader};
use crate::config::yaml::Node;
use crate::mask::{
    Detector, DetectorRule, FieldPath, FieldRule, MaskRules, MaskStyle, Masker, Pattern,
    PseudonymKey,
};
use crate::route::config::RouteConfig;
use crate::tenancy::config::{TenantConfig, TenantFrom};

/// Default of `mask.max_body_bytes`: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 20;

/// Largest accepted `mask.max_body_bytes`. A masked response is held in
/// memory whole, decompressed and then parsed, so each one in flight costs
/// a few times this size.
pub const MAX_MAX_BODY_BYTES: u64 = 64 << 20;

const STYLES: &[&str] = &["redact", "pci", "pseudonym"];
const DETECTORS: &[&str] = &["card", "email", "phone", "iban", "pattern"];

/// Masking of one route's responses (`routes[].mask`).
#[derive(Debug)]
pub struct RouteMasking {
    /// The field rules and detectors, compiled.
    pub masker: Masker,
    /// The rules `masker` was built from, for combining them with a
    /// policy's obligations.
    rules: MaskRules,
    /// Scope that lets a caller see responses unmasked (`unmask_scope`).
    /// Without it every caller gets masked responses.
    pub unmask_scope: Option<String>,
    /// Limit on the upstream body, counted after decompression
    /// (`max_body_bytes`, default 1 MiB).
    pub max_body_bytes: u64,
    /// What happens to a response that cannot be masked (`on_error`,
    /// default `block`).
    pub on_error: OnError,
    /// Whether any detector is configured, so that text bodies are worth
    /// reading.
    pub has_detectors: bool,
    /// The first rule in the pseudonym style, where a missing key is
    /// reported.
    pseudonym_rule: Option<(Node, String)>,
}

impl RouteMasking {
    /// Builds a route's masking from `rules`, with the defaults of every
    /// other setting: no unmask scope, 1 MiB, `on_error: block`.
    pub fn new(rules: MaskRules) -> RouteMasking {
        RouteMasking {
            has_detectors: !rules.detectors.is_empty(),
            masker: Masker::new(rules.clone()),
            rules,
            unmask_scope: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            on_error: OnError::Block,
            pseudonym_rule: None,
        }
    }

    /// Returns the field rules and detectors of this route.
    pub fn rules(&self) -> &MaskRules {
        &self.rules
    }
}

/// What the gateway sends when a response cannot be masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Reject the response with 502 `response_unmaskable` (the default).
    Block,
    /// Send the upstream response unmasked and count it.
    Pass,
}

/// The top-level `masking` section.
#[derive(Debug, Default)]
pub struct MaskingConfig {
    /// Key of the pseudonym style for requests without a tenant
    /// (`masking.pseudonym_key`, `{ env: NAME }` or `{ file: PATH }`, at
    /// least 32 bytes). A tenant's requests use the tenant's own key only.
    pub pseudonym_key: Option<PseudonymKey>,
}

/// Reads the top-level `masking` section; absent means no default key.
pub fn read(top: &MapReader, base_dir: &Path) -> Option<MaskingConfig> {
    let Some(section) = top.map("masking") else {
        return top.get("masking").is_none().then(MaskingConfig::default);
    };
    let pseudonym_key = read_pseudonym_key(&section, base_dir);
    section.finish();
    Some(MaskingConfig {
        pseudonym_key: pseudonym_key?,
    })
}

/// Reads `pseudonym_key` under `map` (the `masking` section or a tenant).
/// `Some(None)` means the key is absent.
pub fn read_pseudonym_key(map: &MapReader, base_dir: &Path) -> Option<Option<PseudonymKey>> {
    if map.get("pseudonym_key").is_none() {
        return Some(None);
    }
    let secret = crate::authn::config::read_secret(map, "pseudonym_key", base_dir)?;
    match PseudonymKey::new(secret.expose()) {
        Ok(key) => Some(Some(key)),
        Err(error) => {
            let node = map.get("pseudonym_key").unwrap();
            let path = map.child_path("pseudonym_key");
            map.problems.at(node, &path, error.to_string());
            None
        }
    }
}

/// Reads a route's `mask` section. `Some(None)` means the route masks
/// nothing.
pub fn read_route(map: &MapReader) -> Option<Option<RouteMasking>> {
    let Some(section) = map.map("mask") else {
        return map.get("mask").is_none().then_some(None);
    };
    let masking = read_section(&section);
    section.finish();
    masking.map(Some)
}

fn read_section(section: &MapReader) -> Option<RouteMasking> {
    let mut pseudonym_rule = None;
    let fields = read_fields(section, &mut pseudonym_rule);
    let detectors = read_detectors(section, &mut pseudonym_rule);
    let unmask_scope = read_unmask_scope(section);
    let max_body_bytes = section.byte_size("max_body_bytes", 1, MAX_MAX_BODY_BYTES);
    let bad_size = max_body_bytes.is_none() && section.get("max_body_bytes").is_some();
    let on_error = match section.choice("on_error", &["block", "pass"]) {
        Some("pass") => Some(OnError::Pass),
        Some(_) => Some(OnError::Block),
        None if section.get("on_error").is_some() => None,
        None => Some(OnError::Block),
    };

    let (fields, detectors) = (fields?, detectors?);
    if fields.is_empty() && detectors.is_empty() {
        let message = "expected at least one entry under fields or detectors";
        section.problems.at(section.node, &section.path, message);
        return None;
    }
    if bad_size {
        return None;
    }
    let has_detectors = !detectors.is_empty();
    let rules = MaskRules { fields, detectors };
    Some(RouteMasking {
        masker: Masker::new(rules.clone()),
        rules,
        unmask_scope: unmask_scope?,
        max_body_bytes: max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        on_error: on_error?,
        has_detectors,
        pseudonym_rule,
    })
}

fn read_fields(
    section: &MapReader,
    pseudonym_rule: &mut Option<(Node, String)>,
) -> Option<Vec<FieldRule>> {
    let Some(items) = section.list("fields") else {
        return section.get("fields").is_none().then(Vec::new);
    };
    let mut rules = Vec::new();
    let mut ok = true;
    for (path, node) in items {
        let Some(entry) = MapReader::open(node, &path, section.problems) else {
            ok = false;
            continue;
        };
        let field_path = entry
            .required_string("path", "a field path such as $[*].ssn or $..email")
            .and_then(|source| match FieldPath::parse(&source) {
                Ok(parsed) => Some(parsed),
                Err(error) => {
                    let node = entry.get("path").unwrap();
                    entry
                        .problems
                        .at(node, &entry.child_path("path"), error.to_string());
                    None
                }
            });
        let style = read_style(&entry, pseudonym_rule);
        entry.finish();
        match (field_path, style) {
            (Some(path), Some(style)) => rules.push(FieldRule { path, style }),
            _ => ok = false,
        }
    }
    ok.then_some(rules)
}

fn read_detectors(
    section: &MapReader,
    pseudonym_rule: &mut Option<(Node, String)>,
) -> Option<Vec<DetectorRule>> {
    let Some(items) = section.list("detectors") else {
        return section.get("detectors").is_none().then(Vec::new);
    };
    let mut rules = Vec::new();
    let mut ok = true;
    for (path, node) in items {
        let Some(entry) = MapReader::open(node, &path, section.problems) else {
            ok = false;
            continue;
        };
        let detector = read_detector(&entry);
        let style = read_style(&entry, pseudonym_rule);
        entry.finish();
        match (detector, style) {
            (Some(detector), Some(style)) => rules.push(DetectorRule { detector, style }),
            _ => ok = false,
        }
    }
    ok.then_some(rules)
}

/// Reads `type`, plus `name` and `regex` for a pattern.
fn read_detector(entry: &MapReader) -> Option<Detector> {
    let kind = match entry.choice("type", DETECTORS) {
        Some(kind) => kind,
        None => {
            if entry.get("type").is_none() {
                entry.missing("type", "one of card, email, phone, iban, pattern");
            }
            return None;
        }
    };
    if kind != "pattern" {
        for key in ["name", "regex"] {
            if let Some(node) = entry.get(key) {
                let message = format!("{key} applies to type: pattern only, not to {kind}");
                entry.problems.at(node, &entry.child_path(key), message);
                return None;
            }
        }
    }

    match kind {
        "card" => Some(Detector::Card),
        "email" => Some(Detector::Email),
        "phone" => Some(Detector::Phone),
        "iban" => Some(Detector::Iban),
        _ => read_pattern(entry).map(Detector::Pattern),
    }
}

fn read_pattern(entry: &MapReader) -> Option<Pattern> {
    let name = entry.required_string("name", "a detector name such as order_ref");
    let name = name.filter(|name| {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            let node = entry.get("name").unwrap();
            let message = format!(
                "expected letters, digits, '-' and '_' (at most 64), found {}",
                found(node)
            );
            entry.problems.at(node, &entry.child_path("name"), message);
        }
        valid
    });
    let regex = entry.required_string("regex", "a regular expression such as ORD-[0-9]{8}")?;
    let name = name?;
    match Pattern::new(&name, &regex) {
        Ok(pattern) => Some(pattern),
        Err(error) => {
            let node = entry.get("regex").unwrap();
            let message = format!("invalid regular expression: {}", regex_problem(&error));
            entry.problems.at(node, &entry.child_path("regex"), message);
            None
        }
    }
}

/// Returns the one-line cause of a regex error. Syntax errors print the
/// pattern with a caret over several lines, and a config problem is one
/// line.
fn regex_problem(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .find_map(|line| line.strip_prefix("error: "))
        .unwrap_or(text.lines().next().unwrap_or_default())
        .to_string()
}

/// Reads `style` (default `redact`) and remembers the first pseudonym rule.
fn read_style(entry: &MapReader, pseudonym_rule: &mut Option<(Node, String)>) -> Option<MaskStyle> {
    let style = match entry.choice("style", STYLES) {
        Some("pci") => MaskStyle::Pci,
        Some("pseudonym") => MaskStyle::Pseudonym,
        Some(_) => MaskStyle::Redact,
        None if entry.get("style").is_some() => return None,
        None => MaskStyle::Redact,
    };
    if style == MaskStyle::Pseudonym && pseudonym_rule.is_none() {
        let node = entry.get("style").unwrap().clone();
        *pseudonym_rule = Some((node, entry.child_path("style")));
    }
    Some(style)
}

fn read_unmask_scope(section: &MapReader) -> Option<Option<String>> {
    let Some(scope) = section.string("unmask_scope") else {
        return section.get("unmask_scope").is_none().then_some(None);
    };
    // RFC 6749 section 3.3: a scope token is printable ASCII without space,
    // `"` or `\`.
    let valid = !scope.is_empty()
        && scope
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
    if !valid {
        let node = section.get("unmask_scope").unwrap();
        let message = format!(
            "expected one OAuth scope (printable ASCII, no spaces or quotes), found {}",
            found(node)
        );
        section
            .problems
            .at(node, &section.child_path("unmask_scope"), message);
        return None;
    }
    Some(Some(scope))
}

/// Reports every route whose pseudonym rule could run without a key: a
/// tenant without `pseudonym_key`, or requests without a tenant while
/// `masking.pseudonym_key` is unset. Without this check such values would
/// be redacted silently.
pub fn check_pseudonym_keys<'a>(
    top: &MapReader,
    routes: &[RouteConfig],
    tenants: impl IntoIterator<Item = &'a TenantConfig> + Clone,
    masking: &MaskingConfig,
    top_tenant_from: Option<&TenantFrom>,
) {
    for route in routes {
        let Some((node, path)) = route
            .mask
            .as_ref()
            .and_then(|mask| mask.pseudonym_rule.as_ref())
        else {
            continue;
        };
        let mut missing: Vec<&str> = tenants
            .clone()
            .into_iter()
            .filter(|tenant| tenant.pseudonym_key.is_none())
            .map(|tenant| tenant.id.as_str())
            .collect();
        missing.sort_unstable();
        if !missing.is_empty() {
            let message = format!(
                "style pseudonym needs a key for every tenant; set pseudonym_key for tenant{} {}",
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", ")
            );
            top.problems.at(node, path, message);
        }
        // With a tenant source every request that reaches the route has a
        // tenant; without one, a request may have none.
        let always_tenant = route.tenant_from.is_some() || top_tenant_from.is_some();
        if !always_tenant && masking.pseudonym_key.is_none() {
            let message = "style pseudonym needs a key for requests without a tenant; set masking.pseudonym_key to { env: NAME } or { file: PATH }";
            top.problems.at(node, path, message);
        }
    }
}
