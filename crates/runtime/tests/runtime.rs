//! The runtime on real SQLite in temp dirs, with alarms driven by a manual clock.
#![allow(clippy::unwrap_used)]

use dotdo_runtime::storage_api::SqlValue;
use dotdo_runtime::*;
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What the probe objects saw, shared with the test.
#[derive(Default)]
struct Log {
    alarms: Mutex<Vec<(String, AlarmInfo, i64)>>,
    fail_alarms: Mutex<HashMap<String, u32>>,
    inits: Mutex<u32>,
    poke: tokio::sync::Notify,
}

struct Probe {
    state: ObjectState,
    log: Arc<Log>,
}

fn name(state: &ObjectState) -> String {
    state.name().unwrap_or("?").to_string()
}

#[async_trait]
impl DurableObject for Probe {
    async fn init(&self) -> Result<(), ObjectError> {
        *self.log.inits.lock() += 1;
        Ok(())
    }

    async fn call(&self, method: &str, args: Value) -> Result<Value, ObjectError> {
        let st = self.state.storage();
        match method {
            "incr" => {
                let n = st.get_json("n")?.and_then(|v| v.as_i64()).unwrap_or(0) + 1;
                st.put_json("n", json!(n))?;
                Ok(json!(n))
            }
            "get" => Ok(st.get_json("n")?.unwrap_or(json!(0))),
            "set_alarm" => {
                st.set_alarm(args["at"].as_i64().unwrap_or(0))?;
                Ok(Value::Null)
            }
            // Writes, waits (a turn that yields), writes again.
            "slow" => {
                st.put_json("slow", json!("started"))?;
                tokio::time::sleep(Duration::from_millis(300)).await;
                st.put_json("slow", json!("done"))?;
                Ok(json!("done"))
            }
            // Wakes at every poke and reads (never writes) until the counter reaches `until`.
            "watch" => {
                let until = args["until"].as_i64().unwrap_or(0);
                loop {
                    let n = st.get_json("n")?.and_then(|v| v.as_i64()).unwrap_or(0);
                    if n >= until {
                        return Ok(json!(n));
                    }
                    self.log.poke.notified().await;
                }
            }
            "incr_and_poke" => {
                let n = st.get_json("n")?.and_then(|v| v.as_i64()).unwrap_or(0) + 1;
                st.put_json("n", json!(n))?;
                self.log.poke.notify_one();
                Ok(json!(n))
            }
            // Waits for the shared commit of the turns finished so far, then says whether
            // anything is left uncommitted.
            "settle" => {
                self.state.settled().await;
                Ok(json!(st.with(|s| Ok(s.is_dirty()))?))
            }
            "write_then_fail" => {
                st.put_json("n", json!(-1))?;
                Err(ObjectError::bad_request("failed on purpose"))
            }
            // A → B → A: ask `peer` to call us back.
            "ping" => {
                let me = name(&self.state);
                st.put_json("pinged", json!(true))?;
                let peer = args["peer"].as_str().unwrap_or_default();
                self.state
                    .stub("probe", peer)
                    .call("pong", json!({ "back": me }))
                    .await
            }
            "pong" => {
                let back = args["back"].as_str().unwrap_or_default();
                let n = self
                    .state
                    .stub("probe", back)
                    .call("incr", Value::Null)
                    .await?;
                Ok(json!({ "pong": n }))
            }
            _ => Err(ObjectError::not_found(method)),
        }
    }

    async fn alarm(&self, info: AlarmInfo) -> Result<(), ObjectError> {
        let me = name(&self.state);
        self.log
            .alarms
            .lock()
            .push((me.clone(), info, self.state.now_ms()));
        let mut fails = self.log.fail_alarms.lock();
        if let Some(left) = fails.get_mut(&me)
            && *left > 0
        {
            *left -= 1;
            return Err(ObjectError::internal("alarm failed on purpose"));
        }
        drop(fails);
        self.state.storage().put_json("alarm_ran", json!(true))?;
        Ok(())
    }
}

const T0: i64 = 1_700_000_000_000;

