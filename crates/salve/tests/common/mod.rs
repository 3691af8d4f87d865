//! Shared helpers for the `salve` binary's integration tests: run CLI commands against one
//! database, start and stop `salve serve` on a free port, and talk to the patients API.
//!
//! Every child process runs in an empty working directory (so a `salve.toml` in the caller's
//! directory is never read), with every inherited `SALVE_*` variable removed, and with a
//! deadline: nothing here can hang a test run.
//!
//! Typical use:
//!
//! ```ignore
//! let db = TestDatabase::sqlite();
//! let salve = Salve::for_db(&db);
//! let (practice, token) = salve.create_practice_and_token("Lakeside");
//! let server = salve.start_server().await;
//! let api = Api::new(&server.base_url, &token);
//! let patients = api.create_patients(5).await;
//! let log = server.stop_async().await; // SIGTERM, waits for exit status 0
//! salve.run(["audit", "verify"]).assert_success();
//! ```
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use salve_testkit::TestDatabase;
use serde_json::{Value, json};

/// How long a CLI command may take before the test fails.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(60);
/// How long a server may take to print its listening line, or to exit after SIGTERM.
pub const SERVER_DEADLINE: Duration = Duration::from_secs(60);

/// The line `salve serve` logs once it accepts connections.
pub const LISTENING: &str = "Salve is listening on ";

/// The `salve` binary built for these tests.
pub fn salve_bin() -> &'static str {
    env!("CARGO_BIN_EXE_salve")
}

/// A command without any inherited `SALVE_*` variable.
fn clean_command(cwd: &Path) -> Command {
    let mut cmd = Command::new(salve_bin());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SALVE_") {
            cmd.env_remove(name);
        }
    }
    // These servers run on the wall clock: quiet hours would hold texts at some times of day.
    // They are tested with a manual clock in salve-server's tests.
    cmd.env("SALVE_QUIET_HOURS", "off");
    cmd.current_dir(cwd);
    cmd
}

/// Where one Salve installation keeps its state. Every command built from it gets
/// `--data-dir`, `--database-url` and `--master-key-file`.
#[derive(Debug, Clone)]
pub struct Salve {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub key_file: PathBuf,
    /// The audit anchor file given to servers (outside the data dir).
    pub anchor: PathBuf,
    /// An empty working directory for child processes.
    pub cwd: PathBuf,
}

impl Salve {
    /// An installation on a test database: data dir `DIR/data`, key `DIR/master.key`, anchor
    /// `DIR/audit-anchor.jsonl`, working directory `DIR/cwd`. The key file is created by the
    /// first command that opens the new database.
    pub fn for_db(db: &TestDatabase) -> Self {
        let root = db.dir.path();
        let cwd = root.join("cwd");
        std::fs::create_dir_all(&cwd).expect("create the working directory");
        Self {
            data_dir: db.data_dir(),
            database_url: db.url.clone(),
            key_file: root.join("master.key"),
            anchor: root.join("audit-anchor.jsonl"),
            cwd,
        }
    }

    /// The same installation used with another master key file.
    pub fn with_key(&self, key_file: impl Into<PathBuf>) -> Self {
        Self {
            key_file: key_file.into(),
            ..self.clone()
        }
    }

    /// The same installation on another database (e.g. a copy).
    pub fn with_database_url(&self, url: impl Into<String>) -> Self {
        Self {
            database_url: url.into(),
            ..self.clone()
        }
    }

