//! Loading bundles: files and directories, versions, and every problem
//! reported at its file:line:column.

use crate::policy_support as common;

use common::{load_ok, problems_of, write_bundle};
use portcullis::authz::policy::PolicySet;

const ALLOW: &str = "package demo\n\nallow if input.user == \"alice\"\n";

#[test]
fn example_bundle_lists_its_rules() {
    let set = common::example_set();

    assert!(set.has_rule("data.users.allow_delete"));
    assert!(set.has_rule("data.users.read_decision"));
    assert!(set.has_rule("data.users_test.test_user_reads_own_record"));
    assert!(!set.has_rule("data.users.allow_purge"));
    assert!(
        !set.has_rule("data.users.directory"),
        "data documents are not rules"
    );
}

#[test]
fn version_is_sixteen_hex_digits() {
    let set = common::example_set();

    assert_eq!(set.version().len(), 16);
    assert!(set.version().chars().all(|c| c.is_ascii_hexdigit()));
}

#[test]
fn version_follows_content_not_location() {
    let first = write_bundle(&[("demo/demo.rego", ALLOW), ("demo/data.json", "{\"a\": 1}")]);
    let moved = write_bundle(&[("demo/demo.rego", ALLOW), ("demo/data.json", "{\"a\": 1}")]);
    let changed = write_bundle(&[("demo/demo.rego", ALLOW), ("demo/data.json", "{\"a\": 2}")]);
    let renamed = write_bundle(&[("demo/other.rego", ALLOW), ("demo/data.json", "{\"a\": 1}")]);

    let version = |dir: &tempfile::TempDir| {
        PolicySet::load(&[dir.path()])
            .unwrap()
            .version()
            .to_string()
    };
    assert_eq!(version(&first), version(&moved));
    assert_ne!(version(&first), version(&changed));
    assert_ne!(version(&first), version(&renamed));
}

#[test]
fn files_and_directories_combine() {
    let policies = write_bundle(&[("demo.rego", ALLOW)]);
    let data = write_bundle(&[("limits.json", "{\"limits\": {\"max\": 3}}")]);
    let set = PolicySet::load(&[policies.path(), &data.path().join("limits.json")]).unwrap();

    assert!(set.has_rule("data.demo.allow"));
}

#[test]
fn data_goes_under_its_directory() {
    let set = load_ok(&[
        (
            "demo/demo.rego",
            "package demo\n\nlimit := data.demo.limits.max\nowner := data.teams.owner\n",
        ),
        ("demo/data.json", "{\"limits\": {\"max\": 3}}"),
        ("teams/team.yaml", "owner: ops\nmembers:\n  - ann\n  - bo\n"),
    ]);

    let value = set.evaluate_value(
        "data.demo.limit",
        &serde_json::json!({}),
        std::time::Duration::from_secs(1),
    );
    assert_eq!(value, Ok(Some(serde_json::json!(3))));
    let owner = set.evaluate_value(
        "data.demo.owner",
        &serde_json::json!({}),
        std::time::Duration::from_secs(1),
    );
    assert_eq!(owner, Ok(Some(serde_json::json!("ops"))));
}

