//! End-to-end tests: the real `dotdo` binary on port 0 with a temp state dir, driven over HTTP,
//! killed with SIGKILL and restarted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

async fn sql(c: &reqwest::Client, s: &Server, object: &str, sql: &str, params: Value) -> Value {
    let res = c
        .post(s.url(&format!("/{object}/_storage/sql")))
        .json(&json!({ "sql": sql, "params": params }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{sql}");
    res.json().await.unwrap()
}

async fn kv_get(c: &reqwest::Client, s: &Server, object: &str, key: &str) -> Option<Value> {
    let res = c
        .get(s.url(&format!("/{object}/_storage/kv/{key}")))
        .send()
        .await
        .unwrap();
    match res.status().as_u16() {
        200 => Some(res.json().await.unwrap()),
        404 => None,
        other => panic!("GET {object}/{key}: {other}"),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_clients_increment_one_row_to_exactly_400() {
    let (_dir, state) = state_dir();
    let s = Arc::new(Server::start(&state, &[]));
    let c = client();
    let create = "CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)";
    sql(&c, &s, "counter", create, json!([])).await;
    sql(&c, &s, "counter", "INSERT INTO c VALUES (1, 0)", json!([])).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (c, s) = (c.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let inc = "UPDATE c SET n = n + ?1 WHERE id = 1";
                sql(&c, &s, "counter", inc, json!([1])).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let r = sql(&c, &s, "counter", "SELECT n FROM c WHERE id = 1", json!([])).await;
    assert_eq!(r["rows"], json!([[400]]));
}

/// 200 objects written concurrently; SIGKILL mid-write; after restart every acknowledged
/// write is there (a write in flight at the kill may or may not be).
async fn acked_writes_survive_kill_9(durability: &str) {
    let (_dir, state) = state_dir();
    let s = Arc::new(Server::start(&state, &["--durability", durability]));
    let c = client();
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (c, s, stop, total) = (c.clone(), s.clone(), stop.clone(), total.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let res = c
                    .put(s.url(&format!("/obj-{i}/_storage/kv/seq")))
                    .json(&json!(acked + 1))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => {
                        acked += 1;
                        total.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => panic!("write failed with {}", r.status()),
                    Err(_) => break, // the server is gone
                }
            }
            acked
        }));
    }
    // Kill in the middle of the load: once every object has had a few writes on average
    // (however slow the disk is today), and never before a second has passed.
    let started = std::time::Instant::now();
    while total.load(Ordering::Relaxed) < 1_000 || started.elapsed() < Duration::from_secs(1) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the load made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.kill9();
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.unwrap());
    }
    assert!(
        acked.iter().sum::<u64>() > 200,
        "the load wrote something: {acked:?}"
    );
    let s = Server::start(&state, &["--durability", durability]);
    for (i, acked) in acked.iter().enumerate() {
        let v = kv_get(&c, &s, &format!("obj-{i}"), "seq").await;
        let stored = v.and_then(|v| v.as_u64()).unwrap_or(0);
        assert!(
            stored == *acked || stored == acked + 1,
            "obj-{i}: acknowledged {acked}, found {stored}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9() {
    acked_writes_survive_kill_9("normal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9_in_fsync_mode() {
    acked_writes_survive_kill_9("fsync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_due_during_downtime_fires_after_restart() {
    let (_dir, state) = state_dir();
    let s = Server::start(&state, &[]);
    let c = client();
    let at = now_ms() + 1_500;
    let res = c
        .put(s.url("/sleepy/_storage/alarm"))
        .json(&json!({ "at": at }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["at"], json!(at));
    s.kill9();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert!(
        now_ms() > at,
        "the alarm fell due while the server was down"
    );
    let s = Server::start(&state, &[]);
    let mut fired = Value::Null;
    for _ in 0..100 {
        let v: Value = c
            .get(s.url("/sleepy/_storage/alarm"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["lastFiredAt"].is_i64() {
            fired = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        fired["at"],
        Value::Null,
        "the alarm fired and was cleared: {fired}"
    );
    assert!(fired["lastFiredAt"].as_i64().unwrap() >= at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_thousand_objects_stay_within_the_open_files_limit() {
    let (_dir, state) = state_dir();
    // 4,096 descriptors allow about 960 open objects: 30,000 objects force LRU eviction.
    let s = Arc::new(Server::start_with_nofile(&state, &[], Some(4096)));
    let c = client();
    const N: usize = 30_000;
    const WORKERS: usize = 16;
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let (c, s) = (c.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            for i in (w..N).step_by(WORKERS) {
                let res = c
                    .put(s.url(&format!("/tenant-{i}/_storage/kv/k")))
                    .json(&json!(i))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 204, "write to tenant-{i}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    s.stop();
    let s = Arc::new(Server::start_with_nofile(&state, &[], Some(4096)));
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let (c, s) = (c.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            for i in (w..N).step_by(WORKERS) {
                let v = kv_get(&c, &s, &format!("tenant-{i}"), "k").await;
                assert_eq!(v, Some(json!(i)), "tenant-{i} after restart");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_changes_nothing() {
    let (_dir, state) = state_dir();
    let s = Server::start(&state, &[]);
    let c = client();
    sql(
        &c,
        &s,
        "acme",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
        json!([]),
    )
    .await;
    sql(&c, &s, "acme", "INSERT INTO t VALUES (1, 'a')", json!([])).await;
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            c.post(s.url("/acme/_storage/sql")).body("{not json"),
            400,
            "BAD_REQUEST",
        ),
        (
            c.post(s.url("/acme/_storage/sql"))
                .json(&json!({"sql": "INSERT INTO t VALUES (1, 'dup')"})),
            400,
            "BAD_REQUEST",
        ),
        (
            c.post(s.url("/acme/_storage/sql"))
                .json(&json!({"sql": "DELETE FROM t; SELEC"})),
            400,
            "BAD_REQUEST",
        ),
        (
            c.post(s.url("/acme/_storage/sql"))
                .json(&json!({"sql": "SELECT ?1", "params": [{"a": 1}]})),
            400,
            "BAD_REQUEST",
        ),
        (
            c.post(s.url("/acme/_storage/sql"))
                .json(&json!({"sql": "DROP TABLE _do_kv"})),
            400,
            "BAD_REQUEST",
        ),
        (
            c.post(s.url("/acme/_storage/sql"))
                .json(&json!({"query": "x"})),
            400,
            "BAD_REQUEST",
        ),
        (
            c.put(s.url("/acme/_storage/kv/k")).body("nope"),
            400,
            "BAD_REQUEST",
        ),
        (
            c.put(s.url("/acme/_storage/alarm"))
                .json(&json!({"at": "soon"})),
            400,
            "BAD_REQUEST",
        ),
        (
            c.get(s.url("/acme/_storage/kv?limit=0")),
            400,
            "BAD_REQUEST",
        ),
        (
            c.get(s.url("/acme/_storage/kv?cursor=%25%25")),
            400,
            "BAD_REQUEST",
        ),
        (c.get(s.url("/acme/_storage/kv/missing")), 404, "NOT_FOUND"),
        (c.get(s.url("/_private/_storage/kv")), 400, "BAD_REQUEST"),
        (c.get(s.url("/.hidden/_storage/kv")), 400, "BAD_REQUEST"),
        (c.get(s.url("/rpc/_storage/kv")), 400, "BAD_REQUEST"),
        (
            c.get(s.url(&format!("/{}/_storage/kv", "n".repeat(1025)))),
            400,
            "BAD_REQUEST",
        ),
        (c.delete(s.url("/health")), 405, "METHOD_NOT_ALLOWED"),
        (
            c.put(s.url("/acme/_storage/kv/big"))
                .json(&json!("x".repeat(2 * 1024 * 1024))),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            c.put(s.url("/acme/_storage/kv/huge"))
                .body(vec![b'1'; 5 * 1024 * 1024]),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (req, status, code) in cases {
        let res = req.send().await.unwrap();
        let got = res.status().as_u16();
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert!(
            body["error"]["requestId"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let r = sql(&c, &s, "acme", "SELECT id, v FROM t", json!([])).await;
    assert_eq!(r["rows"], json!([[1, "a"]]), "nothing changed");
    let list: Value = c
        .get(s.url("/acme/_storage/kv"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]), "no KV entry was written");
    // A name with a slash, percent-encoded, is one object.
    let res = c
        .put(s.url("/a%2Fb/_storage/kv/k"))
        .json(&json!(1))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(kv_get(&c, &s, "a%2Fb", "k").await, Some(json!(1)));
}

/// A body far over the limit gets its 413, not a reset connection: the server reads the rest
/// of it (for a while) before it answers and closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_upload_is_answered_413_not_reset() {
    let (_dir, state) = state_dir();
    let s = Server::start(&state, &[]);
    let c = client();
    for round in 0..5 {
        let res = c
            .put(s.url("/acme/_storage/kv/huge"))
            .body(vec![b'1'; 24 * 1024 * 1024])
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        assert_eq!(res.status(), 413, "round {round}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE");
    }
    assert_eq!(
        kv_get(&c, &s, "acme", "huge").await,
        None,
        "nothing written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_listing_pages_with_cursors() {
    let (_dir, state) = state_dir();
    let s = Server::start(&state, &[]);
    let c = client();
    for i in 0..25 {
        let res = c
            .put(s.url(&format!("/pages/_storage/kv/item-{i:02}")))
            .json(&json!(i))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
    }
    c.put(s.url("/pages/_storage/kv/other"))
        .json(&json!("x"))
        .send()
        .await
        .unwrap();
    for reverse in [false, true] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("/pages/_storage/kv?prefix=item-&limit=10&reverse={reverse}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page: Value = c
                .get(s.url(&url))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for item in page["items"].as_array().unwrap() {
                seen.push(item["key"].as_str().unwrap().to_string());
            }
            match page["cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        let mut expected: Vec<String> = (0..25).map(|i| format!("item-{i:02}")).collect();
        if reverse {
            expected.reverse();
        }
        assert_eq!(seen, expected);
    }
}

#[test]
fn reset_refuses_without_a_terminal_and_deletes_with_yes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("objects")).unwrap();
    std::fs::write(state.join("catalog.sqlite"), b"x").unwrap();
    let bin = env!("CARGO_BIN_EXE_dotdo");
    let out = Command::new(bin)
        .args([
            "start",
            "--reset",
            "--port",
            "0",
            "--state-dir",
            state.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    assert!(
        state.join("catalog.sqlite").exists(),
        "nothing deleted without confirmation"
    );
    // The garbage catalog would stop the server from starting: starting proves it was deleted.
    let s = Server::start(&state, &["--reset", "--yes"]);
    assert!(state.join("catalog.sqlite").metadata().unwrap().len() > 1);
    drop(s);
}

#[test]
fn help_and_version() {
    let bin = env!("CARGO_BIN_EXE_dotdo");
    let out = Command::new(bin).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("dotdo "));
    let out = Command::new(bin)
        .args(["start", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--port",
        "--host",
        "--state-dir",
        "--reset",
        "--yes",
        "--durability",
    ] {
        assert!(help.contains(flag), "start --help mentions {flag}");
    }
}

#[test]
fn a_second_server_on_the_same_state_is_refused() {
    let (_dir, state) = state_dir();
    let _s = Server::start(&state, &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_dotdo"))
        .args([
            "start",
            "--port",
            "0",
            "--state-dir",
            state.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already using"));
}
