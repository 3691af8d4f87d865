//! Several write statements sent as one command where the database allows it.
//!
//! sqlx runs each SQLite statement on the connection's own thread and hands the result back;
//! that hand-off costs more than a small indexed insert, and on SQLite it happens under the one
//! writer lock, so it bounds how many sends per second the whole server accepts. SQLite takes
//! several statements in one command, with numbered parameters shared between them, so a batch
//! goes there as one. PostgreSQL's extended protocol takes one statement per query, so there a
//! batch runs its statements one after another (in the same transaction either way).

use sqlx::any::AnyArguments;
use sqlx::error::BoxDynError;
use sqlx::{Any, AnyConnection, Arguments, Encode, Type};

use crate::{Backend, Result, StoreError};

pub(crate) struct Batch {
    /// SQLite: every statement's text, parameters renumbered to follow the ones before.
    joined: String,
    shared: AnyArguments,
    /// PostgreSQL: each statement with its own arguments.
    separate: Vec<(&'static str, AnyArguments)>,
    one_command: bool,
    statements: usize,
    bind_error: Option<BoxDynError>,
}

impl Batch {
    pub fn new(backend: Backend) -> Self {
        Self {
            joined: String::new(),
            shared: AnyArguments::default(),
            separate: Vec::new(),
            one_command: backend == Backend::Sqlite,
            statements: 0,
            bind_error: None,
        }
    }

    /// Starts a statement whose parameters are `$1`, `$2`, … in the order of the `bind` calls
    /// that follow (each parameter bound once, as with `sqlx::query`).
    pub fn push(&mut self, sql: &'static str) -> &mut Self {
        self.statements += 1;
        if self.one_command {
            renumber_into(&mut self.joined, sql, self.shared.len());
            self.joined.push_str(";\n");
        } else {
            self.separate.push((sql, AnyArguments::default()));
        }
        self
    }

    pub fn bind<'t, T>(&mut self, value: T) -> &mut Self
    where
        T: Encode<'t, Any> + Type<Any> + 't,
    {
        let args = if self.one_command {
            &mut self.shared
        } else {
            match self.separate.last_mut() {
                Some((_, args)) => args,
                None => {
                    self.bind_error = Some("a value bound before any statement".into());
                    return self;
                }
            }
        };
        if let Err(e) = args.add(value)
            && self.bind_error.is_none()
        {
            self.bind_error = Some(e);
        }
        self
    }

