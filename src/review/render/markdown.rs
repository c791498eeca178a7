//! The Markdown report, for pull requests and wikis.

use std::fmt::Write;

use super::super::model::{Report, Severity};

/// Escapes text for a Markdown table cell or line.
fn cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('\n', " ")
}

/// Renders the report as Markdown.
pub fn render(report: &Report, fail_on: Severity) -> String {
    let mut out = String::new();
    let failing = report
        .findings
        .iter()
        .filter(|f| f.severity >= fail_on)
        .count();
    writeln!(out, "# Portcullis review\n").unwrap();
    writeln!(out, "Configuration: `{}`", report.inputs.config).unwrap();
    for api in &report.inputs.openapi {
        writeln!(
            out,
            "OpenAPI: `{}` ({}, OpenAPI {}, {} operations)",
            api.file,
            cell(&api.title),
            api.version,
            api.operations
        )
        .unwrap();
    }
    writeln!(out, "\n## Summary\n").unwrap();
    writeln!(out, "| severity | findings |\n|---|---|").unwrap();
    for severity in Severity::DESCENDING {
        writeln!(
            out,
            "| {} | {} |",
            severity.as_str(),
            report.count(severity)
        )
        .unwrap();
    }
    writeln!(
        out,
        "\n{failing} findings at or above `{}`.\n",
        fail_on.as_str()
    )
    .unwrap();

    writeln!(out, "## Findings\n").unwrap();
    if report.findings.is_empty() {
        writeln!(out, "No findings.\n").unwrap();
    }
    for finding in &report.findings {
        writeln!(
            out,
            "### {} {} ({})\n",
            finding.id,
            cell(&finding.title),
            finding.severity.as_str()
        )
        .unwrap();
        writeln!(out, "- Location: `{}`", finding.location_text()).unwrap();
        if let (Some(config), Some(_)) = (&finding.config, &finding.openapi) {
            writeln!(
                out,
                "- Route: `{}:{} {}`",
                config.file, config.line, config.key_path
            )
            .unwrap();
        }
        writeln!(out, "- Evidence: {}", cell(&finding.evidence)).unwrap();
        writeln!(out, "- Why it matters: {}", cell(&finding.why)).unwrap();
        writeln!(out, "- Fix: {}", cell(&finding.fix)).unwrap();
        writeln!(out, "- Controls: {}", finding.mappings.join(", ")).unwrap();
        if let Some(excerpt) = &finding.excerpt {
            writeln!(out, "\n```text\n{}\n```", excerpt.replace("```", "'''")).unwrap();
        }
        if let Some(snippet) = &finding.fix_snippet {
            writeln!(out, "\n```yaml\n{}\n```", snippet.replace("```", "'''")).unwrap();
        }
        writeln!(out).unwrap();
    }

    writeln!(out, "## Controls in place\n").unwrap();
    writeln!(
        out,
        "| topic | support | controls | evidence |\n|---|---|---|---|"
    )
    .unwrap();
    for entry in &report.controls_in_place {
        writeln!(
            out,
            "| {} | {} | {} | {} |",
            cell(&entry.topic),
            entry.support.as_str(),
            entry.controls.join(", "),
            cell(&entry.evidence)
        )
        .unwrap();
    }
    writeln!(
        out,
        "\nNo entry claims that a requirement is met: each covers the gateway's part only.\n"
    )
    .unwrap();

    if !report.skipped_checks.is_empty() {
        writeln!(out, "## Checks not run\n").unwrap();
        for skipped in &report.skipped_checks {
            writeln!(out, "- {}: {}", skipped.id, cell(&skipped.reason)).unwrap();
        }
        writeln!(out).unwrap();
    }
    if !report.notes.is_empty() {
        writeln!(out, "## Notes\n").unwrap();
        for note in &report.notes {
            writeln!(out, "- {}", cell(note)).unwrap();
        }
    }
    out
}
