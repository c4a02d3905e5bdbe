//! The host: activates objects on demand, routes events into their mailboxes, evicts idle and
//! least recently used objects, fires alarms and shuts down gracefully.

use crate::alarms::{self, Alarms};
use crate::catalog::{Catalog, CatalogEntry, CatalogSync};
use crate::clock::{Clock, SystemClock};
use crate::flusher::Flusher;
use crate::id::{ObjectId, valid_name, valid_namespace};
use crate::object::{
    AlarmInfo, DurableObject, ErrorKind, ObjectClass, ObjectError, ObjectState, Request, Response,
};
use crate::storage::ObjectStorage;
use crate::stub::Stub;
use crate::turn::{Envelope, Gate, Job, Turn};
use crate::writeback::Writeback;
use dotdo_storage::{Storage, StorageError, StorageOptions, SyncMode};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// How long an idle object stays in memory by default (SPEC §1).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Alarm retries: first after this long, doubling each time.
pub const ALARM_RETRY_BASE_MS: i64 = 2_000;
/// Alarm retries before the alarm is abandoned.
pub const ALARM_MAX_RETRIES: u32 = 6;

const SHARDS: usize = 64;

/// How durable a commit is before its reply leaves (see the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// WAL with `synchronous=NORMAL`: survives a process crash.
    #[default]
    Normal,
    /// Survives power loss: replies wait for an fsync shared by all turns committed meanwhile.
    Fsync,
    /// One fsync per commit, as most systems do; kept to measure group commit against.
    FsyncEach,
}

impl Durability {
    fn sync_mode(self) -> SyncMode {
        match self {
            Durability::Normal => SyncMode::Normal,
            Durability::Fsync => SyncMode::Deferred,
            Durability::FsyncEach => SyncMode::Full,
        }
    }
}

/// Settings of a host. Plain data; `Default` gives the documented defaults.
#[derive(Clone)]
pub struct HostOptions {
    /// Root of all state: `catalog.sqlite` and `objects/<ns>/<id[0..2]>/<id>.sqlite`.
    pub state_dir: PathBuf,
    pub durability: Durability,
    /// Idle time after which an object is evicted from memory.
    pub idle_timeout: Duration,
    /// Most objects open at once; `None` derives it from the open-files limit.
    pub max_open_objects: Option<usize>,
    pub max_object_size_bytes: u64,
    /// The classes served, by namespace.
    pub classes: HashMap<String, Arc<dyn ObjectClass>>,
    pub clock: Arc<dyn Clock>,
}

impl HostOptions {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        HostOptions {
            state_dir: state_dir.into(),
            durability: Durability::Normal,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_open_objects: None,
            max_object_size_bytes: dotdo_storage::DEFAULT_MAX_SIZE_BYTES,
            classes: HashMap::new(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Serves `class` in `namespace`.
    pub fn class(mut self, namespace: &str, class: Arc<dyn ObjectClass>) -> Self {
        self.classes.insert(namespace.to_string(), class);
        self
    }
}

/// Errors opening a host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("invalid namespace `{0}`: use 1–64 characters of a-z, 0-9, `_` and `-`")]
    InvalidNamespace(String),
    #[error("cannot use the state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the catalog: {0}")]
    Catalog(#[from] rusqlite::Error),
}

/// Which object: its namespace and id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub ns: Arc<str>,
    pub id: ObjectId,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ns, self.id)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

type Mail = Box<dyn Envelope>;

enum Slot {
    Active {
        tx: mpsc::UnboundedSender<Mail>,
        last_used: u64,
        evict: Arc<Notify>,
    },
    /// Being activated or closed: wait for the notify, then look again.
    Busy(Arc<Notify>),
}

/// A cheap-clone handle on a running host.
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostInner>,
}

pub(crate) struct HostInner {
    opts: HostOptions,
    storage_opts: StorageOptions,
    shards: Vec<Mutex<HashMap<ObjectKey, Slot>>>,
    tick: AtomicU64,
    open: Arc<Semaphore>,
    max_open: usize,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) alarms: Arc<Alarms>,
    flusher: Option<Arc<Flusher>>,
    /// Background WAL writeback (`normal` durability).
    pub(crate) writeback: Option<Arc<Writeback>>,
    /// Bytes of a new, empty object database (see `Storage::empty_image`).
    empty_image: Arc<Vec<u8>>,
    shutting_down: AtomicBool,
    /// Counters for tests and metrics.
    activations: AtomicU64,
    evictions: AtomicU64,
    /// Object transactions committed with writes, and the turns' results they released.
    pub(crate) commits: AtomicU64,
    pub(crate) committed_results: AtomicU64,
}

