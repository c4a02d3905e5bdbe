//! The host catalog: every object this node has created, its class and its next alarm.
//!
//! It is an index over the objects' own databases, which stay the source of truth: an alarm is
//! written here before the object's transaction commits, so after a crash the catalog may hold
//! an alarm the object no longer has (the object checks and ignores it) but never misses one.
//!
//! In `fsync` durability the catalog's commits do not sync either: like the objects' WALs, its
//! WAL is synced by the group-commit flusher, before the object WALs of the same round, and no
//! reply is released before that. (Syncing the catalog inline cost one fsync per alarm change,
//! under one lock: it capped `$.do` at a few hundred per second.)

use crate::host::ObjectKey;
use crate::id::ObjectId;
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

pub(crate) struct Catalog {
    conn: Mutex<Connection>,
    /// Commits leave syncing to the flusher (`fsync` durability).
    deferred: bool,
    /// Written since the flusher last synced the WAL.
    unsynced: AtomicBool,
    wal_path: PathBuf,
    wal: OnceLock<File>,
}

/// How the catalog's commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CatalogSync {
    /// They survive a process crash (`normal` durability).
    Normal,
    /// Each commit syncs.
    Full,
    /// The group-commit flusher syncs them before it releases any reply (`fsync` durability).
    Flusher,
}

/// One row of the catalog, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    pub namespace: String,
    pub id: ObjectId,
    pub name: Option<String>,
    pub class: String,
    pub created_at: i64,
    pub alarm_at: Option<i64>,
}

impl Catalog {
    /// Opens the catalog. Commits sync as `sync` says; with [`CatalogSync::Flusher`] they are
    /// made durable by [`Catalog::sync_if_written`].
    pub(crate) fn open(path: &Path, sync: CatalogSync) -> rusqlite::Result<Catalog> {
        let conn = Connection::open(path)?;
        // Cached statements keep their plans (see `dotdo_storage::Storage::open`).
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        let deferred = sync == CatalogSync::Flusher;
        // NORMAL: commits do not sync; checkpoints sync the WAL before they copy it.
        let sync = if sync == CatalogSync::Full {
            "FULL"
        } else {
            "NORMAL"
        };
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {sync};
             PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS objects (
                ns TEXT NOT NULL,
                id BLOB NOT NULL,
                name TEXT,
                class TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                alarm_at INTEGER,
                PRIMARY KEY (ns, id)
             ) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS objects_alarm ON objects(alarm_at) WHERE alarm_at IS NOT NULL;"
        ))?;
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        Ok(Catalog {
            conn: Mutex::new(conn),
            deferred,
            unsynced: AtomicBool::new(false),
            wal_path: PathBuf::from(wal_path),
            wal: OnceLock::new(),
        })
    }

    fn written(&self) {
        if self.deferred {
            self.unsynced.store(true, Ordering::Release);
        }
    }

    /// True if a commit since the last sync is not yet durable.
    pub(crate) fn is_unsynced(&self) -> bool {
        self.unsynced.load(Ordering::Acquire)
    }

    /// Makes every commit so far durable, if any is not yet.
    pub(crate) fn sync_if_written(&self) -> std::io::Result<()> {
        if !self.unsynced.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let synced = match self.wal.get() {
            Some(f) => f.sync_data(),
            None => File::open(&self.wal_path).and_then(|f| {
                let r = f.sync_data();
                let _ = self.wal.set(f);
                r
            }),
        };
        if synced.is_err() {
            self.unsynced.store(true, Ordering::Release);
        }
        synced
    }

    pub(crate) fn register(
        &self,
        key: &ObjectKey,
        name: Option<&str>,
        class: &str,
        now: i64,
    ) -> rusqlite::Result<()> {
        self.conn
            .lock()
            .prepare_cached(
                "INSERT INTO objects(ns, id, name, class, created_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT(ns, id) DO NOTHING",
            )?
            .execute(params![&*key.ns, key.id.as_bytes(), name, class, now])?;
        self.written();
        Ok(())
    }

    pub(crate) fn set_alarm(&self, key: &ObjectKey, at: Option<i64>) -> rusqlite::Result<()> {
        self.conn
            .lock()
            .prepare_cached("UPDATE objects SET alarm_at = ?3 WHERE ns = ?1 AND id = ?2")?
            .execute(params![&*key.ns, key.id.as_bytes(), at])?;
        self.written();
        Ok(())
    }

    pub(crate) fn name_of(&self, key: &ObjectKey) -> rusqlite::Result<Option<String>> {
        Ok(self
            .conn
            .lock()
            .prepare_cached("SELECT name FROM objects WHERE ns = ?1 AND id = ?2")?
            .query_row(params![&*key.ns, key.id.as_bytes()], |r| {
                r.get::<_, Option<String>>(0)
            })
            .optional()?
            .flatten())
    }

    /// Every pending alarm, for the scheduler at boot.
    pub(crate) fn alarms(&self) -> rusqlite::Result<Vec<(ObjectKey, i64)>> {
        let conn = self.conn.lock();
        let mut stmt =
            conn.prepare("SELECT ns, id, alarm_at FROM objects WHERE alarm_at IS NOT NULL")?;
        let rows = stmt.query_map([], |r| {
            let ns: String = r.get(0)?;
            let id: Vec<u8> = r.get(1)?;
            let at: i64 = r.get(2)?;
            Ok((ns, id, at))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (ns, id, at) = row?;
            if let Ok(id) = <[u8; 32]>::try_from(id.as_slice()) {
                out.push((
                    ObjectKey {
                        ns: Arc::from(ns),
                        id: ObjectId::from_bytes(id),
                    },
                    at,
                ));
            }
        }
        Ok(out)
    }

    /// Objects of a namespace in id order, after `after` (keyset paging).
    pub(crate) fn list(
        &self,
        ns: &str,
        after: Option<ObjectId>,
        limit: usize,
    ) -> rusqlite::Result<Vec<CatalogEntry>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, class, created_at, alarm_at FROM objects \
             WHERE ns = ?1 AND (?2 IS NULL OR id > ?2) ORDER BY id",
        )?;
        let after = after.map(|a| a.as_bytes().to_vec());
        let rows = stmt.query_map(params![ns, after], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<i64>>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows.take(limit) {
            let (id, name, class, created_at, alarm_at) = row?;
            if let Ok(id) = <[u8; 32]>::try_from(id.as_slice()) {
                out.push(CatalogEntry {
                    namespace: ns.to_string(),
                    id: ObjectId::from_bytes(id),
                    name,
                    class,
                    created_at,
                    alarm_at,
                });
            }
        }
        Ok(out)
    }

    pub(crate) fn count(&self, ns: &str) -> rusqlite::Result<u64> {
        let n: i64 = self
            .conn
            .lock()
            .prepare_cached("SELECT count(*) FROM objects WHERE ns = ?1")?
            .query_row([ns], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
