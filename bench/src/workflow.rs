//! The `$` context in process: durable no-op actions (`$.do`) and events delivered from one
//! object to another.

use crate::stats::Line;
use dotdo_runtime::{
    AlarmInfo, Durability, DurableObject, FnClass, Host, HostOptions, ObjectError, ObjectState,
    async_trait,
};
use dotdo_workflow::{Context, DeliveryTarget, DoOptions, NoOutbound, Registry, WorkflowEnv};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Shared time origin, so a receiver can tell how long an event took to arrive.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Delivery latencies seen by receivers.
#[derive(Default)]
struct Arrivals {
    lat: Mutex<Vec<Duration>>,
    count: AtomicUsize,
}

struct Flow {
    cx: Context,
}

#[async_trait]
impl DurableObject for Flow {
    async fn call(&self, method: &str, args: Value) -> Result<Value, ObjectError> {
        match method {
            "do" => {
                let key = args["key"].as_str().unwrap_or_default().to_string();
                self.cx
                    .do_(
                        "noop",
                        args,
                        DoOptions {
                            key: Some(key),
                            retry: None,
                        },
                    )
                    .await
                    .map_err(|e| ObjectError::internal(e.message))
            }
            "emit" => {
                let t = origin().elapsed().as_nanos() as u64;
                Ok(json!(self.cx.send(
                    "Order.created",
                    None,
                    json!({ "t": t })
                )?))
            }
            "count" => Ok(self.cx.counts()?["events"].clone()),
            "subscribe" => {
                let to = args["object"].as_str().unwrap_or_default().to_string();
                Ok(json!(self.cx.subscribe(
                    "*",
                    DeliveryTarget::Object(to),
                    None
                )?))
            }
            _ => Err(ObjectError::not_found(method)),
        }
    }

    async fn alarm(&self, _: AlarmInfo) -> Result<(), ObjectError> {
        self.cx.on_alarm().await
    }
}

fn host(
    dir: &std::path::Path,
    durability: Durability,
    arrivals: Option<Arc<Arrivals>>,
) -> anyhow::Result<Host> {
    let mut registry = Registry::new().action("noop", |_, _| async { Ok(Value::Null) });
    if let Some(arrivals) = arrivals {
        registry = registry.on("Order.*", "arrival", move |cx: Context, ev| {
            let arrivals = arrivals.clone();
            async move {
                // Only the receiving side measures.
                if ev.source.is_some() {
                    let sent = Duration::from_nanos(ev.data["t"].as_u64().unwrap_or(0));
                    let lat = origin().elapsed().saturating_sub(sent);
                    arrivals.lat.lock().map(|mut l| l.push(lat)).ok();
                    arrivals.count.fetch_add(1, Ordering::Relaxed);
                }
                let _ = cx;
                Ok(())
            }
        });
    }
    let registry = Arc::new(registry);
    let env = Arc::new(WorkflowEnv::new(Arc::new(NoOutbound)));
    let mut opts = HostOptions::new(dir).class(
        "flow",
        FnClass::new("Flow", move |state: ObjectState| Flow {
            cx: Context::new(state, registry.clone(), env.clone()),
        }),
    );
    opts.durability = durability;
    Ok(Host::open(opts)?)
}

fn durability_name(d: Durability) -> &'static str {
    match d {
        Durability::Normal => "normal",
        Durability::Fsync => "fsync",
        Durability::FsyncEach => "fsync-each",
    }
}

