//! Turns: how one object runs its events, and the input and output gates around them.
//!
//! Each active object is one tokio task that owns its mailbox and the futures of its running
//! turns. Storage calls are synchronous, so while a turn uses storage nothing else of the object
//! runs (input gate). A turn yields only when it awaits something else (another object, a timer);
//! then other turns of the same object may run, as in Durable Objects, which is what lets a call
//! chain A→B→A complete.
//!
//! Every stretch of a turn between two awaits is a *segment*: it is committed when the turn
//! yields, and undone alone when the turn finishes with an error. A reply, and every call
//! leaving the object, is released only once the commits before it are durable (output gate):
//! at once in `normal` mode, after the group fsync in `fsync` mode.
//!
//! Turns that finish back to back share one commit: each finished turn's segment stays in the
//! open transaction (a savepoint made it undoable alone) and its result is *held*; the object's
//! task commits once nothing else is ready to run (or the batch is full), and then releases the
//! held results together. A hot object so writes its WAL once per batch instead of once per
//! request, and no reply leaves before the commit that holds its writes.

use crate::flusher::Flusher;
use crate::host::{HostInner, ObjectKey};
use crate::object::{DurableObject, ObjectError, ObjectState};
use crate::storage::ObjectStorage;
use crate::writeback::WRITEBACK_EVERY;
use dotdo_storage::{StorageError, SyncMode};
use futures::FutureExt;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

/// At most this many finished turns wait for one shared commit, so the first of them is not
/// held back for long under a steady stream of requests.
const MAX_HELD: usize = 64;

/// Delivers a turn's result once the output gate opens (with the commit's error if it failed).
pub(crate) type Deliver = Box<dyn FnOnce(Result<(), ObjectError>) + Send>;

/// The commit and release machinery of one active object.
pub(crate) struct Gate {
    pub(crate) key: ObjectKey,
    pub(crate) storage: ObjectStorage,
    pub(crate) host: Arc<HostInner>,
    sync: SyncMode,
    flusher: Option<Arc<Flusher>>,
    /// Writing commits so far, and how many of them are known to be on disk.
    committed: AtomicU64,
    flushed: Arc<AtomicU64>,
    /// Finished turns whose writes wait in the open transaction, with their own errors.
    held: Mutex<Vec<(Deliver, Option<ObjectError>)>>,
    /// Woken at every commit, for [`Gate::settled`].
    commits: tokio::sync::Notify,
}

pub(crate) type GateRef = Arc<Gate>;

