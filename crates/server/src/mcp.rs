//! MCP (Model Context Protocol) over streamable HTTP with `rmcp`: `/mcp`, whose tools take an
//! `object` argument, and `/{object}/mcp`, scoped to one object.
//!
//! Tools are [`crate::mcp_tools::TOOLS`]; their arguments are checked against their JSON
//! Schema before they run, and every failure is a tool error carrying the REST error's code
//! and message. Resources are URLs of the REST API (an object, a collection, a thing's
//! `$id`): reading one reads that URL through the router, so it is the same JSON.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Target;
use crate::mcp_tools::{TOOLS, ToolDef};
use crate::things_api::Urls;
use axum::Router;
use axum::extract::{Path, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

/// The object an `/{object}/mcp` request is scoped to.
#[derive(Clone)]
struct Scope(String);

/// The MCP service for a router: mount it at `/mcp`, and at `/{object}/mcp` behind [`scope`].
pub(crate) fn service(
    app: AppState,
    rest: Router,
) -> StreamableHttpService<McpServer, LocalSessionManager> {
    let server = McpServer {
        app,
        rest,
        peers: Arc::default(),
    };
    StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    )
}

/// Middleware of `/{object}/mcp`: records the object the session is scoped to.
pub(crate) async fn scope(
    Path(params): Path<HashMap<String, String>>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(object) = params.get("object") {
        req.extensions_mut().insert(Scope(object.clone()));
    }
    next.run(req).await
}

#[derive(Clone)]
pub(crate) struct McpServer {
    app: AppState,
    /// The REST routes, for reading resources by URL.
    rest: Router,
    /// Sessions to tell when the resource list changes.
    peers: Arc<tokio::sync::Mutex<Vec<Peer<RoleServer>>>>,
}

/// What a request knows about where it came from.
struct Origin {
    headers: HeaderMap,
    scope: Option<String>,
}

fn origin_of(ctx: &RequestContext<RoleServer>) -> Origin {
    let parts = ctx.extensions.get::<http::request::Parts>();
    Origin {
        headers: parts.map(|p| p.headers.clone()).unwrap_or_default(),
        scope: parts.and_then(|p| p.extensions.get::<Scope>().map(|s| s.0.clone())),
    }
}

/// Compiled input schemas, per tool and scope.
fn validator(tool: &ToolDef, scoped: bool) -> &'static jsonschema::Validator {
    static CACHE: OnceLock<HashMap<(&'static str, bool), jsonschema::Validator>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        let mut m = HashMap::new();
        for t in TOOLS {
            for s in [false, true] {
                let schema = Value::Object(t.schema(s));
                if let Ok(v) = jsonschema::validator_for(&schema) {
                    m.insert((t.name, s), v);
                }
            }
        }
        m
    });
    &cache[&(tool.name, scoped)]
}

/// An API error as a tool error: `{ error: { code, message } }`, as in REST.
fn tool_error(e: ApiError) -> CallToolResponse {
    let body = json!({ "error": { "code": e.code, "message": e.message, "details": e.details } });
    let mut r = CallToolResult::error(vec![ContentBlock::text(body.to_string())]);
    r.structured_content = Some(body);
    r.into()
}

/// Checks arguments against a tool's schema: every violation, with where it is.
pub(crate) fn check_arguments(tool: &ToolDef, scoped: bool, args: &Value) -> Result<(), ApiError> {
    let problems: Vec<String> = validator(tool, scoped)
        .iter_errors(args)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("{at}: {e}")
            }
        })
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "invalid arguments for `{}`: {}",
        tool.name,
        problems.join("; ")
    ))
    .with_details(json!({ "problems": problems })))
}

/// The tools as MCP describes them.
pub(crate) fn tools(scoped: bool) -> Vec<Tool> {
    TOOLS
        .iter()
        .map(|t| {
            let mut tool = Tool::new(t.name, t.description, t.schema(scoped));
            tool =
                tool.with_annotations(ToolAnnotations::new().read_only(t.read_only).destructive(
                    matches!(
                        t.name,
                        "things_delete" | "relationships_unlink" | "schedules_delete"
                    ),
                ));
            tool
        })
        .collect()
}

impl McpServer {
    async fn notify_resources_changed(&self) {
        let mut peers = self.peers.lock().await;
        peers.retain(|p| !p.is_transport_closed());
        for p in peers.iter() {
            let _ = p.notify_resource_list_changed().await;
        }
    }

