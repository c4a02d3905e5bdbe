//! `/metrics` counts what the runtime did, in the Prometheus text format.
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use dotdo_runtime::{Host, HostOptions};
use dotdo_server::{BUILTIN_NAMESPACE, ServerConfig, app, builtin_class, workflow_env};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[tokio::test]
async fn commits_and_the_results_they_release_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::open(
        HostOptions::new(dir.path())
            .class(BUILTIN_NAMESPACE, builtin_class(workflow_env().unwrap())),
    )
    .unwrap();
    let router = app(host.clone(), ServerConfig::default());
    let send = |req: axum::http::Request<Body>| {
        let router = router.clone();
        async move {
            let res = router.oneshot(req).await.unwrap();
            let status = res.status().as_u16();
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&bytes).to_string())
        }
    };
    for i in 0..3 {
        let (status, body) = send(
            axum::http::Request::post("/acme/contacts")
                .header("content-type", "application/json")
                .body(Body::from(format!("{{\"id\": \"c{i}\"}}")))
                .unwrap(),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, text) = send(
        axum::http::Request::get("/metrics")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let commits = metric(&text, "dotdo_object_commits_total");
    assert!(commits >= 3, "three creates, one after another: {commits}");
    assert!(metric(&text, "dotdo_object_committed_results_total") >= 3);
}
