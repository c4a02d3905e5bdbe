//! Schedules and durable workflows end to end on the real binary: a schedule keeps firing
//! on time across `kill -9` and restarts; a workflow with a sleep and a wait for an event
//! completes after being killed in the middle, each step's side effect once; a step that
//! fails for good runs the compensations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::sink::*;
use common::*;

use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

async fn run_status(c: &reqwest::Client, s: &Server, path: &str) -> Value {
    let (st, run) = send(c.get(s.url(path))).await;
    assert_eq!(st, 200, "{run}");
    run
}

async fn wait_status(c: &reqwest::Client, s: &Server, path: &str, status: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..400 {
        last = run_status(c, s, path).await;
        if last["status"] == status {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("run never became {status}: {last}");
}

/// The scheduled time of each call (from `x-dotdo-scheduled-at`), by idempotency key.
fn runs_by_key(hits: &[Hit]) -> HashMap<String, (String, usize)> {
    let mut out: HashMap<String, (String, usize)> = HashMap::new();
    for h in hits {
        let at = h.headers["x-dotdo-scheduled-at"]
            .to_str()
            .unwrap()
            .to_string();
        out.entry(h.key.clone()).or_insert((at, 0)).1 += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schedule_keeps_firing_across_kill_9() {
    let (_dir, state) = state_dir();
    let c = client();
    let (sink, sink_url) = Sink::start().await;
    let mut s = Server::start(&state, &[]);
    // Every second (6-field cron): a minute's schedule, shortened.
    let (st, sched) = send(c.post(s.url("/acme/_schedules")).json(&json!({
        "id": "tick",
        "cron": "* * * * * *",
        "action": { "webhook": { "url": format!("{sink_url}/tick"), "body": { "hello": "tick" } } },
    })))
    .await;
    assert_eq!(st, 201, "{sched}");
    assert!(sched["nextRunAt"].as_i64().is_some());
    let mut expected_total = 0;
    for round in 0..3 {
        let before = sink.hits("/tick").len();
        wait_for("three runs", Duration::from_secs(20), || async {
            sink.hits("/tick").len() >= before + 3
        })
        .await;
        expected_total += 3;
        if round < 2 {
            s.kill9();
            tokio::time::sleep(Duration::from_millis(1500)).await;
            s = Server::start(&state, &[]);
        }
    }
    let hits = sink.hits("/tick");
    assert!(hits.len() >= expected_total);
    let runs = runs_by_key(&hits);
    // Each run has its own key and its own scheduled second, and every second between the
    // first and the last run either ran once or fell in a downtime (skip policy).
    let seconds: BTreeSet<String> = runs.values().map(|(at, _)| at.clone()).collect();
    assert_eq!(
        seconds.len(),
        runs.len(),
        "no scheduled second ran under two keys"
    );
    let redelivered: usize = runs.values().map(|(_, n)| n - 1).sum();
    assert!(
        redelivered <= 2,
        "only a call in flight at a kill may be repeated (same key): {redelivered}"
    );
    for h in &hits {
        assert_eq!(h.body, json!({ "hello": "tick" }));
        assert_eq!(h.headers["x-dotdo-schedule"], "tick");
    }
    let (_, listed) = send(c.get(s.url("/acme/_schedules/tick"))).await;
    assert!(
        listed["runCount"].as_i64().unwrap() >= runs.len() as i64,
        "{listed}"
    );
    assert!(listed["lastRunAt"].as_i64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_workflow_completes_after_kill_9_mid_sleep_and_mid_wait() {
    let (_dir, state) = state_dir();
    let c = client();
    let (sink, sink_url) = Sink::start().await;
    let mut s = Server::start(&state, &[]);
    let (st, def) = send(c.post(s.url("/acme/_workflows")).json(&json!({
        "name": "order",
        "steps": [
            { "name": "charge", "webhook": { "url": format!("{sink_url}/step/charge"),
                "body": { "order": "{{input.order}}" } } },
            { "name": "cool-off", "sleep": "2s" },
            { "name": "approval", "waitForEvent": { "type": "Approval.granted",
                "filter": { "order": "{{input.order}}" }, "timeout": "5m" } },
            { "name": "ship", "webhook": { "url": format!("{sink_url}/step/ship"),
                "body": { "order": "{{input.order}}", "by": "{{steps.approval.data.by}}" } } },
            { "name": "shipped", "emit": { "type": "Order.shipped", "data": { "order": "{{input.order}}" } } }
        ]
    })))
    .await;
    assert_eq!(st, 201, "{def}");
    let (st, run) = send(
        c.post(s.url("/acme/_workflows/order/runs"))
            .json(&json!({ "id": "o-1", "input": { "order": "o-1" } })),
    )
    .await;
    assert_eq!(st, 201, "{run}");
    let path = "/acme/_workflows/order/runs/o-1";
    wait_status(&c, &s, path, "sleeping").await;

    // Killed in the middle of the sleep.
    s.kill9();
    s = Server::start(&state, &[]);
    let r = wait_status(&c, &s, path, "waiting").await;
    assert_eq!(r["currentStep"], "approval");

    // Killed while waiting for the event.
    s.kill9();
    s = Server::start(&state, &[]);
    let (st, _) = send(c.post(s.url("/acme/_events")).json(&json!({
        "type": "Approval.granted", "data": { "order": "o-1", "by": "ann" }
    })))
    .await;
    assert_eq!(st, 201);
    let r = wait_status(&c, &s, path, "completed").await;
    let journal = r["journal"].as_array().unwrap();
    assert_eq!(journal.len(), 5);
    assert!(journal.iter().all(|j| j["status"] == "completed"), "{r}");
    assert_eq!(sink.hits("/step/charge").len(), 1, "charged once");
    let ship = sink.hits("/step/ship");
    assert_eq!(ship.len(), 1, "shipped once");
    assert_eq!(ship[0].body, json!({ "order": "o-1", "by": "ann" }));
    assert_eq!(ship[0].key, "wf:o-1:3");
    let events = all_pages(&c, &s.url("/acme/_events?type=Order.shipped")).await;
    assert_eq!(events.len(), 1, "emitted once");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_step_runs_the_compensations() {
    let (_dir, state) = state_dir();
    let c = client();
    let (sink, sink_url) = Sink::start().await;
    let s = Server::start(&state, &[]);
    let (st, def) = send(c.post(s.url("/acme/_workflows")).json(&json!({
        "name": "trip",
        "steps": [
            { "name": "flight", "webhook": { "url": format!("{sink_url}/book/flight") },
              "compensate": { "webhook": { "url": format!("{sink_url}/cancel/flight") } } },
            { "name": "hotel", "emit": { "type": "Hotel.booked" },
              "compensate": { "emit": { "type": "Hotel.cancelled" } } },
            { "name": "car", "webhook": { "url": format!("{sink_url}/fail/car") },
              "retry": { "maxAttempts": 2, "initialDelayMs": 50 } }
        ]
    })))
    .await;
    assert_eq!(st, 201, "{def}");
    send(
        c.post(s.url("/acme/_workflows/trip/runs"))
            .json(&json!({ "id": "t1" })),
    )
    .await;
    let r = wait_status(&c, &s, "/acme/_workflows/trip/runs/t1", "compensated").await;
    assert!(r["error"].as_str().unwrap().contains("HTTP 503"), "{r}");
    let names: Vec<&str> = r["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
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
    assert_eq!(sink.hits("/fail/car").len(), 2, "two attempts");
    assert_eq!(sink.hits("/cancel/flight").len(), 1);
    let cancelled = all_pages(&c, &s.url("/acme/_events?type=Hotel.cancelled")).await;
    assert_eq!(cancelled.len(), 1);

    // Bad input changes nothing and says what is wrong.
    for (body, want) in [
        (
            json!({ "name": "x", "steps": [{ "name": "a", "nap": "1s" }] }),
            "nap",
        ),
        (
            json!({ "name": "x", "steps": [{ "name": "a", "sleep": "1 fortnight" }] }),
            "fortnight",
        ),
        (json!({ "name": "x" }), "steps"),
    ] {
        let (st, e) = send(c.post(s.url("/acme/_workflows")).json(&body)).await;
        assert_eq!(st, 400, "{e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(want),
            "{e}"
        );
    }
    let (_, list) = send(c.get(s.url("/acme/_workflows"))).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (st, _) = send(c.post(s.url("/acme/_workflows/nope/runs"))).await;
    assert_eq!(st, 404);
    let (st, e) = send(c.post(s.url("/acme/_schedules")).json(&json!({
        "every": "every 7 minutes", "action": { "emit": { "type": "A.b" } }
    })))
    .await;
    assert_eq!(st, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("7 does not divide")
    );
    let (_, list) = send(c.get(s.url("/acme/_schedules"))).await;
    assert_eq!(list["items"], json!([]));
}
