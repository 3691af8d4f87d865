//! The two third-party FHIR R4 validators the FHIR tests run every served resource through:
//! `fhir.resources` 6.4 (Python) and `@medplum/core` 4.5 (Node). Skipped, saying so, when not
//! installed outside CI.

use salve_testkit::peers::{fhir_python, medplum_tools, run_peer};
use serde_json::{Value, json};

/// Runs both validators over `all`, plus one resource that is not valid R4 (a month 13 birth
/// date): each validator must refuse that one and nothing else.
pub fn validate(all: &[Value]) {
    let mut input = all.to_vec();
    input.push(json!({"resourceType": "Patient", "id": "control", "birthDate": "1971-13-45"}));
    let input = Value::Array(input);
    let only_the_control = |out: &Value, who: &str| {
        let errors = out["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{who} {}: {errors:#?}", out["version"]);
        assert_eq!(errors[0]["index"], all.len(), "{who}: {errors:#?}");
    };
    match fhir_python() {
        Some(python) => {
            let out = run_peer(&python, "fhir_validate.py", &[], &input);
            assert_eq!(out["checked"], all.len() + 1);
            only_the_control(&out, "fhir.resources");
            eprintln!(
                "fhir.resources {}: {} resources valid, the control refused",
                out["version"],
                all.len()
            );
        }
        None => eprintln!("skipped: fhir.resources validation"),
    }
    match medplum_tools() {
        Some(tools) => {
            let out = run_peer(
                std::path::Path::new("node"),
                "medplum_validate.cjs",
                &[&tools],
                &input,
            );
            assert_eq!(out["checked"], all.len() + 1);
            only_the_control(&out, "@medplum/core");
            eprintln!(
                "@medplum/core {}: {} resources valid, the control refused",
                out["version"],
                all.len()
            );
        }
        None => eprintln!("skipped: @medplum/core validation"),
    }
}
