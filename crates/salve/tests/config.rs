//! `salve config` and `salve serve` settings: precedence default < salve.toml < SALVE_* env <
//! flag, warnings for misspelled variables, redacted secrets, strict config files, and the
//! refusal to serve in clear on a network address.

mod common;

use std::path::Path;
use std::process::Command;

use common::{CliOutput, run_command, salve_bin};

/// `salve ARGS` in `cwd`, with exactly the given `SALVE_*` variables.
fn salve_in(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> CliOutput {
    let mut cmd = Command::new(salve_bin());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SALVE_") {
            cmd.env_remove(name);
        }
    }
    cmd.current_dir(cwd).envs(env.iter().copied()).args(args);
    run_command(cmd)
}

/// The `value  (origin)` part of the line `name = value  (origin)`.
#[track_caller]
fn setting<'a>(out: &'a CliOutput, name: &str) -> (&'a str, &'a str) {
    let prefix = format!("{name} = ");
    let line = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no `{name}` line in:\n{out}"));
    let (value, origin) = line
        .rsplit_once("  (")
        .unwrap_or_else(|| panic!("no origin on `{name} = {line}`"));
    (value, origin.trim_end_matches(')'))
}

#[test]
fn precedence_is_default_then_file_then_env_then_flag() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();

    // Default: no file, no variable, no flag.
    let out = salve_in(cwd, &[], &["config"]).assert_success();
    assert_eq!(setting(&out, "listen"), ("127.0.0.1:8080", "default"));
    assert_eq!(setting(&out, "checkpoint_interval_secs"), ("60", "default"));
    assert_eq!(setting(&out, "data_dir"), ("./salve-data", "default"));

    // File: ./salve.toml is read from the working directory.
    std::fs::write(
        cwd.join("salve.toml"),
        "listen = \"127.0.0.1:9001\"\ncheckpoint_interval_secs = 120\ndata_dir = \"/srv/salve-file\"\n",
    )
    .unwrap();
    let out = salve_in(cwd, &[], &["config"]).assert_success();
    assert_eq!(setting(&out, "listen"), ("127.0.0.1:9001", "file"));
    assert_eq!(setting(&out, "checkpoint_interval_secs"), ("120", "file"));
    assert_eq!(setting(&out, "data_dir"), ("/srv/salve-file", "file"));

    // Environment beats the file.
    let env = [
        ("SALVE_LISTEN", "127.0.0.1:9002"),
        ("SALVE_CHECKPOINT_INTERVAL_SECS", "130"),
        ("SALVE_DATA_DIR", "/srv/salve-env"),
    ];
    let out = salve_in(cwd, &env, &["config"]).assert_success();
    assert_eq!(setting(&out, "listen"), ("127.0.0.1:9002", "env"));
    assert_eq!(setting(&out, "checkpoint_interval_secs"), ("130", "env"));
    assert_eq!(setting(&out, "data_dir"), ("/srv/salve-env", "env"));

    // A flag beats the environment and the file.
    let out = salve_in(
        cwd,
        &env,
        &[
            "--data-dir",
            "/srv/salve-flag",
            "config",
            "--listen",
            "127.0.0.1:9003",
            "--checkpoint-interval-secs",
            "140",
        ],
    )
    .assert_success();
    assert_eq!(setting(&out, "listen"), ("127.0.0.1:9003", "flag"));
    assert_eq!(setting(&out, "checkpoint_interval_secs"), ("140", "flag"));
    assert_eq!(setting(&out, "data_dir"), ("/srv/salve-flag", "flag"));

    // An explicit --config file is used instead of ./salve.toml.
    let other = cwd.join("other.toml");
    std::fs::write(&other, "listen = \"127.0.0.1:9004\"\n").unwrap();
    let out = salve_in(cwd, &[], &["--config", other.to_str().unwrap(), "config"]).assert_success();
    assert_eq!(setting(&out, "listen"), ("127.0.0.1:9004", "file"));
    assert_eq!(setting(&out, "checkpoint_interval_secs"), ("60", "default"));
}

#[test]
fn a_misspelled_variable_is_named_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let out = salve_in(
        dir.path(),
        &[("SALVE_LISTN", "127.0.0.1:9010")],
        &["config"],
    )
    .assert_success();
    let warning = out
        .stderr
        .lines()
        .find(|l| l.contains("SALVE_LISTN"))
        .unwrap_or_else(|| panic!("no warning naming SALVE_LISTN:\n{out}"));
    assert!(
        warning.contains("WARN") && warning.contains("did you mean SALVE_LISTEN?"),
        "the warning should suggest SALVE_LISTEN: {warning}"
    );
    // The misspelled variable is ignored.
    assert_eq!(setting(&out, "listen"), ("127.0.0.1:8080", "default"));
}

#[test]
fn a_metrics_token_from_the_environment_never_prints() {
    let dir = tempfile::tempdir().unwrap();
    let token = "mtok-7f3c9a1e5b2d4680-zz";
    let out = salve_in(dir.path(), &[("SALVE_METRICS_TOKEN", token)], &["config"]).assert_success();
    assert_eq!(setting(&out, "metrics_token"), ("[redacted]", "env"));
    assert!(
        !out.stdout.contains(token) && !out.stderr.contains(token),
        "the metrics token leaked:\n{out}"
    );
    // Neither does a master key given in the environment.
    let key = "c2VjcmV0LWtleS1ieXRlcy1mb3ItdGVzdHMtMDAwMDA=";
    let out = salve_in(dir.path(), &[("SALVE_MASTER_KEY", key)], &["config"]).assert_success();
    let (value, origin) = setting(&out, "master_key");
    assert_eq!((value, origin), ("SALVE_MASTER_KEY [redacted]", "env"));
    assert!(
        !out.combined().contains(key),
        "the master key leaked:\n{out}"
    );
}

#[test]
fn an_unknown_key_in_the_config_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("salve.toml"),
        "listen = \"127.0.0.1:9020\"\nlisten_adress = \"127.0.0.1:9021\"\n",
    )
    .unwrap();
    let out = salve_in(dir.path(), &[], &["config"]).assert_failure();
    assert!(
        out.stderr.contains("salve.toml")
            && out.stderr.contains("unknown field")
            && out.stderr.contains("listen_adress"),
        "the error should name the file and the unknown key:\n{out}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing should print on stdout:\n{out}"
    );
}

#[test]
fn serving_in_clear_on_a_network_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let anchor = dir.path().join("anchor.jsonl");
    let out = salve_in(
        dir.path(),
        &[],
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--audit-anchor",
            anchor.to_str().unwrap(),
        ],
    )
    .assert_failure();
    assert!(
        out.stderr.contains("without TLS") && out.stderr.contains("--tls-cert"),
        "the refusal should explain the TLS requirement:\n{out}"
    );
    assert!(!out.stderr.contains(common::LISTENING), "{out}");
    // An http:// public URL does not help; nothing was created before refusing.
    let out = salve_in(
        dir.path(),
        &[("SALVE_PUBLIC_URL", "http://clinic.example")],
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "serve",
            "--listen",
            "0.0.0.0:0",
        ],
    )
    .assert_failure();
    assert!(out.stderr.contains("without TLS"), "{out}");
    assert!(
        !data.exists(),
        "the data directory was created before refusing"
    );
}
