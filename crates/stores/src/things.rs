//! Things: JSON documents in collections, identified by `(collection, id)`. Every write is a
//! new version (history kept in `_do_thing_versions`); deletes are soft; a write can demand
//! the version it read (optimistic concurrency). The search index and the collection's count
//! move in the same transaction.

use crate::error::{Result, StoreError};
use crate::{MAX_THING_BYTES, ids, relationships, search};
use dotdo_storage::rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::{Map, Value};

/// Keys that describe a thing rather than belong to its data. On writes they are ignored
/// (`id` and `version` are read as the id and the expected version), so what a GET returned
/// can be sent back as it is.
pub const META_KEYS: &[&str] = &[
    "id",
    "version",
    "createdAt",
    "updatedAt",
    "deletedAt",
    "links",
    "actions",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Thing {
    pub collection: String,
    pub id: String,
    pub data: Map<String, Value>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
    /// Position for keyset pagination (stable, never reused).
    pub rowid: i64,
}

/// One entry of a thing's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    pub version: i64,
    /// `create`, `update`, `delete`.
    pub op: String,
    pub data: Value,
    pub at: i64,
}

/// The columns [`row`] reads, as a macro so that statements can be made with `concat!`.
macro_rules! thing_cols {
    () => {
        "rowid, type, id, data, version, created_at, updated_at, deleted_at"
    };
}
pub(crate) const COLS: &str = thing_cols!();

pub(crate) fn row(r: &Row<'_>) -> dotdo_storage::rusqlite::Result<Thing> {
    let data: String = r.get(3)?;
    Ok(Thing {
        rowid: r.get(0)?,
        collection: r.get(1)?,
        id: r.get(2)?,
        data: serde_json::from_str(&data).unwrap_or_default(),
        version: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
        deleted_at: r.get(7)?,
    })
}

/// A written body: the data, and the id and expected version it names.
#[derive(Debug, Clone, Default)]
pub struct Body {
    pub data: Map<String, Value>,
    pub id: Option<String>,
    pub version: Option<i64>,
}

/// Splits a written body into data and the meta it carries (`id`, `version`). Keys starting
/// with `$` and the other meta keys are dropped.
pub fn split_body(body: Value) -> Result<Body> {
    let Value::Object(mut obj) = body else {
        return Err(StoreError::bad("a thing is a JSON object"));
    };
    let id = match obj.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(StoreError::bad("`id` must be a string")),
    };
    let version = match obj.remove("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| StoreError::bad("`version` must be a whole number"))?,
        ),
    };
    obj.retain(|k, _| !k.starts_with('$') && !META_KEYS.contains(&k.as_str()));
    Ok(Body {
        data: obj,
        id,
        version,
    })
}

fn check_size(data: &Map<String, Value>) -> Result<String> {
    let text = serde_json::to_string(data).unwrap_or_default();
    if text.len() > MAX_THING_BYTES {
        return Err(StoreError::TooLarge(format!(
            "a thing is at most {MAX_THING_BYTES} bytes of JSON"
        )));
    }
    Ok(text)
}

fn find(c: &Connection, collection: &str, id: &str) -> Result<Option<Thing>> {
    // A constant text: formatting it on every read cost more than the lookup it names.
    Ok(c.prepare_cached(concat!(
        "SELECT ",
        thing_cols!(),
        " FROM _do_things WHERE type = ?1 AND id = ?2"
    ))?
    .query_row(params![collection, id], row)
    .optional()?)
}

/// A live (not deleted) thing.
pub fn get(c: &Connection, collection: &str, id: &str) -> Result<Option<Thing>> {
    Ok(find(c, collection, id)?.filter(|t| t.deleted_at.is_none()))
}

fn bump_count(c: &Connection, collection: &str, by: i64, now: i64) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO _do_collections(name, live, created_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT(name) DO UPDATE SET live = live + ?2",
    )?
    .execute(params![collection, by, now])?;
    Ok(())
}

fn record_version(c: &Connection, t: &Thing, op: &str, text: &str, at: i64) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO _do_thing_versions(type, id, version, op, data, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![t.collection, t.id, t.version, op, text, at])?;
    Ok(())
}

