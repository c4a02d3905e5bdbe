//! The alarm scheduler: the earliest due alarm of every object on this host, active or not.
//!
//! Filled from the catalog at boot (so alarms that fell due while the server was down fire at
//! once) and kept current by every commit that changes an object's alarm slot.

use crate::clock::Clock;
use crate::host::{HostInner, ObjectKey};
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use tokio::sync::Notify;

#[derive(Default)]
struct Queue {
    by_time: BTreeSet<(i64, ObjectKey)>,
    by_key: HashMap<ObjectKey, i64>,
}

#[derive(Default)]
pub(crate) struct Alarms {
    queue: Mutex<Queue>,
    wake: Notify,
}

impl Alarms {
    /// Sets (or with `None` clears) the pending alarm of `key`.
    pub(crate) fn schedule(&self, key: &ObjectKey, at: Option<i64>) {
        let mut q = self.queue.lock();
        if let Some(old) = q.by_key.remove(key) {
            q.by_time.remove(&(old, key.clone()));
        }
        if let Some(at) = at {
            let earliest = q.by_time.first().is_none_or(|(first, _)| at < *first);
            q.by_time.insert((at, key.clone()));
            q.by_key.insert(key.clone(), at);
            drop(q);
            if earliest {
                self.wake.notify_one();
            }
        }
    }

    pub(crate) fn pending(&self) -> usize {
        self.queue.lock().by_key.len()
    }

    fn next_due(&self) -> Option<i64> {
        self.queue.lock().by_time.first().map(|(at, _)| *at)
    }

    fn take_due(&self, now: i64) -> Vec<(ObjectKey, i64)> {
        let mut q = self.queue.lock();
        let mut due = Vec::new();
        while let Some((at, _)) = q.by_time.first() {
            if *at > now {
                break;
            }
            if let Some((at, key)) = q.by_time.pop_first() {
                q.by_key.remove(&key);
                due.push((key, at));
            }
        }
        due
    }
}

/// Runs until the host is gone: sleeps until the earliest alarm, then delivers every due one.
pub(crate) async fn run(host: Weak<HostInner>, alarms: Arc<Alarms>, clock: Arc<dyn Clock>) {
    loop {
        let wake = alarms.wake.notified();
        match alarms.next_due() {
            None => wake.await,
            Some(at) => {
                tokio::select! {
                    _ = clock.sleep_until(at) => {}
                    _ = wake => {}
                }
            }
        }
        let Some(host) = host.upgrade() else { return };
        if host.is_shutting_down() {
            return;
        }
        for (key, at) in alarms.take_due(clock.now_ms()) {
            let host = host.clone();
            tokio::spawn(async move { host.fire_alarm(key, at).await });
        }
    }
}
