//! The counter class through the HTTP router, with its alarm driven by a manual clock.
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use dotdo_runtime::{Host, HostOptions, ManualClock};
use dotdo_server::{Mount, ServerConfig};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

async fn send(app: &axum::Router, method: &str, uri: &str) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Posts one RPC batch; the answers, ordered by id.
async fn rpc_batch(app: &axum::Router, uri: &str, body: &str) -> Vec<Value> {
    let req = http::Request::builder()
        .method("POST")
        .uri(uri)
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let mut lines: Vec<Value> = String::from_utf8(bytes.to_vec())
        .unwrap()
        .split('\n')
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines.sort_by_key(|l| l[1].as_i64());
    lines
}

#[tokio::test]
async fn counts_ticks_and_keeps_state_across_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let mut opts = HostOptions::new(dir.path()).class("counter", dotdo_example_counter::class());
    opts.clock = Arc::new(clock.clone());
    let host = Host::open(opts).unwrap();
    let config = ServerConfig {
        mounts: vec![Mount::new("counter", "counter")],
        ..ServerConfig::default()
    };
    let app = dotdo_server::app(host.clone(), config);

    assert_eq!(
        send(&app, "POST", "/counter/c1/incr").await,
        (200, json!({ "value": 1 }))
    );
    assert_eq!(
        send(&app, "POST", "/counter/c1/incr").await,
        (200, json!({ "value": 2 }))
    );
    assert_eq!(
        send(&app, "POST", "/counter/c2/incr").await,
        (200, json!({ "value": 1 }))
    );
    let (status, body) = send(&app, "POST", "/counter/c1/tick?in_ms=5000").await;
    assert_eq!((status, body["alarmAt"].as_i64()), (202, Some(1_005_000)));
    assert_eq!(
        send(&app, "POST", "/counter/c1/tick?in_ms=soon").await.0,
        400
    );

    // Evicted from memory, the alarm still fires on time.
    assert!(host.evict("counter", "c1").await);
    clock.advance(5_000);
    let mut ticks = 0;
    for _ in 0..200 {
        ticks = send(&app, "GET", "/counter/c1").await.1["ticks"]
            .as_i64()
            .unwrap();
        if ticks == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ticks, 1);
    assert_eq!(
        send(&app, "GET", "/counter/c1").await.1,
        json!({ "value": 2, "ticks": 1 })
    );
    // Named methods, as another object's stub would call them.
    assert_eq!(
        host.call("counter", "c1", "incr", Value::Null)
            .await
            .unwrap(),
        json!(3)
    );
    // The raw storage API works under the mount too.
    let (status, body) = send(&app, "GET", "/counter/c1/_storage/kv/value").await;
    assert_eq!((status, body), (200, json!(3)));
}

#[tokio::test]
async fn a_mounted_class_answers_rpc_with_its_methods() {
    let dir = tempfile::tempdir().unwrap();
    let host =
        Host::open(HostOptions::new(dir.path()).class("counter", dotdo_example_counter::class()))
            .unwrap();
    let config = ServerConfig {
        mounts: vec![Mount::new("counter", "counter")],
        ..ServerConfig::default()
    };
    let app = dotdo_server::app(host.clone(), config);
    // Calls start in the order sent (the second increment answers 2); an unknown method is
    // the class's own NOT_FOUND error.
    let body = [
        r#"["push",["pipeline",0,["incr"],[]]]"#,
        r#"["push",["pipeline",0,["incr"],[]]]"#,
        r#"["push",["pipeline",0,["get"],[]]]"#,
        r#"["pull",2]"#,
        r#"["push",["pipeline",0,["nope"],[]]]"#,
        r#"["pull",4]"#,
    ]
    .join("\n");
    let lines = rpc_batch(&app, "/counter/c1/rpc", &body).await;
    assert_eq!(lines[0], json!(["resolve", 2, 2]));
    assert_eq!(lines[1][0], "reject");
    assert_eq!(lines[1][2][3], Value::Null);
    assert_eq!(lines[1][2][4]["code"], "NOT_FOUND");
    host.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_rpc_surface_hands_out_stubs_of_other_counters() {
    let dir = tempfile::tempdir().unwrap();
    let host =
        Host::open(HostOptions::new(dir.path()).class("counter", dotdo_example_counter::class()))
            .unwrap();
    let config = ServerConfig {
        mounts: vec![
            Mount::new("counter", "counter").with_rpc(dotdo_example_counter::rpc_surface()),
        ],
        ..ServerConfig::default()
    };
    let app = dotdo_server::app(host.clone(), config);
    // `a.incr()`, then `a.peer("b")` twice incremented and read, in one request.
    let body = [
        r#"["push",["pipeline",0,["incr"],[]]]"#,
        r#"["push",["pipeline",0,["peer"],["b"]]]"#,
        r#"["push",["pipeline",2,["incr"],[]]]"#,
        r#"["push",["pipeline",2,["incr"],[]]]"#,
        r#"["push",["pipeline",2,["value"]]]"#,
        r#"["pull",1]"#,
        r#"["pull",5]"#,
    ]
    .join("\n");
    let lines = rpc_batch(&app, "/counter/a/rpc", &body).await;
    assert_eq!(
        lines,
        vec![json!(["resolve", 1, 1]), json!(["resolve", 5, 2])]
    );
    assert_eq!(
        send(&app, "GET", "/counter/b").await,
        (200, json!({ "value": 2, "ticks": 0 }))
    );
    host.shutdown(Duration::from_secs(5)).await;
}