    async fn call(
        &self,
        req: CallToolRequestParams,
        o: Origin,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(tool) = TOOLS.iter().find(|t| t.name == req.name.as_ref()) else {
            return Err(ErrorData::invalid_params(
                format!("no tool `{}`; tools/list names them", req.name),
                None,
            ));
        };
        let scoped = o.scope.is_some();
        let args = Value::Object(req.arguments.unwrap_or_default());
        if let Err(e) = check_arguments(tool, scoped, &args) {
            return Ok(tool_error(e));
        }
        let Value::Object(args) = args else {
            return Ok(tool_error(ApiError::bad_request("arguments are an object")));
        };
        let name = match &o.scope {
            Some(s) => s.clone(),
            None => args["object"].as_str().unwrap_or_default().to_string(),
        };
        if let Err(e) = crate::names::check_object_name(&name, true) {
            return Ok(tool_error(e));
        }
        let target = Target {
            ns: Arc::from(self.app.config.builtin_namespace.as_str()),
            name,
        };
        let urls = Urls::new(&o.headers, &target);
        match crate::mcp_tools::run(&self.app, &urls, &target, tool.name, args).await {
            Ok(v) => {
                if matches!(tool.name, "things_create" | "things_delete") {
                    self.notify_resources_changed().await;
                }
                let structured = if v.is_object() {
                    v.clone()
                } else {
                    json!({ "result": v })
                };
                let mut r = CallToolResult::success(vec![ContentBlock::text(v.to_string())]);
                r.structured_content = Some(structured);
                Ok(r.into())
            }
            Err(e) => Ok(tool_error(e)),
        }
    }

    /// The objects this request can see (at most 100 at `/mcp`) and each one's collections.
    async fn objects(&self, o: &Origin) -> Result<Vec<(String, Vec<String>)>, ApiError> {
        let ns = &self.app.config.builtin_namespace;
        let names: Vec<String> = match &o.scope {
            Some(s) => vec![s.clone()],
            None => self
                .app
                .host
                .list_objects(ns, None, 100)?
                .into_iter()
                .filter_map(|o| o.name)
                .collect(),
        };
        let mut out = Vec::new();
        for name in names {
            let target = Target {
                ns: Arc::from(ns.as_str()),
                name: name.clone(),
            };
            let list =
                crate::workflow_api::call(&self.app, &target, "collections.list", Value::Null)
                    .await?;
            let collections = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect();
            out.push((name, collections));
        }
        Ok(out)
    }

    /// Each object and each of its collections, as resources.
    async fn resources(&self, o: Origin) -> Result<Vec<Resource>, ApiError> {
        let base = crate::origin(&o.headers);
        let mut out = Vec::new();
        for (name, collections) in self.objects(&o).await? {
            let url = format!("{base}/{}", crate::names::encode(&name));
            out.push(
                Resource::new(&url, &name)
                    .with_description(format!("The object `{name}`: its collections and stores."))
                    .with_mime_type("application/json"),
            );
            for c in collections {
                out.push(
                    Resource::new(format!("{url}/{c}"), format!("{name}/{c}"))
                        .with_description(format!(
                            "The `{c}` of `{name}`, first page (follow `links.next`)."
                        ))
                        .with_mime_type("application/json"),
                );
            }
        }
        Ok(out)
    }

    /// A template per collection (`…/{object}/{collection}/{id}`), and the general ones.
    async fn templates(&self, o: Origin) -> Result<Vec<ResourceTemplate>, ApiError> {
        let base = crate::origin(&o.headers);
        let mut out = Vec::new();
        for (name, collections) in self.objects(&o).await? {
            let url = format!("{base}/{}", crate::names::encode(&name));
            for c in collections {
                out.push(
                    ResourceTemplate::new(format!("{url}/{c}/{{id}}"), format!("{name}/{c}"))
                        .with_description(format!("A thing of `{c}` in `{name}`, by id."))
                        .with_mime_type("application/json"),
                );
            }
        }
        let object = match &o.scope {
            Some(s) => crate::names::encode(s),
            None => "{object}".into(),
        };
        out.push(
            ResourceTemplate::new(format!("{base}/{object}/{{collection}}/{{id}}"), "thing")
                .with_description("A thing by its `$id` URL: its fields, version, links.")
                .with_mime_type("application/json"),
        );
        out.push(
            ResourceTemplate::new(format!("{base}/{object}/{{collection}}"), "collection")
                .with_description("A collection's first page of things.")
                .with_mime_type("application/json"),
        );
        Ok(out)
    }

