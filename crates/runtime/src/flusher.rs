//! Group commit for `fsync` durability: one thread fsyncs WAL files on behalf of many turns.
//!
//! A turn's commit only writes its WAL frames (SQLite `synchronous=OFF`). Its reply is handed to
//! the flusher, which drains every request queued so far, fsyncs each distinct WAL once and
//! then releases all their replies. While it syncs, turns keep running and queue up for the
//! next round, so one fsync serves many turns and many objects.
//!
//! Each round first syncs the host catalog if it was written (its alarm index must be durable
//! no later than the objects' alarms), then the WALs.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use crate::catalog::Catalog;

/// Distinct WAL files in one batch from which one `syncfs` replaces per-file fsyncs.
const SYNCFS_FROM: usize = 4;

type Done = Box<dyn FnOnce(std::io::Result<()>) + Send>;

struct Request {
    file: Arc<File>,
    done: Done,
}

/// Handle to the flusher thread; the thread ends when the last handle is dropped.
pub(crate) struct Flusher {
    tx: parking_lot::Mutex<mpsc::Sender<Request>>,
    counters: Arc<Counters>,
}

/// How much work group commit saved: requests served, and syncs issued for them.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) syncs: AtomicU64,
}

impl Flusher {
    pub(crate) fn start(catalog: Arc<Catalog>) -> std::io::Result<Arc<Flusher>> {
        let (tx, rx) = mpsc::channel::<Request>();
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        std::thread::Builder::new()
            .name("dotdo-flusher".into())
            .spawn(move || run(rx, &c, &catalog))?;
        Ok(Arc::new(Flusher {
            tx: parking_lot::Mutex::new(tx),
            counters,
        }))
    }

    /// (requests served, syncs issued) so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.counters.requests.load(Ordering::Relaxed),
            self.counters.syncs.load(Ordering::Relaxed),
        )
    }

    /// Calls `done` once every write made to `file` before this call is on disk.
    pub(crate) fn request(&self, file: Arc<File>, done: Done) {
        if let Err(mpsc::SendError(req)) = self.tx.lock().send(Request { file, done }) {
            (req.done)(Err(std::io::Error::other("the flusher has stopped")));
        }
    }
}

fn run(rx: mpsc::Receiver<Request>, counters: &Counters, catalog: &Catalog) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        // One sync per distinct file in this batch; the outcome by file address. Past a few
        // files, one `syncfs` of the state's filesystem is cheaper than an fsync per file.
        let mut outcome: HashMap<usize, Option<std::io::ErrorKind>> = HashMap::new();
        let distinct: HashMap<usize, &Arc<File>> = batch
            .iter()
            .map(|r| (Arc::as_ptr(&r.file) as usize, &r.file))
            .collect();
        counters
            .requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let wide = distinct.len() >= SYNCFS_FROM;
        let syncs = if wide { 1 } else { distinct.len() };
        counters.syncs.fetch_add(syncs as u64, Ordering::Relaxed);
        if let Err(e) = catalog.sync_if_written() {
            tracing::error!(error = %e, "fsync of the catalog failed");
            for req in batch {
                (req.done)(Err(std::io::Error::new(e.kind(), "fsync failed")));
            }
            continue;
        }
        if wide {
            let result = rustix::fs::syncfs(&*batch[0].file).map_err(std::io::Error::from);
            let kind = result.err().map(|e| {
                tracing::error!(error = %e, "syncfs failed");
                e.kind()
            });
            outcome.extend(distinct.keys().map(|k| (*k, kind)));
        } else {
            for (key, file) in distinct {
                let kind = file.sync_data().err().map(|e| {
                    tracing::error!(error = %e, "fsync of a WAL failed");
                    e.kind()
                });
                outcome.insert(key, kind);
            }
        }
        for req in batch {
            match outcome.get(&(Arc::as_ptr(&req.file) as usize)) {
                Some(None) => (req.done)(Ok(())),
                Some(Some(kind)) => (req.done)(Err(std::io::Error::new(*kind, "fsync failed"))),
                None => (req.done)(Err(std::io::Error::other("fsync was skipped"))),
            }
        }
    }
}
