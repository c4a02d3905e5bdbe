//! Group commit for `fsync` durability: one thread fsyncs WAL files on behalf of many turns.
//!
//! A turn's commit only writes its WAL frames (SQLite `synchronous=OFF`). Its reply is handed to
//! the flusher, which drains every request queued so far, fsyncs each distinct WAL once and
//! then releases all their replies. While it syncs, turns keep running and queue up for the
//! next round, so one fsync serves many turns and many objects.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;
use std::sync::mpsc;

type Done = Box<dyn FnOnce(std::io::Result<()>) + Send>;

struct Request {
    file: Arc<File>,
    done: Done,
}

/// Handle to the flusher thread; the thread ends when the last handle is dropped.
pub(crate) struct Flusher {
    tx: parking_lot::Mutex<mpsc::Sender<Request>>,
}

impl Flusher {
    pub(crate) fn start() -> std::io::Result<Arc<Flusher>> {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("dotdo-flusher".into())
            .spawn(move || run(rx))?;
        Ok(Arc::new(Flusher {
            tx: parking_lot::Mutex::new(tx),
        }))
    }

    /// Calls `done` once every write made to `file` before this call is on disk.
    pub(crate) fn request(&self, file: Arc<File>, done: Done) {
        if let Err(mpsc::SendError(req)) = self.tx.lock().send(Request { file, done }) {
            (req.done)(Err(std::io::Error::other("the flusher has stopped")));
        }
    }
}

fn run(rx: mpsc::Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        // One sync per distinct file in this batch; the outcome by file address.
        let mut outcome: HashMap<usize, Option<std::io::ErrorKind>> = HashMap::new();
        for req in &batch {
            outcome
                .entry(Arc::as_ptr(&req.file) as usize)
                .or_insert_with(|| match req.file.sync_data() {
                    Ok(()) => None,
                    Err(e) => {
                        tracing::error!(error = %e, "fsync of a WAL failed");
                        Some(e.kind())
                    }
                });
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
