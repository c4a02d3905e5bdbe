//! The KV API of an object (mirrors the Durable Objects storage API).
//!
//! Keys are UTF-8 strings stored as BLOBs so that ordering is plain byte order and a prefix scan
//! can use an exact upper bound. A value is either JSON (stored as TEXT) or bytes (stored as BLOB).

use crate::{Storage, StorageError};
use rusqlite::{OptionalExtension, params, types::ValueRef};
use serde::{Deserialize, Serialize};

/// Longest key, in bytes (SPEC §1).
pub const MAX_KEY_BYTES: usize = 2 * 1024;
/// Largest value, in bytes of its stored form (SPEC §1).
pub const MAX_VALUE_BYTES: usize = 2 * 1024 * 1024;

/// A stored value.
#[derive(Debug, Clone, PartialEq)]
pub enum KvValue {
    Json(serde_json::Value),
    Bytes(Vec<u8>),
}

/// Options of [`Storage::list`]. `start` is inclusive, `end` exclusive; `prefix` narrows further.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListOptions {
    pub prefix: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    #[serde(default)]
    pub reverse: bool,
    pub limit: Option<usize>,
}

pub(crate) fn check_key(key: &str) -> Result<(), StorageError> {
    if key.is_empty() {
        return Err(StorageError::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(StorageError::KeyTooLarge {
            len: key.len(),
            max: MAX_KEY_BYTES,
        });
    }
    Ok(())
}

/// The stored form of a value: JSON text or raw bytes, checked against the size limit.
enum Encoded {
    Text(String),
    Blob(Vec<u8>),
}

fn encode(value: &KvValue) -> Result<Encoded, StorageError> {
    let (len, enc) = match value {
        KvValue::Json(v) => {
            let s = serde_json::to_string(v)
                .map_err(|e| StorageError::InvalidArgument(e.to_string()))?;
            (s.len(), Encoded::Text(s))
        }
        KvValue::Bytes(b) => (b.len(), Encoded::Blob(b.clone())),
    };
    if len > MAX_VALUE_BYTES {
        return Err(StorageError::ValueTooLarge {
            len,
            max: MAX_VALUE_BYTES,
        });
    }
    Ok(enc)
}

fn decode(v: ValueRef<'_>) -> Result<KvValue, StorageError> {
    match v {
        ValueRef::Text(t) => serde_json::from_slice(t)
            .map(KvValue::Json)
            .map_err(|e| StorageError::InvalidArgument(format!("stored value is not JSON: {e}"))),
        ValueRef::Blob(b) => Ok(KvValue::Bytes(b.to_vec())),
        other => Err(StorageError::InvalidArgument(format!(
            "unexpected stored value type {:?}",
            other.data_type()
        ))),
    }
}

fn key_of(bytes: &[u8]) -> Result<String, StorageError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| StorageError::InvalidArgument("stored key is not UTF-8".into()))
}

/// The smallest byte string greater than every string that starts with `prefix`, if any.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl Storage {
    pub fn get(&mut self, key: &str) -> Result<Option<KvValue>, StorageError> {
        check_key(key)?;
        self.begin()?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT value FROM _do_kv WHERE key = ?1")?;
        let raw: Option<rusqlite::types::Value> =
            stmt.query_row([key.as_bytes()], |r| r.get(0)).optional()?;
        raw.map(|v| decode((&v).into())).transpose()
    }

    /// Values of the keys that exist, in the order of `keys`.
    pub fn get_many(&mut self, keys: &[String]) -> Result<Vec<(String, KvValue)>, StorageError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(v) = self.get(key)? {
                out.push((key.clone(), v));
            }
        }
        Ok(out)
    }

    pub fn put(&mut self, key: &str, value: &KvValue) -> Result<(), StorageError> {
        check_key(key)?;
        let enc = encode(value)?;
        self.write(|conn| {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO _do_kv(key, value) VALUES (?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?;
            match &enc {
                Encoded::Text(s) => stmt.execute(params![key.as_bytes(), s])?,
                Encoded::Blob(b) => stmt.execute(params![key.as_bytes(), b])?,
            };
            Ok(())
        })
    }

    /// Puts all entries or none of them.
    pub fn put_many(&mut self, entries: &[(String, KvValue)]) -> Result<(), StorageError> {
        for (k, v) in entries {
            check_key(k)?;
            encode(v)?;
        }
        self.transaction(|s| {
            for (k, v) in entries {
                s.put(k, v)?;
            }
            Ok(())
        })
    }

    /// Deletes a key; true if it existed.
    pub fn delete(&mut self, key: &str) -> Result<bool, StorageError> {
        check_key(key)?;
        self.write(|conn| {
            let n = conn
                .prepare_cached("DELETE FROM _do_kv WHERE key = ?1")?
                .execute([key.as_bytes()])?;
            Ok(n > 0)
        })
    }

    /// Deletes keys; returns how many existed.
    pub fn delete_many(&mut self, keys: &[String]) -> Result<usize, StorageError> {
        for k in keys {
            check_key(k)?;
        }
        self.transaction(|s| {
            let mut n = 0;
            for k in keys {
                n += usize::from(s.delete(k)?);
            }
            Ok(n)
        })
    }

    /// Entries ordered by key (descending with `reverse`).
    pub fn list(&mut self, opts: &ListOptions) -> Result<Vec<(String, KvValue)>, StorageError> {
        let mut lower: Option<Vec<u8>> = opts.start.as_ref().map(|s| s.as_bytes().to_vec());
        let mut upper: Option<Vec<u8>> = opts.end.as_ref().map(|s| s.as_bytes().to_vec());
        if let Some(p) = &opts.prefix {
            let p = p.as_bytes().to_vec();
            if lower.as_ref().is_none_or(|l| *l < p) {
                lower = Some(p.clone());
            }
            if let Some(pe) = prefix_end(&p)
                && upper.as_ref().is_none_or(|u| *u > pe)
            {
                upper = Some(pe);
            }
        }
        // No bound LIMIT: SQLite re-prepares a statement whose LIMIT is a parameter on every
        // run; the loop below stops reading instead.
        let limit = opts.limit.unwrap_or(usize::MAX);
        let sql = if opts.reverse {
            "SELECT key, value FROM _do_kv WHERE (?1 IS NULL OR key >= ?1) AND (?2 IS NULL OR key < ?2) \
             ORDER BY key DESC"
        } else {
            "SELECT key, value FROM _do_kv WHERE (?1 IS NULL OR key >= ?1) AND (?2 IS NULL OR key < ?2) \
             ORDER BY key ASC"
        };
        self.begin()?;
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params![lower, upper])?;
        let mut out = Vec::new();
        while out.len() < limit
            && let Some(row) = rows.next()?
        {
            let key = key_of(row.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?)?;
            out.push((key, decode(row.get_ref(1)?)?));
        }
        Ok(out)
    }

    /// Number of keys stored.
    pub fn kv_count(&mut self) -> Result<u64, StorageError> {
        self.begin()?;
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM _do_kv")?
            .query_row([], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
    }
}
