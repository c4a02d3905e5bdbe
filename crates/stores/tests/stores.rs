//! The stores on a real SQLite file: versions and history, conflicts, soft delete, filters
//! and sorts, keyset cursors under concurrent inserts, cascade, search ranking, indexes.
#![allow(clippy::unwrap_used)]

use dotdo_storage::rusqlite::Connection;
use dotdo_stores::*;
use serde_json::{Map, Value, json};

fn db() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let c = Connection::open(dir.path().join("o.sqlite")).unwrap();
    c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;")
        .unwrap();
    schema::ensure(&c).unwrap();
    (dir, c)
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn every_write_is_a_version_and_stale_writes_conflict() {
    let (_d, c) = db();
    let t = things::create(
        &c,
        "contacts",
        Some("john"),
        obj(json!({"name": "John", "status": "lead"})),
        1,
    )
    .unwrap();
    assert_eq!(t.version, 1);
    let t = things::merge(
        &c,
        "contacts",
        "john",
        obj(json!({"status": "customer", "name": null})),
        Some(1),
        2,
    )
    .unwrap();
    assert_eq!(t.version, 2);
    assert_eq!(Value::Object(t.data.clone()), json!({"status": "customer"}));
    let e = things::replace(&c, "contacts", "john", obj(json!({"x": 1})), Some(1), 3).unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    things::replace(
        &c,
        "contacts",
        "john",
        obj(json!({"name": "J"})),
        Some(2),
        4,
    )
    .unwrap();
    let e = things::create(&c, "contacts", Some("john"), obj(json!({})), 5).unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)));
    let gone = things::delete(&c, "contacts", "john", None, 6).unwrap();
    assert_eq!(gone.len(), 1);
    assert!(things::get(&c, "contacts", "john").unwrap().is_none());
    assert_eq!(things::count(&c, "contacts").unwrap(), 0);
    let h = things::history(&c, "contacts", "john", 0, 100).unwrap();
    let ops: Vec<(i64, &str)> = h.iter().map(|v| (v.version, v.op.as_str())).collect();
    assert_eq!(
        ops,
        [(1, "create"), (2, "update"), (3, "update"), (4, "delete")]
    );
    assert_eq!(h[0].data, json!({"name": "John", "status": "lead"}));
    // The id can be used again; the history goes on.
    let back = things::create(
        &c,
        "contacts",
        Some("john"),
        obj(json!({"name": "Back"})),
        7,
    )
    .unwrap();
    assert_eq!(back.version, 5);
    assert_eq!(things::count(&c, "contacts").unwrap(), 1);
}

#[test]
fn generated_ids_are_short_unique_and_url_safe() {
    let (_d, c) = db();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let t = things::create(&c, "notes", None, Map::new(), 1).unwrap();
        assert!(
            t.id.len() <= 10 && t.id.chars().all(|ch| ch.is_ascii_alphanumeric()),
            "{}",
            t.id
        );
        assert!(seen.insert(t.id));
    }
    for bad in ["", "_x", "a/b", "a b", ".x"] {
        assert!(
            things::create(&c, "notes", Some(bad), Map::new(), 1).is_err(),
            "{bad}"
        );
    }
    for bad in ["Contacts", "1x", "rpc", "_x", ""] {
        assert!(
            things::create(&c, bad, None, Map::new(), 1).is_err(),
            "{bad}"
        );
    }
}

fn all_pages(c: &Connection, q: &ListQuery) -> Vec<String> {
    let mut q = q.clone();
    let mut out = Vec::new();
    loop {
        let page = query::list(c, "items", &q).unwrap();
        out.extend(page.items.iter().map(|t| t.id.clone()));
        match page.next {
            Some(cur) => q.after = Some(cur),
            None => return out,
        }
    }
}

