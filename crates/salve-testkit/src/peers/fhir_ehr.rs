//! A real FHIR R4 server as a practice's EHR: `peers/fhir_ehr_server.cjs`, @medplum/fhir-router
//! 4.5.2 with its in-memory repository, run by Node from `tools/`. Readiness is its "ready"
//! line with the port; it stops when dropped (stdin closed, process killed).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const SERVER_WAIT: Duration = Duration::from_secs(20);

pub struct Server {
    pub port: u16,
    _child: Child,
}

impl Server {
    /// Starts the server with `args` (`--bearer TOKEN` or `--smart CLIENT_ID`); `None` when
    /// the npm peers are not installed (outside CI only: in CI that panics).
    pub async fn start(args: &[&str]) -> Option<Server> {
        let tools = super::medplum_tools()?;
        super::find(
            "SALVE_TEST_FHIR_ROUTER",
            "tools/node_modules/@medplum/fhir-router/package.json",
            "@medplum/fhir-router (tools/node_modules)",
        )?;
        let mut child = Command::new("node")
            .arg(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("peers")
                    .join("fhir_ehr_server.cjs"),
            )
            .arg(&tools)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start fhir_ehr_server.cjs (node)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(SERVER_WAIT, lines.next_line())
            .await
            .expect("fhir_ehr_server.cjs did not get ready in time")
            .unwrap()
            .expect("fhir_ehr_server.cjs exited before it was ready");
        let ready: Value = serde_json::from_str(&ready).unwrap();
        assert_eq!(ready["event"], "ready", "{ready}");
        let port = u16::try_from(ready["port"].as_u64().unwrap()).unwrap();
        Some(Server {
            port,
            _child: child,
        })
    }

    /// The FHIR base URL.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}/fhir", self.port)
    }

    /// The SMART token URL (with `--smart`).
    pub fn token_url(&self) -> String {
        format!("http://127.0.0.1:{}/auth/token", self.port)
    }

    /// A test-only endpoint's URL (`jwks`, `now`, `fail`, `log`, `store/{type}`).
    pub fn control(&self, what: &str) -> String {
        format!("http://127.0.0.1:{}/_test/{what}", self.port)
    }
}
