//! Cap'n Web over a raw WebSocket against the real binary: the server calling a client
//! callback, malformed input ending only its own session, and every acknowledged write
//! surviving a `kill -9` in the middle of a stream of writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &Server, path: &str) -> Ws {
    let url = server.url(path).replacen("http", "ws", 1);
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn send(ws: &mut Ws, msg: Value) {
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .unwrap();
}

/// The next text message, as JSON (`None` once the server closed).
async fn recv(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the server answers within 10 s")?
        {
            Ok(Message::Text(t)) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Reads until the settlement of push `id`.
async fn settled(ws: &mut Ws, id: i64) -> Value {
    loop {
        let m = recv(ws).await.expect("the session is open");
        if (m[0] == "resolve" || m[0] == "reject") && m[1] == id {
            return m;
        }
    }
}

#[tokio::test]
async fn the_server_calls_back_and_malformed_input_ends_only_that_session() {
    let (_dir, state) = state_dir();
    let server = Server::start(&state, &[]);
    let mut ws = connect(&server, "/acme/rpc").await;
    // subscribe(callback) with our export -1; the server calls it for each new event.
    send(
        &mut ws,
        json!(["push", ["pipeline", 0, ["subscribe"], [["export", -1], { "type": "Ping.*" }]]]),
    )
    .await;
    send(&mut ws, json!(["pull", 1])).await;
    assert_eq!(
        settled(&mut ws, 1).await,
        json!(["resolve", 1, ["export", -1]])
    );
    send(
        &mut ws,
        json!(["push", ["pipeline", 0, ["emit"], ["Ping.sent", { "n": 7 }]]]),
    )
    .await;
    send(&mut ws, json!(["pull", 2])).await;
    // The server's call to the callback (a push on our export -1 and its pull) and the
    // answer to the emit arrive in either order.
    let (mut call, mut pulled, mut emitted) = (false, false, false);
    while !(call && pulled && emitted) {
        let m = recv(&mut ws).await.unwrap();
        match m[0].as_str().unwrap() {
            "push" => {
                assert_eq!(m[1][0], "pipeline");
                assert_eq!(m[1][1], -1);
                assert_eq!(m[1][3][0]["type"], "Ping.sent");
                assert_eq!(m[1][3][0]["data"], json!({ "n": 7 }));
                call = true;
            }
            "pull" => {
                assert_eq!(m, json!(["pull", 1]));
                pulled = true;
            }
            _ => {
                assert_eq!((&m[0], &m[1]), (&json!("resolve"), &json!(2)));
                emitted = true;
            }
        }
    }
    send(&mut ws, json!(["resolve", 1, null])).await;
    assert_eq!(recv(&mut ws).await.unwrap(), json!(["release", 1, 1]));
    // A second connection is not disturbed by a broken one.
    let mut other = connect(&server, "/rpc").await;
    send(&mut ws, json!(["push", ["nonsense"]])).await;
    let abort = recv(&mut ws).await.unwrap();
    assert_eq!(abort[0], "abort");
    assert!(
        abort[1][2]
            .as_str()
            .unwrap()
            .contains("unknown special value")
    );
    assert!(
        recv(&mut ws).await.is_none(),
        "the server closes after an abort"
    );
    send(
        &mut other,
        json!([
            "push",
            [
                "pipeline",
                0,
                ["echo"],
                [["bigint", "123456789012345678901234567890"]]
            ]
        ]),
    )
    .await;
    send(&mut other, json!(["pull", 1])).await;
    assert_eq!(
        settled(&mut other, 1).await,
        json!(["resolve", 1, ["bigint", "123456789012345678901234567890"]])
    );
    // A binary frame is refused the same way.
    other
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(recv(&mut other).await.unwrap()[0], "abort");
    // And the server is fine.
    let res = client().get(server.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn acknowledged_rpc_writes_survive_kill_9() {
    let (_dir, state) = state_dir();
    let server = Server::start(&state, &[]);
    let ws = connect(&server, "/ledger/rpc").await;
    let (mut tx, mut rx) = ws.split();
    // Writes streamed without waiting (push ids 2, 3, …), killed mid-stream.
    let sender = tokio::spawn(async move {
        let first = json!(["push", ["pipeline", 0, ["things"], ["entries"]]]);
        tx.send(Message::Text(first.to_string().into())).await?;
        for i in 0..5_000 {
            let push =
                json!(["push", ["pipeline", 1, ["create"], [{ "id": format!("e{i}"), "n": i }]]]);
            tx.send(Message::Text(push.to_string().into())).await?;
            let pull = json!(["pull", i + 2]);
            tx.send(Message::Text(pull.to_string().into())).await?;
        }
        Ok::<_, tokio_tungstenite::tungstenite::Error>(())
    });
    let mut acked = Vec::new();
    while let Some(Ok(frame)) = rx.next().await {
        let Message::Text(t) = frame else { continue };
        let m: Value = serde_json::from_str(t.as_str()).unwrap();
        assert_eq!(m[0], "resolve", "{m}");
        acked.push(m[2]["id"].as_str().unwrap().to_string());
        if acked.len() == 300 {
            server.kill9();
        }
    }
    let _ = sender.await;
    assert!(acked.len() >= 300);
    let server = Server::start(&state, &[]);
    let mut ws = connect(&server, "/ledger/rpc").await;
    assert!(acked.len() < 1000, "one page holds them all");
    send(
        &mut ws,
        json!(["push", ["pipeline", 0, ["things"], ["entries"]]]),
    )
    .await;
    send(
        &mut ws,
        json!(["push", ["pipeline", 1, ["list"], [{ "limit": 1000 }]]]),
    )
    .await;
    send(&mut ws, json!(["pull", 2])).await;
    let m = settled(&mut ws, 2).await;
    let stored: std::collections::HashSet<String> = m[2]["items"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    for id in &acked {
        assert!(
            stored.contains(id),
            "{id} was acknowledged before the kill and is lost"
        );
    }
}