#[test]
fn problem_cases() {
    // (description, bundle files, expected problem beginnings)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: &[Case] = &[
        (
            "syntax error in each of two files, both reported",
            &[
                ("a.rego", "package a\n\nallow if {\n  input.x ==\n}\n"),
                ("b.rego", "package b\n\nallow if input.y = \n"),
            ],
            &["a.rego:5:1: expecting expression", "b.rego:4:1: "],
        ),
        (
            "unsafe variable found by analysis",
            &[("a.rego", "package a\n\nallow if {\n  y == 1\n}\n")],
            &["a.rego:4:3: use of undefined variable `y` is unsafe"],
        ),
        (
            "analysis errors in two files, both reported",
            &[
                ("a.rego", "package a\n\nallow if {\n  y == 1\n}\n"),
                ("b.rego", "package b\n\nallow if {\n  z == 1\n}\n"),
            ],
            &["a.rego:4:3: use of undefined variable `y` is unsafe", "b.rego:4:3: use of undefined variable `z` is unsafe"],
        ),
        (
            "function calling itself",
            &[("a.rego", "package a\n\nf(n) := f(n + 1)\n\nallow if f(1) == 2\n")],
            &["a.rego:3:1: recursive function: data.a.f -> data.a.f; Rego does not allow recursion"],
        ),
        (
            "functions calling each other across packages and an import alias",
            &[
                ("a.rego", "package a\n\nimport data.b as other\n\nf(n) := other.g(n)\n"),
                ("b.rego", "package b\n\ng(n) := data.a.f(n)\n"),
            ],
            &["a.rego:5:1: recursive function: data.a.f -> data.b.g -> data.a.f; Rego does not allow recursion"],
        ),
        (
            "data document defining a rule's path",
            &[("demo/demo.rego", "package demo\n\nallow if input.ok\n"), ("demo/data.json", "{\"allow\": true}")],
            &["demo/demo.rego:3:1: rule data.demo.allow overlaps a value of a data document; rename the rule or the data key"],
        ),
        (
            "negation over an input operand",
            &[("a.rego", "package a\n\nallow if not \"admin\" in input.roles\n")],
            &["a.rego:3:10: `not` reads input.roles inside a call, membership test or key"],
        ),
        (
            "negation over a function argument read from a rule",
            &[("a.rego", "package a\n\nname := input.name\n\nallow if not startswith(name, \"x\")\n")],
            &["a.rego:5:10: `not` reads data.a.name inside a call"],
        ),
        (
            "invalid JSON data at its line and column",
            &[("a.rego", ALLOW), ("data.json", "{\n  \"a\": [1, 2,\n}\n")],
            &["data.json:3:1: invalid JSON: expected value"],
        ),
        (
            "invalid YAML data at its line and column",
            &[("a.rego", ALLOW), ("data.yaml", "a: [1, 2\nb: 3\n")],
            &["data.yaml:2:"],
        ),
        (
            "two data documents defining one key",
            &[("a.rego", ALLOW), ("one.json", "{\"x\": {\"y\": 1}}"), ("two.json", "{\"x\": {\"y\": 2}}")],
            &["two.json: data.x.y is already defined by another data document"],
        ),
        (
            "array at the root of the data",
            &[("a.rego", ALLOW), ("data.json", "[1, 2]")],
            &["data.json: expected an object at the top level of a data document in the bundle root, found an array"],
        ),
        (
            "bundle without policies",
            &[("data.json", "{}")],
            &["no .rego policy file found; expected at least one"],
        ),
    ];

    for (description, files, expected) in cases {
        let problems = problems_of(files);
        assert_eq!(
            problems.len(),
            expected.len(),
            "{description}: {problems:#?}"
        );
        for (problem, start) in problems.iter().zip(expected.iter()) {
            let text = problem.trim_start_matches('/');
            assert!(
                text.starts_with(start) || text.ends_with(start),
                "{description}: {text:?} should start with {start:?}"
            );
        }
    }
}

#[test]
fn missing_path_reported() {
    let problems = match PolicySet::load(&["/nonexistent/policies"]) {
        Ok(_) => panic!("should not load"),
        Err(problems) => problems,
    };

    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0].to_string(),
        "/nonexistent/policies: not found; expected a policy file or directory"
    );
}

#[test]
fn problem_carries_structured_position() {
    let dir = write_bundle(&[("a.rego", "package a\n\nallow if {\n  input.x ==\n}\n")]);
    let problems = match PolicySet::load(&[dir.path()]) {
        Ok(_) => panic!("should not load"),
        Err(problems) => problems,
    };

    assert_eq!(
        problems[0].file,
        dir.path().join("a.rego").display().to_string()
    );
    assert_eq!(problems[0].line, Some(5));
    assert_eq!(problems[0].column, Some(1));
    assert_eq!(problems[0].message, "expecting expression");
}

#[test]
fn negation_on_bound_variable_accepted() {
    load_ok(&[(
        "a.rego",
        "package a\n\nallow if {\n  roles := input.roles\n  not \"admin\" in roles\n}\n",
    )]);
}

#[test]
fn hidden_and_other_files_ignored() {
    load_ok(&[
        ("a.rego", ALLOW),
        (".git/broken.rego", "package"),
        ("README.md", "# not a policy"),
    ]);
}
