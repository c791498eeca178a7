"""Differential oracle: evaluates the example policies with the real OPA
engine and records its decisions for the Rust test `opa_oracle`.

Writes cases.json (the inputs) and expected.json (OPA's decision for each
case and OPA's outcome for each `test_` rule). See README.md for how to run.
"""

import itertools
import json
import pathlib
import sys
import time

from opa_bindings import OpaEngine, OpaError, OpaUndefinedError

HERE = pathlib.Path(__file__).resolve().parent
POLICIES = HERE.parents[2] / "examples" / "users-api" / "policies"

ABSENT = object()


def with_members(**members):
    """An input object without the members whose value is ABSENT."""
    return {name: value for name, value in members.items() if value is not ABSENT}


def delete_cases():
    roles = [["admin"], ["user"], [], ABSENT, "admin"]
    tenants = ["acme", "globex", ABSENT]
    ids = ["u-bob", "u-carol", "u-new", ABSENT]
    tenant_params = [ABSENT, "acme", "initech"]
    for role, tenant, user, param in itertools.product(roles, tenants, ids, tenant_params):
        params = with_members(id=user, tenant=param)
        yield with_members(
            roles=role,
            tenant=tenant,
            route={"id": "users-delete", "params": params},
        ), None


def read_cases():
    subjects = ["u-bob", "u-alice", ABSENT, 42]
    ids = ["u-bob", "u-alice", ABSENT]
    scopes = [[], ["read:users"], ["read:users:all"], ["read:users:all:x"], ABSENT]
    for subject, user, scope in itertools.product(subjects, ids, scopes):
        yield with_members(
            subject=subject,
            scopes=scope,
            route={"id": "users-read", "params": with_members(id=user)},
        ), None


def write_cases():
    amrs = [["pwd", "mfa"], ["pwd"], ABSENT, "mfa"]
    # Ages far from the 600 s and -60 s limits, so the seconds between the
    # oracle run and the Rust run cannot change a decision.
    ages = [30, 300, 3000, -30, -3000, ABSENT, "old"]
    who = [
        ("u-bob", ["user"], "acme"),
        ("u-alice", ["admin"], "acme"),
        ("u-alice", ["admin"], "globex"),
    ]
    for amr, age, (subject, role, tenant) in itertools.product(amrs, ages, who):
        token = with_members(amr=amr)
        yield with_members(
            subject=subject,
            roles=role,
            tenant=tenant,
            token=token,
            route={"id": "users-write", "params": {"id": "u-bob"}},
        ), age


def cases():
    rules = [
        ("data.users.allow_delete", delete_cases()),
        ("data.users.allow_read", read_cases()),
        ("data.users.allow_write", write_cases()),
        ("data.users.read_decision", read_cases()),
    ]
    for rule, generated in rules:
        for index, (input_doc, age) in enumerate(generated):
            case = {"id": f"{rule.rsplit('.', 1)[1]}-{index}", "rule": rule, "input": input_doc}
            if age is not ABSENT and age is not None:
                # The input gets token.auth_time = now - age at evaluation
                # time, in the oracle and in the Rust test alike.
                case["auth_age_seconds"] = age
            yield case


def with_auth_time(case):
    input_doc = json.loads(json.dumps(case["input"]))
    age = case.get("auth_age_seconds")
    if age is not None:
        token = input_doc.setdefault("token", {})
        token["auth_time"] = int(time.time()) - age if isinstance(age, int) else age
    return input_doc


def decision(engine, rule, input_doc):
    """OPA's outcome: ("undefined", None), ("value", v) or ("error", None)."""
    try:
        return "value", engine.eval_document(rule.removeprefix("data."), input_doc)
    except OpaUndefinedError:
        return "undefined", None
    except OpaError:
        return "error", None


def allowed(outcome, value):
    if outcome != "value":
        return False
    if value is True:
        return True
    return isinstance(value, dict) and value.get("allow") is True


def load_engine():
    engine = OpaEngine()
    for path in sorted(POLICIES.rglob("*.rego")):
        engine.add_policy(str(path.relative_to(POLICIES)), path.read_text())
    for path in sorted(POLICIES.rglob("*.json")):
        prefix = ".".join(path.parent.relative_to(POLICIES).parts)
        engine.add_data(json.loads(path.read_text()), prefix)
    return engine


def test_rules():
    for path in sorted(POLICIES.rglob("*.rego")):
        package = None
        for line in path.read_text().splitlines():
            if line.startswith("package "):
                package = line.split()[1]
            elif line.startswith("test_") and package:
                yield f"{package}.{line.split()[0]}"


def main():
    engine = load_engine()
    all_cases = list(cases())
    expected = {"cases": {}, "tests": {}}
    for case in all_cases:
        outcome, value = decision(engine, case["rule"], with_auth_time(case))
        expected["cases"][case["id"]] = {
            "allowed": allowed(outcome, value),
            "outcome": outcome,
            "value": value,
        }
    for test in test_rules():
        outcome, value = decision(engine, "data." + test, None)
        expected["tests"]["data." + test] = "PASS" if value is True else (
            "ERROR" if outcome == "error" else "FAIL")

    (HERE / "cases.json").write_text(json.dumps(all_cases, indent=1) + "\n")
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    per_rule = {}
    for case in all_cases:
        per_rule[case["rule"]] = per_rule.get(case["rule"], 0) + 1
    print(f"{len(all_cases)} cases {per_rule}, {len(expected['tests'])} test rules")
    print(f"allowed: {sum(c['allowed'] for c in expected['cases'].values())}")


if __name__ == "__main__":
    sys.exit(main())