/// Creates a thing (id given or generated). An id held by a live thing is a conflict; one
/// held by a deleted thing is taken over as its next version.
pub fn create(
    c: &Connection,
    collection: &str,
    id: Option<&str>,
    data: Map<String, Value>,
    now: i64,
) -> Result<Thing> {
    ids::check_collection(collection)?;
    let text = check_size(&data)?;
    let id = match id {
        Some(id) => {
            ids::check_id(id)?;
            id.to_string()
        }
        None => loop {
            // Generated ids never repeat, but a client may have used one by hand.
            let id = ids::generate(c)?;
            if find(c, collection, &id)?.is_none() {
                break id;
            }
        },
    };
    let thing = match find(c, collection, &id)? {
        Some(t) if t.deleted_at.is_none() => {
            return Err(StoreError::Conflict(format!(
                "`{collection}/{id}` exists (version {})",
                t.version
            )));
        }
        Some(old) => {
            c.prepare_cached(
                "UPDATE _do_things SET data = ?2, version = version + 1, updated_at = ?3, \
                 deleted_at = NULL WHERE rowid = ?1",
            )?
            .execute(params![old.rowid, text, now])?;
            Thing {
                data,
                version: old.version + 1,
                updated_at: now,
                deleted_at: None,
                ..old
            }
        }
        None => {
            c.prepare_cached(
                "INSERT INTO _do_things(type, id, data, version, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, 1, ?4, ?4)",
            )?
            .execute(params![collection, id, text, now])?;
            Thing {
                collection: collection.to_string(),
                id,
                data,
                version: 1,
                created_at: now,
                updated_at: now,
                deleted_at: None,
                rowid: c.last_insert_rowid(),
            }
        }
    };
    record_version(c, &thing, "create", &text, now)?;
    bump_count(c, collection, 1, now)?;
    search::index(c, &thing)?;
    Ok(thing)
}

fn live_for_write(
    c: &Connection,
    collection: &str,
    id: &str,
    expected: Option<i64>,
) -> Result<Thing> {
    let t = get(c, collection, id)?
        .ok_or_else(|| StoreError::NotFound(format!("no thing `{collection}/{id}`")))?;
    if let Some(v) = expected
        && v != t.version
    {
        return Err(StoreError::Conflict(format!(
            "`{collection}/{id}` is at version {}, not {v}",
            t.version
        )));
    }
    Ok(t)
}

/// Replaces a thing's data (PUT).
pub fn replace(
    c: &Connection,
    collection: &str,
    id: &str,
    data: Map<String, Value>,
    expected: Option<i64>,
    now: i64,
) -> Result<Thing> {
    let old = live_for_write(c, collection, id, expected)?;
    write_version(c, old, data, now)
}

/// Merges a patch into a thing's data (PATCH, JSON merge patch: `null` removes a key).
pub fn merge(
    c: &Connection,
    collection: &str,
    id: &str,
    patch: Map<String, Value>,
    expected: Option<i64>,
    now: i64,
) -> Result<Thing> {
    let old = live_for_write(c, collection, id, expected)?;
    let mut data = Value::Object(old.data.clone());
    merge_patch(&mut data, &Value::Object(patch));
    let Value::Object(data) = data else {
        return Err(StoreError::bad("a thing is a JSON object"));
    };
    write_version(c, old, data, now)
}

fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn write_version(c: &Connection, old: Thing, data: Map<String, Value>, now: i64) -> Result<Thing> {
    let text = check_size(&data)?;
    c.prepare_cached(
        "UPDATE _do_things SET data = ?2, version = version + 1, updated_at = ?3 WHERE rowid = ?1",
    )?
    .execute(params![old.rowid, text, now])?;
    let t = Thing {
        data,
        version: old.version + 1,
        updated_at: now,
        ..old
    };
    record_version(c, &t, "update", &text, now)?;
    search::index(c, &t)?;
    Ok(t)
}