/// Numbers describing a host, for tests, logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStats {
    pub active: usize,
    pub max_open: usize,
    pub activations: u64,
    pub evictions: u64,
    /// Object transactions committed with writes, and the turns' results they released
    /// (their ratio is how well turns share commits).
    pub commits: u64,
    pub committed_results: u64,
    pub pending_alarms: usize,
    /// Group commit (`fsync` durability): replies released, and the syncs that covered them.
    pub group_commit_requests: u64,
    pub group_commit_syncs: u64,
    /// Background syncs of WAL files (`normal` durability, see `writeback.rs`).
    pub wal_writebacks: u64,
}

/// The default open-object limit: each open WAL database holds three files (db, -wal, -shm);
/// a quarter of the descriptors stay free for sockets and everything else.
pub fn default_max_open_objects() -> usize {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
    let limit = rlimit::increase_nofile_limit(hard).unwrap_or(soft);
    let usable = limit.saturating_sub(256) * 3 / 4;
    usize::try_from(usable / 3)
        .unwrap_or(usize::MAX)
        .clamp(16, 1_000_000)
}

impl Host {
    /// Opens the state directory, loads pending alarms and starts the alarm scheduler.
    /// Must be called inside a tokio runtime.
    pub fn open(opts: HostOptions) -> Result<Host, HostError> {
        for ns in opts.classes.keys() {
            if !valid_namespace(ns) {
                return Err(HostError::InvalidNamespace(ns.clone()));
            }
        }
        let dir_err = |source| HostError::StateDir {
            path: opts.state_dir.clone(),
            source,
        };
        std::fs::create_dir_all(opts.state_dir.join("objects")).map_err(dir_err)?;
        let catalog = Arc::new(Catalog::open(
            &opts.state_dir.join("catalog.sqlite"),
            match opts.durability {
                Durability::Normal => CatalogSync::Normal,
                Durability::Fsync => CatalogSync::Flusher,
                Durability::FsyncEach => CatalogSync::Full,
            },
        )?);
        let max_open = opts
            .max_open_objects
            .unwrap_or_else(default_max_open_objects)
            .max(1);
        let flusher = if opts.durability == Durability::Fsync {
            Some(Flusher::start(catalog.clone()).map_err(dir_err)?)
        } else {
            None
        };
        let writeback = if opts.durability == Durability::Normal {
            Some(Writeback::start().map_err(dir_err)?)
        } else {
            None
        };
        let alarms = Arc::new(Alarms::default());
        for (key, at) in catalog.alarms()? {
            // Alarms of namespaces this host does not serve wait for a host that does.
            if opts.classes.contains_key(&*key.ns) {
                alarms.schedule(&key, Some(at));
            }
        }
        let storage_opts = StorageOptions {
            max_size_bytes: opts.max_object_size_bytes,
            sync: opts.durability.sync_mode(),
        };
        let empty_image =
            Arc::new(
                Storage::empty_image(&opts.state_dir).map_err(|e| HostError::StateDir {
                    path: opts.state_dir.clone(),
                    source: std::io::Error::other(e.to_string()),
                })?,
            );
        let inner = Arc::new(HostInner {
            storage_opts,
            empty_image,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            tick: AtomicU64::new(0),
            open: Arc::new(Semaphore::new(max_open)),
            max_open,
            catalog,
            alarms: alarms.clone(),
            flusher,
            writeback,
            shutting_down: AtomicBool::new(false),
            activations: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            committed_results: AtomicU64::new(0),
            opts,
        });
        tracing::info!(
            state_dir = %inner.opts.state_dir.display(),
            max_open,
            durability = ?inner.opts.durability,
            pending_alarms = alarms.pending(),
            "host opened"
        );
        tokio::spawn(alarms::run(
            Arc::downgrade(&inner),
            alarms,
            inner.opts.clock.clone(),
        ));
        Ok(Host { inner })
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.opts.clock
    }

    pub fn options(&self) -> &HostOptions {
        &self.inner.opts
    }

