//! Classifications per second on one core: the shipped evaluation set, classified N times.
//!
//!     cargo run --release -p salve-core --example policy_bench -- [N]   (default 200)

use std::hint::black_box;
use std::time::Instant;

use salve_core::policy::{ClassifyContext, FilledValue, classify};
use serde_json::Value;

const EVAL: &str = include_str!("../data/policy/eval.jsonl");

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("N is a number of rounds"))
        .unwrap_or(200);
    let cases: Vec<(String, ClassifyContext)> = EVAL
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("eval line parses");
            let values: Vec<FilledValue> = v
                .get("values")
                .map(|x| serde_json::from_value(x.clone()).expect("values parse"))
                .unwrap_or_default();
            let ctx = ClassifyContext {
                has_attachment: v
                    .get("has_attachment")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                values,
                sender_name: None,
            };
            (v["text"].as_str().expect("text").to_owned(), ctx)
        })
        .collect();
    // The first call builds the vocabularies; keep it out of the measurement.
    let warm = Instant::now();
    black_box(classify("warm up", &ClassifyContext::default()));
    println!(
        "vocabularies loaded in {:.1} ms",
        warm.elapsed().as_secs_f64() * 1e3
    );

    let start = Instant::now();
    let mut secure = 0usize;
    for _ in 0..rounds {
        for (text, ctx) in &cases {
            let d = classify(black_box(text), black_box(ctx));
            secure += usize::from(d.route == salve_core::policy::Route::Secure);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = rounds * cases.len();
    println!(
        "{n} classifications ({} messages x {rounds}) in {elapsed:.2} s: {:.0} classifications/second on one thread ({secure} secure)",
        cases.len(),
        n as f64 / elapsed
    );
}
