//! The HTML report: one self-contained page (inline CSS, no scripts, no
//! external assets) for auditors. Every text from the inputs is escaped.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::super::controls::{self, Control};
use super::super::model::{Finding, Report, Severity};

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1d232b;padding:0 1rem}\
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #d5dae1;padding-bottom:.2rem;margin-top:2.2rem}\
table{border-collapse:collapse;width:100%;margin:.6rem 0}th,td{border:1px solid #d5dae1;padding:.35rem .6rem;text-align:left;vertical-align:top}\
th{background:#f1f3f6}td a{white-space:nowrap}.counts{display:flex;gap:.8rem;margin:1rem 0}.count{flex:1;border-radius:6px;padding:.7rem 1rem;color:#fff}\
.count b{display:block;font-size:1.8rem}.critical{background:#8e1b1b}.high{background:#c2410c}.medium{background:#a16207}.low{background:#2f6f8f}\
.badge{display:inline-block;border-radius:4px;padding:0 .45rem;color:#fff;font-size:.8rem;text-transform:uppercase}\
.finding{border:1px solid #d5dae1;border-left-width:6px;border-radius:4px;padding:.6rem 1rem;margin:.8rem 0}\
.finding.critical{border-left-color:#8e1b1b;background:none}.finding.high{border-left-color:#c2410c;background:none}\
.finding.medium{border-left-color:#a16207;background:none}.finding.low{border-left-color:#2f6f8f;background:none}\
.finding h3{margin:.2rem 0}code,pre{font-family:ui-monospace,monospace;font-size:.85rem}pre{background:#f6f8fa;padding:.5rem;overflow-x:auto}\
dt{font-weight:600}dd{margin:0 0 .4rem 0}.muted{color:#5b6675}.supported{color:#166534}.partial{color:#a16207}.not_evidenced{color:#8e1b1b}.outside_gateway{color:#5b6675}";

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Renders the report as one HTML page.
pub fn render(report: &Report, fail_on: Severity) -> String {
    let mut out = String::new();
    write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Portcullis review</title><style>{STYLE}</style></head><body>\n"
    )
    .unwrap();
    summary(&mut out, report, fail_on);
    by_api(&mut out, report);
    by_standard(&mut out, report);
    controls_in_place(&mut out, report);
    details(&mut out, report);
    limits(&mut out, report);
    out.push_str("</body></html>\n");
    out
}

fn summary(out: &mut String, report: &Report, fail_on: Severity) {
    let failing = report
        .findings
        .iter()
        .filter(|f| f.severity >= fail_on)
        .count();
    write!(
        out,
        "<h1>Portcullis review</h1><p class=\"muted\">Configuration <code>{}</code>",
        escape(&report.inputs.config)
    )
    .unwrap();
    for api in &report.inputs.openapi {
        write!(
            out,
            " · {} (<code>{}</code>, OpenAPI {}, {} operations)",
            escape(&api.title),
            escape(&api.file),
            escape(&api.version),
            api.operations
        )
        .unwrap();
    }
    out.push_str("</p><h2>Summary</h2><div class=\"counts\">");
    for severity in Severity::DESCENDING {
        write!(
            out,
            "<div class=\"count {0}\"><b>{1}</b>{0}</div>",
            severity.as_str(),
            report.count(severity)
        )
        .unwrap();
    }
    writeln!(
        out,
        "</div><p>{} findings in total; {failing} at or above <b>{}</b>, the level that fails the run.</p>",
        report.findings.len(),
        fail_on.as_str()
    )
    .unwrap();
}

fn badge(severity: Severity) -> String {
    format!("<span class=\"badge {0}\">{0}</span>", severity.as_str())
}

fn link(index: usize, finding: &Finding) -> String {
    format!("<a href=\"#f{index}\">{}</a>", escape(&finding.id))
}

fn by_api(out: &mut String, report: &Report) {
    let mut groups: BTreeMap<&str, Vec<(usize, &Finding)>> = BTreeMap::new();
    for (i, finding) in report.findings.iter().enumerate() {
        groups
            .entry(finding.api_name())
            .or_default()
            .push((i, finding));
    }
    out.push_str("<h2>Findings by API</h2>");
    if groups.is_empty() {
        out.push_str("<p>No findings.</p>");
    }
    for (api, findings) in groups {
        write!(out, "<h3>{}</h3><table><tr><th>severity</th><th>finding</th><th>title</th><th>location</th></tr>", escape(api)).unwrap();
        for (i, finding) in findings {
            write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                badge(finding.severity),
                link(i, finding),
                escape(&finding.title),
                escape(&finding.location_text())
            )
            .unwrap();
        }
        out.push_str("</table>\n");
    }
}

fn by_standard(out: &mut String, report: &Report) {
    let catalogue = controls::catalogue();
    out.push_str("<h2>Findings by standard</h2>");
    for family in [
        "OWASP API Top 10 2023",
        "PCI DSS v4.0",
        "GDPR",
        "NIST CSF 2.0",
    ] {
        let rows: Vec<(&Control, Vec<(usize, &Finding)>)> = catalogue
            .iter()
            .filter(|c| controls::family(&c.id) == family)
            .map(|c| {
                let hits = report
                    .findings
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.mappings.contains(&c.id))
                    .collect();
                (c, hits)
            })
            .filter(|(_, hits): &(&Control, Vec<_>)| !hits.is_empty())
            .collect();
        write!(out, "<h3>{}</h3>", escape(family)).unwrap();
        if rows.is_empty() {
            out.push_str("<p class=\"muted\">No findings map to this standard.</p>");
            continue;
        }
        out.push_str("<table><tr><th>control</th><th>what it asks</th><th>findings</th></tr>");
        for (control, hits) in rows {
            let links: Vec<String> = hits.iter().map(|(i, f)| link(*i, f)).collect();
            write!(
                out,
                "<tr><td><b>{}</b><br>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&control.reference),
                escape(&control.title),
                escape(&control.description),
                links.join(", ")
            )
            .unwrap();
        }
        out.push_str("</table>\n");
    }
}

fn controls_in_place(out: &mut String, report: &Report) {
    out.push_str("<h2>Controls in place</h2><p>What the configuration shows the gateway enforces. No entry claims that a requirement is met: each covers the gateway's part only.</p><table><tr><th>topic</th><th>support</th><th>controls</th><th>evidence</th></tr>");
    for entry in &report.controls_in_place {
        let class = serde_json::to_value(entry.support)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        write!(
            out,
            "<tr><td>{}</td><td class=\"{class}\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(&entry.topic),
            entry.support.as_str(),
            escape(&entry.controls.join(", ")),
            escape(&entry.evidence)
        )
        .unwrap();
    }
    out.push_str("</table>\n");
}

fn details(out: &mut String, report: &Report) {
    out.push_str("<h2>Finding details</h2>");
    for (i, finding) in report.findings.iter().enumerate() {
        write!(
            out,
            "<div class=\"finding {sev}\" id=\"f{i}\"><h3>{badge} {id} {title}</h3><dl><dt>Location</dt><dd><code>{location}</code></dd>",
            sev = finding.severity.as_str(),
            badge = badge(finding.severity),
            id = escape(&finding.id),
            title = escape(&finding.title),
            location = escape(&finding.location_text()),
        )
        .unwrap();
        if let (Some(config), Some(_)) = (&finding.config, &finding.openapi) {
            write!(
                out,
                "<dt>Route</dt><dd><code>{}:{} {}</code></dd>",
                escape(&config.file),
                config.line,
                escape(&config.key_path)
            )
            .unwrap();
        }
        write!(
            out,
            "<dt>Evidence</dt><dd>{}</dd><dt>Why it matters</dt><dd>{}</dd><dt>Fix</dt><dd>{}</dd><dt>Controls</dt><dd>{}</dd></dl>",
            escape(&finding.evidence),
            escape(&finding.why),
            escape(&finding.fix),
            escape(&finding.mappings.join(", "))
        )
        .unwrap();
        if let Some(excerpt) = &finding.excerpt {
            write!(out, "<pre>{}</pre>", escape(excerpt)).unwrap();
        }
        if let Some(snippet) = &finding.fix_snippet {
            write!(out, "<pre>{}</pre>", escape(snippet)).unwrap();
        }
        out.push_str("</div>\n");
    }
}

fn limits(out: &mut String, report: &Report) {
    if !report.skipped_checks.is_empty() {
        out.push_str("<h2>Checks not run</h2><ul>");
        for skipped in &report.skipped_checks {
            write!(
                out,
                "<li><b>{}</b>: {}</li>",
                escape(&skipped.id),
                escape(&skipped.reason)
            )
            .unwrap();
        }
        out.push_str("</ul>\n");
    }
    if !report.notes.is_empty() {
        out.push_str("<h2>Notes</h2><ul>");
        for note in &report.notes {
            write!(out, "<li>{}</li>", escape(note)).unwrap();
        }
        out.push_str("</ul>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_characters() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
