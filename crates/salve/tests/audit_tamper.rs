//! Tamper tests: one database per backend is seeded through the CLI and a server (so it has a
//! practice chain, signed checkpoints in the database and in the anchor file, and one row after
//! the last checkpoint); then each kind of tampering is applied by direct SQL to a fresh copy,
//! and `salve audit verify` must exit non-zero naming the practice and the first bad row.
//!
//! The one documented limit is checked too: deleting the newest rows together with their
//! checkpoints and winding the chain head back is only caught with `--anchor`.

mod common;

use std::path::PathBuf;

use common::{Api, CliOutput, Salve};
use salve_crypto::audit::chain_hash;
use salve_testkit::{Kind, TestDatabase};
use sqlx::Connection;

/// One stored audit row, every column.
#[derive(Debug, Clone)]
struct Row {
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

type RowTuple = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    String,
    Option<Vec<u8>>,
    Option<String>,
    Vec<u8>,
    Vec<u8>,
);

impl Row {
    /// The hash this row must carry after `prev`, computed the way an attacker who read the
    /// source would: SHA-256 over length-prefixed fields (see salve-store's `row_hash_fields`).
    fn chained_hash(&self, scope: &str, prev: &[u8]) -> Vec<u8> {
        let prev: [u8; 32] = prev.try_into().expect("32-byte hash");
        let seq = self.seq.to_be_bytes();
        let at = self.occurred_at.to_be_bytes();
        let context = match &self.context {
            None => vec![0u8],
            Some(c) => [&[1u8][..], c].concat(),
        };
        let key_id = self.context_key_id.clone().unwrap_or_default();
        chain_hash(
            &prev,
            &[
                scope.as_bytes(),
                &seq,
                &at,
                self.actor_kind.as_bytes(),
                self.actor_id.as_bytes(),
                self.action.as_bytes(),
                self.targets.as_bytes(),
                self.outcome.as_bytes(),
                &context,
                key_id.as_bytes(),
            ],
        )
        .to_vec()
    }
}

/// A direct SQL connection to a database under test (either backend).
struct Sql(sqlx::AnyConnection);

impl Sql {
    async fn connect(url: &str) -> Self {
        sqlx::any::install_default_drivers();
        Self(
            sqlx::AnyConnection::connect(url)
                .await
                .unwrap_or_else(|e| panic!("connect to {url}: {e}")),
        )
    }

    async fn rows(&mut self, scope: &str) -> Vec<Row> {
        let rows: Vec<RowTuple> = sqlx::query_as(
            "SELECT seq, occurred_at, actor_kind, actor_id, action, targets, outcome, context, \
             context_key_id, prev_hash, hash FROM audit_events WHERE scope = $1 ORDER BY seq",
        )
        .bind(scope)
        .fetch_all(&mut self.0)
        .await
        .unwrap();
        rows.into_iter()
            .map(|r| Row {
                seq: r.0,
                occurred_at: r.1,
                actor_kind: r.2,
                actor_id: r.3,
                action: r.4,
                targets: r.5,
                outcome: r.6,
                context: r.7,
                context_key_id: r.8,
                prev_hash: r.9,
                hash: r.10,
            })
            .collect()
    }

    async fn head(&mut self, scope: &str) -> (i64, Vec<u8>) {
        sqlx::query_as("SELECT seq, hash FROM audit_heads WHERE scope = $1")
            .bind(scope)
            .fetch_one(&mut self.0)
            .await
            .unwrap()
    }

    async fn checkpoint_seqs(&mut self, scope: &str) -> Vec<i64> {
        sqlx::query_scalar("SELECT seq FROM audit_checkpoints WHERE scope = $1 ORDER BY seq")
            .bind(scope)
            .fetch_all(&mut self.0)
            .await
            .unwrap()
    }

