//! The SARIF 2.1.0 log, for code-scanning tools. One run, one rule per
//! check that produced a finding, one result per finding.

use serde_json::{json, Value};

use super::super::checks;
use super::super::model::{Finding, Report, Severity};

/// Maps a severity to a SARIF level.
fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
    }
}

/// Renders the report as a SARIF 2.1.0 log ending in a newline.
pub fn render(report: &Report) -> String {
    let mut rule_ids: Vec<&str> = report.findings.iter().map(|f| f.id.as_str()).collect();
    rule_ids.sort_unstable();
    rule_ids.dedup();
    let rules: Vec<Value> = rule_ids.iter().map(|id| rule(id)).collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|finding| {
            result(
                finding,
                rule_ids.binary_search(&finding.id.as_str()).unwrap_or(0),
            )
        })
        .collect();
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "portcullis-review",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    });
    let mut text = serde_json::to_string_pretty(&log).expect("a SARIF log serializes");
    text.push('\n');
    text
}

fn rule(id: &str) -> Value {
    let Some(check) = checks::by_id(id) else {
        return json!({ "id": id });
    };
    json!({
        "id": check.id,
        "name": check.title,
        "shortDescription": { "text": check.title },
        "fullDescription": { "text": check.why },
        "properties": { "tags": check.mappings },
    })
}

fn result(finding: &Finding, rule_index: usize) -> Value {
    let mut locations = Vec::new();
    if let Some(config) = &finding.config {
        locations.push(physical(
            &config.file,
            config.line,
            config.column,
            &config.key_path,
        ));
    }
    if let Some(api) = &finding.openapi {
        let name = match (&api.method, &api.path) {
            (Some(method), Some(path)) => format!("{method} {path}"),
            _ => api.pointer.clone(),
        };
        locations.push(physical(&api.file, api.line, 0, &name));
    }
    let mut message = format!("{} {}", finding.evidence, finding.fix);
    if let Some(snippet) = &finding.fix_snippet {
        message.push_str("\n\n");
        message.push_str(snippet);
    }
    json!({
        "ruleId": finding.id,
        "ruleIndex": rule_index,
        "level": level(finding.severity),
        "message": { "text": message },
        "locations": locations,
        "properties": {
            "severity": finding.severity,
            "mappings": finding.mappings,
        },
    })
}

/// Builds a SARIF location. A region is given only when the line is known,
/// because SARIF lines start at 1.
fn physical(file: &str, line: usize, column: usize, name: &str) -> Value {
    let uri = file.replace('\\', "/").replace(' ', "%20");
    let mut location = json!({
        "physicalLocation": { "artifactLocation": { "uri": uri } },
        "logicalLocations": [{ "fullyQualifiedName": name }],
    });
    if line > 0 {
        let mut region = json!({ "startLine": line });
        if column > 0 {
            region["startColumn"] = column.into();
        }
        location["physicalLocation"]["region"] = region;
    }
    location
}
