//! Durable workflows on a real host with a manual clock: journaled steps run once, sleeps
//! and waits survive a restart, waits time out, failed steps retry, a failure for good runs
//! the compensations in reverse, cancelled runs stop, and JSON definitions run the same way.
#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use dotdo_runtime::{
    AlarmInfo, DurableObject, FnClass, Host, HostOptions, ManualClock, ObjectError, ObjectState,
};
use dotdo_workflow::*;
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const T0: i64 = 1_767_225_600_000;

/// Side effects the test can count, by name.
#[derive(Default)]
struct World {
    effects: Mutex<Vec<String>>,
    /// Failures still to come per step name.
    fail_left: Mutex<HashMap<String, u32>>,
}

impl World {
    fn did(&self, what: &str) {
        self.effects.lock().push(what.to_string());
    }
    fn count(&self, what: &str) -> usize {
        self.effects.lock().iter().filter(|e| *e == what).count()
    }
    fn should_fail(&self, what: &str) -> bool {
        match self.fail_left.lock().get_mut(what) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}

#[derive(Default)]
struct Sink {
    calls: Mutex<Vec<(String, String)>>,
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
        let fail = call.url.contains("/fail");
        self.calls.lock().push((call.url.clone(), key));
        Ok(HttpReply {
            status: if fail { 500 } else { 200 },
            body: serde_json::to_vec(
                &json!({ "url": call.url, "body": String::from_utf8_lossy(&call.body) }),
            )
            .unwrap(),
        })
    }
}

