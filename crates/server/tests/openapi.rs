//! `/openapi.json` is true to the router: every operation it names reaches a handler (not the
//! router's 404 or 405), and the object routes the router serves are all in it.
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use dotdo_runtime::{Host, HostOptions};
use dotdo_server::openapi::OPERATIONS;
use dotdo_server::{BUILTIN_NAMESPACE, ServerConfig, app, builtin_class, workflow_env};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

fn sample(path: &str) -> String {
    path.replace("{object}", "acme")
        .replace("{collection}", "contacts")
        .replace("{id}", "x1")
        .replace("{key}", "k")
        .replace("{name}", "w")
        .replace("{verb}", "knows")
}

#[tokio::test]
async fn every_documented_operation_reaches_a_handler() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::open(
        HostOptions::new(dir.path())
            .class(BUILTIN_NAMESPACE, builtin_class(workflow_env().unwrap())),
    )
    .unwrap();
    let router = app(host.clone(), ServerConfig::default());
    for op in OPERATIONS {
        let uri = sample(op.path);
        let mut req = axum::http::Request::builder()
            .method(op.method.to_uppercase().as_str())
            .uri(&uri);
        let body = if op.body.is_some() {
            req = req.header("content-type", "application/json");
            Body::from("{}")
        } else {
            Body::empty()
        };
        let res = router
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = res.status().as_u16();
        // The sync stream never ends; its headers are enough.
        let text = if op.path.ends_with("/sync") {
            String::new()
        } else {
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            String::from_utf8_lossy(&bytes).to_string()
        };
        assert_ne!(status, 405, "{} {uri}: {text}", op.method);
        assert!(
            !(status == 404 && text.contains("nothing at")),
            "{} {uri} is not routed",
            op.method
        );
        let documented: Vec<u16> = {
            let doc = dotdo_server::openapi::document();
            doc["paths"][op.path][op.method]["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.parse().unwrap())
                .collect()
        };
        assert!(
            documented.contains(&status),
            "{} {uri} answered {status}, documented {documented:?}: {text}",
            op.method
        );
    }
    host.shutdown(std::time::Duration::from_secs(5)).await;
}

#[test]
fn the_document_is_openapi_3_1_with_unique_operations() {
    let doc: &Value = dotdo_server::openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ids = std::collections::HashSet::new();
    for (_, item) in doc["paths"].as_object().unwrap() {
        for (_, op) in item.as_object().unwrap() {
            assert!(
                ids.insert(op["operationId"].as_str().unwrap().to_string()),
                "{}",
                op["operationId"]
            );
            for (status, r) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Error"
                    );
                }
            }
        }
    }
    assert!(ids.len() >= 50);
}