    /// True if `namespace` has a class on this host.
    pub fn serves(&self, namespace: &str) -> bool {
        self.inner.opts.classes.contains_key(namespace)
    }

    /// A stub of the object called `name` in `namespace`.
    pub fn stub(&self, namespace: &str, name: &str) -> Stub {
        Stub::new(self.inner.clone(), namespace, name, None)
    }

    /// Sends an HTTP request to an object.
    pub async fn fetch(
        &self,
        namespace: &str,
        name: &str,
        req: Request,
    ) -> Result<Response, ObjectError> {
        self.stub(namespace, name).fetch(req).await
    }

    /// Calls a named method of an object.
    pub async fn call(
        &self,
        namespace: &str,
        name: &str,
        method: &str,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, ObjectError> {
        self.stub(namespace, name).call(method, args).await
    }

    /// Runs `f` on an object's storage as one turn of that object (gates included). This is the
    /// raw storage API, the same for every class.
    pub async fn storage<T, F>(&self, namespace: &str, name: &str, f: F) -> Result<T, ObjectError>
    where
        F: FnOnce(&mut Storage) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        self.stub(namespace, name).storage(f).await
    }

    /// Evicts an object now if it is idle (for tests and admin tools). True if it was evicted
    /// or was not active.
    pub async fn evict(&self, namespace: &str, name: &str) -> bool {
        let key = ObjectKey {
            ns: Arc::from(namespace),
            id: ObjectId::from_name(namespace, name),
        };
        self.inner.evict_now(&key).await
    }

    /// Objects of a namespace known to the catalog, in id order, after `after`.
    pub fn list_objects(
        &self,
        namespace: &str,
        after: Option<ObjectId>,
        limit: usize,
    ) -> Result<Vec<CatalogEntry>, ObjectError> {
        self.inner
            .catalog
            .list(namespace, after, limit)
            .map_err(|e| StorageError::Internal(e).into())
    }

    pub fn count_objects(&self, namespace: &str) -> Result<u64, ObjectError> {
        self.inner
            .catalog
            .count(namespace)
            .map_err(|e| StorageError::Internal(e).into())
    }

    pub fn stats(&self) -> HostStats {
        let i = &self.inner;
        let (group_commit_requests, group_commit_syncs) =
            i.flusher.as_ref().map_or((0, 0), |f| f.counts());
        HostStats {
            group_commit_requests,
            group_commit_syncs,
            active: i.max_open - i.open.available_permits(),
            max_open: i.max_open,
            activations: i.activations.load(Ordering::Relaxed),
            evictions: i.evictions.load(Ordering::Relaxed),
            commits: i.commits.load(Ordering::Relaxed),
            committed_results: i.committed_results.load(Ordering::Relaxed),
            pending_alarms: i.alarms.pending(),
            wal_writebacks: i.writeback.as_ref().map_or(0, |w| w.syncs()),
        }
    }

    /// Stops taking events, lets running turns finish, and closes every database.
    /// Waits at most `grace` for turns to finish.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        inner.shutting_down.store(true, Ordering::SeqCst);
        // Dropping the senders closes the mailboxes: each object finishes its turns and closes.
        for shard in &inner.shards {
            shard
                .lock()
                .retain(|_, slot| !matches!(slot, Slot::Active { .. }));
        }
        let all = u32::try_from(inner.max_open).unwrap_or(u32::MAX);
        match tokio::time::timeout(grace, inner.open.acquire_many(all)).await {
            Ok(_) => {
                let stats = self.stats();
                tracing::info!(
                    activations = stats.activations,
                    group_commit_requests = stats.group_commit_requests,
                    group_commit_syncs = stats.group_commit_syncs,
                    "all objects closed"
                )
            }
            Err(_) => tracing::warn!("shutdown grace period ended with objects still running"),
        }
    }
}

impl HostInner {
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    fn shard(&self, key: &ObjectKey) -> &Mutex<HashMap<ObjectKey, Slot>> {
        &self.shards[usize::from(key.id.as_bytes()[0]) % SHARDS]
    }