    async fn insert(&mut self, scope: &str, r: &Row) {
        sqlx::query(
            "INSERT INTO audit_events (scope, seq, occurred_at, actor_kind, actor_id, action, \
             targets, outcome, context, context_key_id, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(scope)
        .bind(r.seq)
        .bind(r.occurred_at)
        .bind(&r.actor_kind)
        .bind(&r.actor_id)
        .bind(&r.action)
        .bind(&r.targets)
        .bind(&r.outcome)
        .bind(r.context.clone())
        .bind(r.context_key_id.clone())
        .bind(r.prev_hash.clone())
        .bind(r.hash.clone())
        .execute(&mut self.0)
        .await
        .unwrap();
    }

    /// Replaces every row from `from` on with `rows`.
    async fn rewrite_from(&mut self, scope: &str, from: i64, rows: &[Row]) {
        sqlx::query("DELETE FROM audit_events WHERE scope = $1 AND seq >= $2")
            .bind(scope)
            .bind(from)
            .execute(&mut self.0)
            .await
            .unwrap();
        for r in rows {
            self.insert(scope, r).await;
        }
    }

    async fn set_head(&mut self, scope: &str, seq: i64, hash: &[u8]) {
        sqlx::query("UPDATE audit_heads SET seq = $1, hash = $2 WHERE scope = $3")
            .bind(seq)
            .bind(hash.to_vec())
            .bind(scope)
            .execute(&mut self.0)
            .await
            .unwrap();
    }

    async fn close(self) {
        self.0.close().await.unwrap();
    }
}

/// The kinds of tampering, each applied to the practice chain of a fresh copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tamper {
    /// Change the action of a middle row.
    EditAction,
    /// Change the target ids of a middle row.
    EditTargets,
    /// Delete a middle row.
    DeleteMiddle,
    /// Renumber the rows from k on up by one and insert a forged row at k that links
    /// correctly to row k-1 and carries its own correct hash.
    InsertMiddle,
    /// Like `InsertMiddle`, but also re-chain every later row and move the chain head, so
    /// that only the signed checkpoints can tell.
    InsertAndRechain,
    /// Append a forged, correctly chained row after the last one (head untouched).
    AppendForged,
    /// Swap the sequence numbers of rows k and k+1.
    Reorder,
    /// Delete the two newest rows; heads and checkpoints untouched.
    DeleteNewest,
    /// Delete the three newest rows, their checkpoints, and wind the chain head back to the
    /// new last row: invisible without the anchor file.
    DeleteNewestWithCheckpoints,
}

const ALL: [Tamper; 9] = [
    Tamper::EditAction,
    Tamper::EditTargets,
    Tamper::DeleteMiddle,
    Tamper::InsertMiddle,
    Tamper::InsertAndRechain,
    Tamper::AppendForged,
    Tamper::Reorder,
    Tamper::DeleteNewest,
    Tamper::DeleteNewestWithCheckpoints,
];

/// The shape of the seeded practice chain.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// Rows in the chain (and the head's seq).
    last: i64,
    /// The newest checkpoint (written by the server at shutdown and to the anchor file).
    checkpoint: i64,
    /// The middle row that is tampered with.
    k: i64,
}

