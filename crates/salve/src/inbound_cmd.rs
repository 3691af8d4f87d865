//! `salve inbound classify` and `salve inbound eval [--urgency]`: the inbound keyword classifier
//! and the urgency rules from the command line.
//!
//! Errors name the line number and the field, never the text: `classify` may be fed real
//! messages, and `eval` prints texts only when asked (`--show-text`).

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use salve_core::keywords::eval::{LabeledCase, score};
use salve_core::keywords::{Classification, InboundContext, Reason, classify};
use salve_core::urgency::{self, assess};
use serde::{Deserialize, Serialize};

use crate::cli::InboundCommand;
use crate::policy_cmd::{map_lines, print_report, read_labelled};

pub fn run(cmd: &InboundCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        InboundCommand::Classify => {
            let stdin = std::io::stdin();
            let stdout = std::io::stdout();
            classify_lines(stdin.lock(), &mut BufWriter::new(stdout.lock()))?;
            Ok(ExitCode::SUCCESS)
        }
        InboundCommand::Eval {
            file,
            show_text,
            urgency: false,
        } => {
            print_report(&eval_file(file, *show_text)?)?;
            Ok(ExitCode::SUCCESS)
        }
        InboundCommand::Eval {
            file,
            show_text,
            urgency: true,
        } => {
            let (report, ok) = eval_urgency(file, *show_text)?;
            print_report(&report)?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// One input line of `classify`; unknown fields (such as an eval label) are ignored.
#[derive(Debug, Deserialize)]
struct Input {
    text: String,
    #[serde(default)]
    context: InboundContext,
}

/// One output line of `classify`: the classification (intent, review, reply, reasons) and the
/// urgency assessment.
#[derive(Serialize)]
struct Output {
    #[serde(flatten)]
    classification: Classification,
    urgent: bool,
    crisis: bool,
    urgent_reasons: Vec<Reason>,
}

fn classify_lines(input: impl BufRead, out: &mut impl Write) -> anyhow::Result<()> {
    map_lines(input, out, |input: Input| {
        let urgency = assess(&input.text);
        Output {
            classification: classify(&input.text, &input.context),
            urgent: urgency.urgent,
            crisis: urgency.crisis,
            urgent_reasons: urgency.reasons,
        }
    })
}

/// `salve inbound eval --urgency FILE`: urgent recall and false-urgent rate, overall and per
/// language, then every miss by line number (its text only with `--show-text`). The second
/// value says whether the issue's targets are met.
fn eval_urgency(path: &Path, show_text: bool) -> anyhow::Result<(String, bool)> {
    let (line_numbers, cases): (Vec<usize>, Vec<urgency::eval::LabeledCase>) =
        read_labelled(path)?.into_iter().unzip();
    let report = urgency::eval::score(&cases);
    let s = report.overall;
    let mut out = format!(
        "{} labelled texts from {}\n\
         urgent recall:     {:.2}% ({}/{}; {} crisis) target >= {:.0}%\n\
         false urgent rate: {:.2}% ({}/{}) target <= {:.0}%\n",
        s.cases,
        path.display(),
        s.recall() * 100.0,
        s.urgent_caught,
        s.urgent,
        s.urgent_crisis,
        urgency::eval::MIN_RECALL * 100.0,
        s.false_urgent_rate() * 100.0,
        s.false_urgent,
        s.not_urgent,
        urgency::eval::MAX_FALSE_URGENT * 100.0,
    );
    for (lang, s) in &report.by_lang {
        out.push_str(&format!("  {lang}: {}\n", s.summary()));
    }
    out.push_str(&format!("\n{} misses\n", report.misses.len()));
    for miss in &report.misses {
        let reasons: Vec<&str> = miss.got.reasons.iter().map(|r| r.as_str()).collect();
        out.push_str(&format!(
            "line {} expected {} got {}: {}\n",
            line_numbers[miss.index],
            if miss.expected {
                "urgent"
            } else {
                "not urgent"
            },
            if miss.got.urgent {
                "urgent"
            } else {
                "not urgent"
            },
            reasons.join("; "),
        ));
        if show_text {
            out.push_str(&format!("    text: {}\n", cases[miss.index].text));
        }
    }
    Ok((out, s.meets_targets()))
}

fn eval_file(path: &Path, show_text: bool) -> anyhow::Result<String> {
    let (line_numbers, cases): (Vec<usize>, Vec<LabeledCase>) =
        read_labelled(path)?.into_iter().unzip();
    let (scores, misses) = score(&cases);
    let mut out = format!(
        "{} labelled texts from {}\n\
         opt-out recall (opt-out or review): {:.2}% ({}/{}; {} classified opt-out)\n\
         false opt-out rate:                 {:.2}% ({}/{})\n\
         review on texts not labelled opt-out: {:.2}% ({}/{})\n\
         help accuracy:                      {:.2}% ({}/{})\n\
         opt-in accuracy:                    {:.2}% ({}/{})\n\
         other accuracy:                     {:.2}% ({}/{})\n\
         ambiguous texts flagged:            {:.2}% ({}/{})\n\
         \n{} misses\n",
        scores.cases,
        path.display(),
        scores.optout_recall() * 100.0,
        scores.optout_caught,
        scores.optout,
        scores.optout_exact,
        scores.false_optout_rate() * 100.0,
        scores.false_optout,
        scores.not_optout,
        scores.review_rate() * 100.0,
        scores.not_optout_review,
        scores.not_optout,
        scores.help_accuracy() * 100.0,
        scores.help_correct,
        scores.help,
        scores.optin_accuracy() * 100.0,
        scores.optin_correct,
        scores.optin,
        scores.other_accuracy() * 100.0,
        scores.other_correct,
        scores.other,
        scores.ambiguous_flagged_rate() * 100.0,
        scores.ambiguous_flagged,
        scores.ambiguous,
        misses.len(),
    );
    for miss in &misses {
        let reasons: Vec<&str> = miss.got.reasons.iter().map(|r| r.as_str()).collect();
        out.push_str(&format!(
            "line {} expected {} got {}{}: {}\n",
            line_numbers[miss.index],
            miss.expected,
            miss.got.intent,
            if miss.got.review { " (review)" } else { "" },
            reasons.join("; "),
        ));
        if show_text {
            out.push_str(&format!("    text: {}\n", cases[miss.index].text));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_classify(input: &str) -> anyhow::Result<String> {
        let mut out = Vec::new();
        classify_lines(input.as_bytes(), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn errors_name_the_line_but_never_the_text() {
        let secret = "stop texting Jane";
        for bad in [
            format!("{{\"text\": \"{secret}\""),
            format!("{{\"txt\": \"{secret}\"}}"),
            format!("\"{secret}\""),
            format!("{{\"text\": \"ok\", \"context\": \"{secret}\"}}"),
            format!(
                "{{\"text\": \"ok\", \"context\": {{\"reminder_awaiting_answer\": \"{secret}\"}}}}"
            ),
        ] {
            let err = run_classify(&format!("{{\"text\": \"hi\"}}\n{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("line 2 "), "{err}");
            assert!(!err.contains("Jane"), "{err}");
        }
    }

    #[test]
    fn context_reaches_the_classifier() {
        let out = run_classify(concat!(
            r#"{"text": "YES"}"#,
            "\n",
            r#"{"text": "YES", "context": {"reminder_awaiting_answer": true}}"#,
            "\n"
        ))
        .unwrap();
        let intents: Vec<&str> = out
            .lines()
            .map(|l| {
                if l.contains("\"optin\"") {
                    "optin"
                } else {
                    "other"
                }
            })
            .collect();
        assert_eq!(intents, ["optin", "other"]);
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(lines[0]["reply"].is_null());
        assert_eq!(lines[1]["reply"], "confirm");
        assert_eq!(lines[1]["urgent"], false);
    }

    #[test]
    fn every_line_says_whether_it_is_urgent() {
        let out = run_classify(concat!(
            r#"{"text": "my dad can't breathe"}"#,
            "\n",
            r#"{"text": "quiero matarme"}"#,
            "\n",
            r#"{"text": "dying to know my results lol"}"#,
            "\n"
        ))
        .unwrap();
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let urgent: Vec<bool> = lines.iter().map(|l| l["urgent"] == true).collect();
        assert_eq!(urgent, [true, true, false]);
        assert_eq!(lines[1]["crisis"], true);
        assert_eq!(lines[0]["urgent_reasons"][0], "urgent: breathing");
    }
}
