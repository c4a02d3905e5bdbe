//! The storage handle given to object code: the synchronous KV/SQL/alarm API of one object.
//!
//! Every call locks the object's database for its duration only; since a turn never awaits
//! while holding it, no other event of the object can run while storage is in use (input gate).

use dotdo_storage::{KvValue, ListOptions, SqlResult, SqlValue, Storage, StorageError};
use parking_lot::Mutex;
use std::sync::Arc;

/// One object's storage, shared by its turns.
#[derive(Clone)]
pub struct ObjectStorage {
    pub(crate) db: Arc<Mutex<Option<Storage>>>,
}

impl ObjectStorage {
    pub(crate) fn new(storage: Storage) -> Self {
        ObjectStorage {
            db: Arc::new(Mutex::new(Some(storage))),
        }
    }

    /// Runs `f` on the database. Writes join the turn's implicit transaction.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Storage) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut guard = self.db.lock();
        let db = guard
            .as_mut()
            .ok_or_else(|| StorageError::Io(std::io::Error::other("the object has been closed")))?;
        f(db)
    }

    pub fn get(&self, key: &str) -> Result<Option<KvValue>, StorageError> {
        self.with(|s| s.get(key))
    }
    pub fn get_json(&self, key: &str) -> Result<Option<serde_json::Value>, StorageError> {
        Ok(match self.get(key)? {
            Some(KvValue::Json(v)) => Some(v),
            Some(KvValue::Bytes(_)) | None => None,
        })
    }
    pub fn put(&self, key: &str, value: KvValue) -> Result<(), StorageError> {
        self.with(|s| s.put(key, &value))
    }
    pub fn put_json(&self, key: &str, value: serde_json::Value) -> Result<(), StorageError> {
        self.put(key, KvValue::Json(value))
    }
    pub fn delete(&self, key: &str) -> Result<bool, StorageError> {
        self.with(|s| s.delete(key))
    }
    pub fn list(&self, opts: &ListOptions) -> Result<Vec<(String, KvValue)>, StorageError> {
        self.with(|s| s.list(opts))
    }
    pub fn exec(&self, sql: &str, params: &[SqlValue]) -> Result<SqlResult, StorageError> {
        self.with(|s| s.exec(sql, params))
    }
    /// All of `f`'s writes or none of them.
    pub fn transaction<T>(
        &self,
        f: impl FnOnce(&mut Storage) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        self.with(|s| s.transaction(f))
    }
    pub fn get_alarm(&self) -> Result<Option<i64>, StorageError> {
        self.with(|s| s.get_alarm())
    }
    pub fn set_alarm(&self, at_ms: i64) -> Result<(), StorageError> {
        self.with(|s| s.set_alarm(at_ms))
    }
    pub fn delete_alarm(&self) -> Result<(), StorageError> {
        self.with(|s| s.delete_alarm())
    }
    pub fn size_bytes(&self) -> Result<u64, StorageError> {
        self.with(|s| s.size_bytes())
    }
}
