//! `salve policy classify` and `salve policy eval`, run as the real binary.

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
fn classify_writes_one_decision_per_line() {
    let input = concat!(
        r#"{"text": "Reminder: your appointment with Dr. Lee is Monday at 9 AM. Reply C to confirm."}"#,
        "\n\n",
        r#"{"text": "We received your form.", "has_attachment": true}"#,
        "\n",
        r#"{"text": "Your visit is at 10.", "values": [{"kind": "location", "text": "Cancer Center", "sms_safe": false}], "sender_name": "Oak Clinic"}"#,
        "\n",
        r#"{"text": "Please keep taking your metformin."}"#,
        "\n",
    );
    let out = salve(&["policy", "classify"], input);
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
    let routes: Vec<&str> = lines.iter().map(|d| d["route"].as_str().unwrap()).collect();
    assert_eq!(routes, ["direct", "secure", "secure", "secure"]);
    assert_eq!(lines[1]["reasons"][0]["rule"], "attachment");
    assert_eq!(lines[2]["reasons"][0]["rule"], "value_not_sms_safe");
    let med = &lines[3]["reasons"][0];
    assert_eq!(
        (med["rule"].as_str(), med["matched_text"].as_str()),
        (Some("medication"), Some("metformin"))
    );
    assert_eq!(med["explanation"], "mentions a medication (metformin)");
}

#[test]
fn a_bad_line_names_its_number_but_not_its_text() {
    let input = "{\"text\": \"Your appointment is Monday.\"}\n{\"text\": \"Jane Roe takes metformin\", \"values\": 7}\n";
    let out = salve(&["policy", "classify"], input);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("values"), "{stderr}");
    assert!(
        !stderr.contains("Jane") && !stderr.contains("metformin"),
        "{stderr}"
    );
}

#[test]
fn eval_prints_recall_false_secure_and_misses() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("set.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"text": "Your lab results are in.", "expected": "secure", "lang": "en", "note": "result"}"#,
            "\n",
            r#"{"text": "Su cita es el lunes a las 9.", "expected": "direct", "lang": "es", "note": "logistics"}"#,
            "\n",
            r#"{"text": "Our office is closed Monday.", "expected": "secure", "lang": "en", "note": "mislabelled on purpose"}"#,
            "\n",
        ),
    )
    .unwrap();
    let out = salve(&["policy", "eval", file.to_str().unwrap()], "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("3 labelled messages"), "{stdout}");
    let all = stdout.lines().find(|l| l.starts_with("all")).unwrap();
    assert!(
        all.contains("50.00% (1/2)") && all.contains("0.00% (0/1)"),
        "{all}"
    );
    assert!(stdout.lines().any(|l| l.starts_with("es ")), "{stdout}");
    assert!(stdout.contains("1 misses"), "{stdout}");
    assert!(
        stdout.contains("line 3 [en] expected secure got direct: Our office is closed Monday."),
        "{stdout}"
    );
}
