//! The business object's REST surface on the real binary with a plain HTTP client: 10,000
//! things walked by following `links.next` only, every link resolving, optimistic
//! concurrency, history, search in nested fields, bad input, and the sync stream resumed
//! mid-way without losing or repeating a change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::sink::send;
use common::*;

use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Every absolute URL a response offers: `$id`, `$type`, `$context` and `links` values.
fn urls(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                match (k.as_str(), x) {
                    ("$id" | "$type" | "$context", Value::String(s)) if s.starts_with("http") => {
                        out.push(s.clone())
                    }
                    ("links", Value::Object(l)) => {
                        out.extend(l.values().filter_map(|u| u.as_str().map(str::to_string)))
                    }
                    ("actions", _) => {}
                    _ => urls(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| urls(x, out)),
        _ => {}
    }
}

async fn all_resolve(c: &reqwest::Client, found: Vec<String>, checked: &mut HashSet<String>) {
    for u in found {
        if checked.insert(u.clone()) {
            let res = c.get(&u).send().await.unwrap();
            assert_eq!(res.status(), 200, "{u}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_things_walked_by_following_links() {
    let (_dir, state) = state_dir();
    let s = Server::start(&state, &[]);
    let c = client();
    let n = 10_000;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (c, next, url) = (c.clone(), next.clone(), s.url("/acme/contacts"));
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let body = json!({ "id": format!("c{i:05}"), "name": format!("Contact {i}"),
                                   "n": i, "address": { "city": if i == 4242 { "Zanzibar" } else { "Berlin" } } });
                let res = c.post(&url).json(&body).send().await.unwrap();
                assert_eq!(res.status(), 201);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Walk by `links.next` only.
    let mut url = s.url("/acme/contacts");
    let mut seen = HashSet::new();
    let mut pages = 0;
    let mut checked = HashSet::new();
    loop {
        let (st, page) = send(c.get(&url)).await;
        assert_eq!(st, 200, "{url}: {page}");
        assert_eq!(page["count"], n);
        for item in page["items"].as_array().unwrap() {
            assert!(
                seen.insert(item["id"].as_str().unwrap().to_string()),
                "twice: {}",
                item["id"]
            );
        }
        let mut found = Vec::new();
        for k in ["first", "last", "prev", "next", "home"] {
            if let Some(u) = page["links"][k].as_str() {
                found.push(u.to_string());
            }
        }
        if pages == 0 {
            urls(&page, &mut found);
        }
        all_resolve(&c, found, &mut checked).await;
        pages += 1;
        match page["links"]["next"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen.len(), n, "every thing exactly once");
    assert_eq!(pages, 100);
    // Every link of the root, an item, its history, editor and related things resolves.
    let (_, co) = send(
        c.post(s.url("/acme/companies"))
            .json(&json!({ "id": "acme-inc", "name": "Acme" })),
    )
    .await;
    assert_eq!(co["id"], "acme-inc");
    let (st, _) = send(c.post(s.url("/acme/_relationships")).json(&json!({
        "from": s.url("/acme/contacts/c00001"), "verb": "worksAt", "to": "companies/acme-inc" })))
    .await;
    assert_eq!(st, 201);
    for path in [
        "/acme",
        "/acme/contacts/c00001",
        "/acme/contacts/c00001/history",
        "/acme/contacts/c00001/worksAt",
        "/acme/_search?q=zanzibar",
        "/",
    ] {
        let (st, v) = send(c.get(s.url(path)).header("accept", "application/json")).await;
        assert_eq!(st, 200, "{path}");
        let mut found = Vec::new();
        urls(&v, &mut found);
        assert!(!found.is_empty(), "{path} links somewhere");
        all_resolve(&c, found, &mut checked).await;
    }
    let (_, item) = send(c.get(s.url("/acme/contacts/c00001"))).await;
    assert_eq!(
        item["links"]["worksAt"],
        s.url("/acme/contacts/c00001/worksAt")
    );
    let edit = c
        .get(s.url("/acme/contacts/c00001/edit"))
        .send()
        .await
        .unwrap();
    assert_eq!(edit.status(), 200);
    assert!(edit.text().await.unwrap().contains("if-match"));
    // Search finds a thing by a word in a nested field.
    let (_, hits) = send(c.get(s.url("/acme/_search?q=Zanzibar&type=contacts"))).await;
    assert_eq!(hits["items"].as_array().unwrap().len(), 1, "{hits}");
    assert_eq!(hits["items"][0]["id"], "c04242");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versions_conflicts_history_and_bad_input() {
    let (_dir, state) = state_dir();
    let s = Server::start(&state, &[]);
    let c = client();
    let item = s.url("/acme/deals/d1");
    let (st, d) = send(
        c.post(s.url("/acme/deals"))
            .json(&json!({ "id": "d1", "stage": "lead", "amount": 10 })),
    )
    .await;
    assert_eq!(st, 201, "{d}");
    let res = c
        .patch(&item)
        .header("if-match", "\"1\"")
        .json(&json!({ "stage": "won" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["etag"], "\"2\"");
    let (st, e) = send(
        c.patch(&item)
            .header("if-match", "\"1\"")
            .json(&json!({ "stage": "lost" })),
    )
    .await;
    assert_eq!(st, 409, "a stale version is a conflict: {e}");
    assert_eq!(e["error"]["code"], "CONFLICT");
    let (st, _) = send(
        c.put(&item)
            .json(&json!({ "stage": "won", "amount": 12, "version": 1 })),
    )
    .await;
    assert_eq!(st, 409, "a body version counts too");
    // A GET's body sent back as it is (meta and links included) is a valid replace.
    let (_, got) = send(c.get(&item)).await;
    let mut back = got.clone();
    back["amount"] = json!(11);
    let (st, put) = send(c.put(&item).header("if-match", "\"2\"").json(&back)).await;
    assert_eq!(st, 200, "{put}");
    assert_eq!(put["amount"], 11);
    assert_eq!(put["version"], 3);
    let (st, _) = send(c.delete(&item)).await;
    assert_eq!(st, 204);
    let (st, _) = send(c.get(&item)).await;
    assert_eq!(st, 404);
    let (_, h) = send(c.get(format!("{item}/history"))).await;
    let ops: Vec<&str> = h["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["create", "update", "update", "delete"], "{h}");
    // Events were written with each change.
    let (_, ev) = send(c.get(s.url("/acme/_events?type=Deal.*"))).await;
    let kinds: Vec<&str> = ev["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "Deal.created",
            "Deal.updated",
            "Deal.updated",
            "Deal.deleted"
        ]
    );

    // A hyphenated object name stays readable in URLs, and its natural item URL is local.
    let shop = s.url("/my-shop/deals");
    for id in ["a", "b"] {
        let (st, v) = send(c.post(&shop).json(&json!({ "id": id }))).await;
        assert_eq!(st, 201, "{v}");
        assert_eq!(v["$id"], format!("{shop}/{id}"));
    }
    let (st, link) = send(
        c.post(s.url("/my-shop/_relationships")).json(&json!({
        "from": format!("{shop}/a"), "verb": "owns", "to": format!("{shop}/b"), "cascade": true })),
    )
    .await;
    assert_eq!(st, 201, "{link}");
    assert_eq!(link["to"], "deals/b");
    let (st, _) = send(c.delete(format!("{shop}/a"))).await;
    assert_eq!(st, 204);
    let (st, _) = send(c.get(format!("{shop}/b"))).await;
    assert_eq!(st, 404, "the cascade reached b");

    // Bad input: the right 4xx, nothing stored.
    let (_, before) = send(c.get(s.url("/acme"))).await;
    let coll = s.url("/acme/deals");
    for (req, status) in [
        (
            c.post(&coll)
                .header("content-type", "application/json")
                .body("{not json"),
            400,
        ),
        (c.post(&coll).json(&json!([1, 2])), 400),
        (c.post(&coll).json(&json!({ "id": "bad id!" })), 400),
        (c.post(s.url("/acme/Bad_Collection")).json(&json!({})), 400),
        (
            c.post(&coll)
                .json(&json!({ "id": "big", "blob": "x".repeat(1_100_000) })),
            413,
        ),
        (c.get(format!("{coll}?after=bogus")), 400),
        (c.get(format!("{coll}?sort=no%20such")), 400),
        (c.get(format!("{coll}?limit=0")), 400),
        (c.get(format!("{coll}/nope")), 404),
        (c.patch(format!("{coll}/nope")).json(&json!({})), 404),
        (
            c.put(format!("{coll}/d1"))
                .header("if-match", "soon")
                .json(&json!({})),
            400,
        ),
        (
            c.post(s.url("/acme/_relationships"))
                .json(&json!({ "from": "deals/nope", "verb": "x", "to": "deals/d1" })),
            404,
        ),
        (c.get(s.url("/acme/_search?q=x&limit=1000")), 400),
    ] {
        let (st, body) = send(req).await;
        assert_eq!(st, status, "{body}");
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    let (_, after) = send(c.get(s.url("/acme"))).await;
    assert_eq!(before["collections"], after["collections"]);
    assert_eq!(before["events"], after["events"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_resumes_without_loss_or_repeat() {
    let (_dir, state) = state_dir();
    let s = Server::start(&state, &[]);
    let c = client();
    let ws_url = s
        .url("/acme/sync?collection=tasks")
        .replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    // 1,000 writes in the background: creates and updates.
    let writer = {
        let (c, url) = (c.clone(), s.url("/acme/tasks"));
        tokio::spawn(async move {
            for i in 0..500 {
                let r = c
                    .post(&url)
                    .json(&json!({ "id": format!("t{i}"), "n": i }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                let r = c
                    .patch(format!("{url}/t{i}"))
                    .json(&json!({ "done": true }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                // Other collections' changes are not in this stream.
                if i % 50 == 0 {
                    c.post(format!("{url}/../notes"))
                        .json(&json!({}))
                        .send()
                        .await
                        .unwrap();
                }
            }
        })
    };
    let mut got: Vec<(i64, String, String)> = Vec::new();
    let record = |v: Value, got: &mut Vec<(i64, String, String)>| {
        let ev = &v["event"];
        got.push((
            v["seq"].as_i64().unwrap(),
            ev["type"].as_str().unwrap().to_string(),
            ev["subject"].as_str().unwrap().to_string(),
        ));
    };
    // Read about half, then drop the connection mid-way.
    while got.len() < 400 {
        let msg = ws.next().await.unwrap().unwrap();
        record(
            serde_json::from_str(msg.to_text().unwrap()).unwrap(),
            &mut got,
        );
    }
    drop(ws);
    let last = got.last().unwrap().0;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{ws_url}&after={last}"))
        .await
        .unwrap();
    writer.await.unwrap();
    while got.len() < 1000 {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("more changes")
            .unwrap()
            .unwrap();
        record(
            serde_json::from_str(msg.to_text().unwrap()).unwrap(),
            &mut got,
        );
    }
    ws.close(None).await.ok();
    let seqs: Vec<i64> = got.iter().map(|g| g.0).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in order, none repeated"
    );
    for i in 0..500 {
        let mine: Vec<&str> = got
            .iter()
            .filter(|g| g.2 == format!("tasks/t{i}"))
            .map(|g| g.1.as_str())
            .collect();
        assert_eq!(mine, ["Task.created", "Task.updated"], "t{i}");
    }
    assert!(got.iter().all(|g| g.2.starts_with("tasks/")));

    // The same over SSE, resumed with Last-Event-ID.
    let mid = got[499].0;
    let res = c
        // A reconnecting EventSource repeats the URL; Last-Event-ID says where it got to.
        .get(s.url("/acme/sync?collection=tasks&after=0"))
        .header("last-event-id", mid.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut res = res;
    let mut text = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while text.lines().filter(|l| l.starts_with("id: ")).count() < 500 {
        assert!(
            std::time::Instant::now() < deadline,
            "500 SSE events in time: {text}"
        );
        if let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_secs(1), res.chunk()).await
        {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    let ids: Vec<i64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|x| x.trim().parse().unwrap())
        .collect();
    assert_eq!(ids, seqs[500..].to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_thing_body_limit_is_configurable() {
    let (_dir, state) = state_dir();
    let s = Server::start(&state, &["--max-thing-bytes", "3000000"]);
    let c = client();
    let big = json!({ "id": "big", "blob": "x".repeat(1_500_000) });
    let (st, v) = send(c.post(s.url("/acme/files")).json(&big)).await;
    assert_eq!(st, 201, "{}", v["error"]);
    let (st, v) = send(
        c.post(s.url("/acme/files"))
            .json(&json!({ "blob": "x".repeat(3_100_000) })),
    )
    .await;
    assert_eq!(st, 413, "{v}");
    let (_, page) = send(c.get(s.url("/acme/files"))).await;
    assert_eq!(page["count"], 1);
}