/// Applies one tampering; returns the row `audit verify` must name first, and a fragment of
/// what it must say about it.
async fn apply(sql: &mut Sql, scope: &str, shape: Shape, tamper: Tamper) -> (i64, &'static str) {
    let Shape {
        last,
        checkpoint,
        k,
    } = shape;
    let rows = sql.rows(scope).await;
    let at = |seq: i64| rows[(seq - 1) as usize].clone();
    match tamper {
        Tamper::EditAction => {
            let n = sqlx::query(
                "UPDATE audit_events SET action = 'patient.list' WHERE scope = $1 AND seq = $2",
            )
            .bind(scope)
            .bind(k)
            .execute(&mut sql.0)
            .await
            .unwrap()
            .rows_affected();
            assert_eq!(n, 1);
            (k, "its contents do not match its hash")
        }
        Tamper::EditTargets => {
            let n =
                sqlx::query("UPDATE audit_events SET targets = '[]' WHERE scope = $1 AND seq = $2")
                    .bind(scope)
                    .bind(k)
                    .execute(&mut sql.0)
                    .await
                    .unwrap()
                    .rows_affected();
            assert_eq!(n, 1);
            (k, "its contents do not match its hash")
        }
        Tamper::DeleteMiddle => {
            sqlx::query("DELETE FROM audit_events WHERE scope = $1 AND seq = $2")
                .bind(scope)
                .bind(k)
                .execute(&mut sql.0)
                .await
                .unwrap();
            (k, "missing: the chain jumps from row")
        }
        Tamper::InsertMiddle | Tamper::InsertAndRechain => {
            let rechain = tamper == Tamper::InsertAndRechain;
            let mut forged = at(k);
            forged.action = "patient.read".into();
            forged.targets = format!("[\"{}\"]", uuid::Uuid::new_v4());
            forged.prev_hash = at(k - 1).hash;
            forged.hash = forged.chained_hash(scope, &forged.prev_hash);
            let mut new_rows = vec![forged];
            for seq in k..=last {
                let mut r = at(seq);
                r.seq += 1;
                if rechain {
                    let prev = new_rows.last().unwrap().hash.clone();
                    r.hash = r.chained_hash(scope, &prev);
                    r.prev_hash = prev;
                }
                new_rows.push(r);
            }
            sql.rewrite_from(scope, k, &new_rows).await;
            if rechain {
                let new_last = new_rows.last().unwrap();
                sql.set_head(scope, new_last.seq, &new_last.hash).await;
                // The chain and its head agree; the checkpoint signed over the old row at this
                // position does not.
                (checkpoint, "does not match the signed checkpoint")
            } else {
                (k + 1, "its link to the previous row is broken")
            }
        }
        Tamper::AppendForged => {
            let mut forged = at(last);
            forged.seq = last + 1;
            forged.occurred_at += 1;
            forged.action = "patient.read".into();
            forged.prev_hash = at(last).hash;
            forged.hash = forged.chained_hash(scope, &forged.prev_hash);
            sql.insert(scope, &forged).await;
            (last + 1, "beyond the chain head")
        }
        Tamper::Reorder => {
            for (from, to) in [(k, -1), (k + 1, k), (-1, k + 1)] {
                sqlx::query("UPDATE audit_events SET seq = $1 WHERE scope = $2 AND seq = $3")
                    .bind(to)
                    .bind(scope)
                    .bind(from)
                    .execute(&mut sql.0)
                    .await
                    .unwrap();
            }
            (k, "its link to the previous row is broken")
        }
        Tamper::DeleteNewest => {
            sqlx::query("DELETE FROM audit_events WHERE scope = $1 AND seq > $2")
                .bind(scope)
                .bind(last - 2)
                .execute(&mut sql.0)
                .await
                .unwrap();
            (last - 1, "newest rows deleted")
        }
        Tamper::DeleteNewestWithCheckpoints => {
            let keep = last - 3;
            assert!(
                keep < checkpoint,
                "the deleted rows must include the anchored checkpoint"
            );
            for query in [
                "DELETE FROM audit_events WHERE scope = $1 AND seq > $2",
                "DELETE FROM audit_checkpoints WHERE scope = $1 AND seq > $2",
            ] {
                sqlx::query(query)
                    .bind(scope)
                    .bind(keep)
                    .execute(&mut sql.0)
                    .await
                    .unwrap();
            }
            sql.set_head(scope, keep, &at(keep).hash).await;
            // Only the anchor file still knows about the checkpoint at `checkpoint`.
            (checkpoint, "the anchor file proves")
        }
    }
}

