//! The command line. Every command takes `--data-dir` and `--database-url`, so it works on the
//! same database as the server.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;

#[derive(Debug, Parser)]
#[command(
    name = "salve",
    version,
    about = "Salve: a self-hostable patient messaging server for medical practices",
    long_about = "Salve keeps patient data encrypted at rest under per-patient keys and records every \
access on a tamper-evident audit trail.\n\nSettings come from flags, then SALVE_* environment \
variables, then the configuration file (salve.toml), then defaults."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone, Default)]
pub struct GlobalArgs {
    /// Configuration file (TOML). Default: ./salve.toml when it exists.
    #[arg(long, env = "SALVE_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory: the SQLite database (salve.db), the default master key and the shred list.
    /// Default ./salve-data.
    #[arg(long, env = "SALVE_DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// sqlite://PATH or postgres://USER@HOST/DB. Default: salve.db in the data directory.
    #[arg(long, env = "SALVE_DATABASE_URL", global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// The master key file (0600; 32 random bytes in base64). Default: master.key in the data
    /// directory, created on first use. Keep it outside the data directory in production.
    #[arg(
        long,
        env = "SALVE_MASTER_KEY_FILE",
        global = true,
        value_name = "FILE"
    )]
    pub master_key_file: Option<PathBuf>,
    /// The master key itself, base64 (prefer a file).
    #[arg(
        long = "master-key",
        env = "SALVE_MASTER_KEY",
        global = true,
        hide_env_values = true,
        hide = true
    )]
    pub master_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (applies pending migrations first).
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations. Idempotent; refuses a database made by a newer Salve.
    Migrate,
    /// Practices, API tokens and retention.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Verify the audit trail, or show its public key.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Master-key rotation.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Write a consistent copy of the SQLite database while Salve keeps running.
    /// For PostgreSQL use pg_dump (see the README).
    Backup {
        /// The backup file to create (must not exist).
        file: PathBuf,
    },
    /// Replace the SQLite database with a backup (stop the server first). Patients shredded
    /// since the backup are shredded again. For PostgreSQL, run `pg_restore` first, then
    /// `salve restore --reapply-shreds`.
    Restore {
        /// A file written by `salve backup` (SQLite).
        #[arg(required_unless_present = "reapply_shreds")]
        file: Option<PathBuf>,
        /// Only shred again the patients in the shred list (after a PostgreSQL pg_restore).
        #[arg(long, conflicts_with = "file")]
        reapply_shreds: bool,
    },
    /// Messages "sent" through the local outbox (the demo's stand-in for SMS and email).
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Print the settings `serve` would use and where each came from (flag, env, file, default).
    /// Secrets are redacted.
    Config(Box<ServeArgs>),
    /// The channel policy: would a text go by plain SMS or through the secure portal, and why.
    /// Reads no database.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Inbound texts: is a patient's text an opt-out, help, an opt-in or a message for staff,
    /// does it answer a reminder, is it urgent. Reads no database.
    #[command(subcommand)]
    Inbound(InboundCommand),
    /// Start a throw-away server with a seeded demo practice on http://localhost.
    Demo {
        /// Port on localhost (0 picks a free one). Default 8080, or a free port if it is taken.
        #[arg(long, env = "SALVE_DEMO_PORT")]
        port: Option<u16>,
    },
}