fn options(dir: &std::path::Path, clock: &ManualClock, log: &Arc<Log>) -> HostOptions {
    let log = log.clone();
    let mut o = HostOptions::new(dir).class(
        "probe",
        FnClass::new("Probe", move |state| Probe {
            state,
            log: log.clone(),
        }),
    );
    o.clock = Arc::new(clock.clone());
    o
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test]
async fn turns_of_one_object_never_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, log) = (ManualClock::new(T0), Arc::new(Log::default()));
    let host = Host::open(options(dir.path(), &clock, &log)).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                host.call("probe", "counter", "incr", Value::Null)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        host.call("probe", "counter", "get", Value::Null)
            .await
            .unwrap(),
        json!(400)
    );
    assert_eq!(*log.inits.lock(), 1, "init ran once for one activation");
}

#[tokio::test]
async fn a_failing_turn_rolls_back_its_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, log) = (ManualClock::new(T0), Arc::new(Log::default()));
    let host = Host::open(options(dir.path(), &clock, &log)).unwrap();
    host.call("probe", "a", "incr", Value::Null).await.unwrap();
    let err = host
        .call("probe", "a", "write_then_fail", Value::Null)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadRequest);
    assert_eq!(
        host.call("probe", "a", "get", Value::Null).await.unwrap(),
        json!(1)
    );
}

/// Turns that finish back to back share one commit; one that fails among them must undo its
/// own writes only, and every acknowledged write must be there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_sharing_a_commit_fail_alone_and_keep_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, log) = (ManualClock::new(T0), Arc::new(Log::default()));
    let opts = options(dir.path(), &clock, &log);
    let host = Host::open(opts.clone()).unwrap();
    let mut tasks = Vec::new();
    for task in 0..32 {
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = 0;
            for i in 0..40 {
                if (task + i) % 3 == 0 {
                    let err = host
                        .call("probe", "batched", "write_then_fail", Value::Null)
                        .await
                        .unwrap_err();
                    assert_eq!(err.kind, ErrorKind::BadRequest);
                } else {
                    host.call("probe", "batched", "incr", Value::Null)
                        .await
                        .unwrap();
                    acked += 1;
                }
            }
            acked
        }));
    }
    let mut acked = 0;
    for t in tasks {
        acked += t.await.unwrap();
    }
    let n = host
        .call("probe", "batched", "get", Value::Null)
        .await
        .unwrap();
    assert_eq!(n, json!(acked), "failed turns undid only their own writes");
    host.shutdown(Duration::from_secs(10)).await;
    let host = Host::open(opts).unwrap();
    let n = host
        .call("probe", "batched", "get", Value::Null)
        .await
        .unwrap();
    assert_eq!(
        n,
        json!(acked),
        "every acknowledged increment survived the restart"
    );
}

/// A turn waiting for the shared commit wakes once the turns before it are committed, with
/// nothing of theirs left open, and never waits when nothing is held.
#[tokio::test]
async fn settled_waits_for_the_shared_commit_of_earlier_turns() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, log) = (ManualClock::new(T0), Arc::new(Log::default()));
    let host = Host::open(options(dir.path(), &clock, &log)).unwrap();
    assert_eq!(
        host.call("probe", "s", "settle", Value::Null)
            .await
            .unwrap(),
        json!(false),
        "nothing held: at once"
    );
    let incrs: Vec<_> = (0..10)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move { host.call("probe", "s", "incr", Value::Null).await })
        })
        .collect();
    tokio::task::yield_now().await;
    let settled = tokio::time::timeout(
        Duration::from_secs(10),
        host.call("probe", "s", "settle", Value::Null),
    )
    .await
    .expect("settled returned")
    .unwrap();
    assert_eq!(
        settled,
        json!(false),
        "the earlier turns' writes are committed"
    );
    for t in incrs {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        host.call("probe", "s", "get", Value::Null).await.unwrap(),
        json!(10)
    );
}

/// A turn that wakes after every write to look at it, without writing, does not commit at
/// each of its yields: the writers still share commits.
#[tokio::test]
async fn a_turn_that_only_looks_does_not_split_the_shared_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, log) = (ManualClock::new(T0), Arc::new(Log::default()));
    let host = Host::open(options(dir.path(), &clock, &log)).unwrap();
    host.call("probe", "w", "get", Value::Null).await.unwrap();
    let before = host.stats();
    let watcher = {
        let host = host.clone();
        tokio::spawn(async move {
            host.call("probe", "w", "watch", json!({ "until": 20 }))
                .await
        })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let writers: Vec<_> = (0..20)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move { host.call("probe", "w", "incr_and_poke", Value::Null).await })
        })
        .collect();
    for w in writers {
        w.await.unwrap().unwrap();
    }
    assert_eq!(watcher.await.unwrap().unwrap(), json!(20));
    let after = host.stats();
    let commits = after.commits - before.commits;
    assert!(
        (1..=4).contains(&commits),
        "20 writes took {commits} commits: the watcher's yields split the batches"
    );
    assert_eq!(after.committed_results - before.committed_results, 21);
}

