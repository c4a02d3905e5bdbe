//! The `$` context on a real host (SQLite in temp dirs) with a manual clock: durable actions,
//! retries, the DLQ, handlers, deliveries between objects, webhooks and fencing.
#![allow(clippy::unwrap_used)]

mod common;
use async_trait::async_trait;
use common::eventually;
use dotdo_runtime::{
    AlarmInfo, DurableObject, ErrorKind, FnClass, Host, HostOptions, ManualClock, ObjectError,
    ObjectState,
};
use dotdo_workflow::*;
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const T0: i64 = 1_700_000_000_000;

/// What the test can see and steer from outside the objects.
#[derive(Default)]
struct World {
    /// Runs of each action function, by idempotency-relevant name.
    runs: Mutex<HashMap<String, u32>>,
    /// Failures still to come, by order id.
    fail_left: Mutex<HashMap<String, u32>>,
    /// Handler runs: (object, handler, event id).
    handled: Mutex<Vec<(String, String, String)>>,
    /// Orders whose charge waits here until released.
    held: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
}

/// A fake webhook receiver: records calls, fails while told to.
#[derive(Default)]
struct Sink {
    calls: Mutex<Vec<(String, String)>>,
    failing: AtomicBool,
}

#[async_trait]
impl Outbound for Sink {
    async fn send(&self, call: HttpCall) -> Result<HttpReply, String> {
        let key = call
            .headers
            .iter()
            .find(|(k, _)| k == "idempotency-key")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        self.calls.lock().push((call.url.clone(), key));
        let status = if self.failing.load(Ordering::SeqCst) {
            503
        } else {
            200
        };
        Ok(HttpReply {
            status,
            body: br#"{"ok":true}"#.to_vec(),
        })
    }
}

fn registry(world: Arc<World>) -> Registry {
    let w1 = world.clone();
    let w2 = world.clone();
    let w3 = world.clone();
    let w4 = world;
    Registry::new()
        .action("charge", move |cx: Context, input: Value| {
            let world = w1.clone();
            async move {
                let order = input["order"].as_str().unwrap_or_default().to_string();
                *world
                    .runs
                    .lock()
                    .entry(format!("charge:{order}"))
                    .or_default() += 1;
                if let Some(left) = world.fail_left.lock().get_mut(&order)
                    && *left > 0
                {
                    *left -= 1;
                    return Err(ActionError::retry("card declined, try again"));
                }
                let held = world.held.lock().get(&order).cloned();
                if let Some(release) = held {
                    release.notified().await;
                }
                cx.state()
                    .storage()
                    .put_json(&format!("charged:{order}"), input["amount"].clone())?;
                Ok(json!({ "charged": input["amount"] }))
            }
        })
        .action("debit", move |cx: Context, input: Value| {
            let world = w4.clone();
            async move {
                // Writes first, then fails: the failed attempt's write must not stay.
                let st = cx.state().storage();
                let n = st.get_json("debits")?.and_then(|v| v.as_i64()).unwrap_or(0);
                st.put_json("debits", json!(n + 1))?;
                let order = input["order"].as_str().unwrap_or_default().to_string();
                if let Some(left) = world.fail_left.lock().get_mut(&order)
                    && *left > 0
                {
                    *left -= 1;
                    return Err(ActionError::retry("not yet"));
                }
                Ok(json!(n + 1))
            }
        })
        .on("Order.*", "audit", move |cx: Context, ev: Event| {
            let world = w2.clone();
            async move {
                let me = cx.state().name().unwrap_or("?").to_string();
                world
                    .handled
                    .lock()
                    .push((me, "audit".into(), ev.id.clone()));
                let st = cx.state().storage();
                let n = st.get_json("audits")?.and_then(|v| v.as_i64()).unwrap_or(0);
                st.put_json("audits", json!(n + 1))?;
                Ok(())
            }
        })
        .on("*.created", "created", move |cx: Context, ev: Event| {
            let world = w3.clone();
            async move {
                let me = cx.state().name().unwrap_or("?").to_string();
                world.handled.lock().push((me, "created".into(), ev.id));
                Ok(())
            }
        })
}

