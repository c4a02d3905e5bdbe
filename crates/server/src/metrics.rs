//! `GET /metrics`: counters in the Prometheus text format, for operators and for tests that
//! check what the server saw (one HTTP request for a pipelined chain, stubs released).

use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub rpc_batches: AtomicU64,
    pub rpc_websocket_sessions: AtomicU64,
    pub rpc_websocket_open: AtomicI64,
    /// Targets the server has handed out over RPC and not yet seen released.
    pub rpc_targets_live: AtomicI64,
}

/// Counts a live RPC target while it exists.
pub struct LiveTarget(std::sync::Arc<Metrics>);

impl LiveTarget {
    pub fn new(m: &std::sync::Arc<Metrics>) -> Self {
        m.rpc_targets_live.fetch_add(1, Ordering::Relaxed);
        LiveTarget(m.clone())
    }
}

impl Drop for LiveTarget {
    fn drop(&mut self) {
        self.0.rpc_targets_live.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let m = &app.metrics;
    let h = app.host.stats();
    let mut out = String::new();
    let mut line = |name: &str, kind: &str, help: &str, v: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    };
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
    line(
        "dotdo_objects_active",
        "gauge",
        "Objects open in memory.",
        h.active.to_string(),
    );
    line(
        "dotdo_object_activations_total",
        "counter",
        "Objects opened.",
        h.activations.to_string(),
    );
    line(
        "dotdo_object_evictions_total",
        "counter",
        "Objects closed for idleness or room.",
        h.evictions.to_string(),
    );
    line(
        "dotdo_object_commits_total",
        "counter",
        "Object transactions committed with writes.",
        h.commits.to_string(),
    );
    line(
        "dotdo_object_committed_results_total",
        "counter",
        "Turn results released by commits (over commits: turns per shared commit).",
        h.committed_results.to_string(),
    );
    line(
        "dotdo_wal_writebacks_total",
        "counter",
        "WAL files written out in the background between checkpoints (normal durability).",
        h.wal_writebacks.to_string(),
    );
    line(
        "dotdo_alarms_pending",
        "gauge",
        "Alarms waiting to fire.",
        h.pending_alarms.to_string(),
    );
    line(
        "dotdo_rpc_batches_total",
        "counter",
        "RPC HTTP batches served.",
        n(&m.rpc_batches),
    );
    line(
        "dotdo_rpc_websocket_sessions_total",
        "counter",
        "RPC WebSocket sessions opened.",
        n(&m.rpc_websocket_sessions),
    );
    line(
        "dotdo_rpc_websocket_sessions_open",
        "gauge",
        "RPC WebSocket sessions open now.",
        m.rpc_websocket_open.load(Ordering::Relaxed).to_string(),
    );
    line(
        "dotdo_rpc_targets_live",
        "gauge",
        "Stubs the server handed out over RPC and clients still hold.",
        m.rpc_targets_live.load(Ordering::Relaxed).to_string(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
