//! Configuration: defaults < `salve.toml` < `SALVE_*` environment < command-line flags.
//! Secrets never print: `Secret` redacts in both `Debug` and `Display`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use ipnet::IpNet;
use serde::Deserialize;

use crate::cli::GlobalArgs;
use crate::cli::ServeArgs;

/// A secret value. Prints as `[redacted]` whichever way it is formatted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.0.zeroize();
    }
}

/// The optional configuration file. Secrets may only be referenced by file path here.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub master_key_file: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub trusted_proxies: Option<Vec<IpNet>>,
    pub metrics_listen: Option<SocketAddr>,
    pub metrics_token_file: Option<PathBuf>,
    pub audit_anchor: Option<PathBuf>,
    pub checkpoint_interval_secs: Option<u64>,
    pub quiet_hours: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The HL7 v2 appointment feed (file only: its sources are a list).
    pub hl7: Option<Hl7File>,
}

/// `[hl7]`: the MLLP listener of the HL7 v2 appointment feed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hl7File {
    pub listen: SocketAddr,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub max_message_bytes: Option<usize>,
    pub read_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
    #[serde(default)]
    pub sources: Vec<Hl7SourceFile>,
}

/// `[[hl7.sources]]`: who may send, from where, for which practice.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hl7SourceFile {
    /// The practice's id (`salve admin list-practices`).
    pub practice: String,
    /// MSH-4.1 of the sender's messages.
    pub sending_facility: String,
    /// Addresses or networks the sender connects from.
    pub addresses: Vec<IpNet>,
}

impl Hl7File {
    pub fn resolve(&self) -> anyhow::Result<salve_server::Hl7Config> {
        let mut sources = Vec::with_capacity(self.sources.len());
        for s in &self.sources {
            let practice: salve_core::PracticeId = s
                .practice
                .parse()
                .map_err(|_| anyhow::anyhow!("hl7.sources: practice must be a practice id"))?;
            sources.push(salve_server::Hl7Source {
                practice,
                sending_facility: s.sending_facility.trim().to_owned(),
                addresses: s.addresses.clone(),
            });
        }
        let mut config = salve_server::Hl7Config::new(self.listen, sources);
        config.tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(salve_server::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => bail!("hl7: set both tls_cert and tls_key, or neither"),
        };
        if let Some(n) = self.max_message_bytes {
            config.max_message_bytes = n.clamp(1024, 16 * 1024 * 1024);
        }
        if let Some(n) = self.read_timeout_secs {
            config.read_timeout = Duration::from_secs(n.clamp(1, 600));
        }
        if let Some(n) = self.idle_timeout_secs {
            config.idle_timeout = Duration::from_secs(n.clamp(1, 24 * 3600));
        }
        if let Some(n) = self.max_connections {
            config.max_connections = n.clamp(1, 1024);
        }
        Ok(config)
    }
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "configuration file {} is invalid: {}",
                path.display(),
                e.message()
            )
        })
    }
}

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    File { path: PathBuf },
    Env(Secret),
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub key: KeySource,
}

#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub listen: SocketAddr,
    pub public_url: Option<String>,
    pub trusted_proxies: Vec<IpNet>,
    pub metrics_listen: Option<SocketAddr>,
    pub metrics_token: Option<Secret>,
    pub audit_anchor: PathBuf,
    pub checkpoint_interval: Duration,
    /// `None`: quiet hours are off.
    pub quiet_hours: Option<salve_core::delivery::QuietHours>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub hl7: Option<salve_server::Hl7Config>,
}

pub const DEFAULT_DATA_DIR: &str = "./salve-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ANCHOR: &str = "./salve-audit-anchor.jsonl";
pub const DEFAULT_CHECKPOINT_SECS: u64 = 60;

/// Every `SALVE_*` variable Salve reads; anything else with the prefix gets a warning.
pub const KNOWN_ENV: &[&str] = &[
    "SALVE_CONFIG",
    "SALVE_DATA_DIR",
    "SALVE_DATABASE_URL",
    "SALVE_MASTER_KEY",
    "SALVE_MASTER_KEY_FILE",
    "SALVE_LISTEN",
    "SALVE_PUBLIC_URL",
    "SALVE_TRUSTED_PROXIES",
    "SALVE_METRICS_LISTEN",
    "SALVE_METRICS_TOKEN",
    "SALVE_METRICS_TOKEN_FILE",
    "SALVE_AUDIT_ANCHOR",
    "SALVE_CHECKPOINT_INTERVAL_SECS",
    "SALVE_TLS_CERT",
    "SALVE_TLS_KEY",
    "SALVE_LOG",
    "SALVE_LOG_FORMAT",
    "SALVE_DEMO_PORT",
];

