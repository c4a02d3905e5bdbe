//! The business object's things over HTTP on the real binary, in one object holding 100,000
//! things: create, get, list (a page of 100), update (PATCH), search.

use crate::http_load::start;
use crate::stats::Line;
use anyhow::bail;
use serde_json::json;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Runs `ops` requests from `connections` clients; `req(i)` sends the i-th and checks it.
async fn drive<F, Fut>(ops: usize, connections: usize, req: F) -> anyhow::Result<Line>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let req = Arc::new(req);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (req, next) = (req.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat: Vec<Duration> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ops {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t = Instant::now();
                req(i).await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::with_capacity(ops);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(Line::new(all, started.elapsed()))
}

async fn expect(res: reqwest::Response, status: u16) -> anyhow::Result<()> {
    if res.status().as_u16() != status {
        bail!("HTTP {}: {}", res.status(), res.text().await?);
    }
    res.bytes().await?;
    Ok(())
}

pub async fn things(
    dotdo: &Path,
    durability: &str,
    things: usize,
    connections: usize,
) -> anyhow::Result<Vec<Line>> {
    let server = start(dotdo, durability)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let base = Arc::new(format!("{}/bench/contacts", server.base));
    let words = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    ];
    let mut out = Vec::new();
    let label = |l: Line, name: &str| {
        l.with_name(name)
            .with("durability", json!(durability))
            .with("things", json!(things))
            .with("connections", json!(connections))
    };
    let (c, b) = (client.clone(), base.clone());
    let create = drive(things, connections, move |i| {
        let (c, b) = (c.clone(), b.clone());
        async move {
            let body = json!({ "id": format!("c{i}"), "name": format!("Contact {i}"),
                "status": if i % 10 == 0 { "customer" } else { "lead" },
                "address": { "city": words[i % words.len()], "zip": format!("{:05}", i % 99_999) } });
            expect(c.post(b.as_str()).json(&body).send().await?, 201).await
        }
    })
    .await?;
    out.push(label(create, "things_create"));
    let (c, b) = (client.clone(), base.clone());
    let get = drive(20_000, connections, move |i| {
        let (c, b) = (c.clone(), b.clone());
        async move {
            let id = (i * 7_919) % things;
            expect(c.get(format!("{b}/c{id}")).send().await?, 200).await
        }
    })
    .await?;
    out.push(label(get, "things_get"));
    let (c, b) = (client.clone(), base.clone());
    let list = drive(2_000, connections, move |i| {
        let (c, b) = (c.clone(), b.clone());
        async move {
            // Pages from several places: the first, filtered, sorted by a data field.
            let url = match i % 3 {
                0 => format!("{b}?limit=100"),
                1 => format!("{b}?status=customer&limit=100"),
                _ => format!("{b}?sort=-updatedAt&limit=100"),
            };
            expect(c.get(url).send().await?, 200).await
        }
    })
    .await?;
    out.push(label(list, "things_list_page_100"));
    let (c, b) = (client.clone(), base.clone());
    let update = drive(20_000, connections, move |i| {
        let (c, b) = (c.clone(), b.clone());
        async move {
            let id = (i * 104_729) % things;
            expect(
                c.patch(format!("{b}/c{id}"))
                    .json(&json!({ "score": i }))
                    .send()
                    .await?,
                200,
            )
            .await
        }
    })
    .await?;
    out.push(label(update, "things_update_patch"));
    let (c, root) = (
        client.clone(),
        Arc::new(format!("{}/bench/_search", server.base)),
    );
    let search = drive(2_000, connections.min(16), move |i| {
        let (c, root) = (c.clone(), root.clone());
        async move {
            let q = format!("{} {}", words[i % words.len()], 100 + i % 900);
            expect(
                c.get(format!("{root}?q={}&limit=20", q.replace(' ', "+")))
                    .send()
                    .await?,
                200,
            )
            .await
        }
    })
    .await?;
    out.push(label(search, "things_search"));
    Ok(out)
}
