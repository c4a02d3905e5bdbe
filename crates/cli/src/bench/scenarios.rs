//! The scenarios: what one operation is, the setup before it (not measured) and the check
//! after it (the target's state must add up to the operations it acknowledged).
//!
//! Object names carry a per-run prefix, so a second run against the same server starts from
//! fresh objects.

use super::load::{self, Http, HttpWorker, MakeReq, Outcome, Plan, Req, Worker, Ws};
use anyhow::{Context as _, bail};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

/// Every scenario, in the order they run, with what one operation is.
pub const ALL: &[(&str, &str)] = &[
    ("health", "GET /health: the HTTP floor"),
    (
        "kv-put",
        "PUT /counter/{o}/kv/{key}: a KV write to one object",
    ),
    (
        "sql-incr-one",
        "POST /counter/{o}/incr: UPDATE … RETURNING in one hot object's SQLite",
    ),
    (
        "sql-incr-many",
        "POST /counter/{o}/incr spread over 1,000 objects",
    ),
    (
        "cold-activation",
        "a read of an evicted object holding 1 MB (its first request after eviction)",
    ),
    (
        "object-call",
        "POST /counter/{a}/call/{b}: an object calls another's incr (100 pairs)",
    ),
    (
        "do-action",
        "POST /counter/{o}/do: one durable no-op step, over 100 objects",
    ),
    (
        "event-fanout",
        "an event emitted to /{o}/_events and delivered to 10 subscriber objects",
    ),
    ("rpc-ws", "Cap'n Web echo(i) on a WebSocket session"),
    ("rpc-batch", "Cap'n Web echo(i) as one HTTP batch"),
    (
        "rpc-pipelined-3",
        "object(o).things(c).get(id): three dependent calls, one round trip",
    ),
    (
        "ws-broadcast",
        "a thing created, until each of the /sync WebSocket subscribers has it",
    ),
    ("things-create", "POST /{o}/items: a thing created"),
    ("things-list", "GET /{o}/items?limit=20 of 1,000 things"),
];

/// Where and how a scenario runs.
#[derive(Clone)]
pub struct Env {
    pub base: String,
    pub plan: Plan,
    pub quick: bool,
    /// Prefix of the object names of this run.
    pub run: String,
    /// The server's processes, for its CPU time.
    pub pids: Vec<u32>,
}

impl Env {
    /// Runs the load, and notes the server's CPU time during it (setup excluded).
    async fn drive<W: Worker>(
        &self,
        label: &str,
        workers: Vec<W>,
        plan: Plan,
    ) -> anyhow::Result<Outcome> {
        let before = super::cpu_seconds(&self.pids);
        let mut out = load::drive(label, workers, plan).await?;
        out.server_cpu_s = super::cpu_seconds(&self.pids) - before;
        Ok(out)
    }
}

/// A scenario's outcome, with a remark on how to read it when it needs one.
pub struct Measured {
    pub outcome: Outcome,
    pub note: Option<String>,
}

impl Measured {
    fn plain(outcome: Outcome) -> Measured {
        Measured {
            outcome,
            note: None,
        }
    }
}