    pub(crate) fn key_for(&self, namespace: &str, name: &str) -> Result<ObjectKey, ObjectError> {
        if !self.opts.classes.contains_key(namespace) {
            return Err(ObjectError::not_found(format!(
                "no object class is served in namespace `{namespace}`"
            )));
        }
        if !valid_name(name) {
            return Err(ObjectError::bad_request(
                "an object name is 1 to 1024 bytes of UTF-8",
            ));
        }
        Ok(ObjectKey {
            ns: Arc::from(namespace),
            id: ObjectId::from_name(namespace, name),
        })
    }

    /// Runs a turn in an object and waits for its released result.
    pub(crate) async fn run<T, F>(
        self: &Arc<Self>,
        key: ObjectKey,
        name: Option<Arc<str>>,
        run: F,
    ) -> Result<T, ObjectError>
    where
        F: FnOnce(
                Arc<dyn DurableObject>,
                ObjectState,
            ) -> BoxFuture<'static, Result<T, ObjectError>>
            + Send
            + 'static,
        T: Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        self.deliver(key, name, Box::new(Job { run, reply })).await;
        rx.await.unwrap_or_else(|_| {
            Err(ObjectError::internal(
                "the object failed while handling the request",
            ))
        })
    }

    /// Puts `mail` into the object's mailbox, activating the object if needed.
    async fn deliver(self: &Arc<Self>, key: ObjectKey, name: Option<Arc<str>>, mut mail: Mail) {
        enum Next {
            Wait(std::pin::Pin<Box<tokio::sync::futures::OwnedNotified>>),
            Activate(Arc<Notify>),
        }
        loop {
            let next = {
                let mut shard = self.shard(&key).lock();
                match shard.get_mut(&key) {
                    Some(Slot::Active { tx, last_used, .. }) => {
                        *last_used = self.tick.fetch_add(1, Ordering::Relaxed);
                        match tx.send(mail) {
                            Ok(()) => return,
                            Err(mpsc::error::SendError(back)) => {
                                // The task ended without cleaning up (it panicked): start over.
                                mail = back;
                                shard.remove(&key);
                                continue;
                            }
                        }
                    }
                    _ if self.is_shutting_down() => {
                        drop(shard);
                        return mail.fail(shutting_down());
                    }
                    Some(Slot::Busy(notify)) => {
                        let mut notified = Box::pin(notify.clone().notified_owned());
                        notified.as_mut().enable();
                        Next::Wait(notified)
                    }
                    None => {
                        let notify = Arc::new(Notify::new());
                        shard.insert(key.clone(), Slot::Busy(notify.clone()));
                        Next::Activate(notify)
                    }
                }
            };
            let notify = match next {
                Next::Wait(w) => {
                    w.await;
                    continue;
                }
                Next::Activate(notify) => notify,
            };
            let activated = self.clone().activate(key.clone(), name.clone()).await;
            let failed = {
                let mut shard = self.shard(&key).lock();
                match activated {
                    Ok((tx, evict)) => {
                        let sent = tx.send(mail);
                        shard.insert(
                            key.clone(),
                            Slot::Active {
                                tx,
                                last_used: self.tick.fetch_add(1, Ordering::Relaxed),
                                evict,
                            },
                        );
                        sent.err()
                            .map(|back| (back.0, ObjectError::internal("the object stopped")))
                    }
                    Err(e) => {
                        shard.remove(&key);
                        Some((mail, e))
                    }
                }
            };
            notify.notify_waiters();
            if let Some((mail, e)) = failed {
                mail.fail(e);
            }
            return;
        }
    }

    fn object_path(&self, key: &ObjectKey) -> PathBuf {
        let hex = key.id.to_hex();
        self.opts
            .state_dir
            .join("objects")
            .join(&*key.ns)
            .join(&hex[..2])
            .join(format!("{hex}.sqlite"))
    }

    /// Waits for an open-object permit, evicting least recently used idle objects to get one.
    async fn open_permit(&self) -> OwnedSemaphorePermit {
        loop {
            if let Ok(p) = self.open.clone().try_acquire_owned() {
                return p;
            }
            self.evict_lru((self.max_open / 16).max(1));
            if let Ok(Ok(p)) =
                tokio::time::timeout(Duration::from_millis(50), self.open.clone().acquire_owned())
                    .await
            {
                return p;
            }
        }
    }

    /// Asks the `count` least recently used objects to close if idle.
    fn evict_lru(&self, count: usize) {
        let mut candidates: Vec<(u64, Arc<Notify>)> = Vec::new();
        for shard in &self.shards {
            for slot in shard.lock().values() {
                if let Slot::Active {
                    last_used, evict, ..
                } = slot
                {
                    candidates.push((*last_used, evict.clone()));
                }
            }
        }
        if candidates.len() > count {
            candidates.select_nth_unstable_by_key(count, |(t, _)| *t);
            candidates.truncate(count);
        }
        for (_, evict) in candidates {
            evict.notify_one();
        }
    }

    async fn evict_now(self: &Arc<Self>, key: &ObjectKey) -> bool {
        let notify = match self.shard(key).lock().get(key) {
            None => return true,
            Some(Slot::Busy(_)) => return false,
            Some(Slot::Active { evict, .. }) => evict.clone(),
        };
        notify.notify_one();
        // Wait until the slot is gone (or the object turned out to be busy).
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if self.shard(key).lock().get(key).is_none() {
                return true;
            }
        }
        false
    }

    /// Opens the object's database, creates the instance and starts its task.
    async fn activate(
        self: Arc<Self>,
        key: ObjectKey,
        name: Option<Arc<str>>,
    ) -> Result<(mpsc::UnboundedSender<Mail>, Arc<Notify>), ObjectError> {
        let class = self
            .opts
            .classes
            .get(&*key.ns)
            .cloned()
            .ok_or_else(|| ObjectError::not_found(format!("no class for `{}`", key.ns)))?;
        let permit = self.open_permit().await;
        let path = self.object_path(&key);
        let name = match name {
            Some(n) => Some(n),
            None => self
                .catalog
                .name_of(&key)
                .map_err(StorageError::Internal)?
                .map(Arc::from),
        };
        let created = !path.exists();
        if created {
            // Catalog first: a crash between the two leaves a catalog entry without a file
            // (harmless, the file is created on next use), never a file the catalog lacks.
            self.catalog
                .register(
                    &key,
                    name.as_deref(),
                    class.name(),
                    self.opts.clock.now_ms(),
                )
                .map_err(StorageError::Internal)?;
        }
        let opts = self.storage_opts.clone();
        let image = created.then(|| self.empty_image.clone());
        let storage = tokio::task::spawn_blocking(move || open_storage(&path, &opts, image))
            .await
            .map_err(|_| ObjectError::internal("opening the object's database panicked"))??;
        let storage = ObjectStorage::new(storage);
        let gate = Gate::new(
            key.clone(),
            storage.clone(),
            self.clone(),
            self.storage_opts.sync,
            self.flusher.clone(),
        );
        let state = ObjectState {
            id: key.id,
            namespace: key.ns.clone(),
            name,
            storage: storage.clone(),
            host: self.clone(),
            clock: self.opts.clock.clone(),
            gate: gate.clone(),
        };
        let object = match class.create(state.clone()) {
            Ok(o) => o,
            Err(e) => {
                close_storage(&storage).await;
                return Err(e);
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let evict = Arc::new(Notify::new());
        self.activations.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(object = %key, created, "activated");
        let span = tracing::debug_span!("object", object = %key);
        tokio::spawn(tracing::Instrument::instrument(
            run_object(ObjectTask {
                host: self.clone(),
                key,
                object,
                state,
                gate,
                rx,
                evict: evict.clone(),
                _permit: permit,
            }),
            span,
        ));
        Ok((tx, evict))
    }

    /// Removes the object's slot if its mailbox is empty, so no new mail can reach it.
    fn try_retire(
        &self,
        key: &ObjectKey,
        rx: &mpsc::UnboundedReceiver<Mail>,
    ) -> Option<Arc<Notify>> {
        let mut shard = self.shard(key).lock();
        if !rx.is_empty() {
            return None;
        }
        let notify = Arc::new(Notify::new());
        match shard.get(key) {
            Some(Slot::Active { .. }) => {
                shard.insert(key.clone(), Slot::Busy(notify.clone()));
                Some(notify)
            }
            // Already removed by shutdown: nothing can send to us any more.
            None => Some(notify),
            Some(Slot::Busy(_)) => None,
        }
    }

    fn finish_close(&self, key: &ObjectKey, notify: &Notify) {
        let mut shard = self.shard(key).lock();
        if matches!(shard.get(key), Some(Slot::Busy(_))) {
            shard.remove(key);
        }
        drop(shard);
        notify.notify_waiters();
    }

    /// Delivers a due alarm to its object.
    pub(crate) async fn fire_alarm(self: Arc<Self>, key: ObjectKey, due: i64) {
        let alarms = self.alarms.clone();
        let retry_key = key.clone();
        let result = self
            .run(key, None, move |object, state| {
                Box::pin(run_alarm(object, state, due))
            })
            .await;
        if let Err(e) = result
            && e.kind != ErrorKind::Unavailable
        {
            tracing::warn!(object = %retry_key, error = %e, "alarm could not be delivered; retrying");
            let at = self.opts.clock.now_ms() + ALARM_RETRY_BASE_MS;
            alarms.schedule(&retry_key, Some(at));
        }
    }
}

fn shutting_down() -> ObjectError {
    ObjectError::new(ErrorKind::Unavailable, "the server is shutting down")
}

/// Opens an object's database, creating it from the empty image first if it is new. In the
/// durable modes the file, its WAL and their directory entries are synced before any commit
/// can be acknowledged.
fn open_storage(
    path: &Path,
    opts: &StorageOptions,
    image: Option<Arc<Vec<u8>>>,
) -> Result<Storage, ObjectError> {
    let durable = opts.sync != SyncMode::Normal;
    if let Some(image) = image {
        if let Some(dir) = path.parent()
            && !dir.exists()
        {
            std::fs::create_dir_all(dir).map_err(StorageError::Io)?;
        }
        match Storage::create_from_image(path, &image, durable) {
            Err(StorageError::Io(e)) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            other => other?,
        }
    }
    let storage = Storage::open(path, opts)?;
    if durable {
        storage.sync_dir()?;
    }
    Ok(storage)
}

/// Closes an object's database (a checkpoint with fsyncs) on a blocking thread, off the
/// async workers.
async fn close_storage(storage: &ObjectStorage) {
    let Some(db) = storage.db.lock().take() else {
        return;
    };
    let closed = tokio::task::spawn_blocking(move || db.close()).await;
    match closed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "closing an object's database failed"),
        Err(e) => tracing::error!(error = %e, "closing an object's database panicked"),
    }
}