/// Runs work that waits for the disk (a checkpoint's syncs) so that it holds up only its own
/// object: on the multi-threaded runtime the worker's other tasks move to another thread
/// meanwhile, since the server runs only as many workers as there are cores.
fn off_the_worker<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl Gate {
    pub(crate) fn new(
        key: ObjectKey,
        storage: ObjectStorage,
        host: Arc<HostInner>,
        sync: SyncMode,
        flusher: Option<Arc<Flusher>>,
    ) -> GateRef {
        Arc::new(Gate {
            key,
            storage,
            host,
            sync,
            flusher,
            committed: AtomicU64::new(0),
            flushed: Arc::new(AtomicU64::new(0)),
            commits: tokio::sync::Notify::new(),
            held: Mutex::new(Vec::new()),
        })
    }

    /// Starts a segment of a turn (see [`Storage::begin_segment`]).
    fn begin_segment(&self) -> Result<(), StorageError> {
        self.storage.with(|s| s.begin_segment())
    }

    /// True if the running segment wrote anything.
    fn segment_wrote(&self) -> bool {
        self.storage.with(|s| Ok(s.segment_wrote())).unwrap_or(true)
    }

    /// Ends a segment of a turn: keeps its writes for the next commit, or undoes them alone.
    fn end_segment(&self, success: bool) -> Result<(), StorageError> {
        self.storage.with(|s| {
            if success {
                s.end_segment()
            } else {
                s.rollback_segment();
                Ok(())
            }
        })
    }

    /// Holds a finished turn's result until the commit of its writes; commits at once when
    /// the batch is full or the transaction was lost.
    fn hold(&self, deliver: Deliver, error: Option<ObjectError>) {
        let full = {
            let mut held = self.held.lock();
            held.push((deliver, error));
            held.len() >= MAX_HELD
        };
        let aborted = self.storage.with(|s| Ok(s.is_aborted())).unwrap_or(true);
        if full || aborted {
            let _ = self.commit();
        }
    }

    /// True if finished turns wait for a commit.
    pub(crate) fn has_held(&self) -> bool {
        self.held() > 0
    }

    /// Waits until the finished turns waiting now have been committed (at once if none).
    pub(crate) async fn settled(&self) {
        let next = self.commits.notified();
        tokio::pin!(next);
        next.as_mut().enable();
        if self.has_held() {
            next.await;
        }
    }

    /// How many finished turns wait for a commit.
    pub(crate) fn held(&self) -> usize {
        self.held.lock().len()
    }

    /// Commits the open transaction, keeps the alarm index in step with the object's alarm
    /// slot, and releases the held results through the output gate (with the commit's error
    /// if it failed, since their writes are then gone).
    pub(crate) fn commit(&self) -> Result<(), ObjectError> {
        let committed = self.commit_transaction().map_err(ObjectError::from);
        self.commits.notify_waiters();
        let held = std::mem::take(&mut *self.held.lock());
        self.host
            .committed_results
            .fetch_add(held.len() as u64, Ordering::Relaxed);
        if !held.is_empty() {
            let failure = committed.as_ref().err().cloned();
            self.release(Box::new(move |gate| {
                for (deliver, error) in held {
                    match error.or_else(|| failure.clone()) {
                        Some(e) => deliver(Err(e)),
                        None => deliver(gate.clone()),
                    }
                }
            }));
        }
        committed
    }

    fn commit_transaction(&self) -> Result<(), StorageError> {
        let mut alarm_update = None;
        self.storage.with(|s| {
            if s.take_alarm_changed() {
                let at = s.get_alarm()?;
                // Index first: after a crash the index may hold an alarm the object dropped
                // (harmless), never the other way round.
                self.host
                    .catalog
                    .set_alarm(&self.key, at)
                    .map_err(StorageError::Internal)
                    .inspect_err(|_| s.rollback())?;
                alarm_update = Some(at);
            }
            let wrote = s.commit()?;
            if wrote {
                self.host.commits.fetch_add(1, Ordering::Relaxed);
                let n = self.committed.fetch_add(1, Ordering::AcqRel) + 1;
                if s.checkpoint_due() {
                    off_the_worker(|| s.checkpoint())?;
                }
                // The commit stands whatever happens here: the writeback is only a help.
                if let Some(wb) = &self.host.writeback
                    && n.is_multiple_of(WRITEBACK_EVERY)
                    && let Ok(wal) = s.wal_file()
                {
                    wb.request(wal);
                }
            }
            Ok(())
        })?;
        if let Some(at) = alarm_update {
            self.host.alarms.schedule(&self.key, at);
        }
        Ok(())
    }

    /// Calls `deliver` once every commit made so far by this object is durable.
    pub(crate) fn release(&self, deliver: Deliver) {
        let target = self.committed.load(Ordering::Acquire);
        let Some(flusher) = &self.flusher else {
            return deliver(Ok(()));
        };
        if self.sync != SyncMode::Deferred
            || (self.flushed.load(Ordering::Acquire) >= target && !self.host.catalog.is_unsynced())
        {
            return deliver(Ok(()));
        }
        let file = match self.storage.with(|s| s.wal_file()) {
            Ok(f) => f,
            Err(e) => return deliver(Err(e.into())),
        };
        let flushed = self.flushed.clone();
        flusher.request(
            file,
            Box::new(move |res| match res {
                Ok(()) => {
                    flushed.fetch_max(target, Ordering::AcqRel);
                    deliver(Ok(()));
                }
                Err(e) => {
                    tracing::error!(error = %e, "group commit failed");
                    deliver(Err(ObjectError::internal(
                        "the write could not be made durable",
                    )));
                }
            }),
        );
    }

    /// Commits the current segment and waits until it is durable: used before a message leaves
    /// the object.
    pub(crate) async fn barrier(&self) -> Result<(), ObjectError> {
        self.commit()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.release(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        rx.await
            .unwrap_or_else(|_| Err(ObjectError::internal("the flusher stopped")))
    }
}

/// What a finished turn hands back: whether to commit, and how to deliver its result once the
/// output gate opens (with the commit's own error if committing failed).
pub(crate) struct TurnOutcome {
    pub(crate) success: bool,
    pub(crate) deliver: Deliver,
}

/// A message for an object: starts a turn, or fails without one.
pub(crate) trait Envelope: Send {
    fn start(
        self: Box<Self>,
        object: Arc<dyn DurableObject>,
        state: ObjectState,
    ) -> BoxFuture<'static, TurnOutcome>;
    fn fail(self: Box<Self>, err: ObjectError);
}

/// An envelope made of a closure that runs the turn and a channel for its result.
pub(crate) struct Job<F, T> {
    pub(crate) run: F,
    pub(crate) reply: tokio::sync::oneshot::Sender<Result<T, ObjectError>>,
}

impl<F, T> Envelope for Job<F, T>
where
    F: FnOnce(Arc<dyn DurableObject>, ObjectState) -> BoxFuture<'static, Result<T, ObjectError>>
        + Send
        + 'static,
    T: Send + 'static,
{
    fn start(
        self: Box<Self>,
        object: Arc<dyn DurableObject>,
        state: ObjectState,
    ) -> BoxFuture<'static, TurnOutcome> {
        let this = *self;
        let fut = (this.run)(object, state);
        let reply = this.reply;
        Box::pin(async move {
            let result = fut.await;
            TurnOutcome {
                success: result.is_ok(),
                deliver: Box::new(move |committed| {
                    let _ = reply.send(committed.and(result));
                }),
            }
        })
    }

    fn fail(self: Box<Self>, err: ObjectError) {
        let _ = self.reply.send(Err(err));
    }
}