#[test]
fn filters_and_sorts_on_data_fields() {
    let (_d, c) = db();
    for (i, (status, score)) in [("lead", 3), ("customer", 1), ("lead", 2), ("lead", 5)]
        .iter()
        .enumerate()
    {
        things::create(
            &c,
            "items",
            Some(&format!("i{i}")),
            obj(json!({"status": status, "score": score, "nested": {"n": 10 - i}})),
            i as i64,
        )
        .unwrap();
    }
    things::create(&c, "items", Some("nostatus"), obj(json!({"score": 4})), 9).unwrap();
    let q = ListQuery {
        filters: vec![("status".into(), "lead".into())],
        sort: Sort::parse("-score").unwrap(),
        limit: 2,
        ..Default::default()
    };
    assert_eq!(all_pages(&c, &q), ["i3", "i0", "i2"]);
    let q = ListQuery {
        filters: vec![("score".into(), "1".into())],
        limit: 10,
        ..Default::default()
    };
    assert_eq!(all_pages(&c, &q), ["i1"]);
    let q = ListQuery {
        sort: Sort::parse("nested.n").unwrap(),
        limit: 2,
        ..Default::default()
    };
    assert_eq!(
        all_pages(&c, &q),
        ["nostatus", "i3", "i2", "i1", "i0"],
        "missing values sort first"
    );
    // Backwards from the end: the last page.
    let q = ListQuery {
        sort: Sort::parse("id").unwrap(),
        before: Some(Cursor::End),
        limit: 2,
        ..Default::default()
    };
    let last = query::list(&c, "items", &q).unwrap();
    let ids: Vec<&str> = last.items.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["i3", "nostatus"]);
    assert!(last.next.is_none());
    let prev = query::list(
        &c,
        "items",
        &ListQuery {
            before: last.prev.clone(),
            ..q.clone()
        },
    )
    .unwrap();
    let ids: Vec<&str> = prev.items.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["i1", "i2"]);
    // A cursor of another sort is refused.
    let cur = last.prev.unwrap().encode(&Sort::parse("id").unwrap());
    assert!(Cursor::decode(&cur, &Sort::parse("-id").unwrap()).is_err());
    assert!(Cursor::decode("garbage", &Sort::default()).is_err());
}

#[test]
fn cursors_stay_exact_while_things_are_added() {
    let (_d, c) = db();
    for i in 0..500 {
        things::create(&c, "items", Some(&format!("a{i:04}")), Map::new(), i).unwrap();
    }
    let mut q = ListQuery {
        limit: 37,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut added = 0;
    loop {
        let page = query::list(&c, "items", &q).unwrap();
        seen.extend(page.items.iter().map(|t| t.id.clone()));
        // Inserts land both before (older createdAt) and after the reader's position.
        things::create(
            &c,
            "items",
            Some(&format!("b{added:04}")),
            Map::new(),
            1_000 + added,
        )
        .unwrap();
        things::create(&c, "items", Some(&format!("z{added:04}")), Map::new(), -1).unwrap();
        added += 1;
        match page.next {
            Some(cur) => q.after = Some(cur),
            None => break,
        }
    }
    let unique: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "nothing twice");
    for i in 0..500 {
        assert!(unique.contains(&format!("a{i:04}")), "a{i} seen");
    }
    assert!(
        !seen.iter().any(|s| s.starts_with('z')),
        "things before the cursor are not seen"
    );
}

