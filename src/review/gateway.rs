//! The gateway configuration as the review sees it: read from the YAML
//! tree as written, with the line of every key, and without resolving
//! secrets, key files or policies. A review must work where the gateway's
//! secrets are not available, and must also read keys that the typed
//! loader does not know yet (`mask`, `audit`).

use std::path::{Path, PathBuf};

use crate::config::reader::scalar_text;
use crate::config::yaml::{self, Node, Value};

use super::model::ConfigLocation;

/// A configuration file, parsed.
pub struct Gateway {
    pub file: String,
    pub base_dir: PathBuf,
    pub root: Node,
    pub routes: Vec<RouteView>,
}

/// What a route says, with the place it says it.
#[derive(Debug, Clone)]
pub struct RouteView {
    pub id: String,
    pub path: String,
    /// Upper-case methods; a route with GET also serves HEAD.
    pub methods: Vec<String>,
    pub public: bool,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub policy: Option<String>,
    pub rate_limits: Vec<String>,
    pub tenant_from: Option<String>,
    pub mask: Option<MaskView>,
    pub upstream: String,
    pub key_path: String,
    pub line: usize,
    pub column: usize,
}

/// The masking rules of a route, read leniently: every string under
/// `mask` that starts with `$` is taken as a field path, and every known
/// detector name as a detector, whatever the keys around them.
#[derive(Debug, Clone, Default)]
pub struct MaskView {
    pub paths: Vec<String>,
    pub detectors: Vec<String>,
}

/// Detector names of the masking stage.
const DETECTORS: &[&str] = &["card", "email", "phone", "iban"];

impl MaskView {
    /// Whether a response field named `name` is masked: a path ends with
    /// it, a path masks a parent object whole, or a detector finds its kind
    /// of value anywhere.
    pub fn covers(&self, name: &str, detector: Option<&str>) -> bool {
        let lower = name.to_ascii_lowercase();
        let by_path = self.paths.iter().any(|path| {
            let last = path
                .rsplit(['.', '['])
                .next()
                .unwrap_or_default()
                .trim_matches(|c| c == '\'' || c == ']' || c == '"');
            last.eq_ignore_ascii_case(&lower) || last == "*"
        });
        let by_detector = detector.is_some_and(|d| self.detectors.iter().any(|x| x == d));
        by_path || by_detector
    }
}

/// A failure to read the configuration at all.
#[derive(Debug)]
pub struct LoadError(pub String);

impl Gateway {
    /// Reads a configuration file as written.
    pub fn load(path: &Path) -> Result<Gateway, LoadError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|error| LoadError(format!("{file}: cannot read the file: {error}")))?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Gateway::parse(&text, &file, &base_dir)
    }

    /// Parses configuration text; `file` names it in locations.
    pub fn parse(text: &str, file: &str, base_dir: &Path) -> Result<Gateway, LoadError> {
        let root = yaml::parse(text).map_err(|error| {
            LoadError(format!(
                "{file}:{}:{}: invalid YAML: {}",
                error.line, error.column, error.message
            ))
        })?;
        if !matches!(root.value, Value::Mapping(_)) {
            return Err(LoadError(format!(
                "{file}:{}:{}: expected a mapping at the top of the configuration, found {}",
                root.line,
                root.column,
                root.kind()
            )));
        }
        let routes = read_routes(&root);
        Ok(Gateway {
            file: file.to_string(),
            base_dir: base_dir.to_path_buf(),
            root,
            routes,
        })
    }

    /// Returns the node at a dotted key path from the top, such as
    /// `server.tls`. An explicit null counts as absent.
    pub fn get(&self, dotted: &str) -> Option<&Node> {
        dotted
            .split('.')
            .try_fold(&self.root, |node, key| get(node, key))
    }

    /// Builds the location of a node.
    pub fn at(&self, node: &Node, key_path: &str) -> ConfigLocation {
        ConfigLocation {
            file: self.file.clone(),
            line: node.line,
            column: node.column,
            key_path: key_path.to_string(),
        }
    }

    /// Builds the location of a key that is absent.
    pub fn missing(&self, key_path: &str) -> ConfigLocation {
        ConfigLocation {
            file: self.file.clone(),
            line: 0,
            column: 0,
            key_path: key_path.to_string(),
        }
    }

    /// Builds the location of a route, or of one of its keys when present.
    pub fn at_route(&self, route: &RouteView, key: &str) -> ConfigLocation {
        let index_path = &route.key_path;
        let node = self.route_node(route).and_then(|n| get_key(n, key));
        match node {
            Some(key_node) => self.at(key_node, &format!("{index_path}.{key}")),
            None => ConfigLocation {
                file: self.file.clone(),
                line: route.line,
                column: route.column,
                key_path: index_path.clone(),
            },
        }
    }

    fn route_node(&self, route: &RouteView) -> Option<&Node> {
        let Value::Sequence(items) = &get(&self.root, "routes")?.value else {
            return None;
        };
        items.iter().find(|item| item.line == route.line)
    }

    /// Returns the key parts of a named rate-limit policy.
    pub fn rate_limit_keys(&self, name: &str) -> Option<Vec<String>> {
        let policy = get(get(&self.root, "rate_limits")?, name)?;
        Some(strings(get(policy, "key")?))
    }

    /// Names the policies that apply to every route.
    pub fn global_rate_limits(&self) -> Vec<String> {
        get(&self.root, "global_rate_limits").map_or_else(Vec::new, strings)
    }
}