/// One running turn: commits at every yield, and at the end commits or rolls back and releases
/// its result through the output gate. A panic fails the turn instead of the object.
pub(crate) struct Turn {
    fut: BoxFuture<'static, std::thread::Result<TurnOutcome>>,
    gate: GateRef,
    /// A commit at a yield point failed; the turn's result becomes this error.
    failed: Option<ObjectError>,
}

impl Turn {
    pub(crate) fn new(fut: BoxFuture<'static, TurnOutcome>, gate: GateRef) -> Turn {
        Turn {
            fut: AssertUnwindSafe(fut).catch_unwind().boxed(),
            gate,
            failed: None,
        }
    }
}

impl Future for Turn {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if let Err(e) = this.gate.begin_segment() {
            this.failed.get_or_insert(e.into());
        }
        match this.fut.as_mut().poll(cx) {
            Poll::Pending => {
                // The turn waits for something else: its writes so far are committed (and the
                // held results of earlier turns released with them). A segment that wrote
                // nothing leaves the held results to the object's next shared commit, so a
                // turn that wakes often to look for work does not split the batches.
                let wrote = this.gate.segment_wrote();
                let ended = this.gate.end_segment(true);
                if let Err(e) = ended
                    .map_err(ObjectError::from)
                    .and_then(|()| if wrote { this.gate.commit() } else { Ok(()) })
                {
                    this.failed.get_or_insert(e);
                }
                Poll::Pending
            }
            Poll::Ready(Ok(outcome)) => {
                let success = outcome.success && this.failed.is_none();
                let ended = this.gate.end_segment(success).map_err(ObjectError::from);
                let error = this.failed.take().or(ended.err());
                this.gate.hold(outcome.deliver, error);
                Poll::Ready(())
            }
            Poll::Ready(Err(panic)) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(object = %this.gate.key, panic = %msg, "a turn panicked");
                let _ = this.gate.end_segment(false);
                // The turn's result channel was dropped with the future: its caller sees an
                // internal error.
                Poll::Ready(())
            }
        }
    }
}
