//! One Cap'n Web session: the import and export tables, message handling in arrival order,
//! and calls to the peer's stubs. Transports feed it text messages and send what it emits.
//!
//! IDs: each `push` (or `stream`) from the peer takes the next positive export id; stubs we
//! send take negative export ids (-1, -2, …); our own pushes take positive import ids. An
//! export lives until the peer releases every reference it was sent.

use crate::codec::{self, Exporter, Message, ProtocolError, Resolver, bad};
use crate::eval::{Base, Expr, SharedResult, apply, eval, eval_all, poll_once, resolve_base};
use crate::stub::{RpcResult, Stub, StubHook};
use crate::value::{RpcError, RpcValue};
use futures::FutureExt;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use tokio::sync::{Notify, mpsc, oneshot};

/// How a session reaches its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One HTTP request: the peer cannot answer calls, so the server never calls it.
    Batch,
    /// A long-lived socket: both sides call each other.
    WebSocket,
}

/// Bounds on what one peer can make a session hold.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// Exports (results of pushes and stubs sent) alive at once. Clients never release
    /// intermediate results they did not await, so this is generous.
    pub max_exports: usize,
    /// Imports (the peer's stubs and promises) alive at once.
    pub max_imports: usize,
    /// Largest message, in bytes.
    pub max_message_bytes: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_exports: 100_000,
            max_imports: 10_000,
            max_message_bytes: 8 * 1024 * 1024,
        }
    }
}

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);
static LIVE_SESSIONS: AtomicUsize = AtomicUsize::new(0);

/// Sessions whose state is still in memory (ended sessions leave once their last task is
/// done), for metrics and leak checks.
pub fn live_sessions() -> usize {
    LIVE_SESSIONS.load(Ordering::Relaxed)
}

/// A session. Cloning gives another handle on the same session.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    transport: Transport,
    limits: SessionLimits,
    state: Mutex<State>,
    out: mpsc::UnboundedSender<String>,
    /// Imports whose last stub was dropped; their releases go out at the next flush. (A stub
    /// can be dropped while the state is locked, so dropping never takes that lock.)
    dropped: Mutex<Vec<i64>>,
    /// Pulls not answered yet, for the end of a batch.
    open_pulls: AtomicUsize,
    pulls_done: Notify,
}

struct Export {
    state: Exported,
    refcount: u64,
}

enum Exported {
    /// A stub we sent, or a push's result.
    Settled(RpcResult),
    /// A push still running in its task. The promise is made only when a later message
    /// refers to the result (pipelining on it); the task settles it.
    Running(Option<SharedResult>),
}

impl Export {
    fn settled(result: RpcResult) -> Export {
        Export {
            state: Exported::Settled(result),
            refcount: 1,
        }
    }
}

enum Import {
    /// The peer's stub; `refcount` is how many times the peer sent it.
    Stub {
        hook: Weak<RemoteHook>,
        refcount: u64,
    },
    /// A result the peer will settle: our push, or a promise it sent.
    Pending(oneshot::Sender<RpcResult>),
}

struct State {
    session: u64,
    exports: HashMap<i64, Export>,
    next_push: i64,
    next_export: i64,
    imports: HashMap<i64, Import>,
    next_import: i64,
    /// Per export, the delivery signal of the last call made on it (calls start in order).
    delivered: HashMap<i64, oneshot::Receiver<()>>,
    /// Pulls of pushes still running, answered by the task that runs the push; each flag
    /// is whether to release the export then (a `stream`).
    pulls: HashMap<i64, Vec<bool>>,
    /// Promises of pushes still running that later messages refer to, settled by the task
    /// that runs the push (even if the export is released before).
    waiters: HashMap<i64, oneshot::Sender<RpcResult>>,
    closed: Option<RpcError>,
}

