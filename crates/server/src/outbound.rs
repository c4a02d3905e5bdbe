//! Webhooks leave through this HTTP client (reqwest, rustls).

use async_trait::async_trait;
use dotdo_workflow::{HttpCall, HttpReply, Outbound};

/// Largest webhook response body kept (the rest is dropped).
const MAX_REPLY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct HttpOutbound {
    client: reqwest::Client,
}

impl HttpOutbound {
    pub fn new() -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("dotdo/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(5))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(HttpOutbound { client })
    }
}

#[async_trait]
impl Outbound for HttpOutbound {
    async fn send(&self, call: HttpCall) -> Result<HttpReply, String> {
        let mut req = self
            .client
            .request(call.method, &call.url)
            .timeout(call.timeout)
            .body(call.body);
        for (k, v) in &call.headers {
            req = req.header(k, v);
        }
        let mut res = req.send().await.map_err(describe)?;
        let status = res.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(describe)? {
            let room = MAX_REPLY_BYTES.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if room <= chunk.len() {
                break;
            }
        }
        Ok(HttpReply { status, body })
    }
}

fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        format!("could not connect: {e}")
    } else {
        e.to_string()
    }
}
