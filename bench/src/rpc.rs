//! Cap'n Web RPC load: dotdo against the npm `capnweb` reference server on Node
//! (`interop/capnweb/bench-server.mjs`), driven by the same client in the same run.
//!
//! Scenarios (each op waits for its answer; `connections` clients run at once):
//! - `rpc_ws_echo`: `echo(i)` on a WebSocket session (push, pull, release).
//! - `rpc_batch_echo`: `echo(i)` as one HTTP batch per op.
//! - `rpc_ws_pipelined_3`: `object("bench").things("items").get("k")`, three dependent calls
//!   sent at once, one round trip.
//! - `rpc_ws_sequential_3`: the same three calls, each awaited before the next (three round
//!   trips, as a client without pipelining must).
//! - `rpc_batch_pipelined_3`: the chain of three as one HTTP batch.
//!
//! dotdo's `get` reads the thing from the object's SQLite database through the runtime; the
//! Node server reads it from a `Map`.

use crate::http_load;
use crate::stats::Line;
use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// A peer server under test.
struct Peer {
    name: &'static str,
    base: String,
    pid: u32,
    _guard: Box<dyn std::any::Any>,
}

/// CPU time (user + system) a process has used, in seconds, from `/proc`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

struct NodeServer(Child);

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop/capnweb")
}

/// Starts the Node reference server, installing its packages if needed.
fn start_node() -> anyhow::Result<(NodeServer, String)> {
    let dir = interop_dir();
    if !dir.join("node_modules/capnweb").exists() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&dir)
            .status()
            .context("npm is needed for the capnweb peer")?;
        if !ok.success() {
            bail!("npm ci failed in {}", dir.display());
        }
    }
    let major: u32 = String::from_utf8(
        Command::new("node")
            .args(["-p", "process.versions.node.split('.')[0]"])
            .output()
            .context("node is needed for the capnweb peer")?
            .stdout,
    )?
    .trim()
    .parse()?;
    let mut cmd = Command::new("node");
    if major < 22 {
        cmd.args(["--experimental-websocket", "--no-warnings"]);
    }
    let mut child = cmd
        .arg("bench-server.mjs")
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().context("the node server printed nothing")??;
    std::thread::spawn(move || lines.for_each(drop));
    let base = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .context("no URL from the node server")?
        .to_string();
    Ok((NodeServer(child), base))
}

