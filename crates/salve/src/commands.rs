//! What each command does. Errors are plain sentences for the operator; exit codes are non-zero
//! on any failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use salve_core::audit::{Actor, RequestContext};
use salve_core::permissions::Scope;
use salve_core::{Clock, SystemClock};
use salve_crypto::MasterKey;
use salve_server::{AppState, ServerConfig, TlsFiles};
use salve_store::{Store, StoreOptions};

use crate::cli::{AdminCommand, AuditCommand, Cli, Command, KeysCommand, OutboxCommand, ServeArgs};
use crate::settings::{FileConfig, KeySource, ServeSettings, Settings};

pub async fn run(cli: Cli, matches: clap::ArgMatches) -> anyhow::Result<ExitCode> {
    // Pure computation on stdin or a file: needs no settings, data directory or key.
    let command = match cli.command {
        Command::Policy(cmd) => return crate::policy_cmd::run(&cmd),
        Command::Inbound(cmd) => return crate::inbound_cmd::run(&cmd),
        other => other,
    };
    let file = match &cli.global.config {
        Some(path) => FileConfig::load(path)?,
        None if Path::new("salve.toml").exists() => FileConfig::load(Path::new("salve.toml"))?,
        None => FileConfig::default(),
    };
    let settings = Settings::resolve(&cli.global, &file)?;
    match command {
        Command::Serve(args) => serve(&settings, &args, &file).await,
        Command::Migrate => {
            prepare_data_dir(&settings)?;
            Store::migrate(&store_options(&settings)).await?;
            println!("database is up to date");
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(cmd) => admin(&settings, cmd).await,
        Command::Audit(cmd) => audit(&settings, cmd).await,
        Command::Keys(cmd) => keys(&settings, cmd).await,
        Command::Backup { file } => {
            let store = open_existing(&settings).await?;
            store.backup_to(&file).await?;
            println!("backup written to {}", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore {
            file: Some(file), ..
        } => restore(&settings, &file).await,
        Command::Restore { file: None, .. } => {
            let store = open_existing(&settings).await?;
            let shreds = salve_store::read_shred_list(&settings.shred_list())?;
            let count = store.reapply_shreds(&shreds).await?;
            store.close().await;
            println!("{count} patients from the shred list were shredded again");
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(_) | Command::Inbound(_) => Ok(ExitCode::SUCCESS), // returned above
        Command::Demo { port } => demo(port).await,
        Command::Outbox(OutboxCommand::List) => {
            let store = open_existing(&settings).await?;
            let outbox = local_outbox(&settings, &store).await?;
            for record in outbox.list()? {
                println!("{}", serde_json::to_string(&record)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(args) => {
            let serve = ServeSettings::resolve(&args, &file)?;
            let sub = matches.subcommand_matches("config").unwrap_or(&matches);
            print!(
                "{}",
                crate::settings::describe(&settings, &serve, &file, &matches, sub)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn store_options(settings: &Settings) -> StoreOptions {
    let mut options = StoreOptions::new(settings.database_url.clone());
    options.shred_list = Some(settings.shred_list());
    options
}

/// Creates the data directory (0700) for a SQLite database.
fn prepare_data_dir(settings: &Settings) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !settings.data_dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&settings.data_dir)
            .with_context(|| {
                format!(
                    "cannot create the data directory {}",
                    settings.data_dir.display()
                )
            })?;
    }
    Ok(())
}

/// The master key: from the environment, or a file (created on first use for a new database).
async fn master_key(settings: &Settings, options: &StoreOptions) -> anyhow::Result<MasterKey> {
    match &settings.key {
        KeySource::Env(secret) => Ok(MasterKey::from_base64("SALVE_MASTER_KEY", secret.expose())?),
        KeySource::File { path } => {
            if path.exists() {
                return Ok(MasterKey::load_file(path)?);
            }
            if Store::is_initialized(options).await? {
                bail!(
                    "the master key file {} is missing, and this database already holds encrypted data; \
                     restore the key this database was created with (--master-key-file)",
                    path.display()
                );
            }
            let key = MasterKey::create_file(path)?;
            eprintln!(
                "created a new master key at {} (mode 0600); back it up separately from the database",
                path.display()
            );
            Ok(key)
        }
    }
}

/// Opens the database, creating and migrating it when needed.
async fn open_or_create(settings: &Settings) -> anyhow::Result<Store> {
    prepare_data_dir(settings)?;
    let options = store_options(settings);
    Store::migrate(&options).await?;
    let key = master_key(settings, &options).await?;
    Ok(Store::open(&options, key, Arc::new(SystemClock)).await?)
}

/// Opens a database that must already exist.
async fn open_existing(settings: &Settings) -> anyhow::Result<Store> {
    if let Some(path) = settings.sqlite_path()
        && !path.exists()
    {
        bail!(
            "no database at {}; check --data-dir / --database-url (or run `salve migrate`)",
            path.display()
        );
    }
    let options = store_options(settings);
    let key = match &settings.key {
        KeySource::Env(secret) => MasterKey::from_base64("SALVE_MASTER_KEY", secret.expose())?,
        KeySource::File { path } => MasterKey::load_file(path)?,
    };
    Ok(Store::open(&options, key, Arc::new(SystemClock)).await?)
}

/// The local outbox in the data directory, sealed with the system key.
async fn local_outbox(
    settings: &Settings,
    store: &Store,
) -> anyhow::Result<salve_channels::LocalOutbox> {
    Ok(salve_channels::LocalOutbox::new(
        settings.data_dir.join("outbox"),
        store.outbox_key().await?,
    ))
}

fn inside(path: &Path, dir: &Path) -> bool {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    abs(path).starts_with(abs(dir))
}

async fn serve(
    settings: &Settings,
    args: &ServeArgs,
    file: &FileConfig,
) -> anyhow::Result<ExitCode> {
    let serve = ServeSettings::resolve(args, file)?;
    let config = server_config(&serve);
    config.check()?;
    if let KeySource::File { path } = &settings.key
        && inside(path, &settings.data_dir)
    {
        tracing::warn!(
            "the master key is inside the data directory: anyone with a copy of the directory can read the data; \
             keep the key elsewhere in production (--master-key-file)"
        );
    }
    if inside(&serve.audit_anchor, &settings.data_dir) {
        tracing::warn!(
            "the audit anchor file is inside the data directory; keep it elsewhere so that deleting audit rows \
             together with the anchor is not one step (--audit-anchor)"
        );
    }
    let store = Arc::new(open_or_create(settings).await?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let outbox = local_outbox(settings, &store).await?;
    let state = AppState::new(store.clone(), clock, config).with_local_outbox(outbox);
    let scheme = if serve.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    salve_server::serve(state, shutdown_signal(), |addr| {
        tracing::info!("Salve is listening on {scheme}://{addr}");
    })
    .await?;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

fn server_config(serve: &ServeSettings) -> ServerConfig {
    let mut config = ServerConfig::local(serve.listen);
    config.public_url = serve.public_url.clone();
    config.trusted_proxies = serve.trusted_proxies.clone();
    config.metrics_listen = serve.metrics_listen;
    config.metrics_token = serve
        .metrics_token
        .as_ref()
        .map(|t| salve_server::MetricsToken(t.expose().to_owned()));
    config.audit_anchor = Some(serve.audit_anchor.clone());
    config.checkpoint_interval = serve.checkpoint_interval;
    config.quiet_hours = serve.quiet_hours;
    config.tls = match (&serve.tls_cert, &serve.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    config.hl7 = serve.hl7.clone();
    config
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when
/// the future is first polled: the server only polls it once it is serving, after printing
/// its listening line, and a SIGTERM in between would otherwise kill the process outright
/// (no draining, no final checkpoint).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate()).ok();
    let int = signal(SignalKind::interrupt()).ok();
    async move {
        async fn recv(s: Option<tokio::signal::unix::Signal>) {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            () = recv(term) => {},
            () = recv(int) => {},
        }
    }
}

fn parse_practice(raw: &str) -> anyhow::Result<salve_core::PracticeId> {
    raw.parse().map_err(|_| {
        anyhow::anyhow!("--practice must be a practice id (see `salve admin list-practices`)")
    })
}

async fn admin(settings: &Settings, cmd: AdminCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AdminCommand::CreatePractice {
            name,
            phone_region,
            time_zone,
        } => {
            let store = open_or_create(settings).await?;
            let practice = store
                .create_practice(Actor::Cli, &name, &phone_region, &time_zone)
                .await?;
            println!("{}", practice.id);
        }
        AdminCommand::ListPractices => {
            let store = open_existing(settings).await?;
            for p in store.list_practices().await? {
                println!("{}\t{}\t{}\t{}", p.id, p.phone_region, p.time_zone, p.name);
            }
        }
        AdminCommand::CreateToken {
            practice,
            scope,
            label,
        } => {
            let practice = parse_practice(&practice)?;
            let scopes = Scope::parse_list(&scope).map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
            let store = open_existing(settings).await?;
            let token = salve_crypto::token::mint("salve");
            store
                .create_token(Actor::Cli, practice, &scopes, &label, &token.hash)
                .await
                .map_err(|e| match e {
                    salve_store::StoreError::NotFound => {
                        anyhow::anyhow!("no practice with that id")
                    }
                    other => other.into(),
                })?;
            // Shown once; only the hash is stored.
            println!("{}", token.secret.as_str());
        }
        AdminCommand::CreateUser {
            practice,
            email,
            name,
            role,
            privacy_officer,
            password_file,
        } => {
            let practice = parse_practice(&practice)?;
            let role = salve_core::permissions::Role::parse(&role)
                .context("--role must be admin, clinician, staff or auditor")?;
            let email = salve_core::validation::email("--email", &email)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let name = salve_core::validation::name("--name", &name)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let password = match password_file {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                None => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("cannot read the password from standard input")?;
                    line
                }
            };
            let password =
                salve_core::Sensitive::new(password.trim_end_matches(['\r', '\n']).to_owned());
            let store = open_existing(settings).await?;
            let practice_name = store
                .practice(practice)
                .await
                .map_err(|e| match e {
                    salve_store::StoreError::NotFound => {
                        anyhow::anyhow!("no practice with that id")
                    }
                    other => other.into(),
                })?
                .name;
            salve_core::password_policy::check(
                password.expose(),
                &salve_core::password_policy::PasswordContext {
                    email: email.expose(),
                    practice_name: &practice_name,
                },
            )
            .map_err(|problem| anyhow::anyhow!("password refused: {problem}"))?;
            let normalized = salve_core::password_policy::normalize(password.expose());
            let hash = tokio::task::spawn_blocking(move || {
                salve_crypto::password::hash_password(normalized.expose())
            })
            .await?;
            let id = store
                .create_user(
                    &Actor::Cli,
                    &RequestContext::default(),
                    practice,
                    &email,
                    &name,
                    Some(hash),
                    role,
                    privacy_officer,
                )
                .await?;
            println!("{id}");
        }
        AdminCommand::ResetMfa { email } => {
            let store = open_existing(settings).await?;
            let user = store
                .user_for_sign_in(&email)
                .await?
                .context("no account with that email")?;
            store
                .reset_mfa(&Actor::Cli, &RequestContext::default(), user.id)
                .await?;
            println!("second factor removed; the user enrols again at the next sign-in");
        }
        AdminCommand::DisableUser { email } => {
            let store = open_existing(settings).await?;
            let user = store
                .user_for_sign_in(&email)
                .await?
                .context("no account with that email")?;
            store
                .disable_user(&Actor::Cli, &RequestContext::default(), user.id)
                .await?;
            println!("account disabled; its sessions have ended");
        }
        AdminCommand::AddProvider {
            practice,
            kind,
            label,
            credentials_file,
            numbers,
            agreement,
            public_url,
        } => {
            use salve_core::vendors::ProviderKind;
            let practice = parse_practice(&practice)?;
            let kind = ProviderKind::parse(&kind)
                .context("--kind must be twilio, telnyx, smtp or local_outbox")?;
            let credentials: serde_json::Value = match &credentials_file {
                Some(path) => {
                    let raw = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    serde_json::from_str(&raw)
                        .with_context(|| format!("{} is not JSON", path.display()))?
                }
                None => serde_json::json!({}),
            };
            let credentials =
                salve_server::channels::check_credentials(kind, &credentials, &numbers).map_err(
                    |errors| {
                        anyhow::anyhow!("invalid provider settings: {}", field_errors(&errors))
                    },
                )?;
            let store = open_existing(settings).await?;
            let terms = agreement_terms(&agreement, &store, practice).await?;
            let agreement_id = match &terms {
                Some(terms) => Some(
                    store
                        .record_agreement(practice, Actor::Cli, &RequestContext::default(), terms)
                        .await?,
                ),
                None => None,
            };
            let id = store
                .add_provider(
                    practice,
                    Actor::Cli,
                    &RequestContext::default(),
                    &salve_store::NewProvider {
                        kind,
                        label,
                        credentials: salve_core::Sensitive::new(credentials),
                        numbers,
                        agreement: agreement_id,
                    },
                )
                .await?;
            println!("provider {id} enabled");
            let base = public_url.unwrap_or_else(|| "https://YOUR-PUBLIC-URL".into());
            for url in salve_server::channels::webhook_urls(&base, kind, id) {
                println!("configure at the vendor: {url}");
            }
        }
        AdminCommand::RenewAgreement {
            practice,
            provider,
            agreement,
        } => {
            let practice = parse_practice(&practice)?;
            let provider = provider
                .parse()
                .map_err(|_| anyhow::anyhow!("--provider must be a provider id"))?;
            let store = open_existing(settings).await?;
            let terms = agreement_terms(&agreement, &store, practice)
                .await?
                .context("give the renewed agreement: --baa-vendor with --baa-signed-on and --baa-document, or --self-operated")?;
            let id = store
                .renew_agreement(
                    practice,
                    provider,
                    Actor::Cli,
                    &RequestContext::default(),
                    &terms,
                )
                .await
                .map_err(|e| match e {
                    salve_store::StoreError::NotFound => {
                        anyhow::anyhow!("no such provider in this practice")
                    }
                    other => other.into(),
                })?;
            println!("agreement {id} recorded; held messages are released");
        }
        AdminCommand::ShredPatient {
            practice,
            patient,
            confirm,
        } => {
            if !confirm {
                bail!(
                    "shredding is irreversible: add --confirm once the retention period has ended"
                );
            }
            let practice = parse_practice(&practice)?;
            let patient = patient
                .parse()
                .map_err(|_| anyhow::anyhow!("--patient must be a patient id"))?;
            let store = open_existing(settings).await?;
            store
                .shred_patient(
                    practice,
                    &salve_core::permissions::Principal::Operator,
                    &RequestContext::default(),
                    patient,
                )
                .await?;
            println!("patient {patient} shredded; their content can no longer be decrypted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn field_errors(errors: &[salve_core::FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.expected))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The agreement given on the command line, checked; `None` when none was given.
async fn agreement_terms(
    args: &crate::cli::AgreementArgs,
    store: &Store,
    practice: salve_core::PracticeId,
) -> anyhow::Result<Option<salve_core::vendors::AgreementTerms>> {
    use salve_core::vendors::{AgreementBasis, AgreementTerms};
    let date = |flag: &str, raw: &str| -> anyhow::Result<jiff::civil::Date> {
        raw.parse()
            .map_err(|_| anyhow::anyhow!("{flag} must be a date as YYYY-MM-DD"))
    };
    let today = store.practice_today(practice).await?;
    let terms = if let Some(vendor) = &args.baa_vendor {
        let signed_on = date(
            "--baa-signed-on",
            args.baa_signed_on
                .as_deref()
                .context("--baa-signed-on is required with --baa-vendor")?,
        )?;
        let expires_on = args
            .baa_expires_on
            .as_deref()
            .map(|raw| date("--baa-expires-on", raw))
            .transpose()?;
        let document = args
            .baa_document
            .as_ref()
            .context("--baa-document (the signed agreement) is required with --baa-vendor")?;
        let bytes = std::fs::read(document)
            .with_context(|| format!("cannot read {}", document.display()))?;
        use sha2::Digest;
        AgreementTerms {
            vendor: vendor.clone(),
            basis: AgreementBasis::Baa {
                signed_on,
                expires_on,
                document_sha256: sha2::Sha256::digest(&bytes).into(),
            },
        }
    } else if let Some(service) = &args.self_operated {
        AgreementTerms {
            vendor: service.clone(),
            basis: AgreementBasis::SelfOperated { attested_on: today },
        }
    } else {
        return Ok(None);
    };
    terms
        .validate(today)
        .map_err(|errors| anyhow::anyhow!("invalid agreement: {}", field_errors(&errors)))?;
    Ok(Some(terms))
}

async fn audit(settings: &Settings, cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    let store = open_existing(settings).await?;
    match cmd {
        AuditCommand::Verify { anchor } => {
            let anchored = match &anchor {
                Some(path) => Some(salve_store::read_anchor(path)?),
                None => None,
            };
            let report = store.verify_audit(anchored.as_deref()).await?;
            if !report.ok() {
                for problem in &report.problems {
                    println!("audit verify: FAILED: {problem}");
                }
                return Ok(ExitCode::FAILURE);
            }
            let mut line = format!(
                "audit verify: OK: {} chains, {} rows, {} checkpoints with valid signatures",
                report.chains, report.rows, report.checkpoints
            );
            if anchor.is_some() {
                let after: i64 = report.rows_after_anchor.values().sum();
                line.push_str(&format!(
                    "; {} anchored checkpoints match; {after} rows follow the last anchored checkpoint",
                    report.anchored_checkpoints
                ));
            } else {
                line.push_str("; no anchor file given: deletion of the newest rows together with their checkpoints cannot be detected");
            }
            println!("{line}");
        }
        AuditCommand::PublicKey => {
            for (scope, (key_id, public)) in store.audit_public_keys().await? {
                println!("{scope}\t{key_id}\t{}", hex_encode(&public));
            }
        }
        AuditCommand::Checkpoint { anchor } => {
            let written = store.write_checkpoints(anchor.as_deref()).await?;
            println!("{} checkpoints written", written.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn keys(settings: &Settings, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let KeysCommand::Rotate {
        new_key_file,
        finish,
        old_key_file,
    } = cmd;
    let store = open_existing(settings).await?;
    if finish {
        let old_path = old_key_file.context("--finish needs --old-key-file")?;
        let old = MasterKey::load_file(&old_path)?;
        let caught_up = store.finish_master_rotation(&old).await?;
        println!(
            "rotation finished: master key {} retired; {} keys created during the rotation were re-wrapped",
            old.id(),
            caught_up
        );
    } else {
        let path = new_key_file
            .context("give --new-key-file (phase 1) or --finish --old-key-file (phase 2)")?;
        let next = if path.exists() {
            MasterKey::load_file(&path)?
        } else {
            MasterKey::create_file(&path)?
        };
        let count = store.begin_master_rotation(&next).await?;
        println!(
            "rotation phase 1 done: {count} keys are now also wrapped under {}. Restart every server with \
             --master-key-file {}, then run `salve keys rotate --finish --old-key-file OLD` with the new key.",
            next.id(),
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn restore(settings: &Settings, backup: &Path) -> anyhow::Result<ExitCode> {
    let Some(db_path) = settings.sqlite_path() else {
        bail!(
            "`salve restore FILE` restores SQLite backups; for PostgreSQL use pg_restore, then `salve restore --reapply-shreds`"
        );
    };
    if !backup.exists() {
        bail!("no backup at {}", backup.display());
    }
    // Shreds recorded anywhere we can see: the list outside the database and the current database.
    let mut shreds = salve_store::read_shred_list(&settings.shred_list())?;
    if db_path.exists()
        && let Ok(current) = open_existing(settings).await
    {
        shreds.extend(current.shredded_patients().await?);
        current.close().await;
    }
    prepare_data_dir(settings)?;
    let staging = db_path.with_extension("db.restoring");
    std::fs::copy(backup, &staging).with_context(|| format!("cannot copy {}", backup.display()))?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", db_path.display()));
        if side.exists() {
            std::fs::remove_file(&side)
                .with_context(|| format!("cannot remove {}", side.display()))?;
        }
    }
    std::fs::rename(&staging, &db_path)
        .with_context(|| format!("cannot replace {}", db_path.display()))?;
    let store = open_existing(settings).await?;
    let reshredded = store.reapply_shreds(&shreds).await?;
    store.close().await;
    println!(
        "restored {} from {}; {reshredded} patients shredded since the backup were shredded again",
        db_path.display(),
        backup.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn demo(port: Option<u16>) -> anyhow::Result<ExitCode> {
    let dir = tempfile::Builder::new().prefix("salve-demo-").tempdir()?;
    let settings = Settings {
        data_dir: dir.path().join("data"),
        database_url: format!("sqlite://{}", dir.path().join("data/salve.db").display()),
        key: KeySource::File {
            path: dir.path().join("data/master.key"),
        },
    };
    let store = Arc::new(open_or_create(&settings).await?);

    let wanted = port.unwrap_or(8080);
    let listen: std::net::SocketAddr = ([127, 0, 0, 1], wanted).into();
    let listen = match std::net::TcpListener::bind(listen) {
        Ok(l) => l.local_addr()?,
        Err(_) => std::net::TcpListener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?
            .local_addr()?,
    };
    let mut config = ServerConfig::local(listen);
    config.audit_anchor = Some(dir.path().join("audit-anchor.jsonl"));
    config.checkpoint_interval = std::time::Duration::from_secs(30);
    // A demo shows its texts at once, whatever the hour; `serve` keeps quiet hours.
    config.quiet_hours = None;
    let outbox = local_outbox(&settings, &store).await?;
    let state =
        AppState::new(store.clone(), Arc::new(SystemClock), config).with_local_outbox(outbox);
    eprintln!("setting up the demo practice (staff, patients, conversations)…");
    let demo = crate::demo::seed(&state).await?;
    let data_dir = dir.path().display().to_string();
    salve_server::serve(state, shutdown_signal(), move |addr| {
        let url = format!("http://localhost:{}", addr.port());
        println!("{}", crate::demo::describe(&demo, &url, &data_dir));
    })
    .await?;
    store.close().await;
    drop(dir);
    Ok(ExitCode::SUCCESS)
}
