//! `dotdo mcp`: MCP over stdio for clients that spawn a process. It is a proxy to a running
//! server's `/mcp` (or `/{object}/mcp`), so it never opens a state directory behind the
//! server's back: every tool call is the server's, with its checks and its turns.

use anyhow::Context;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig,
};
use rmcp::service::{NotificationContext, RequestContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{
    ClientHandler, ErrorData, Peer, RoleClient, RoleServer, ServerHandler, ServiceError, ServiceExt,
};
use std::sync::Arc;
use tokio::sync::Mutex;

#[derive(clap::Args)]
pub struct McpArgs {
    /// The running dotdo server.
    #[arg(long, env = "DOTDO_URL", default_value = "http://127.0.0.1:4000")]
    pub url: String,
    /// Scope the tools to one object (they then take no `object` argument).
    #[arg(long)]
    pub object: Option<String>,
}

pub fn run(args: McpArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(args))
}

async fn serve(args: McpArgs) -> anyhow::Result<()> {
    let base = args.url.trim_end_matches('/');
    let endpoint = match &args.object {
        Some(o) => {
            dotdo_server::check_object_name(o, true)
                .map_err(|e| anyhow::anyhow!("--object: {}", e.message))?;
            format!("{base}/{}/mcp", dotdo_server::encode_object_name(o))
        }
        None => format!("{base}/mcp"),
    };
    let downstream = Downstream::default();
    let upstream = Forwarder(downstream.clone())
        .serve(StreamableHttpClientTransport::from_uri(endpoint.clone()))
        .await
        .with_context(|| {
            format!(
                "cannot reach dotdo's MCP endpoint at {endpoint} (is `dotdo start` running there?)"
            )
        })?;
    tracing::info!(%endpoint, "serving MCP on stdio");
    let server = Proxy {
        upstream,
        downstream,
    }
    .serve(rmcp::transport::stdio())
    .await
    .context("the MCP client on stdin did not initialize")?;
    server.waiting().await?;
    Ok(())
}

/// The stdio client, once it has initialized.
type Downstream = Arc<Mutex<Option<Peer<RoleServer>>>>;

struct Proxy {
    upstream: RunningService<RoleClient, Forwarder>,
    downstream: Downstream,
}

/// The upstream session's client side: passes the server's list-changed notifications on to
/// the stdio client.
#[derive(Clone)]
struct Forwarder(Downstream);

impl ClientHandler for Forwarder {
    async fn on_resource_list_changed(&self, _c: NotificationContext<RoleClient>) {
        let peer = self.0.lock().await.clone();
        if let Some(peer) = peer {
            let _ = peer.notify_resource_list_changed().await;
        }
    }
}

/// An upstream failure as the client's error: the server's own MCP error when it sent one.
fn upstream_error(e: ServiceError) -> ErrorData {
    match e {
        ServiceError::McpError(e) => e,
        other => ErrorData::internal_error(format!("the dotdo server: {other}"), None),
    }
}

impl ServerHandler for Proxy {
    async fn on_initialized(&self, ctx: NotificationContext<RoleServer>) {
        *self.downstream.lock().await = Some(ctx.peer.clone());
    }

    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new("dotdo", env!("CARGO_PKG_VERSION")));
        if let Some(text) = self
            .upstream
            .peer_info()
            .and_then(|up| up.instructions.clone())
        {
            info = info.with_instructions(text);
        }
        info
    }

    async fn list_tools(
        &self,
        r: Option<PaginatedRequestParams>,
        _c: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.upstream.list_tools(r).await.map_err(upstream_error)
    }

    async fn call_tool(
        &self,
        r: CallToolRequestParams,
        _c: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.upstream
            .call_tool(r)
            .await
            .map(Into::into)
            .map_err(upstream_error)
    }

    async fn list_resources(
        &self,
        r: Option<PaginatedRequestParams>,
        _c: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        self.upstream
            .list_resources(r)
            .await
            .map_err(upstream_error)
    }

    async fn list_resource_templates(
        &self,
        r: Option<PaginatedRequestParams>,
        _c: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        self.upstream
            .list_resource_templates(r)
            .await
            .map_err(upstream_error)
    }

    async fn read_resource(
        &self,
        r: ReadResourceRequestParams,
        _c: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.upstream
            .read_resource(r)
            .await
            .map(Into::into)
            .map_err(upstream_error)
    }
}