pub async fn run(name: &str, env: &Env) -> anyhow::Result<Measured> {
    match name {
        "health" => http_load(env, name, |_| get("/health".into()))
            .await
            .map(Measured::plain),
        "kv-put" => {
            let o = format!("kv-{}", env.run);
            http_load(env, name, move |i| Req {
                method: Method::PUT,
                path: format!("/counter/{o}/kv/k{}", i % 100),
                body: Some(Bytes::from(format!("{{\"v\":{i}}}"))),
            })
            .await
            .map(Measured::plain)
        }
        "sql-incr-one" => sql_incr(env, 1).await,
        "sql-incr-many" => sql_incr(env, 1000).await,
        "cold-activation" => cold_activation(env).await,
        "object-call" => object_call(env).await,
        "do-action" => {
            let run = env.run.clone();
            http_load(env, name, move |i| {
                post(format!("/counter/do-{run}-{}/do", i % 100))
            })
            .await
            .map(Measured::plain)
        }
        "event-fanout" => event_fanout(env).await,
        "rpc-ws" | "rpc-batch" | "rpc-pipelined-3" => rpc(env, name).await,
        "ws-broadcast" => ws_broadcast(env).await,
        "things-create" => {
            let o = format!("things-{}", env.run);
            http_load(env, name, move |i| Req {
                method: Method::POST,
                path: format!("/{o}/items"),
                body: Some(Bytes::from(
                    json!({ "name": format!("item {i}"), "n": i, "tags": ["bench"] }).to_string(),
                )),
            })
            .await
            .map(Measured::plain)
        }
        "things-list" => things_list(env).await,
        _ => bail!(
            "no scenario `{name}` (there are: {})",
            ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn get(path: String) -> Req {
    Req {
        method: Method::GET,
        path,
        body: None,
    }
}

fn post(path: String) -> Req {
    Req {
        method: Method::POST,
        path,
        body: None,
    }
}

async fn http_load(
    env: &Env,
    label: &str,
    make: impl Fn(u64) -> Req + Send + Sync + 'static,
) -> anyhow::Result<Outcome> {
    let make: MakeReq = Arc::new(make);
    let workers = HttpWorker::many(&env.base, env.plan.concurrency, make).await?;
    env.drive(label, workers, env.plan).await
}

/// Sums the counters of `objects`, read with `GET /counter/{o}`.
async fn counter_sum(base: &str, objects: &[String]) -> anyhow::Result<i64> {
    let mut http = Http::connect(base).await?;
    let mut sum = 0;
    for o in objects {
        let v = http
            .json(Method::GET, &format!("/counter/{o}"), None)
            .await?;
        sum += v["n"].as_i64().context("no `n` in the counter")?;
    }
    Ok(sum)
}

/// Reads every counter once (creating its object), from `clients` connections at once.
async fn touch_counters(base: &str, objects: &[String], clients: usize) -> anyhow::Result<()> {
    let objects = Arc::new(objects.to_vec());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients.min(objects.len()) {
        let (objects, next, base) = (objects.clone(), next.clone(), base.to_string());
        tasks.push(tokio::spawn(async move {
            let mut http = Http::connect(&base).await?;
            loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(o) = objects.get(k) else {
                    return Ok::<_, anyhow::Error>(());
                };
                http.ok(Method::GET, &format!("/counter/{o}"), None).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Checks that the increments the target acknowledged are all there, and no more.
fn check_count(what: &str, found: i64, out: &Outcome) -> anyhow::Result<()> {
    let (low, high) = (out.total_ops as i64, (out.total_ops + out.errors) as i64);
    if found < low || found > high {
        bail!("{what}: the counters add up to {found}, but {low} increments were acknowledged");
    }
    Ok(())
}

async fn sql_incr(env: &Env, objects: usize) -> anyhow::Result<Measured> {
    let names: Vec<String> = (0..objects)
        .map(|k| format!("c{objects}x{k}-{}", env.run))
        .collect();
    let label = if objects == 1 {
        "sql-incr-one"
    } else {
        "sql-incr-many"
    };
    // Every object exists and is open before the clock starts: this measures hot objects
    // (`cold-activation` measures the other case).
    touch_counters(&env.base, &names, env.plan.concurrency).await?;
    let paths: Arc<Vec<String>> =
        Arc::new(names.iter().map(|o| format!("/counter/{o}/incr")).collect());
    let out = http_load(env, label, move |i| {
        post(paths[i as usize % paths.len()].clone())
    })
    .await?;
    check_count(label, counter_sum(&env.base, &names).await?, &out)?;
    Ok(Measured::plain(out))
}

async fn object_call(env: &Env) -> anyhow::Result<Measured> {
    let pairs = 100;
    let both: Vec<String> = (0..pairs)
        .flat_map(|k| [format!("a{k}-{}", env.run), format!("b{k}-{}", env.run)])
        .collect();
    touch_counters(&env.base, &both, env.plan.concurrency).await?;
    let run = env.run.clone();
    let out = http_load(env, "object-call", move |i| {
        let k = i % pairs;
        post(format!("/counter/a{k}-{run}/call/b{k}-{run}"))
    })
    .await?;
    let callees: Vec<String> = (0..pairs).map(|k| format!("b{k}-{}", env.run)).collect();
    check_count("object-call", counter_sum(&env.base, &callees).await?, &out)?;
    Ok(Measured::plain(out))
}

/// Objects with 1 MB each, read round-robin on a server that keeps few objects open, so every
/// read activates an evicted object (opens its database) and evicts another.
async fn cold_activation(env: &Env) -> anyhow::Result<Measured> {
    let objects = if env.quick { 24 } else { 200 };
    let mut http = Http::connect(&env.base).await?;
    let blob = Bytes::from(json!("x".repeat(1_000_000)).to_string());
    for k in 0..objects {
        let o = format!("cold{k}-{}", env.run);
        http.ok(
            Method::PUT,
            &format!("/{o}/_storage/kv/blob"),
            Some(blob.clone()),
        )
        .await
        .context("cold-activation setup")?;
        http.ok(
            Method::PUT,
            &format!("/{o}/_storage/kv/small"),
            Some(Bytes::from(k.to_string())),
        )
        .await?;
    }
    // Fewer clients than open objects, so a read never waits for a slot.
    let plan = Plan {
        concurrency: env.plan.concurrency.min(4),
        ..env.plan
    };
    let run = env.run.clone();
    let make: MakeReq =
        Arc::new(move |i| get(format!("/cold{}-{run}/_storage/kv/small", i % objects)));
    let workers = HttpWorker::many(&env.base, plan.concurrency, make).await?;
    let outcome = env.drive("cold-activation", workers, plan).await?;
    Ok(Measured {
        outcome,
        note: Some(format!(
            "{objects} objects of 1 MB read round-robin by {} clients on a server keeping 8 open",
            plan.concurrency
        )),
    })
}

async fn event_fanout(env: &Env) -> anyhow::Result<Measured> {
    let subscribers = 10;
    let src = format!("fan-{}", env.run);
    let sinks: Vec<String> = (0..subscribers).map(|k| format!("{src}-s{k}")).collect();
    let mut http = Http::connect(&env.base).await?;
    for sink in &sinks {
        http.json(
            Method::POST,
            &format!("/{src}/_subscriptions"),
            Some(json!({ "on": "Bench.*", "deliver": { "object": sink } })),
        )
        .await
        .context("event-fanout setup")?;
    }
    let path = format!("/{src}/_events");
    let out = http_load(env, "event-fanout", move |i| Req {
        method: Method::POST,
        path: path.clone(),
        body: Some(Bytes::from(
            json!({ "type": "Bench.ping", "data": { "i": i } }).to_string(),
        )),
    })
    .await?;
    // Wait for every delivery: the throughput counts an event once all its copies are in.
    let drain_start = Instant::now();
    let cpu_before_drain = super::cpu_seconds(&env.pids);
    let deadline = drain_start + Duration::from_secs(120);
    let mut after = vec![0i64; sinks.len()];
    let mut seen = vec![0u64; sinks.len()];
    loop {
        for (k, sink) in sinks.iter().enumerate() {
            loop {
                let page = http
                    .json(
                        Method::GET,
                        &format!("/{sink}/_events?after={}&limit=1000", after[k]),
                        None,
                    )
                    .await?;
                let items = page["items"].as_array().cloned().unwrap_or_default();
                if let Some(seq) = items.last().and_then(|e| e["seq"].as_i64()) {
                    after[k] = seq;
                }
                seen[k] += items.len() as u64;
                if items.len() < 1000 {
                    break;
                }
            }
        }
        let least = seen.iter().copied().min().unwrap_or(0);
        if least >= out.total_ops {
            if seen.iter().any(|&s| s > out.total_ops + out.errors) {
                bail!("event-fanout: a subscriber got more events than were emitted: {seen:?}");
            }
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "event-fanout: after 120 s the subscribers have {seen:?} of {} events",
                out.total_ops
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain = drain_start.elapsed();
    let mut outcome = out;
    outcome.elapsed += drain;
    outcome.server_cpu_s += super::cpu_seconds(&env.pids) - cpu_before_drain;
    Ok(Measured {
        note: Some(format!(
            "{subscribers} subscriber objects; throughput counts an event once all copies are \
             delivered ({} ms to drain after the last emit); latency is the emit's",
            drain.as_millis()
        )),
        outcome,
    })
}

async fn things_list(env: &Env) -> anyhow::Result<Measured> {
    let total = if env.quick { 200 } else { 1000 };
    let o = format!("list-{}", env.run);
    let mut http = Http::connect(&env.base).await?;
    for i in 0..total {
        http.json(
            Method::POST,
            &format!("/{o}/items"),
            Some(json!({ "id": format!("i{i:05}"), "name": format!("item {i}"), "n": i })),
        )
        .await
        .context("things-list setup")?;
    }
    let out = http_load(env, "things-list", move |_| {
        get(format!("/{o}/items?limit=20"))
    })
    .await?;
    Ok(Measured::plain(out))
}

// ---------------------------------------------------------------------------------------
// Cap'n Web RPC: the same messages to dotdo's `/rpc` and the npm `capnweb` peer's.

/// One WebSocket session with one call in flight at a time.
struct RpcSession {
    ws: Ws,
    next_push: i64,
    pipelined: bool,
}

impl RpcSession {
    /// Queues a message; it goes out with the next pull (one write for the frames of an op,
    /// so the client spends as little of the machine as it can).
    async fn feed(&mut self, msg: String) -> anyhow::Result<()> {
        self.ws.feed(Message::Text(msg.into())).await?;
        Ok(())
    }

    /// Pushes `expr` (JSON text) and returns its import id.
    async fn push(&mut self, expr: &str) -> anyhow::Result<i64> {
        self.feed(format!("[\"push\",{expr}]")).await?;
        let id = self.next_push;
        self.next_push += 1;
        Ok(id)
    }

    /// Pulls `id` and waits for its resolution; returns the resolved value as JSON text.
    async fn pull(&mut self, id: i64) -> anyhow::Result<String> {
        self.feed(format!("[\"pull\",{id}]")).await?;
        self.ws.flush().await?;
        let resolved = format!("[\"resolve\",{id},");
        loop {
            let frame = self.ws.next().await.context("the session closed")??;
            let Message::Text(text) = frame else { continue };
            let text = text.as_str();
            // The usual answer is checked without building a JSON tree: the client's own
            // cost comes out of the same two cores the server runs on.
            if let Some(rest) = text.strip_prefix(&resolved)
                && let Some(value) = rest.strip_suffix(']')
            {
                return Ok(value.to_string());
            }
            let msg: Value = serde_json::from_str(text)?;
            match (msg[0].as_str(), msg[1].as_i64()) {
                (Some("resolve"), Some(i)) if i == id => return Ok(msg[2].to_string()),
                (Some("reject"), Some(i)) if i == id => bail!("rejected: {}", msg[2]),
                (Some("abort"), _) => bail!("aborted: {}", msg[1]),
                _ => {}
            }
        }
    }

    async fn release(&mut self, id: i64) -> anyhow::Result<()> {
        self.feed(format!("[\"release\",{id},1]")).await
    }
}

impl Worker for RpcSession {
    async fn op(&mut self, i: u64) -> anyhow::Result<()> {
        if self.pipelined {
            let a = self.push(r#"["pipeline",0,["object"],["bench"]]"#).await?;
            let b = self
                .push(&format!(r#"["pipeline",{a},["things"],["items"]]"#))
                .await?;
            let c = self
                .push(&format!(r#"["pipeline",{b},["get"],["k"]]"#))
                .await?;
            check_thing(&self.pull(c).await?)?;
            for id in [a, b, c] {
                self.release(id).await?;
            }
        } else {
            let id = self
                .push(&format!(r#"["pipeline",0,["echo"],[{i}]]"#))
                .await?;
            let v = self.pull(id).await?;
            check_echo(i, &v)?;
            self.release(id).await?;
        }
        Ok(())
    }
}

struct RpcBatch(Http);

impl Worker for RpcBatch {
    async fn op(&mut self, i: u64) -> anyhow::Result<()> {
        let body = format!("[\"push\",[\"pipeline\",0,[\"echo\"],[{i}]]]\n[\"pull\",1]");
        let reply = self
            .0
            .ok(Method::POST, "/rpc", Some(Bytes::from(body)))
            .await?;
        let reply = std::str::from_utf8(&reply)?;
        match reply
            .strip_prefix("[\"resolve\",1,")
            .and_then(|r| r.strip_suffix(']'))
        {
            Some(v) => check_echo(i, v),
            None => bail!("echo({i}) gave {reply}"),
        }
    }
}

/// `echo(i)` gave `text` (JSON): the number itself, however the server spelled it.
fn check_echo(i: u64, text: &str) -> anyhow::Result<()> {
    if text.parse::<u64>().ok() == Some(i)
        || serde_json::from_str::<Value>(text).ok() == Some(json!(i))
    {
        return Ok(());
    }
    bail!("echo({i}) gave {text}")
}

/// The chain's thing (JSON text) is the one set up: a cheap look for its name first, then a
/// full parse when that does not find it.
fn check_thing(text: &str) -> anyhow::Result<()> {
    if text.contains(r#""name":"K""#) {
        return Ok(());
    }
    let v: Value = serde_json::from_str(text)?;
    if v["name"] != "K" {
        bail!("the chain gave {v}");
    }
    Ok(())
}

async fn rpc(env: &Env, name: &str) -> anyhow::Result<Measured> {
    let n = env.plan.concurrency;
    let out = match name {
        "rpc-batch" => {
            let mut workers = Vec::with_capacity(n);
            for _ in 0..n {
                workers.push(RpcBatch(Http::connect(&env.base).await?));
            }
            env.drive(name, workers, env.plan).await?
        }
        _ => {
            let pipelined = name == "rpc-pipelined-3";
            if pipelined {
                rpc_setup(&env.base).await?;
            }
            let mut workers = Vec::with_capacity(n);
            for _ in 0..n {
                workers.push(RpcSession {
                    ws: load::ws_connect(&env.base, "/rpc").await?,
                    next_push: 1,
                    pipelined,
                });
            }
            env.drive(name, workers, env.plan).await?
        }
    };
    Ok(Measured::plain(out))
}

/// The thing the chain reads: `object("bench").things("items").create({ id: "k", … })`.
async fn rpc_setup(base: &str) -> anyhow::Result<()> {
    let body = [
        json!(["push", ["pipeline", 0, ["object"], ["bench"]]]),
        json!(["push", ["pipeline", 1, ["things"], ["items"]]]),
        json!(["push", ["pipeline", 2, ["create"], [{ "id": "k", "name": "K" }]]]),
        json!(["pull", 3]),
    ]
    .iter()
    .map(Value::to_string)
    .collect::<Vec<_>>()
    .join("\n");
    let reply = Http::connect(base)
        .await?
        .ok(Method::POST, "/rpc", Some(Bytes::from(body)))
        .await?;
    let reply = String::from_utf8_lossy(&reply);
    // A second run finds it there already: a conflict is fine.
    if !reply.contains("\"resolve\",3") && !reply.contains("CONFLICT") {
        bail!("rpc setup failed: {reply}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// WebSocket broadcast: writers create things; every subscriber of the object's `/sync`
// feed receives each one. An op ends when the last subscriber has it.

type Waiting = Arc<Mutex<HashMap<u64, (usize, Option<oneshot::Sender<()>>)>>>;

struct Broadcaster {
    http: Http,
    path: String,
    waiting: Waiting,
}

impl Worker for Broadcaster {
    async fn op(&mut self, i: u64) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(i, (0, Some(tx)));
        let body = json!({ "id": format!("m{i}"), "i": i }).to_string();
        self.http
            .ok(Method::POST, &self.path, Some(Bytes::from(body)))
            .await?;
        let got = tokio::time::timeout(Duration::from_secs(30), rx).await;
        lock(&self.waiting).remove(&i);
        match got {
            Ok(Ok(())) => Ok(()),
            _ => bail!("message {i} did not reach every subscriber in 30 s"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The op number in a `/sync` frame of a created thing (`{ seq, event: { data: { i } } }`
/// or wherever the thing's fields are).
fn op_number(frame: &Value) -> Option<u64> {
    fn find(v: &Value) -> Option<u64> {
        match v {
            Value::Object(m) => m
                .get("id")
                .and_then(Value::as_str)
                .and_then(|id| id.strip_prefix('m'))
                .and_then(|n| n.parse().ok())
                .or_else(|| m.values().find_map(find)),
            _ => None,
        }
    }
    find(frame)
}

async fn ws_broadcast(env: &Env) -> anyhow::Result<Measured> {
    let subscribers = if env.quick { 8 } else { 32 };
    let o = format!("room-{}", env.run);
    let waiting: Waiting = Arc::default();
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let mut ws = load::ws_connect(&env.base, &format!("/{o}/sync?collection=msgs")).await?;
        let waiting = waiting.clone();
        readers.push(tokio::spawn(async move {
            while let Some(Ok(frame)) = ws.next().await {
                let Message::Text(text) = frame else { continue };
                let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                let Some(i) = op_number(&v) else { continue };
                let mut w = lock(&waiting);
                if let Some((count, tx)) = w.get_mut(&i) {
                    *count += 1;
                    if *count == subscribers
                        && let Some(tx) = tx.take()
                    {
                        let _ = tx.send(());
                    }
                }
            }
        }));
    }
    // Each subscriber's stream is open before the first write.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let plan = Plan {
        concurrency: env.plan.concurrency.min(8),
        ..env.plan
    };
    let mut workers = Vec::new();
    for _ in 0..plan.concurrency {
        workers.push(Broadcaster {
            http: Http::connect(&env.base).await?,
            path: format!("/{o}/msgs"),
            waiting: waiting.clone(),
        });
    }
    let out = env.drive("ws-broadcast", workers, plan).await;
    for r in readers {
        r.abort();
    }
    Ok(Measured {
        note: Some(format!(
            "{subscribers} subscribers, {} writers; an op is one write seen by all; \
             deliveries/s = throughput × {subscribers}",
            plan.concurrency
        )),
        outcome: out?,
    })
}
