//! A webhook receiver in the test process and small HTTP helpers for the end-to-end tests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use rand::Rng;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A webhook receiver: records every call, fails while told to (and always under `/fail`).
#[derive(Default)]
pub struct Sink {
    pub hits: Mutex<Vec<Hit>>,
    pub failing: AtomicBool,
    /// Calls slower than zero, so a crash can land while one is in flight.
    pub slow: AtomicBool,
}

#[derive(Clone, Debug)]
pub struct Hit {
    pub path: String,
    pub key: String,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Sink {
    pub async fn start() -> (Arc<Sink>, String) {
        let sink = Arc::new(Sink::default());
        let app = axum::Router::new()
            .fallback(record)
            .with_state(sink.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (sink, url)
    }

    pub fn hits(&self, prefix: &str) -> Vec<Hit> {
        let hits = self.hits.lock().unwrap();
        hits.iter()
            .filter(|h| h.path.starts_with(prefix))
            .cloned()
            .collect()
    }
}

async fn record(
    State(sink): State<Arc<Sink>>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    if sink.slow.load(Ordering::Relaxed) {
        let ms = rand::rng().random_range(0..15);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    sink.hits.lock().unwrap().push(Hit {
        path: uri.path().to_string(),
        key,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    // Paths under /fail always fail, for steps that must fail for good.
    if sink.failing.load(Ordering::SeqCst) || uri.path().starts_with("/fail") {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

pub async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let body = res.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out after {limit:?} waiting for: {what}");
}

/// Every item of a keyset-paged listing.
pub async fn all_pages(c: &reqwest::Client, url: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let sep = if url.contains('?') { '&' } else { '?' };
        let (status, page) = send(c.get(format!("{url}{sep}limit=1000&after={after}"))).await;
        assert_eq!(status, 200, "{url}: {page}");
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["cursor"].as_i64() {
            Some(cur) => after = cur,
            None => return out,
        }
    }
}
