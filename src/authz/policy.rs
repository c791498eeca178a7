//! Authorization, tier 2: policy-as-code in Rego, evaluated in-process by
//! the `regorus` interpreter after a route's tier 1 requirements (scopes,
//! roles, claims) have passed.
//!
//! A [`PolicySet`] is one loaded bundle of Rego modules and data documents,
//! identified by a content hash ([`PolicySet::version`]). A route names a
//! rule such as `data.users.allow_delete`; [`PolicySet::evaluate`] turns
//! that rule's value for one request into a [`Decision`]. The input
//! document of every evaluation is built by [`build_input`].
//!
//! # Concurrency
//!
//! A `regorus::Engine` needs `&mut self` to evaluate, so one engine cannot
//! serve two requests at once. With regorus' `arc` feature the engine is
//! `Send + Sync` and its clone only bumps reference counts (modules,
//! compiled schedule and data are shared). A clone measured about 0.13 µs,
//! an evaluation of the example users rules 9 to 28 µs (release build,
//! 2-core machine). So the set keeps one prepared engine and every
//! evaluation clones it on the calling thread. There is no lock and no
//! per-thread engine to invalidate when the bundle changes, and a reload
//! only swaps the `PolicySet`. Two threads sharing one set measured the same
//! per-evaluation time as two threads with a set each.
//!
//! # Time budget
//!
//! regorus (0.14) has a cooperative execution timer: the interpreter checks
//! the clock between evaluation steps (every [`TIMER_CHECK_INTERVAL`] steps
//! here) and fails with a time-limit error once the budget is spent, which
//! stops loops and large comprehensions. A single builtin call is not
//! interrupted, so `numbers.range(1, 100000000)` runs to its end (7 s in
//! a debug build). Two modes bound that differently, chosen with
//! [`PolicySet::isolate`]:
//!
//! - inline (the default): the caller's thread evaluates. Every result
//!   that arrives after the budget is still a `policy_error`, but the
//!   caller waits for the builtin to return.
//! - isolated: a fixed pool of evaluator threads evaluates. The caller
//!   waits at most the budget, then returns `policy_error` while a runaway
//!   builtin keeps its worker until it returns. The number of concurrent
//!   runaway evaluations is at most the number of workers, and a full queue
//!   fails fast. The hand-off between threads measured 10 to 30 µs per
//!   evaluation on a 2-core machine, so this mode suits bundles from
//!   authors the operator does not fully trust.
//!
//! # Differences from OPA
//!
//! - Loading rejects what regorus 0.14 would evaluate differently from
//!   OPA or crash on: recursive functions, rules whose path a data document
//!   also defines, and a `not` over a possibly undefined call argument,
//!   membership operand or reference key (see `checks`).
//! - regorus raises builtin errors, so they deny with `policy_error`.
//!   OPA turns some builtin errors into undefined instead. Both deny, except
//!   under `not`, where OPA can then allow and regorus denies.
//! - A rule that does not exist is `policy_error` (`rule_not_found`), not
//!   undefined, so a misspelt rule shows up in logs and metrics.
//!   [`PolicySet::has_rule`] lets configuration loading catch it earlier.
//! - Unknown functions fail at evaluation, not at load.

mod checks;
mod input;
mod isolation;
mod load;
pub mod reads;
mod testing;

use std::collections::BTreeSet;
use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use regorus::utils::limits::ExecutionTimerConfig;
use regorus::Engine;
use serde_json::Value;

pub use input::{build_input, RequestFacts};
pub use testing::{run_tests, TestOutcome, TestReport, TestResult};

use isolation::Workers;

/// Reason code of a decision that allows the request.
pub const POLICY_ALLOWED: &str = "policy_allowed";
/// Reason code of a rule that evaluated to `false`, to undefined, or to an
/// object whose `allow` member is not `true`.
pub const POLICY_DENIED: &str = "policy_denied";
/// Reason code of a rule that could not produce a decision: evaluation
/// error, budget exceeded, unknown rule or a value that is not a decision.
pub const POLICY_ERROR: &str = "policy_error";

/// Interpreter steps between two clock reads of the execution timer.
/// A clock read costs tens of nanoseconds, and a step is at least that.
pub const TIMER_CHECK_INTERVAL: u32 = 32;

