//! Loading a bundle: finding its files, parsing Rego modules and data
//! documents, compiling, and collecting every problem on the way.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use regorus::Engine;
use ring::digest::{Context, SHA256};
use serde_json::{Map, Value};

use super::checks::{self, TestRule};
use super::PolicyProblem;

/// Deepest directory nesting followed under a given directory, which also
/// stops symbolic-link cycles.
const MAX_DIRECTORY_DEPTH: usize = 16;

/// Hex digits of the SHA-256 kept as the bundle version.
const VERSION_DIGITS: usize = 16;

pub(super) struct Bundle {
    pub engine: Engine,
    pub version: String,
    pub rules: BTreeSet<String>,
    pub tests: Vec<TestRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rego,
    Json,
    Yaml,
}

struct SourceFile {
    /// The path to show in problems.
    label: String,
    /// The path relative to the directory it was found under, hashed into
    /// the version so that moving a bundle keeps its version.
    relative: String,
    /// Path under `data` of a data document.
    data_path: Vec<String>,
    kind: Kind,
    text: String,
}

pub(super) fn load_bundle<P: AsRef<Path>>(paths: &[P]) -> Result<Bundle, Vec<PolicyProblem>> {
    let mut problems = Vec::new();
    let files = read_files(paths, &mut problems);
    if !files.iter().any(|file| file.kind == Kind::Rego) && problems.is_empty() {
        problems.push(PolicyProblem {
            file: display_paths(paths),
            line: None,
            column: None,
            message: "no .rego policy file found; expected at least one".into(),
        });
    }

    let modules = parse_modules(&files, &mut problems);
    let data = merge_data(&files, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }

    let engine = compile(&modules, data.clone(), &mut problems);
    let engine = match engine {
        Some(engine) if problems.is_empty() => engine,
        _ => return Err(problems),
    };

    let facts = checks::inspect(&engine, &Value::Object(data), &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Bundle {
        engine,
        version: version(&files),
        rules: facts.rules,
        tests: facts.tests,
    })
}

fn display_paths<P: AsRef<Path>>(paths: &[P]) -> String {
    let names: Vec<String> = paths
        .iter()
        .map(|path| path.as_ref().display().to_string())
        .collect();
    names.join(", ")
}

fn file_problem(file: &str, message: String) -> PolicyProblem {
    PolicyProblem {
        file: file.to_string(),
        line: None,
        column: None,
        message,
    }
}

fn read_files<P: AsRef<Path>>(paths: &[P], problems: &mut Vec<PolicyProblem>) -> Vec<SourceFile> {
    let mut found = Vec::new();
    for path in paths {
        let path = path.as_ref();
        if path.is_dir() {
            walk(path, path, 0, &mut found, problems);
        } else if path.exists() {
            push_file(path, path.parent().unwrap_or(path), &mut found, problems);
        } else {
            problems.push(file_problem(
                &path.display().to_string(),
                "not found; expected a policy file or directory".into(),
            ));
        }
    }
    found
}

fn walk(
    root: &Path,
    dir: &Path,
    depth: usize,
    found: &mut Vec<SourceFile>,
    problems: &mut Vec<PolicyProblem>,
) {
    let label = dir.display().to_string();
    if depth > MAX_DIRECTORY_DEPTH {
        problems.push(file_problem(
            &label,
            format!("nested deeper than {MAX_DIRECTORY_DEPTH} directories; flatten the bundle"),
        ));
        return;
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            problems.push(file_problem(
                &label,
                format!("failed to read directory: {error}"),
            ));
            return;
        }
    };

    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| !is_hidden(path))
        .collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk(root, &path, depth + 1, found, problems);
        } else if kind_of(&path).is_some() {
            push_file(&path, root, found, problems);
        }
    }
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with('.'))
}

fn kind_of(path: &Path) -> Option<Kind> {
    match path.extension()?.to_str()? {
        "rego" => Some(Kind::Rego),
        "json" => Some(Kind::Json),
        "yaml" | "yml" => Some(Kind::Yaml),
        _ => None,
    }
}

