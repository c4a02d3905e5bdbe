//! Listing a collection: filters on data fields, a sort, and keyset pagination with opaque
//! cursors (a position `(sort value, rowid)`), so pages stay exact while things are added.

use crate::error::{Result, StoreError};
use crate::ids;
use crate::things::{COLS, Thing, row};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dotdo_storage::rusqlite::{Connection, ToSql, types::Value as Sql};
use serde_json::{Value, json};

/// Where things without the sorted field go: first (ascending).
const MISSING: f64 = f64::MIN;

#[derive(Debug, Clone, PartialEq)]
pub enum SortField {
    Id,
    CreatedAt,
    UpdatedAt,
    /// A data field path.
    Data(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    pub field: SortField,
    pub desc: bool,
}

impl Default for Sort {
    fn default() -> Self {
        Sort {
            field: SortField::CreatedAt,
            desc: false,
        }
    }
}

impl Sort {
    /// `createdAt`, `-updatedAt`, `id`, `name`, `-address.city`.
    pub fn parse(s: &str) -> Result<Sort> {
        let (desc, name) = match s.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let field = match name {
            "id" => SortField::Id,
            "createdAt" => SortField::CreatedAt,
            "updatedAt" => SortField::UpdatedAt,
            other => {
                ids::check_field(other)?;
                SortField::Data(other.to_string())
            }
        };
        Ok(Sort { field, desc })
    }

    pub fn to_param(&self) -> String {
        let name = match &self.field {
            SortField::Id => "id",
            SortField::CreatedAt => "createdAt",
            SortField::UpdatedAt => "updatedAt",
            SortField::Data(p) => p.as_str(),
        };
        format!("{}{name}", if self.desc { "-" } else { "" })
    }

    fn expr(&self) -> String {
        match &self.field {
            SortField::Id => "id".into(),
            SortField::CreatedAt => "created_at".into(),
            SortField::UpdatedAt => "updated_at".into(),
            SortField::Data(p) => field_expr(p),
        }
    }
}

/// The SQL expression of a data field: missing values count as the smallest number. The
/// path was checked (letters, digits, `_`, dots), so it is safe inside the literal.
pub(crate) fn field_expr(path: &str) -> String {
    format!("ifnull(json_extract(data, '$.{path}'), {MISSING:e})")
}

/// A position in a listing.
#[derive(Debug, Clone, PartialEq)]
pub enum Cursor {
    After(Value, i64),
    /// Past the last item (for the `last` page: everything before the end).
    End,
}

impl Cursor {
    /// Opaque text for URLs; it names the sort it belongs to.
    pub fn encode(&self, sort: &Sort) -> String {
        let v = match self {
            Cursor::After(v, r) => json!({ "s": sort.to_param(), "v": v, "r": r }),
            Cursor::End => json!({ "s": sort.to_param(), "end": true }),
        };
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    pub fn decode(text: &str, sort: &Sort) -> Result<Cursor> {
        let bad = || StoreError::bad(format!("cursor `{text}` is not one this listing gave out"));
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if v["s"].as_str() != Some(sort.to_param().as_str()) {
            return Err(StoreError::bad(format!(
                "cursor `{text}` belongs to another sort; start again from the first page"
            )));
        }
        if v["end"] == true {
            return Ok(Cursor::End);
        }
        let r = v["r"].as_i64().ok_or_else(bad)?;
        match &v["v"] {
            x @ (Value::String(_) | Value::Number(_)) => Ok(Cursor::After(x.clone(), r)),
            _ => Err(bad()),
        }
    }
}

/// A collection listing.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// `field = value` on data fields (the value as given in a URL: numbers and booleans
    /// match their JSON values, anything matches its text).
    pub filters: Vec<(String, String)>,
    pub sort: Sort,
    pub after: Option<Cursor>,
    pub before: Option<Cursor>,
    pub limit: usize,
}

/// A page and the cursors around it.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Thing>,
    /// Cursor after the last item, when more follow.
    pub next: Option<Cursor>,
    /// Cursor before the first item, when some precede.
    pub prev: Option<Cursor>,
}

