//! `salve inbound classify` and `salve inbound eval`, run as the real binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// `salve ARGS` with `stdin` piped in, in an empty directory, without inherited SALVE_* vars.
fn salve(args: &[&str], stdin: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_salve"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SALVE_") {
            cmd.env_remove(name);
        }
    }
    let mut child = cmd
        .current_dir(dir.path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start salve");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().expect("salve runs")
}

#[test]
fn classify_writes_one_answer_per_line() {
    let input = concat!(
        r#"{"text": "STOP"}"#,
        "\n\n",
        r#"{"text": "cancel my appointment tuesday"}"#,
        "\n",
        r#"{"text": "Help!"}"#,
        "\n",
        r#"{"text": "yes", "context": {"reminder_awaiting_answer": true}}"#,
        "\n",
        r#"{"text": "yes"}"#,
        "\n",
        r#"{"text": "wrong number"}"#,
        "\n",
    );
    let out = salve(&["inbound", "classify"], input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let intents: Vec<&str> = lines
        .iter()
        .map(|d| d["intent"].as_str().unwrap())
        .collect();
    assert_eq!(
        intents,
        ["optout", "other", "help", "other", "optin", "other"]
    );
    assert_eq!(lines[0]["review"], false);
    assert_eq!(lines[0]["reasons"][0], "whole-message keyword STOP");
    assert_eq!(lines[5]["review"], true);
    let replies: Vec<&Value> = lines.iter().map(|d| &d["reply"]).collect();
    assert_eq!(replies[1], "cancel_visit");
    assert_eq!(replies[3], "confirm");
    assert!(replies[0].is_null() && replies[4].is_null());
    assert!(lines.iter().all(|d| d["urgent"] == false));
}

#[test]
fn classify_says_urgent_and_reply() {
    let input = concat!(
        r#"{"text": "my chest hurts and I can't breathe"}"#,
        "\n",
        r#"{"text": "R", "context": {"reminder_awaiting_answer": true}}"#,
        "\n",
        r#"{"text": "R"}"#,
        "\n",
        r#"{"text": "llego tarde"}"#,
        "\n",
    );
    let out = salve(&["inbound", "classify"], input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let urgent: Vec<bool> = lines.iter().map(|d| d["urgent"] == true).collect();
    assert_eq!(urgent, [true, false, false, false]);
    assert_eq!(lines[0]["crisis"], false);
    let replies: Vec<&Value> = lines.iter().map(|d| &d["reply"]).collect();
    assert!(replies[0].is_null() && replies[2].is_null());
    assert_eq!(replies[1], "reschedule");
    assert_eq!(replies[3], "late");
}

#[test]
fn eval_urgency_prints_recall_and_misses_and_fails_below_target() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("urgency.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"text": "I can't breathe", "urgent": true, "lang": "en"}"#,
            "\n\n",
            r#"{"text": "quiero matarme", "urgent": true, "lang": "es"}"#,
            "\n",
            r#"{"text": "Jane Roe sees you Monday", "urgent": true, "lang": "en"}"#,
            "\n",
            r#"{"text": "dying to know my results lol", "urgent": false, "lang": "en"}"#,
            "\n",
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let out = salve(&["inbound", "eval", "--urgency", path], "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "below target: {stdout}");
    assert!(stdout.contains("4 labelled texts"), "{stdout}");
    assert!(
        stdout.contains("urgent recall:     66.67% (2/3; 1 crisis)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("false urgent rate: 0.00% (0/1)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("line 4 expected urgent got not urgent"),
        "{stdout}"
    );
    assert!(!stdout.contains("Jane"), "{stdout}");
    let shown = salve(&["inbound", "eval", "--urgency", "--show-text", path], "");
    assert!(String::from_utf8_lossy(&shown.stdout).contains("text: Jane Roe sees you Monday"));

    // Meeting the targets exits 0.
    std::fs::write(
        &file,
        concat!(
            r#"{"text": "chest pain", "urgent": true}"#,
            "\n",
            r#"{"text": "see you monday", "urgent": false}"#,
            "\n",
        ),
    )
    .unwrap();
    let out = salve(&["inbound", "eval", "--urgency", path], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    std::fs::write(&file, "{\"text\": \"Jane\", \"urgent\": \"maybe\"}\n").unwrap();
    let bad = salve(&["inbound", "eval", "--urgency", path], "");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("line 1") && stderr.contains("urgent"),
        "{stderr}"
    );
    assert!(!stderr.contains("Jane"), "{stderr}");
}

#[test]
fn a_bad_line_names_its_number_but_not_its_text() {
    let input = "{\"text\": \"STOP\"}\n{\"text\": \"Jane Roe says stop\", \"context\": 7}\n";
    let out = salve(&["inbound", "classify"], input);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("context"), "{stderr}");
    assert!(!stderr.contains("Jane"), "{stderr}");
}

#[test]
fn eval_prints_the_scores_and_misses_without_text() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("set.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"text": "STOP", "intent": "optout"}"#,
            "\n",
            r#"{"text": "stop by the office?", "intent": "other", "ambiguous": false}"#,
            "\n",
            r#"{"text": "HELP", "intent": "help"}"#,
            "\n",
            r#"{"text": "Jane Roe sees you Monday", "intent": "optout", "ambiguous": false}"#,
            "\n",
        ),
    )
    .unwrap();
    let out = salve(&["inbound", "eval", file.to_str().unwrap()], "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("4 labelled texts"), "{stdout}");
    assert!(
        stdout.contains("opt-out recall (opt-out or review): 50.00% (1/2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("false opt-out rate:                 0.00% (0/2)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("line 4 expected optout got other"),
        "{stdout}"
    );
    assert!(!stdout.contains("Jane"), "{stdout}");

    let shown = salve(
        &["inbound", "eval", "--show-text", file.to_str().unwrap()],
        "",
    );
    assert!(String::from_utf8_lossy(&shown.stdout).contains("text: Jane Roe sees you Monday"));

    std::fs::write(&file, "{\"text\": \"Jane\", \"intent\": \"maybe\"}\n").unwrap();
    let bad = salve(&["inbound", "eval", file.to_str().unwrap()], "");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("line 1") && stderr.contains("intent"),
        "{stderr}"
    );
    assert!(!stderr.contains("Jane"), "{stderr}");
}
