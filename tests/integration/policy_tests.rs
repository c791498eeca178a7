//! `run_tests`: `test_*` rules reported like `opa test`.

use std::path::Path;
use std::time::Duration;

use portcullis::authz::policy::{run_tests, TestOutcome, TestReport, TestResult};

/// Sets every duration to 1ms, for exact comparison.
fn steady(mut report: TestReport) -> TestReport {
    for result in &mut report.results {
        result.duration = Duration::from_millis(1);
    }
    report
}

#[test]
fn example_tests_all_pass() {
    let report =
        run_tests(Path::new("examples/users-api/policies")).expect("example policies load");

    assert_eq!(report.results.len(), 12);
    assert_eq!(report.passed(), 12);
    assert!(report.success());
    assert_eq!(report.render(false), "PASS: 12/12\n");
}

#[test]
fn verbose_render_lists_every_test() {
    let report = steady(run_tests(Path::new("examples/users-api/policies")).unwrap());
    let text = report.render(true);
    let lines: Vec<&str> = text.lines().collect();

    assert_eq!(
        lines[0],
        "examples/users-api/policies/users/users_test.rego:"
    );
    assert_eq!(
        lines[1],
        "data.users_test.test_admin_deletes_user_of_own_tenant: PASS (1ms)"
    );
    assert_eq!(lines[13], "-".repeat(80));
    assert_eq!(lines[14], "PASS: 12/12");
    assert_eq!(lines.len(), 15);
}

#[test]
fn failing_and_erroring_tests_reported() {
    let report = steady(run_tests(Path::new("tests/data/policies_failing")).unwrap());
    let outcomes: Vec<(&str, &str)> = report
        .results
        .iter()
        .map(|result| (result.name.as_str(), result.outcome.label()))
        .collect();

    assert_eq!(
        outcomes,
        [
            ("test_passes", "PASS"),
            ("test_fails", "FAIL"),
            ("test_errors", "ERROR")
        ]
    );
    assert!(!report.success());
    assert_eq!(
        report.render(false),
        "tests/data/policies_failing/demo/demo_test.rego:\n\
         data.demo_test.test_fails: FAIL (1ms)\n\
         data.demo_test.test_errors: ERROR (1ms)\n  \
         tests/data/policies_failing/demo/demo_test.rego:13:7: divide by zero\n\
         --------------------------------------------------------------------------------\n\
         PASS: 1/3\n\
         FAIL: 1/3\n\
         ERROR: 1/3\n"
    );
}

#[test]
fn render_separates_files() {
    let result = |file: &str, name: &str| TestResult {
        file: file.into(),
        package: "data.p".into(),
        name: name.into(),
        outcome: TestOutcome::Pass,
        duration: Duration::from_micros(250),
    };
    let report = TestReport {
        results: vec![result("a.rego", "test_a"), result("b.rego", "test_b")],
    };

    assert_eq!(
        report.render(true),
        format!(
            "a.rego:\ndata.p.test_a: PASS (250µs)\n\nb.rego:\ndata.p.test_b: PASS (250µs)\n{}\nPASS: 2/2\n",
            "-".repeat(80)
        )
    );
}

#[test]
fn bundle_that_fails_to_compile_returns_problems() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken_test.rego"),
        "package broken\n\ntest_x if {\n",
    )
    .unwrap();

    let problems = run_tests(dir.path()).expect_err("compile problems");

    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].line, Some(4));
}
