//! Audit rows: the fields a row's hash covers, context sealing, signed checkpoints with an
//! anchor file outside the database, and offline verification of every chain.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use salve_core::audit::{ChainScope, RequestContext};
use salve_crypto::audit::{GENESIS, chain_hash, checkpoint_message, verify_signature};
use salve_crypto::{FieldAad, SymmetricKey};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{Result, Store, StoreError};

pub(crate) fn context_aad_row(scope: &str, seq: i64) -> String {
    format!("{scope}/{seq}")
}

#[derive(Serialize, Deserialize)]
struct SealedContext {
    ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    reason: Option<String>,
}

pub(crate) fn seal_context(key: &SymmetricKey, row: &str, ctx: &RequestContext) -> Option<Vec<u8>> {
    if ctx == &RequestContext::default() {
        return None;
    }
    let json = serde_json::to_vec(&SealedContext {
        ip: ctx.ip.clone(),
        user_agent: ctx.user_agent.clone(),
        request_id: ctx.request_id.clone(),
        reason: ctx.reason.clone(),
    })
    .ok()?;
    Some(key.seal(FieldAad::new("audit_events", "context", row), &json))
}

/// The exact fields, in order, that a row's hash covers. Used by the writer and the verifier.
#[allow(clippy::too_many_arguments)]
pub(crate) fn row_hash_fields<'a>(
    scope: &'a str,
    seq: i64,
    occurred_at: i64,
    actor_kind: &'a str,
    actor_id: &'a str,
    action: &'a str,
    targets: &'a str,
    outcome: &'a str,
    context: Option<&'a [u8]>,
    context_key_id: Option<&'a str>,
) -> Vec<Vec<u8>> {
    vec![
        scope.as_bytes().to_vec(),
        seq.to_be_bytes().to_vec(),
        occurred_at.to_be_bytes().to_vec(),
        actor_kind.as_bytes().to_vec(),
        actor_id.as_bytes().to_vec(),
        action.as_bytes().to_vec(),
        targets.as_bytes().to_vec(),
        outcome.as_bytes().to_vec(),
        context.map_or_else(|| vec![0], |c| [&[1u8][..], c].concat()),
        context_key_id.unwrap_or_default().as_bytes().to_vec(),
    ]
}

pub(crate) fn hash_row(prev: &[u8; 32], fields: Vec<Vec<u8>>) -> [u8; 32] {
    let refs: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
    chain_hash(prev, &refs)
}

/// One audit row as an auditor sees it (context stays sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub scope: String,
    pub seq: i64,
    pub occurred_at: i64,
    pub actor_kind: String,
    pub actor_id: String,
    pub action: String,
    pub targets: Vec<String>,
    pub outcome: String,
}

/// A signed statement "chain S had N rows ending in hash H at time T".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub scope: String,
    pub seq: i64,
    #[serde(with = "hex_bytes")]
    pub head_hash: Vec<u8>,
    pub signed_at: i64,
    pub key_id: String,
    #[serde(with = "hex_bytes")]
    pub public_key: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// A problem found by verification: the chain, the first bad row, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyProblem {
    pub scope: String,
    pub seq: Option<i64>,
    pub what: String,
}

