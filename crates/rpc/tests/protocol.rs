//! The protocol against traffic captured from the npm `capnweb` 0.12.0 client talking to its
//! own reference server: the same requests must get the same answers from ours.

use dotdo_rpc::{
    Args, RpcError, RpcResult, RpcTarget, RpcValue, Session, SessionLimits, Stub, Transport,
    async_trait, serve_batch,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// The reference recipe's API.
struct Api;

struct Counter(AtomicI64);

#[async_trait]
impl RpcTarget for Counter {
    async fn call(&self, method: &str, args: Vec<RpcValue>) -> RpcResult {
        let a = Args::new(method, args);
        match method {
            "increment" => {
                let by = a.number(0, "by")? as i64;
                Ok(RpcValue::number(
                    (self.0.fetch_add(by, Ordering::SeqCst) + by) as f64,
                ))
            }
            _ => Err(RpcError::not_a_function(method)),
        }
    }
}

#[async_trait]
impl RpcTarget for Api {
    async fn call(&self, method: &str, args: Vec<RpcValue>) -> RpcResult {
        let a = Args::new(method, args);
        match method {
            "getUser" => {
                let id = a.number(0, "id")?;
                Ok(RpcValue::from(
                    json!({ "id": id as i64, "profile": { "name": "Alice" } }),
                ))
            }
            "greet" => Ok(RpcValue::str(format!("Hello, {}!", a.string(0, "name")?))),
            "echo" => Ok(a.value(0)),
            "makeCounter" => Ok(RpcValue::Stub(Stub::new(Counter(AtomicI64::new(0))))),
            "list" => Ok(RpcValue::from(json!([{ "name": "x" }, { "name": "y" }]))),
            "fail" => Err(RpcError::type_error("bad thing")),
            "callBack" => {
                let cb = a.stub(0, "cb")?;
                let r = cb.invoke(vec![a.value(1)]).await?;
                Ok(RpcValue::str(format!(
                    "cb returned {}",
                    r.as_f64().unwrap_or_default()
                )))
            }
            "slow" => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(RpcValue::str("slow"))
            }
            _ => Err(RpcError::not_a_function(method)),
        }
    }
}

fn main_stub() -> Stub {
    Stub::new(Api)
}

async fn batch(lines: &[Value]) -> Vec<Value> {
    let body = lines
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let reply = serve_batch(main_stub(), &body, SessionLimits::default()).await;
    assert!(!reply.ends_with('\n'), "no trailing newline");
    if reply.is_empty() {
        return Vec::new();
    }
    reply
        .split('\n')
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|m| m.to_string());
    v
}

#[tokio::test]
async fn a_pipelined_property_chain_is_one_batch() {
    let got = batch(&[
        json!(["push", ["pipeline", 0, ["getUser"], [1]]]),
        json!(["push", ["pipeline", 1, ["profile", "name"]]]),
        json!(["pull", 2]),
    ])
    .await;
    assert_eq!(got, vec![json!(["resolve", 2, "Alice"])]);
}

#[tokio::test]
async fn an_empty_batch_gets_an_empty_reply() {
    assert!(batch(&[]).await.is_empty());
}

#[tokio::test]
async fn stubs_returned_by_the_server_are_pipelined_in_order() {
    let got = batch(&[
        json!(["push", ["pipeline", 0, ["getUser"], [7]]]),
        json!([
            "push",
            [
                "pipeline",
                0,
                ["greet"],
                [["pipeline", 1, ["profile", "name"]]]
            ]
        ]),
        json!(["push", ["pipeline", 0, ["makeCounter"], []]]),
        json!(["push", ["pipeline", 3, ["increment"], [2]]]),
        json!(["push", ["pipeline", 3, ["increment"], [3]]]),
        json!(["pull", 2]),
        json!(["pull", 5]),
        json!(["push", ["pipeline", 1, ["id"]]]),
        json!(["pull", 6]),
    ])
    .await;
    assert_eq!(
        sorted(got),
        sorted(vec![
            json!(["resolve", 2, "Hello, Alice!"]),
            json!(["resolve", 5, 5]),
            json!(["resolve", 6, 7]),
        ])
    );
}