/// Goes to the back of the run queue at once (unlike `yield_now`, which waits for the
/// scheduler's next look at its timers and sockets).
async fn back_of_the_queue() {
    let mut queued = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut queued, true) {
            std::task::Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// Requests that reach a busy object one pass of the run queue after another still share a
/// commit: the object waits while each pass brings more finished turns.
#[tokio::test]
async fn requests_arriving_over_several_passes_share_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, log) = (ManualClock::new(T0), Arc::new(Log::default()));
    let host = Host::open(options(dir.path(), &clock, &log)).unwrap();
    host.call("probe", "p", "get", Value::Null).await.unwrap();
    let before = host.stats();
    // Client `i` sends its request `i` passes after the first, each time going to the back
    // of the run queue as a task woken by its socket does.
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let host = host.clone();
            tokio::spawn(async move {
                for _ in 0..i {
                    back_of_the_queue().await;
                }
                host.call("probe", "p", "incr", Value::Null).await
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap().unwrap();
    }
    let after = host.stats();
    let commits = after.commits - before.commits;
    assert!(
        (1..=2).contains(&commits),
        "8 writes arriving one pass apart took {commits} commits"
    );
    assert_eq!(
        host.call("probe", "p", "get", Value::Null).await.unwrap(),
        json!(8)
    );
}

/// In `normal` durability a busy object's WAL is written out in the background every so
/// many commits, so dirty pages do not pile up until the kernel writes them in one burst.
#[tokio::test]
async fn a_busy_wal_is_written_out_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, log) = (ManualClock::new(T0), Arc::new(Log::default()));
    let host = Host::open(options(dir.path(), &clock, &log)).unwrap();
    assert_eq!(host.stats().wal_writebacks, 0);
    // One at a time: each write is a commit of its own.
    for _ in 0..130 {
        host.call("probe", "busy", "incr", Value::Null)
            .await
            .unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while host.stats().wal_writebacks == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no writeback after 130 commits"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(host.stats().wal_writebacks <= 2, "{:?}", host.stats());
}

#[tokio::test]
async fn eviction_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, log) = (ManualClock::new(T0), Arc::new(Log::default()));
    let host = Host::open(options(dir.path(), &clock, &log)).unwrap();
    for _ in 0..3 {
        host.call("probe", "e", "incr", Value::Null).await.unwrap();
    }
    assert!(host.evict("probe", "e").await);
    assert_eq!(host.stats().active, 0);
    assert_eq!(
        host.call("probe", "e", "get", Value::Null).await.unwrap(),
        json!(3)
    );
    assert_eq!(*log.inits.lock(), 2, "the object was activated again");
}

#[tokio::test]
async fn idle_objects_are_evicted_by_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, log) = (ManualClock::new(T0), Arc::new(Log::default()));
    let host = Host::open(options(dir.path(), &clock, &log)).unwrap();
    host.call("probe", "idle", "incr", Value::Null)
        .await
        .unwrap();
    assert_eq!(host.stats().active, 1);
    clock.advance(29_000);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(host.stats().active, 1, "not idle long enough yet");
    clock.advance(2_000);
    eventually("idle eviction", || host.stats().active == 0).await;
    assert_eq!(
        host.call("probe", "idle", "get", Value::Null)
            .await
            .unwrap(),
        json!(1)
    );
}

#[tokio::test]
async fn the_open_object_limit_holds_with_lru_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, log) = (ManualClock::new(T0), Arc::new(Log::default()));
    let mut opts = options(dir.path(), &clock, &log);
    opts.max_open_objects = Some(4);
    let host = Host::open(opts).unwrap();
    for i in 0..40 {
        host.call("probe", &format!("o{i}"), "incr", Value::Null)
            .await
            .unwrap();
        assert!(host.stats().active <= 4);
    }
    for i in 0..40 {
        assert_eq!(
            host.call("probe", &format!("o{i}"), "get", Value::Null)
                .await
                .unwrap(),
            json!(1)
        );
    }
    assert!(host.stats().evictions >= 36);
    assert_eq!(host.count_objects("probe").unwrap(), 40);
}