/// One problem found while loading a policy bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    /// The file as given or found under a given directory.
    pub file: String,
    /// 1-based line, when the problem has one.
    pub line: Option<u32>,
    /// 1-based column, when the problem has one. regorus counts a tab as
    /// 4 columns (observed with leading tabs in 0.14).
    pub column: Option<u32>,
    pub message: String,
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "{}:{}:{}: {}", self.file, line, column, self.message)
            }
            (Some(line), None) => write!(f, "{}:{}: {}", self.file, line, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// The cause of a `policy_error`. Its detail goes to logs, and the client
/// only receives `policy_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyFailure {
    /// The bundle has no rule at this path (or the path names a function or
    /// a data document).
    RuleNotFound,
    /// The rule's value is neither a boolean nor an object.
    NotADecision,
    /// Evaluation failed, at this `file:line:column` when regorus gave one.
    /// The error text is not kept because it can quote input values, such
    /// as header values.
    Evaluation { location: Option<String> },
    /// The evaluation ran past its time budget.
    BudgetExceeded,
    /// Every isolated evaluator is busy and the queue is full.
    Overloaded,
    /// The external OPA server failed, timed out or responded with an
    /// error status.
    ServerUnavailable,
}

impl PolicyFailure {
    /// Stable snake_case detail for logs and metrics.
    pub fn detail(&self) -> &'static str {
        match self {
            PolicyFailure::RuleNotFound => "rule_not_found",
            PolicyFailure::NotADecision => "result_not_a_decision",
            PolicyFailure::Evaluation { .. } => "evaluation_failed",
            PolicyFailure::BudgetExceeded => "budget_exceeded",
            PolicyFailure::Overloaded => "evaluators_overloaded",
            PolicyFailure::ServerUnavailable => "opa_server_unavailable",
        }
    }
}

/// The outcome of evaluating one rule for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// [`POLICY_ALLOWED`], [`POLICY_DENIED`] or [`POLICY_ERROR`].
    pub reason: &'static str,
    /// The rule's value, `None` when undefined or failed. Sets appear as
    /// arrays.
    pub result: Option<Value>,
    /// The `obligations` member of an object result, such as fields to mask.
    pub obligations: Option<Value>,
    /// Wall-clock time of the evaluation, input conversion included.
    pub duration: Duration,
    /// Set exactly when `reason` is [`POLICY_ERROR`].
    pub failure: Option<PolicyFailure>,
}

impl Decision {
    /// Reads a rule's value as a decision: `true`, or an object whose
    /// `allow` member is `true`, allows. `false`, undefined and an object
    /// without `"allow": true` deny. Any other value is a `policy_error`.
    pub fn from_value(value: Option<Value>, duration: Duration) -> Decision {
        let (allowed, obligations) = match &value {
            None | Some(Value::Bool(false)) => (false, None),
            Some(Value::Bool(true)) => (true, None),
            Some(Value::Object(members)) => (
                members.get("allow") == Some(&Value::Bool(true)),
                members.get("obligations").cloned(),
            ),
            Some(_) => return Decision::failed(PolicyFailure::NotADecision, duration),
        };
        Decision {
            allowed,
            reason: if allowed {
                POLICY_ALLOWED
            } else {
                POLICY_DENIED
            },
            result: value,
            obligations,
            duration,
            failure: None,
        }
    }

    pub fn failed(failure: PolicyFailure, duration: Duration) -> Decision {
        Decision {
            allowed: false,
            reason: POLICY_ERROR,
            result: None,
            obligations: None,
            duration,
            failure: Some(failure),
        }
    }
}

/// A loaded, compiled bundle of Rego policies and data documents.
///
/// Data documents (`*.json`, `*.yaml`, `*.yml`) found under a given
/// directory are merged into `data` at the path of their directory relative
/// to it, as `opa eval -d DIR` does: `DIR/users/data.json` becomes
/// `data.users`. A data file given directly is merged at the root.
pub struct PolicySet {
    engine: Engine,
    version: String,
    /// Evaluable rule paths such as `data.users.allow_delete`.
    rules: BTreeSet<String>,
    tests: Vec<checks::TestRule>,
    workers: Option<Workers>,
    /// The input paths the rules read, for the decision cache key.
    input_reads: reads::InputReads,
}

impl PolicySet {
    /// Loads and compiles every `*.rego`, `*.json`, `*.yaml` and `*.yml`
    /// file under the given files and directories (recursively, hidden
    /// entries skipped). Returns every problem found, each at
    /// `file:line:column` where one applies.
    pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<PolicySet, Vec<PolicyProblem>> {
        let bundle = load::load_bundle(paths)?;
        let input_reads = match bundle.engine.get_ast_as_json() {
            Ok(ast) => reads::input_reads(&ast),
            Err(_) => reads::InputReads::Whole,
        };
        Ok(PolicySet {
            input_reads,
            engine: bundle.engine,
            version: bundle.version,
            rules: bundle.rules,
            tests: bundle.tests,
            workers: None,
        })
    }

