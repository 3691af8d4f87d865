//! The local outbox: each "sent" message becomes one sealed file in a directory, written and
//! synced before `send` returns, outside any database transaction, so a crash test can see a
//! message that was sent twice. Messages are sealed (they hold phone numbers, emails and
//! one-time codes); `list` opens them for the demo and for tests.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use salve_core::Sensitive;
use salve_crypto::{FieldAad, SymmetricKey};
use serde::{Deserialize, Serialize};

use crate::{
    Capabilities, Channel, OutgoingMessage, Provider, ProviderError, Reconciliation, SendReceipt,
};

/// Temporary files (records being written) are named `.{final name}.{uuid}.tmp`.
const TEMP_PREFIX: &str = ".";
const TEMP_SUFFIX: &str = ".tmp";

fn is_record_name(name: &str) -> bool {
    name.ends_with(".sealed") && !name.starts_with(TEMP_PREFIX) && !name.ends_with(TEMP_SUFFIX)
}

pub struct LocalOutbox {
    dir: PathBuf,
    key: SymmetricKey,
}

/// A message as the local outbox recorded it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxRecord {
    pub id: uuid::Uuid,
    /// 1 for the first send of this id, 2 for a duplicate, …
    pub attempt: u32,
    pub channel: Channel,
    pub to: String,
    pub subject: Option<String>,
    pub body: String,
    pub sent_at: String,
}

impl LocalOutbox {
    pub fn new(dir: impl Into<PathBuf>, key: SymmetricKey) -> Self {
        Self {
            dir: dir.into(),
            key,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records one send. The sealed record is written to a temporary file in the same
    /// directory and synced, then hard-linked to its final name `{id}.{attempt}.sealed` (an
    /// existing name means an earlier send of this id: the next attempt number is tried), and
    /// the directory is synced. So a final name only ever appears for a complete, durable
    /// record, even if the process is killed mid-write; what a crash can leave behind is a
    /// temporary file, which [`LocalOutbox::list`] and [`Provider::reconcile`] ignore.
    fn write(&self, message: &OutgoingMessage) -> std::io::Result<u32> {
        std::fs::create_dir_all(&self.dir)?;
        let mut attempt = 1;
        loop {
            let name = format!("{}.{attempt}.sealed", message.id);
            let path = self.dir.join(&name);
            let record = OutboxRecord {
                id: message.id,
                attempt,
                channel: message.channel,
                to: message.to.expose().clone(),
                subject: message.subject.clone(),
                body: message.body.expose().clone(),
                sent_at: time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
            };
            let json =
                Sensitive::new(serde_json::to_string(&record).map_err(std::io::Error::other)?);
            let sealed = self.key.seal(
                FieldAad::new("local_outbox", "message", &name),
                json.expose().as_bytes(),
            );
            let temp = self.dir.join(format!(
                "{TEMP_PREFIX}{name}.{}{TEMP_SUFFIX}",
                uuid::Uuid::new_v4()
            ));
            let linked = (|| {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&temp)?;
                file.write_all(&sealed)?;
                file.sync_all()?;
                drop(file);
                std::fs::hard_link(&temp, &path)
            })();
            // The final name (if linked) holds the data now; the temporary name is not needed
            // either way.
            let _ = std::fs::remove_file(&temp);
            match linked {
                Ok(()) => {
                    std::fs::File::open(&self.dir)?.sync_all()?;
                    return Ok(attempt);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Every recorded message, oldest first.
    pub fn list(&self) -> std::io::Result<Vec<OutboxRecord>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Temporary files a killed writer left behind were never linked to a final name:
            // not a send.
            if !is_record_name(&name) {
                continue;
            }
            let sealed = std::fs::read(entry.path())?;
            let json = self
                .key
                .open_string(FieldAad::new("local_outbox", "message", &name), &sealed)
                .map_err(|_| {
                    std::io::Error::other(format!("outbox file {name} does not open with this key"))
                })?;
            out.push(serde_json::from_str(&json).map_err(std::io::Error::other)?);
        }
        out.sort_by(|a: &OutboxRecord, b: &OutboxRecord| {
            a.sent_at.cmp(&b.sent_at).then(a.attempt.cmp(&b.attempt))
        });
        Ok(out)
    }
}

#[async_trait]
impl Provider for LocalOutbox {
    fn name(&self) -> &'static str {
        "local-outbox"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            handles_opt_out_keywords: false,
            can_reconcile: true,
            picks_sender_number: false,
            can_delete_media: false,
        }
    }

    async fn send(&self, message: &OutgoingMessage) -> Result<SendReceipt, ProviderError> {
        let this = LocalOutbox::new(self.dir.clone(), self.key.clone());
        let message = message.clone();
        let id = message.id;
        let attempt = tokio::task::spawn_blocking(move || this.write(&message))
            .await
            .map_err(|e| ProviderError::ambiguous("task", e.to_string()))?
            // The record may or may not have been linked: reconcile looks.
            .map_err(|e| ProviderError::ambiguous("io", e.to_string()))?;
        Ok(SendReceipt {
            provider_id: format!("local-{id}-{attempt}"),
        })
    }

    /// Sent only when the final file of the first attempt exists: it is complete by
    /// construction (see [`LocalOutbox::write`]); a leftover temporary file does not count.
    async fn reconcile(
        &self,
        message: &OutgoingMessage,
        _attempt_started: Option<time::OffsetDateTime>,
    ) -> Reconciliation {
        let first = self.dir.join(format!("{}.1.sealed", message.id));
        match tokio::fs::try_exists(&first).await {
            Ok(true) => Reconciliation::Sent(SendReceipt {
                provider_id: format!("local-{}-1", message.id),
            }),
            Ok(false) => Reconciliation::NotSent,
            Err(_) => Reconciliation::CannotTell,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str) -> OutgoingMessage {
        OutgoingMessage {
            id: uuid::Uuid::new_v4(),
            channel: Channel::Email,
            to: Sensitive::new("officer@example.org".into()),
            subject: Some("Break-glass access".into()),
            body: Sensitive::new(body.into()),
        }
    }

    #[tokio::test]
    async fn sends_are_durable_sealed_and_duplicates_visible() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = LocalOutbox::new(dir.path().join("outbox"), SymmetricKey::generate("k"));
        let m = message("Your code is 123456");
        let first = outbox.send(&m).await.unwrap();
        let again = outbox.send(&m).await.unwrap();
        assert_ne!(first, again);
        let records = outbox.list().unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(
            records[0].id, records[1].id,
            "a second send of one id is recorded, not hidden"
        );
        assert_eq!(records[1].attempt, 2);
        assert_eq!(records[0].body, "Your code is 123456");
        for entry in std::fs::read_dir(outbox.dir()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!bytes.windows(6).any(|w| w == b"123456"), "sealed on disk");
            assert!(!bytes.windows(7).any(|w| w == b"officer"));
        }
        let other_key = LocalOutbox::new(outbox.dir().to_path_buf(), SymmetricKey::generate("k"));
        assert!(other_key.list().is_err());
    }

