//! Policy unit tests in the manner of `opa test`: every rule named `test_*`
//! passes when it evaluates to `true`.
//!
//! [`TestReport::render`] follows the plain output of `opa test` (OPA's
//! `tester.PrettyReporter`): failing tests (all tests when verbose) grouped
//! under a `file:` line, each as `data.pkg.test_name: PASS (duration)`, an
//! error indented below its test, a line of 80 dashes, then `PASS: n/m`,
//! `FAIL: n/m` and `ERROR: n/m` for the counts that are not zero.
//! Differences: no `FAILURES` trace section in verbose mode, no `SKIPPED`
//! (`todo_test_` rules are not collected), no `print` output, durations use
//! Rust's notation (`1.2ms`, `405µs`, close to Go's), and error texts are
//! regorus' rather than OPA's.

use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::path::Path;
use std::time::{Duration, Instant};

use regorus::utils::limits::ExecutionTimerConfig;

use super::{load, PolicyProblem, PolicySet, TIMER_CHECK_INTERVAL};

/// Time budget of one test rule.
pub const TEST_BUDGET: Duration = Duration::from_secs(5);

/// The outcome of one test rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestOutcome {
    /// The rule evaluated to `true`.
    Pass,
    /// The rule evaluated to anything else, or was undefined.
    Fail,
    /// Evaluation failed, with regorus' error at its location.
    Error(String),
}

impl TestOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            TestOutcome::Pass => "PASS",
            TestOutcome::Fail => "FAIL",
            TestOutcome::Error(_) => "ERROR",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub file: String,
    /// Such as `data.users`.
    pub package: String,
    /// Such as `test_admin_may_delete`.
    pub name: String,
    pub outcome: TestOutcome,
    pub duration: Duration,
}

/// The results of [`run_tests`], in file and definition order.
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    pub results: Vec<TestResult>,
}

impl TestReport {
    pub fn passed(&self) -> usize {
        self.count("PASS")
    }

    pub fn failed(&self) -> usize {
        self.count("FAIL")
    }

    pub fn errors(&self) -> usize {
        self.count("ERROR")
    }

    /// Returns whether every test passed (and there was at least one).
    pub fn success(&self) -> bool {
        !self.results.is_empty() && self.passed() == self.results.len()
    }

    fn count(&self, label: &str) -> usize {
        self.results
            .iter()
            .filter(|result| result.outcome.label() == label)
            .count()
    }

    /// Renders the report like `opa test` (see the module documentation);
    /// `verbose` also lists passing tests, like `opa test -v`.
    pub fn render(&self, verbose: bool) -> String {
        let mut text = String::new();
        let mut last_file: Option<&str> = None;
        for result in &self.results {
            if !verbose && result.outcome == TestOutcome::Pass {
                continue;
            }
            if last_file != Some(result.file.as_str()) {
                if last_file.is_some() {
                    text.push('\n');
                }
                let _ = writeln!(text, "{}:", result.file);
                last_file = Some(&result.file);
            }
            let _ = writeln!(
                text,
                "{}.{}: {} ({:?})",
                result.package,
                result.name,
                result.outcome.label(),
                result.duration
            );
            if let TestOutcome::Error(error) = &result.outcome {
                let _ = writeln!(text, "  {error}");
            }
        }

        if last_file.is_some() {
            text.push_str(&"-".repeat(80));
            text.push('\n');
        }
        let total = self.results.len();
        for (label, count) in [
            ("PASS", self.passed()),
            ("FAIL", self.failed()),
            ("ERROR", self.errors()),
        ] {
            if count > 0 {
                let _ = writeln!(text, "{label}: {count}/{total}");
            }
        }
        text
    }
}

/// Loads every policy and data document under `dir` and evaluates each
/// `test_*` rule without input, each within [`TEST_BUDGET`]. Returns the
/// load problems instead when the bundle does not compile, as `opa test`
/// does.
pub fn run_tests(dir: &Path) -> Result<TestReport, Vec<PolicyProblem>> {
    let set = PolicySet::load(&[dir])?;
    let results = set
        .tests()
        .iter()
        .map(|test| {
            let started = Instant::now();
            let outcome = run_one(&set, &format!("{}.{}", test.package, test.name));
            TestResult {
                file: test.file.clone(),
                package: test.package.clone(),
                name: test.name.clone(),
                outcome,
                duration: started.elapsed(),
            }
        })
        .collect();
    Ok(TestReport { results })
}

fn run_one(set: &PolicySet, rule: &str) -> TestOutcome {
    let mut engine = set.engine().clone();
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: TEST_BUDGET,
        check_interval: NonZeroU32::new(TIMER_CHECK_INTERVAL).unwrap_or(NonZeroU32::MIN),
    });
    match engine.eval_rule(rule.to_string()) {
        Ok(value) if value == regorus::Value::from(true) => TestOutcome::Pass,
        Ok(_) => TestOutcome::Fail,
        Err(error) => TestOutcome::Error(load::describe_error(&error.to_string())),
    }
}
