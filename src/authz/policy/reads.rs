//! The parts of the input a bundle's rules read, found in the parsed
//! modules. The decision cache keys on those parts alone, so a request that
//! differs only in a header no rule reads (a trace id, a user agent) reuses
//! the decision.
//!
//! The analysis is conservative. It takes the union over every module of
//! the bundle except tests, so a rule that calls another rule is covered.
//! A path stops at the first segment that is not a literal name
//! (`input.headers[name]` reads all of `headers`), and any use of `input`
//! without a path (`count(input)`, `input[key]`, `with input as ...`,
//! `import input`) means the whole input.

use std::collections::BTreeSet;

use serde_json::Value;

/// Input parts a bundle's rules read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputReads {
    /// The whole input, or an analysis that could not tell.
    Whole,
    /// Only these dotted paths and what is under them, none a prefix of
    /// another.
    Paths(Vec<String>),
}

/// Finds the input paths read by the modules in `ast_json`, the output of
/// `regorus::Engine::get_ast_as_json`. Test modules (files named
/// `*_test.rego` or packages ending in `_test`) are left out: no rule of a
/// bundle calls them, and they often replace the whole input.
pub fn input_reads(ast_json: &str) -> InputReads {
    let Ok(Value::Array(modules)) = serde_json::from_str::<Value>(ast_json) else {
        return InputReads::Whole;
    };

    let mut reads = Reads::default();
    for module in modules.iter().filter(|module| !is_test_module(module)) {
        match module.get("ast") {
            Some(ast) => reads.walk(ast),
            None => return InputReads::Whole,
        }
    }

    if reads.whole {
        return InputReads::Whole;
    }
    InputReads::Paths(without_nested(reads.paths))
}

fn is_test_module(module: &Value) -> bool {
    let file = module
        .pointer("/source/file")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let package = module
        .pointer("/ast/package/refr")
        .and_then(last_name)
        .unwrap_or_default();
    file.ends_with("_test.rego") || package.ends_with("_test")
}

/// Returns the last name of a package reference such as `data.users_test`.
fn last_name(reference: &Value) -> Option<&str> {
    if let Some(dot) = reference.get("RefDot") {
        return dot.pointer("/field/1").and_then(Value::as_str);
    }
    reference.pointer("/Var/value").and_then(Value::as_str)
}

#[derive(Default)]
struct Reads {
    whole: bool,
    paths: BTreeSet<String>,
}

impl Reads {
    fn walk(&mut self, node: &Value) {
        match node {
            Value::Object(members) => {
                if members.contains_key("RefDot") || members.contains_key("RefBrack") {
                    self.reference(node);
                } else if let Some(var) = members.get("Var") {
                    if var.get("value").and_then(Value::as_str) == Some("input") {
                        self.whole = true;
                    }
                } else {
                    members.values().for_each(|value| self.walk(value));
                }
            }
            Value::Array(items) => items.iter().for_each(|item| self.walk(item)),
            _ => {}
        }
    }

    /// Follows a chain of `.name` and `[index]` down to its base and
    /// records a path when the base is `input`. Indexes may read the input
    /// themselves, so they are walked too.
    fn reference(&mut self, node: &Value) {
        let mut segments = Vec::new();
        let mut current = node;
        loop {
            if let Some(dot) = current.get("RefDot") {
                let name = dot.pointer("/field/1").and_then(Value::as_str);
                segments.push(name.map(str::to_string));
                current = &dot["refr"];
            } else if let Some(brack) = current.get("RefBrack") {
                let index = &brack["index"];
                segments.push(literal_name(index));
                self.walk(index);
                current = &brack["refr"];
            } else {
                break;
            }
        }

        let base_is_input = current.pointer("/Var/value").and_then(Value::as_str) == Some("input");
        if !base_is_input {
            self.walk(current);
            return;
        }

        // Segments were collected outermost first.
        let path: Vec<String> = segments
            .into_iter()
            .rev()
            .map_while(|segment| segment.filter(|name| !name.contains('.')))
            .collect();
        if path.is_empty() {
            self.whole = true;
        } else {
            self.paths.insert(path.join("."));
        }
    }
}

/// Returns the text of a string index such as `["x-tenant"]`.
fn literal_name(index: &Value) -> Option<String> {
    let string = index.get("String").or_else(|| index.get("RawString"))?;
    string.get("value")?.as_str().map(str::to_string)
}

/// Drops every path that lies under another one (`headers.accept` when
/// `headers` is read whole).
fn without_nested(paths: BTreeSet<String>) -> Vec<String> {
    let mut outermost: Vec<String> = Vec::new();
    for path in paths {
        let covered = outermost.iter().any(|parent| {
            path.strip_prefix(parent.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
        });
        if !covered {
            outermost.push(path);
        }
    }
    outermost
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads_of(modules: &[(&str, &str)]) -> InputReads {
        let mut engine = regorus::Engine::new();
        for (file, text) in modules {
            engine
                .add_policy(file.to_string(), text.to_string())
                .expect("a valid module");
        }
        input_reads(&engine.get_ast_as_json().expect("the AST as JSON"))
    }

    fn paths(list: &[&str]) -> InputReads {
        InputReads::Paths(list.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn finds_the_paths_rules_read() {
        // (description, policy, expected reads)
        let cases = [
            (
                "names and a literal index",
                "package a\nallow if { input.token.sub == input.route.params.id; input.headers[\"x-team\"] == \"t\" }",
                paths(&["headers.x-team", "route.params.id", "token.sub"]),
            ),
            (
                "a variable index reads the whole parent",
                "package a\nallow if { some k; input.headers[k] == \"t\"; input.headers.accept }",
                paths(&["headers"]),
            ),
            (
                "an import alias reads its whole path",
                "package a\nimport input.token as t\nallow if t.sub == \"x\"",
                paths(&["token"]),
            ),
            (
                "an index that reads the input is read too",
                "package a\nallow if data.owners[input.route.params.id] == input.subject",
                paths(&["route.params.id", "subject"]),
            ),
            (
                "a name with a dot stops the path",
                "package a\nallow if input.headers[\"x.y\"] == \"1\"",
                paths(&["headers"]),
            ),
            (
                "input as a value",
                "package a\nallow if count(input) > 0",
                InputReads::Whole,
            ),
            (
                "input with a variable index",
                "package a\nallow if { some k; input[k] == 1 }",
                InputReads::Whole,
            ),
            (
                "the whole input imported",
                "package a\nimport input\nallow if input.x == 1",
                InputReads::Whole,
            ),
            (
                "with input as in a rule",
                "package a\nallow if data.a.inner with input as {\"x\": 1}\ninner if input.x == 1",
                InputReads::Whole,
            ),
        ];
        for (description, policy, expected) in cases {
            assert_eq!(reads_of(&[("a.rego", policy)]), expected, "{description}");
        }
    }

    #[test]
    fn unions_modules_and_skips_tests() {
        let reads = reads_of(&[
            ("a.rego", "package a\nallow if data.b.owner\n"),
            (
                "b.rego",
                "package b\nowner if input.subject == input.route.params.id\n",
            ),
            (
                "a_test.rego",
                "package a_test\ntest_allow if data.a.allow with input as {\"subject\": \"1\"}\n",
            ),
            (
                "other.rego",
                "package c_test\ntest_other if count(input) == 0\n",
            ),
        ]);

        assert_eq!(reads, paths(&["route.params.id", "subject"]));
    }
}