/// A copy of the seeded database for one case; a PostgreSQL copy is dropped with it.
struct DbCopy {
    url: String,
    _dir: tempfile::TempDir,
    pg: Option<(String, String)>,
}

impl DbCopy {
    async fn of(db: &TestDatabase) -> Self {
        let dir = tempfile::tempdir().unwrap();
        match db.kind {
            Kind::Sqlite => {
                let source = db.sqlite_file().unwrap();
                let target = dir.path().join("salve.db");
                std::fs::copy(&source, &target).unwrap();
                // Copy the WAL too when the database was not checkpointed on close.
                for suffix in ["-wal", "-shm"] {
                    let side = PathBuf::from(format!("{}{suffix}", source.display()));
                    if side.exists() {
                        std::fs::copy(&side, format!("{}{suffix}", target.display())).unwrap();
                    }
                }
                Self {
                    url: format!("sqlite://{}", target.display()),
                    _dir: dir,
                    pg: None,
                }
            }
            Kind::Postgres => {
                let admin = std::env::var(salve_testkit::POSTGRES_ENV).unwrap();
                let (base, source) = db.url.rsplit_once('/').unwrap();
                assert!(!source.contains('?'), "unexpected URL {}", db.url);
                let name = format!("salve_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
                // A server or CLI that just exited may still hold a session on the source for
                // a moment; CREATE DATABASE … TEMPLATE needs it to be idle.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                loop {
                    let sql = format!("CREATE DATABASE {name} TEMPLATE {source}");
                    match sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await
                    {
                        Ok(_) => break,
                        Err(e)
                            if e.to_string().contains("being accessed by other users")
                                && std::time::Instant::now() < deadline =>
                        {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                        Err(e) => panic!("copy the database {source}: {e}"),
                    }
                }
                conn.close().await.ok();
                Self {
                    url: format!("{base}/{name}"),
                    _dir: dir,
                    pg: Some((admin, name)),
                }
            }
        }
    }
}

impl Drop for DbCopy {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// Seeds a practice chain: practice and token by the CLI, six patients and two reads through
/// a server, a graceful stop (final checkpoint in the database and the anchor file), then one
/// more token so that one row follows the last anchored checkpoint.
async fn seed(salve: &Salve) -> String {
    let (practice, token) = salve.create_practice_and_token("Tamper Test Family Practice");
    let server = salve.start_server().await;
    let api = Api::new(&server.base_url, &token);
    let patients = api.create_patients(6).await;
    for p in &patients[..2] {
        let (status, body) = api.get_patient(p["id"].as_str().unwrap()).await;
        assert_eq!(status, 200, "{body}");
    }
    server.stop_async().await;
    salve.create_token(&practice);
    practice
}

fn first_failure_line(out: &CliOutput) -> Option<&str> {
    out.stdout
        .lines()
        .find(|l| l.starts_with("audit verify: FAILED: "))
}

/// Checks one verify run against the expected first bad row; returns a description of what is
/// wrong, if anything.
fn check_caught(out: &CliOutput, practice: &str, row: i64, fragment: &str) -> Result<(), String> {
    if out.status.success() {
        return Err(format!("verify exited 0:\n{out}"));
    }
    let expected = format!("audit verify: FAILED: practice {practice}: row {row}: ");
    let Some(first) = first_failure_line(out) else {
        return Err(format!("no FAILED line:\n{out}"));
    };
    if !first.starts_with(&expected) || !first.contains(fragment) {
        return Err(format!(
            "first problem should start `{expected}` and mention `{fragment}`:\n{out}"
        ));
    }
    Ok(())
}

async fn tamper_cases(db: &TestDatabase) {
    let started = std::time::Instant::now();
    let salve = Salve::for_db(db);
    let practice = seed(&salve).await;

    // The untouched database verifies, and says what the anchor adds.
    let out = salve.audit_verify(false).assert_success();
    assert!(
        out.stdout.starts_with("audit verify: OK:") && out.stdout.contains("no anchor file given"),
        "{out}"
    );
    let out = salve.audit_verify(true).assert_success();
    let follow = out
        .stdout
        .split("; ")
        .find_map(|part| part.strip_suffix(" rows follow the last anchored checkpoint\n"))
        .unwrap_or_else(|| panic!("no `rows follow` count:\n{out}"));
    assert_eq!(
        follow, "1",
        "exactly one row (the second token) follows the last anchored checkpoint:\n{out}"
    );

    // The shape of the chain, and a check that this test forges hashes the way Salve
    // computes them (so that the forged rows below are as plausible as they can be).
    let mut sql = Sql::connect(&db.url).await;
    let rows = sql.rows(&practice).await;
    let (head_seq, head_hash) = sql.head(&practice).await;
    let checkpoints = sql.checkpoint_seqs(&practice).await;
    sql.close().await;
    let mut prev = vec![0u8; 32];
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.seq, i as i64 + 1);
        assert_eq!(r.prev_hash, prev, "row {}", r.seq);
        assert_eq!(r.chained_hash(&practice, &prev), r.hash, "row {}", r.seq);
        prev = r.hash.clone();
    }
    let last = rows.len() as i64;
    assert_eq!((head_seq, head_hash), (last, prev));
    let checkpoint = *checkpoints.last().expect("a checkpoint from the shutdown");
    assert_eq!(
        checkpoint,
        last - 1,
        "the second token follows the checkpoint"
    );
    let shape = Shape {
        last,
        checkpoint,
        k: last / 2,
    };
    assert!(shape.k > 2 && shape.k + 1 < checkpoint, "{shape:?}");