#[tokio::test]
async fn special_values_round_trip_exactly() {
    let sample = json!({"s":"x","n":1.5,"big":["bigint","-12345678901234567890"],"d":["date",1700000000000i64],
        "b":["bytes","AAH+/w"],"a":[[1,[["two",[[3]]]],[[]]]],"u":["undefined"],"inf":["inf"],
        "ninf":["-inf"],"nan":["nan"],"nul":null,"o":{},"e":["error","RangeError","oops",null,{"code":42}],
        "t":["bytes","AQA","Int16Array"],"url":["url","https://example.com/"],"bad":["date",null]});
    let got = batch(&[
        json!(["push", ["pipeline", 0, ["echo"], [sample.clone()]]]),
        json!(["pull", 1]),
    ])
    .await;
    assert_eq!(got, vec![json!(["resolve", 1, sample])]);
}

#[tokio::test]
async fn padded_base64_is_accepted_and_sent_unpadded() {
    let got = batch(&[
        json!(["push", ["pipeline", 0, ["echo"], [["bytes", "AQI="]]]]),
        json!(["pull", 1]),
    ])
    .await;
    assert_eq!(got, vec![json!(["resolve", 1, ["bytes", "AQI"]])]);
}

#[tokio::test]
async fn map_runs_instructions_per_element() {
    let got = batch(&[
        json!(["push", ["pipeline", 0, ["list"], []]]),
        json!(["push", ["remap", 1, [], [["import", 0]],
            [["pipeline", -1, ["greet"], [["pipeline", 0, ["name"]]]], ["pipeline", 1]]]]),
        json!(["pull", 2]),
        json!(["push", ["pipeline", 0, ["getUser"], [3]]]),
        json!(["push", ["remap", 3, [], [], [{"n": ["pipeline", 0, ["profile", "name"]], "id": ["pipeline", 0, ["id"]]}]]]),
        json!(["pull", 4]),
    ])
    .await;
    assert_eq!(
        sorted(got),
        sorted(vec![
            json!(["resolve", 2, [["Hello, x!", "Hello, y!"]]]),
            json!(["resolve", 4, {"n": "Alice", "id": 3}]),
        ])
    );
}

#[tokio::test]
async fn errors_are_rejections_with_the_reference_wording() {
    let got = batch(&[
        json!(["push", ["pipeline", 0, ["fail"], []]]),
        json!(["pull", 1]),
        json!(["push", ["pipeline", 0, ["noSuchMethod"], []]]),
        json!(["pull", 2]),
        json!(["push", ["pipeline", 1, ["anything"]]]),
        json!(["pull", 3]),
    ])
    .await;
    assert_eq!(
        sorted(got),
        sorted(vec![
            json!(["reject", 1, ["error", "TypeError", "bad thing"]]),
            json!([
                "reject",
                2,
                ["error", "TypeError", "'noSuchMethod' is not a function."]
            ]),
            json!(["reject", 3, ["error", "TypeError", "bad thing"]]),
        ])
    );
}

#[tokio::test]
async fn a_result_still_running_can_be_used_and_released_before_it_settles() {
    let got = batch(&[
        json!(["push", ["pipeline", 0, ["slow"], []]]),
        // Two later calls take the running result as their argument.
        json!(["push", ["pipeline", 0, ["echo"], [["pipeline", 1]]]]),
        json!(["push", ["pipeline", 0, ["greet"], [["pipeline", 1]]]]),
        // Released while it runs: the calls waiting on it still get it.
        json!(["release", 1, 1]),
        json!(["pull", 2]),
        json!(["pull", 3]),
        json!(["push", ["pipeline", 0, ["slow"], []]]),
        json!(["pull", 4]),
    ])
    .await;
    assert_eq!(
        sorted(got),
        sorted(vec![
            json!(["resolve", 2, "slow"]),
            json!(["resolve", 3, "Hello, slow!"]),
            json!(["resolve", 4, "slow"]),
        ])
    );
}

#[tokio::test]
async fn a_result_pulled_twice_while_running_is_answered_twice() {
    let got = batch(&[
        json!(["push", ["pipeline", 0, ["slow"], []]]),
        json!(["pull", 1]),
        json!(["pull", 1]),
    ])
    .await;
    assert_eq!(
        got,
        vec![json!(["resolve", 1, "slow"]), json!(["resolve", 1, "slow"])]
    );
}