/// The alarm turn: runs the handler if the alarm is still due, then records success, or a
/// retry with backoff, or abandonment after the last retry.
async fn run_alarm(
    object: Arc<dyn DurableObject>,
    state: ObjectState,
    due: i64,
) -> Result<(), ObjectError> {
    let slot = state.storage.with(|s| s.alarm_state())?;
    let now = state.now_ms();
    let Some(at) = slot.at else { return Ok(()) };
    if at > now {
        // Moved later since it was scheduled: put it back in the queue.
        state.host.alarms.schedule(&state.gate.key, Some(at));
        return Ok(());
    }
    let _ = due;
    let info = AlarmInfo {
        retry_count: slot.retries,
        is_retry: slot.retries > 0,
        scheduled_at: at,
    };
    let outcome = object.alarm(info).await;
    let now = state.now_ms();
    state.storage.with(|s| {
        if outcome.is_err() {
            // The handler's last segment fails with it; earlier segments stay committed.
            s.rollback_segment();
        }
        let still_ours = s.get_alarm()? == Some(at);
        match &outcome {
            Ok(()) => {
                if still_ours {
                    s.delete_alarm()?;
                }
                s.alarm_fired(now)
            }
            Err(e) if still_ours => {
                let retries = slot.retries + 1;
                if retries > ALARM_MAX_RETRIES {
                    tracing::error!(object = %state.gate.key, error = %e, attempts = retries,
                        "alarm abandoned after its last retry");
                    s.delete_alarm()
                } else {
                    let delay = ALARM_RETRY_BASE_MS << (retries - 1);
                    tracing::warn!(object = %state.gate.key, error = %e, retry = retries,
                        delay_ms = delay, "alarm failed; will retry");
                    s.alarm_failed(retries, now + delay)
                }
            }
            Err(_) => Ok(()),
        }
    })?;
    Ok(())
}