/// Names of unknown `SALVE_*` variables, each with the closest known name when one is near.
pub fn unknown_env_vars(names: impl Iterator<Item = String>) -> Vec<String> {
    names
        .filter(|n| n.starts_with("SALVE_") && !n.starts_with("SALVE_TEST_"))
        .filter(|n| !KNOWN_ENV.contains(&n.as_str()))
        .map(|n| {
            let best = KNOWN_ENV
                .iter()
                .map(|k| (strsim_distance(&n, k), *k))
                .min()
                .filter(|(d, _)| *d <= 3);
            match best {
                Some((_, k)) => format!("{n} (did you mean {k}?)"),
                None => n,
            }
        })
        .collect()
}

/// Levenshtein distance; names are short, so the simple quadratic form is fine.
fn strsim_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn read_secret_file(path: &Path, what: &str) -> anyhow::Result<Secret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    let value = text.trim().to_owned();
    if value.is_empty() {
        bail!("the {what} file {} is empty", path.display());
    }
    Ok(Secret::new(value))
}

impl Settings {
    pub fn resolve(global: &GlobalArgs, file: &FileConfig) -> anyhow::Result<Self> {
        let data_dir = global
            .data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let database_url = global
            .database_url
            .clone()
            .or_else(|| file.database_url.clone())
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("salve.db").display()));
        let key = if let Some(path) = &global.master_key_file {
            KeySource::File { path: path.clone() }
        } else if let Some(value) = &global.master_key {
            KeySource::Env(Secret::new(value.clone()))
        } else if let Some(path) = &file.master_key_file {
            KeySource::File { path: path.clone() }
        } else {
            KeySource::File {
                path: data_dir.join("master.key"),
            }
        };
        Ok(Self {
            data_dir,
            database_url,
            key,
        })
    }

    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let rest = self.database_url.strip_prefix("sqlite:")?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        Some(PathBuf::from(rest.split('?').next().unwrap_or(rest)))
    }

    pub fn shred_list(&self) -> PathBuf {
        self.data_dir.join("shred-list.jsonl")
    }
}

impl ServeSettings {
    pub fn resolve(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<Self> {
        let listen = match (args.listen, file.listen) {
            (Some(l), _) | (None, Some(l)) => l,
            (None, None) => DEFAULT_LISTEN.parse()?,
        };
        let metrics_token = match (
            &args.metrics_token,
            &args.metrics_token_file,
            &file.metrics_token_file,
        ) {
            (Some(t), _, _) => Some(Secret::new(t.clone())),
            (None, Some(p), _) | (None, None, Some(p)) => {
                Some(read_secret_file(p, "metrics token")?)
            }
            (None, None, None) => None,
        };
        if let Some(t) = &metrics_token
            && t.expose().len() < 16
        {
            bail!("the metrics token must be at least 16 characters");
        }
        Ok(Self {
            listen,
            public_url: args.public_url.clone().or_else(|| file.public_url.clone()),
            trusted_proxies: args
                .trusted_proxies
                .clone()
                .or_else(|| file.trusted_proxies.clone())
                .unwrap_or_default(),
            metrics_listen: args.metrics_listen.or(file.metrics_listen),
            metrics_token,
            audit_anchor: args
                .audit_anchor
                .clone()
                .or_else(|| file.audit_anchor.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_ANCHOR)),
            checkpoint_interval: Duration::from_secs(
                args.checkpoint_interval_secs
                    .or(file.checkpoint_interval_secs)
                    .unwrap_or(DEFAULT_CHECKPOINT_SECS)
                    .max(1),
            ),
            quiet_hours: match args.quiet_hours.as_deref().or(file.quiet_hours.as_deref()) {
                None => Some(salve_core::delivery::QuietHours::default()),
                Some(raw) => salve_core::delivery::QuietHours::parse_setting(raw)
                    .map_err(|e| anyhow::anyhow!("quiet_hours: {e}"))?,
            },
            tls_cert: args.tls_cert.clone().or_else(|| file.tls_cert.clone()),
            tls_key: args.tls_key.clone().or_else(|| file.tls_key.clone()),
            hl7: file.hl7.as_ref().map(Hl7File::resolve).transpose()?,
        })
    }
}

