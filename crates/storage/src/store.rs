//! Opening an object's database, the turn's implicit transaction, nested explicit transactions,
//! the alarm slot, size accounting and WAL durability.

use crate::{StorageError, guard};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// When a committed transaction reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// `synchronous=NORMAL`: commits survive a process crash, not a power loss.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit fsyncs the WAL before returning.
    Full,
    /// Commits write the WAL without fsync; the caller makes them durable by calling
    /// [`Storage::wal_file`]'s `sync_data` (group commit) before acknowledging them.
    /// Checkpoints are run by [`Storage::checkpoint`] with a full sync.
    Deferred,
}

/// How to open an object's database.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    pub max_size_bytes: u64,
    pub sync: SyncMode,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            max_size_bytes: crate::DEFAULT_MAX_SIZE_BYTES,
            sync: SyncMode::Normal,
        }
    }
}

/// The alarm slot of an object (one alarm per object, SPEC §1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlarmState {
    /// When the alarm is due, epoch milliseconds.
    pub at: Option<i64>,
    /// When the alarm handler last completed, epoch milliseconds.
    pub last_fired_at: Option<i64>,
    /// Failed attempts of the pending alarm so far.
    pub retries: u32,
}

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS _do_kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _do_meta (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;
";

/// WAL pages (of 4 KiB) after which the WAL is copied into the database by
/// [`Storage::checkpoint`] (SQLite's automatic checkpoints are off: they ran inside a commit,
/// where the caller could not tell that this commit waits for the disk). A checkpoint syncs,
/// and the object waits meanwhile, so it should be rare: at SQLite's default of 1,000 pages a
/// hot object stalled so often that the stalls set its p99.
const CHECKPOINT_PAGES: i64 = 4096;
/// What a WAL is cut back to after a checkpoint, so a burst of writes does not leave every
/// object it touched with a WAL of `CHECKPOINT_PAGES`.
const WAL_SIZE_LIMIT_BYTES: i64 = 4 * 1024 * 1024;

/// What a failed `exec` is undone to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UndoPoint {
    /// Its own savepoint, `_do_exec`.
    Own,
    /// The open transaction, which held no writes before it.
    Transaction,
    /// The running segment's savepoint, with nothing written since.
    Segment,
}

/// One object's SQLite database.
pub struct Storage {
    pub(crate) conn: Connection,
    pub(crate) user_mode: Arc<AtomicBool>,
    pub(crate) max_size_bytes: u64,
    path: PathBuf,
    sync: SyncMode,
    /// Writes happened in the open transaction.
    dirty: bool,
    /// SQLite dropped the open transaction behind our back.
    aborted: bool,
    savepoint_depth: u32,
    /// The running segment began inside an open transaction: the value is whether the
    /// transaction held writes before it. Its savepoint is made at its first write.
    segment: Option<bool>,
    /// The running segment's savepoint exists (see [`Storage::begin_write`]).
    segment_savepoint: bool,
    /// The running segment wrote (see [`Storage::segment_wrote`]).
    segment_wrote: bool,
    /// Alarm slot changed in the open transaction: the caller must update its index.
    alarm_changed: bool,
    /// Frames in the WAL after the last commit (set by SQLite's WAL hook).
    wal_pages: Arc<AtomicI64>,
    wal: Option<Arc<File>>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("path", &self.path).finish()
    }
}

