//! `salve inbound classify` and `salve inbound eval`: the inbound keyword classifier from the
//! command line.
//!
//! Errors name the line number and the field, never the text: `classify` may be fed real
//! messages, and `eval` prints texts only when asked (`--show-text`).

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use salve_core::keywords::eval::{LabeledCase, score};
use salve_core::keywords::{InboundContext, classify};
use serde::Deserialize;

use crate::cli::InboundCommand;
use crate::policy_cmd::parse;

pub fn run(cmd: &InboundCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        InboundCommand::Classify => {
            let stdin = std::io::stdin();
            let stdout = std::io::stdout();
            classify_lines(stdin.lock(), &mut BufWriter::new(stdout.lock()))?;
            Ok(ExitCode::SUCCESS)
        }
        InboundCommand::Eval { file, show_text } => {
            let report = eval_file(file, *show_text)?;
            // `salve inbound eval FILE | head` is fine: a closed pipe is not an error.
            match std::io::stdout().lock().write_all(report.as_bytes()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other?,
            }
            Ok(ExitCode::SUCCESS)
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

fn classify_lines(input: impl BufRead, out: &mut impl Write) -> anyhow::Result<()> {
    for (i, line) in input.lines().enumerate() {
        let number = i + 1;
        let line = line.with_context(|| format!("cannot read line {number} of standard input"))?;
        if line.trim().is_empty() {
            continue;
        }
        let input: Input = parse(&line, number)?;
        serde_json::to_writer(&mut *out, &classify(&input.text, &input.context))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

fn eval_file(path: &Path, show_text: bool) -> anyhow::Result<String> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut cases = Vec::new();
    let mut line_numbers = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let number = i + 1;
        let line = line.with_context(|| format!("cannot read line {number}"))?;
        if line.trim().is_empty() {
            continue;
        }
        cases.push(parse::<LabeledCase>(&line, number)?);
        line_numbers.push(number);
    }
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
    }
}