    /// Moves evaluation to `workers` dedicated threads with a queue of
    /// `queue` waiting evaluations, at least 1 (see the module
    /// documentation). Fails only when a thread cannot be spawned.
    pub fn isolate(mut self, workers: NonZeroUsize, queue: usize) -> std::io::Result<Self> {
        self.workers = Some(Workers::start(workers, queue)?);
        Ok(self)
    }

    /// Returns the input paths the bundle's rules read, or `None` when
    /// they may read the whole input (see [`reads`]).
    pub fn input_paths(&self) -> Option<&[String]> {
        match &self.input_reads {
            reads::InputReads::Whole => None,
            reads::InputReads::Paths(paths) => Some(paths),
        }
    }

    /// Returns the bundle version: the first 16 hex digits of a SHA-256 over the
    /// sorted file names (relative to their directory) and contents.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Returns whether `rule` (such as `data.users.allow_delete`) is a rule
    /// of this bundle that [`PolicySet::evaluate`] accepts, for checking a
    /// route's configuration at load time.
    pub fn has_rule(&self, rule: &str) -> bool {
        self.rules.contains(rule)
    }

    /// Returns every evaluable rule path, sorted.
    pub fn rules(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(String::as_str)
    }

    /// Evaluates `rule` against `input` within `budget` and reads the value
    /// as a decision (see [`Decision`]). Every failure denies with
    /// [`POLICY_ERROR`], a panic inside regorus included.
    pub fn evaluate(&self, rule: &str, input: &Value, budget: Duration) -> Decision {
        let started = Instant::now();
        let outcome = self.evaluate_value(rule, input, budget);
        let duration = started.elapsed();
        match outcome {
            Ok(value) => Decision::from_value(value, duration),
            Err(failure) => Decision::failed(failure, duration),
        }
    }

    /// Evaluates `rule` and returns its value (`None` when undefined),
    /// for rules that compute obligations such as fields to mask rather
    /// than a decision.
    pub fn evaluate_value(
        &self,
        rule: &str,
        input: &Value,
        budget: Duration,
    ) -> Result<Option<Value>, PolicyFailure> {
        let started = Instant::now();
        if !self.rules.contains(rule) {
            return Err(PolicyFailure::RuleNotFound);
        }
        let input = regorus_input(input)?;

        let job = Evaluation {
            engine: self.engine.clone(),
            rule: rule.to_string(),
            input,
            budget,
        };
        let value = match &self.workers {
            None => job.run()?,
            Some(workers) => workers.run(job, started + budget)?,
        };

        if started.elapsed() > budget {
            return Err(PolicyFailure::BudgetExceeded);
        }
        json_from_regorus(value)
    }

    pub(crate) fn tests(&self) -> &[checks::TestRule] {
        &self.tests
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// One rule evaluation on its own engine clone, runnable on any thread.
pub(crate) struct Evaluation {
    engine: Engine,
    rule: String,
    input: regorus::Value,
    budget: Duration,
}

impl Evaluation {
    /// Evaluates under the cooperative execution timer.
    pub(crate) fn run(self) -> Result<regorus::Value, PolicyFailure> {
        let Evaluation {
            mut engine,
            rule,
            input,
            budget,
        } = self;
        engine.set_execution_timer_config(ExecutionTimerConfig {
            limit: budget,
            check_interval: NonZeroU32::new(TIMER_CHECK_INTERVAL).unwrap_or(NonZeroU32::MIN),
        });
        engine.set_input(input);

        let started = Instant::now();
        // A panic inside regorus must not take the request's thread down.
        // The engine clone is dropped either way.
        let evaluated = panic::catch_unwind(AssertUnwindSafe(|| engine.eval_rule(rule)))
            .map_err(|_| PolicyFailure::Evaluation { location: None })?;
        evaluated.map_err(|error| {
            let timed_out = error.downcast_ref::<regorus::LimitError>().is_some()
                || started.elapsed() >= budget;
            if timed_out {
                PolicyFailure::BudgetExceeded
            } else {
                PolicyFailure::Evaluation {
                    location: load::error_location(&error.to_string()),
                }
            }
        })
    }
}

fn regorus_input(input: &Value) -> Result<regorus::Value, PolicyFailure> {
    use serde::Deserialize as _;
    regorus::Value::deserialize(input).map_err(|_| PolicyFailure::Evaluation { location: None })
}

fn json_from_regorus(value: regorus::Value) -> Result<Option<Value>, PolicyFailure> {
    if value == regorus::Value::Undefined {
        return Ok(None);
    }
    serde_json::to_value(&value)
        .map(Some)
        .map_err(|_| PolicyFailure::Evaluation { location: None })
}