#[tokio::test]
async fn a_callback_cannot_be_called_inside_a_batch() {
    let got = batch(&[
        json!(["push", ["pipeline", 0, ["callBack"], [["export", -1], 21]]]),
        json!(["pull", 1]),
    ])
    .await;
    // The callback is released once the call returns; the call is rejected.
    assert!(got.contains(&json!(["release", -1, 1])), "{got:?}");
    let reject = got.iter().find(|m| m[0] == "reject").expect("a rejection");
    assert!(
        reject[2][2]
            .as_str()
            .unwrap_or_default()
            .contains("WebSocket")
    );
}

#[tokio::test]
async fn a_promise_the_batch_never_settles_fails_instead_of_hanging() {
    let got = batch(&[
        json!(["push", ["pipeline", 0, ["greet"], [["promise", -1]]]]),
        json!(["pull", 1]),
    ])
    .await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0][0], "reject");
    assert!(
        got[0][2][2]
            .as_str()
            .unwrap_or_default()
            .contains("did not settle")
    );
}

#[tokio::test]
async fn malformed_messages_abort_with_a_clear_error() {
    for bad in [
        "not json",
        "{}",
        "[\"push\"]",
        "[\"push\", [1, 2]]",
        "[\"pull\", 99]",
        "[\"release\", 5, 1]",
        "[\"release\", 0, 2]",
        "[\"push\", [\"pipeline\", 42, [\"x\"], []]]",
        "[\"push\", [\"bigint\", \"12a\"]]",
        "[\"push\", [\"bytes\", \"!!\"]]",
        "[\"resolve\", 3, 1]",
        "[\"frob\", 1]",
        "[\"pipe\"]",
    ] {
        let reply = serve_batch(main_stub(), bad, SessionLimits::default()).await;
        let last: Value = serde_json::from_str(reply.split('\n').next_back().unwrap_or_default())
            .unwrap_or_else(|_| panic!("`{bad}` → `{reply}`"));
        assert_eq!(last[0], "abort", "`{bad}` → `{reply}`");
        assert!(
            last[1][2]
                .as_str()
                .unwrap_or_default()
                .starts_with("bad RPC message: "),
            "`{bad}` → `{reply}`"
        );
    }
}

