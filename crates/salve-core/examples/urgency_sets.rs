//! Development aid: scores every labelled urgency set, overall and split by layer (phrase rules
//! of en.txt/es.txt vs the concepts of concepts.txt):
//! `cargo run -p salve-core --example urgency_sets [--show dev|eval|holdout|holdout3|holdout4]`.
//! `--show` prints the misses of a set (every set here is spent; new blind sets stay outside).

use salve_core::urgency::assess;

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
    // `--bits FILE`: one 0/1 per line (assessed urgent), no text: to compare two versions.
    if let Some(file) = std::env::args().skip_while(|a| a != "--bits").nth(1) {
        let raw = std::fs::read_to_string(file).expect("the set");
        let bits: String = raw
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
                if assess(v["text"].as_str().expect("text")).urgent {
                    '1'
                } else {
                    '0'
                }
            })
            .collect();
        println!("{bits}");
        return;
    }
    let show = std::env::args().skip_while(|a| a != "--show").nth(1);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data/urgency/");
    // holdout3 and holdout4 were measured blind once each and are development sets since.
    let sets = ["dev", "eval", "holdout", "holdout3", "holdout4"];
    for set in sets {
        let raw = std::fs::read_to_string(format!("{dir}{set}.jsonl")).expect("the set");
        let (mut n, mut u, mut fp) = (0, 0, 0);
        let (mut all, mut phrase, mut concept) = ([0usize; 2], [0usize; 2], [0usize; 2]);
        for line in raw.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let text = v["text"].as_str().expect("text");
            let label = v["urgent"].as_bool().expect("urgent");
            let got = assess(text);
            let by_concept = got.rules().any(|r| r.starts_with("c_"));
            let by_phrase = got.rules().any(|r| !r.starts_with("c_"));
            n += 1;
            let k = usize::from(!label);
            if label {
                u += 1;
            } else {
                fp += 1;
            }
            all[k] += usize::from(got.urgent);
            phrase[k] += usize::from(by_phrase);
            concept[k] += usize::from(by_concept);
            let concepts_only = std::env::args().any(|a| a == "--concepts");
            let wrong = if concepts_only {
                by_concept != label
            } else {
                got.urgent != label
            };
            if show.as_deref() == Some(set) && wrong {
                let reasons: Vec<&str> = got.reasons.iter().map(|r| r.as_str()).collect();
                println!(
                    "  {} {text:?} [{}]",
                    if label { "MISS" } else { "FALSE" },
                    reasons.join("; ")
                );
            }
        }
        let cases: Vec<salve_core::urgency::eval::LabeledCase> = raw
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("a labelled case"))
            .collect();
        let report = salve_core::urgency::eval::score(&cases);
        for (lang, s) in &report.by_lang {
            println!("  {set} {lang}: {}", s.summary());
        }
        let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
        println!(
            "{set}: {n} cases | all: recall {:.2}% ({}/{u}), false {:.2}% ({}/{fp}) | phrases: {:.2}% / {:.2}% | concepts: {:.2}% ({}/{u}) / {:.2}% ({}/{fp})",
            pct(all[0], u),
            all[0],
            pct(all[1], fp),
            all[1],
            pct(phrase[0], u),
            pct(phrase[1], fp),
            pct(concept[0], u),
            concept[0],
            pct(concept[1], fp),
            concept[1],
        );
    }
}
