//! The built-in class's store methods (things, relationships, search, objects, indexes), as
//! named JSON methods like the rest of `builtin.rs`. A write and the event announcing it
//! (`<Type>.created|updated|deleted`) are written in the same turn, so they commit together.
//!
//! Results are plain records; transports render them (REST adds URLs from the request).

use crate::builtin::{BusinessObject, ByName, args, page};
use dotdo_runtime::{ErrorKind, ObjectError};
use dotdo_storage::rusqlite::Connection;
use dotdo_stores::things::{self, Thing};
use dotdo_stores::{
    Cursor, ListQuery, Sort, StoreError, objects, query, relationships, schema, search,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

fn store_error(e: StoreError) -> ObjectError {
    match e {
        StoreError::BadRequest(m) => ObjectError::bad_request(m),
        StoreError::NotFound(m) => ObjectError::not_found(m),
        StoreError::Conflict(m) => ObjectError::new(ErrorKind::Conflict, m),
        StoreError::TooLarge(m) => ObjectError::new(ErrorKind::PayloadTooLarge, m),
        StoreError::Sqlite(e) => ObjectError::from(dotdo_storage::StorageError::from(e)),
    }
}

/// A thing as a record: meta and data apart, so no data key can shadow the meta.
pub fn record(t: Thing) -> Value {
    let fields = [
        ("collection", Value::String(t.collection)),
        ("id", Value::String(t.id)),
        ("version", t.version.into()),
        ("createdAt", t.created_at.into()),
        ("updatedAt", t.updated_at.into()),
        ("deletedAt", t.deleted_at.into()),
        ("data", Value::Object(t.data)),
    ];
    // Inserted one by one: collecting would sort them first, which costs more here.
    let mut out = Map::new();
    for (k, v) in fields {
        out.insert(k.into(), v);
    }
    Value::Object(out)
}

/// `contacts` → `Contact`, `line-items` → `LineItem`, `companies` → `Company`.
pub fn type_name(collection: &str) -> String {
    let singular = if let Some(s) = collection.strip_suffix("ies") {
        format!("{s}y")
    } else if ["sses", "shes", "ches", "xes", "zes"]
        .iter()
        .any(|end| collection.ends_with(end))
    {
        collection[..collection.len() - 2].to_string()
    } else if collection.ends_with('s') && !collection.ends_with("ss") {
        collection[..collection.len() - 1].to_string()
    } else {
        collection.to_string()
    };
    // A one-letter plural (`s`) keeps its name, so the type is never empty.
    let singular = if singular.is_empty() {
        collection.to_string()
    } else {
        singular
    };
    singular
        .split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut cs = p.chars();
            cs.next()
                .map(|f| f.to_ascii_uppercase().to_string() + cs.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Write {
    collection: String,
    id: Option<String>,
    #[serde(default)]
    body: Value,
    /// The version the writer read (`If-Match`); a body `version` counts too.
    version: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThingRef {
    collection: String,
    id: String,
    version: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct List {
    collection: String,
    #[serde(default)]
    filters: Vec<(String, String)>,
    sort: Option<String>,
    after: Option<String>,
    before: Option<String>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct History {
    collection: String,
    id: String,
    after: Option<i64>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Link {
    from: String,
    verb: String,
    to: String,
    data: Option<Value>,
    #[serde(default)]
    cascade: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Links {
    from: Option<String>,
    to: Option<String>,
    verb: Option<String>,
    after: Option<i64>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Related {
    collection: String,
    id: String,
    verb: String,
    after: Option<i64>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Search {
    q: String,
    #[serde(rename = "type")]
    collection: Option<String>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexReq {
    collection: String,
    field: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Register {
    name: String,
    relation: Option<String>,
    class: Option<String>,
    data: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectsPage {
    after: Option<String>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ById {
    id: i64,
}

impl BusinessObject {
    /// Runs `f` on the object's database in this turn (its writes join the turn's transaction).
    fn stores<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, ObjectError> {
        let out = self.cx.state().storage().with(|s| {
            s.internal(|c| {
                schema::ensure(c)?;
                Ok(f(c))
            })
        })?;
        out.map_err(store_error)
    }

    /// Like [`BusinessObject::stores`] for reads: the turn has nothing to commit unless the
    /// schema had to be created.
    fn stores_read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, ObjectError> {
        let out = self.cx.state().storage().with(|s| {
            s.internal_read(|c| {
                schema::ensure(c)?;
                Ok(f(c))
            })
        })?;
        out.map_err(store_error)
    }

    fn announce(&self, t: &Thing, verb: &str) -> Result<(), ObjectError> {
        let kind = format!("{}.{verb}", type_name(&t.collection));
        let subject = format!("{}/{}", t.collection, t.id);
        self.cx.send(&kind, Some(&subject), record(t.clone()))?;
        Ok(())
    }

    pub(crate) fn dispatch_stores(&self, method: &str, a: Value) -> Result<Value, ObjectError> {
        let now = self.cx.state().now_ms();
        match method {
            "things.create" => {
                let w: Write = args(method, a)?;
                let body = things::split_body(w.body).map_err(store_error)?;
                let id = w.id.or(body.id);
                let t = self
                    .stores(|c| things::create(c, &w.collection, id.as_deref(), body.data, now))?;
                self.announce(&t, "created")?;
                Ok(record(t))
            }
            "things.replace" | "things.merge" => {
                let w: Write = args(method, a)?;
                let id =
                    w.id.ok_or_else(|| ObjectError::bad_request("`id` is required"))?;
                let body = things::split_body(w.body).map_err(store_error)?;
                if body.id.as_deref().is_some_and(|b| b != id) {
                    return Err(ObjectError::bad_request(format!(
                        "the body's id `{}` is not the thing's id `{id}`",
                        body.id.unwrap_or_default()
                    )));
                }
                let expected = w.version.or(body.version);
                let (t, verbs) = self.stores(|c| {
                    let t = if method == "things.replace" {
                        things::replace(c, &w.collection, &id, body.data, expected, now)?
                    } else {
                        things::merge(c, &w.collection, &id, body.data, expected, now)?
                    };
                    let verbs = relationships::verbs(c, &format!("{}/{}", t.collection, t.id))?;
                    Ok((t, verbs))
                })?;
                self.announce(&t, "updated")?;
                let mut out = record(t);
                out["verbs"] = json!(verbs);
                Ok(out)
            }
            "things.delete" => {
                let r: ThingRef = args(method, a)?;
                let gone =
                    self.stores(|c| things::delete(c, &r.collection, &r.id, r.version, now))?;
                for t in &gone {
                    self.announce(t, "deleted")?;
                }
                Ok(json!({ "deleted": gone.into_iter().map(record).collect::<Vec<_>>() }))
            }
            "things.get" => {
                let r: ThingRef = args(method, a)?;
                let (t, verbs) = self.stores_read(|c| {
                    let t = things::get(c, &r.collection, &r.id)?.ok_or_else(|| {
                        StoreError::NotFound(format!("no thing `{}/{}`", r.collection, r.id))
                    })?;
                    let verbs = relationships::verbs(c, &format!("{}/{}", r.collection, r.id))?;
                    Ok((t, verbs))
                })?;
                let mut out = record(t);
                out["verbs"] = json!(verbs);
                Ok(out)
            }
            "things.list" => {
                let l: List = args(method, a)?;
                let sort = l
                    .sort
                    .as_deref()
                    .map(Sort::parse)
                    .transpose()
                    .map_err(store_error)?
                    .unwrap_or_default();
                let decode = |c: &Option<String>| {
                    c.as_deref()
                        .map(|t| Cursor::decode(t, &sort))
                        .transpose()
                        .map_err(store_error)
                };
                let q = ListQuery {
                    filters: l.filters,
                    after: decode(&l.after)?,
                    before: decode(&l.before)?,
                    limit: page(l.limit)?,
                    sort: sort.clone(),
                };
                let (p, count) = self.stores_read(|c| {
                    Ok((
                        query::list(c, &l.collection, &q)?,
                        things::count(c, &l.collection)?,
                    ))
                })?;
                Ok(json!({
                    "items": p.items.into_iter().map(record).collect::<Vec<_>>(),
                    "next": p.next.map(|c| c.encode(&sort)),
                    "prev": p.prev.map(|c| c.encode(&sort)),
                    "last": Cursor::End.encode(&sort),
                    "sort": sort.to_param(),
                    "count": count,
                }))
            }
            "things.history" => {
                let h: History = args(method, a)?;
                let limit = page(h.limit)?;
                let items = self.stores_read(|c| {
                    things::history(c, &h.collection, &h.id, h.after.unwrap_or(0), limit)
                })?;
                let cursor = (items.len() == limit)
                    .then(|| items.last().map(|v| v.version))
                    .flatten();
                Ok(json!({ "items": items, "cursor": cursor }))
            }
            "collections.list" => {
                let list = self.stores_read(things::collections)?;
                Ok(
                    json!({ "items": list.iter().map(|(n, c)| json!({ "name": n, "count": c, "type": type_name(n) })).collect::<Vec<_>>() }),
                )
            }
            "indexes.create" => {
                let r: IndexReq = args(method, a)?;
                let created = self.stores(|c| things::declare_index(c, &r.collection, &r.field))?;
                Ok(json!({ "collection": r.collection, "field": r.field, "created": created }))
            }
            "indexes.list" => {
                let list = self.stores_read(things::indexes)?;
                Ok(
                    json!({ "items": list.iter().map(|(c, f)| json!({ "collection": c, "field": f })).collect::<Vec<_>>() }),
                )
            }
            "relationships.create" => {
                let l: Link = args(method, a)?;
                let r = self.stores(|c| {
                    relationships::link(c, &l.from, &l.verb, &l.to, l.data.as_ref(), l.cascade, now)
                })?;
                Ok(json!(r))
            }
            "relationships.delete" => {
                let r: ById = args(method, a)?;
                if self.stores(|c| relationships::unlink(c, r.id))? {
                    Ok(json!({ "deleted": true }))
                } else {
                    Err(ObjectError::not_found(format!("no relationship {}", r.id)))
                }
            }
            "relationships.list" => {
                let l: Links = args(method, a)?;
                let limit = page(l.limit)?;
                let after = l.after.unwrap_or(0);
                let items = self.stores_read(|c| {
                    let ends = match (&l.from, &l.to) {
                        (Some(f), None) => relationships::Ends::From(f),
                        (None, Some(t)) => relationships::Ends::To(t),
                        (None, None) => relationships::Ends::All,
                        _ => return Err(StoreError::bad("give `from` or `to`, not both")),
                    };
                    relationships::list(c, ends, l.verb.as_deref(), after, limit)
                })?;
                let cursor = (items.len() == limit)
                    .then(|| items.last().map(|r| r.id))
                    .flatten();
                Ok(json!({ "items": items, "cursor": cursor }))
            }
            "things.related" => {
                let r: Related = args(method, a)?;
                let limit = page(r.limit)?;
                let from = format!("{}/{}", r.collection, r.id);
                let (links, targets) = self.stores_read(|c| {
                    if things::get(c, &r.collection, &r.id)?.is_none() {
                        return Err(StoreError::NotFound(format!("no thing `{from}`")));
                    }
                    let links = relationships::list(
                        c,
                        relationships::Ends::From(&from),
                        Some(&r.verb),
                        r.after.unwrap_or(0),
                        limit,
                    )?;
                    let mut targets = Vec::new();
                    for l in &links {
                        targets.push(match relationships::local(&l.to) {
                            Some((coll, id)) => things::get(c, coll, id)?.map(record),
                            None => None,
                        });
                    }
                    Ok((links, targets))
                })?;
                let cursor = (links.len() == limit)
                    .then(|| links.last().map(|l| l.id))
                    .flatten();
                let items: Vec<Value> = links
                    .iter()
                    .zip(targets)
                    .map(|(l, t)| json!({ "relationship": l, "thing": t }))
                    .collect();
                Ok(json!({ "items": items, "cursor": cursor }))
            }
            "search" => {
                let s: Search = args(method, a)?;
                if let Some(c) = &s.collection {
                    dotdo_stores::ids::check_collection(c).map_err(store_error)?;
                }
                let limit = match s.limit {
                    None => 20,
                    Some(n) if (1..=100).contains(&n) => n,
                    Some(_) => return Err(ObjectError::bad_request("limit must be 1 to 100")),
                };
                let hits =
                    self.stores_read(|c| search::search(c, &s.q, s.collection.as_deref(), limit))?;
                Ok(
                    json!({ "items": hits.into_iter().map(|h| json!({ "thing": record(h.thing), "rank": h.rank })).collect::<Vec<_>>() }),
                )
            }
            "objects.register" => {
                let r: Register = args(method, a)?;
                if !dotdo_runtime::valid_name(&r.name) {
                    return Err(ObjectError::bad_request(
                        "name must be an object name of 1 to 1024 bytes",
                    ));
                }
                let o = self.stores(|c| {
                    objects::register(
                        c,
                        &r.name,
                        r.relation.as_deref().unwrap_or("known"),
                        r.class.as_deref(),
                        r.data.as_ref(),
                        now,
                    )
                })?;
                Ok(json!(o))
            }
            "objects.list" => {
                let p: ObjectsPage = args(method, a)?;
                let limit = page(p.limit)?;
                let items = self
                    .stores_read(|c| objects::list(c, p.after.as_deref().unwrap_or(""), limit))?;
                let cursor = (items.len() == limit)
                    .then(|| items.last().map(|o| o.name.clone()))
                    .flatten();
                Ok(json!({ "items": items, "cursor": cursor }))
            }
            "objects.delete" => {
                let r: ByName = args(method, a)?;
                if self.stores(|c| objects::forget(c, &r.name))? {
                    Ok(json!({ "deleted": true }))
                } else {
                    Err(ObjectError::not_found(format!(
                        "no object `{}` in the registry",
                        r.name
                    )))
                }
            }
            other => Err(ObjectError::not_found(format!("no method named `{other}`"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::type_name;

    #[test]
    fn collection_type_names() {
        for (c, t) in [
            ("contacts", "Contact"),
            ("companies", "Company"),
            ("line-items", "LineItem"),
            ("addresses", "Address"),
            ("boxes", "Box"),
            ("news", "New"),
            ("glass", "Glass"),
            ("deal_stages", "DealStage"),
            ("s", "S"),
        ] {
            assert_eq!(type_name(c), t);
        }
    }
}
