//! The registry of objects this object created or knows (children, shards, clones, peers).

use crate::error::{Result, StoreError};
use dotdo_storage::rusqlite::{Connection, params};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KnownObject {
    pub name: String,
    /// `child`, `shard`, `clone`, `known`.
    pub relation: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    pub created_at: i64,
}

const RELATIONS: &[&str] = &["child", "shard", "clone", "known"];

/// Records (or updates) an object in the registry.
pub fn register(
    c: &Connection,
    name: &str,
    relation: &str,
    class: Option<&str>,
    data: Option<&Value>,
    now: i64,
) -> Result<KnownObject> {
    if !RELATIONS.contains(&relation) {
        return Err(StoreError::bad(format!(
            "relation `{relation}` is not one of {}",
            RELATIONS.join(", ")
        )));
    }
    c.prepare_cached(
        "INSERT INTO _do_objects(name, relation, class, data, created_at) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT(name) DO UPDATE SET relation = excluded.relation, class = excluded.class, \
         data = excluded.data",
    )?
    .execute(params![name, relation, class, data.map(Value::to_string), now])?;
    get(c, name)?.ok_or_else(|| StoreError::NotFound(format!("no object `{name}`")))
}

fn row(r: &dotdo_storage::rusqlite::Row<'_>) -> dotdo_storage::rusqlite::Result<KnownObject> {
    let data: Option<String> = r.get(3)?;
    Ok(KnownObject {
        name: r.get(0)?,
        relation: r.get(1)?,
        class: r.get(2)?,
        data: data.and_then(|d| serde_json::from_str(&d).ok()),
        created_at: r.get(4)?,
    })
}

pub fn get(c: &Connection, name: &str) -> Result<Option<KnownObject>> {
    use dotdo_storage::rusqlite::OptionalExtension;
    Ok(c.prepare_cached(
        "SELECT name, relation, class, data, created_at FROM _do_objects WHERE name = ?1",
    )?
    .query_row([name], row)
    .optional()?)
}

pub fn list(c: &Connection, after: &str, limit: usize) -> Result<Vec<KnownObject>> {
    Ok(c
        .prepare_cached(
            "SELECT name, relation, class, data, created_at FROM _do_objects WHERE name > ?1 ORDER BY name",
        )?
        .query_map([after], row)?
        .take(limit)
        .collect::<dotdo_storage::rusqlite::Result<_>>()?)
}

pub fn forget(c: &Connection, name: &str) -> Result<bool> {
    Ok(c.prepare_cached("DELETE FROM _do_objects WHERE name = ?1")?
        .execute([name])?
        > 0)
}