    /// Reads a URL of this server through its REST routes.
    async fn read(&self, uri: &str, o: Origin) -> Result<ReadResourceResponse, ErrorData> {
        let base = crate::origin(&o.headers);
        let path = uri
            .strip_prefix(&base)
            .filter(|p| p.starts_with('/'))
            .ok_or_else(|| {
                ErrorData::resource_not_found(
                    format!("`{uri}` is not a URL of this server ({base})"),
                    None,
                )
            })?;
        if let Some(scope) = &o.scope {
            let prefix = format!("/{}", crate::names::encode(scope));
            if !(path == prefix || path.starts_with(&format!("{prefix}/"))) {
                return Err(ErrorData::resource_not_found(
                    format!("`{uri}` is not in the object `{scope}`"),
                    None,
                ));
            }
        }
        let mut req = http::Request::get(path).header("accept", "application/json");
        for h in ["host", "x-forwarded-host", "x-forwarded-proto"] {
            if let Some(v) = o.headers.get(h) {
                req = req.header(h, v);
            }
        }
        let req = req
            .body(axum::body::Body::empty())
            .map_err(|e| ErrorData::invalid_params(format!("bad URL: {e}"), None))?;
        let res = self
            .rest
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 16 << 20)
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let text = String::from_utf8_lossy(&body).to_string();
        if status == http::StatusCode::NOT_FOUND {
            return Err(ErrorData::resource_not_found(
                format!("nothing at `{uri}`"),
                None,
            ));
        }
        if !status.is_success() {
            return Err(ErrorData::invalid_params(format!("`{uri}`: {text}"), None));
        }
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(text, uri).with_mime_type("application/json"),
        ])
        .into())
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new("dotdo", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "dotdo runs a business as durable objects. Each object (a business, tenant or agent) \
             has collections of things, relationships between them, an event log, durable \
             actions, schedules and a dead-letter queue. Start with `collections_list`; things \
             are also resources at their `$id` URLs.",
        )
    }

    async fn on_initialized(&self, ctx: NotificationContext<RoleServer>) {
        self.peers.lock().await.push(ctx.peer.clone());
    }

    async fn list_tools(
        &self,
        _r: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools(
            origin_of(&ctx).scope.is_some(),
        )))
    }

    async fn call_tool(
        &self,
        req: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.call(req, origin_of(&ctx)).await
    }

    async fn list_resources(
        &self,
        _r: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let list = self
            .resources(origin_of(&ctx))
            .await
            .map_err(|e| ErrorData::invalid_params(e.message, None))?;
        Ok(ListResourcesResult::with_all_items(list))
    }

    async fn list_resource_templates(
        &self,
        _r: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let list = self
            .templates(origin_of(&ctx))
            .await
            .map_err(|e| ErrorData::invalid_params(e.message, None))?;
        Ok(ListResourceTemplatesResult::with_all_items(list))
    }

    async fn read_resource(
        &self,
        req: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.read(&req.uri, origin_of(&ctx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_schema_is_valid_json_schema_and_rejects_bad_calls() {
        for tool in TOOLS {
            for scoped in [false, true] {
                let schema = Value::Object(tool.schema(scoped));
                assert!(
                    jsonschema::meta::is_valid(&schema),
                    "{}: {:?}",
                    tool.name,
                    jsonschema::meta::validate(&schema).err()
                );
                // An unknown argument is refused.
                let err = check_arguments(tool, scoped, &json!({ "bogus": 1 })).unwrap_err();
                assert_eq!(err.code, "BAD_REQUEST", "{}", tool.name);
                assert!(err.message.contains(tool.name), "{}", err.message);
                // So is a call missing what the tool requires, or of the wrong type.
                let required = schema["required"].as_array().cloned().unwrap_or_default();
                if !required.is_empty() {
                    assert!(
                        check_arguments(tool, scoped, &json!({})).is_err(),
                        "{}",
                        tool.name
                    );
                }
                assert!(
                    check_arguments(tool, scoped, &json!([])).is_err(),
                    "{}",
                    tool.name
                );
                for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
                    // A value of a type the property does not take.
                    let wrong = if prop["type"] == "string" {
                        json!(12)
                    } else {
                        json!("text")
                    };
                    if prop.get("type").is_none() {
                        continue;
                    }
                    let err = check_arguments(tool, scoped, &json!({ name: wrong }));
                    assert!(err.is_err(), "{}.{name} took {wrong}", tool.name);
                }
            }
        }
    }

    #[test]
    fn tools_have_names_descriptions_and_scoped_schemas() {
        let unscoped = tools(false);
        let scoped = tools(true);
        assert_eq!(unscoped.len(), TOOLS.len());
        for (a, b) in unscoped.iter().zip(&scoped) {
            assert!(
                a.description.as_deref().is_some_and(|d| d.len() > 30),
                "{}",
                a.name
            );
            assert!(
                a.input_schema["properties"].get("object").is_some(),
                "{}",
                a.name
            );
            assert!(
                b.input_schema["properties"].get("object").is_none(),
                "{}",
                b.name
            );
        }
    }
}