struct Shop {
    cx: Context,
}

#[async_trait]
impl DurableObject for Shop {
    async fn call(&self, method: &str, a: Value) -> Result<Value, ObjectError> {
        let cx = &self.cx;
        let s = |k: &str| a[k].as_str().unwrap_or_default().to_string();
        match method {
            "order" => {
                let order = s("order");
                let r = cx
                    .do_(
                        "charge",
                        json!({ "order": order, "amount": a["amount"] }),
                        DoOptions {
                            key: Some(format!("charge:{order}")),
                            retry: None,
                        },
                    )
                    .await;
                Ok(match r {
                    Ok(v) => json!({ "ok": v }),
                    Err(e) => json!({ "err": e.message }),
                })
            }
            "debit" => {
                let r = cx
                    .do_(
                        "debit",
                        json!({ "order": s("order") }),
                        DoOptions::default(),
                    )
                    .await;
                Ok(match r {
                    Ok(v) => json!({ "ok": v }),
                    Err(e) => json!({ "err": e.message }),
                })
            }
            "try" => {
                let r = cx
                    .try_("charge", json!({ "order": s("order"), "amount": 1 }))
                    .await;
                Ok(json!({ "ok": r.is_ok() }))
            }
            "emit" => Ok(json!(cx.send(&s("type"), None, a["data"].clone())?)),
            "subscribe" => {
                let deliver = if a["object"].is_string() {
                    DeliveryTarget::Object(s("object"))
                } else {
                    DeliveryTarget::Webhook(WebhookTarget {
                        url: s("url"),
                        headers: Default::default(),
                    })
                };
                let retry = a
                    .get("retry")
                    .map(|r| serde_json::from_value(r.clone()).unwrap());
                Ok(json!(cx.subscribe(&s("on"), deliver, retry)?))
            }
            "events" => Ok(json!(cx.events(0, None, 1000)?.0)),
            "action" => Ok(json!(cx.action_by_key(&s("key"))?)),
            "dlq" => Ok(json!(cx.dlq(0, 100)?)),
            "replay" => Ok(json!(cx.dlq_replay(&s("id"))?)),
            "clear_alarm" => {
                cx.state().storage().delete_alarm()?;
                Ok(Value::Null)
            }
            "alarm" => Ok(json!(cx.state().storage().get_alarm()?)),
            "get" => Ok(cx
                .state()
                .storage()
                .get_json(&s("key"))?
                .unwrap_or(Value::Null)),
            "counts" => cx.counts(),
            "fence_me" => {
                // Another activation took over behind this one's back.
                cx.state().storage().with(|st| {
                    st.internal(|c| {
                        let e = store::current_epoch(c)?;
                        store::set_epoch(c, e + 1)
                    })
                })?;
                cx.send("Order.created", None, Value::Null)
                    .map(|_| Value::Null)
            }
            _ => Err(ObjectError::not_found(method)),
        }
    }

