//! Extractors: the target object of a request, and JSON bodies with errors in our shape.

use crate::AppState;
use crate::error::ApiError;
use crate::names::check_object_name;
use axum::RequestExt;
use axum::body::HttpBody;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// The namespace served under a router prefix (the built-in one or a mount).
#[derive(Clone)]
pub struct Namespace {
    pub ns: Arc<str>,
    /// Built-in objects are named by the first path segment, so reserved names are refused.
    pub builtin: bool,
}

/// The namespaces the routes lead to: the built-in one, whose routes start with `/{object}`,
/// and each mount's, whose routes start with the mount's segment. A request's namespace is
/// read off the route it matched, rather than set by a layer on each group of routes: every
/// layer on a route is one more boxed service that each request clones and calls through.
pub(crate) struct Namespaces {
    pub(crate) builtin: Namespace,
    /// `(segment, namespace)` of each mount.
    pub(crate) mounts: Vec<(String, Namespace)>,
}

impl Namespaces {
    /// The namespace of a route, given as registered (`/counter/{object}/{*rest}`).
    fn of_route(&self, route: &str) -> Option<&Namespace> {
        let first = route.strip_prefix('/')?.split('/').next()?;
        if first == "{object}" {
            return Some(&self.builtin);
        }
        self.mounts
            .iter()
            .find_map(|(segment, ns)| (segment == first).then_some(ns))
    }
}

/// The object a request is for: `(namespace, name)`, the name already percent-decoded.
pub struct Target {
    pub ns: Arc<str>,
    pub name: String,
}

impl FromRequestParts<AppState> for Target {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("invalid path: {e}")))?;
        let ns = parts
            .extensions
            .get::<MatchedPath>()
            .and_then(|route| state.namespaces.of_route(route.as_str()))
            .cloned()
            .ok_or_else(ApiError::internal)?;
        let name = params
            .iter()
            .find_map(|(key, value)| (key == "object").then(|| value.to_string()))
            .ok_or_else(|| ApiError::bad_request("missing object name"))?;
        check_object_name(&name, ns.builtin)?;
        Ok(Target { ns: ns.ns, name })
    }
}

/// How long the rest of a refused body is read before the refusal goes out anyway.
const DRAIN_REFUSED_BODY_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads a request body within the configured limit (`DefaultBodyLimit`): an oversize body
/// is a 413, any other failure a 400.
pub async fn body_bytes(req: Request) -> Result<(Parts, Bytes), ApiError> {
    let (parts, mut body) = req.with_limited_body().into_parts();
    if body.size_hint().exact() == Some(0) {
        return Ok((parts, Bytes::new()));
    }
    match (&mut body).collect().await {
        Ok(collected) => Ok((parts, collected.to_bytes())),
        Err(e) if is_over_limit(&e) => {
            drain(&mut body).await;
            Err(ApiError::payload_too_large(
                "the request body is larger than the server's limit",
            ))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "could not read the request body: {e}"
        ))),
    }
}

/// Reads and drops the rest of a body over the limit, for a bounded time. A connection closed
/// while the client is still sending is reset, and the client then sees a broken pipe instead
/// of the 413; reading on lets it finish sending and read the answer.
async fn drain(body: &mut axum::body::Body) {
    let rest = async {
        // Past the limit, every data frame is an error of the limit's: read on through those.
        while let Some(frame) = body.frame().await {
            if let Err(e) = frame
                && !is_over_limit(&e)
            {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_REFUSED_BODY_FOR, rest).await;
}

/// The whole body, within the server's limit, when the rest of the request is not needed.
pub async fn body_only(req: Request) -> Result<Bytes, ApiError> {
    Ok(body_bytes(req).await?.1)
}

/// The body went past the server's limit (and was not cut off for another reason).
fn is_over_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// A JSON body; malformed JSON or the wrong shape is a 400 naming the problem.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (_, bytes) = body_bytes(req).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A JSON body that may be left out (then `null`).
pub struct OptionalJson(pub serde_json::Value);

impl<S: Send + Sync> FromRequest<S> for OptionalJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (_, bytes) = body_bytes(req).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(serde_json::Value::Null));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request("a JSON body is required"));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// True if the body is declared as raw bytes rather than JSON.
pub fn is_octet_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/octet-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str, builtin: bool) -> Namespace {
        Namespace {
            ns: Arc::from(name),
            builtin,
        }
    }

    #[test]
    fn a_route_leads_to_the_namespace_of_its_first_segment() {
        let namespaces = Namespaces {
            builtin: ns("business", true),
            mounts: vec![("counter".into(), ns("bench", false))],
        };
        let of = |route| namespaces.of_route(route).map(|n| (&*n.ns, n.builtin));
        assert_eq!(of("/{object}"), Some(("business", true)));
        assert_eq!(of("/{object}/storage/kv/{key}"), Some(("business", true)));
        assert_eq!(of("/counter/{object}"), Some(("bench", false)));
        assert_eq!(of("/counter/{object}/{*rest}"), Some(("bench", false)));
        // Routes of no object, and a segment that is no mount's.
        assert_eq!(of("/counters/{object}"), None);
        assert_eq!(of("/health"), None);
        assert_eq!(of("health"), None);
    }
}
