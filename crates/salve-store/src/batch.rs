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
    use super::*;

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
}
