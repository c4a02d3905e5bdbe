//! What a request tells the server about itself: every response carries an `x-request-id` (the
//! client's own when it sent a usable one, else a new one, quoted by error bodies), and the
//! URLs in answers start at the origin the client used, behind a proxy too.
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::Request;
use dotdo_runtime::{Host, HostOptions};
use dotdo_server::{BUILTIN_NAMESPACE, ServerConfig, app, builtin_class, workflow_env};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

async fn send(router: &axum::Router, req: Request<Body>) -> (String, Value) {
    let res = router.clone().oneshot(req).await.unwrap();
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (id, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn router() -> (tempfile::TempDir, axum::Router) {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::open(
        HostOptions::new(dir.path())
            .class(BUILTIN_NAMESPACE, builtin_class(workflow_env().unwrap())),
    )
    .unwrap();
    (dir, app(host, ServerConfig::default()))
}

#[tokio::test]
async fn responses_carry_the_request_id_that_errors_quote() {
    let (_dir, router) = router();
    let missing = || Request::get("/acme/contacts/nobody");

    // A new id: 16 hex digits, a different one per request, quoted by the error body.
    let (a, body) = send(&router, missing().body(Body::empty()).unwrap()).await;
    assert_eq!(a.len(), 16, "{a}");
    assert!(a.bytes().all(|b| b.is_ascii_hexdigit()), "{a}");
    assert_eq!(body["error"]["requestId"], a.as_str(), "{body}");
    let (b, _) = send(&router, missing().body(Body::empty()).unwrap()).await;
    assert_ne!(a, b);

    // The client's own id is kept.
    let req = missing()
        .header("x-request-id", "trace-42")
        .body(Body::empty())
        .unwrap();
    let (id, body) = send(&router, req).await;
    assert_eq!(id, "trace-42");
    assert_eq!(body["error"]["requestId"], "trace-42");

    // An unusable one (too long) is replaced.
    let req = missing()
        .header("x-request-id", "x".repeat(129))
        .body(Body::empty())
        .unwrap();
    let (id, _) = send(&router, req).await;
    assert_eq!(id.len(), 16, "{id}");
}

/// `object("acme").things("contacts").create({ id })` as one RPC batch sent with `headers`:
/// the `$id` of the thing it answers.
async fn create_over_rpc(router: &axum::Router, headers: &[(&str, &str)], id: &str) -> String {
    let batch = [
        r#"["push",["pipeline",0,["object"],["acme"]]]"#.to_string(),
        r#"["push",["pipeline",1,["things"],["contacts"]]]"#.to_string(),
        format!(r#"["push",["pipeline",2,["create"],[{{"id":"{id}"}}]]]"#),
        r#"["pull",3]"#.to_string(),
    ]
    .join("\n");
    let mut req = Request::post("/rpc");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = router
        .clone()
        .oneshot(req.body(Body::from(batch)).unwrap())
        .await
        .unwrap();
    let reply = res.into_body().collect().await.unwrap().to_bytes();
    let reply = String::from_utf8_lossy(&reply);
    let msg: Value = serde_json::from_str(reply.lines().last().unwrap()).unwrap();
    assert_eq!(msg[0], "resolve", "{reply}");
    msg[2]["$id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn things_handed_out_over_rpc_link_to_the_origin_the_client_used() {
    let (_dir, router) = router();
    let id = create_over_rpc(&router, &[("host", "dotdo.test:4000")], "c1").await;
    assert_eq!(id, "http://dotdo.test:4000/acme/contacts/c1");

    // Behind a proxy: the first entry of each forwarded header is the client's.
    let proxied = [
        ("host", "10.0.0.5:4000"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "api.example.com, proxy.internal"),
    ];
    let id = create_over_rpc(&router, &proxied, "c2").await;
    assert_eq!(id, "https://api.example.com/acme/contacts/c2");
}
