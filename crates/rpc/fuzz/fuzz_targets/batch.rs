//! Whole sessions on arbitrary input: each input is one HTTP batch against a target with
//! methods, stubs and errors. The session answers or aborts; it never panics or hangs.
#![no_main]
use dotdo_rpc::{
    Args, RpcError, RpcResult, RpcTarget, RpcValue, SessionLimits, Stub, async_trait, serve_batch,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::Duration;

struct Api;

#[async_trait]
impl RpcTarget for Api {
    async fn call(&self, method: &str, args: Vec<RpcValue>) -> RpcResult {
        let a = Args::new(method, args);
        match method {
            "echo" => Ok(a.value(0)),
            "stub" => Ok(RpcValue::Stub(Stub::new(Api))),
            "call" => a.stub(0, "f")?.invoke(vec![a.value(1)]).await,
            "fail" => Err(RpcError::type_error("bad")),
            "list" => Ok(RpcValue::Array(vec![
                RpcValue::str("a"),
                RpcValue::Stub(Stub::new(Api)),
            ])),
            _ => Err(RpcError::not_a_function(method)),
        }
    }

    async fn get(&self, property: &str) -> RpcResult {
        Ok(match property {
            "self" => RpcValue::Stub(Stub::new(Api)),
            "n" => RpcValue::number(1.0),
            _ => RpcValue::Undefined,
        })
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = SessionLimits {
        max_exports: 1000,
        max_imports: 100,
        max_message_bytes: 1 << 16,
    };
    runtime().block_on(async {
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            serve_batch(Stub::new(Api), text, limits),
        )
        .await;
        // Every method of the target returns at once, so a batch that does not end is a bug.
        let reply = reply.expect("the batch ended");
        for line in reply.split('\n').filter(|l| !l.is_empty()) {
            serde_json::from_str::<serde_json::Value>(line).expect("every reply line is JSON");
        }
        // Calls nobody pulled finish soon after; then nothing of the session is left.
        for _ in 0..10_000 {
            if dotdo_rpc::live_sessions() == 0 {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("a session outlived its batch and all its calls");
    });
});
