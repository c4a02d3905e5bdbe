//! User SQL: statements with bound parameters, run under the authorizer in a savepoint so that a
//! failing call changes nothing.

use crate::store::UndoPoint;
use crate::{Storage, StorageError};
use rusqlite::{
    StatementStatus, fallible_iterator::FallibleIterator, types::Value as RValue, types::ValueRef,
};
use std::sync::atomic::Ordering;

/// A SQLite value, as bound and as returned.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// The outcome of [`Storage::exec`]: the rows of the last statement, and counters over all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SqlResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<SqlValue>>,
    /// Rows returned plus rows visited by full table scans.
    pub rows_read: u64,
    /// Rows inserted, updated or deleted (including by triggers).
    pub rows_written: u64,
}

/// Cap on the memory one result may hold, so one query cannot exhaust the server.
const MAX_RESULT_BYTES: usize = 64 * 1024 * 1024;

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ToSqlOutput::Borrowed;
        Ok(match self {
            SqlValue::Null => Borrowed(ValueRef::Null),
            SqlValue::Integer(i) => Borrowed(ValueRef::Integer(*i)),
            SqlValue::Real(f) => Borrowed(ValueRef::Real(*f)),
            SqlValue::Text(s) => Borrowed(ValueRef::Text(s.as_bytes())),
            SqlValue::Blob(b) => Borrowed(ValueRef::Blob(b)),
        })
    }
}

impl From<RValue> for SqlValue {
    fn from(v: RValue) -> Self {
        match v {
            RValue::Null => SqlValue::Null,
            RValue::Integer(i) => SqlValue::Integer(i),
            RValue::Real(f) => SqlValue::Real(f),
            RValue::Text(s) => SqlValue::Text(s),
            RValue::Blob(b) => SqlValue::Blob(b),
        }
    }
}

impl SqlValue {
    fn approx_size(&self) -> usize {
        match self {
            SqlValue::Text(s) => s.len() + 16,
            SqlValue::Blob(b) => b.len() + 16,
            _ => 16,
        }
    }
}

impl Storage {
    /// Runs user SQL. Several statements separated by `;` are allowed when no parameters are
    /// given; the result holds the rows of the last statement. If any statement fails, the
    /// effects of the whole call are undone and the object stays usable.
    pub fn exec(&mut self, sql: &str, params: &[SqlValue]) -> Result<SqlResult, StorageError> {
        self.exec_checked(sql, params, false)
    }

    /// Like [`Storage::exec`], but every statement must only read (SQLite's own
    /// `sqlite3_stmt_readonly`); a statement that would write is refused before it runs.
    pub fn exec_read_only(
        &mut self,
        sql: &str,
        params: &[SqlValue],
    ) -> Result<SqlResult, StorageError> {
        self.exec_checked(sql, params, true)
    }

    fn exec_checked(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        read_only: bool,
    ) -> Result<SqlResult, StorageError> {
        self.begin_write()?;
        let undo = self.exec_undo_point();
        if undo == UndoPoint::Own {
            self.run_cached("SAVEPOINT _do_exec")?;
        }
        let before = self.conn.total_changes();
        self.user_mode.store(true, Ordering::Relaxed);
        let outcome = self.run_user_sql(sql, params, read_only);
        self.user_mode.store(false, Ordering::Relaxed);
        match outcome {
            Ok((mut result, wrote)) => {
                if undo == UndoPoint::Own {
                    self.run_cached("RELEASE _do_exec")?;
                }
                result.rows_written = self.conn.total_changes() - before;
                if wrote || result.rows_written > 0 {
                    self.mark_dirty();
                }
                Ok(result)
            }
            Err(err) => {
                if self.conn.is_autocommit() {
                    // SQLite rolled back the whole transaction (e.g. ON CONFLICT ROLLBACK).
                    self.note_aborted();
                } else {
                    self.undo_to(undo)?;
                }
                Err(err)
            }
        }
    }