#[tokio::test]
async fn a_call_chain_that_comes_back_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, log) = (ManualClock::new(T0), Arc::new(Log::default()));
    let host = Host::open(options(dir.path(), &clock, &log)).unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        host.call("probe", "A", "ping", json!({ "peer": "B" })),
    )
    .await
    .expect("A→B→A must not deadlock")
    .unwrap();
    assert_eq!(r, json!({ "pong": 1 }));
    assert_eq!(
        host.call("probe", "A", "get", Value::Null).await.unwrap(),
        json!(1)
    );
}

#[tokio::test]
async fn an_alarm_set_on_an_evicted_object_fires() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, log) = (ManualClock::new(T0), Arc::new(Log::default()));
    let host = Host::open(options(dir.path(), &clock, &log)).unwrap();
    host.call(
        "probe",
        "sleeper",
        "set_alarm",
        json!({ "at": T0 + 60_000 }),
    )
    .await
    .unwrap();
    assert!(host.evict("probe", "sleeper").await);
    assert_eq!(host.stats().active, 0);
    clock.advance(59_000);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(log.alarms.lock().is_empty(), "not due yet");
    clock.advance(1_000);
    eventually("the alarm ran", || log.alarms.lock().len() == 1).await;
    let (who, info, at) = log.alarms.lock()[0].clone();
    assert_eq!(
        (who.as_str(), info.retry_count, info.is_retry, at),
        ("sleeper", 0, false, T0 + 60_000)
    );
    let st = host
        .storage("probe", "sleeper", |s| s.alarm_state())
        .await
        .unwrap();
    assert_eq!((st.at, st.last_fired_at), (None, Some(T0 + 60_000)));
    assert_eq!(host.stats().pending_alarms, 0);
}

#[tokio::test]
async fn a_failing_alarm_is_retried_with_backoff_then_abandoned() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, log) = (ManualClock::new(T0), Arc::new(Log::default()));
    log.fail_alarms.lock().insert("flaky".into(), 100);
    let host = Host::open(options(dir.path(), &clock, &log)).unwrap();
    host.call("probe", "flaky", "set_alarm", json!({ "at": T0 + 1_000 }))
        .await
        .unwrap();
    clock.advance(1_000);
    eventually("first attempt", || log.alarms.lock().len() == 1).await;
    // Retries at +2 s, +4 s, +8 s, +16 s, +32 s, +64 s after each failure.
    let mut expected = vec![T0 + 1_000];
    for retry in 1..=ALARM_MAX_RETRIES {
        let delay = ALARM_RETRY_BASE_MS << (retry - 1);
        clock.advance(delay - 1);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(
            log.alarms.lock().len(),
            retry as usize,
            "retry {retry} must wait its backoff"
        );
        clock.advance(1);
        eventually("retry", || log.alarms.lock().len() == retry as usize + 1).await;
        expected.push(clock.now_ms());
    }
    let seen = log.alarms.lock().clone();
    assert_eq!(
        seen.iter().map(|(_, _, t)| *t).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(
        seen.iter()
            .map(|(_, i, _)| i.retry_count)
            .collect::<Vec<_>>(),
        (0..=ALARM_MAX_RETRIES).collect::<Vec<_>>()
    );
    // Abandoned: no further attempts, slot cleared.
    eventually("alarm cleared", || host.stats().pending_alarms == 0).await;
    clock.advance(1_000_000);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(log.alarms.lock().len(), 1 + ALARM_MAX_RETRIES as usize);
    let st = host
        .storage("probe", "flaky", |s| s.alarm_state())
        .await
        .unwrap();
    assert_eq!(st.at, None);
}

#[tokio::test]
async fn a_retried_alarm_that_then_succeeds_runs_its_effect_once() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, log) = (ManualClock::new(T0), Arc::new(Log::default()));
    log.fail_alarms.lock().insert("twice".into(), 2);
    let host = Host::open(options(dir.path(), &clock, &log)).unwrap();
    host.call("probe", "twice", "set_alarm", json!({ "at": T0 }))
        .await
        .unwrap();
    eventually("attempt 1", || log.alarms.lock().len() == 1).await;
    clock.advance(2_000);
    eventually("attempt 2", || log.alarms.lock().len() == 2).await;
    clock.advance(4_000);
    eventually("attempt 3", || log.alarms.lock().len() == 3).await;
    let ran = host
        .storage("probe", "twice", |s| s.get("alarm_ran"))
        .await
        .unwrap();
    assert!(ran.is_some());
    let st = host
        .storage("probe", "twice", |s| s.alarm_state())
        .await
        .unwrap();
    assert_eq!((st.at, st.retries), (None, 0));
}