/// Runs every RPC scenario on dotdo and on the Node server, then a ratio line per scenario.
pub async fn compare(
    dotdo: &Path,
    only: Option<&str>,
    requests: usize,
    connections: usize,
) -> anyhow::Result<Vec<Line>> {
    // `--only rpc_ws` runs the scenarios whose names contain it; `--only rpc` runs them all.
    let scenarios: Vec<&str> = SCENARIOS
        .into_iter()
        .filter(|s| only.is_none_or(|o| s.contains(o) || o == "rpc"))
        .collect();
    let mut peers = Vec::new();
    let server = http_load::start(dotdo, "normal")?;
    peers.push(Peer {
        name: "dotdo",
        base: server.base.clone(),
        pid: server.child.id(),
        _guard: Box::new(server),
    });
    match start_node() {
        Ok((node, base)) => peers.push(Peer {
            name: "capnweb-node",
            base,
            pid: node.0.id(),
            _guard: Box::new(node),
        }),
        Err(e) => eprintln!("skipping the capnweb peer: {e:#}"),
    }
    let mut lines = Vec::new();
    let mut by_scenario: Vec<(String, &'static str, f64, f64, f64)> = Vec::new();
    for peer in &peers {
        setup(&peer.base).await?;
        for scenario in &scenarios {
            let line = run(&peer.base, peer.pid, scenario, requests, connections)
                .await
                .with_context(|| format!("{} on {}", scenario, peer.name))?
                .with_name(scenario)
                .with("target", json!(peer.name))
                .with("connections", json!(connections));
            by_scenario.push((
                scenario.to_string(),
                peer.name,
                line.0["throughput"].as_f64().unwrap_or(0.0),
                line.0["p99_ms"].as_f64().unwrap_or(0.0),
                line.0["server_cpu_us_per_op"].as_f64().unwrap_or(0.0),
            ));
            lines.push(line);
        }
    }
    for scenario in &scenarios {
        let get = |peer: &str| {
            by_scenario
                .iter()
                .find(|(s, p, ..)| s == scenario && *p == peer)
                .map(|(_, _, t, p99, cpu)| (*t, *p99, *cpu))
        };
        if let (Some((dt, dp, dc)), Some((nt, np, nc))) = (get("dotdo"), get("capnweb-node")) {
            let ratio = |a: f64, b: f64| (a / b * 100.0).round() / 100.0;
            lines.push(Line(json!({
                "scenario": format!("{scenario}_vs_capnweb_node"),
                "throughput_ratio": ratio(dt, nt),
                "p99_ratio": ratio(dp, np),
                // How many times less server CPU dotdo spends per op.
                "cpu_efficiency_ratio": ratio(nc, dc),
            })));
        }
    }
    Ok(lines)
}

const SCENARIOS: [&str; 5] = [
    "rpc_ws_echo",
    "rpc_batch_echo",
    "rpc_ws_pipelined_3",
    "rpc_ws_sequential_3",
    "rpc_batch_pipelined_3",
];

/// The thing the chains read, created over RPC on both servers.
async fn setup(base: &str) -> anyhow::Result<()> {
    let body = [
        json!(["push", ["pipeline", 0, ["object"], ["bench"]]]),
        json!(["push", ["pipeline", 1, ["things"], ["items"]]]),
        json!(["push", ["pipeline", 2, ["create"], [{ "id": "k", "name": "K" }]]]),
        json!(["pull", 3]),
    ];
    let reply = batch(&reqwest::Client::new(), base, &body).await?;
    // A second run finds it there already: a conflict is fine.
    if !reply.contains("\"resolve\",3") && !reply.contains("CONFLICT") {
        bail!("setup failed: {reply}");
    }
    Ok(())
}

async fn batch(client: &reqwest::Client, base: &str, msgs: &[Value]) -> anyhow::Result<String> {
    let body = msgs
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let res = client.post(format!("{base}/rpc")).body(body).send().await?;
    if !res.status().is_success() {
        bail!("batch failed: {}", res.status());
    }
    Ok(res.text().await?)
}

/// One WebSocket session with one call in flight at a time.
struct WsClient {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_push: i64,
}

impl WsClient {
    async fn connect(base: &str) -> anyhow::Result<WsClient> {
        let url = format!("{}/rpc", base.replacen("http", "ws", 1));
        // No Nagle delay (a call is several small frames), and a small read buffer (the
        // default 128 KiB one is zeroed on every read).
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(8 * 1024);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
        Ok(WsClient { ws, next_push: 1 })
    }

    async fn send(&mut self, msg: Value) -> anyhow::Result<()> {
        self.ws.send(Message::Text(msg.to_string().into())).await?;
        Ok(())
    }

    /// Sends a push and returns its id.
    async fn push(&mut self, expr: Value) -> anyhow::Result<i64> {
        self.send(json!(["push", expr])).await?;
        let id = self.next_push;
        self.next_push += 1;
        Ok(id)
    }

    /// Pulls `id` and waits for its resolution.
    async fn pull(&mut self, id: i64) -> anyhow::Result<Value> {
        self.send(json!(["pull", id])).await?;
        loop {
            let frame = self.ws.next().await.context("the session closed")??;
            let Message::Text(text) = frame else { continue };
            let msg: Value = serde_json::from_str(text.as_str())?;
            match (msg[0].as_str(), msg[1].as_i64()) {
                (Some("resolve"), Some(i)) if i == id => return Ok(msg[2].clone()),
                (Some("reject"), Some(i)) if i == id => bail!("rejected: {}", msg[2]),
                (Some("abort"), _) => bail!("aborted: {}", msg[1]),
                _ => {}
            }
        }
    }

    async fn release(&mut self, id: i64) -> anyhow::Result<()> {
        self.send(json!(["release", id, 1])).await
    }
}

/// The export id of a stub in a resolution (`["export", -k]`).
fn export_id(v: &Value) -> anyhow::Result<i64> {
    match (v[0].as_str(), v[1].as_i64()) {
        (Some("export"), Some(id)) => Ok(id),
        _ => bail!("expected a stub, got {v}"),
    }
}

async fn run(
    base: &str,
    pid: u32,
    scenario: &str,
    requests: usize,
    connections: usize,
) -> anyhow::Result<Line> {
    let next = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    // Warm-up, not measured.
    one_client(
        base,
        scenario,
        &client,
        &Arc::new(AtomicUsize::new(0)),
        200.min(requests),
    )
    .await?;
    let started = Instant::now();
    let cpu_before = cpu_seconds(pid);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (base, scenario, client, next) = (
            base.to_string(),
            scenario.to_string(),
            client.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            one_client(&base, &scenario, &client, &next, requests).await
        }));
    }
    let mut all = Vec::with_capacity(requests);
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed();
    // The server's own CPU per op: its efficiency, whatever the load generator's share of the
    // machine (it runs on the same cores).
    let cpu = cpu_seconds(pid) - cpu_before;
    Ok(Line::new(all, elapsed).with(
        "server_cpu_us_per_op",
        json!((cpu * 1e6 / requests as f64 * 10.0).round() / 10.0),
    ))
}

