//! Early writeback of WAL files for `normal` durability.
//!
//! In `normal` mode a commit only copies its WAL frames into the page cache; the kernel writes
//! them out when it chooses. Under a steady stream of writes across many objects that is
//! gigabytes of dirty pages, written out in one burst once the kernel's threshold is crossed,
//! and every checkpoint's fsync then waits behind the burst: throughput fell to a fifth for
//! seconds at a time. So every so many commits an object hands its WAL to this thread, which
//! syncs it in the background: the writing is spread out, the object never waits for it, and
//! a checkpoint finds little left to sync.
//!
//! Nothing waits for these syncs; durability in `normal` mode is unchanged.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

/// Writing commits of one object between two writebacks of its WAL (about 1 MB of frames
/// for small transactions).
pub(crate) const WRITEBACK_EVERY: u64 = 64;

/// Handle to the writeback thread; the thread ends when the last handle is dropped.
pub(crate) struct Writeback {
    tx: parking_lot::Mutex<mpsc::Sender<Arc<File>>>,
    syncs: Arc<AtomicU64>,
}

impl Writeback {
    pub(crate) fn start() -> std::io::Result<Arc<Writeback>> {
        let (tx, rx) = mpsc::channel::<Arc<File>>();
        let syncs = Arc::new(AtomicU64::new(0));
        let counter = syncs.clone();
        std::thread::Builder::new()
            .name("dotdo-writeback".into())
            .spawn(move || run(&rx, &counter))?;
        Ok(Arc::new(Writeback {
            tx: parking_lot::Mutex::new(tx),
            syncs,
        }))
    }

    /// Queues `file` to be written out; returns at once.
    pub(crate) fn request(&self, file: Arc<File>) {
        // A stopped thread only means the kernel writes the file out on its own.
        let _ = self.tx.lock().send(file);
    }

    /// WAL syncs made so far.
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

fn run(rx: &mpsc::Receiver<Arc<File>>, syncs: &AtomicU64) {
    while let Ok(first) = rx.recv() {
        // One sync per distinct file queued by now.
        let mut batch: HashMap<usize, Arc<File>> = HashMap::new();
        batch.insert(Arc::as_ptr(&first) as usize, first);
        while let Ok(more) = rx.try_recv() {
            batch.insert(Arc::as_ptr(&more) as usize, more);
        }
        for file in batch.into_values() {
            if let Err(e) = file.sync_data() {
                // Harmless for durability (a checkpoint syncs again), but worth knowing.
                tracing::warn!(error = %e, "background sync of a WAL failed");
            }
            syncs.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::{Duration, Instant};

    #[test]
    fn queued_files_are_synced_once_per_batch_and_the_caller_never_waits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal");
        let mut f = File::create(&path).expect("create");
        f.write_all(&[7u8; 8192]).expect("write");
        let file = Arc::new(File::open(&path).expect("open"));
        let wb = Writeback::start().expect("start");
        for _ in 0..3 {
            wb.request(file.clone());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while wb.syncs() == 0 {
            assert!(Instant::now() < deadline, "no sync happened");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert!((1..=3).contains(&wb.syncs()), "syncs: {}", wb.syncs());
    }
}