    async fn alarm(&self, _: AlarmInfo) -> Result<(), ObjectError> {
        self.cx.on_alarm().await
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    clock: ManualClock,
    world: Arc<World>,
    sink: Arc<Sink>,
    host: Host,
}

fn open_host(
    dir: &std::path::Path,
    clock: &ManualClock,
    world: &Arc<World>,
    sink: &Arc<Sink>,
) -> Host {
    let reg = Arc::new(registry(world.clone()));
    let mut env = WorkflowEnv::new(sink.clone());
    env.webhook_timeout = Duration::from_secs(10);
    let env = Arc::new(env);
    let mut o = HostOptions::new(dir).class(
        "shop",
        FnClass::new("Shop", move |state: ObjectState| Shop {
            cx: Context::new(state, reg.clone(), env.clone()),
        }),
    );
    o.clock = Arc::new(clock.clone());
    o.idle_timeout = Duration::from_secs(3600);
    Host::open(o).unwrap()
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let world = Arc::new(World::default());
    let sink = Arc::new(Sink::default());
    let host = open_host(dir.path(), &clock, &world, &sink);
    Fixture {
        dir,
        clock,
        world,
        sink,
        host,
    }
}

impl Fixture {
    async fn call(&self, object: &str, method: &str, args: Value) -> Value {
        self.host.call("shop", object, method, args).await.unwrap()
    }
    async fn action(&self, object: &str, key: &str) -> Value {
        self.call(object, "action", json!({ "key": key })).await
    }
    /// Waits until the action has failed `attempts` times and waits for a retry; returns when.
    async fn wait_pending(&self, object: &str, key: &str, attempts: u32) -> i64 {
        for _ in 0..500 {
            let a = self.action(object, key).await;
            if a["attempts"] == attempts && a["status"] == "pending" {
                return a["nextAttemptAt"].as_i64().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{key} never reached {attempts} failed attempts");
    }
    /// Calls `order` on `acme` in a task of its own; the handle gives its answer.
    fn order_in_background(&self, order: &str, amount: i64) -> tokio::task::JoinHandle<Value> {
        let host = self.host.clone();
        let args = json!({ "order": order, "amount": amount });
        tokio::spawn(async move { host.call("shop", "acme", "order", args).await.unwrap() })
    }
    fn runs(&self, key: &str) -> u32 {
        self.world.runs.lock().get(key).copied().unwrap_or(0)
    }
}

#[tokio::test]
async fn do_runs_once_and_returns_the_stored_result() {
    let fx = fixture();
    let r = fx
        .call("acme", "order", json!({ "order": "o1", "amount": 42 }))
        .await;
    assert_eq!(r, json!({ "ok": { "charged": 42 } }));
    let again = fx
        .call("acme", "order", json!({ "order": "o1", "amount": 42 }))
        .await;
    assert_eq!(again, r);
    assert_eq!(fx.runs("charge:o1"), 1, "a completed key never runs again");
    let a = fx.action("acme", "charge:o1").await;
    assert_eq!(a["status"], "completed");
    assert_eq!(a["attempts"], 1);
    assert_eq!(
        fx.call("acme", "get", json!({ "key": "charged:o1" })).await,
        json!(42)
    );
    // Survives eviction: the stored result comes back from disk.
    assert!(fx.host.evict("shop", "acme").await);
    let third = fx
        .call("acme", "order", json!({ "order": "o1", "amount": 42 }))
        .await;
    assert_eq!(third, r);
    assert_eq!(fx.runs("charge:o1"), 1);
}

/// The first attempt of a new action starts in the caller's call, claimed in the write that
/// records it: two commits (the record and claim, then the attempt's turn), no pump.
#[tokio::test]
async fn a_first_attempt_runs_at_once_in_two_commits() {
    let fx = fixture();
    fx.call("acme", "get", json!({ "key": "warm" })).await;
    let before = fx.host.stats();
    let r = fx
        .call("acme", "order", json!({ "order": "f1", "amount": 5 }))
        .await;
    assert_eq!(r, json!({ "ok": { "charged": 5 } }));
    let commits = fx.host.stats().commits - before.commits;
    assert_eq!(commits, 2, "record and claim, then the attempt");
    let a = fx.action("acme", "charge:f1").await;
    assert_eq!(
        (a["status"].as_str(), a["attempts"].as_i64()),
        (Some("completed"), Some(1))
    );
}

/// While a first attempt runs, the action is claimed with a lease and the alarm is due by
/// the lease's end, so a process that dies mid-attempt leaves work the alarm picks up.
#[tokio::test]
async fn a_running_first_attempt_is_covered_by_the_alarm() {
    let fx = fixture();
    let release = Arc::new(tokio::sync::Notify::new());
    fx.world.held.lock().insert("h1".into(), release.clone());
    let caller = fx.order_in_background("h1", 3);
    eventually("the attempt started", || async {
        fx.runs("charge:h1") == 1
    })
    .await;
    let a = fx.action("acme", "charge:h1").await;
    assert_eq!(a["status"], "running");
    let lease_end = a["nextAttemptAt"].as_i64().unwrap();
    assert!(lease_end > T0, "leased: {a}");
    let alarm = fx
        .call("acme", "alarm", Value::Null)
        .await
        .as_i64()
        .unwrap();
    assert!(
        alarm <= lease_end,
        "alarm {alarm} after the lease end {lease_end}"
    );
    release.notify_one();
    assert_eq!(caller.await.unwrap(), json!({ "ok": { "charged": 3 } }));
    assert_eq!(fx.runs("charge:h1"), 1);
}

/// Leaves what a crash in the middle of a first attempt of `charge:{order}` leaves: the
/// record and claim committed by an older activation, the alarm at the lease's end.
async fn crashed_mid_attempt(fx: &Fixture, order: &str, lease_end: i64) {
    let order = order.to_string();
    fx.host
        .storage("shop", "acme", move |st| {
            st.internal(|c| {
                store::ensure_schema(c)?;
                store::set_epoch(c, 1)?;
                let new = NewAction {
                    key: format!("charge:{order}"),
                    name: "charge".into(),
                    kind: "function".into(),
                    input: json!({ "order": order, "amount": 9 }),
                    retry: RetryPolicy::default(),
                };
                let (a, _) = store::enqueue_action(c, &new, &format!("act_{order}"), T0, 1)?;
                store::claim_action(c, &a.id, T0, lease_end, 1)
            })?;
            st.set_alarm(lease_end)
        })
        .await
        .unwrap();
    // The process restarts.
    assert!(fx.host.evict("shop", "acme").await);
}

/// Left alone, such an attempt runs again when the alarm fires at its lease's end.
#[tokio::test]
async fn an_attempt_cut_short_by_a_crash_runs_again_when_its_lease_ends() {
    let fx = fixture();
    let lease_end = T0 + 35_000;
    crashed_mid_attempt(&fx, "c1", lease_end).await;
    fx.clock.set(lease_end - 1_000);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(fx.runs("charge:c1"), 0, "not before the lease ends");
    fx.clock.set(lease_end);
    eventually("retried after the lease", || async {
        fx.action("acme", "charge:c1").await["status"] == "completed"
    })
    .await;
    assert_eq!(fx.runs("charge:c1"), 1);
    assert_eq!(
        fx.call("acme", "get", json!({ "key": "charged:c1" })).await,
        json!(9)
    );
}

/// A caller that comes back with the key does not wait for the lease: the new activation
/// takes the claim over at once.
#[tokio::test]
async fn a_caller_retrying_after_a_crash_gets_the_result_at_once() {
    let fx = fixture();
    crashed_mid_attempt(&fx, "c2", T0 + 35_000).await;
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        fx.call("acme", "order", json!({ "order": "c2", "amount": 9 })),
    )
    .await
    .expect("the caller waited for the lease");
    assert_eq!(r, json!({ "ok": { "charged": 9 } }));
    assert_eq!(fx.runs("charge:c2"), 1);
}

#[tokio::test]
async fn retries_follow_the_policy_on_the_alarm() {
    let fx = fixture();
    fx.world.fail_left.lock().insert("o2".into(), 2);
    let caller = fx.order_in_background("o2", 7);
    // First attempt fails at once: the retry is due 100–125 ms later.
    let next = fx.wait_pending("acme", "charge:o2", 1).await;
    assert!(
        (T0 + 100..=T0 + 125).contains(&next),
        "retry at +{}",
        next - T0
    );
    fx.clock.advance(99);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(fx.runs("charge:o2"), 1, "not before its time");
    fx.clock.set(next);
    let next = fx.wait_pending("acme", "charge:o2", 2).await;
    let since = next - fx.clock.now_ms_for_test();
    assert!((200..=250).contains(&since), "second delay {since}");
    fx.clock.set(next);
    let out = caller.await.unwrap();
    assert_eq!(out, json!({ "ok": { "charged": 7 } }));
    assert_eq!(fx.runs("charge:o2"), 3);
    let a = fx.action("acme", "charge:o2").await;
    assert_eq!(
        (a["status"].as_str(), a["attempts"].as_i64()),
        (Some("completed"), Some(3))
    );
}

trait NowForTest {
    fn now_ms_for_test(&self) -> i64;
}
impl NowForTest for ManualClock {
    fn now_ms_for_test(&self) -> i64 {
        use dotdo_runtime::Clock;
        self.now_ms()
    }
}

#[tokio::test]
async fn exhausted_actions_land_in_the_dlq_and_replay() {
    let fx = fixture();
    fx.world.fail_left.lock().insert("o3".into(), 100);
    let caller = fx.order_in_background("o3", 1);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        fx.clock.advance(1_000);
    }
    let out = caller.await.unwrap();
    assert_eq!(out, json!({ "err": "card declined, try again" }));
    assert_eq!(fx.runs("charge:o3"), 3, "default policy: 3 attempts");
    let a = fx.action("acme", "charge:o3").await;
    assert_eq!(a["status"], "failed");
    let dlq = fx.call("acme", "dlq", Value::Null).await;
    let entries = dlq.as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["kind"], "function");
    assert_eq!(entries[0]["attempts"], 3);
    assert_eq!(entries[0]["error"], "card declined, try again");
    // A failed key answers with its error and does not run again.
    let again = fx
        .call("acme", "order", json!({ "order": "o3", "amount": 1 }))
        .await;
    assert_eq!(again, json!({ "err": "card declined, try again" }));
    assert_eq!(fx.runs("charge:o3"), 3);

