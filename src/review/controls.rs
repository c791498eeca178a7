//! The controls catalogue: the requirements of OWASP API Security Top 10
//! 2023, PCI DSS v4.0, GDPR and NIST CSF 2.0 that findings map to. It is
//! kept in `controls.yaml` beside this file and built into the binary.

use serde::Serialize;

use crate::config::reader::scalar_text;
use crate::config::yaml::{self, Node, Value};

/// The catalogue as written in the repository.
pub const CATALOGUE: &str = include_str!("controls.yaml");

/// One control of a standard.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Control {
    /// Stable id, `<standard>:<reference>`, such as `pci-dss:8.3.1`.
    pub id: String,
    /// The standard's name and edition.
    pub standard: String,
    /// The item number as the standard writes it, such as `API1:2023`.
    pub reference: String,
    pub title: String,
    /// What the control asks, in this project's own words.
    pub description: String,
}

/// Parses the embedded catalogue.
///
/// # Panics
///
/// When the embedded file is malformed; a unit test keeps it well formed.
pub fn catalogue() -> Vec<Control> {
    parse(CATALOGUE).expect("the embedded controls catalogue is valid")
}

/// Parses a catalogue file: a mapping with a `controls` list whose entries
/// carry `id`, `standard`, `reference`, `title` and `description`.
pub fn parse(text: &str) -> Result<Vec<Control>, String> {
    let root = yaml::parse(text)
        .map_err(|error| format!("line {}: invalid YAML: {}", error.line, error.message))?;
    let list = field(&root, "controls").ok_or("missing the controls list")?;
    let Value::Sequence(items) = &list.value else {
        return Err(format!("line {}: controls: expected a list", list.line));
    };
    let mut controls = Vec::new();
    for item in items {
        let text_of = |key: &str| {
            field(item, key)
                .and_then(scalar_text)
                .map(str::to_string)
                .ok_or_else(|| format!("line {}: control: missing {key}", item.line))
        };
        let control = Control {
            id: text_of("id")?,
            standard: text_of("standard")?,
            reference: text_of("reference")?,
            title: text_of("title")?,
            description: text_of("description")?,
        };
        if controls.iter().any(|c: &Control| c.id == control.id) {
            return Err(format!(
                "line {}: duplicate control id {:?}",
                item.line, control.id
            ));
        }
        controls.push(control);
    }
    Ok(controls)
}

fn field<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match &node.value {
        Value::Mapping(entries) => entries
            .iter()
            .find(|(k, _)| scalar_text(k) == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// Returns the short name of a control's standard family, used to group
/// findings: `OWASP API 2023`, `PCI DSS 4.0`, `GDPR` or `NIST CSF 2.0`.
pub fn family(id: &str) -> &'static str {
    match id.split(':').next() {
        Some("owasp-api") => "OWASP API Top 10 2023",
        Some("pci-dss") => "PCI DSS v4.0",
        Some("gdpr") => "GDPR",
        Some("nist-csf") => "NIST CSF 2.0",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalogue_parses() {
        let controls = catalogue();
        assert!(controls.len() >= 40, "{} controls", controls.len());
        for control in &controls {
            assert_ne!(family(&control.id), "other", "{}", control.id);
        }
    }

    #[test]
    fn catalogue_covers_every_owasp_item() {
        let controls = catalogue();
        for item in 1..=10 {
            let id = format!("owasp-api:API{item}");
            assert!(controls.iter().any(|c| c.id == id), "{id} missing");
        }
    }

    #[test]
    fn duplicate_control_id_rejected() {
        let text = "controls:\n  - {id: a:1, standard: s, reference: r, title: t, description: d}\n  - {id: a:1, standard: s, reference: r, title: t, description: d}\n";
        let error = parse(text).unwrap_err();
        assert!(error.contains("duplicate control id \"a:1\""), "{error}");
    }

    #[test]
    fn control_without_title_rejected() {
        let text = "controls:\n  - {id: a:1, standard: s, reference: r, description: d}\n";
        assert_eq!(parse(text).unwrap_err(), "line 2: control: missing title");
    }
}