    /// Runs the statements in order; the first failure stops the rest and is returned.
    pub async fn execute(self, conn: &mut AnyConnection) -> Result<()> {
        if let Some(e) = self.bind_error {
            return Err(StoreError::Database(sqlx::Error::Encode(e)));
        }
        if self.statements == 0 {
            return Ok(());
        }
        if self.one_command {
            sqlx::query_with(sqlx::AssertSqlSafe(self.joined), self.shared)
                .execute(&mut *conn)
                .await?;
        } else {
            for (sql, args) in self.separate {
                sqlx::query_with(sql, args).execute(&mut *conn).await?;
            }
        }
        Ok(())
    }
}

/// Appends `sql` with each `$n` parameter written as `$(n + offset)`. The statements batched
/// here hold no `$` other than parameters (checked in debug builds).
fn renumber_into(out: &mut String, sql: &str, offset: usize) {
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        debug_assert!(
            digits > 0,
            "a `$` that is not a parameter in a batched statement"
        );
        match after[..digits].parse::<usize>() {
            Ok(n) => {
                out.push('$');
                out.push_str(&(n + offset).to_string());
            }
            Err(_) => out.push('$'),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use salve_core::SystemClock;
    use salve_crypto::MasterKey;
    use salve_testkit::TestDatabase;

    use super::*;
    use crate::{Store, StoreOptions};

    #[test]
    fn parameters_follow_the_statements_before() {
        let mut out = String::new();
        renumber_into(&mut out, "INSERT INTO t (a, b) VALUES ($1, $2)", 0);
        renumber_into(&mut out, "; UPDATE t SET a = $2 WHERE b = $1 OR c = $12", 2);
        assert_eq!(
            out,
            "INSERT INTO t (a, b) VALUES ($1, $2); UPDATE t SET a = $4 WHERE b = $3 OR c = $14"
        );
    }

    async fn store_with_probe(db: &TestDatabase) -> Store {
        let options = StoreOptions::new(db.url.clone());
        Store::migrate(&options).await.unwrap();
        let store = Store::open(&options, MasterKey::generate(), Arc::new(SystemClock))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE batch_probe (id BIGINT PRIMARY KEY, v TEXT NOT NULL)")
            .execute(store.pool_for_tests())
            .await
            .unwrap();
        store
    }

    async fn probe(store: &Store) -> Vec<(i64, String)> {
        sqlx::query_as("SELECT id, v FROM batch_probe ORDER BY id")
            .fetch_all(store.pool_for_tests())
            .await
            .unwrap()
    }

    /// Each statement gets its own values, in order, on both databases; a failing statement
    /// stops the batch and fails its transaction.
    #[tokio::test]
    async fn a_batch_binds_each_statement_its_own_values() {
        sqlx::any::install_default_drivers();
        for db in TestDatabase::all().await {
            let store = store_with_probe(&db).await;
            let mut tx = store.begin().await.unwrap();
            let mut writes = Batch::new(store.backend());
            writes
                .push("INSERT INTO batch_probe (id, v) VALUES ($1, $2)")
                .bind(1_i64)
                .bind("one");
            writes
                .push("INSERT INTO batch_probe (v, id) VALUES ($2, $1)")
                .bind(2_i64)
                .bind("two");
            writes
                .push("UPDATE batch_probe SET v = $1 || v WHERE id = $2")
                .bind("re-")
                .bind(1_i64);
            writes.execute(&mut tx.tx).await.unwrap();
            tx.commit().await.unwrap();
            assert_eq!(
                probe(&store).await,
                vec![(1, "re-one".to_owned()), (2, "two".to_owned())]
            );

            let mut tx = store.begin().await.unwrap();
            let mut writes = Batch::new(store.backend());
            writes
                .push("INSERT INTO batch_probe (id, v) VALUES ($1, $2)")
                .bind(3_i64)
                .bind("three");
            writes
                .push("INSERT INTO batch_probe (id, v) VALUES ($1, $2)")
                .bind(1_i64)
                .bind("a duplicate key");
            assert!(writes.execute(&mut tx.tx).await.is_err());
            drop(tx);
            assert_eq!(probe(&store).await.len(), 2, "the failed batch left a row");
        }
    }

    /// Grouped writes whose changes all run at commit: one whose deferred write fails is
    /// rolled back alone (its savepoint opened in that same command), the others commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failing_deferred_write_fails_only_its_own_grouped_write() {
        sqlx::any::install_default_drivers();
        for db in TestDatabase::all().await {
            let store = Arc::new(store_with_probe(&db).await);
            sqlx::query("INSERT INTO batch_probe (id, v) VALUES (0, 'taken')")
                .execute(store.pool_for_tests())
                .await
                .unwrap();
            let mut tasks = Vec::new();
            for i in 0..24_i64 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let mut tx = store.begin_grouped_at_commit().await?;
                    // Every fourth write takes a key that is already used.
                    let id = if i % 4 == 3 { 0 } else { i + 1 };
                    tx.defer("INSERT INTO batch_probe (id, v) VALUES ($1, $2)")
                        .bind(id)
                        .bind(format!("write {i}"));
                    tx.commit().await
                }));
            }
            let mut failed = 0;
            for task in tasks {
                if task.await.unwrap().is_err() {
                    failed += 1;
                }
            }
            assert_eq!(failed, 6);
            let rows = probe(&store).await;
            assert_eq!(rows.len(), 1 + 18, "{rows:?}");
            assert!(rows.iter().all(|(id, _)| *id == 0 || id % 4 != 0));
            // The writer is free and consistent afterwards.
            let mut tx = store.begin().await.unwrap();
            tx.defer("INSERT INTO batch_probe (id, v) VALUES ($1, $2)")
                .bind(100_i64)
                .bind("later");
            tx.commit().await.unwrap();
            assert_eq!(probe(&store).await.len(), 20);
        }
    }
}