fn push_file(
    path: &Path,
    root: &Path,
    found: &mut Vec<SourceFile>,
    problems: &mut Vec<PolicyProblem>,
) {
    let label = path.display().to_string();
    let Some(kind) = kind_of(path) else {
        problems.push(file_problem(
            &label,
            "unsupported file type; expected .rego, .json, .yaml or .yml".into(),
        ));
        return;
    };
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            problems.push(file_problem(&label, format!("failed to read: {error}")));
            return;
        }
    };

    let relative = path.strip_prefix(root).unwrap_or(path);
    let data_path = relative
        .parent()
        .map(|parent| {
            parent
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    found.push(SourceFile {
        label,
        relative: relative.to_string_lossy().replace('\\', "/"),
        data_path,
        kind,
        text,
    });
}

/// SHA-256 over the sorted relative names and contents, each preceded by
/// its length so that no two bundles hash the same byte stream.
fn version(files: &[SourceFile]) -> String {
    let mut sorted: Vec<&SourceFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.relative.cmp(&b.relative));

    let mut context = Context::new(&SHA256);
    for file in sorted {
        for part in [file.relative.as_bytes(), file.text.as_bytes()] {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
    }
    let digest = context.finish();
    let mut hex = String::with_capacity(VERSION_DIGITS);
    for byte in digest.as_ref().iter().take(VERSION_DIGITS / 2) {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// A Rego module that parses on its own.
pub(super) struct Module {
    pub label: String,
    pub text: String,
}

/// Parses each module in its own engine, so that a syntax error in one
/// file does not hide the errors of the others.
fn parse_modules(files: &[SourceFile], problems: &mut Vec<PolicyProblem>) -> Vec<Module> {
    let mut modules = Vec::new();
    for file in files.iter().filter(|file| file.kind == Kind::Rego) {
        let mut engine = Engine::new();
        match engine.add_policy(file.label.clone(), file.text.clone()) {
            Ok(_) => modules.push(Module {
                label: file.label.clone(),
                text: file.text.clone(),
            }),
            Err(error) => problems.push(problem_from_error(&error.to_string(), &file.label)),
        }
    }
    modules
}

/// Compiles all modules together. regorus stops at the first analysis
/// error, so the module it names is set aside and the rest compiled again,
/// until no error remains or no module is left.
fn compile(
    modules: &[Module],
    data: Map<String, Value>,
    problems: &mut Vec<PolicyProblem>,
) -> Option<Engine> {
    use serde::Deserialize as _;
    let data = match regorus::Value::deserialize(&Value::Object(data)) {
        Ok(data) => data,
        Err(error) => {
            problems.push(file_problem(
                "data",
                format!("failed to convert data documents: {error}"),
            ));
            return None;
        }
    };

    let mut remaining: Vec<&Module> = modules.iter().collect();
    while !remaining.is_empty() {
        let mut engine = Engine::new();
        for module in &remaining {
            if let Err(error) = engine.add_policy(module.label.clone(), module.text.clone()) {
                problems.push(problem_from_error(&error.to_string(), &module.label));
                return None;
            }
        }
        if let Err(error) = engine.add_data(data.clone()) {
            problems.push(file_problem(
                "data",
                format!("failed to add data documents: {error}"),
            ));
            return None;
        }

        // Evaluating a constant query runs the analysis of every module.
        let Err(error) = engine.eval_query("true".to_string(), false) else {
            return Some(engine);
        };
        let problem = problem_from_error(&error.to_string(), "policy bundle");
        let failed = remaining
            .iter()
            .position(|module| module.label == problem.file);
        problems.push(problem);
        match failed {
            Some(index) => {
                remaining.remove(index);
            }
            None => return None,
        }
    }
    None
}

/// Builds a problem from a regorus error, whose text carries the position as
/// a `--> file:line:column` line and the message on an `error: ` line.
fn problem_from_error(text: &str, fallback_file: &str) -> PolicyProblem {
    let message = text
        .lines()
        .find_map(|line| line.strip_prefix("error: "))
        .unwrap_or(text.trim())
        .to_string();
    match parse_location(text) {
        Some((file, line, column)) => PolicyProblem {
            file,
            line: Some(line),
            column: Some(column),
            message,
        },
        None => file_problem(fallback_file, message),
    }
}

/// Formats a regorus error as one line, `file:line:column: message`.
pub(super) fn describe_error(text: &str) -> String {
    problem_from_error(text, "policy bundle").to_string()
}

/// Returns the first `file:line:column` of a regorus error, if it has one.
pub(super) fn error_location(text: &str) -> Option<String> {
    parse_location(text).map(|(file, line, column)| format!("{file}:{line}:{column}"))
}

fn parse_location(text: &str) -> Option<(String, u32, u32)> {
    let location = text
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("--> "))?;
    let mut parts = location.trim_end().rsplitn(3, ':');
    let column = parts.next()?.parse().ok()?;
    let line = parts.next()?.parse().ok()?;
    let file = parts.next()?.to_string();
    Some((file, line, column))
}

/// Merges every data document into one `data` object, reporting parse
/// errors at their position and any key two documents both define.
fn merge_data(files: &[SourceFile], problems: &mut Vec<PolicyProblem>) -> Map<String, Value> {
    let mut data = Map::new();
    for file in files {
        let document = match file.kind {
            Kind::Rego => continue,
            Kind::Json => parse_json(file, problems),
            Kind::Yaml => parse_yaml(file, problems),
        };
        let Some(document) = document else {
            continue;
        };
        if file.data_path.is_empty() && !document.is_object() {
            problems.push(file_problem(
                &file.label,
                format!(
                    "expected an object at the top level of a data document in the bundle root, found {}",
                    json_kind(&document)
                ),
            ));
            continue;
        }

        let wrapped = file.data_path.iter().rev().fold(document, |inner, key| {
            Value::Object(Map::from_iter([(key.clone(), inner)]))
        });
        if let Value::Object(members) = wrapped {
            let mut path = vec!["data".to_string()];
            merge_into(&mut data, members, &mut path, &file.label, problems);
        }
    }
    data
}

fn merge_into(
    target: &mut Map<String, Value>,
    source: Map<String, Value>,
    path: &mut Vec<String>,
    label: &str,
    problems: &mut Vec<PolicyProblem>,
) {
    for (key, value) in source {
        path.push(key.clone());
        match (target.get_mut(&key), value) {
            (None, value) => {
                target.insert(key, value);
            }
            (Some(Value::Object(existing)), Value::Object(members)) => {
                merge_into(existing, members, path, label, problems);
            }
            (Some(_), _) => problems.push(file_problem(
                label,
                format!(
                    "{} is already defined by another data document; each key may come from one document only",
                    path.join(".")
                ),
            )),
        }
        path.pop();
    }
}

fn parse_json(file: &SourceFile, problems: &mut Vec<PolicyProblem>) -> Option<Value> {
    match serde_json::from_str(&file.text) {
        Ok(value) => Some(value),
        Err(error) => {
            problems.push(PolicyProblem {
                file: file.label.clone(),
                line: u32::try_from(error.line()).ok().filter(|line| *line > 0),
                column: u32::try_from(error.column())
                    .ok()
                    .filter(|column| *column > 0),
                message: format!("invalid JSON: {}", json_error_message(&error)),
            });
            None
        }
    }
}

/// serde_json's message without its trailing " at line L column C", which
/// the problem already carries.
fn json_error_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(end) => text[..end].to_string(),
        None => text,
    }
}