#[test]
fn relationships_and_cascade() {
    let (_d, c) = db();
    things::create(
        &c,
        "companies",
        Some("acme"),
        obj(json!({"name": "Acme"})),
        1,
    )
    .unwrap();
    things::create(&c, "contacts", Some("ann"), obj(json!({"name": "Ann"})), 1).unwrap();
    things::create(&c, "contacts", Some("bob"), obj(json!({"name": "Bob"})), 1).unwrap();
    relationships::link(
        &c,
        "companies/acme",
        "employs",
        "contacts/ann",
        Some(&json!({"since": 2020})),
        true,
        2,
    )
    .unwrap();
    relationships::link(
        &c,
        "companies/acme",
        "employs",
        "contacts/bob",
        None,
        false,
        2,
    )
    .unwrap();
    relationships::link(
        &c,
        "contacts/ann",
        "worksAt",
        "companies/acme",
        None,
        false,
        2,
    )
    .unwrap();
    relationships::link(
        &c,
        "contacts/ann",
        "website",
        "https://ann.example",
        None,
        false,
        2,
    )
    .unwrap();
    assert_eq!(
        relationships::list(
            &c,
            relationships::Ends::From("companies/acme"),
            Some("employs"),
            0,
            10
        )
        .unwrap()
        .len(),
        2
    );
    assert_eq!(
        relationships::list(&c, relationships::Ends::To("companies/acme"), None, 0, 10).unwrap()[0]
            .from,
        "contacts/ann"
    );
    assert_eq!(
        relationships::verbs(&c, "contacts/ann").unwrap(),
        ["website", "worksAt"]
    );
    assert!(
        relationships::link(
            &c,
            "contacts/ann",
            "knows",
            "contacts/nobody",
            None,
            false,
            2
        )
        .is_err()
    );
    assert!(
        relationships::link(
            &c,
            "contacts/ann",
            "bad verb",
            "contacts/bob",
            None,
            false,
            2
        )
        .is_err()
    );
    assert!(
        relationships::link(
            &c,
            "contacts/ann",
            "history",
            "contacts/bob",
            None,
            false,
            2
        )
        .is_err(),
        "a thing's own routes are not verbs"
    );
    // Deleting the company deletes Ann (cascade) but not Bob; their relationships go.
    let gone = things::delete(&c, "companies", "acme", None, 3).unwrap();
    let ids: Vec<&str> = gone.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["acme", "ann"]);
    assert!(things::get(&c, "contacts", "bob").unwrap().is_some());
    assert!(
        relationships::list(&c, relationships::Ends::From("contacts/ann"), None, 0, 10)
            .unwrap()
            .is_empty()
    );
    assert!(
        relationships::list(&c, relationships::Ends::To("contacts/bob"), None, 0, 10)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn search_ranks_and_follows_writes() {
    let (_d, c) = db();
    things::create(
        &c,
        "notes",
        Some("n1"),
        obj(json!({"title": "Quarterly report", "body": {"text": "revenue grew"}})),
        1,
    )
    .unwrap();
    things::create(
        &c,
        "notes",
        Some("n2"),
        obj(json!({"title": "Report on report writing", "tags": ["report", "howto"]})),
        1,
    )
    .unwrap();
    things::create(
        &c,
        "tasks",
        Some("t1"),
        obj(json!({"title": "write the report"})),
        1,
    )
    .unwrap();
    let hits = search::search(&c, "report", None, 10).unwrap();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0].thing.id, "n2", "more mentions rank higher");
    let hits = search::search(&c, "revenue", Some("notes"), 10).unwrap();
    assert_eq!(hits.len(), 1, "a word in a nested field");
    assert!(
        search::search(&c, "report", Some("tasks"), 10)
            .unwrap()
            .len()
            == 1
    );
    things::merge(
        &c,
        "notes",
        "n1",
        obj(json!({"body": {"text": "costs fell"}})),
        None,
        2,
    )
    .unwrap();
    assert!(search::search(&c, "revenue", None, 10).unwrap().is_empty());
    things::delete(&c, "tasks", "t1", None, 3).unwrap();
    assert_eq!(search::search(&c, "writ*", None, 10).unwrap().len(), 1);
    assert_eq!(
        search::search(&c, "\"AND OR(", None, 10).unwrap().len(),
        0,
        "syntax is literal"
    );
}

#[test]
fn declared_indexes_serve_filters_and_sorts() {
    let (_d, c) = db();
    assert!(things::declare_index(&c, "contacts", "status").unwrap());
    assert!(!things::declare_index(&c, "contacts", "status").unwrap());
    assert!(things::declare_index(&c, "contacts", "bad field").is_err());
    let plan: Vec<String> = c
        .prepare(
            "EXPLAIN QUERY PLAN SELECT rowid FROM _do_things WHERE type = 'contacts' AND deleted_at IS NULL \
             AND ifnull(json_extract(data, '$.status'), -1.7976931348623157e308) IN ('lead', 'x') ORDER BY rowid",
        )
        .unwrap()
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(plan.iter().any(|p| p.contains("_do_ix_0")), "{plan:?}");
    assert_eq!(
        things::indexes(&c).unwrap(),
        [("contacts".to_string(), "status".to_string())]
    );
}
