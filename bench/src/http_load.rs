//! HTTP load against the real binary.

use crate::stats::Line;
use anyhow::{Context, bail};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start(dotdo: &Path, durability: &str) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(dotdo)
        .args([
            "start",
            "--port",
            "0",
            "--durability",
            durability,
            "--state-dir",
        ])
        .arg(dir.path().join("state"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", dotdo.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().context("dotdo printed nothing")??;
    let Some(base) = first.split_whitespace().find(|w| w.starts_with("http://")) else {
        bail!("unexpected first line: {first}");
    };
    let base = base.to_string();
    std::thread::spawn(move || lines.for_each(drop));
    Ok(Server {
        child,
        base,
        _dir: dir,
    })
}

/// KV writes to `objects` objects that do not exist yet: first-touch creation of a database
/// each, with LRU eviction once the open-object limit is reached.
pub async fn new_objects(
    dotdo: &Path,
    durability: &str,
    objects: usize,
    connections: usize,
) -> anyhow::Result<Line> {
    let server = start(dotdo, durability)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let base = Arc::new(server.base.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, base, next) = (client.clone(), base.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= objects {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t = Instant::now();
                let res = client
                    .put(format!("{base}/new-{i}/_storage/kv/k"))
                    .json(&json!(i))
                    .send()
                    .await?;
                if !res.status().is_success() {
                    bail!("request failed: {}", res.status());
                }
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::with_capacity(objects);
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed();
    drop(server);
    Ok(Line::new(all, elapsed)
        .with("durability", json!(durability))
        .with("objects", json!(objects))
        .with("connections", json!(connections)))
}