    // Fix the cause, replay: it completes and leaves the DLQ.
    fx.world.fail_left.lock().insert("o3".into(), 0);
    let id = entries[0]["id"].as_str().unwrap();
    fx.call("acme", "replay", json!({ "id": id })).await;
    eventually("replayed action completes", || async {
        fx.action("acme", "charge:o3").await["status"] == "completed"
    })
    .await;
    assert_eq!(fx.call("acme", "dlq", Value::Null).await, json!([]));
    assert_eq!(fx.runs("charge:o3"), 4);
}

#[tokio::test]
async fn try_is_one_unrecorded_attempt() {
    let fx = fixture();
    fx.world.fail_left.lock().insert("t1".into(), 1);
    assert_eq!(
        fx.call("acme", "try", json!({ "order": "t1" })).await,
        json!({ "ok": false })
    );
    assert_eq!(
        fx.call("acme", "try", json!({ "order": "t1" })).await,
        json!({ "ok": true })
    );
    assert_eq!(fx.runs("charge:t1"), 2);
    assert_eq!(
        fx.action("acme", "charge:t1").await,
        Value::Null,
        "nothing recorded"
    );
}

#[tokio::test]
async fn handlers_run_once_per_matching_event() {
    let fx = fixture();
    for t in [
        "Order.created",
        "Order.paid",
        "Customer.created",
        "Customer.deleted",
    ] {
        fx.call("acme", "emit", json!({ "type": t })).await;
    }
    eventually("handlers ran", || async {
        fx.world.handled.lock().len() >= 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let handled = fx.world.handled.lock().clone();
    let count = |h: &str| handled.iter().filter(|(_, n, _)| n == h).count();
    assert_eq!(count("audit"), 2, "Order.* matched two: {handled:?}");
    assert_eq!(count("created"), 2, "*.created matched two: {handled:?}");
    assert_eq!(
        fx.call("acme", "get", json!({ "key": "audits" })).await,
        json!(2)
    );
    // Nothing runs twice after eviction and reactivation.
    assert!(fx.host.evict("shop", "acme").await);
    fx.call("acme", "get", json!({ "key": "audits" })).await;
    fx.clock.advance(60_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fx.world.handled.lock().len(), 4);
}

#[tokio::test]
async fn events_reach_another_object_exactly_once_in_order() {
    let fx = fixture();
    fx.call("a", "subscribe", json!({ "on": "Order.*", "object": "b" }))
        .await;
    let mut ids = Vec::new();
    for i in 0..50 {
        let ev = fx
            .call(
                "a",
                "emit",
                json!({ "type": "Order.created", "data": { "i": i } }),
            )
            .await;
        ids.push(ev["id"].as_str().unwrap().to_string());
    }
    fx.call("a", "emit", json!({ "type": "Customer.created" }))
        .await;
    eventually("b received 50", || async {
        fx.call("b", "events", Value::Null)
            .await
            .as_array()
            .unwrap()
            .len()
            >= 50
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = fx.call("b", "events", Value::Null).await;
    let got: Vec<String> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, ids, "every event once, in order, nothing else");
    let first = &fx.call("b", "events", Value::Null).await[0];
    assert_eq!(first["source"], "a");
    assert_eq!(first["hops"], 1);
    // b's own handlers ran on what it received.
    eventually("b's audit handler ran 50 times", || async {
        fx.call("b", "get", json!({ "key": "audits" })).await == json!(50)
    })
    .await;
    let counts = fx.call("a", "counts", Value::Null).await;
    assert_eq!(
        counts["outbox"], 0,
        "acknowledged deliveries leave the outbox"
    );
}

#[tokio::test]
async fn receiver_drops_redelivered_batches() {
    let dir = tempfile::tempdir().unwrap();
    let db = dotdo_runtime::storage_api::Storage::open(
        &dir.path().join("x.sqlite"),
        &Default::default(),
    )
    .unwrap();
    let mut db = db;
    let ev = |id: &str| NewEventForTest::make(id);
    let batch = vec![(1, ev("e1")), (2, ev("e2"))];
    let taken = db
        .internal(|c| {
            store::ensure_schema(c)?;
            store::receive(c, "do/sender", &batch, 1)
        })
        .unwrap();
    assert_eq!(taken, 2);
    let again = db
        .internal(|c| store::receive(c, "do/sender", &batch, 1))
        .unwrap();
    assert_eq!(again, 0, "same (sender, seq) is a duplicate");
    let third = vec![(2, ev("e2")), (3, ev("e3"))];
    assert_eq!(
        db.internal(|c| store::receive(c, "do/sender", &third, 1))
            .unwrap(),
        1
    );
    assert_eq!(
        db.internal(|c| store::receive(c, "do/other", &batch, 1))
            .unwrap(),
        2,
        "sequence numbers are per sender"
    );
    assert_eq!(db.internal(store::event_count).unwrap(), 5);
}

struct NewEventForTest;
impl NewEventForTest {
    fn make(id: &str) -> dotdo_workflow::NewEvent {
        dotdo_workflow::NewEvent {
            id: id.into(),
            kind: "Order.created".into(),
            subject: None,
            data: Value::Null,
            ts: T0,
            source: Some("sender".into()),
            hops: 1,
        }
    }
}

#[tokio::test]
async fn webhook_deliveries_carry_keys_and_retry_then_dead_letter() {
    let fx = fixture();
    fx.call(
        "a",
        "subscribe",
        json!({ "on": "*", "url": "http://127.0.0.1:9/hook",
                "retry": { "maxAttempts": 2, "initialDelayMs": 100 } }),
    )
    .await;
    let ev = fx
        .call("a", "emit", json!({ "type": "Order.created" }))
        .await;
    eventually("delivered", || async { !fx.sink.calls.lock().is_empty() }).await;
    let (url, key) = fx.sink.calls.lock()[0].clone();
    assert_eq!(url, "http://127.0.0.1:9/hook");
    assert!(
        key.starts_with(&format!("{}:sub_", ev["id"].as_str().unwrap())),
        "{key}"
    );

    // A receiver that keeps failing: two attempts, then the DLQ.
    fx.sink.failing.store(true, Ordering::SeqCst);
    fx.call("a", "emit", json!({ "type": "Order.paid" })).await;
    eventually("first failure", || async {
        fx.sink.calls.lock().len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    fx.clock.advance(200);
    eventually("dead-lettered", || async {
        fx.call("a", "dlq", Value::Null)
            .await
            .as_array()
            .unwrap()
            .len()
            == 1
    })
    .await;
    let dlq = fx.call("a", "dlq", Value::Null).await;
    assert_eq!(dlq[0]["kind"], "delivery");
    assert_eq!(dlq[0]["attempts"], 2);
    assert!(dlq[0]["error"].as_str().unwrap().contains("503"));
    assert_eq!(fx.sink.calls.lock().len(), 3);

    fx.sink.failing.store(false, Ordering::SeqCst);
    fx.call("a", "replay", json!({ "id": dlq[0]["id"] })).await;
    eventually("replayed delivery", || async {
        fx.sink.calls.lock().len() == 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(fx.call("a", "counts", Value::Null).await["outbox"], 0);
    assert_eq!(fx.call("a", "dlq", Value::Null).await, json!([]));
}

#[tokio::test]
async fn pending_work_resumes_after_a_restart() {
    let mut fx = fixture();
    fx.sink.failing.store(true, Ordering::SeqCst);
    fx.call(
        "a",
        "subscribe",
        json!({ "on": "*", "url": "http://127.0.0.1:9/hook" }),
    )
    .await;
    fx.call("a", "emit", json!({ "type": "Order.created" }))
        .await;
    eventually("first attempt", || async {
        !fx.sink.calls.lock().is_empty()
    })
    .await;
    fx.host.shutdown(Duration::from_secs(5)).await;

    // A new process: same state directory, the receiver is healthy now.
    fx.sink.failing.store(false, Ordering::SeqCst);
    let calls_before = fx.sink.calls.lock().len();
    fx.host = open_host(fx.dir.path(), &fx.clock, &fx.world, &fx.sink);
    fx.clock.advance(1_000);
    eventually("delivered after restart", || async {
        fx.sink.calls.lock().len() > calls_before
    })
    .await;
    eventually("outbox drained", || async {
        fx.call("a", "counts", Value::Null).await["outbox"] == 0
    })
    .await;
}

#[tokio::test]
async fn a_superseded_activation_cannot_write() {
    let fx = fixture();
    fx.call("a", "emit", json!({ "type": "Order.created" }))
        .await;
    let err = fx
        .host
        .call("shop", "a", "fence_me", Value::Null)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    let events = fx.call("a", "events", Value::Null).await;
    assert_eq!(
        events.as_array().unwrap().len(),
        1,
        "the fenced write left nothing"
    );
}

#[tokio::test]
async fn a_failed_attempt_leaves_no_writes() {
    let fx = fixture();
    fx.world.fail_left.lock().insert("d1".into(), 2);
    let host = fx.host.clone();
    let caller = tokio::spawn(async move {
        host.call("shop", "acme", "debit", json!({ "order": "d1" }))
            .await
            .unwrap()
    });
    // Move time on until the retries have run; a loaded machine may need more than two
    // steps (an attempt that fails after a step is retried after the next one).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !caller.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "the call never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        fx.clock.advance(1_000);
    }
    assert_eq!(caller.await.unwrap(), json!({ "ok": 1 }));
    assert_eq!(
        fx.call("acme", "get", json!({ "key": "debits" })).await,
        json!(1),
        "two failed attempts wrote nothing that stayed"
    );
}

#[tokio::test]
async fn a_new_activation_re_arms_a_cleared_alarm_over_pending_work() {
    let fx = fixture();
    fx.sink.failing.store(true, Ordering::SeqCst);
    fx.call(
        "a",
        "subscribe",
        json!({ "on": "*", "url": "http://127.0.0.1:9/hook" }),
    )
    .await;
    fx.call("a", "emit", json!({ "type": "Order.created" }))
        .await;
    eventually("first attempt failed", || async {
        !fx.sink.calls.lock().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Something clears the alarm behind the workflow's back (a raw alarm DELETE, say).
    fx.call("a", "clear_alarm", Value::Null).await;
    assert_eq!(fx.call("a", "alarm", Value::Null).await, Value::Null);
    assert!(fx.host.evict("shop", "a").await);
    fx.sink.failing.store(false, Ordering::SeqCst);
    // The next activation's first write puts the alarm back for the pending delivery.
    fx.call(
        "a",
        "subscribe",
        json!({ "on": "Nothing.here", "object": "z" }),
    )
    .await;
    assert!(
        fx.call("a", "alarm", Value::Null).await.is_i64(),
        "alarm re-armed"
    );
    fx.clock.advance(60_000);
    eventually("delivered", || async {
        fx.call("a", "counts", Value::Null).await["outbox"] == 0
    })
    .await;
}
