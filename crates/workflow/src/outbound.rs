//! The way out for webhooks. The workflow decides what to call and when; the host process
//! supplies the HTTP client (this crate opens no sockets).

use async_trait::async_trait;
use std::time::Duration;

/// One HTTP request to make.
#[derive(Debug, Clone)]
pub struct HttpCall {
    pub method: http::Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout: Duration,
}

/// The answer to an [`HttpCall`].
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Makes HTTP calls. An `Err` is a transport failure (refused, timed out), described for
/// the action log.
#[async_trait]
pub trait Outbound: Send + Sync + 'static {
    async fn send(&self, call: HttpCall) -> Result<HttpReply, String>;
}

/// An [`Outbound`] that refuses every call, for hosts that allow no webhooks.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoOutbound;

#[async_trait]
impl Outbound for NoOutbound {
    async fn send(&self, call: HttpCall) -> Result<HttpReply, String> {
        Err(format!("webhooks are disabled on this host ({})", call.url))
    }
}

/// Checks a webhook URL: absolute `http` or `https`, with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.len() > 2048 {
        return Err("the webhook url is longer than 2048 bytes".into());
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("the webhook url `{url}` is not a valid URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!(
                "the webhook url `{url}` must start with http:// or https://"
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("the webhook url `{url}` has no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls() {
        assert!(super::check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(super::check_url("https://example.com/a?b=c").is_ok());
        for bad in ["", "ftp://x/y", "/relative", "http://", "not a url"] {
            assert!(super::check_url(bad).is_err(), "{bad}");
        }
    }
}