fn registry(world: Arc<World>) -> Registry {
    let w = world.clone();
    let w2 = world.clone();
    let w3 = world;
    Registry::new()
        .action("decline", |_cx, _input: Value| async move {
            Err(ActionError::retry("card declined"))
        })
        .workflow("hold", |flow: Flow| async move {
            flow.action("pay", "decline", kind::FUNCTION, json!({}), None)
                .await
        })
        .workflow("callback", |flow: Flow| async move {
            let cx = flow.context().clone();
            // The reply to a call can come before the wait for it begins.
            flow.step("call", || async move {
                cx.send("Reply.received", None, json!({ "n": 1 }))?;
                Ok(Value::Null)
            })
            .await?;
            let ev = flow
                .wait_for_event("reply", "Reply.*", None, Duration::from_secs(60))
                .await?;
            Ok(ev.data)
        })
        .action("bill", move |_cx, input: Value| {
            let world = w3.clone();
            async move {
                world.did("bill");
                Ok(json!({ "billed": input["amount"] }))
            }
        })
        .workflow("order", move |flow: Flow| {
            let world = w.clone();
            async move {
                let order = flow.input()["order"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let w1 = world.clone();
                let reserved = flow
                    .step("reserve", || async move {
                        w1.did("reserve");
                        if w1.should_fail("reserve") {
                            return Err(ActionError::retry("warehouse busy"));
                        }
                        Ok(json!({ "slot": 7 }))
                    })
                    .await?;
                flow.sleep("cool-off", Duration::from_secs(10)).await?;
                let paid = flow
                    .wait_for_event(
                        "payment",
                        "Payment.received",
                        Some(json!({ "order": order })),
                        Duration::from_secs(3600),
                    )
                    .await?;
                let billed = flow
                    .action(
                        "bill",
                        "bill",
                        kind::FUNCTION,
                        json!({ "amount": paid.data["amount"] }),
                        None,
                    )
                    .await?;
                let w2 = world.clone();
                flow.step("ship", || async move {
                    w2.did("ship");
                    Ok(json!("shipped"))
                })
                .await?;
                Ok(json!({ "reserved": reserved, "paid": paid.data["amount"], "billed": billed }))
            }
        })
        .workflow("saga", move |flow: Flow| {
            let world = w2.clone();
            async move {
                for name in ["flight", "hotel"] {
                    let (wd, wu) = (world.clone(), world.clone());
                    flow.step_with(
                        name,
                        StepOptions::new().compensate(move |_flow, booked: Value| async move {
                            wu.did(&format!("cancel {}", booked.as_str().unwrap()));
                            Ok(Value::Null)
                        }),
                        || async move {
                            wd.did(&format!("book {name}"));
                            Ok(json!(name))
                        },
                    )
                    .await?;
                }
                let wc = world.clone();
                flow.step("car", || async move {
                    wc.did("book car");
                    Err(ActionError::fatal("no cars left"))
                })
                .await?;
                Ok(Value::Null)
            }
        })
}

struct Biz {
    cx: Context,
}

#[async_trait]
impl DurableObject for Biz {
    async fn call(&self, method: &str, a: Value) -> Result<Value, ObjectError> {
        let cx = &self.cx;
        let s = |k: &str| a[k].as_str().unwrap_or_default().to_string();
        match method {
            "start" => Ok(json!(
                cx.start_workflow(
                    &s("workflow"),
                    a["input"].clone(),
                    a["id"].as_str().map(str::to_string)
                )?
                .0
            )),
            "run" => Ok(json!(cx.workflow_run(&s("id"))?)),
            "cancel" => Ok(json!(cx.cancel_run(&s("id"))?)),
            "define" => Ok(json!(cx.define_workflow(a)?.0)),
            "emit" => Ok(json!(cx.send(&s("type"), None, a["data"].clone())?)),
            "events" => Ok(json!(cx.events(0, None, 1000)?.0)),
            "action" => Ok(json!(cx.action_by_key(&s("key"))?)),
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
    let env = Arc::new(WorkflowEnv::new(sink.clone()));
    let mut o = HostOptions::new(dir).class(
        "biz",
        FnClass::new("Biz", move |state: ObjectState| Biz {
            cx: Context::new(state, reg.clone(), env.clone()),
        }),
    );
    o.clock = Arc::new(clock.clone());
    o.idle_timeout = Duration::from_secs(3600 * 24);
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
    async fn call(&self, method: &str, args: Value) -> Value {
        self.host.call("biz", "acme", method, args).await.unwrap()
    }
    async fn run(&self, id: &str) -> Value {
        self.call("run", json!({ "id": id })).await
    }
    async fn wait_status(&self, id: &str, status: &str) -> Value {
        for _ in 0..500 {
            let r = self.run(id).await;
            if r["status"] == status {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("run {id} never became {status}: {}", self.run(id).await);
    }
}

#[tokio::test]
async fn a_run_sleeps_waits_and_completes_with_each_step_once() {
    let fx = fixture();
    let run = fx
        .call(
            "start",
            json!({ "workflow": "order", "id": "r1", "input": { "order": "o1" } }),
        )
        .await;
    assert_eq!(run["status"], "running");
    let r = fx.wait_status("r1", "sleeping").await;
    assert_eq!(r["currentStep"], "cool-off");
    assert_eq!(r["nextAt"], T0 + 10_000);
    fx.clock.advance(10_000);
    fx.wait_status("r1", "waiting").await;
    // Another order's payment does not match the filter.
    fx.call(
        "emit",
        json!({ "type": "Payment.received", "data": { "order": "o2", "amount": 1 } }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fx.run("r1").await["status"], "waiting");
    fx.call(
        "emit",
        json!({ "type": "Payment.received", "data": { "order": "o1", "amount": 42 } }),
    )
    .await;
    let r = fx.wait_status("r1", "completed").await;
    assert_eq!(
        r["result"],
        json!({ "reserved": { "slot": 7 }, "paid": 42, "billed": { "billed": 42 } })
    );
    let journal = r["journal"].as_array().unwrap();
    let names: Vec<&str> = journal
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["reserve", "cool-off", "payment", "bill", "ship"]);
    assert!(journal.iter().all(|s| s["status"] == "completed"));
    for e in ["reserve", "bill", "ship"] {
        assert_eq!(fx.world.count(e), 1, "{e} ran once");
    }
    // Starting again with the same id returns the run; nothing runs again.
    let again = fx
        .call(
            "start",
            json!({ "workflow": "order", "id": "r1", "input": {} }),
        )
        .await;
    assert_eq!(again["status"], "completed");
}

#[tokio::test]
async fn a_sleeping_run_goes_on_after_a_restart_without_redoing_steps() {
    let mut fx = fixture();
    fx.call(
        "start",
        json!({ "workflow": "order", "id": "r1", "input": { "order": "o1" } }),
    )
    .await;
    fx.wait_status("r1", "sleeping").await;
    fx.host.shutdown(Duration::from_secs(5)).await;
    fx.clock.advance(60_000);
    fx.host = open_host(fx.dir.path(), &fx.clock, &fx.world, &fx.sink);
    // The alarm that was due during the downtime fires at boot.
    fx.wait_status("r1", "waiting").await;
    fx.host.shutdown(Duration::from_secs(5)).await;
    fx.host = open_host(fx.dir.path(), &fx.clock, &fx.world, &fx.sink);
    fx.call(
        "emit",
        json!({ "type": "Payment.received", "data": { "order": "o1", "amount": 5 } }),
    )
    .await;
    fx.wait_status("r1", "completed").await;
    assert_eq!(
        fx.world.count("reserve"),
        1,
        "a journaled step is not run again"
    );
    assert_eq!(fx.world.count("ship"), 1);
}

#[tokio::test]
async fn a_wait_times_out_and_failed_attempts_retry() {
    let fx = fixture();
    fx.world.fail_left.lock().insert("reserve".into(), 2);
    fx.call(
        "start",
        json!({ "workflow": "order", "id": "r1", "input": { "order": "o1" } }),
    )
    .await;
    // Two failed attempts, each followed by a backoff the clock has to pass.
    for attempt in 1..=2 {
        let mut at = None;
        for _ in 0..500 {
            let r = fx.run("r1").await;
            let s = &r["journal"][0];
            if s["status"] == "retrying" && s["attempts"] == attempt {
                at = s["until"].as_i64();
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        fx.clock.set(at.expect("a retry is scheduled"));
    }
    let r = fx.wait_status("r1", "sleeping").await;
    assert_eq!(r["journal"][0]["attempts"], 3);
    assert_eq!(fx.world.count("reserve"), 3);
    fx.clock.advance(10_000);
    fx.wait_status("r1", "waiting").await;
    fx.clock.advance(3_600_000);
    let r = fx.wait_status("r1", "failed").await;
    assert!(r["error"].as_str().unwrap().contains("timed out"), "{r}");
    assert_eq!(fx.world.count("ship"), 0);
}

#[tokio::test]
async fn a_step_failing_for_good_runs_the_compensations_in_reverse() {
    let fx = fixture();
    fx.call("start", json!({ "workflow": "saga", "id": "trip" }))
        .await;
    let r = fx.wait_status("trip", "compensated").await;
    assert_eq!(
        *fx.world.effects.lock(),
        [
            "book flight",
            "book hotel",
            "book car",
            "cancel hotel",
            "cancel flight"
        ]
    );
    assert_eq!(r["error"], "no cars left");
    let names: Vec<&str> = r["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "flight",
            "hotel",
            "car",
            "compensate:hotel",
            "compensate:flight"
        ]
    );
}

#[tokio::test]
async fn a_cancelled_run_stops() {
    let fx = fixture();
    fx.call(
        "start",
        json!({ "workflow": "order", "id": "r1", "input": { "order": "o1" } }),
    )
    .await;
    fx.wait_status("r1", "sleeping").await;
    let r = fx.call("cancel", json!({ "id": "r1" })).await;
    assert_eq!(r["status"], "cancelled");
    fx.clock.advance(20_000);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fx.run("r1").await["status"], "cancelled");
    assert_eq!(fx.run("r1").await["journal"].as_array().unwrap().len(), 2);
    let err = fx
        .host
        .call("biz", "acme", "cancel", json!({ "id": "r1" }))
        .await
        .unwrap_err();
    assert_eq!(err.kind, dotdo_runtime::ErrorKind::Conflict);
}

#[tokio::test]
async fn a_json_definition_runs_with_templates_sleep_wait_and_compensation() {
    let fx = fixture();
    fx.call(
        "define",
        json!({ "name": "onboard", "steps": [
            { "name": "welcome", "webhook": { "url": "http://hooks.test/welcome",
                "body": { "to": "{{input.email}}" } },
              "compensate": { "webhook": { "url": "http://hooks.test/unwelcome", "body": { "to": "{{input.email}}" } } } },
            { "name": "pause", "sleep": "2s" },
            { "name": "approval", "waitForEvent": { "type": "Approval.*", "filter": { "user": "{{input.user}}" }, "timeout": "1h" } },
            { "name": "done", "emit": { "type": "Customer.onboarded", "data": { "user": "{{input.user}}", "by": "{{steps.approval.data.by}}" } } },
            { "name": "charge", "action": { "webhook": { "url": "http://hooks.test/{{input.charge}}" } },
              "retry": { "maxAttempts": 2, "initialDelayMs": 10 } }
        ] }),
    )
    .await;
    fx.call("start", json!({ "workflow": "onboard", "id": "ok", "input": { "email": "a@b.c", "user": "ann", "charge": "charge" } }))
        .await;
    fx.wait_status("ok", "sleeping").await;
    fx.clock.advance(2_000);
    fx.wait_status("ok", "waiting").await;
    fx.call(
        "emit",
        json!({ "type": "Approval.granted", "data": { "user": "ann", "by": "bob" } }),
    )
    .await;
    let r = fx.wait_status("ok", "completed").await;
    assert_eq!(
        r["result"]["done"]["data"],
        json!({ "user": "ann", "by": "bob" })
    );
    assert_eq!(r["result"]["charge"]["status"], 200);
    let calls = fx.sink.calls.lock().clone();
    assert_eq!(calls[0].0, "http://hooks.test/welcome");
    assert_eq!(calls[0].1, "wf:ok:0", "webhooks carry the step's key");
    assert_eq!(
        calls.iter().filter(|c| c.0.ends_with("/welcome")).count(),
        1
    );
    let onboarded = fx.call("events", Value::Null).await;
    assert_eq!(
        onboarded
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "Customer.onboarded")
            .count(),
        1
    );

    // The charge fails for good: the welcome is undone.
    fx.call("start", json!({ "workflow": "onboard", "id": "bad", "input": { "email": "x@y.z", "user": "zed", "charge": "fail" } }))
        .await;
    fx.wait_status("bad", "sleeping").await;
    fx.clock.advance(2_000);
    fx.wait_status("bad", "waiting").await;
    fx.call(
        "emit",
        json!({ "type": "Approval.granted", "data": { "user": "zed", "by": "bob" } }),
    )
    .await;
    // The action retries after 10 ms: let the clock pass it.
    for _ in 0..50 {
        if fx.run("bad").await["status"] == "compensated" {
            break;
        }
        fx.clock.advance(100);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = fx.wait_status("bad", "compensated").await;
    assert!(r["error"].as_str().unwrap().contains("HTTP 500"), "{r}");
    let calls = fx.sink.calls.lock().clone();
    assert_eq!(calls.iter().filter(|c| c.0.ends_with("/fail")).count(), 2);
    assert_eq!(
        calls.iter().filter(|c| c.0.ends_with("/unwelcome")).count(),
        1
    );

    // Bad definitions and unknown workflows are refused.
    let e = fx
        .host
        .call(
            "biz",
            "acme",
            "define",
            json!({ "name": "x", "steps": [{ "name": "a", "nap": "1s" }] }),
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("unknown field `nap`"), "{e}");
    let e = fx
        .host
        .call("biz", "acme", "start", json!({ "workflow": "nope" }))
        .await
        .unwrap_err();
    assert_eq!(e.kind, dotdo_runtime::ErrorKind::NotFound);
}

#[tokio::test]
async fn a_wait_sees_the_reply_to_the_previous_step_but_not_older_events() {
    let fx = fixture();
    // An older event of the same type does not count.
    fx.call(
        "emit",
        json!({ "type": "Reply.received", "data": { "n": 0 } }),
    )
    .await;
    fx.call("start", json!({ "workflow": "callback", "id": "c1" }))
        .await;
    let r = fx.wait_status("c1", "completed").await;
    assert_eq!(r["result"], json!({ "n": 1 }));
}

#[tokio::test]
async fn cancelling_a_run_stops_its_pending_actions() {
    let fx = fixture();
    fx.call("start", json!({ "workflow": "hold", "id": "h1" }))
        .await;
    fx.wait_status("h1", "waiting").await;
    // The action failed once and waits for its retry (the manual clock stands still).
    let key = "wf:h1:0";
    for _ in 0..500 {
        let a = fx
            .host
            .call("biz", "acme", "action", json!({ "key": key }))
            .await
            .unwrap();
        if a["status"] == "pending" && a["attempts"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fx.call("cancel", json!({ "id": "h1" })).await;
    let a = fx.call("action", json!({ "key": key })).await;
    assert_eq!(a["status"], "failed");
    assert_eq!(a["error"], "the workflow run was cancelled");
    fx.clock.advance(60_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        fx.call("action", json!({ "key": key })).await["attempts"],
        1,
        "no further attempt"
    );
}