impl Session {
    /// A session whose export 0 is `main`. Messages to send come out of the receiver.
    pub fn new(
        main: Stub,
        transport: Transport,
        limits: SessionLimits,
    ) -> (Session, mpsc::UnboundedReceiver<String>) {
        let (out, rx) = mpsc::unbounded_channel();
        let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        let mut exports = HashMap::new();
        exports.insert(0, Export::settled(Ok(RpcValue::Stub(main))));
        let state = State {
            session: id,
            exports,
            next_push: 1,
            next_export: -1,
            imports: HashMap::new(),
            next_import: 1,
            delivered: HashMap::new(),
            pulls: HashMap::new(),
            waiters: HashMap::new(),
            closed: None,
        };
        LIVE_SESSIONS.fetch_add(1, Ordering::Relaxed);
        let inner = Arc::new(Inner {
            id,
            transport,
            limits,
            state: Mutex::new(state),
            out,
            dropped: Mutex::new(Vec::new()),
            open_pulls: AtomicUsize::new(0),
            pulls_done: Notify::new(),
        });
        (Session { inner }, rx)
    }

    pub fn limits(&self) -> &SessionLimits {
        &self.inner.limits
    }

    /// Handles one message from the peer. An error means the peer broke the protocol: the
    /// transport should send [`Session::abort`]'s message and hang up.
    pub fn receive(&self, text: &str) -> Result<(), ProtocolError> {
        if text.len() > self.inner.limits.max_message_bytes {
            return Err(bad(format!(
                "a message is at most {} bytes",
                self.inner.limits.max_message_bytes
            )));
        }
        let msg = codec::parse_message(text)?;
        let result = self.handle(msg);
        self.inner.flush_releases();
        result
    }

    fn handle(&self, msg: Message) -> Result<(), ProtocolError> {
        let inner = &self.inner;
        let mut st = inner.state.lock();
        if st.closed.is_some() {
            return Ok(());
        }
        match msg {
            Message::Push(v) => {
                let (id, run) = inner.push(&mut st, v)?;
                drop(st);
                inner.start(id, run);
            }
            Message::Stream(v) => {
                let (id, run) = inner.push(&mut st, v)?;
                drop(st);
                inner.start(id, run);
                let mut st = inner.state.lock();
                let leftover = inner.pull(&mut st, id, true)?;
                drop(st);
                drop(leftover);
            }
            Message::Pull(id) => {
                let leftover = inner.pull(&mut st, id, false)?;
                drop(st);
                drop(leftover);
            }
            Message::Resolve(id, v) => inner.settle(&mut st, id, Ok(v))?,
            Message::Reject(id, v) => inner.settle(&mut st, id, Err(v))?,
            Message::Release(id, n) => {
                let gone = inner.release(&mut st, id, n)?;
                drop(st);
                drop(gone);
            }
            Message::Abort(v) => {
                let e = codec::decode_error(&v);
                drop(st);
                self.close(RpcError::new(
                    e.name,
                    format!("the peer aborted: {}", e.message),
                ));
            }
        }
        Ok(())
    }

    /// Ends the session for a protocol error: returns the `abort` message to send.
    pub fn abort(&self, e: &ProtocolError) -> String {
        let err = RpcError::error(e.to_string());
        let msg = json!(["abort", codec::encode_error(&err)]).to_string();
        self.close(err);
        msg
    }

    /// Ends the session: pending calls to the peer fail, and every export is dropped.
    pub fn close(&self, reason: RpcError) {
        let (exports, imports) = {
            let mut st = self.inner.state.lock();
            if st.closed.is_some() {
                return;
            }
            st.closed = Some(reason.clone());
            st.delivered.clear();
            (
                std::mem::take(&mut st.exports),
                std::mem::take(&mut st.imports),
            )
        };
        for (_, import) in imports {
            if let Import::Pending(tx) = import {
                let _ = tx.send(Err(reason.clone()));
            }
        }
        drop(exports);
    }

