//! In-process runtime figures: activation of an evicted object, and calls between objects.

use crate::stats::Line;
use dotdo_runtime::{
    Durability, DurableObject, FnClass, Host, HostOptions, ObjectError, ObjectState, async_trait,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

struct Bench {
    state: ObjectState,
}

#[async_trait]
impl DurableObject for Bench {
    async fn call(&self, method: &str, args: Value) -> Result<Value, ObjectError> {
        match method {
            "noop" => Ok(Value::Null),
            "incr" => {
                let st = self.state.storage();
                let n = st.get_json("n")?.and_then(|v| v.as_i64()).unwrap_or(0) + 1;
                st.put_json("n", json!(n))?;
                Ok(json!(n))
            }
            "read" => Ok(self.state.storage().get_json("k")?.unwrap_or(Value::Null)),
            // Calls `peer`'s noop `n` times; returns each call's latency in nanoseconds.
            "relay" => {
                let peer = self
                    .state
                    .stub("bench", args["peer"].as_str().unwrap_or("peer"));
                let n = args["n"].as_u64().unwrap_or(1);
                let mut out = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let t = Instant::now();
                    peer.call("noop", Value::Null).await?;
                    out.push(t.elapsed().as_nanos() as u64);
                }
                Ok(json!(out))
            }
            _ => Err(ObjectError::not_found(method)),
        }
    }
}

fn host(dir: &std::path::Path) -> anyhow::Result<Host> {
    host_with(dir, Durability::Normal)
}

fn host_with(dir: &std::path::Path, durability: Durability) -> anyhow::Result<Host> {
    let mut opts =
        HostOptions::new(dir).class("bench", FnClass::new("Bench", |state| Bench { state }));
    opts.durability = durability;
    Ok(Host::open(opts)?)
}

/// KV increments on one object from `callers` concurrent callers, in process, with each
/// durability; reports how many syncs group commit needed.
pub async fn increments(
    durability: Durability,
    ops: usize,
    callers: usize,
) -> anyhow::Result<Line> {
    let dir = tempfile::tempdir()?;
    let host = host_with(dir.path(), durability)?;
    host.call("bench", "hot", "incr", Value::Null).await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(ops / callers);
            for _ in 0..ops / callers {
                let t = Instant::now();
                host.call("bench", "hot", "incr", Value::Null).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, ObjectError>(lat)
        }));
    }
    let mut all = Vec::with_capacity(ops);
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed();
    let stats = host.stats();
    host.shutdown(Duration::from_secs(5)).await;
    let name = match durability {
        Durability::Normal => "normal",
        Durability::Fsync => "fsync",
        Durability::FsyncEach => "fsync-each",
    };
    Ok(Line::new(all, elapsed)
        .with_name("runtime_kv_increment_one_object")
        .with("durability", json!(name))
        .with("callers", json!(callers))
        .with("syncs", json!(stats.group_commit_syncs)))
}

/// Activation of an evicted object whose database holds 1 MB: evict, then time the first call.
pub async fn activation_1mb(rounds: usize) -> anyhow::Result<Line> {
    let dir = tempfile::tempdir()?;
    let host = host(dir.path())?;
    host.storage("bench", "big", |s| {
        s.exec("CREATE TABLE blob(id INTEGER PRIMARY KEY, b BLOB)", &[])?;
        for i in 0..256 {
            s.exec(
                "INSERT INTO blob VALUES (?1, randomblob(4096))",
                &[dotdo_runtime::storage_api::SqlValue::Integer(i)],
            )?;
        }
        s.put("k", &dotdo_runtime::storage_api::KvValue::Json(json!(1)))
    })
    .await?;
    let size = host.storage("bench", "big", |s| s.size_bytes()).await?;
    let mut lat = Vec::with_capacity(rounds);
    let started = Instant::now();
    let mut busy = Duration::ZERO;
    for _ in 0..rounds {
        if !host.evict("bench", "big").await {
            anyhow::bail!("the object did not evict");
        }
        let t = Instant::now();
        host.call("bench", "big", "read", Value::Null).await?;
        let d = t.elapsed();
        busy += d;
        lat.push(d);
    }
    let _ = started;
    host.shutdown(Duration::from_secs(5)).await;
    Ok(Line::new(lat, busy)
        .with_name("activation_evicted_1mb")
        .with("db_bytes", json!(size))
        .with("durability", json!("normal")))
}

/// Same-node calls from one object to another, timed inside the caller.
pub async fn object_to_object(calls: usize) -> anyhow::Result<Line> {
    let dir = tempfile::tempdir()?;
    let host = host(dir.path())?;
    host.call("bench", "peer", "noop", Value::Null).await?;
    // Warm up, then measure.
    host.call(
        "bench",
        "caller",
        "relay",
        json!({ "peer": "peer", "n": 1000 }),
    )
    .await?;
    let started = Instant::now();
    let out = host
        .call(
            "bench",
            "caller",
            "relay",
            json!({ "peer": "peer", "n": calls }),
        )
        .await?;
    let elapsed = started.elapsed();
    let lat: Vec<Duration> = out
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_u64())
                .map(Duration::from_nanos)
                .collect()
        })
        .unwrap_or_default();
    host.shutdown(Duration::from_secs(5)).await;
    Ok(Line::new(lat, elapsed)
        .with_name("object_to_object_call")
        .with("durability", json!("normal")))
}
