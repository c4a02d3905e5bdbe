use dotdo_storage::rusqlite;

/// Why a store operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// A version precondition failed, or an id is taken.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

impl StoreError {
    pub fn bad(m: impl Into<String>) -> Self {
        StoreError::BadRequest(m.into())
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;