    fn run_user_sql(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        read_only: bool,
    ) -> Result<(SqlResult, bool), StorageError> {
        let max = self.max_size_bytes;
        let user = |e: rusqlite::Error| StorageError::from_user_sql(e, max);
        let mut result = SqlResult::default();
        let mut wrote = false;
        // One statement (the common case) goes through the statement cache. The marker
        // keeps user statements apart from internal ones with the same text: a cached
        // statement was authorized when it was prepared, so a user must never be handed one
        // prepared outside user mode.
        let marked = format!("{USER_SQL_MARK}{sql}");
        if let Ok(mut stmt) = self.conn.prepare_cached(&marked) {
            run_statement(
                &mut stmt,
                1,
                params,
                read_only,
                max,
                &mut result,
                &mut wrote,
            )?;
            return Ok((result, wrote));
        }
        // Several statements, or an error to report: statement by statement.
        let mut batch = rusqlite::Batch::new(&self.conn, sql);
        let mut count = 0usize;
        while let Some(mut stmt) = batch.next().map_err(user)? {
            count += 1;
            if count > 1 && !params.is_empty() {
                return Err(StorageError::InvalidArgument(
                    "parameters can only be bound to a single statement; split the SQL".into(),
                ));
            }
            let bind = if count == 1 { params } else { &[] };
            run_statement(
                &mut stmt,
                count,
                bind,
                read_only,
                max,
                &mut result,
                &mut wrote,
            )?;
        }
        if count == 0 {
            return Err(StorageError::InvalidArgument(
                "no SQL statement given".into(),
            ));
        }
        Ok((result, wrote))
    }
}

/// Prefix of user SQL in the statement cache (see `run_user_sql`).
const USER_SQL_MARK: &str = "/*user*/";

/// Runs statement number `count` of a call with its parameters, into `result`.
fn run_statement(
    stmt: &mut rusqlite::Statement<'_>,
    count: usize,
    bind: &[SqlValue],
    read_only: bool,
    max_size_bytes: u64,
    result: &mut SqlResult,
    wrote: &mut bool,
) -> Result<(), StorageError> {
    let user = |e: rusqlite::Error| StorageError::from_user_sql(e, max_size_bytes);
    if read_only && !stmt.readonly() {
        return Err(StorageError::InvalidArgument(format!(
            "statement {count} writes; only statements that read are allowed here"
        )));
    }
    let expected = stmt.parameter_count();
    if expected != bind.len() {
        return Err(StorageError::InvalidArgument(format!(
            "the statement has {expected} parameter(s) but {} were given",
            bind.len()
        )));
    }
    for (i, p) in bind.iter().enumerate() {
        stmt.raw_bind_parameter(i + 1, p).map_err(user)?;
    }
    *wrote |= !stmt.readonly();
    let columns: Vec<String> = stmt.column_names().map(|c| c.to_string()).collect();
    let ncol = columns.len();
    let mut rows_out = Vec::new();
    let mut bytes = 0usize;
    {
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next().map_err(user)? {
            let mut vals = Vec::with_capacity(ncol);
            for i in 0..ncol {
                let v: RValue = row.get(i).map_err(user)?;
                let v = SqlValue::from(v);
                bytes += v.approx_size();
                vals.push(v);
            }
            if bytes > MAX_RESULT_BYTES {
                return Err(StorageError::InvalidArgument(format!(
                    "the result is larger than {MAX_RESULT_BYTES} bytes; add a LIMIT"
                )));
            }
            rows_out.push(vals);
        }
    }
    // Reset as it is read: a cached statement's counters would otherwise add up across calls.
    let scanned = u64::try_from(stmt.reset_status(StatementStatus::FullscanStep)).unwrap_or(0);
    result.rows_read += rows_out.len() as u64 + scanned;
    if ncol > 0 || count == 1 {
        result.columns = columns;
        result.rows = rows_out;
    }
    Ok(())
}