fn sort_value(t: &Thing, sort: &Sort) -> Value {
    match &sort.field {
        SortField::Id => json!(t.id),
        SortField::CreatedAt => json!(t.created_at),
        SortField::UpdatedAt => json!(t.updated_at),
        SortField::Data(p) => {
            let mut parts = p.split('.');
            let first = parts.next().and_then(|k| t.data.get(k));
            let v = parts.fold(first, |at, k| at.and_then(|x| x.get(k)));
            match v {
                Some(Value::String(s)) => json!(s),
                Some(Value::Number(n)) => json!(n),
                Some(Value::Bool(b)) => json!(i64::from(*b)),
                Some(Value::Null) | None => json!(MISSING),
                // Objects and arrays sort by their JSON text, as SQLite compares them.
                Some(other) => json!(other.to_string()),
            }
        }
    }
}

fn to_sql(v: &Value) -> Sql {
    match v {
        Value::String(s) => Sql::Text(s.clone()),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Sql::Integer(i),
            None => Sql::Real(n.as_f64().unwrap_or(0.0)),
        },
        _ => Sql::Null,
    }
}

/// The typed reading of a filter value from a URL.
fn typed(v: &str) -> Sql {
    if let Ok(i) = v.parse::<i64>() {
        Sql::Integer(i)
    } else if let Ok(f) = v.parse::<f64>()
        && f.is_finite()
    {
        Sql::Real(f)
    } else {
        match v {
            "true" => Sql::Integer(1),
            "false" => Sql::Integer(0),
            _ => Sql::Text(v.to_string()),
        }
    }
}

/// One page of a collection's live things.
pub fn list(c: &Connection, collection: &str, q: &ListQuery) -> Result<Page> {
    ids::check_collection(collection)?;
    if q.after.is_some() && q.before.is_some() {
        return Err(StoreError::bad("give `after` or `before`, not both"));
    }
    let limit = q.limit.clamp(1, 1000);
    let expr = q.sort.expr();
    let mut sql = format!("SELECT {COLS} FROM _do_things WHERE type = ?1 AND deleted_at IS NULL");
    let mut args: Vec<Sql> = vec![Sql::Text(collection.to_string())];
    for (field, value) in &q.filters {
        ids::check_field(field)?;
        args.push(typed(value));
        args.push(Sql::Text(value.clone()));
        let n = args.len();
        sql.push_str(&format!(" AND {} IN (?{}, ?{n})", field_expr(field), n - 1));
    }
    // Going backwards (`before`) reads in reverse order and flips the page.
    let backwards = q.before.is_some();
    let desc = q.sort.desc != backwards;
    let (cmp, dir) = if desc { ("<", "DESC") } else { (">", "ASC") };
    match q.after.as_ref().or(q.before.as_ref()) {
        Some(Cursor::After(v, r)) => {
            args.push(to_sql(v));
            args.push(Sql::Integer(*r));
            let n = args.len();
            sql.push_str(&format!(" AND ({expr}, rowid) {cmp} (?{}, ?{n})", n - 1));
        }
        // `after=end` is past everything; `before=end` is everything.
        Some(Cursor::End) if !backwards => {
            return Ok(Page {
                items: Vec::new(),
                next: None,
                prev: Some(Cursor::End),
            });
        }
        Some(Cursor::End) | None => {}
    }
    sql.push_str(&format!(" ORDER BY {expr} {dir}, rowid {dir}"));
    let params: Vec<&dyn ToSql> = args.iter().map(|a| a as &dyn ToSql).collect();
    let mut stmt = c.prepare_cached(&sql)?;
    let mut items: Vec<Thing> = stmt
        .query_map(params.as_slice(), row)?
        .take(limit + 1)
        .collect::<dotdo_storage::rusqlite::Result<_>>()?;
    let more = items.len() > limit;
    items.truncate(limit);
    let cursor_of = |t: &Thing| Cursor::After(sort_value(t, &q.sort), t.rowid);
    if backwards {
        items.reverse();
        let to_end = matches!(q.before, Some(Cursor::End));
        Ok(Page {
            prev: if more {
                items.first().map(cursor_of)
            } else {
                None
            },
            next: if to_end {
                None
            } else {
                items.last().map(cursor_of)
            },
            items,
        })
    } else {
        Ok(Page {
            next: if more {
                items.last().map(cursor_of)
            } else {
                None
            },
            prev: if q.after.is_some() {
                items.first().map(cursor_of).or(Some(Cursor::End))
            } else {
                None
            },
            items,
        })
    }
}