struct ObjectTask {
    host: Arc<HostInner>,
    key: ObjectKey,
    object: Arc<dyn DurableObject>,
    state: ObjectState,
    gate: Arc<Gate>,
    rx: mpsc::UnboundedReceiver<Mail>,
    evict: Arc<Notify>,
    _permit: OwnedSemaphorePermit,
}

/// Most passes through the run queue a commit waits for more finished turns to join it (the
/// batch is also bounded by the gate's `MAX_HELD`), so its first turn is not held for long.
const MAX_COMMIT_PASSES: u32 = 16;

/// The life of one activation: init, then turns until idle, evicted or shut down.
async fn run_object(mut t: ObjectTask) {
    let clock = t.host.opts.clock.clone();
    let idle_ms = i64::try_from(t.host.opts.idle_timeout.as_millis()).unwrap_or(i64::MAX);

    // init runs alone before any event (blockConcurrencyWhile).
    let (init_tx, init_rx) = oneshot::channel();
    let object = t.object.clone();
    let init = Box::new(Job {
        run: move |_o: Arc<dyn DurableObject>, _s| -> BoxFuture<'static, Result<(), ObjectError>> {
            Box::pin(async move { object.init().await })
        },
        reply: init_tx,
    });
    Turn::new(
        init.start(t.object.clone(), t.state.clone()),
        t.gate.clone(),
    )
    .await;
    let _ = t.gate.commit();
    if let Ok(Err(e)) | Err(e) = init_rx
        .await
        .map_err(|_| ObjectError::internal("init panicked"))
    {
        tracing::error!(object = %t.key, error = %e, "object init failed");
        let notify = t.host.try_retire(&t.key, &t.rx);
        t.rx.close();
        while let Ok(mail) = t.rx.try_recv() {
            mail.fail(ObjectError::internal(format!(
                "the object failed to start: {e}"
            )));
        }
        close_storage(&t.state.storage).await;
        if let Some(n) = notify {
            t.host.finish_close(&t.key, &n);
        } else {
            t.host.shard(&t.key).lock().remove(&t.key);
        }
        return;
    }

    let mut turns = FuturesUnordered::new();
    let mut last_activity = clock.now_ms();
    // Passes through the run queue since the last commit, and the results held before the last.
    let mut passes = 0;
    let mut held_before = 0;
    let retire = loop {
        let idle = turns.is_empty();
        tokio::select! {
            biased;
            Some(()) = turns.next(), if !idle => {
                last_activity = clock.now_ms();
            }
            mail = t.rx.recv() => match mail {
                Some(mail) => {
                    last_activity = clock.now_ms();
                    let fut = mail.start(t.object.clone(), t.state.clone());
                    turns.push(Turn::new(fut, t.gate.clone()));
                }
                None => {
                    // Shutdown: finish what is running (committing as turns finish, since
                    // one may wait for another's result), then close.
                    while !turns.is_empty() {
                        tokio::select! {
                            biased;
                            _ = turns.next() => {}
                            () = std::future::ready(()), if t.gate.has_held() => {
                                let _ = t.gate.commit();
                            }
                        }
                    }
                    let _ = t.gate.commit();
                    break None;
                }
            },
            // Nothing else can run now: commit the finished turns' writes together and
            // release their results. First yield, so requests already on their way (on this
            // worker's sockets and run queue) join the same commit, and keep yielding while
            // each pass brings more: under a stream of requests a commit then holds as many
            // turns as are in flight. An idle object's lone turn waits one pass.
            () = std::future::ready(()), if t.gate.has_held() => {
                let held = t.gate.held();
                if held < held_before {
                    // A full batch was committed meanwhile: this is a new one.
                    passes = 0;
                }
                if passes == 0 || (passes < MAX_COMMIT_PASSES && held > held_before) {
                    passes += 1;
                    held_before = held;
                    tokio::task::yield_now().await;
                } else {
                    passes = 0;
                    let _ = t.gate.commit();
                }
            }
            _ = t.evict.notified(), if idle => {
                if let Some(n) = t.host.try_retire(&t.key, &t.rx) { break Some(n); }
            }
            // In a block, so the timer is only made when the branch is polled (while idle),
            // not on every pass of a busy object's loop.
            () = async { clock.sleep_until(last_activity.saturating_add(idle_ms)).await }, if idle => {
                if let Some(n) = t.host.try_retire(&t.key, &t.rx) { break Some(n); }
            }
        }
    };
    close_storage(&t.state.storage).await;
    t.host.evictions.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(object = %t.key, "closed");
    if let Some(n) = retire {
        t.host.finish_close(&t.key, &n);
    }
}
