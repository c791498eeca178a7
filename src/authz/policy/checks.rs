//! Checks on a compiled bundle for what regorus 0.14 does not reject but
//! OPA does, or evaluates differently from OPA:
//!
//! - recursive functions, which overflow the stack in regorus instead of
//!   failing to compile;
//! - data documents that define a rule's path, whose value then silently
//!   replaces the rule's;
//! - a `not` whose expression reads a possibly undefined value inside a
//!   call argument, a membership test or a reference key, or calls a
//!   policy function. OPA moves such operands out of the negation, so an
//!   undefined one makes the rule undefined. regorus makes the negation
//!   true instead, which can allow where OPA denies.
//!
//! Also lists the evaluable rules and the `test_` rules.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use regorus::Engine;
use serde_json::Value;

use super::PolicyProblem;

/// A rule named `test_*`, which [`super::run_tests`] evaluates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRule {
    pub file: String,
    /// Such as `data.users`.
    pub package: String,
    /// Such as `test_admin_may_delete`.
    pub name: String,
}

pub(super) struct Facts {
    pub rules: BTreeSet<String>,
    pub tests: Vec<TestRule>,
}

/// A rule or function definition read from the AST.
struct Definition {
    path: Vec<String>,
    is_function: bool,
    file: String,
    line: u32,
    column: u32,
    /// Resolved paths of every function call in the definition.
    calls: Vec<Vec<String>>,
}

/// A `not` literal and what its expression reads in operand positions.
struct Negation {
    file: String,
    line: u32,
    column: u32,
    /// Resolved references in call arguments, membership tests and
    /// reference keys, each with whether it was written from `input`,
    /// `data` or an import alias.
    operands: Vec<(Vec<String>, bool)>,
    /// Resolved paths of the calls in the expression.
    calls: Vec<Vec<String>>,
}

pub(super) fn inspect(engine: &Engine, data: &Value, problems: &mut Vec<PolicyProblem>) -> Facts {
    let (definitions, negations) = match read_definitions(engine) {
        Ok(read) => read,
        Err(message) => {
            problems.push(PolicyProblem {
                file: "policy bundle".into(),
                line: None,
                column: None,
                message,
            });
            return Facts {
                rules: BTreeSet::new(),
                tests: Vec::new(),
            };
        }
    };

    report_recursion(&definitions, problems);
    report_data_overlap(&definitions, data, problems);
    report_negations(&definitions, &negations, problems);
    Facts {
        rules: definitions
            .iter()
            .filter(|definition| !definition.is_function)
            .map(|definition| definition.path.join("."))
            .collect(),
        tests: test_rules(&definitions),
    }
}

fn read_definitions(engine: &Engine) -> Result<(Vec<Definition>, Vec<Negation>), String> {
    let json = engine
        .get_ast_as_json()
        .map_err(|error| format!("failed to read the policy syntax tree: {error}"))?;
    let modules: Value = serde_json::from_str(&json)
        .map_err(|error| format!("failed to read the policy syntax tree: {error}"))?;

    let mut definitions = Vec::new();
    let mut negations = Vec::new();
    for module in modules.as_array().into_iter().flatten() {
        read_module(module, &mut definitions, &mut negations);
    }
    Ok((definitions, negations))
}

