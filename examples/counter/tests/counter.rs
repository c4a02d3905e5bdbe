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

#[tokio::test]
async fn counts_ticks_and_keeps_state_across_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let mut opts = HostOptions::new(dir.path()).class("counter", dotdo_example_counter::class());
    opts.clock = Arc::new(clock.clone());
    let host = Host::open(opts).unwrap();
    let config = ServerConfig {
        mounts: vec![Mount {
            segment: "counter".into(),
            namespace: "counter".into(),
        }],
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
