//! A fresh, empty database for each test: a SQLite file in a temporary directory, and a
//! uniquely named PostgreSQL database (created through `SALVE_TEST_POSTGRES_URL`, dropped
//! when the test ends).

pub mod peers;

use std::path::PathBuf;

use sqlx::Connection;

pub const POSTGRES_ENV: &str = "SALVE_TEST_POSTGRES_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// One test database. Dropping it removes the SQLite directory or drops the PostgreSQL database.
pub struct TestDatabase {
    pub kind: Kind,
    pub url: String,
    /// A scratch directory for the test (data dir, key files, anchor files).
    pub dir: tempfile::TempDir,
    pg_admin: Option<(String, String)>,
}

impl TestDatabase {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("salve.db").display());
        Self {
            kind: Kind::Sqlite,
            url,
            dir,
            pg_admin: None,
        }
    }

    /// `None` when no PostgreSQL server is configured for tests (outside CI).
    pub async fn postgres() -> Option<Self> {
        let admin = std::env::var(POSTGRES_ENV).ok().filter(|u| !u.is_empty())?;
        let name = format!("salve_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_ENV} is set but PostgreSQL is unreachable: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        let url = database_url(&admin, &name);
        Some(Self {
            kind: Kind::Postgres,
            url,
            dir: tempfile::tempdir().expect("temporary directory"),
            pg_admin: Some((admin, name)),
        })
    }

    /// SQLite always; PostgreSQL too when configured.
    pub async fn all() -> Vec<Self> {
        let mut out = vec![Self::sqlite()];
        if let Some(pg) = Self::postgres().await {
            out.push(pg);
        }
        out
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The SQLite database file (and its `-wal` beside it).
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        (self.kind == Kind::Sqlite).then(|| self.dir.path().join("salve.db"))
    }
}

/// Replaces the database name in a PostgreSQL URL.
fn database_url(admin: &str, name: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    let mut url = format!("{}/{name}", &base[..path_start]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg_admin.take() else {
            return;
        };
        // Drop may run inside a runtime; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced_in_urls() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            database_url("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(database_url("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