    let mut failures = Vec::new();
    for tamper in ALL {
        let copy = DbCopy::of(db).await;
        let target = salve.with_database_url(copy.url.clone());
        let mut sql = Sql::connect(&copy.url).await;
        let (row, fragment) = apply(&mut sql, &practice, shape, tamper).await;
        sql.close().await;

        if tamper == Tamper::DeleteNewestWithCheckpoints {
            // The documented limit: without the anchor this deletion is invisible...
            let out = target.audit_verify(false);
            if !out.status.success() || !out.stdout.contains("no anchor file given") {
                failures.push(format!(
                    "{tamper:?} without --anchor: expected exit 0 and the no-anchor caveat:\n{out}"
                ));
            }
            // ...and the anchor file catches it.
            let out = target.audit_verify(true);
            eprintln!("{tamper:?}: {}", first_failure_line(&out).unwrap_or("-"));
            if let Err(e) = check_caught(&out, &practice, row, fragment) {
                failures.push(format!("{tamper:?} with --anchor: {e}"));
            }
        } else {
            let out = target.audit_verify(false);
            eprintln!("{tamper:?}: {}", first_failure_line(&out).unwrap_or("-"));
            if let Err(e) = check_caught(&out, &practice, row, fragment) {
                failures.push(format!("{tamper:?}: {e}"));
            }
            // The anchor never hides a problem.
            let out = target.audit_verify(true);
            if out.status.success() {
                failures.push(format!("{tamper:?} with --anchor: verify exited 0:\n{out}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{:?}: {} of {} tamper cases not caught as expected:\n\n{}",
        db.kind,
        failures.len(),
        ALL.len(),
        failures.join("\n\n")
    );
    eprintln!(
        "{:?}: {} tamper cases caught in {:?}",
        db.kind,
        ALL.len(),
        started.elapsed()
    );
}

#[tokio::test]
async fn tampering_is_caught_on_sqlite() {
    tamper_cases(&TestDatabase::sqlite()).await;
}

#[tokio::test]
async fn tampering_is_caught_on_postgres() {
    let Some(db) = TestDatabase::postgres().await else {
        common::skip_without_postgres("tampering_is_caught_on_postgres");
        return;
    };
    tamper_cases(&db).await;
}