/// Returns the value under `key` in a mapping node, treating null as absent.
pub fn get<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match &node.value {
        Value::Mapping(entries) => entries
            .iter()
            .find(|(k, _)| scalar_text(k) == Some(key))
            .map(|(_, v)| v)
            .filter(|v| !v.is_null()),
        _ => None,
    }
}

/// Returns the key node of `key` in a mapping node, when its value is
/// not null.
pub fn get_key<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match &node.value {
        Value::Mapping(entries) => entries
            .iter()
            .find(|(k, v)| scalar_text(k) == Some(key) && !v.is_null())
            .map(|(k, _)| k),
        _ => None,
    }
}

/// Returns the text of a scalar node.
pub fn text(node: &Node) -> Option<&str> {
    scalar_text(node)
}

/// Reads a string or a list of strings; other values give an empty list.
pub fn strings(node: &Node) -> Vec<String> {
    match &node.value {
        Value::Scalar { text, .. } if !node.is_null() => vec![text.clone()],
        Value::Sequence(items) => items
            .iter()
            .filter_map(scalar_text)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn read_routes(root: &Node) -> Vec<RouteView> {
    let Some(Value::Sequence(items)) = get(root, "routes").map(|n| &n.value) else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(index, node)| read_route(node, index))
        .collect()
}

fn read_route(node: &Node, index: usize) -> Option<RouteView> {
    let matched = get(node, "match")?;
    let require = get(node, "require");
    let require_list = |key| {
        require
            .and_then(|r| get(r, key))
            .map_or_else(Vec::new, strings)
    };
    Some(RouteView {
        id: get(node, "id").and_then(text).unwrap_or("?").to_string(),
        path: get(matched, "path").and_then(text)?.to_string(),
        methods: get(matched, "methods")
            .map_or_else(Vec::new, strings)
            .iter()
            .map(|m| m.to_ascii_uppercase())
            .collect(),
        public: get(node, "authentication").and_then(text) == Some("none"),
        scopes: require_list("scopes"),
        roles: require_list("roles"),
        policy: require
            .and_then(|r| get(r, "policy"))
            .and_then(text)
            .map(str::to_string),
        rate_limits: get(node, "rate_limits").map_or_else(Vec::new, strings),
        tenant_from: get(node, "tenant_from").map(describe_tenant_from),
        mask: get(node, "mask").map(read_mask),
        upstream: get(node, "upstream")
            .and_then(text)
            .unwrap_or_default()
            .to_string(),
        key_path: format!("routes[{index}]"),
        line: node.line,
        column: node.column,
    })
}

/// Names the kind of a `tenant_from` value: `host`, `header` or
/// `path_prefix`.
pub fn describe_tenant_from(node: &Node) -> String {
    match &node.value {
        Value::Mapping(entries) => entries
            .first()
            .and_then(|(key, _)| scalar_text(key))
            .unwrap_or("unknown")
            .to_string(),
        _ => "unknown".into(),
    }
}

fn read_mask(node: &Node) -> MaskView {
    let mut view = MaskView::default();
    collect_mask(node, &mut view);
    view
}

fn collect_mask(node: &Node, view: &mut MaskView) {
    match &node.value {
        Value::Scalar { text, .. } if text.starts_with('$') => view.paths.push(text.clone()),
        Value::Scalar { text, .. } if DETECTORS.contains(&text.as_str()) => {
            view.detectors.push(text.clone())
        }
        Value::Scalar { .. } => {}
        Value::Sequence(items) => items.iter().for_each(|item| collect_mask(item, view)),
        Value::Mapping(entries) => {
            for (key, value) in entries {
                // `detectors: { card: pci }` names the detector in the key.
                if let Some(name) = scalar_text(key).filter(|k| DETECTORS.contains(k)) {
                    view.detectors.push(name.to_string());
                }
                collect_mask(value, view);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(text: &str) -> Gateway {
        Gateway::parse(text, "gw.yaml", Path::new(".")).unwrap()
    }

    #[test]
    fn route_keeps_line_and_requirements() {
        let gw = gateway(
            "routes:\n  - id: r\n    match: { path: '/a/{id}', methods: [get] }\n    upstream: u\n    require: { scopes: [x:read], policy: data.a.allow }\n",
        );
        let route = &gw.routes[0];
        assert_eq!(route.line, 2);
        assert_eq!(route.methods, ["GET"]);
        assert_eq!(route.scopes, ["x:read"]);
        assert_eq!(route.policy.as_deref(), Some("data.a.allow"));
        assert!(!route.public);
        assert_eq!(gw.at_route(route, "require").line, 5);
    }

    #[test]
    fn mask_read_from_any_shape() {
        let gw = gateway(
            "routes:\n  - id: r\n    match: { path: /a, methods: [GET] }\n    mask:\n      fields:\n        - { path: $.card.number, style: pci }\n      detectors: [email]\n",
        );
        let mask = gw.routes[0].mask.as_ref().unwrap();
        assert!(mask.covers("number", None));
        assert!(mask.covers("contact", Some("email")));
        assert!(!mask.covers("cvv", Some("card")));
    }

    #[test]
    fn top_level_list_rejected() {
        let error = Gateway::parse("- a\n", "gw.yaml", Path::new("."))
            .err()
            .unwrap();
        assert_eq!(
            error.0,
            "gw.yaml:1:1: expected a mapping at the top of the configuration, found a list"
        );
    }
}