#[tokio::test]
async fn alarms_due_while_down_fire_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, log) = (ManualClock::new(T0), Arc::new(Log::default()));
    {
        let host = Host::open(options(dir.path(), &clock, &log)).unwrap();
        host.call("probe", "late", "set_alarm", json!({ "at": T0 + 5_000 }))
            .await
            .unwrap();
        host.shutdown(Duration::from_secs(5)).await;
    }
    clock.advance(3_600_000);
    let host = Host::open(options(dir.path(), &clock, &log)).unwrap();
    eventually("missed alarm fired at boot", || {
        log.alarms.lock().len() == 1
    })
    .await;
    assert_eq!(log.alarms.lock()[0].0, "late");
    drop(host);
}

#[tokio::test]
async fn fsync_durability_commits_and_replies() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, log) = (ManualClock::new(T0), Arc::new(Log::default()));
    let mut opts = options(dir.path(), &clock, &log);
    opts.durability = Durability::Fsync;
    let host = Host::open(opts.clone()).unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                host.call("probe", &format!("f{}", t % 2), "incr", Value::Null)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    host.shutdown(Duration::from_secs(5)).await;
    let host = Host::open(opts).unwrap();
    for f in ["f0", "f1"] {
        assert_eq!(
            host.call("probe", f, "get", Value::Null).await.unwrap(),
            json!(200)
        );
    }
}

#[tokio::test]
async fn raw_storage_turns_and_failed_sql() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, log) = (ManualClock::new(T0), Arc::new(Log::default()));
    let host = Host::open(options(dir.path(), &clock, &log)).unwrap();
    host.storage("probe", "sql", |s| {
        s.exec("CREATE TABLE t(x INTEGER UNIQUE)", &[])
    })
    .await
    .unwrap();
    host.storage("probe", "sql", |s| s.exec("INSERT INTO t VALUES (1)", &[]))
        .await
        .unwrap();
    let err = host
        .storage("probe", "sql", |s| s.exec("INSERT INTO t VALUES (1)", &[]))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadRequest);
    let r = host
        .storage("probe", "sql", |s| s.exec("SELECT count(*) FROM t", &[]))
        .await
        .unwrap();
    assert_eq!(r.rows[0][0], SqlValue::Integer(1));
    let err = host
        .call("nope", "x", "get", Value::Null)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn a_panicking_turn_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, log) = (ManualClock::new(T0), Arc::new(Log::default()));
    let host = Host::open(options(dir.path(), &clock, &log)).unwrap();
    host.call("probe", "p", "incr", Value::Null).await.unwrap();
    let err = host
        .storage("probe", "p", |s| -> Result<(), _> {
            s.put("n", &dotdo_runtime::storage_api::KvValue::Json(json!(99)))?;
            panic!("boom")
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Internal);
    assert_eq!(
        host.call("probe", "p", "get", Value::Null).await.unwrap(),
        json!(1),
        "the panicking turn's write was rolled back"
    );
    assert_eq!(*log.inits.lock(), 1, "the object kept running");
}

#[tokio::test]
async fn shutdown_lets_running_turns_finish_and_keeps_their_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, log) = (ManualClock::new(T0), Arc::new(Log::default()));
    let opts = options(dir.path(), &clock, &log);
    let host = Host::open(opts.clone()).unwrap();
    let h = host.clone();
    let slow = tokio::spawn(async move { h.call("probe", "s", "slow", Value::Null).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    host.shutdown(Duration::from_secs(10)).await;
    assert_eq!(
        slow.await.unwrap().unwrap(),
        json!("done"),
        "the running turn finished"
    );
    let err = host
        .call("probe", "s", "get", Value::Null)
        .await
        .unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::Unavailable,
        "no new turns after shutdown"
    );
    assert_eq!(host.stats().active, 0, "every database is closed");
    let host = Host::open(opts).unwrap();
    let v = host.storage("probe", "s", |s| s.get("slow")).await.unwrap();
    assert_eq!(
        v,
        Some(dotdo_runtime::storage_api::KvValue::Json(json!("done")))
    );
}
