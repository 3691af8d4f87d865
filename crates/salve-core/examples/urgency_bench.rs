//! Classifications per second on one core: `cargo run --release -p salve-core --example
//! urgency_bench`. Assesses every text of data/urgency/dev.jsonl (as shipped: rules and model;
//! then each half alone, and the keyword classifier on the same texts, for comparison) in a loop
//! on this one thread and prints the rates.

use std::time::Instant;

use salve_core::keywords::{InboundContext, classify};
use salve_core::urgency::{assess, assess_rules, model};

fn main() {
    let raw = include_str!("../data/urgency/dev.jsonl");
    let texts: Vec<String> = raw
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            v["text"].as_str().expect("a text").to_owned()
        })
        .collect();
    // The tables are built on first use: not part of the figure.
    let _ = assess("warm up");
    let threshold = model::threshold();
    let rounds = 2_000;
    for (name, run) in [
        (
            "urgency::assess",
            &(|t: &str| assess(t).urgent) as &dyn Fn(&str) -> bool,
        ),
        ("urgency::assess_rules (rules alone)", &|t: &str| {
            assess_rules(t).urgent
        }),
        ("urgency::model::score (model alone)", &|t: &str| {
            model::score(t) >= threshold
        }),
        ("keywords::classify", &|t: &str| {
            classify(t, &InboundContext::default()).review
        }),
    ] {
        let start = Instant::now();
        let mut flagged = 0usize;
        for _ in 0..rounds {
            for t in &texts {
                flagged += usize::from(std::hint::black_box(run(std::hint::black_box(t))));
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let n = rounds * texts.len();
        println!(
            "{name}: {n} texts in {secs:.2}s = {:.0} per second on one core ({:.1} us each; {flagged} flagged)",
            n as f64 / secs,
            secs * 1e6 / n as f64
        );
    }
}