fn parse_yaml(file: &SourceFile, problems: &mut Vec<PolicyProblem>) -> Option<Value> {
    use yaml_rust2::YamlLoader;

    let documents = match YamlLoader::load_from_str(&file.text) {
        Ok(documents) => documents,
        Err(error) => {
            let marker = error.marker();
            problems.push(PolicyProblem {
                file: file.label.clone(),
                line: u32::try_from(marker.line()).ok(),
                column: u32::try_from(marker.col() + 1).ok(),
                message: format!("invalid YAML: {}", error.info()),
            });
            return None;
        }
    };
    match documents.as_slice() {
        [] => None,
        [document] => match yaml_to_json(document) {
            Ok(value) => Some(value),
            Err(message) => {
                problems.push(file_problem(&file.label, message));
                None
            }
        },
        more => {
            problems.push(file_problem(
                &file.label,
                format!("expected one YAML document, found {}", more.len()),
            ));
            None
        }
    }
}

fn yaml_to_json(node: &yaml_rust2::Yaml) -> Result<Value, String> {
    use yaml_rust2::Yaml;

    Ok(match node {
        Yaml::Null => Value::Null,
        Yaml::Boolean(value) => Value::Bool(*value),
        Yaml::Integer(value) => Value::from(*value),
        Yaml::Real(text) => {
            let number = text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .ok_or_else(|| {
                    format!("unsupported YAML number {text:?}; expected a finite number")
                })?;
            Value::Number(number)
        }
        Yaml::String(text) => Value::String(text.clone()),
        Yaml::Array(items) => {
            Value::Array(items.iter().map(yaml_to_json).collect::<Result<_, _>>()?)
        }
        Yaml::Hash(entries) => {
            let mut members = Map::new();
            for (key, value) in entries {
                let key = match key {
                    Yaml::String(text) => text.clone(),
                    Yaml::Integer(number) => number.to_string(),
                    Yaml::Boolean(flag) => flag.to_string(),
                    _ => return Err("unsupported YAML mapping key; expected a string".into()),
                };
                members.insert(key, yaml_to_json(value)?);
            }
            Value::Object(members)
        }
        Yaml::Alias(_) | Yaml::BadValue => {
            return Err("unsupported YAML value; aliases and tagged values cannot be data".into())
        }
    })
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