    /// Fails every result the peer has yet to settle.
    fn fail_pending(&self, reason: RpcError) {
        let pending: Vec<_> = {
            let mut st = self.inner.state.lock();
            let ids: Vec<i64> = st
                .imports
                .iter()
                .filter(|(_, i)| matches!(i, Import::Pending(_)))
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| st.imports.remove(&id))
                .collect()
        };
        for import in pending {
            if let Import::Pending(tx) = import {
                let _ = tx.send(Err(reason.clone()));
            }
        }
    }

    /// Waits until every pull has been answered (the end of a batch).
    pub async fn drained(&self) {
        loop {
            let notified = self.inner.pulls_done.notified();
            if self.inner.open_pulls.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Exports alive now (for tests and metrics).
    pub fn export_count(&self) -> usize {
        self.inner.state.lock().exports.len()
    }

    /// Imports alive now (for tests and metrics).
    pub fn import_count(&self) -> usize {
        self.inner.state.lock().imports.len()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        LIVE_SESSIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Inner {
    fn send(&self, msg: Value) {
        let _ = self.out.send(msg.to_string());
    }

    /// Numbers and decodes a push; the returned future is its run, started by
    /// [`Inner::start`] once the state is unlocked.
    fn push(
        self: &Arc<Self>,
        st: &mut State,
        v: Value,
    ) -> Result<(i64, BoxFuture<'static, RpcResult>), ProtocolError> {
        if st.exports.len() >= self.limits.max_exports {
            return Err(bad(format!(
                "too many unreleased results ({}); release stubs or start a new session",
                self.limits.max_exports
            )));
        }
        let id = st.next_push;
        st.next_push += 1;
        // Calls on one export start in the order they arrive.
        let order = order_key(&v);
        let expr = codec::decode(v, &mut Scope { inner: self, st })?;
        let ticket = order.map(|key| {
            let (tx, rx) = oneshot::channel();
            (st.delivered.insert(key, rx), tx)
        });
        Ok((id, Box::pin(run_push(expr, ticket))))
    }

    /// Starts push `id`: it runs at once as far as it can (a call on a settled target, like
    /// most, finishes here), and a task drives the rest and answers its pull. Every push runs,
    /// pulled or not.
    ///
    /// A push that finishes at once leaves its result as export `id`, and so does one that
    /// finishes later, in its task.
    fn start(self: &Arc<Self>, id: i64, mut run: BoxFuture<'static, RpcResult>) {
        let done = (&mut run).now_or_never();
        let running = done.is_none();
        let state = match done {
            Some(result) => Exported::Settled(result),
            None => Exported::Running(None),
        };
        let export = Export { state, refcount: 1 };
        let mut st = self.state.lock();
        if st.closed.is_some() {
            drop(st);
            drop(export);
        } else {
            st.exports.insert(id, export);
            drop(st);
        }
        // The task starts once the export is there for it to settle.
        if running {
            let me = self.clone();
            tokio::spawn(async move {
                let result = run.await;
                me.ran(id, result);
                me.flush_releases();
            });
        }
    }

    /// A pull of export `id`: answered now if its result is settled, else by the task
    /// running its push, once it is. Returns what to drop once the state is unlocked.
    fn pull(
        &self,
        st: &mut State,
        id: i64,
        release: bool,
    ) -> Result<(Option<RpcResult>, Option<Export>), ProtocolError> {
        let result = match st.exports.get(&id).map(|e| &e.state) {
            Some(Exported::Settled(result)) => result.clone(),
            Some(Exported::Running(_)) => {
                st.pulls.entry(id).or_default().push(release);
                self.open_pulls.fetch_add(1, Ordering::AcqRel);
                return Ok((None, None));
            }
            None => return Err(bad(format!("pull of unknown export {id}"))),
        };
        let gone = self.answer(st, id, &result, release);
        Ok((Some(result), gone))
    }

    /// Push `id` finished in its task: answers its pull if one is waiting, settles the
    /// promise later messages wait on, and leaves the result as the export.
    fn ran(&self, id: i64, result: RpcResult) {
        let mut st = self.state.lock();
        let pulls = st.pulls.remove(&id).unwrap_or_default();
        let gone: Vec<Export> = pulls
            .iter()
            .filter_map(|release| self.answer(&mut st, id, &result, *release))
            .collect();
        if let Some(waiter) = st.waiters.remove(&id) {
            let _ = waiter.send(result.clone());
        }
        let left = match st.exports.get_mut(&id) {
            Some(e) => Some(std::mem::replace(&mut e.state, Exported::Settled(result))),
            None => {
                drop(result);
                None
            }
        };
        drop(st);
        drop((gone, left));
        if !pulls.is_empty()
            && self.open_pulls.fetch_sub(pulls.len(), Ordering::AcqRel) == pulls.len()
        {
            self.pulls_done.notify_waiters();
        }
    }

    /// Sends the settlement of export `id`. Returns the export when `release` removed it,
    /// for the caller to drop once the state is unlocked.
    fn answer(&self, st: &mut State, id: i64, result: &RpcResult, release: bool) -> Option<Export> {
        if st.closed.is_some() {
            return None;
        }
        let msg = match result {
            Ok(v) => codec::resolve_text(id, v, st),
            Err(e) => json!(["reject", id, codec::encode_error(e)]).to_string(),
        };
        let _ = self.out.send(msg);
        if !release {
            return None;
        }
        st.delivered.remove(&id);
        st.exports.remove(&id)
    }

    /// The peer settles one of our imports (a call we made, or a promise it sent).
    fn settle(
        self: &Arc<Self>,
        st: &mut State,
        id: i64,
        v: Result<Value, Value>,
    ) -> Result<(), ProtocolError> {
        let Some(Import::Pending(tx)) = st.imports.remove(&id) else {
            return Err(bad(format!("settlement of unknown import {id}")));
        };
        self.send(json!(["release", id, 1]));
        match v {
            Ok(v) => {
                let expr = codec::decode(v, &mut Scope { inner: self, st })?;
                tokio::spawn(async move {
                    let _ = tx.send(eval(&expr, None).await);
                });
            }
            Err(e) => {
                let _ = tx.send(Err(codec::decode_error(&e)));
            }
        }
        Ok(())
    }

    fn release(&self, st: &mut State, id: i64, n: u32) -> Result<Option<Export>, ProtocolError> {
        let e = st
            .exports
            .get_mut(&id)
            .ok_or_else(|| bad(format!("release of unknown export {id}")))?;
        e.refcount = e
            .refcount
            .checked_sub(u64::from(n))
            .ok_or_else(|| bad(format!("export {id} released more times than it was sent")))?;
        if e.refcount > 0 {
            return Ok(None);
        }
        st.delivered.remove(&id);
        Ok(st.exports.remove(&id))
    }

    /// Sends `release` for imports whose stubs were all dropped.
    fn flush_releases(&self) {
        let ids = std::mem::take(&mut *self.dropped.lock());
        if ids.is_empty() {
            return;
        }
        let mut st = self.state.lock();
        for id in ids {
            if let Some(Import::Stub { hook, refcount }) = st.imports.get(&id)
                && hook.strong_count() == 0
            {
                let n = *refcount;
                st.imports.remove(&id);
                if st.closed.is_none() {
                    self.send(json!(["release", id, n]));
                }
            }
        }
    }

    /// Calls the peer's export `target` at `path` (a call when `args` is set).
    async fn call_peer(
        self: Arc<Self>,
        target: i64,
        path: Vec<String>,
        args: Option<Vec<RpcValue>>,
    ) -> RpcResult {
        if self.transport == Transport::Batch {
            return Err(RpcError::error(
                "the server cannot call the client in an HTTP batch session; use a WebSocket session",
            ));
        }
        let rx = {
            let mut st = self.state.lock();
            if let Some(e) = &st.closed {
                return Err(e.clone());
            }
            if st.imports.len() >= self.limits.max_imports {
                return Err(RpcError::error("too many calls to the client in flight"));
            }
            let id = st.next_import;
            st.next_import += 1;
            let mut expr = vec![json!("pipeline"), json!(target), json!(path)];
            if let Some(args) = &args {
                expr.push(Value::Array(
                    args.iter().map(|a| codec::encode(a, &mut *st)).collect(),
                ));
            }
            let (tx, rx) = oneshot::channel();
            st.imports.insert(id, Import::Pending(tx));
            self.send(json!(["push", expr]));
            self.send(json!(["pull", id]));
            rx
        };
        rx.await
            .unwrap_or_else(|_| Err(RpcError::error("the RPC session ended")))
    }
}

/// The export a top-level call or property read is made on, if it is one: they start in
/// order on each export.
fn order_key(v: &Value) -> Option<i64> {
    let parts = v.as_array()?;
    match parts.first()?.as_str()? {
        "pipeline" | "import" if parts.len() >= 3 => parts[1].as_i64(),
        _ => None,
    }
}

type Ticket = (Option<oneshot::Receiver<()>>, oneshot::Sender<()>);

/// Runs a push. A call waits for its target and arguments, then for the previous call on the
/// same target to have started, then starts; dropping the ticket lets the next one start.
async fn run_push(expr: Expr, ticket: Option<Ticket>) -> RpcResult {
    let Some((previous, started)) = ticket else {
        return eval(&expr, None).await;
    };
    let (base, path, args) = match expr {
        Expr::Ref { base, path, args } => (base, path, args),
        other => return eval(&other, None).await,
    };
    let target = resolve_base(&base, None).await?;
    let args = match args {
        // Literal arguments (most are) are moved, not copied.
        Some(a) if a.iter().all(|e| matches!(e, Expr::Lit(_))) => {
            Some(a.into_iter().map(Expr::into_literal).collect())
        }
        Some(a) => Some(eval_all(&a, None).await?),
        None => None,
    };
    if let Some(previous) = previous {
        let _ = previous.await;
    }
    let mut call = apply(target, path, args);
    let first = poll_once(&mut call).await;
    drop(started);
    match first {
        Some(r) => r,
        None => call.await,
    }
}

/// Decoding within the session: ids resolve against its tables.
struct Scope<'a> {
    inner: &'a Arc<Inner>,
    st: &'a mut State,
}

impl Resolver for Scope<'_> {
    fn export(&mut self, id: i64) -> Result<Base, ProtocolError> {
        let State {
            exports, waiters, ..
        } = &mut *self.st;
        let e = exports
            .get_mut(&id)
            .ok_or_else(|| bad(format!("no export {id}")))?;
        Ok(match &mut e.state {
            Exported::Settled(Ok(v)) => Base::Value(v.clone()),
            Exported::Settled(Err(e)) => Base::Failed(e.clone()),
            Exported::Running(promise) => Base::Promise(
                promise
                    .get_or_insert_with(|| {
                        let (tx, rx) = oneshot::channel();
                        waiters.insert(id, tx);
                        ended_or(rx)
                    })
                    .clone(),
            ),
        })
    }

    fn import_stub(&mut self, id: i64) -> Result<Stub, ProtocolError> {
        if let Some(Import::Stub { hook, refcount }) = self.st.imports.get_mut(&id) {
            *refcount += 1;
            if let Some(h) = hook.upgrade() {
                return Ok(Stub(h));
            }
            // The last stub was dropped but its release is not sent yet: a new hook takes
            // over the count.
            let h = RemoteHook::new(self.inner, id);
            *hook = Arc::downgrade(&h);
            return Ok(Stub(h));
        }
        if self.st.imports.contains_key(&id) {
            return Err(bad(format!("import {id} is a promise, not a stub")));
        }
        if self.st.imports.len() >= self.inner.limits.max_imports {
            return Err(bad("too many stubs from the peer"));
        }
        let h = RemoteHook::new(self.inner, id);
        self.st.imports.insert(
            id,
            Import::Stub {
                hook: Arc::downgrade(&h),
                refcount: 1,
            },
        );
        Ok(Stub(h))
    }

    fn import_promise(&mut self, id: i64) -> Result<Expr, ProtocolError> {
        if self.st.imports.contains_key(&id) {
            return Err(bad(format!("promise {id} was already sent")));
        }
        if self.st.imports.len() >= self.inner.limits.max_imports {
            return Err(bad("too many promises from the peer"));
        }
        let (tx, rx) = oneshot::channel();
        self.st.imports.insert(id, Import::Pending(tx));
        Ok(Expr::Promise(ended_or(rx)))
    }
}

/// A promise of what `rx` receives, or of an error if the session ends first.
fn ended_or(rx: oneshot::Receiver<RpcResult>) -> SharedResult {
    let fut: BoxFuture<'static, RpcResult> = Box::pin(async move {
        rx.await
            .unwrap_or_else(|_| Err(RpcError::error("the RPC session ended")))
    });
    fut.shared()
}