    #[tokio::test]
    async fn a_leftover_temp_file_is_not_a_send() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = LocalOutbox::new(dir.path().join("outbox"), SymmetricKey::generate("k"));
        let m = message("A secure message is waiting");
        std::fs::create_dir_all(outbox.dir()).unwrap();
        // What a writer killed before its hard link leaves: a partial temporary file.
        let temp = outbox.dir().join(format!(
            "{TEMP_PREFIX}{}.1.sealed.{}{TEMP_SUFFIX}",
            m.id,
            uuid::Uuid::new_v4()
        ));
        std::fs::write(&temp, b"partial").unwrap();
        assert!(
            outbox.list().unwrap().is_empty(),
            "a temp file is not listed"
        );
        assert!(matches!(
            outbox.reconcile(&m, None).await,
            Reconciliation::NotSent
        ));
        // Sending after the crash is the first send, and the temp file stays ignored.
        let receipt = outbox.send(&m).await.unwrap();
        assert_eq!(receipt.provider_id, format!("local-{}-1", m.id));
        let records = outbox.list().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].attempt, 1);
        assert!(matches!(
            outbox.reconcile(&m, None).await,
            Reconciliation::Sent(_)
        ));
        // A successful send leaves no temporary file of its own behind.
        let names: Vec<String> = std::fs::read_dir(outbox.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&format!("{}.1.sealed", m.id)));
    }
}