/// Soft-deletes a thing, and the local things its `cascade` relationships point to (and
/// theirs). Relationships from and to each deleted thing go. Returns what was deleted, the
/// asked-for thing first.
pub fn delete(
    c: &Connection,
    collection: &str,
    id: &str,
    expected: Option<i64>,
    now: i64,
) -> Result<Vec<Thing>> {
    let first = live_for_write(c, collection, id, expected)?;
    let mut deleted = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut todo = vec![first];
    while let Some(t) = todo.pop() {
        if !seen.insert(t.rowid) {
            continue;
        }
        let next = relationships::cascade_targets(c, &t)?;
        soft_delete(c, &t, now)?;
        for (coll, tid) in next {
            if let Some(target) = get(c, &coll, &tid)? {
                todo.push(target);
            }
        }
        relationships::forget_thing(c, &t)?;
        deleted.push(Thing {
            deleted_at: Some(now),
            version: t.version + 1,
            ..t
        });
    }
    Ok(deleted)
}

fn soft_delete(c: &Connection, t: &Thing, now: i64) -> Result<()> {
    c.prepare_cached(
        "UPDATE _do_things SET version = version + 1, updated_at = ?2, deleted_at = ?2 WHERE rowid = ?1",
    )?
    .execute(params![t.rowid, now])?;
    let gone = Thing {
        version: t.version + 1,
        ..t.clone()
    };
    record_version(c, &gone, "delete", "{}", now)?;
    bump_count(c, &t.collection, -1, now)?;
    search::unindex(c, t.rowid)?;
    Ok(())
}

/// A thing's versions, oldest first, after `after`. Deleted things keep their history.
pub fn history(
    c: &Connection,
    collection: &str,
    id: &str,
    after: i64,
    limit: usize,
) -> Result<Vec<Version>> {
    if find(c, collection, id)?.is_none() {
        return Err(StoreError::NotFound(format!(
            "no thing `{collection}/{id}`"
        )));
    }
    Ok(c.prepare_cached(
        "SELECT version, op, data, at FROM _do_thing_versions \
             WHERE type = ?1 AND id = ?2 AND version > ?3 ORDER BY version",
    )?
    .query_map(params![collection, id, after], |r| {
        let data: String = r.get(2)?;
        Ok(Version {
            version: r.get(0)?,
            op: r.get(1)?,
            data: serde_json::from_str(&data).unwrap_or(Value::Null),
            at: r.get(3)?,
        })
    })?
    .take(limit)
    .collect::<dotdo_storage::rusqlite::Result<_>>()?)
}

/// Live things per collection, by name.
pub fn collections(c: &Connection) -> Result<Vec<(String, i64)>> {
    Ok(
        c.prepare_cached("SELECT name, live FROM _do_collections ORDER BY name")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<dotdo_storage::rusqlite::Result<_>>()?,
    )
}

/// Live things in one collection.
pub fn count(c: &Connection, collection: &str) -> Result<i64> {
    Ok(
        c.prepare_cached("SELECT live FROM _do_collections WHERE name = ?1")?
            .query_row([collection], |r| r.get(0))
            .optional()?
            .unwrap_or(0),
    )
}

/// Declares an index on a data field of a collection, used by filters and sorts on it.
pub fn declare_index(c: &Connection, collection: &str, field: &str) -> Result<bool> {
    ids::check_collection(collection)?;
    ids::check_field(field)?;
    let exists = c
        .prepare_cached("SELECT 1 FROM _do_indexes WHERE collection = ?1 AND field = ?2")?
        .exists(params![collection, field])?;
    if exists {
        return Ok(false);
    }
    let n: i64 = c
        .prepare_cached("SELECT count(*) FROM _do_indexes")?
        .query_row([], |r| r.get(0))?;
    let name = format!("_do_ix_{n}");
    // Identifiers cannot be bound: the name is generated and the field was checked to be
    // letters, digits, `_` and dots. The expression is the one `query` filters and sorts on.
    let expr = crate::query::field_expr(field);
    c.execute_batch(&format!(
        "CREATE INDEX {name} ON _do_things(type, {expr}, rowid) WHERE deleted_at IS NULL"
    ))?;
    c.prepare_cached("INSERT INTO _do_indexes(collection, field, name) VALUES (?1, ?2, ?3)")?
        .execute(params![collection, field, name])?;
    Ok(true)
}

/// Declared indexes: (collection, field).
pub fn indexes(c: &Connection) -> Result<Vec<(String, String)>> {
    Ok(
        c.prepare_cached("SELECT collection, field FROM _do_indexes ORDER BY collection, field")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<dotdo_storage::rusqlite::Result<_>>()?,
    )
}
