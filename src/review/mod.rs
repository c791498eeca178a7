//! `portcullis review`: a security and compliance review of a gateway
//! configuration and the OpenAPI documents of the APIs behind it.
//!
//! The review reads the configuration as written (`gateway`) and the
//! documents (`openapi`), runs the checks (`config_checks`, `api_checks`),
//! maps each finding to controls of the catalogue (`controls`), states the
//! controls in place (`evidence`) and renders the report (`render`).

pub mod access_checks;
pub mod api_checks;
pub mod checks;
pub mod config_checks;
pub mod controls;
pub mod evidence;
pub mod gateway;
pub mod log_checks;
pub mod model;
pub mod openapi;
pub mod render;
#[cfg(test)]
mod snippet_tests;
pub mod token_checks;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use gateway::Gateway;
use model::{Inputs, Report, Severity, SkippedCheck};
use openapi::ApiDoc;

/// Output formats of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Markdown,
    Json,
    Sarif,
}

impl Format {
    /// Parses `html`, `md`, `json` or `sarif`.
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "html" => Some(Format::Html),
            "md" | "markdown" => Some(Format::Markdown),
            "json" => Some(Format::Json),
            "sarif" => Some(Format::Sarif),
            _ => None,
        }
    }
}

/// What `portcullis review` was asked to do.
pub struct Options {
    pub config: PathBuf,
    pub openapi: Vec<PathBuf>,
    pub format: Format,
    /// Where the report goes; standard output when absent.
    pub output: Option<PathBuf>,
    /// Findings at or above this severity make the command exit with 1.
    pub fail_on: Severity,
}

/// An input that could not be reviewed at all.
#[derive(Debug)]
pub struct InputError(pub String);

/// Runs the review and writes the report. Exits with 0 when no finding
/// reaches `fail_on`, 1 when one does, 2 when an input cannot be read.
/// Each problem for which the gateway would reject the configuration is
/// printed to standard error as a warning, and the review goes on.
pub fn command(options: &Options) -> ExitCode {
    let (gateway, docs) = match load_inputs(&options.config, &options.openapi) {
        Ok(inputs) => inputs,
        Err(InputError(message)) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let rejections = gateway_rejections(&options.config);
    for rejection in &rejections {
        eprintln!("warning: {rejection}");
    }
    let report = review_loaded(&gateway, &docs, rejections);
    let text = render::render(&report, options.format, options.fail_on);
    let written = match &options.output {
        Some(path) => std::fs::write(path, text)
            .map_err(|error| format!("cannot write the report to {}: {error}", path.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    };
    if let Err(message) = written {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let failing = report
        .findings
        .iter()
        .filter(|f| f.severity >= options.fail_on)
        .count();
    if failing > 0 {
        eprintln!(
            "{failing} finding{} at or above {}",
            if failing == 1 { "" } else { "s" },
            options.fail_on.as_str()
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// Reviews a configuration and its API documents. The report's notes
/// start with the problems for which the gateway would reject the
/// configuration.
pub fn review(config: &Path, documents: &[PathBuf]) -> Result<Report, InputError> {
    let (gateway, docs) = load_inputs(config, documents)?;
    Ok(review_loaded(&gateway, &docs, gateway_rejections(config)))
}

/// Reads the configuration as written and every API document.
fn load_inputs(config: &Path, documents: &[PathBuf]) -> Result<(Gateway, Vec<ApiDoc>), InputError> {
    let gateway = Gateway::load(config).map_err(|error| InputError(error.0))?;
    let docs = documents
        .iter()
        .map(|path| ApiDoc::load(path).map_err(|error| InputError(error.0)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((gateway, docs))
}

/// Reviews inputs already loaded. `notes` starts the report's notes.
pub fn review_loaded(gateway: &Gateway, docs: &[ApiDoc], notes: Vec<String>) -> Report {
    let with_documents = !docs.is_empty();
    let outcome = config_checks::run(gateway, with_documents);
    let mut findings = outcome.findings;
    let mut skipped = outcome.skipped;
    if with_documents {
        findings.extend(api_checks::run(gateway, docs));
    } else {
        skipped.extend(
            checks::ALL
                .iter()
                .filter(|c| c.needs_openapi)
                .map(|c| SkippedCheck {
                    id: c.id.to_string(),
                    reason: "needs OpenAPI documents (--openapi)".into(),
                }),
        );
    }
    let mut notes = notes;
    notes.extend(docs.iter().flat_map(|doc| doc.notes.iter().cloned()));
    let controls_in_place = evidence::collect(gateway, &findings, with_documents);
    let mut report = Report {
        inputs: Inputs {
            config: gateway.file.clone(),
            openapi: docs.iter().map(ApiDoc::input).collect(),
        },
        findings,
        controls_in_place,
        skipped_checks: skipped,
        notes,
    };
    report.sort();
    report
}

/// Runs the validation of `portcullis check` and returns one line per
/// problem it finds, each with its `file:line:column` and key path. The
/// review itself reads the file as written, so it goes on either way.
/// Problems never contain secret values.
fn gateway_rejections(config: &Path) -> Vec<String> {
    let problems: Vec<String> = match crate::config::load(config) {
        Ok(loaded) => crate::run::load_key_file(&loaded)
            .err()
            .into_iter()
            .collect(),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    };
    problems
        .into_iter()
        .map(|problem| format!("the gateway would reject this configuration: {problem}"))
        .collect()
}
