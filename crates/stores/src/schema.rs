//! The stores' tables. Every statement is idempotent; the newest table's presence says the
//! schema is current, so objects of older versions get new tables on first use.

use dotdo_storage::rusqlite::{self, Connection};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS _do_things (
  rowid INTEGER PRIMARY KEY,
  type TEXT NOT NULL,
  id TEXT NOT NULL,
  data TEXT NOT NULL,
  version INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  deleted_at INTEGER,
  UNIQUE (type, id)
);
CREATE INDEX IF NOT EXISTS _do_things_created ON _do_things(type, created_at, rowid) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS _do_things_updated ON _do_things(type, updated_at, rowid) WHERE deleted_at IS NULL;
CREATE TABLE IF NOT EXISTS _do_thing_versions (
  type TEXT NOT NULL,
  id TEXT NOT NULL,
  version INTEGER NOT NULL,
  op TEXT NOT NULL,
  data TEXT NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY (type, id, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _do_collections (
  name TEXT PRIMARY KEY,
  live INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _do_indexes (
  collection TEXT NOT NULL,
  field TEXT NOT NULL,
  name TEXT NOT NULL,
  PRIMARY KEY (collection, field)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _do_relationships (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  from_ref TEXT NOT NULL,
  verb TEXT NOT NULL,
  to_ref TEXT NOT NULL,
  data TEXT,
  cascade INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  UNIQUE (from_ref, verb, to_ref)
);
CREATE INDEX IF NOT EXISTS _do_relationships_in ON _do_relationships(to_ref, verb);
CREATE VIRTUAL TABLE IF NOT EXISTS _do_search USING fts5(type UNINDEXED, body, content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 2');
CREATE TABLE IF NOT EXISTS _do_objects (
  name TEXT PRIMARY KEY,
  relation TEXT NOT NULL,
  class TEXT,
  data TEXT,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _do_ids (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
";

/// Creates the stores' tables if this object lacks any.
pub fn ensure(c: &Connection) -> rusqlite::Result<()> {
    // Runs before every store call: a cached statement on one of the tables costs far less
    // than a look through `sqlite_master`, and fails only when the schema is missing.
    let present = c
        .prepare_cached("SELECT 1 FROM _do_ids LIMIT 0")
        .and_then(|mut s| s.exists([]));
    if present.is_err() {
        c.execute_batch(SCHEMA)?;
    }
    Ok(())
}