impl Storage {
    /// Opens (creating if needed) the database at `path` and applies the schema.
    pub fn open(path: &Path, opts: &StorageOptions) -> Result<Storage, StorageError> {
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let sync = match opts.sync {
            SyncMode::Normal => "NORMAL",
            SyncMode::Full => "FULL",
            SyncMode::Deferred => "OFF",
        };
        // synchronous first, so that even the switch to WAL follows the chosen mode.
        // One connection per database, in a process that holds the state directory's lock:
        // exclusive locking keeps the WAL index in memory and takes no file lock (two
        // `fcntl` calls) per transaction. It must come before the switch to WAL.
        conn.execute_batch(&format!(
            "PRAGMA locking_mode = EXCLUSIVE; PRAGMA synchronous = {sync}; \
             PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;"
        ))?;
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = 0; \
             PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES};"
        ))?;
        // After every commit SQLite reports the WAL's length: [`Storage::checkpoint_due`].
        let wal_pages = Arc::new(AtomicI64::new(0));
        let pages = wal_pages.clone();
        conn.wal_hook(Some(
            move |_: &mut rusqlite::hooks::Wal, n: std::ffi::c_int| {
                pages.store(i64::from(n), Ordering::Relaxed);
                Ok(())
            },
        ))?;
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let max_pages = (opts.max_size_bytes / page_size.max(512) as u64).max(16);
        conn.pragma_update(None, "max_page_count", max_pages as i64)?;
        conn.set_prepared_statement_cache_capacity(64);
        // Plans that do not depend on bound values. Without this, SQLite marks a statement
        // whose plan looked at a parameter (any `= ?` beside an ORDER BY, GROUP BY or
        // DISTINCT) as expired whenever its bindings are cleared, which the statement cache
        // does on every return: such statements were parsed and planned again on every call.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version < SCHEMA_VERSION {
            conn.execute_batch(&format!(
                "BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))?;
        }
        let user_mode = guard::install(&mut conn)?;
        Ok(Storage {
            conn,
            user_mode,
            max_size_bytes: opts.max_size_bytes,
            path: path.to_path_buf(),
            sync: opts.sync,
            dirty: false,
            aborted: false,
            savepoint_depth: 0,
            segment: None,
            segment_wrote: false,
            segment_savepoint: false,
            alarm_changed: false,
            wal_pages,
            wal: None,
        })
    }

    /// The bytes of a new, empty object database: WAL mode, schema applied. Writing them is
    /// much cheaper than letting SQLite create a database (no journal switch, no schema
    /// transaction). Built once through a scratch file in `scratch_dir`.
    pub fn empty_image(scratch_dir: &Path) -> Result<Vec<u8>, StorageError> {
        let path = scratch_dir.join(".empty-object.sqlite");
        remove_db_files(&path);
        let image = Storage::open(&path, &StorageOptions::default())
            .and_then(|s| s.close())
            .and_then(|()| Ok(std::fs::read(&path)?));
        remove_db_files(&path);
        image
    }

    /// Creates the database file of a new object from [`Storage::empty_image`]. With `durable`,
    /// the file and its directory entry are on disk before this returns.
    pub fn create_from_image(path: &Path, image: &[u8], durable: bool) -> Result<(), StorageError> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        f.write_all(image)?;
        if durable {
            f.sync_all()?;
            sync_dir_of(path)?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the turn's implicit transaction if none is open. Every operation calls it, so all
    /// writes of a turn commit together in [`Storage::commit`].
    pub(crate) fn begin(&mut self) -> Result<(), StorageError> {
        if self.conn.is_autocommit() {
            self.run_cached("BEGIN")?;
        }
        Ok(())
    }

    /// [`Storage::begin`] for an operation that may write: also makes the running segment's
    /// savepoint, so that its writes can be undone alone. Made here rather than when the
    /// segment begins, a segment that only reads costs no statements (reads are most turns).
    pub(crate) fn begin_write(&mut self) -> Result<(), StorageError> {
        self.begin()?;
        if self.segment.is_some() && !self.segment_savepoint && !self.aborted {
            self.run_cached("SAVEPOINT _do_segment")?;
            self.segment_savepoint = true;
        }
        Ok(())
    }

    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
        self.segment_wrote = true;
    }

    pub(crate) fn note_aborted(&mut self) {
        self.aborted = true;
        self.dirty = false;
        self.savepoint_depth = 0;
    }

    /// Runs a write inside the implicit transaction, mapping a full database to `SizeLimit`.
    pub(crate) fn write<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StorageError> {
        self.begin_write()?;
        let out = self.run(f)?;
        self.mark_dirty();
        Ok(out)
    }

    /// Runs `f` in the open transaction, mapping a full database to `SizeLimit`.
    fn run<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StorageError> {
        match f(&self.conn) {
            Ok(v) => Ok(v),
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) => {
                Err(StorageError::SizeLimit {
                    max_bytes: self.max_size_bytes,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Runs `f` on the connection inside the turn's implicit transaction, unguarded: for the
    /// runtime's own stores (tables named `_do_*`), never for user SQL, which goes through
    /// [`Storage::exec`]. The segment counts as written (its commit must reach the disk before
    /// a reply leaves).
    pub fn internal<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StorageError> {
        self.write(f)
    }

    /// Like [`Storage::internal`] for reads, which make no savepoint. Rows `f` changes all
    /// the same count as written; what it writes (a schema it found missing) stays even if
    /// the running segment is undone, unless the segment had written before.
    pub fn internal_read<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StorageError> {
        self.begin()?;
        let before = self.conn.total_changes();
        let out = self.run(f);
        if self.conn.total_changes() != before {
            self.mark_dirty();
            if let Some(was_dirty) = self.segment.as_mut()
                && !self.segment_savepoint
            {
                // Undoing the segment leaves these writes, to commit with the rest.
                *was_dirty = true;
            }
        }
        out
    }

    /// True if the open transaction holds writes.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Commits the open transaction. Returns true if it held writes (which, in `Deferred` mode,
    /// are not yet durable). Fails if SQLite had already rolled the transaction back.
    pub fn commit(&mut self) -> Result<bool, StorageError> {
        if self.aborted {
            self.aborted = false;
            self.rollback();
            return Err(StorageError::TransactionAborted);
        }
        if self.conn.is_autocommit() {
            return Ok(false);
        }
        let wrote = self.dirty;
        if let Err(e) = self
            .conn
            .prepare_cached("COMMIT")
            .and_then(|mut s| s.execute([]))
        {
            self.rollback();
            return Err(e.into());
        }
        self.dirty = false;
        self.savepoint_depth = 0;
        self.segment = None;
        self.segment_savepoint = false;
        Ok(wrote)
    }

    /// Discards the open transaction, if any.
    pub fn rollback(&mut self) {
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(path = %self.path.display(), error = %e, "rollback failed");
        }
        self.dirty = false;
        self.aborted = false;
        self.savepoint_depth = 0;
        self.segment = None;
        self.segment_savepoint = false;
        self.alarm_changed = false;
    }

    /// Starts a *segment*: a stretch of work that can be undone alone. Inside an open
    /// transaction (earlier work waiting for a shared commit) it is a savepoint, made at the
    /// segment's first write; otherwise the segment is the transaction it will open, and
    /// undoing it is a rollback.
    pub fn begin_segment(&mut self) -> Result<(), StorageError> {
        self.segment_wrote = false;
        self.segment_savepoint = false;
        if self.aborted {
            // Earlier work is already lost; undoing this segment must not hide that.
            self.segment = Some(false);
            return Ok(());
        }
        self.segment = (!self.conn.is_autocommit()).then_some(self.dirty);
        Ok(())
    }

    /// True if the running segment wrote anything (rows, schema, the alarm slot).
    pub fn segment_wrote(&self) -> bool {
        self.segment_wrote
    }

    /// Ends the segment, keeping its writes in the open transaction. If that fails, the
    /// transaction is given up, and the next [`Storage::commit`] says so.
    pub fn end_segment(&mut self) -> Result<(), StorageError> {
        let savepoint = std::mem::take(&mut self.segment_savepoint);
        if self.segment.take().is_some()
            && savepoint
            && !self.conn.is_autocommit()
            && let Err(e) = self.run_cached("RELEASE _do_segment")
        {
            self.give_up();
            return Err(e);
        }
        Ok(())
    }

    /// Ends the segment, undoing its writes and only them. If SQLite had already dropped the
    /// whole transaction, earlier segments are lost too, and the next [`Storage::commit`]
    /// says so.
    pub fn rollback_segment(&mut self) {
        let savepoint = std::mem::take(&mut self.segment_savepoint);
        let Some(was_dirty) = self.segment.take() else {
            return self.rollback();
        };
        if self.aborted || self.conn.is_autocommit() {
            // Stay aborted: the writes before this segment are gone as well.
            return self.give_up();
        }
        if !savepoint {
            // The segment wrote nothing (a write makes the savepoint first).
            self.dirty = was_dirty;
            return;
        }
        match self
            .conn
            .execute_batch("ROLLBACK TO _do_segment; RELEASE _do_segment")
        {
            Ok(()) => {
                self.dirty = was_dirty;
                self.savepoint_depth = 0;
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "segment rollback failed");
                self.give_up();
            }
        }
    }

    /// Drops the open transaction, if any, and marks it lost, so the next commit fails
    /// instead of acknowledging writes of earlier segments that are gone.
    fn give_up(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        self.note_aborted();
    }

    /// Where a failed `exec` goes back to. Its own savepoint costs two statements, so when
    /// nothing was written since an undo point that already exists (the open transaction,
    /// or the running segment's savepoint), that point serves.
    pub(crate) fn exec_undo_point(&self) -> UndoPoint {
        if self.aborted || self.savepoint_depth > 0 || self.conn.is_autocommit() {
            UndoPoint::Own
        } else if !self.dirty {
            UndoPoint::Transaction
        } else if self.segment_savepoint && !self.segment_wrote {
            UndoPoint::Segment
        } else {
            UndoPoint::Own
        }
    }

    /// Undoes a failed `exec` back to `point` (see [`Storage::exec_undo_point`]).
    pub(crate) fn undo_to(&mut self, point: UndoPoint) -> Result<(), StorageError> {
        match point {
            UndoPoint::Own => self
                .conn
                .execute_batch("ROLLBACK TO _do_exec; RELEASE _do_exec")?,
            // The transaction held no writes, so dropping it drops only the exec's.
            UndoPoint::Transaction => self.rollback(),
            // Back to the segment's start, which stays open for the rest of the segment.
            UndoPoint::Segment => self.run_cached("ROLLBACK TO _do_segment")?,
        }
        Ok(())
    }

    /// True if SQLite dropped the open transaction: the next commit fails.
    pub fn is_aborted(&self) -> bool {
        self.aborted
    }

    /// Runs one internal statement through the statement cache (parsing SQL is a large share
    /// of a small turn's cost).
    pub(crate) fn run_cached(&self, sql: &str) -> Result<(), StorageError> {
        self.conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    }

    /// Runs `f` as an explicit (nested) transaction: all its writes or none of them.
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Storage) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        self.begin_write()?;
        self.savepoint_depth += 1;
        let name = format!("_do_tx{}", self.savepoint_depth);
        self.run_cached(&format!("SAVEPOINT {name}"))?;
        let out = f(self);
        if self.conn.is_autocommit() {
            self.note_aborted();
            return out.and(Err(StorageError::TransactionAborted));
        }
        match out {
            Ok(v) => {
                self.run_cached(&format!("RELEASE {name}"))?;
                self.savepoint_depth -= 1;
                Ok(v)
            }
            Err(e) => {
                self.conn
                    .execute_batch(&format!("ROLLBACK TO {name}; RELEASE {name}"))?;
                self.savepoint_depth -= 1;
                Err(e)
            }
        }
    }

    // ---- alarm slot ----

    fn meta_get(&mut self, key: &str) -> Result<Option<i64>, StorageError> {
        self.begin()?;
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM _do_meta WHERE key = ?1")?
            .query_row([key], |r| r.get::<_, Option<i64>>(0))
            .optional()?
            .flatten())
    }

    fn meta_set(&mut self, key: &str, value: Option<i64>) -> Result<(), StorageError> {
        self.write(|c| {
            match value {
                Some(v) => c
                    .prepare_cached(
                        "INSERT INTO _do_meta(key, value) VALUES (?1, ?2) \
                         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    )?
                    .execute(params![key, v])?,
                None => c
                    .prepare_cached("DELETE FROM _do_meta WHERE key = ?1")?
                    .execute([key])?,
            };
            Ok(())
        })
    }

    /// The alarm slot as stored.
    pub fn alarm_state(&mut self) -> Result<AlarmState, StorageError> {
        Ok(AlarmState {
            at: self.meta_get("alarm_at")?,
            last_fired_at: self.meta_get("alarm_last_fired_at")?,
            retries: self
                .meta_get("alarm_retries")?
                .map_or(0, |r| u32::try_from(r).unwrap_or(0)),
        })
    }

    pub fn get_alarm(&mut self) -> Result<Option<i64>, StorageError> {
        self.meta_get("alarm_at")
    }

    /// Sets the alarm (replacing any other) and resets its retry count.
    pub fn set_alarm(&mut self, at_ms: i64) -> Result<(), StorageError> {
        self.meta_set("alarm_at", Some(at_ms))?;
        self.meta_set("alarm_retries", None)?;
        self.alarm_changed = true;
        Ok(())
    }

    pub fn delete_alarm(&mut self) -> Result<(), StorageError> {
        self.meta_set("alarm_at", None)?;
        self.meta_set("alarm_retries", None)?;
        self.alarm_changed = true;
        Ok(())
    }

    /// Records a failed alarm attempt: the alarm is due again at `retry_at`.
    pub fn alarm_failed(&mut self, retries: u32, retry_at: i64) -> Result<(), StorageError> {
        self.meta_set("alarm_at", Some(retry_at))?;
        self.meta_set("alarm_retries", Some(i64::from(retries)))?;
        self.alarm_changed = true;
        Ok(())
    }

    /// Records a completed alarm run at `now`.
    pub fn alarm_fired(&mut self, now: i64) -> Result<(), StorageError> {
        self.meta_set("alarm_last_fired_at", Some(now))
    }

    /// Returns and clears the "alarm slot changed" mark of the open transaction.
    pub fn take_alarm_changed(&mut self) -> bool {
        std::mem::take(&mut self.alarm_changed)
    }

    // ---- whole database ----

    /// Database size in bytes (pages in use times page size).
    pub fn size_bytes(&mut self) -> Result<u64, StorageError> {
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok(u64::try_from(pages * size).unwrap_or(0))
    }

    /// Deletes everything: KV entries, the alarm and every user table, view and trigger.
    pub fn delete_all(&mut self) -> Result<(), StorageError> {
        self.begin()?;
        let objects: Vec<(String, String)> = {
            let mut stmt = self.conn.prepare(
                "SELECT type, name FROM sqlite_schema WHERE type IN ('table','view','trigger') \
                 AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_do\\_%' ESCAPE '\\'",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        self.write(|c| {
            for (kind, name) in &objects {
                // Names come from sqlite_schema, not from a request; quoted as identifiers.
                let quoted = name.replace('"', "\"\"");
                c.execute_batch(&format!("DROP {kind} IF EXISTS \"{quoted}\""))?;
            }
            c.execute_batch("DELETE FROM _do_kv; DELETE FROM _do_meta;")?;
            Ok(())
        })?;
        self.alarm_changed = true;
        Ok(())
    }

    // ---- durability ----

    pub fn sync_mode(&self) -> SyncMode {
        self.sync
    }

    /// A handle on the WAL file; `sync_data` on it makes every commit so far durable.
    /// Used by the runtime's group commit in `Deferred` mode.
    pub fn wal_file(&mut self) -> Result<Arc<File>, StorageError> {
        if let Some(f) = &self.wal {
            return Ok(f.clone());
        }
        let mut p = self.path.clone().into_os_string();
        p.push("-wal");
        let f = Arc::new(File::open(PathBuf::from(p))?);
        self.wal = Some(f.clone());
        Ok(f)
    }

    /// True if the WAL has grown enough for [`Storage::checkpoint`] to copy it, outside a
    /// transaction. A checkpoint waits for the disk, so the caller may want to run it where
    /// that blocks nothing else.
    pub fn checkpoint_due(&self) -> bool {
        self.conn.is_autocommit() && self.wal_pages.load(Ordering::Relaxed) >= CHECKPOINT_PAGES
    }

    /// Copies the WAL into the database when it has grown, syncing the WAL before and the
    /// database after, so the WAL can be reused safely. Must be called outside a transaction.
    pub fn checkpoint(&mut self) -> Result<(), StorageError> {
        if !self.checkpoint_due() {
            return Ok(());
        }
        // `Deferred` mode runs with syncs off; a checkpoint needs them.
        let deferred = self.sync == SyncMode::Deferred;
        if deferred {
            self.conn.execute_batch("PRAGMA synchronous = FULL")?;
        }
        let res = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if deferred {
            self.conn.execute_batch("PRAGMA synchronous = OFF")?;
        }
        res?;
        self.wal_pages.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Makes the directory entries of the database and its WAL durable; needed once per open
    /// in `Deferred` mode, where SQLite itself never syncs (the WAL is re-created on open).
    pub fn sync_dir(&self) -> Result<(), StorageError> {
        sync_dir_of(&self.path)
    }

    /// Commits nothing new, makes everything durable and closes the database.
    pub fn close(mut self) -> Result<(), StorageError> {
        self.rollback();
        if self.sync == SyncMode::Deferred {
            self.conn.execute_batch("PRAGMA synchronous = FULL")?;
        }
        self.wal = None;
        self.conn
            .close()
            .map_err(|(_, e)| StorageError::Internal(e))
    }
}

fn sync_dir_of(path: &Path) -> Result<(), StorageError> {
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn remove_db_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}