/// `ops` durable no-op actions, each with its own key, from `callers` callers spread over
/// `objects` objects. Each is recorded, run by the pump, completed and answered.
pub async fn do_noop(
    durability: Durability,
    objects: usize,
    ops: usize,
    callers: usize,
) -> anyhow::Result<Line> {
    let dir = tempfile::tempdir()?;
    let host = host(dir.path(), durability, None)?;
    for o in 0..objects {
        host.call("flow", &format!("o{o}"), "do", json!({ "key": "warm" }))
            .await?;
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (host, next) = (host.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ops {
                    return Ok::<_, ObjectError>(lat);
                }
                let t = Instant::now();
                host.call(
                    "flow",
                    &format!("o{}", i % objects),
                    "do",
                    json!({ "key": format!("k{i}") }),
                )
                .await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::with_capacity(ops);
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed();
    host.shutdown(Duration::from_secs(5)).await;
    Ok(Line::new(all, elapsed)
        .with_name(if objects == 1 {
            "do_noop_one_object"
        } else {
            "do_noop_100_objects"
        })
        .with("durability", json!(durability_name(durability)))
        .with("objects", json!(objects))
        .with("callers", json!(callers)))
}

/// `ops` events emitted on `src` by `callers` callers and delivered to `dst` through a
/// subscription, with a handler of `Order.*` on both objects. Latency is emit to arrival in
/// `dst`'s handler; throughput is handled deliveries per second, first emit to last arrival.
/// The emit acknowledgements are reported too.
pub async fn events_to_object(
    durability: Durability,
    ops: usize,
    callers: usize,
) -> anyhow::Result<Vec<Line>> {
    let dir = tempfile::tempdir()?;
    let arrivals = Arc::new(Arrivals::default());
    let host = host(dir.path(), durability, Some(arrivals.clone()))?;
    subscribe_dst(&host).await?;
    let started = Instant::now();
    let emits = emit_on_src(&host, ops, callers).await?;
    let emitted = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    while arrivals.count.load(Ordering::Relaxed) < ops {
        if Instant::now() > deadline {
            anyhow::bail!(
                "only {} of {ops} events arrived",
                arrivals.count.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let delivered = started.elapsed();
    host.shutdown(Duration::from_secs(5)).await;
    let lat = arrivals.lat.lock().map(|l| l.clone()).unwrap_or_default();
    let name = durability_name(durability);
    Ok(vec![
        Line::new(emits, emitted)
            .with_name("events_emit_one_object")
            .with("durability", json!(name))
            .with("callers", json!(callers)),
        Line::new(lat, delivered)
            .with_name("events_handled_object_to_object")
            .with("durability", json!(name))
            .with("callers", json!(callers)),
    ])
}

/// Raw delivery: `ops` events emitted on `src` and appended to `dst`'s log, no handlers.
/// Throughput is delivered events per second, first emit to the last one in `dst`; the
/// latencies are those of the emits.
pub async fn events_delivery_only(
    durability: Durability,
    ops: usize,
    callers: usize,
) -> anyhow::Result<Line> {
    let dir = tempfile::tempdir()?;
    let host = host(dir.path(), durability, None)?;
    subscribe_dst(&host).await?;
    let started = Instant::now();
    let emits = emit_on_src(&host, ops, callers).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = host.call("flow", "dst", "count", Value::Null).await?;
        if n.as_u64().unwrap_or(0) as usize > ops {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!("only {n} of {ops} events arrived");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let delivered = started.elapsed();
    host.shutdown(Duration::from_secs(5)).await;
    Ok(Line::new(emits, delivered)
        .with_name("events_delivered_object_to_object")
        .with("durability", json!(durability_name(durability)))
        .with("callers", json!(callers))
        .with("latency_of", json!("emit")))
}

/// Subscribes `dst` to every event of `src` and activates both.
async fn subscribe_dst(host: &Host) -> anyhow::Result<()> {
    host.call("flow", "src", "subscribe", json!({ "object": "dst" }))
        .await?;
    host.call("flow", "dst", "emit", Value::Null).await?;
    Ok(())
}

/// Emits `ops` events on `src` from `callers` callers; returns each emit's latency.
async fn emit_on_src(host: &Host, ops: usize, callers: usize) -> anyhow::Result<Vec<Duration>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (host, next) = (host.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < ops {
                let t = Instant::now();
                host.call("flow", "src", "emit", Value::Null).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, ObjectError>(lat)
        }));
    }
    let mut emits = Vec::with_capacity(ops);
    for t in tasks {
        emits.extend(t.await??);
    }
    Ok(emits)
}
