//! The urgency rules' targets (issue 8): urgent recall >= 99% and false urgent <= 15%, on the
//! development set (data/urgency/dev.jsonl, written with the rules) and on the evaluation set
//! (data/urgency/eval.jsonl, written apart from the word lists: see its EVAL_README.md). Either
//! set missing or shrinking fails the test. Every miss is printed before the verdict (both
//! sets are fictional).

use std::path::{Path, PathBuf};

use salve_core::urgency::eval::{LabeledCase, MAX_FALSE_URGENT, MIN_RECALL, Report, score};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/urgency")
        .join(name)
}

fn load(path: &Path) -> Vec<LabeledCase> {
    let raw = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    raw.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|_| {
                panic!("{} line {} is not a labelled case", path.display(), i + 1)
            })
        })
        .collect()
}

fn check(name: &str, min_cases: usize) -> Report {
    let cases = load(&data(name));
    let report = score(&cases);
    println!("{name}: {}", report.overall.summary());
    for (lang, s) in &report.by_lang {
        println!("  {lang}: {}", s.summary());
    }
    for m in &report.misses {
        let reasons: Vec<&str> = m.got.reasons.iter().map(|r| r.as_str()).collect();
        println!(
            "  miss: expected {} got {}: {:?} [{}]",
            if m.expected { "urgent" } else { "not urgent" },
            if m.got.urgent { "urgent" } else { "not urgent" },
            cases[m.index].text,
            reasons.join("; ")
        );
    }
    assert!(cases.len() >= min_cases, "{name} shrank to {}", cases.len());
    assert!(
        report.overall.meets_targets(),
        "{name} misses the targets (recall >= {MIN_RECALL}, false urgent <= {MAX_FALSE_URGENT}): \
         {}",
        report.overall.summary()
    );
    report
}

#[test]
fn dev_set_meets_the_targets() {
    let report = check("dev.jsonl", 150);
    // Both languages, both labels.
    for lang in ["en", "es"] {
        let s = report.by_lang[lang];
        assert!(s.urgent >= 30 && s.not_urgent >= 20, "{lang}: {s:?}");
    }
}

/// Written apart from the word lists by someone else (data/urgency/EVAL_README.md): the
/// regression gate.
#[test]
fn eval_set_meets_the_targets() {
    let report = check("eval.jsonl", 300);
    for lang in ["en", "es"] {
        assert!(report.by_lang.contains_key(lang), "{lang}");
    }
}
