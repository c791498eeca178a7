//! Renderers of a review report: JSON, Markdown, SARIF 2.1.0 and HTML.
//! Each reads the same [`Report`], so the outputs always agree.

pub mod html;
pub mod json;
pub mod markdown;
pub mod sarif;

use super::controls::Control;
use super::model::{Report, Severity};
use super::Format;

/// Renders a report in one format. `fail_on` is stated in the summary.
pub fn render(report: &Report, format: Format, fail_on: Severity) -> String {
    match format {
        Format::Json => json::render(report, fail_on),
        Format::Markdown => markdown::render(report, fail_on),
        Format::Sarif => sarif::render(report),
        Format::Html => html::render(report, fail_on),
    }
}

/// Returns the catalogue entries that the report's findings or evidence
/// refer to, in catalogue order.
pub fn referenced_controls(report: &Report) -> Vec<Control> {
    super::controls::catalogue()
        .into_iter()
        .filter(|control| {
            report
                .findings
                .iter()
                .any(|f| f.mappings.contains(&control.id))
                || report
                    .controls_in_place
                    .iter()
                    .any(|e| e.controls.contains(&control.id))
        })
        .collect()
}
