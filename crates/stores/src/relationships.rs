//! Relationships `{ from, verb, to, data }` between things. Ends are references: `collection/id`
//! for a thing of this object, or an absolute URL (a thing of another object, or anything).

use crate::error::{Result, StoreError};
use crate::things::Thing;
use crate::{ids, things};
use dotdo_storage::rusqlite::{Connection, Row, params};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Relationship {
    pub id: i64,
    pub from: String,
    pub verb: String,
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Deleting `from` deletes `to` (a thing of this object) too.
    pub cascade: bool,
    pub created_at: i64,
}

/// A verb: `worksAt`, `owns`, `line-items` (1 to 64 letters, digits, `-`, `_`).
pub fn check_verb(verb: &str) -> Result<()> {
    let ok = (1..=64).contains(&verb.len())
        && verb.starts_with(|c: char| c.is_ascii_alphabetic())
        && verb
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(StoreError::bad(format!(
            "verb `{verb}` must be 1 to 64 letters, digits, `-` or `_`, starting with a letter"
        )));
    }
    // A thing's own routes and links.
    if matches!(verb, "history" | "edit" | "collection") {
        return Err(StoreError::bad(format!("`{verb}` is reserved, not a verb")));
    }
    Ok(())
}

/// The local thing a reference names, if it is of the form `collection/id`.
pub fn local(reference: &str) -> Option<(&str, &str)> {
    if reference.contains("://") {
        return None;
    }
    reference.split_once('/')
}

/// Checks a reference: a live local thing, or an http(s) URL.
fn check_ref(c: &Connection, what: &str, reference: &str) -> Result<()> {
    match local(reference) {
        Some((coll, id)) => {
            ids::check_collection(coll)?;
            ids::check_id(id)?;
            if things::get(c, coll, id)?.is_none() {
                return Err(StoreError::NotFound(format!(
                    "{what}: no thing `{reference}`"
                )));
            }
            Ok(())
        }
        None if (reference.starts_with("http://") || reference.starts_with("https://"))
            && reference.len() <= 2048 =>
        {
            Ok(())
        }
        None => Err(StoreError::bad(format!(
            "{what} must be `collection/id` or an http(s) URL, not `{reference}`"
        ))),
    }
}

const COLS: &str = "seq, from_ref, verb, to_ref, data, cascade, created_at";

fn row(r: &Row<'_>) -> dotdo_storage::rusqlite::Result<Relationship> {
    let data: Option<String> = r.get(4)?;
    Ok(Relationship {
        id: r.get(0)?,
        from: r.get(1)?,
        verb: r.get(2)?,
        to: r.get(3)?,
        data: data.and_then(|d| serde_json::from_str(&d).ok()),
        cascade: r.get::<_, i64>(5)? != 0,
        created_at: r.get(6)?,
    })
}

/// Links `from` to `to` with `verb` (once: linking again updates the data).
pub fn link(
    c: &Connection,
    from: &str,
    verb: &str,
    to: &str,
    data: Option<&Value>,
    cascade: bool,
    now: i64,
) -> Result<Relationship> {
    check_verb(verb)?;
    if local(from).is_none() {
        return Err(StoreError::bad(
            "`from` must be a thing of this object: `collection/id`",
        ));
    }
    check_ref(c, "from", from)?;
    check_ref(c, "to", to)?;
    if cascade && local(to).is_none() {
        return Err(StoreError::bad(
            "`cascade` needs `to` to be a thing of this object",
        ));
    }
    Ok(c.prepare_cached(&format!(
        "INSERT INTO _do_relationships(from_ref, verb, to_ref, data, cascade, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(from_ref, verb, to_ref) \
             DO UPDATE SET data = excluded.data, cascade = excluded.cascade RETURNING {COLS}"
    ))?
    .query_row(
        params![from, verb, to, data.map(Value::to_string), cascade, now],
        row,
    )?)
}

pub fn unlink(c: &Connection, id: i64) -> Result<bool> {
    Ok(
        c.prepare_cached("DELETE FROM _do_relationships WHERE seq = ?1")?
            .execute([id])?
            > 0,
    )
}

/// Which relationships a listing wants.
#[derive(Debug, Clone, Copy)]
pub enum Ends<'a> {
    /// Going out of this thing.
    From(&'a str),
    /// Coming into this thing or URL.
    To(&'a str),
    All,
}

/// Relationships by their ends, optionally of one verb, after `after`, oldest first.
pub fn list(
    c: &Connection,
    ends: Ends<'_>,
    verb: Option<&str>,
    after: i64,
    limit: usize,
) -> Result<Vec<Relationship>> {
    let (column, value) = match ends {
        Ends::From(r) => ("from_ref", Some(r)),
        Ends::To(r) => ("to_ref", Some(r)),
        Ends::All => ("from_ref", None),
    };
    // `column` is one of two fixed names.
    Ok(c.prepare_cached(&format!(
        "SELECT {COLS} FROM _do_relationships WHERE (?1 IS NULL OR {column} = ?1) \
             AND (?2 IS NULL OR verb = ?2) AND seq > ?3 ORDER BY seq"
    ))?
    .query_map(params![value, verb, after], row)?
    .take(limit)
    .collect::<dotdo_storage::rusqlite::Result<_>>()?)
}

/// The verbs going out of a thing (for its links).
pub fn verbs(c: &Connection, from: &str) -> Result<Vec<String>> {
    Ok(c.prepare_cached(
        "SELECT DISTINCT verb FROM _do_relationships WHERE from_ref = ?1 ORDER BY verb",
    )?
    .query_map([from], |r| r.get(0))?
    .collect::<dotdo_storage::rusqlite::Result<_>>()?)
}

/// Local things that `cascade` relationships from `t` point to.
pub(crate) fn cascade_targets(c: &Connection, t: &Thing) -> Result<Vec<(String, String)>> {
    let from = format!("{}/{}", t.collection, t.id);
    let refs: Vec<String> = c
        .prepare_cached("SELECT to_ref FROM _do_relationships WHERE from_ref = ?1 AND cascade = 1")?
        .query_map([from], |r| r.get(0))?
        .collect::<dotdo_storage::rusqlite::Result<_>>()?;
    Ok(refs
        .iter()
        .filter_map(|r| local(r).map(|(a, b)| (a.to_string(), b.to_string())))
        .collect())
}

/// Drops the relationships from and to a deleted thing.
pub(crate) fn forget_thing(c: &Connection, t: &Thing) -> Result<()> {
    let r = format!("{}/{}", t.collection, t.id);
    c.prepare_cached("DELETE FROM _do_relationships WHERE from_ref = ?1 OR to_ref = ?1")?
        .execute([r])?;
    Ok(())
}
