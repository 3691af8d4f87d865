//! Scores labelled sets without building the CLI (rule development): per file, recall on
//! `secure`, false-secure on `direct`, and each miss with its reasons.
//!
//!     cargo run --release -p salve-core --example policy_report -- FILE...  [--quiet] [--json]
//!
//! `--json` prints every message's decision as one JSON line (text, expected, route, reasons)
//! instead (and whether the learned scorer was asked to clear it, and whether the rules said
//! direct before the learned secure check), for analysis scripts.

use salve_core::policy::eval::Tally;
use salve_core::policy::{ClassifyContext, FilledValue, Route, classify_traced};
use serde_json::Value;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quiet = args.iter().any(|a| a == "--quiet");
    let json = args.iter().any(|a| a == "--json");
    for path in args.iter().filter(|a| !a.starts_with("--")) {
        let set = std::fs::read_to_string(path).expect("readable file");
        let mut tally = Tally::default();
        let mut misses = Vec::new();
        for line in set.lines().filter(|l| !l.trim().is_empty()) {
            let case: Value = serde_json::from_str(line).expect("JSON line");
            let values: Vec<FilledValue> = case
                .get("values")
                .map(|v| serde_json::from_value(v.clone()).expect("values parse"))
                .unwrap_or_default();
            let ctx = ClassifyContext {
                has_attachment: case
                    .get("has_attachment")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                values,
                sender_name: None,
            };
            let text = case["text"].as_str().expect("text");
            let expected =
                Route::parse(case["expected"].as_str().expect("expected")).expect("route");
            let (d, trace) = classify_traced(text, &ctx);
            tally.add(expected, d.route);
            if json {
                let line = serde_json::json!({
                    "text": text,
                    "expected": expected.as_str(),
                    "route": d.route.as_str(),
                    "reasons": d.reasons,
                    "scorer_asked": trace.scorer_asked,
                    "rules_direct": trace.rules_direct,
                });
                println!("{line}");
                continue;
            }
            if d.route != expected {
                let why: Vec<String> = d
                    .reasons
                    .iter()
                    .map(|r| format!("{}[{}]", r.rule, r.matched_text))
                    .collect();
                misses.push(format!(
                    "  want {}: {text}\n      {}",
                    expected.as_str(),
                    why.join(" ")
                ));
            }
        }
        if json {
            continue;
        }
        println!(
            "{path}: recall on secure {:.2}% ({}/{}), false-secure on direct {:.2}% ({}/{})",
            tally.recall_secure() * 100.0,
            tally.secure_caught,
            tally.secure,
            tally.false_secure_rate() * 100.0,
            tally.direct_false_secure,
            tally.direct
        );
        if !quiet {
            misses.sort();
            for m in misses {
                println!("{m}");
            }
        }
    }
}