/// One client's share of the ops: it takes op numbers until `requests` are taken.
async fn one_client(
    base: &str,
    scenario: &str,
    client: &reqwest::Client,
    next: &AtomicUsize,
    requests: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut lat = Vec::new();
    let mut ws = if scenario.starts_with("rpc_ws") {
        Some(WsClient::connect(base).await?)
    } else {
        None
    };
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= requests {
            return Ok(lat);
        }
        let t = Instant::now();
        match (scenario, ws.as_mut()) {
            ("rpc_ws_echo", Some(ws)) => {
                let id = ws.push(json!(["pipeline", 0, ["echo"], [i]])).await?;
                let v = ws.pull(id).await?;
                if v != json!(i) {
                    bail!("echo gave {v}");
                }
                ws.release(id).await?;
            }
            ("rpc_ws_pipelined_3", Some(ws)) => {
                let a = ws
                    .push(json!(["pipeline", 0, ["object"], ["bench"]]))
                    .await?;
                let b = ws
                    .push(json!(["pipeline", a, ["things"], ["items"]]))
                    .await?;
                let c = ws.push(json!(["pipeline", b, ["get"], ["k"]])).await?;
                check_thing(&ws.pull(c).await?)?;
                for id in [a, b, c] {
                    ws.release(id).await?;
                }
            }
            ("rpc_ws_sequential_3", Some(ws)) => {
                let a = ws
                    .push(json!(["pipeline", 0, ["object"], ["bench"]]))
                    .await?;
                let o = export_id(&ws.pull(a).await?)?;
                let b = ws
                    .push(json!(["pipeline", o, ["things"], ["items"]]))
                    .await?;
                let c_stub = export_id(&ws.pull(b).await?)?;
                let c = ws.push(json!(["pipeline", c_stub, ["get"], ["k"]])).await?;
                check_thing(&ws.pull(c).await?)?;
                for id in [a, b, c, o, c_stub] {
                    ws.release(id).await?;
                }
            }
            ("rpc_batch_echo", None) => {
                let reply = batch(
                    client,
                    base,
                    &[
                        json!(["push", ["pipeline", 0, ["echo"], [i]]]),
                        json!(["pull", 1]),
                    ],
                )
                .await?;
                let v: Value = serde_json::from_str(&reply)?;
                if v != json!(["resolve", 1, i]) {
                    bail!("echo gave {reply}");
                }
            }
            ("rpc_batch_pipelined_3", None) => {
                let reply = batch(
                    client,
                    base,
                    &[
                        json!(["push", ["pipeline", 0, ["object"], ["bench"]]]),
                        json!(["push", ["pipeline", 1, ["things"], ["items"]]]),
                        json!(["push", ["pipeline", 2, ["get"], ["k"]]]),
                        json!(["pull", 3]),
                    ],
                )
                .await?;
                let v: Value = serde_json::from_str(&reply)?;
                check_thing(&v[2])?;
            }
            _ => bail!("unknown scenario {scenario}"),
        }
        lat.push(t.elapsed());
    }
}

fn check_thing(v: &Value) -> anyhow::Result<()> {
    if v["name"] != "K" {
        bail!("the chain gave {v}");
    }
    Ok(())
}