#[derive(Debug, Args, Clone, Default)]
pub struct ServeArgs {
    /// Address to listen on. Default 127.0.0.1:8080. Anything but loopback needs TLS here or an
    /// https public URL.
    #[arg(long, env = "SALVE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The URL users reach Salve at, e.g. https://messages.example-clinic.org.
    #[arg(long, env = "SALVE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// CIDRs of reverse proxies whose X-Forwarded-For is believed (comma-separated). Default none.
    #[arg(long, env = "SALVE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<IpNet>>,
    /// Serve /metrics on this separate address.
    #[arg(long, env = "SALVE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Or serve /metrics on the main listener to requests bearing this token.
    #[arg(long, env = "SALVE_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// File holding the metrics token.
    #[arg(long, env = "SALVE_METRICS_TOKEN_FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// Append-only file receiving every signed audit checkpoint; keep it outside the data
    /// directory (another disk, host or WORM storage). Default ./salve-audit-anchor.jsonl.
    #[arg(long, env = "SALVE_AUDIT_ANCHOR")]
    pub audit_anchor: Option<PathBuf>,
    /// Seconds between audit checkpoints (one is also written at shutdown). Default 60.
    #[arg(long, env = "SALVE_CHECKPOINT_INTERVAL_SECS")]
    pub checkpoint_interval_secs: Option<u64>,
    /// When non-urgent texts wait, in each patient's time zone: HH:MM-HH:MM, or "off".
    /// Default 21:00-08:00. Opt-out and help confirmations and codes are never held.
    #[arg(long, env = "SALVE_QUIET_HOURS")]
    pub quiet_hours: Option<String>,
    /// TLS certificate chain (PEM), to terminate TLS in Salve.
    #[arg(long, env = "SALVE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "SALVE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a practice and print its id.
    CreatePractice {
        #[arg(long)]
        name: String,
        /// Country whose national phone format is assumed (ISO 3166 alpha-2).
        #[arg(long, default_value = "US")]
        phone_region: String,
        /// The practice's IANA time zone.
        #[arg(long, default_value = "America/Chicago")]
        time_zone: String,
    },
    /// List practices.
    ListPractices,
    /// Create an API token for one practice and print it once (only its hash is stored).
    CreateToken {
        /// The practice id.
        #[arg(long)]
        practice: String,
        /// Scopes, comma-separated: patients:read, patients:write.
        #[arg(long, value_name = "SCOPES")]
        scope: String,
        /// A label to recognise the token by, e.g. "EHR sync".
        #[arg(long, default_value = "api")]
        label: String,
    },
    /// Create a staff account in a practice. The password is read from --password-file, or
    /// from standard input. The user enrols a second factor at first sign-in.
    CreateUser {
        #[arg(long)]
        practice: String,
        #[arg(long)]
        email: String,
        /// The name colleagues see.
        #[arg(long)]
        name: String,
        /// admin, clinician, staff or auditor.
        #[arg(long)]
        role: String,
        /// Receives break-glass and lock notifications.
        #[arg(long)]
        privacy_officer: bool,
        /// A file holding the initial password (else standard input).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Remove a user's second factor (lost phone): sessions end, the next sign-in enrols again.
    ResetMfa {
        #[arg(long)]
        email: String,
    },
    /// Disable a user everywhere and end all their sessions.
    DisableUser {
        #[arg(long)]
        email: String,
    },
    /// Enable an SMS or email provider for a practice, with the Business Associate Agreement
    /// that covers it (or an attestation that the practice runs the service itself), and print
    /// the webhook URLs to configure at the vendor.
    AddProvider {
        #[arg(long)]
        practice: String,
        /// twilio, telnyx, smtp, or local_outbox (demo and development only).
        #[arg(long)]
        kind: String,
        /// A name for admins, e.g. "Main line".
        #[arg(long)]
        label: String,
        /// A JSON file with the provider's settings and secrets (see the README, "Providers").
        #[arg(long)]
        credentials_file: Option<PathBuf>,
        /// A sender number in E.164 form; repeat for several.
        #[arg(long = "number")]
        numbers: Vec<String>,
        #[command(flatten)]
        agreement: AgreementArgs,
        /// The public URL the vendor reaches Salve at (for the printed webhook URLs).
        #[arg(long, env = "SALVE_PUBLIC_URL")]
        public_url: Option<String>,
    },
    /// Record a renewed Business Associate Agreement for a provider. Messages held while the
    /// previous one was expired are released, each sent once.
    RenewAgreement {
        #[arg(long)]
        practice: String,
        #[arg(long)]
        provider: String,
        #[command(flatten)]
        agreement: AgreementArgs,
    },
    /// Destroy a patient's data key at the end of its retention period. Irreversible.
    ShredPatient {
        #[arg(long)]
        practice: String,
        #[arg(long)]
        patient: String,
        /// Required: confirms that the retention period has ended.
        #[arg(long)]
        confirm: bool,
    },
}

/// The agreement that lets a vendor carry patient data: a BAA (vendor, signing date, optional
/// expiry, the signed document, whose SHA-256 is recorded) or a self-operation attestation.
#[derive(Debug, Args, Clone, Default)]
pub struct AgreementArgs {
    /// The vendor named in the Business Associate Agreement.
    #[arg(long, conflicts_with = "self_operated")]
    pub baa_vendor: Option<String>,
    /// YYYY-MM-DD.
    #[arg(long, requires = "baa_vendor")]
    pub baa_signed_on: Option<String>,
    /// YYYY-MM-DD; the agreement is in force through this date.
    #[arg(long, requires = "baa_vendor")]
    pub baa_expires_on: Option<String>,
    /// The signed agreement (PDF or scan); only its SHA-256 is stored.
    #[arg(long, requires = "baa_vendor")]
    pub baa_document: Option<PathBuf>,
    /// Instead of a BAA: the practice operates this service itself (e.g. its own SMTP relay);
    /// the value names the service.
    #[arg(long)]
    pub self_operated: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute every hash chain and check every signed checkpoint. Exit 0 when all hold.
    Verify {
        /// The anchor file written by the server; proves that no anchored row was deleted.
        #[arg(long)]
        anchor: Option<PathBuf>,
    },
    /// Print each chain's checkpoint-signing public key (Ed25519, hex).
    PublicKey,
    /// Sign and store a checkpoint of every chain now (and append it to --anchor).
    Checkpoint {
        #[arg(long, env = "SALVE_AUDIT_ANCHOR")]
        anchor: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Rotate the master key in two phases. Phase 1 (with the current key): wrap every key under
    /// the new key too; servers with either key keep working. Restart every server with the new
    /// key, then phase 2 (`--finish`, with the new key as the master key and the old one given
    /// by --old-key-file): retire the old key.
    Rotate {
        /// Phase 1: the new key file (created 0600 when it does not exist).
        #[arg(long, conflicts_with = "finish")]
        new_key_file: Option<PathBuf>,
        /// Phase 2: retire the old key.
        #[arg(long, requires = "old_key_file")]
        finish: bool,
        /// Phase 2: the old key file.
        #[arg(long)]
        old_key_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Classify JSON lines from standard input: {"text": "...", "has_attachment": bool,
    /// "values": [{"kind": "location", "text": "...", "sms_safe": bool}], "sender_name": "..."}
    /// (all but "text" optional). Writes one line per input: {"route": "direct"|"secure",
    /// "reasons": [...]}.
    Classify,
    /// Score the policy on a labelled file of JSON lines ({"text", "expected": "direct"|"secure",
    /// "lang", "note", optional "has_attachment", "values"}): recall on secure, false-secure rate
    /// on direct, overall and per language, then every miss (with its text: use fictional data).
    Eval {
        /// The labelled JSON-lines file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum InboundCommand {
    /// Classify JSON lines from standard input: {"text": "...", "context":
    /// {"reminder_awaiting_answer": bool}} ("context" optional). Writes one line per input:
    /// {"intent": "optout"|"help"|"optin"|"other", "review": bool, "reply":
    /// "confirm"|"cancel_visit"|"reschedule"|"late"|null, "reasons": [...], "urgent": bool,
    /// "crisis": bool, "urgent_reasons": [...]}.
    Classify,
    /// Score the classifier on a labelled file of JSON lines ({"text", "intent", optional
    /// "ambiguous", "context"}): opt-out recall (opt-out or review), false opt-out rate, help and
    /// opt-in accuracy, then the line numbers of the misses. With --urgency, score the urgency
    /// rules instead ({"text", "urgent", optional "lang", "note"}): urgent recall and false
    /// urgent rate, then the misses; exits non-zero below the targets (99%, 15%).
    Eval {
        /// The labelled JSON-lines file.
        file: PathBuf,
        /// Also print the text of each miss (only for fictional data).
        #[arg(long)]
        show_text: bool,
        /// Score the urgency rules (emergency texts) instead of the keyword classifier.
        #[arg(long)]
        urgency: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Print every message in the local outbox (DATA_DIR/outbox), oldest first, as JSON lines.
    List,
}