fn read_module(module: &Value, definitions: &mut Vec<Definition>, negations: &mut Vec<Negation>) {
    let file = module["source"]["file"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let contents = module["source"]["contents"].as_str().unwrap_or_default();
    let ast = &module["ast"];

    let mut package = vec!["data".to_string()];
    package.extend(static_path(&ast["package"]["refr"]));
    let aliases = import_aliases(&ast["imports"], contents);
    let defined: Vec<Value> = ast["rules"].as_array().cloned().unwrap_or_default();

    for rule in &defined {
        let (head, is_function) = match (rule.get("Spec"), rule.get("Default")) {
            (Some(spec), _) => match spec["head"].as_object().and_then(|head| head.iter().next()) {
                Some((kind, head)) => (head, kind == "Func"),
                None => continue,
            },
            (None, Some(default)) => (default, false),
            (None, None) => continue,
        };
        let mut path = package.clone();
        path.extend(static_path(&head["refr"]));
        let span = &head["span"];

        collect_negations(rule, &mut |span, expr| {
            let mut operands = Vec::new();
            let mut calls = Vec::new();
            negation_operands(expr, &mut operands, &mut calls);
            negations.push(Negation {
                file: file.clone(),
                line: span["line"].as_u64().unwrap_or(0) as u32,
                column: span["col"].as_u64().unwrap_or(0) as u32,
                operands: operands
                    .into_iter()
                    .map(|path| {
                        let explicit = path.first().is_some_and(|root| {
                            root == "input" || root == "data" || aliases.contains_key(root)
                        });
                        let resolved = if path.first().map(String::as_str) == Some("input") {
                            path
                        } else {
                            resolve_call(path, &package, &aliases)
                        };
                        (resolved, explicit)
                    })
                    .collect(),
                calls: calls
                    .into_iter()
                    .map(|call| resolve_call(call, &package, &aliases))
                    .collect(),
            });
        });

        let mut calls = Vec::new();
        collect_calls(rule, &mut calls);
        let calls = calls
            .into_iter()
            .map(|call| resolve_call(call, &package, &aliases))
            .collect();
        definitions.push(Definition {
            path,
            is_function,
            file: file.clone(),
            line: span["line"].as_u64().unwrap_or(0) as u32,
            column: span["col"].as_u64().unwrap_or(0) as u32,
            calls,
        });
    }
}

/// Returns the leading static components of a reference, such as
/// `[a, b, c]` for `a.b["c"][x]`.
fn static_path(expr: &Value) -> Vec<String> {
    if let Some(var) = expr.get("Var") {
        return var["value"]
            .as_str()
            .map(|name| vec![name.to_string()])
            .unwrap_or_default();
    }
    if let Some(dot) = expr.get("RefDot") {
        let mut path = static_path(&dot["refr"]);
        if let Some(field) = dot["field"][1].as_str() {
            path.push(field.to_string());
        }
        return path;
    }
    if let Some(bracket) = expr.get("RefBrack") {
        let mut path = static_path(&bracket["refr"]);
        if let Some(key) = bracket["index"]["String"]["value"].as_str() {
            path.push(key.to_string());
            return path;
        }
        return path;
    }
    Vec::new()
}

/// Maps each `import data...` alias (explicit `as`, else the last
/// component) to its path.
fn import_aliases(imports: &Value, contents: &str) -> HashMap<String, Vec<String>> {
    let mut aliases = HashMap::new();
    for import in imports.as_array().into_iter().flatten() {
        let path = static_path(&import["refr"]);
        if path.first().map(String::as_str) != Some("data") {
            continue;
        }
        let explicit = import["as"]
            .as_object()
            .and_then(|span| {
                let start = span.get("start")?.as_u64()? as usize;
                let end = span.get("end")?.as_u64()? as usize;
                contents.get(start..end)
            })
            .map(str::to_string);
        let Some(alias) = explicit.or_else(|| path.last().cloned()) else {
            continue;
        };
        aliases.insert(alias, path);
    }
    aliases
}

fn collect_calls(node: &Value, calls: &mut Vec<Vec<String>>) {
    match node {
        Value::Object(members) => {
            if let Some(call) = members.get("Call") {
                calls.push(static_path(&call["fcn"]));
            }
            for value in members.values() {
                collect_calls(value, calls);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_calls(item, calls)),
        _ => {}
    }
}

fn collect_negations(node: &Value, found: &mut dyn FnMut(&Value, &Value)) {
    match node {
        Value::Object(members) => {
            if let Some(negation) = members.get("NotExpr") {
                found(&negation["span"], &negation["expr"]);
            }
            for value in members.values() {
                collect_negations(value, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_negations(item, found)),
        _ => {}
    }
}

const COMPREHENSIONS: [&str; 3] = ["ArrayCompr", "SetCompr", "ObjectCompr"];

/// Walks a negated expression outside operand positions.
fn negation_operands(expr: &Value, operands: &mut Vec<Vec<String>>, calls: &mut Vec<Vec<String>>) {
    let Value::Object(members) = expr else {
        if let Value::Array(items) = expr {
            items
                .iter()
                .for_each(|item| negation_operands(item, operands, calls));
        }
        return;
    };
    if COMPREHENSIONS
        .iter()
        .any(|kind| members.contains_key(*kind))
    {
        return;
    }
    if let Some(call) = members.get("Call") {
        calls.push(static_path(&call["fcn"]));
        references_in(&call["params"], operands, calls);
    } else if let Some(membership) = members.get("Membership") {
        for part in ["key", "value", "collection"] {
            references_in(&membership[part], operands, calls);
        }
    } else if let Some(bracket) = members.get("RefBrack") {
        negation_operands(&bracket["refr"], operands, calls);
        references_in(&bracket["index"], operands, calls);
    } else {
        members
            .values()
            .for_each(|value| negation_operands(value, operands, calls));
    }
}

/// Collects every reference inside an operand, comprehensions excepted.
fn references_in(node: &Value, operands: &mut Vec<Vec<String>>, calls: &mut Vec<Vec<String>>) {
    match node {
        Value::Object(members) => {
            if COMPREHENSIONS
                .iter()
                .any(|kind| members.contains_key(*kind))
            {
                return;
            }
            if members.contains_key("Var")
                || members.contains_key("RefDot")
                || members.contains_key("RefBrack")
            {
                operands.push(static_path(node));
            }
            if let Some(call) = members.get("Call") {
                calls.push(static_path(&call["fcn"]));
            }
            members
                .values()
                .for_each(|value| references_in(value, operands, calls));
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| references_in(item, operands, calls)),
        _ => {}
    }
}

/// Resolves a call to a full `data` path. A bare name may be a function of
/// the same package or a builtin. Builtins drop out later because no
/// definition has their path.
fn resolve_call(
    call: Vec<String>,
    package: &[String],
    aliases: &HashMap<String, Vec<String>>,
) -> Vec<String> {
    let Some(first) = call.first() else {
        return call;
    };
    if first == "data" {
        return call;
    }
    if let Some(prefix) = aliases.get(first) {
        let mut path = prefix.clone();
        path.extend(call.into_iter().skip(1));
        return path;
    }
    let mut path = package.to_vec();
    path.extend(call);
    path
}

/// Reports every cycle of function calls, once per set of functions.
fn report_recursion(definitions: &[Definition], problems: &mut Vec<PolicyProblem>) {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut heads: BTreeMap<String, &Definition> = BTreeMap::new();
    for definition in definitions
        .iter()
        .filter(|definition| definition.is_function)
    {
        let name = definition.path.join(".");
        heads.entry(name.clone()).or_insert(definition);
        graph.entry(name).or_default();
    }
    for definition in definitions
        .iter()
        .filter(|definition| definition.is_function)
    {
        let name = definition.path.join(".");
        for call in &definition.calls {
            let callee = call.join(".");
            if graph.contains_key(&callee) {
                graph.entry(name.clone()).or_default().insert(callee);
            }
        }
    }

    let mut reported: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    for start in graph.keys() {
        let mut stack = Vec::new();
        find_cycles(start, &graph, &mut stack, &mut finished, &mut |cycle| {
            let mut members = cycle.to_vec();
            members.sort();
            if !reported.insert(members) {
                return;
            }
            let head = heads[&cycle[0]];
            let mut chain = cycle.to_vec();
            chain.push(cycle[0].clone());
            problems.push(PolicyProblem {
                file: head.file.clone(),
                line: Some(head.line),
                column: Some(head.column),
                message: format!(
                    "recursive function: {}; Rego does not allow recursion",
                    chain.join(" -> ")
                ),
            });
        });
    }
}

fn find_cycles(
    node: &str,
    graph: &BTreeMap<String, BTreeSet<String>>,
    stack: &mut Vec<String>,
    finished: &mut BTreeSet<String>,
    report: &mut dyn FnMut(&[String]),
) {
    if finished.contains(node) {
        return;
    }
    if let Some(position) = stack.iter().position(|entry| entry == node) {
        report(&stack[position..]);
        return;
    }
    stack.push(node.to_string());
    for callee in graph.get(node).into_iter().flatten() {
        find_cycles(callee, graph, stack, finished, report);
    }
    stack.pop();
    finished.insert(node.to_string());
}

/// Reports a rule whose path a data document also defines, or whose path
/// runs through a data value that is not an object.
fn report_data_overlap(
    definitions: &[Definition],
    data: &Value,
    problems: &mut Vec<PolicyProblem>,
) {
    let mut reported = BTreeSet::new();
    for definition in definitions {
        let name = definition.path.join(".");
        if reported.contains(&name) {
            continue;
        }
        let mut node = data;
        let mut overlap = false;
        for (depth, key) in definition.path.iter().enumerate().skip(1) {
            match node.get(key) {
                None => break,
                Some(_) if depth + 1 == definition.path.len() => overlap = true,
                Some(child @ Value::Object(_)) => node = child,
                Some(_) => {
                    overlap = true;
                    break;
                }
            }
        }
        if overlap {
            reported.insert(name.clone());
            problems.push(PolicyProblem {
                file: definition.file.clone(),
                line: Some(definition.line),
                column: Some(definition.column),
                message: format!(
                    "rule {name} overlaps a value of a data document; rename the rule or the data key"
                ),
            });
        }
    }
}

/// Reports each `not` whose operands may be undefined (see the module
/// documentation): a reference to `input`, to `data`, through an import, or
/// to a rule of the bundle, or a call of a policy function.
fn report_negations(
    definitions: &[Definition],
    negations: &[Negation],
    problems: &mut Vec<PolicyProblem>,
) {
    let functions: BTreeSet<&[String]> = definitions
        .iter()
        .filter(|definition| definition.is_function)
        .map(|definition| definition.path.as_slice())
        .collect();
    let rules: Vec<&[String]> = definitions
        .iter()
        .filter(|definition| !definition.is_function)
        .map(|definition| definition.path.as_slice())
        .collect();
    let names_rule = |path: &[String]| {
        rules
            .iter()
            .any(|rule| rule.starts_with(path) || path.starts_with(rule))
    };

    for negation in negations {
        let operand = negation
            .operands
            .iter()
            .find(|(path, explicit)| *explicit || names_rule(path))
            .map(|(path, _)| path.join("."));
        let call = negation
            .calls
            .iter()
            .find(|call| functions.contains(call.as_slice()))
            .map(|call| format!("the result of {}", call.join(".")));
        let Some(read) = operand.or(call) else {
            continue;
        };
        problems.push(PolicyProblem {
            file: negation.file.clone(),
            line: Some(negation.line),
            column: Some(negation.column),
            message: format!(
                "`not` reads {read} inside a call, membership test or key; when it is undefined, \
                 OPA makes the rule undefined but regorus makes the negation true. \
                 Assign it to a variable before the `not`"
            ),
        });
    }
}

fn test_rules(definitions: &[Definition]) -> Vec<TestRule> {
    let mut seen = BTreeSet::new();
    let mut tests = Vec::new();
    for definition in definitions
        .iter()
        .filter(|definition| !definition.is_function)
    {
        let Some((name, package)) = definition.path.split_last() else {
            continue;
        };
        if !name.starts_with("test_") || !seen.insert(definition.path.clone()) {
            continue;
        }
        tests.push(TestRule {
            file: definition.file.clone(),
            package: package.join("."),
            name: name.clone(),
        });
    }
    tests
}
