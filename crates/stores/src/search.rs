//! Full-text search over things (FTS5). A thing's text is every string and number in its
//! data (nested too) and its id; it is written with the thing, in the same transaction.
//! The FTS5 table is contentless (`content=''`, with deletes), keyed by the thing's rowid.

use crate::error::{Result, StoreError};
use crate::things::{COLS, Thing, row};
use dotdo_storage::rusqlite::{Connection, params};
use serde_json::Value;

fn text_of(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        Value::Number(n) => {
            out.push_str(&n.to_string());
            out.push(' ');
        }
        Value::Array(a) => a.iter().for_each(|x| text_of(x, out)),
        Value::Object(o) => o.values().for_each(|x| text_of(x, out)),
        Value::Bool(_) | Value::Null => {}
    }
}

pub(crate) fn index(c: &Connection, t: &Thing) -> Result<()> {
    let mut body = String::new();
    body.push_str(&t.id);
    body.push(' ');
    for v in t.data.values() {
        text_of(v, &mut body);
    }
    unindex(c, t.rowid)?;
    c.prepare_cached("INSERT INTO _do_search(rowid, type, body) VALUES (?1, ?2, ?3)")?
        .execute(params![t.rowid, t.collection, body])?;
    Ok(())
}

pub(crate) fn unindex(c: &Connection, rowid: i64) -> Result<()> {
    c.prepare_cached("DELETE FROM _do_search WHERE rowid = ?1")?
        .execute([rowid])?;
    Ok(())
}

/// Turns what a person typed into an FTS5 query: every word must appear (as a prefix when it
/// ends in `*`); FTS5 syntax in the text is taken literally.
fn fts_query(q: &str) -> Option<String> {
    let terms: Vec<String> = q
        .split_whitespace()
        .filter_map(|w| {
            let (word, prefix) = match w.strip_suffix('*') {
                Some(x) => (x, true),
                None => (w, false),
            };
            let clean: String = word
                .chars()
                .filter(|c| *c != '"' && !c.is_control())
                .collect();
            (!clean.is_empty()).then(|| format!("\"{clean}\"{}", if prefix { "*" } else { "" }))
        })
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

/// A search hit: the thing and its rank (bm25; lower is better). The index keeps no copy of
/// the text (contentless), so writes stay small.
#[derive(Debug, Clone)]
pub struct Hit {
    pub thing: Thing,
    pub rank: f64,
}

/// Things matching `q`, best first, optionally of one collection.
pub fn search(c: &Connection, q: &str, collection: Option<&str>, limit: usize) -> Result<Vec<Hit>> {
    let Some(query) = fts_query(q) else {
        return Err(StoreError::bad("`q` needs at least one word"));
    };
    let sql = format!(
        "SELECT {}, bm25(_do_search) AS rank \
         FROM _do_search JOIN _do_things t ON t.rowid = _do_search.rowid \
         WHERE _do_search MATCH ?1 AND (?2 IS NULL OR t.type = ?2) \
         AND t.deleted_at IS NULL ORDER BY rank",
        COLS.split(", ")
            .map(|c| format!("t.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let hits = stmt
        .query_map(params![query, collection], |r| {
            Ok(Hit {
                thing: row(r)?,
                rank: r.get(8)?,
            })
        })?
        .take(limit)
        .collect::<dotdo_storage::rusqlite::Result<_>>();
    // What FTS5 cannot read in a query is the asker's mistake, not the server's.
    hits.map_err(|e| match e {
        dotdo_storage::rusqlite::Error::SqliteFailure(_, Some(m)) if m.contains("fts5") => {
            StoreError::bad(format!("search query: {m}"))
        }
        other => StoreError::Sqlite(other),
    })
}

#[cfg(test)]
mod tests {
    use super::fts_query;

    #[test]
    fn queries_are_literal_words() {
        assert_eq!(fts_query("ann smith").unwrap(), "\"ann\" \"smith\"");
        assert_eq!(fts_query("acm*").unwrap(), "\"acm\"*");
        assert_eq!(fts_query("a\"b OR").unwrap(), "\"ab\" \"OR\"");
        assert!(fts_query("  ").is_none());
        assert_eq!(fts_query("a\u{0}b").unwrap(), "\"ab\"");
    }
}