    /// The SQLite file of this installation, when it uses SQLite.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        self.database_url
            .strip_prefix("sqlite://")
            .map(|p| PathBuf::from(p.split('?').next().unwrap_or(p)))
    }

    pub fn global_args(&self) -> Vec<OsString> {
        vec![
            "--data-dir".into(),
            self.data_dir.clone().into(),
            "--database-url".into(),
            self.database_url.clone().into(),
            "--master-key-file".into(),
            self.key_file.clone().into(),
        ]
    }

    /// `salve GLOBAL_ARGS ARGS` in the empty working directory, not yet started.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut cmd = clean_command(&self.cwd);
        cmd.args(self.global_args());
        cmd.args(args.into_iter().map(Into::into));
        cmd
    }

    /// Runs a command to completion (blocking, with [`COMMAND_DEADLINE`]).
    pub fn run<I, S>(&self, args: I) -> CliOutput
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        run_command(self.command(args))
    }

    /// Runs a command to completion without blocking the async runtime.
    pub async fn run_async<I, S>(&self, args: I) -> CliOutput
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let cmd = self.command(args);
        tokio::task::spawn_blocking(move || run_command(cmd))
            .await
            .expect("command thread")
    }

    /// Runs a command and returns its trimmed stdout, failing the test when it fails.
    pub fn run_ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.run(args).assert_success().stdout.trim().to_owned()
    }

    /// `salve admin create-practice`; returns the practice id.
    pub fn create_practice(&self, name: &str) -> String {
        let id = self.run_ok(["admin", "create-practice", "--name", name]);
        assert!(
            uuid::Uuid::parse_str(&id).is_ok(),
            "create-practice printed {id:?}"
        );
        id
    }

    /// `salve admin create-token` with read and write scopes; returns the token.
    pub fn create_token(&self, practice: &str) -> String {
        let token = self.run_ok([
            "admin",
            "create-token",
            "--practice",
            practice,
            "--scope",
            "patients:read,patients:write",
        ]);
        assert!(
            !token.is_empty() && !token.contains(char::is_whitespace),
            "create-token printed {token:?}"
        );
        token
    }

    /// A practice and a read/write token for it: `(practice id, token)`.
    pub fn create_practice_and_token(&self, name: &str) -> (String, String) {
        let practice = self.create_practice(name);
        let token = self.create_token(&practice);
        (practice, token)
    }

    /// `salve audit verify`, with `--anchor` (this installation's anchor file) when asked.
    pub fn audit_verify(&self, with_anchor: bool) -> CliOutput {
        let mut args: Vec<OsString> = vec!["audit".into(), "verify".into()];
        if with_anchor {
            args.push("--anchor".into());
            args.push(self.anchor.clone().into());
        }
        self.run(args)
    }

    /// The arguments [`Salve::start_server`] gives `serve`: port 0 on loopback, this
    /// installation's anchor file, and checkpoints only at shutdown (interval one hour).
    pub fn serve_args(&self) -> Vec<OsString> {
        vec![
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--audit-anchor".into(),
            self.anchor.clone().into(),
            "--checkpoint-interval-secs".into(),
            "3600".into(),
        ]
    }

    /// Starts `salve serve` (see [`Salve::serve_args`]) and waits until it listens.
    /// Blocks the calling thread; see [`Salve::start_server`] in async code.
    pub fn start_server_blocking(&self) -> Server {
        self.start_server_with_blocking(std::iter::empty::<OsString>())
    }

    /// Like [`Salve::start_server_blocking`], with more `serve` flags.
    pub fn start_server_with_blocking<I, S>(&self, extra: I) -> Server
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut args = self.serve_args();
        args.extend(extra.into_iter().map(Into::into));
        let mut cmd = self.command(args);
        cmd.env("SALVE_LOG", "info,sqlx=warn");
        Server::spawn(cmd).unwrap_or_else(|log| panic!("salve serve did not start:\n{log}"))
    }

    /// Starts `salve serve` without blocking the async runtime.
    pub async fn start_server(&self) -> Server {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.start_server_blocking())
            .await
            .expect("server start thread")
    }

    /// Starts `salve serve` with more flags, without blocking the async runtime.
    pub async fn start_server_with(&self, extra: Vec<String>) -> Server {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.start_server_with_blocking(extra))
            .await
            .expect("server start thread")
    }
}

