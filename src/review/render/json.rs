//! The JSON report. Its schema is documented in docs/review.md; fields are
//! only ever added, and `schema` changes when one is removed or renamed.

use serde_json::json;

use super::super::model::{Report, Severity};

/// Identifies the layout of the JSON report.
pub const SCHEMA: &str = "portcullis-review/1";

/// Renders the report as pretty-printed JSON ending in a newline.
pub fn render(report: &Report, fail_on: Severity) -> String {
    let mut by_severity = serde_json::Map::new();
    for severity in Severity::DESCENDING {
        by_severity.insert(severity.as_str().into(), report.count(severity).into());
    }
    let failing = report
        .findings
        .iter()
        .filter(|f| f.severity >= fail_on)
        .count();
    let value = json!({
        "schema": SCHEMA,
        "tool": { "name": "portcullis", "version": env!("CARGO_PKG_VERSION") },
        "inputs": report.inputs,
        "summary": {
            "total": report.findings.len(),
            "by_severity": by_severity,
            "fail_on": fail_on,
            "failing": failing,
        },
        "findings": report.findings,
        "controls_in_place": report.controls_in_place,
        "skipped_checks": report.skipped_checks,
        "notes": report.notes,
        "controls": super::referenced_controls(report),
    });
    let mut text = serde_json::to_string_pretty(&value).expect("a report serializes");
    text.push('\n');
    text
}
