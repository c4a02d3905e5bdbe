//! The `$` context end to end: events, subscriptions, actions and the DLQ over REST on the
//! real binary, with a local webhook sink, and a crash loop of `kill -9` and restarts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::sink::*;
use common::*;

use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_subscriptions_actions_and_dlq_over_rest() {
    let (_dir, state) = state_dir();
    let s = Server::start(&state, &[]);
    let c = client();
    let (sink, sink_url) = Sink::start().await;

    // Subscriptions: Order events to the object `ledger`, created events to a webhook.
    let (st, to_ledger) = send(
        c.post(s.url("/shop/_subscriptions"))
            .json(&json!({ "on": "Order.*", "deliver": { "object": "ledger" } })),
    )
    .await;
    assert_eq!(st, 201, "{to_ledger}");
    let (st, to_hook) = send(c.post(s.url("/shop/_subscriptions")).json(&json!({
        "on": "*.created",
        "deliver": { "webhook": { "url": format!("{sink_url}/hooks"), "headers": { "x-secret": "s3" } } }
    })))
    .await;
    assert_eq!(st, 201, "{to_hook}");
    let (_, subs) = send(c.get(s.url("/shop/_subscriptions"))).await;
    assert_eq!(subs["items"].as_array().unwrap().len(), 2);

    // Emit.
    let mut events = Vec::new();
    for t in [
        "Order.created",
        "Order.created",
        "Order.paid",
        "Customer.created",
        "Customer.deleted",
    ] {
        let (st, ev) = send(
            c.post(s.url("/shop/_events"))
                .json(&json!({ "type": t, "subject": "s-1", "data": { "t": t } })),
        )
        .await;
        assert_eq!(st, 201, "{ev}");
        events.push(ev);
    }
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // List, filtered with a wildcard, and paged.
    let (_, orders) = send(c.get(s.url("/shop/_events?type=Order.*"))).await;
    assert_eq!(orders["items"].as_array().unwrap().len(), 3);
    let (_, page1) = send(c.get(s.url("/shop/_events?limit=2"))).await;
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    let cursor = page1["cursor"].as_i64().unwrap();
    let (_, page2) = send(c.get(s.url(&format!("/shop/_events?after={cursor}&limit=10")))).await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 3);
    assert!(page2["cursor"].is_null());

    // Delivered to the other object, in order, once.
    let order_ids: Vec<Value> = events[..3].iter().map(|e| e["id"].clone()).collect();
    wait_for(
        "ledger received the Order events",
        Duration::from_secs(10),
        || async {
            let (_, l) = send(c.get(s.url("/ledger/_events"))).await;
            l["items"].as_array().unwrap().len() >= 3
        },
    )
    .await;
    let (_, ledger) = send(c.get(s.url("/ledger/_events"))).await;
    let got: Vec<Value> = ledger["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(got, order_ids);
    assert_eq!(ledger["items"][0]["source"], "shop");

    // Delivered to the webhook with an idempotency key and the subscription's headers.
    wait_for(
        "webhook got the created events",
        Duration::from_secs(10),
        || async { sink.hits("/hooks").len() >= 3 },
    )
    .await;
    let hooks = sink.hits("/hooks");
    assert_eq!(hooks.len(), 3);
    let sub_id = to_hook["id"].as_str().unwrap();
    // Webhook deliveries run concurrently: match them by key, not by order.
    for ev in [&events[0], &events[1], &events[3]] {
        let key = format!("{}:{sub_id}", ev["id"].as_str().unwrap());
        let hit = hooks
            .iter()
            .find(|h| h.key == key)
            .expect("a call per event");
        assert_eq!(hit.headers["x-secret"], "s3");
        assert_eq!(hit.body["id"], ev["id"]);
        assert_eq!(hit.body["type"], ev["type"]);
    }

    // A durable action: 202, runs once, completes; the same key again is the same action.
    let action = json!({ "name": "notify", "key": "k1",
        "webhook": { "url": format!("{sink_url}/act"), "body": { "a": 1 } } });
    let (st, a1) = send(c.post(s.url("/shop/_actions")).json(&action)).await;
    assert_eq!(st, 202, "{a1}");
    assert_eq!(a1["key"], "k1");
    let id = a1["id"].as_str().unwrap().to_string();
    wait_for("action completed", Duration::from_secs(10), || async {
        send(c.get(s.url(&format!("/shop/_actions/{id}")))).await.1["status"] == "completed"
    })
    .await;
    let (_, done) = send(c.get(s.url(&format!("/shop/_actions/{id}")))).await;
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["result"]["status"], 200);
    assert_eq!(done["result"]["body"], Value::Null);
    let (st, again) = send(c.post(s.url("/shop/_actions")).json(&action)).await;
    assert_eq!((st, again["id"].as_str()), (200, Some(id.as_str())));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let act_hits = sink.hits("/act");
    assert_eq!(act_hits.len(), 1, "ran once");
    assert_eq!(act_hits[0].key, "k1");
    assert_eq!(act_hits[0].body, json!({ "a": 1 }));

    // The Idempotency-Key header stands in for a missing key.
    let (st, a2) = send(
        c.post(s.url("/shop/_actions"))
            .header("idempotency-key", "from-header")
            .json(&json!({ "name": "n", "webhook": { "url": format!("{sink_url}/act2") } })),
    )
    .await;
    assert_eq!((st, a2["key"].as_str()), (202, Some("from-header")));

    // A webhook that always fails: retried, then failed and in the DLQ; replay after the fix.
    sink.failing.store(true, Ordering::SeqCst);
    let (st, doomed) = send(c.post(s.url("/shop/_actions")).json(&json!({
        "name": "doomed", "key": "k2", "webhook": { "url": format!("{sink_url}/doomed") },
        "retry": { "maxAttempts": 2, "initialDelayMs": 50 }
    })))
    .await;
    assert_eq!(st, 202);
    let doomed_id = doomed["id"].as_str().unwrap().to_string();
    wait_for(
        "action failed for good",
        Duration::from_secs(10),
        || async {
            send(c.get(s.url(&format!("/shop/_actions/{doomed_id}"))))
                .await
                .1["status"]
                == "failed"
        },
    )
    .await;
    let (_, failed) = send(c.get(s.url("/shop/_actions?status=failed"))).await;
    assert_eq!(failed["items"].as_array().unwrap().len(), 1);
    assert_eq!(failed["items"][0]["attempts"], 2);
    assert!(
        failed["items"][0]["error"]
            .as_str()
            .unwrap()
            .contains("503")
    );
    let (_, dlq) = send(c.get(s.url("/shop/_dlq"))).await;
    assert_eq!(dlq["items"].as_array().unwrap().len(), 1);
    assert_eq!(dlq["items"][0]["kind"], "webhook");
    assert_eq!(dlq["items"][0]["ref"], doomed_id.as_str());
    sink.failing.store(false, Ordering::SeqCst);
    let dlq_id = dlq["items"][0]["id"].as_str().unwrap();
    let (st, _) = send(c.post(s.url(&format!("/shop/_dlq/{dlq_id}/replay")))).await;
    assert_eq!(st, 200);
    wait_for(
        "replayed action completed",
        Duration::from_secs(10),
        || async {
            send(c.get(s.url(&format!("/shop/_actions/{doomed_id}"))))
                .await
                .1["status"]
                == "completed"
        },
    )
    .await;
    assert_eq!(send(c.get(s.url("/shop/_dlq"))).await.1["items"], json!([]));

    // A subscription whose webhook fails: the delivery goes to the DLQ, replay delivers it.
    sink.failing.store(true, Ordering::SeqCst);
    let (st, _) = send(c.post(s.url("/shop/_subscriptions")).json(&json!({
        "on": "Invoice.*", "deliver": { "webhook": { "url": format!("{sink_url}/inv") } },
        "retry": { "maxAttempts": 2, "initialDelayMs": 50 }
    })))
    .await;
    assert_eq!(st, 201);
    send(
        c.post(s.url("/shop/_events"))
            .json(&json!({ "type": "Invoice.sent" })),
    )
    .await;
    wait_for(
        "delivery dead-lettered",
        Duration::from_secs(10),
        || async {
            send(c.get(s.url("/shop/_dlq"))).await.1["items"]
                .as_array()
                .unwrap()
                .len()
                == 1
        },
    )
    .await;
    let (_, dlq) = send(c.get(s.url("/shop/_dlq"))).await;
    assert_eq!(dlq["items"][0]["kind"], "delivery");
    sink.failing.store(false, Ordering::SeqCst);
    let dlq_id = dlq["items"][0]["id"].as_str().unwrap();
    send(c.post(s.url(&format!("/shop/_dlq/{dlq_id}/replay")))).await;
    wait_for(
        "replayed delivery arrived",
        Duration::from_secs(10),
        || async { sink.hits("/inv").len() == 3 },
    )
    .await;

    // Unsubscribe.
    let sub = to_ledger["id"].as_str().unwrap();
    let (st, _) = send(c.delete(s.url(&format!("/shop/_subscriptions/{sub}")))).await;
    assert_eq!(st, 204);
    let (st, _) = send(c.delete(s.url(&format!("/shop/_subscriptions/{sub}")))).await;
    assert_eq!(st, 404);

    // Bad input: a clear 4xx, nothing stored.
    let (_, before) = send(c.get(s.url("/shop"))).await;
    let bad: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (c.post(s.url("/shop/_events")).json(&json!({ "type": "nodot" })), 400),
        (c.post(s.url("/shop/_events")).json(&json!({ "type": "A.*" })), 400),
        (c.post(s.url("/shop/_events")).json(&json!({ "type": "A.b", "extra": 1 })), 400),
        (c.post(s.url("/shop/_events")).json(&json!({ "type": "A.b", "subject": "" })), 400),
        (c.post(s.url("/shop/_events")).body("{nope"), 400),
        (c.post(s.url("/shop/_subscriptions")).json(&json!({ "on": "x", "deliver": { "object": "b" } })), 400),
        (c.post(s.url("/shop/_subscriptions")).json(&json!({ "on": "*", "deliver": { "object": "_b" } })), 400),
        (c.post(s.url("/shop/_subscriptions")).json(&json!({ "on": "*", "deliver": { "object": "shop" } })), 400),
        (c.post(s.url("/shop/_subscriptions")).json(&json!({ "on": "*", "deliver": { "webhook": { "url": "ftp://x/y" } } })), 400),
        (c.post(s.url("/shop/_subscriptions")).json(&json!({ "on": "*", "deliver": { "mail": "x" } })), 400),
        (c.post(s.url("/shop/_actions")).json(&json!({ "name": "x" })), 400),
        (c.post(s.url("/shop/_actions")).json(&json!({ "name": "x", "webhook": { "url": "http://h/", "method": "BREW" } })), 400),
        (c.post(s.url("/shop/_actions")).json(&json!({ "name": "x", "webhook": { "url": "http://h/" }, "retry": { "maxAttempts": 0 } })), 400),
        (c.post(s.url("/shop/_actions")).json(&json!({ "name": "", "webhook": { "url": "http://h/" } })), 400),
        (c.get(s.url("/shop/_actions?status=weird")), 400),
        (c.get(s.url("/shop/_events?limit=0")), 400),
        (c.get(s.url("/shop/_events?limit=abc")), 400),
        (c.get(s.url("/shop/_events?colour=red")), 400),
        (c.get(s.url("/shop/_events?type=bad")), 400),
        (c.get(s.url("/shop/_actions/act_nope")), 404),
        (c.delete(s.url("/shop/_dlq/dlq_nope")), 404),
        (c.post(s.url("/shop/_dlq/dlq_nope/replay")), 404),
    ];
    for (req, want) in bad {
        let (st, body) = send(req).await;
        assert_eq!(st, want, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    let (_, after) = send(c.get(s.url("/shop"))).await;
    assert_eq!(after["events"]["count"], before["events"]["count"]);
    assert_eq!(
        after["subscriptions"]["count"],
        before["subscriptions"]["count"]
    );
    s.stop();
}

/// The driver's view of what the server acknowledged.
#[derive(Default)]
struct Acked {
    events: Mutex<Vec<String>>,
    actions: Mutex<Vec<String>>,
}

/// The seed of a randomized test: `DOTDO_TEST_SEED` to replay one, else the clock.
fn test_seed() -> u64 {
    std::env::var("DOTDO_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_loop_keeps_events_and_actions_exactly_once() {
    const EVENTS: usize = 1000;
    const ACTIONS: usize = 500;
    const KILLS: usize = 10;
    let seed = test_seed();
    println!("crash loop seed: {seed} (replay with DOTDO_TEST_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let (_dir, state) = state_dir();
    let (sink, sink_url) = Sink::start().await;
    sink.slow.store(true, Ordering::Relaxed);
    let server = Arc::new(Mutex::new(Server::start(&state, &[])));
    let base = Arc::new(Mutex::new(server.lock().unwrap().url("")));
    let c = client();
    let url = |path: &str| format!("{}{path}", base.lock().unwrap());

    // Every event of `a` goes to `b` and, for Order events, to the webhook sink.
    for body in [
        json!({ "on": "*", "deliver": { "object": "b" } }),
        json!({ "on": "Order.*", "deliver": { "webhook": { "url": format!("{sink_url}/events") } } }),
    ] {
        let (st, _) = send(c.post(url("/a/_subscriptions")).json(&body)).await;
        assert_eq!(st, 201);
    }

    let acked = Arc::new(Acked::default());
    let stop_kills = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));

    let events_driver = {
        let (c, base, acked) = (c.clone(), base.clone(), acked.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while acked.events.lock().unwrap().len() < EVENTS {
                let target = format!("{}/a/_events", base.lock().unwrap());
                let kind = if i % 2 == 0 {
                    "Order.created"
                } else {
                    "Customer.updated"
                };
                let res = c
                    .post(target)
                    .json(&json!({ "type": kind, "data": { "i": i } }))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                i += 1;
                match res {
                    Ok(r) if r.status() == 201 => {
                        let ev: Value = r.json().await.unwrap_or(Value::Null);
                        if let Some(id) = ev["id"].as_str() {
                            acked.events.lock().unwrap().push(id.to_string());
                        }
                        tokio::time::sleep(Duration::from_millis(3)).await;
                    }
                    // Down or going down: the write may or may not have happened; it was
                    // not acknowledged, so nothing is promised about it.
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
    };
    let actions_driver = {
        let (c, base, acked, sink_url) = (c.clone(), base.clone(), acked.clone(), sink_url.clone());
        tokio::spawn(async move {
            for i in 0..ACTIONS {
                let key = format!("act-{i}");
                let body = json!({ "name": "charge", "key": key,
                    "webhook": { "url": format!("{sink_url}/actions/{i}"), "body": { "i": i } } });
                // Unacknowledged posts are retried with the same key: the key makes it safe.
                loop {
                    let target = format!("{}/a/_actions", base.lock().unwrap());
                    match c
                        .post(target)
                        .json(&body)
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 202 || r.status() == 200 => break,
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
                acked.actions.lock().unwrap().push(key);
                tokio::time::sleep(Duration::from_millis(6)).await;
            }
        })
    };
    let killer = {
        let (server, base, state, stop_kills, kills) = (
            server.clone(),
            base.clone(),
            state.clone(),
            stop_kills.clone(),
            kills.clone(),
        );
        let delays: Vec<u64> = (0..100).map(|_| rng.random_range(150..900)).collect();
        tokio::task::spawn_blocking(move || {
            for delay in delays {
                std::thread::sleep(Duration::from_millis(delay));
                if stop_kills.load(Ordering::SeqCst) && kills.load(Ordering::SeqCst) >= KILLS {
                    return;
                }
                let mut s = server.lock().unwrap();
                s.kill9();
                kills.fetch_add(1, Ordering::SeqCst);
                *s = Server::start(&state, &[]);
                *base.lock().unwrap() = s.url("");
            }
        })
    };
    events_driver.await.unwrap();
    actions_driver.await.unwrap();
    stop_kills.store(true, Ordering::SeqCst);
    killer.await.unwrap();
    let kills = kills.load(Ordering::SeqCst);
    println!(
        "{kills} kill -9s; {} events and {} actions acknowledged",
        acked.events.lock().unwrap().len(),
        acked.actions.lock().unwrap().len()
    );
    assert!(kills >= KILLS);

    // Let the last server finish the work.
    let events: Vec<String> = acked.events.lock().unwrap().clone();
    let action_keys: Vec<String> = acked.actions.lock().unwrap().clone();
    let wanted: HashSet<&String> = events.iter().collect();
    wait_for(
        "outbox drained and actions done",
        Duration::from_secs(180),
        || async {
            let (_, root) = send(c.get(url("/a"))).await;
            if root["outbox"]["count"] != 0 {
                return false;
            }
            let pending = all_pages(&c, &url("/a/_actions?status=pending"))
                .await
                .len()
                + all_pages(&c, &url("/a/_actions?status=running"))
                    .await
                    .len();
            if pending > 0 {
                return false;
            }
            let b = all_pages(&c, &url("/b/_events")).await;
            b.iter()
                .filter(|e| wanted.contains(&e["id"].as_str().unwrap_or_default().to_string()))
                .count()
                >= events.len()
        },
    )
    .await;

    // The emitter's log: every acknowledged event exactly once.
    let a_log = all_pages(&c, &url("/a/_events")).await;
    let mut a_count: HashMap<String, usize> = HashMap::new();
    for e in &a_log {
        *a_count
            .entry(e["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for id in &events {
        assert_eq!(
            a_count.get(id),
            Some(&1),
            "event {id} in a's log (seed {seed})"
        );
    }
    // The receiver's log: the same, and nothing a does not have.
    let b_log = all_pages(&c, &url("/b/_events")).await;
    let mut b_count: HashMap<String, usize> = HashMap::new();
    for e in &b_log {
        *b_count
            .entry(e["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for id in &events {
        assert_eq!(
            b_count.get(id),
            Some(&1),
            "event {id} in b's log (seed {seed})"
        );
    }
    assert!(
        b_count.keys().all(|id| a_count.contains_key(id)),
        "b has only a's events"
    );
    assert_eq!(
        b_log.len(),
        a_log.len(),
        "b has each of a's events once (seed {seed})"
    );

    // Actions: each acknowledged key completed exactly once.
    let actions = all_pages(&c, &url("/a/_actions")).await;
    let mut by_key: HashMap<String, Vec<&Value>> = HashMap::new();
    for a in &actions {
        by_key
            .entry(a["key"].as_str().unwrap().to_string())
            .or_default()
            .push(a);
    }
    for key in &action_keys {
        let found = by_key.get(key).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(found.len(), 1, "action {key} recorded once (seed {seed})");
        assert_eq!(
            found[0]["status"], "completed",
            "action {key}: {} (seed {seed})",
            found[0]
        );
    }
    assert_eq!(actions.len(), ACTIONS);

    // The sink saw every idempotency key at least once.
    let event_keys: HashSet<String> = sink.hits("/events").into_iter().map(|h| h.key).collect();
    let order_events: Vec<&Value> = a_log
        .iter()
        .filter(|e| e["type"] == "Order.created")
        .collect();
    for e in &order_events {
        let id = e["id"].as_str().unwrap();
        assert!(
            event_keys.iter().any(|k| k.starts_with(&format!("{id}:"))),
            "webhook for {id} (seed {seed})"
        );
    }
    let action_hits: HashSet<String> = sink.hits("/actions").into_iter().map(|h| h.key).collect();
    for key in &action_keys {
        assert!(
            action_hits.contains(key),
            "webhook for action {key} (seed {seed})"
        );
    }
    let dup_events = sink.hits("/events").len() - event_keys.len();
    let dup_actions = sink.hits("/actions").len() - action_hits.len();
    println!(
        "sink: {dup_events} repeated event deliveries, {dup_actions} repeated action calls (deduplicated by key)"
    );

    // Nothing is dead.
    for obj in ["a", "b"] {
        assert_eq!(
            send(c.get(url(&format!("/{obj}/_dlq")))).await.1["items"],
            json!([]),
            "{obj} DLQ (seed {seed})"
        );
    }
    server.lock().unwrap().stop();
}

/// `$.do` under `kill -9` (the benchmark class's `tally`, whose effect is a counter in the
/// object's SQLite that commits with the action's completion). Clients repeat each call they
/// did not see answered with the same key, as the key is there for. In the end every key is
/// completed and took effect exactly once: a first attempt cut off by a crash is taken over
/// when its caller comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn do_takes_effect_once_per_key_across_kill_9() {
    const OBJECTS: usize = 4;
    const MIN_KEYS: usize = 100;
    const KILLS: usize = 6;
    let seed = test_seed();
    println!("kill seed: {seed} (replay with DOTDO_TEST_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let (_dir, state) = state_dir();
    let server = Arc::new(Mutex::new(Server::start(&state, &["--bench-class"])));
    let base = Arc::new(Mutex::new(server.lock().unwrap().url("")));
    let killed = Arc::new(AtomicBool::new(false));
    let c = client();

    let drivers: Vec<_> = (0..OBJECTS)
        .map(|o| {
            let (c, base, killed) = (c.clone(), base.clone(), killed.clone());
            tokio::spawn(async move {
                let mut acked = 0;
                // Keys go on until the killer is done, so kills land in the middle of work.
                while acked < MIN_KEYS || !killed.load(Ordering::SeqCst) {
                    let key = format!("k{acked}");
                    loop {
                        let url =
                            format!("{}/counter/crash-{o}/tally?key={key}", base.lock().unwrap());
                        match c.post(url).timeout(Duration::from_secs(5)).send().await {
                            Ok(r) if r.status() == 200 => break,
                            _ => tokio::time::sleep(Duration::from_millis(20)).await,
                        }
                    }
                    acked += 1;
                }
                acked
            })
        })
        .collect();
    let killer = {
        let (server, base, state, killed) =
            (server.clone(), base.clone(), state.clone(), killed.clone());
        let delays: Vec<u64> = (0..KILLS).map(|_| rng.random_range(100..500)).collect();
        tokio::task::spawn_blocking(move || {
            for delay in delays {
                std::thread::sleep(Duration::from_millis(delay));
                let mut s = server.lock().unwrap();
                s.kill9();
                *s = Server::start(&state, &["--bench-class"]);
                *base.lock().unwrap() = s.url("");
            }
            killed.store(true, Ordering::SeqCst);
        })
    };
    killer.await.unwrap();
    let mut acked = Vec::new();
    for d in drivers {
        acked.push(d.await.unwrap());
    }
    println!("{KILLS} kill -9s; keys acknowledged per object: {acked:?}");

    for (o, keys) in acked.iter().enumerate() {
        let url = format!("{}/counter/crash-{o}/actions", base.lock().unwrap());
        let (st, mut counts) = send(c.get(url)).await;
        assert_eq!(st, 200, "{counts}");
        // Attempts a crash cut short and the next activation ran again.
        let retried = counts["retried"].take();
        println!("crash-{o}: {retried} keys took a second attempt");
        assert_eq!(
            counts,
            json!({ "completed": keys, "failed": 0, "pending": 0, "running": 0, "retried": null,
                    "tally": keys }),
            "object crash-{o} (seed {seed})"
        );
    }
}