/// The result of one CLI command.
#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// stdout then stderr, for assertions that do not care which stream a line went to.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn assert_success(self) -> Self {
        assert!(self.status.success(), "command failed: {self}");
        self
    }

    #[track_caller]
    pub fn assert_failure(self) -> Self {
        assert!(
            !self.status.success(),
            "command succeeded but should have failed: {self}"
        );
        self
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Waits for a child to exit, at most `limit`; past it, kills the child (SIGKILL), reaps it and
/// returns `Err(())`. The child is waited for on a thread of its own (no polling).
pub fn wait_with_deadline(mut child: Child, limit: Duration) -> Result<ExitStatus, ()> {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait().expect("wait for a child process");
        let _ = tx.send(status);
    });
    match rx.recv_timeout(limit) {
        Ok(status) => {
            let _ = waiter.join();
            Ok(status)
        }
        Err(_) => {
            // The waiter has not reaped the child yet, so the pid is still ours.
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            let _ = waiter.join();
            Err(())
        }
    }
}

fn read_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs a command to completion, capturing its output; kills it and fails the test when it
/// outlives [`COMMAND_DEADLINE`].
pub fn run_command(mut cmd: Command) -> CliOutput {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let described = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {described}: {e}"));
    let stdout = read_all(child.stdout.take().expect("stdout"));
    let stderr = read_all(child.stderr.take().expect("stderr"));
    let Ok(status) = wait_with_deadline(child, COMMAND_DEADLINE) else {
        panic!(
            "{described} did not finish within {COMMAND_DEADLINE:?} and was killed; stderr:\n{}",
            stderr.join().unwrap_or_default()
        );
    };
    CliOutput {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// A running `salve serve`. Dropping it kills the process; [`Server::stop`] shuts it down
/// gracefully and checks that it exited with status 0.
pub struct Server {
    child: Option<Child>,
    pub pid: u32,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Spawns a prepared `salve serve` command and waits (up to [`SERVER_DEADLINE`]) for its
    /// listening line. On failure returns everything it wrote to stderr.
    pub fn spawn(mut cmd: Command) -> Result<Self, String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
        let pid = child.id();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let reader = {
            let log = log.clone();
            let stderr = child.stderr.take().expect("stderr");
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    {
                        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                        log.push_str(&line);
                        log.push('\n');
                    }
                    let _ = tx.send(line);
                }
            })
        };
        let mut server = Self {
            child: Some(child),
            pid,
            base_url: String::new(),
            log,
            reader: Some(reader),
        };
        let deadline = Instant::now() + SERVER_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split(LISTENING).nth(1) {
                        server.base_url = rest.trim().to_owned();
                        return Ok(server);
                    }
                }
                // The process closed stderr: it exited before listening.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = server.child.as_mut().and_then(|c| c.wait().ok());
                    return Err(format!("exited with {status:?}:\n{}", server.log()));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "no listening line within {SERVER_DEADLINE:?}:\n{}",
                        server.log()
                    ));
                }
            }
        }
    }

    /// Everything the server wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sends SIGTERM, waits (up to [`SERVER_DEADLINE`]) for the process to exit, asserts exit
    /// status 0, and returns the complete stderr log. Blocks the calling thread.
    pub fn stop(mut self) -> String {
        let child = self.child.take().expect("server process");
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {} failed", self.pid);
        let Ok(status) = wait_with_deadline(child, SERVER_DEADLINE) else {
            panic!(
                "server {} did not exit within {SERVER_DEADLINE:?} of SIGTERM and was killed:\n{}",
                self.pid,
                self.log()
            );
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let log = self.log();
        assert!(
            status.success(),
            "server {} exited with {status} after SIGTERM:\n{log}",
            self.pid
        );
        log
    }

    /// Kills the process with SIGKILL (no draining, no final checkpoint: a crash), reaps it,
    /// asserts that the signal is what ended it, and returns the complete stderr log.
    pub fn kill(mut self) -> String {
        let mut child = self.child.take().expect("server process");
        child.kill().expect("SIGKILL the server");
        let status = child.wait().expect("reap the killed server");
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let log = self.log();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "server {} was not ended by SIGKILL ({status}):\n{log}",
            self.pid
        );
        log
    }

    /// [`Server::kill`] without blocking the async runtime.
    pub async fn kill_async(self) -> String {
        tokio::task::spawn_blocking(move || self.kill())
            .await
            .expect("server kill thread")
    }

    /// [`Server::stop`] without blocking the async runtime.
    pub async fn stop_async(self) -> String {
        tokio::task::spawn_blocking(move || self.stop())
            .await
            .expect("server stop thread")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A client of the patients API with one practice's bearer token.
#[derive(Clone)]
pub struct Api {
    pub client: reqwest::Client,
    pub base_url: String,
    pub token: String,
}

impl Api {
    pub fn new(base_url: &str, token: &str) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    /// The same token against another server.
    pub fn at(&self, base_url: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            ..self.clone()
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `POST /api/v1/patients`; returns status and body (JSON, or a string when not JSON).
    pub async fn try_create_patient(&self, body: &Value) -> reqwest::Result<(u16, Value)> {
        let resp = self
            .client
            .post(self.url("/api/v1/patients"))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        Ok(split(resp).await)
    }

    /// Creates a patient and returns the created JSON; fails the test unless 201.
    pub async fn create_patient(&self, body: &Value) -> Value {
        let (status, json) = self
            .try_create_patient(body)
            .await
            .expect("POST /api/v1/patients");
        assert_eq!(status, 201, "creating a patient answered {status}: {json}");
        assert!(json["id"].is_string(), "no id in {json}");
        json
    }

    /// Creates `n` patients from [`patient_body`] (numbers `0..n`) and returns them.
    pub async fn create_patients(&self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(self.create_patient(&patient_body(i)).await);
        }
        out
    }

    /// `GET /api/v1/patients/{id}`: status and body.
    pub async fn get_patient(&self, id: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(self.url(&format!("/api/v1/patients/{id}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET /api/v1/patients/{id}");
        split(resp).await
    }

    /// `GET /api/v1/patients?limit=200`: status and body.
    pub async fn list_patients(&self) -> (u16, Value) {
        let resp = self
            .client
            .get(self.url("/api/v1/patients?limit=200"))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET /api/v1/patients");
        split(resp).await
    }

    /// `GET /readyz` status.
    pub async fn ready(&self) -> u16 {
        self.client
            .get(self.url("/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }
}

async fn split(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

/// A fictional patient, different for each `i`: unique names, MRN, phone and email.
pub fn patient_body(i: usize) -> Value {
    const GIVEN: [&str; 8] = [
        "Ada", "Bruno", "Chiara", "Dmitri", "Esi", "Farid", "Greta", "Hiro",
    ];
    const FAMILY: [&str; 8] = [
        "Quillfeather",
        "Marchetti",
        "Okonkwo",
        "Lindqvist",
        "Arrowsmith",
        "Haddadi",
        "Vasquez",
        "Tanabe",
    ];
    json!({
        "given_name": format!("{}{i}", GIVEN[i % GIVEN.len()]),
        "family_name": FAMILY[(i / GIVEN.len()) % FAMILY.len()],
        "birth_date": format!("19{:02}-{:02}-{:02}", 40 + i % 60, 1 + i % 12, 1 + i % 28),
        "mrn": format!("MRN-{i:06}"),
        "contacts": [
            // 555-01xx numbers are reserved for fiction and valid in `phonenumber`.
            {"kind": "phone", "value": format!("+1312555{:04}", 100 + i % 100), "role": "self"},
            {"kind": "email", "value": format!("patient{i}@example.org"), "role": "self"},
        ],
    })
}

/// Asserts that a patient returned by the API carries the names, birth date and MRN of the
/// body it was created from.
#[track_caller]
pub fn assert_same_patient(body: &Value, got: &Value) {
    for field in ["given_name", "family_name", "birth_date", "mrn"] {
        assert_eq!(
            got[field], body[field],
            "{field} differs: sent {body}, got {got}"
        );
    }
    assert_eq!(
        got["contacts"][0]["value"], body["contacts"][0]["value"],
        "phone differs: sent {body}, got {got}"
    );
}

/// Skips a PostgreSQL-only test with a clear line when no PostgreSQL is configured.
pub fn skip_without_postgres(test: &str) {
    eprintln!(
        "skipped: {test} needs PostgreSQL (set {} to run it)",
        salve_testkit::POSTGRES_ENV
    );
}
