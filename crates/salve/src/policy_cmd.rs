//! `salve policy classify` and `salve policy eval`: the channel policy from the command line.
//!
//! Errors name the line number and the field, never the text: `classify` may be fed real
//! messages.

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use salve_core::policy::eval::Tally;
use salve_core::policy::{ClassifyContext, Decision, FilledValue, Route, classify};
use serde::Deserialize;

use crate::cli::PolicyCommand;

pub fn run(cmd: &PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Classify => {
            let stdin = std::io::stdin();
            let stdout = std::io::stdout();
            classify_lines(stdin.lock(), &mut BufWriter::new(stdout.lock()))?;
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Eval { file } => {
            eval_file(file)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One input line of `classify`; unknown fields (such as an eval label) are ignored.
#[derive(Debug, Deserialize)]
struct Input {
    text: String,
    #[serde(default)]
    has_attachment: bool,
    #[serde(default)]
    values: Vec<FilledValue>,
    #[serde(default)]
    sender_name: Option<String>,
}

impl Input {
    fn classify(&self) -> Decision {
        let ctx = ClassifyContext {
            has_attachment: self.has_attachment,
            values: self.values.clone(),
            sender_name: self.sender_name.clone(),
        };
        classify(&self.text, &ctx)
    }
}

/// One labelled line of an evaluation file.
#[derive(Debug, Deserialize)]
struct Labelled {
    #[serde(flatten)]
    input: Input,
    expected: String,
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

/// Parse one JSON line. The error says where and which field, but quotes nothing from the line
/// (serde's own messages can quote the offending value).
pub(crate) fn parse<T: for<'de> Deserialize<'de>>(line: &str, number: usize) -> anyhow::Result<T> {
    let mut de = serde_json::Deserializer::from_str(line);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let (path, inner) = match result {
        Ok(value) => match de.end() {
            Ok(()) => return Ok(value),
            Err(e) => (".".to_owned(), e),
        },
        Err(e) => (e.path().to_string(), e.into_inner()),
    };
    let what = match inner.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("is not valid JSON (column {})", inner.column())
        }
        serde_json::error::Category::Data if path == "." => {
            "is not a JSON object with a \"text\" string".to_owned()
        }
        serde_json::error::Category::Data => {
            format!("has a missing or invalid field `{path}`")
        }
        serde_json::error::Category::Io => "could not be read".to_owned(),
    };
    bail!("line {number} {what}")
}

fn classify_lines(input: impl BufRead, out: &mut impl Write) -> anyhow::Result<()> {
    map_lines(input, out, |input: Input| input.classify())
}

/// `classify` for every command: one JSON line in (blank lines skipped), one answer out.
pub(crate) fn map_lines<T, O>(
    input: impl BufRead,
    out: &mut impl Write,
    answer: impl Fn(T) -> O,
) -> anyhow::Result<()>
where
    T: for<'de> Deserialize<'de>,
    O: serde::Serialize,
{
    for (i, line) in input.lines().enumerate() {
        let number = i + 1;
        let line = line.with_context(|| format!("cannot read line {number} of standard input"))?;
        if line.trim().is_empty() {
            continue;
        }
        serde_json::to_writer(&mut *out, &answer(parse::<T>(&line, number)?))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// `eval` for every command: the labelled lines of a file with their line numbers (blank lines
/// skipped; a bad line is named by number, never quoted).
pub(crate) fn read_labelled<T>(path: &Path) -> anyhow::Result<Vec<(usize, T)>>
where
    T: for<'de> Deserialize<'de>,
{
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut cases = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let number = i + 1;
        let line = line.with_context(|| format!("cannot read line {number}"))?;
        if line.trim().is_empty() {
            continue;
        }
        cases.push((number, parse::<T>(&line, number)?));
    }
    Ok(cases)
}

/// Print a report; `salve ... eval FILE | head` is fine: a closed pipe is not an error.
pub(crate) fn print_report(report: &str) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(report.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

fn eval_file(path: &Path) -> anyhow::Result<()> {
    let mut overall = Tally::default();
    let mut by_lang: BTreeMap<String, Tally> = BTreeMap::new();
    let mut misses = Vec::new();
    for (number, case) in read_labelled::<Labelled>(path)? {
        let Some(expected) = Route::parse(&case.expected) else {
            bail!("line {number} has an invalid field `expected` (direct or secure)");
        };
        let decision = case.input.classify();
        let lang = case.lang.clone().unwrap_or_else(|| "?".into());
        overall.add(expected, decision.route);
        by_lang
            .entry(lang.clone())
            .or_default()
            .add(expected, decision.route);
        if decision.route != expected {
            misses.push((number, lang, expected, case, decision));
        }
    }

    let report = write_report(path, &overall, &by_lang, &misses);
    // `salve policy eval FILE | head` is fine: a closed pipe is not an error.
    match report {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

type Miss = (usize, String, Route, Labelled, Decision);

fn write_report(
    path: &Path,
    overall: &Tally,
    by_lang: &BTreeMap<String, Tally>,
    misses: &[Miss],
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let total = overall.secure + overall.direct;
    writeln!(out, "{total} labelled messages from {}", path.display())?;
    writeln!(
        out,
        "{:<8} {:>26} {:>30}",
        "", "recall on secure", "false-secure rate on direct"
    )?;
    let mut row = |name: &str, t: &Tally| {
        writeln!(
            out,
            "{:<8} {:>26} {:>30}",
            name,
            format!(
                "{} ({}/{})",
                pct(t.recall_secure()),
                t.secure_caught,
                t.secure
            ),
            format!(
                "{} ({}/{})",
                pct(t.false_secure_rate()),
                t.direct_false_secure,
                t.direct
            ),
        )
    };
    row("all", overall)?;
    for (lang, t) in by_lang {
        row(lang, t)?;
    }
    writeln!(out, "\n{} misses", misses.len())?;
    for (number, lang, expected, case, decision) in misses {
        let why: Vec<String> = decision
            .reasons
            .iter()
            .map(|r| format!("{}: {}", r.rule, r.matched_text))
            .collect();
        writeln!(
            out,
            "line {number} [{lang}] expected {} got {}: {}\n    note: {}\n    reasons: {}",
            expected.as_str(),
            decision.route.as_str(),
            case.input.text,
            case.note.as_deref().unwrap_or(""),
            why.join("; "),
        )?;
    }
    Ok(())
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
        let secret = "metformin for Jane";
        for bad in [
            format!("{{\"text\": \"{secret}\""),
            format!("{{\"txt\": \"{secret}\"}}"),
            format!("\"{secret}\""),
            format!("{{\"text\": \"ok\", \"has_attachment\": \"{secret}\"}}"),
            format!(
                "{{\"text\": \"ok\", \"values\": [{{\"kind\": \"{secret}\", \"text\": \"x\"}}]}}"
            ),
        ] {
            let err = run_classify(&format!("{{\"text\": \"hi\"}}\n{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("line 2 "), "{err}");
            assert!(!err.contains("metformin") && !err.contains("Jane"), "{err}");
        }
    }
}