impl Exporter for State {
    fn export_stub(&mut self, stub: &Stub) -> Value {
        if let Some((session, id)) = stub.import_of()
            && session == self.session
        {
            return json!(["import", id]);
        }
        let id = self.next_export;
        self.next_export -= 1;
        self.exports
            .insert(id, Export::settled(Ok(RpcValue::Stub(stub.clone()))));
        json!(["export", id])
    }
}

/// A stub the peer exported to us. Dropping the last clone queues its release.
struct RemoteHook {
    session: Weak<Inner>,
    session_id: u64,
    id: i64,
}

impl RemoteHook {
    fn new(inner: &Arc<Inner>, id: i64) -> Arc<RemoteHook> {
        Arc::new(RemoteHook {
            session: Arc::downgrade(inner),
            session_id: inner.id,
            id,
        })
    }

    fn call_with(
        &self,
        path: Vec<String>,
        args: Option<Vec<RpcValue>>,
    ) -> BoxFuture<'static, RpcResult> {
        let session = self.session.upgrade();
        let id = self.id;
        Box::pin(async move {
            match session {
                Some(s) => s.call_peer(id, path, args).await,
                None => Err(RpcError::error("the RPC session ended")),
            }
        })
    }
}

impl StubHook for RemoteHook {
    fn call(&self, path: Vec<String>, args: Vec<RpcValue>) -> BoxFuture<'static, RpcResult> {
        self.call_with(path, Some(args))
    }

    fn get(&self, path: Vec<String>) -> BoxFuture<'static, RpcResult> {
        self.call_with(path, None)
    }

    fn import_of(&self) -> Option<(u64, i64)> {
        Some((self.session_id, self.id))
    }
}

impl Drop for RemoteHook {
    fn drop(&mut self) {
        if let Some(s) = self.session.upgrade() {
            s.dropped.lock().push(self.id);
        }
    }
}

/// Serves one HTTP batch: `body` holds newline-separated messages; the reply is the messages
/// to send back, joined by newlines. Calls the client never pulled keep running afterwards.
pub async fn serve_batch(main: Stub, body: &str, limits: SessionLimits) -> String {
    let (session, mut out) = Session::new(main, Transport::Batch, limits);
    let mut aborted = None;
    for line in body.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if let Err(e) = session.receive(line) {
            aborted = Some(session.abort(&e));
            break;
        }
    }
    if aborted.is_none() {
        // Nothing more can arrive: promises the client sent but did not settle never will.
        session.fail_pending(RpcError::error(
            "the client did not settle this promise within the batch",
        ));
        session.drained().await;
    }
    session.close(RpcError::error("Batch RPC request ended."));
    let mut lines = Vec::new();
    while let Ok(m) = out.try_recv() {
        lines.push(m);
    }
    lines.extend(aborted);
    lines.join("\n")
}