/// Where a setting's value came from.
fn origin(matches: &clap::ArgMatches, id: &str, in_file: bool) -> &'static str {
    use clap::parser::ValueSource;
    match matches.value_source(id) {
        Some(ValueSource::CommandLine) => "flag",
        Some(ValueSource::EnvVariable) => "env",
        _ if in_file => "file",
        _ => "default",
    }
}

/// Hides a password in a database URL.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    match (rest.find('@'), rest.find(':')) {
        (Some(at), Some(colon)) if colon < at => {
            format!(
                "{}{}:[redacted]{}",
                &url[..scheme_end],
                &rest[..colon],
                &rest[at..]
            )
        }
        _ => url.to_owned(),
    }
}

/// The effective settings, one per line: `name = value  (origin)`.
pub fn describe(
    settings: &Settings,
    serve: &ServeSettings,
    file: &FileConfig,
    global: &clap::ArgMatches,
    sub: &clap::ArgMatches,
) -> String {
    let mut out = String::new();
    let mut line = |name: &str, value: String, origin: &str| {
        out.push_str(&format!("{name} = {value}  ({origin})\n"));
    };
    line(
        "data_dir",
        settings.data_dir.display().to_string(),
        origin(global, "data_dir", file.data_dir.is_some()),
    );
    line(
        "database_url",
        redact_url(&settings.database_url),
        origin(global, "database_url", file.database_url.is_some()),
    );
    let key = match &settings.key {
        KeySource::File { path } => format!("file {}", path.display()),
        KeySource::Env(secret) => format!("SALVE_MASTER_KEY {secret}"),
    };
    let key_origin = match origin(global, "master_key_file", file.master_key_file.is_some()) {
        "default" => origin(global, "master_key", false),
        other => other,
    };
    line("master_key", key, key_origin);
    line(
        "listen",
        serve.listen.to_string(),
        origin(sub, "listen", file.listen.is_some()),
    );
    line(
        "public_url",
        serve.public_url.clone().unwrap_or_else(|| "(none)".into()),
        origin(sub, "public_url", file.public_url.is_some()),
    );
    line(
        "trusted_proxies",
        serve
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(","),
        origin(sub, "trusted_proxies", file.trusted_proxies.is_some()),
    );
    line(
        "metrics_listen",
        serve
            .metrics_listen
            .map(|a| a.to_string())
            .unwrap_or_else(|| "(none)".into()),
        origin(sub, "metrics_listen", file.metrics_listen.is_some()),
    );
    line(
        "metrics_token",
        serve
            .metrics_token
            .as_ref()
            .map(|t| t.to_string())
            .unwrap_or_else(|| "(none)".into()),
        match origin(sub, "metrics_token", false) {
            "default" => origin(sub, "metrics_token_file", file.metrics_token_file.is_some()),
            other => other,
        },
    );
    line(
        "audit_anchor",
        serve.audit_anchor.display().to_string(),
        origin(sub, "audit_anchor", file.audit_anchor.is_some()),
    );
    line(
        "checkpoint_interval_secs",
        serve.checkpoint_interval.as_secs().to_string(),
        origin(
            sub,
            "checkpoint_interval_secs",
            file.checkpoint_interval_secs.is_some(),
        ),
    );
    line(
        "quiet_hours",
        serve
            .quiet_hours
            .map(|q| q.to_string())
            .unwrap_or_else(|| "off".into()),
        origin(sub, "quiet_hours", file.quiet_hours.is_some()),
    );
    line(
        "tls_cert",
        serve
            .tls_cert
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(none)".into()),
        origin(sub, "tls_cert", file.tls_cert.is_some()),
    );
    match &serve.hl7 {
        None => line("hl7", "off".into(), "default"),
        Some(h) => {
            line("hl7.listen", h.listen.to_string(), "file");
            line(
                "hl7.tls",
                if h.tls.is_some() { "on" } else { "off" }.into(),
                "file",
            );
            for s in &h.sources {
                let addresses: Vec<String> = s.addresses.iter().map(|n| n.to_string()).collect();
                line(
                    "hl7.source",
                    format!(
                        "{} from {} for practice {}",
                        s.sending_facility,
                        addresses.join(","),
                        s.practice
                    ),
                    "file",
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_passwords_are_hidden() {
        assert_eq!(
            super::redact_url("postgres://salve:pw@db.internal/salve"),
            "postgres://salve:[redacted]@db.internal/salve"
        );
        assert_eq!(
            super::redact_url("postgres://salve@db/salve"),
            "postgres://salve@db/salve"
        );
        assert_eq!(
            super::redact_url("sqlite://x/salve.db"),
            "sqlite://x/salve.db"
        );
    }

    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug_and_display() {
        let s = Secret::new("hunter2-but-longer".into());
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{s:?}"), "[redacted]");
        let settings = Settings {
            data_dir: "d".into(),
            database_url: "sqlite://d/salve.db".into(),
            key: KeySource::Env(Secret::new("c2VjcmV0LWtleS1ieXRlcw==".into())),
        };
        assert!(!format!("{settings:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn misspelled_variables_are_named_with_a_suggestion() {
        let warnings = unknown_env_vars(
            [
                "SALVE_LISTN",
                "SALVE_LISTEN",
                "SALVE_TEST_POSTGRES_URL",
                "PATH",
                "SALVE_ZZZZZZZZZZZZ",
            ]
            .into_iter()
            .map(String::from),
        );
        assert_eq!(
            warnings,
            [
                "SALVE_LISTN (did you mean SALVE_LISTEN?)",
                "SALVE_ZZZZZZZZZZZZ"
            ]
        );
    }

    #[test]
    fn config_files_reject_unknown_keys_and_inline_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("salve.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nmetrics_token = \"x\"\n",
        )
        .unwrap();
        let err = FileConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\n").unwrap();
        assert_eq!(
            FileConfig::load(&path).unwrap().listen,
            Some("127.0.0.1:9000".parse().unwrap())
        );
    }

    #[test]
    fn the_hl7_table_maps_sources_to_practices() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("salve.toml");
        let practice = salve_core::PracticeId::new();
        std::fs::write(
            &path,
            format!(
                "[hl7]\nlisten = \"127.0.0.1:2575\"\nread_timeout_secs = 10\n\n\
                 [[hl7.sources]]\npractice = \"{practice}\"\nsending_facility = \"LAKESIDE\"\n\
                 addresses = [\"10.1.2.3/32\", \"192.168.0.0/24\"]\n"
            ),
        )
        .unwrap();
        let file = FileConfig::load(&path).unwrap();
        let hl7 = file.hl7.as_ref().unwrap().resolve().unwrap();
        assert_eq!(hl7.read_timeout, Duration::from_secs(10));
        assert_eq!(
            hl7.practice_for("10.1.2.3".parse().unwrap(), "LAKESIDE"),
            Some(practice)
        );
        assert!(hl7.tls.is_none());
        // Half a TLS pair, or a practice that is not an id, is refused.
        std::fs::write(
            &path,
            "[hl7]\nlisten = \"127.0.0.1:2575\"\ntls_cert = \"c.pem\"\n",
        )
        .unwrap();
        assert!(
            FileConfig::load(&path)
                .unwrap()
                .hl7
                .unwrap()
                .resolve()
                .is_err()
        );
        std::fs::write(
            &path,
            "[hl7]\nlisten = \"127.0.0.1:2575\"\n[[hl7.sources]]\npractice = \"Lakeside\"\n\
             sending_facility = \"X\"\naddresses = [\"10.0.0.1/32\"]\n",
        )
        .unwrap();
        assert!(
            FileConfig::load(&path)
                .unwrap()
                .hl7
                .unwrap()
                .resolve()
                .is_err()
        );
    }

    #[test]
    fn sqlite_paths_come_from_urls() {
        let s = Settings {
            data_dir: "d".into(),
            database_url: "sqlite:///var/lib/salve/salve.db?mode=rwc".into(),
            key: KeySource::File { path: "k".into() },
        };
        assert_eq!(
            s.sqlite_path().unwrap(),
            PathBuf::from("/var/lib/salve/salve.db")
        );
    }
}