impl std::fmt::Display for VerifyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let chain = ChainScope::parse(&self.scope)
            .map(|s| s.to_string())
            .unwrap_or_else(|| format!("chain {}", self.scope));
        match self.seq {
            Some(seq) => write!(f, "{chain}: row {seq}: {}", self.what),
            None => write!(f, "{chain}: {}", self.what),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub chains: usize,
    pub rows: u64,
    pub checkpoints: u64,
    pub anchored_checkpoints: u64,
    /// Per chain, rows after the newest checkpoint found in the anchor file.
    pub rows_after_anchor: BTreeMap<String, i64>,
    pub problems: Vec<VerifyProblem>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

struct StoredRow {
    seq: i64,
    occurred_at: i64,
    actor_kind: String,
    actor_id: String,
    action: String,
    targets: String,
    outcome: String,
    context: Option<Vec<u8>>,
    context_key_id: Option<String>,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

impl Store {
    /// Public keys of every chain's checkpoint-signing key, as stored, keyed by chain.
    pub async fn audit_public_keys(&self) -> Result<BTreeMap<String, (String, Vec<u8>)>> {
        let rows: Vec<(String, Option<String>, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT id, practice_id, public_key FROM ring_keys \
             WHERE purpose IN ('audit_signing', 'system_audit_signing') ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = BTreeMap::new();
        for (id, practice, public) in rows {
            let scope = practice.unwrap_or_else(|| ChainScope::SYSTEM_KEY.to_owned());
            out.insert(scope, (id, public.unwrap_or_default()));
        }
        Ok(out)
    }

    /// Signs the head of every chain that moved since its last checkpoint, stores the
    /// checkpoints, and appends them to the anchor file (outside the database) when given.
    pub async fn write_checkpoints(&self, anchor: Option<&Path>) -> Result<Vec<Checkpoint>> {
        let heads: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT h.scope, h.seq, h.hash FROM audit_heads h WHERE h.seq > 0 AND h.seq > \
             COALESCE((SELECT MAX(c.seq) FROM audit_checkpoints c WHERE c.scope = h.scope), 0) \
             ORDER BY h.scope",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut written = Vec::new();
        for (scope_key, seq, hash) in heads {
            let Some(scope) = ChainScope::parse(&scope_key) else {
                continue;
            };
            let head: [u8; 32] = hash
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::KeyRing("corrupt chain head".into()))?;
            let mut conn = self.pool.acquire().await?;
            let keys = self.ring.chain_keys(&mut conn, &scope).await?;
            drop(conn);
            let signer = keys.signer();
            let signed_at = salve_core::clock::to_micros(self.clock.now());
            let signature = signer.sign(&checkpoint_message(&scope_key, seq, &head, signed_at));
            let inserted = sqlx::query(
                "INSERT INTO audit_checkpoints (scope, seq, head_hash, signed_at, key_id, signature) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(&scope_key)
            .bind(seq)
            .bind(head.to_vec())
            .bind(signed_at)
            .bind(keys.signing.id())
            .bind(signature.to_vec())
            .execute(&self.pool)
            .await?
            .rows_affected()
                > 0;
            if inserted {
                written.push(Checkpoint {
                    scope: scope_key,
                    seq,
                    head_hash: head.to_vec(),
                    signed_at,
                    key_id: keys.signing.id().to_owned(),
                    public_key: signer.public_key().to_vec(),
                    signature: signature.to_vec(),
                });
            }
        }
        if let Some(path) = anchor
            && !written.is_empty()
        {
            append_anchor(path, &written)?;
        }
        Ok(written)
    }

    /// Recomputes every chain from its first row. With anchor lines, also proves that no
    /// anchored row was removed, even together with its checkpoints.
    pub async fn verify_audit(&self, anchor: Option<&[Checkpoint]>) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let public_keys = self.audit_public_keys().await?;
        let heads: Vec<(String, i64, Vec<u8>)> =
            sqlx::query_as("SELECT scope, seq, hash FROM audit_heads ORDER BY scope")
                .fetch_all(&self.pool)
                .await?;
        let mut scopes: BTreeMap<String, Option<(i64, Vec<u8>)>> = heads
            .into_iter()
            .map(|(s, seq, h)| (s, Some((seq, h))))
            .collect();
        let event_scopes: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT scope FROM audit_events ORDER BY scope")
                .fetch_all(&self.pool)
                .await?;
        for s in event_scopes {
            scopes.entry(s).or_insert(None);
        }
        // Derive the true public keys from the key ring where this instance can, so a swapped
        // public key in the database is caught too.
        let mut conn = self.pool.acquire().await?;
        let mut true_keys: BTreeMap<String, [u8; 32]> = BTreeMap::new();
        for scope_key in scopes.keys() {
            if let Some(scope) = ChainScope::parse(scope_key)
                && let Ok(keys) = self.ring.chain_keys(&mut conn, &scope).await
            {
                true_keys.insert(scope_key.clone(), keys.signer().public_key());
            }
        }
        drop(conn);

        for (scope, head) in &scopes {
            report.chains += 1;
            let mut hashes: BTreeMap<i64, [u8; 32]> = BTreeMap::new();
            let first_problem = self
                .verify_chain(scope, head.as_ref(), &mut hashes, &mut report)
                .await?;
            if let Some(p) = first_problem {
                report.problems.push(p);
            }
            let public = true_keys.get(scope).copied().or_else(|| {
                public_keys
                    .get(scope)
                    .and_then(|(_, k)| k.as_slice().try_into().ok())
            });
            if let Some((_, stored)) = public_keys.get(scope)
                && let Some(true_key) = true_keys.get(scope)
                && stored.as_slice() != true_key
            {
                report.problems.push(VerifyProblem {
                    scope: scope.clone(),
                    seq: None,
                    what: "the stored checkpoint public key is not the key ring's".into(),
                });
            }
            self.verify_checkpoints(scope, public, &hashes, &mut report)
                .await?;
            if let Some(anchor) = anchor {
                verify_anchor(scope, anchor, public, &hashes, head.as_ref(), &mut report);
            }
        }
        if let Some(anchor) = anchor {
            for cp in anchor {
                if !scopes.contains_key(&cp.scope) {
                    report.problems.push(VerifyProblem {
                        scope: cp.scope.clone(),
                        seq: Some(cp.seq),
                        what: "the anchor has a checkpoint for a chain that is missing from the database".into(),
                    });
                }
            }
        }
        Ok(report)
    }

    async fn verify_chain(
        &self,
        scope: &str,
        head: Option<&(i64, Vec<u8>)>,
        hashes: &mut BTreeMap<i64, [u8; 32]>,
        report: &mut VerifyReport,
    ) -> Result<Option<VerifyProblem>> {
        let problem = |seq: Option<i64>, what: &str| {
            Ok(Some(VerifyProblem {
                scope: scope.to_owned(),
                seq,
                what: what.to_owned(),
            }))
        };
        let rows = sqlx::query(
            "SELECT seq, occurred_at, actor_kind, actor_id, action, targets, outcome, context, \
             context_key_id, prev_hash, hash FROM audit_events WHERE scope = $1 ORDER BY seq",
        )
        .bind(scope)
        .fetch_all(&self.pool)
        .await?;
        let mut prev = GENESIS;
        let mut expected_seq = 1;
        for row in rows {
            let r = StoredRow {
                seq: row.try_get(0)?,
                occurred_at: row.try_get(1)?,
                actor_kind: row.try_get(2)?,
                actor_id: row.try_get(3)?,
                action: row.try_get(4)?,
                targets: row.try_get(5)?,
                outcome: row.try_get(6)?,
                context: row.try_get(7)?,
                context_key_id: row.try_get(8)?,
                prev_hash: row.try_get(9)?,
                hash: row.try_get(10)?,
            };
            report.rows += 1;
            if r.seq != expected_seq {
                return problem(
                    Some(expected_seq),
                    &format!(
                        "missing: the chain jumps from row {} to row {} (rows deleted or renumbered)",
                        expected_seq - 1,
                        r.seq
                    ),
                );
            }
            if r.prev_hash != prev {
                return problem(
                    Some(r.seq),
                    "its link to the previous row is broken (a row was inserted, deleted or reordered before it)",
                );
            }
            let computed = hash_row(
                &prev,
                row_hash_fields(
                    scope,
                    r.seq,
                    r.occurred_at,
                    &r.actor_kind,
                    &r.actor_id,
                    &r.action,
                    &r.targets,
                    &r.outcome,
                    r.context.as_deref(),
                    r.context_key_id.as_deref(),
                ),
            );
            if r.hash != computed {
                return problem(
                    Some(r.seq),
                    "its contents do not match its hash (the row was edited)",
                );
            }
            hashes.insert(r.seq, computed);
            prev = computed;
            expected_seq += 1;
        }
        let last = expected_seq - 1;
        match head {
            None if last > 0 => problem(None, "the chain has rows but no head record"),
            None => Ok(None),
            Some((seq, hash)) => {
                if *seq > last {
                    problem(
                        Some(last + 1),
                        &format!(
                            "missing: the chain head says {seq} rows but only {last} remain (newest rows deleted)"
                        ),
                    )
                } else if *seq < last {
                    problem(
                        Some(seq + 1),
                        &format!(
                            "row is beyond the chain head ({seq} rows): appended outside Salve"
                        ),
                    )
                } else if hash.as_slice() != prev {
                    problem(
                        Some(last),
                        "the chain head's hash does not match the last row",
                    )
                } else {
                    Ok(None)
                }
            }
        }
    }

    async fn verify_checkpoints(
        &self,
        scope: &str,
        public: Option<[u8; 32]>,
        hashes: &BTreeMap<i64, [u8; 32]>,
        report: &mut VerifyReport,
    ) -> Result<()> {
        let rows: Vec<(i64, Vec<u8>, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, head_hash, signed_at, signature FROM audit_checkpoints WHERE scope = $1 ORDER BY seq",
        )
        .bind(scope)
        .fetch_all(&self.pool)
        .await?;
        for (seq, head_hash, signed_at, signature) in rows {
            report.checkpoints += 1;
            let Ok(head): std::result::Result<[u8; 32], _> = head_hash.as_slice().try_into() else {
                report.problems.push(VerifyProblem {
                    scope: scope.into(),
                    seq: Some(seq),
                    what: "checkpoint is malformed".into(),
                });
                break;
            };
            let msg = checkpoint_message(scope, seq, &head, signed_at);
            let signed = public.is_some_and(|k| verify_signature(&k, &msg, &signature));
            let what = if !signed {
                Some("checkpoint signature is invalid".to_owned())
            } else {
                match hashes.get(&seq) {
                    None => Some(format!(
                        "missing: a signed checkpoint covers {seq} rows but the chain is shorter (newest rows deleted)"
                    )),
                    Some(h) if h != &head => {
                        Some("row does not match the signed checkpoint at this position".into())
                    }
                    Some(_) => None,
                }
            };
            if let Some(what) = what {
                report.problems.push(VerifyProblem {
                    scope: scope.into(),
                    seq: Some(seq),
                    what,
                });
                break;
            }
        }
        Ok(())
    }
}

fn verify_anchor(
    scope: &str,
    anchor: &[Checkpoint],
    public: Option<[u8; 32]>,
    hashes: &BTreeMap<i64, [u8; 32]>,
    head: Option<&(i64, Vec<u8>)>,
    report: &mut VerifyReport,
) {
    let mut newest = 0;
    for cp in anchor.iter().filter(|c| c.scope == scope) {
        report.anchored_checkpoints += 1;
        let fail = |what: String| VerifyProblem {
            scope: scope.into(),
            seq: Some(cp.seq),
            what,
        };
        let Ok(head_hash): std::result::Result<[u8; 32], _> = cp.head_hash.as_slice().try_into()
        else {
            report
                .problems
                .push(fail("anchored checkpoint is malformed".into()));
            return;
        };
        let msg = checkpoint_message(scope, cp.seq, &head_hash, cp.signed_at);
        if public.is_some_and(|k| k.as_slice() != cp.public_key.as_slice()) {
            report.problems.push(fail(
                "anchored checkpoint was signed by a different key".into(),
            ));
            return;
        }
        let Ok(anchor_key): std::result::Result<[u8; 32], _> = cp.public_key.as_slice().try_into()
        else {
            report
                .problems
                .push(fail("anchored checkpoint is malformed".into()));
            return;
        };
        if !verify_signature(&anchor_key, &msg, &cp.signature) {
            report
                .problems
                .push(fail("anchored checkpoint signature is invalid".into()));
            return;
        }
        match hashes.get(&cp.seq) {
            None => {
                let last = hashes.keys().next_back().copied().unwrap_or(0);
                report.problems.push(fail(format!(
                    "missing: the anchor file proves {} rows existed but the chain has {last} (newest rows and their checkpoints deleted)",
                    cp.seq
                )));
                return;
            }
            Some(h) if h != &head_hash => {
                report.problems.push(fail(
                    "row does not match the checkpoint in the anchor file".into(),
                ));
                return;
            }
            Some(_) => newest = newest.max(cp.seq),
        }
    }
    let last = head.map(|(s, _)| *s).unwrap_or(0);
    report
        .rows_after_anchor
        .insert(scope.to_owned(), (last - newest).max(0));
}

/// Appends checkpoints to the anchor file as JSON lines and syncs it to disk.
pub fn append_anchor(path: &Path, checkpoints: &[Checkpoint]) -> Result<()> {
    let io = |e: std::io::Error| StoreError::Io(format!("anchor file {}: {e}", path.display()));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    let mut buf = Vec::new();
    for cp in checkpoints {
        serde_json::to_writer(&mut buf, cp).map_err(|e| StoreError::Io(e.to_string()))?;
        buf.push(b'\n');
    }
    file.write_all(&buf).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(())
}

/// Reads an anchor file written by `append_anchor`.
pub fn read_anchor(path: &Path) -> Result<Vec<Checkpoint>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| StoreError::Io(format!("anchor file {}: {e}", path.display())))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|_| {
                StoreError::Io(format!(
                    "anchor file {} line {} is not a checkpoint",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
}
