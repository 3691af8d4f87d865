//! The shipped evaluation set (data/policy/eval.jsonl) and the development sets
//! (data/policy/dev.jsonl and dev2.jsonl, written separately from eval.jsonl) must meet the policy's targets:
//! recall on `secure` >= 99.5% (missing a secure message is the costly error) and a false-secure
//! rate on `direct` <= 10%. Speed is measured by `examples/policy_bench.rs`, not here.

use salve_core::policy::eval::Tally;
use salve_core::policy::{ClassifyContext, FilledValue, Route, classify};
use serde_json::Value;

const EVAL: &str = include_str!("../data/policy/eval.jsonl");
const DEV: &str = include_str!("../data/policy/dev.jsonl");
const DEV2: &str = include_str!("../data/policy/dev2.jsonl");

fn context(case: &Value) -> ClassifyContext {
    let values: Vec<FilledValue> = match case.get("values") {
        Some(v) => serde_json::from_value(v.clone()).expect("values parse"),
        None => Vec::new(),
    };
    ClassifyContext {
        has_attachment: case
            .get("has_attachment")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        values,
        sender_name: case
            .get("sender_name")
            .and_then(Value::as_str)
            .map(str::to_owned),
    }
}

#[test]
fn shipped_eval_set_meets_the_targets() {
    meets_the_targets(EVAL, 440);
}

#[test]
fn dev_set_meets_the_targets() {
    meets_the_targets(DEV, 150);
}

#[test]
fn second_dev_set_meets_the_targets() {
    meets_the_targets(DEV2, 300);
}

fn meets_the_targets(set: &str, min_cases: usize) {
    let mut tally = Tally::default();
    let mut misses = Vec::new();
    for (i, line) in set
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let case: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        let text = case["text"].as_str().expect("text");
        let expected = Route::parse(case["expected"].as_str().expect("expected")).expect("route");
        let decision = classify(text, &context(&case));
        tally.add(expected, decision.route);
        if decision.route != expected {
            misses.push(format!(
                "line {} expected {}: {text}\n    {:?}",
                i + 1,
                expected.as_str(),
                decision.reasons
            ));
        }
    }
    assert!(
        tally.secure + tally.direct >= min_cases,
        "the set shrank: {tally:?}"
    );
    let report = format!(
        "recall on secure {:.2}%, false-secure on direct {:.2}% ({tally:?})\n{}",
        tally.recall_secure() * 100.0,
        tally.false_secure_rate() * 100.0,
        misses.join("\n")
    );
    if std::env::var_os("POLICY_EVAL_VERBOSE").is_some() {
        println!("{report}");
    }
    assert!(tally.recall_secure() >= 0.995, "{report}");
    assert!(tally.false_secure_rate() <= 0.10, "{report}");
}
