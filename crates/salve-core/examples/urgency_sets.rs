//! Development aid: scores every labelled urgency set with the rules alone, the model alone and
//! both as shipped: `cargo run --release -p salve-core --example urgency_sets [--show SET]`.
//! `--show` prints the misses of a set. The model was trained on every set here, so these are
//! no blind figures: the leave-one-set-out ones are tools/urgency-train/train.py's.

use salve_core::urgency::{assess, assess_rules, model};

fn main() {
    if std::env::args().any(|a| a == "--stdin") {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            let u = assess(&line);
            let r: Vec<&str> = u.reasons.iter().map(|r| r.as_str()).collect();
            println!(
                "{} {line:?} [{}]",
                if u.urgent { "URGENT" } else { "calm  " },
                r.join("; ")
            );
        }
        return;
    }
    // `--bits FILE`: one 0/1 per line (assessed urgent), no text: to compare two versions, and
    // the rules' decisions for tools/urgency-train (with `--rules-only`).
    // `--kinds FILE`: per line, the kinds of the rules' reasons ("urgent", "negated", ...), and
    // "crisis" for a crisis, "phrase" and "concept" for the layers whose rules made it urgent.
    let rules_only = std::env::args().any(|a| a == "--rules-only");
    let judge = |t: &str| {
        if rules_only {
            assess_rules(t)
        } else {
            assess(t)
        }
    };
    for flag in ["--bits", "--kinds"] {
        let Some(file) = std::env::args().skip_while(|a| a != flag).nth(1) else {
            continue;
        };
        let raw = std::fs::read_to_string(file).expect("the set");
        for l in raw.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            let text = v["text"].as_str().expect("text");
            if flag == "--bits" {
                print!("{}", if judge(text).urgent { '1' } else { '0' });
            } else {
                let mut kinds: Vec<&str> = Vec::new();
                let u = assess_rules(text);
                for r in &u.reasons {
                    let kind = r.as_str().split(':').next().unwrap_or("");
                    if !kinds.contains(&kind) {
                        kinds.push(kind);
                    }
                }
                if u.crisis {
                    kinds.push("crisis");
                }
                // Which layer decided: a sign phrase or nearness rule ("phrase"), a concept of
                // concepts.txt (names "c_..."; "concept").
                if u.rules().any(|r| !r.starts_with("c_")) {
                    kinds.push("phrase");
                }
                if u.rules().any(|r| r.starts_with("c_")) {
                    kinds.push("concept");
                }
                println!("{}", kinds.join(","));
            }
        }
        if flag == "--bits" {
            println!();
        }
        return;
    }
    let show = std::env::args().skip_while(|a| a != "--show").nth(1);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data/urgency/");
    // Every set here was measured blind once and is training and development data since.
    let sets = [
        "dev", "eval", "holdout", "holdout3", "holdout4", "holdout5", "c1", "c2", "c4",
    ];
    let threshold = model::threshold();
    for set in sets {
        let raw = std::fs::read_to_string(format!("{dir}{set}.jsonl")).expect("the set");
        let (mut u, mut fp) = (0, 0);
        // [caught urgent, false urgent] by the rules, the model, both (as shipped).
        let (mut rules, mut learned, mut all) = ([0usize; 2], [0usize; 2], [0usize; 2]);
        for line in raw.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let text = v["text"].as_str().expect("text");
            let label = v["urgent"].as_bool().expect("urgent");
            let got = assess(text);
            let k = usize::from(!label);
            if label {
                u += 1;
            } else {
                fp += 1;
            }
            all[k] += usize::from(got.urgent);
            rules[k] += usize::from(assess_rules(text).urgent);
            learned[k] += usize::from(model::score(text) >= threshold);
            if show.as_deref() == Some(set) && got.urgent != label {
                let reasons: Vec<&str> = got.reasons.iter().map(|r| r.as_str()).collect();
                println!(
                    "  {} {text:?} [{}]",
                    if label { "MISS" } else { "FALSE" },
                    reasons.join("; ")
                );
            }
        }
        let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
        let fmt = |x: [usize; 2]| {
            format!(
                "{:.2}% ({}/{u}) / {:.2}% ({}/{fp})",
                pct(x[0], u),
                x[0],
                pct(x[1], fp),
                x[1]
            )
        };
        println!(
            "{set}: rules {} | model {} | combined {}",
            fmt(rules),
            fmt(learned),
            fmt(all)
        );
    }
}
