use thiserror::Error;

/// Everything that can go wrong in one object's storage. The first group is the caller's fault and
/// leaves the database unchanged; `Internal` is ours and is logged, never shown to clients.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("key must not be empty")]
    EmptyKey,
    #[error("key is {len} bytes; the limit is {max}")]
    KeyTooLarge { len: usize, max: usize },
    #[error("value is {len} bytes; the limit is {max}")]
    ValueTooLarge { len: usize, max: usize },
    #[error("object storage is full: the size limit is {max_bytes} bytes")]
    SizeLimit { max_bytes: u64 },
    /// A user statement failed; the message is SQLite's own.
    #[error("{0}")]
    Sql(String),
    /// A user statement tried something only the runtime may do.
    #[error("not allowed: {0}")]
    NotAllowed(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// SQLite ended the turn's transaction on its own (e.g. `ON CONFLICT ROLLBACK`);
    /// earlier writes of the turn are gone, so the turn must fail.
    #[error("the turn's transaction was rolled back by SQLite")]
    TransactionAborted,
    #[error("storage failure: {0}")]
    Internal(#[from] rusqlite::Error),
    #[error("storage i/o failure: {0}")]
    Io(#[from] std::io::Error),
}

impl StorageError {
    /// True when the error was caused by the request, not by the server.
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            StorageError::Internal(_) | StorageError::Io(_) | StorageError::TransactionAborted
        )
    }

    /// Classifies an error raised while running a user's statement.
    pub(crate) fn from_user_sql(err: rusqlite::Error, max_bytes: u64) -> Self {
        use rusqlite::ErrorCode as C;
        match err.sqlite_error_code() {
            Some(C::DiskFull) => StorageError::SizeLimit { max_bytes },
            Some(C::AuthorizationForStatementDenied) => StorageError::NotAllowed(
                "the statement touches something reserved to the runtime (its `_do_` tables, \
                 transactions, ATTACH or a pragma that changes the database)"
                    .into(),
            ),
            Some(
                C::SystemIoFailure
                | C::DatabaseCorrupt
                | C::CannotOpen
                | C::NotADatabase
                | C::OutOfMemory
                | C::DatabaseBusy
                | C::DatabaseLocked,
            ) => StorageError::Internal(err),
            _ => match err {
                rusqlite::Error::SqliteFailure(e, Some(msg)) => {
                    let _ = e;
                    StorageError::Sql(msg)
                }
                other => StorageError::Sql(other.to_string()),
            },
        }
    }
}