#[tokio::test]
async fn limits_are_enforced() {
    let limits = SessionLimits {
        max_exports: 3,
        max_imports: 2,
        max_message_bytes: 200,
    };
    let many = (0..5)
        .map(|_| json!(["push", ["pipeline", 0, ["greet"], ["a"]]]).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let reply = serve_batch(main_stub(), &many, limits.clone()).await;
    assert!(reply.contains("too many unreleased results"), "{reply}");
    let big = json!(["push", ["pipeline", 0, ["echo"], ["x".repeat(500)]]]).to_string();
    let reply = serve_batch(main_stub(), &big, limits.clone()).await;
    assert!(reply.contains("at most 200 bytes"), "{reply}");
    let deep = format!("[\"push\", {}1{}]", "{\"a\":".repeat(300), "}".repeat(300));
    let reply = serve_batch(main_stub(), &deep, SessionLimits::default()).await;
    assert!(reply.starts_with("[\"abort\""), "{reply}");
}

/// A WebSocket-like session driven by hand, as the captured callback exchange.
#[tokio::test]
async fn the_server_calls_a_client_callback_and_releases_it() {
    let (session, mut out) =
        Session::new(main_stub(), Transport::WebSocket, SessionLimits::default());
    let next = |out: &mut tokio::sync::mpsc::UnboundedReceiver<String>| {
        let m = out.try_recv().expect("a message");
        serde_json::from_str::<Value>(&m).expect("json")
    };
    session
        .receive(&json!(["push", ["pipeline", 0, ["callBack"], [["export", -1], 21]]]).to_string())
        .expect("push");
    session
        .receive(&json!(["pull", 1]).to_string())
        .expect("pull");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(next(&mut out), json!(["push", ["pipeline", -1, [], [21]]]));
    assert_eq!(next(&mut out), json!(["pull", 1]));
    session
        .receive(&json!(["resolve", 1, 42]).to_string())
        .expect("resolve");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut rest = Vec::new();
    while let Ok(m) = out.try_recv() {
        rest.push(serde_json::from_str::<Value>(&m).expect("json"));
    }
    assert_eq!(
        sorted(rest),
        sorted(vec![
            json!(["release", 1, 1]),
            json!(["release", -1, 1]),
            json!(["resolve", 1, "cb returned 42"]),
        ])
    );
    // The client releases the result; the export table is back to the main object.
    session
        .receive(&json!(["release", 1, 1]).to_string())
        .expect("release");
    assert_eq!(session.export_count(), 1);
    assert_eq!(session.import_count(), 0);
}

#[tokio::test]
async fn exported_stubs_live_until_released() {
    let (session, mut out) =
        Session::new(main_stub(), Transport::WebSocket, SessionLimits::default());
    session
        .receive(&json!(["push", ["pipeline", 0, ["makeCounter"], []]]).to_string())
        .expect("push");
    session
        .receive(&json!(["pull", 1]).to_string())
        .expect("pull");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let m: Value = serde_json::from_str(&out.try_recv().expect("resolve")).expect("json");
    assert_eq!(m, json!(["resolve", 1, ["export", -1]]));
    session
        .receive(&json!(["release", 1, 1]).to_string())
        .expect("release");
    session
        .receive(&json!(["push", ["pipeline", -1, ["increment"], [4]]]).to_string())
        .expect("call on the stub");
    session
        .receive(&json!(["pull", 2]).to_string())
        .expect("pull");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let m: Value = serde_json::from_str(&out.try_recv().expect("resolve")).expect("json");
    assert_eq!(m, json!(["resolve", 2, 4]));
    assert_eq!(session.export_count(), 3);
    session
        .receive(&json!(["release", -1, 1]).to_string())
        .expect("release");
    session
        .receive(&json!(["release", 2, 1]).to_string())
        .expect("release");
    assert_eq!(session.export_count(), 1);
    // Releasing again is a protocol error.
    assert!(
        session
            .receive(&json!(["release", -1, 1]).to_string())
            .is_err()
    );
}

#[tokio::test]
async fn a_promise_argument_is_awaited_before_the_call() {
    let (session, mut out) =
        Session::new(main_stub(), Transport::WebSocket, SessionLimits::default());
    session
        .receive(&json!(["push", ["pipeline", 0, ["greet"], [["promise", -1]]]]).to_string())
        .expect("push");
    session
        .receive(&json!(["pull", 1]).to_string())
        .expect("pull");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(out.try_recv().is_err(), "nothing until the promise settles");
    session
        .receive(&json!(["resolve", -1, "Bob"]).to_string())
        .expect("resolve");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let got: Vec<Value> = std::iter::from_fn(|| out.try_recv().ok())
        .map(|m| serde_json::from_str(&m).expect("json"))
        .collect();
    assert_eq!(
        sorted(got),
        sorted(vec![
            json!(["release", -1, 1]),
            json!(["resolve", 1, "Hello, Bob!"])
        ])
    );
}

#[tokio::test]
async fn calls_on_one_target_start_in_order_while_others_proceed() {
    // `slow` on main does not hold up a later call on main from starting, and the counter
    // calls run in the order sent.
    let lines = [
        json!(["push", ["pipeline", 0, ["slow"], []]]),
        json!(["push", ["pipeline", 0, ["makeCounter"], []]]),
        json!(["push", ["pipeline", 2, ["increment"], [1]]]),
        json!(["push", ["pipeline", 2, ["increment"], [10]]]),
        json!(["push", ["pipeline", 2, ["increment"], [100]]]),
        json!(["pull", 3]),
        json!(["pull", 4]),
        json!(["pull", 5]),
        json!(["pull", 1]),
    ];
    let got = batch(&lines).await;
    let order: Vec<i64> = got.iter().filter_map(|m| m[1].as_i64()).collect();
    assert_eq!(
        sorted(got),
        sorted(vec![
            json!(["resolve", 1, "slow"]),
            json!(["resolve", 3, 1]),
            json!(["resolve", 4, 11]),
            json!(["resolve", 5, 111]),
        ])
    );
    assert_eq!(
        order.last(),
        Some(&1),
        "the slow call answers last: {order:?}"
    );
}

#[tokio::test]
async fn aborting_fails_calls_to_the_peer() {
    let (session, _out) = Session::new(main_stub(), Transport::WebSocket, SessionLimits::default());
    let s2 = session.clone();
    session
        .receive(&json!(["push", ["pipeline", 0, ["callBack"], [["export", -1], 1]]]).to_string())
        .expect("push");
    session
        .receive(&json!(["pull", 1]).to_string())
        .expect("pull");
    tokio::time::sleep(Duration::from_millis(20)).await;
    s2.receive(&json!(["abort", ["error", "Error", "bye"]]).to_string())
        .expect("abort");
    assert_eq!(session.export_count(), 0);
    let _ = Arc::new(());
}
