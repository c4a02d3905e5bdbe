//! The load generator: a fixed number of workers, each with its own connection, running one
//! operation at a time until an op count or a duration is reached, after a warm-up whose
//! samples are dropped. HTTP is hyper's HTTP/1.1 client on a kept-alive connection per
//! worker; WebSockets are tokio-tungstenite.

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How long a run lasts.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub concurrency: usize,
    pub warmup: Duration,
    /// Measured time, when `ops` is not given.
    pub duration: Duration,
    /// Measured operations; the run then ends after this many, however long they take.
    pub ops: Option<u64>,
}

/// An op-count run still ends after this long, so a stuck target cannot hang the bench.
const OPS_RUN_LIMIT: Duration = Duration::from_secs(600);
/// A run fails when more than this share of its operations fail.
const MAX_ERROR_RATE: f64 = 0.01;

/// One client of a run. `op(i)` performs operation number `i` (unique across workers).
pub trait Worker: Send + 'static {
    fn op(&mut self, i: u64) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// What a run measured.
pub struct Outcome {
    pub samples: Vec<Duration>,
    /// From the end of the warm-up to the last measured op's end.
    pub elapsed: Duration,
    /// Successful operations, warm-up included (for checking the target's state after).
    pub total_ops: u64,
    pub errors: u64,
    /// Clients that ran at once.
    pub workers: usize,
    /// CPU seconds the server spent during the run (warm-up included), when known.
    pub server_cpu_s: f64,
}

impl Outcome {
    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.samples.len() as f64 / secs
        } else {
            0.0
        }
    }
}

/// Runs `workers` (one task each) under `plan`, showing progress as `label`.
pub async fn drive<W: Worker>(label: &str, workers: Vec<W>, plan: Plan) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let warm_end = started + plan.warmup;
    let hard_end = warm_end
        + match plan.ops {
            Some(_) => OPS_RUN_LIMIT,
            None => plan.duration,
        };
    let shared = Arc::new(Shared::default());
    let n_workers = workers.len();
    let progress = Progress::start(label, plan, warm_end, shared.clone());
    let mut tasks = Vec::new();
    for mut w in workers {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut last_end = None;
            while !shared.stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                if now >= hard_end {
                    break;
                }
                let measured = now >= warm_end;
                if measured
                    && let Some(n) = plan.ops
                    && shared.measured.fetch_add(1, Ordering::Relaxed) >= n
                {
                    break;
                }
                let i = shared.next.fetch_add(1, Ordering::Relaxed);
                match w.op(i).await {
                    Ok(()) => {
                        shared.done.fetch_add(1, Ordering::Relaxed);
                        if measured {
                            let end = Instant::now();
                            samples.push(end - now);
                            last_end = Some(end);
                        }
                    }
                    Err(e) => {
                        let errors = shared.errors.fetch_add(1, Ordering::Relaxed) + 1;
                        let done = shared.done.load(Ordering::Relaxed);
                        // Fail fast when most of what is sent fails (a wrong target, a
                        // crashed server), rather than measuring errors.
                        if errors > 10 && errors as f64 > MAX_ERROR_RATE * done as f64 {
                            shared.stop.store(true, Ordering::Relaxed);
                            return Err(e.context(format!("{errors} operations failed")));
                        }
                    }
                }
            }
            Ok::<_, anyhow::Error>((samples, last_end))
        }));
    }
    let mut samples = Vec::new();
    let mut last_end = warm_end;
    let mut failure = None;
    for t in tasks {
        match t.await.context("a load worker panicked")? {
            Ok((s, end)) => {
                samples.extend(s);
                last_end = last_end.max(end.unwrap_or(warm_end));
            }
            Err(e) => failure = Some(e),
        }
    }
    progress.finish();
    if let Some(e) = failure {
        return Err(e);
    }
    let errors = shared.errors.load(Ordering::Relaxed);
    let total_ops = shared.done.load(Ordering::Relaxed);
    if samples.is_empty() {
        bail!(
            "no operation finished in the measured time (the target answers more slowly than \
             the run lasts; try a longer --warmup or --duration)"
        );
    }
    if errors as f64 > MAX_ERROR_RATE * (total_ops + errors) as f64 {
        bail!("{errors} of {} operations failed", total_ops + errors);
    }
    Ok(Outcome {
        samples,
        elapsed: last_end.saturating_duration_since(warm_end),
        total_ops,
        errors,
        workers: n_workers,
        server_cpu_s: 0.0,
    })
}

#[derive(Default)]
struct Shared {
    next: AtomicU64,
    measured: AtomicU64,
    done: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

/// Progress on stderr: a line redrawn in place on a terminal, one line every 5 s otherwise.
struct Progress {
    task: tokio::task::JoinHandle<()>,
    tty: bool,
}

impl Progress {
    fn start(label: &str, plan: Plan, warm_end: Instant, shared: Arc<Shared>) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let label = label.to_string();
        let every = if tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(5)
        };
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut last = (Instant::now(), 0u64);
            loop {
                tokio::time::sleep(every).await;
                let now = Instant::now();
                let done = shared.done.load(Ordering::Relaxed);
                let rate = (done - last.1) as f64 / (now - last.0).as_secs_f64();
                last = (now, done);
                let phase = if now < warm_end {
                    "warming up".to_string()
                } else {
                    match plan.ops {
                        Some(n) => {
                            format!("{}/{n} ops", shared.measured.load(Ordering::Relaxed).min(n))
                        }
                        None => format!(
                            "{:.0}/{:.0} s",
                            (now - warm_end).as_secs_f64(),
                            plan.duration.as_secs_f64()
                        ),
                    }
                };
                let line = format!(
                    "  {label:<16} {phase:<16} {rate:>9.0} ops/s  {:.0} s",
                    (now - started).as_secs_f64()
                );
                let mut err = std::io::stderr().lock();
                if tty {
                    let _ = write!(err, "\r{line:<72}");
                } else {
                    let _ = writeln!(err, "{line}");
                }
                let _ = err.flush();
            }
        });
        Progress { task, tty }
    }

    fn finish(self) {
        self.task.abort();
        if self.tty {
            let _ = write!(std::io::stderr(), "\r{:<72}\r", "");
        }
    }
}

/// `host:port` of an `http://` base URL.
pub fn authority(base: &str) -> anyhow::Result<String> {
    let uri: http::Uri = base.parse().with_context(|| format!("bad URL `{base}`"))?;
    if uri.scheme_str() != Some("http") {
        bail!("only http:// targets are supported, not `{base}`");
    }
    let host = uri.host().context("the URL has no host")?;
    Ok(format!("{host}:{}", uri.port_u16().unwrap_or(80)))
}

/// One kept-alive HTTP/1.1 connection.
pub struct Http {
    send: SendRequest<Full<Bytes>>,
    authority: String,
}

impl Http {
    pub async fn connect(base: &str) -> anyhow::Result<Http> {
        let authority = authority(base)?;
        let tcp = TcpStream::connect(&authority)
            .await
            .with_context(|| format!("cannot connect to {authority}"))?;
        tcp.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Http { send, authority })
    }

    /// Sends a request (a JSON body when given) and returns the status and body.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.authority);
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(body.unwrap_or_default()))?;
        self.send.ready().await?;
        let res = self.send.send_request(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// Like `send`, but a status other than 2xx is an error quoting the body.
    pub async fn ok(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<Bytes> {
        let m = method.clone();
        let (status, body) = self.send(method, path, body).await?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).to_string();
            bail!("{m} {path}: {status}: {text}");
        }
        Ok(body)
    }

    pub async fn json(
        &mut self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let body = body.map(|b| Bytes::from(b.to_string()));
        let out = self.ok(method, path, body).await?;
        if out.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&out).with_context(|| format!("{path} did not answer JSON"))
    }
}

/// A request built from the op number.
pub struct Req {
    pub method: Method,
    pub path: String,
    pub body: Option<Bytes>,
}

pub type MakeReq = Arc<dyn Fn(u64) -> Req + Send + Sync>;

/// A worker sending one HTTP request per op, built by `make`.
pub struct HttpWorker {
    http: Http,
    make: MakeReq,
}

impl HttpWorker {
    pub async fn many(base: &str, n: usize, make: MakeReq) -> anyhow::Result<Vec<HttpWorker>> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(HttpWorker {
                http: Http::connect(base).await?,
                make: make.clone(),
            });
        }
        Ok(out)
    }
}

impl Worker for HttpWorker {
    async fn op(&mut self, i: u64) -> anyhow::Result<()> {
        let req = (self.make)(i);
        self.http.ok(req.method, &req.path, req.body).await?;
        Ok(())
    }
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket at `path` of an `http://` base.
pub async fn ws_connect(base: &str, path: &str) -> anyhow::Result<Ws> {
    let url = format!("ws://{}{path}", authority(base)?);
    // Frames here are small: a small read buffer (the default 128 KiB one is zeroed on every
    // read), and no Nagle delay.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(&url, Some(config), true)
        .await
        .with_context(|| format!("cannot open {url}"))?;
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sleeper(Duration);

    impl Worker for Sleeper {
        async fn op(&mut self, _: u64) -> anyhow::Result<()> {
            tokio::time::sleep(self.0).await;
            Ok(())
        }
    }

    struct Failing;

    impl Worker for Failing {
        async fn op(&mut self, _: u64) -> anyhow::Result<()> {
            bail!("refused")
        }
    }

    #[tokio::test]
    async fn an_op_count_run_measures_exactly_that_many() {
        let plan = Plan {
            concurrency: 4,
            warmup: Duration::from_millis(20),
            duration: Duration::from_secs(60),
            ops: Some(100),
        };
        let workers = (0..4).map(|_| Sleeper(Duration::from_millis(1))).collect();
        let out = drive("test", workers, plan).await.unwrap();
        assert_eq!(out.samples.len(), 100);
        assert!(out.total_ops >= 100, "warm-up ops count too");
        assert!(out.samples.iter().all(|s| *s >= Duration::from_millis(1)));
        assert!(out.throughput() > 0.0);
    }

    #[tokio::test]
    async fn a_timed_run_stops_by_itself() {
        let plan = Plan {
            concurrency: 2,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(100),
            ops: None,
        };
        let workers = (0..2).map(|_| Sleeper(Duration::from_millis(5))).collect();
        let out = drive("test", workers, plan).await.unwrap();
        assert!(!out.samples.is_empty());
        assert!(
            out.elapsed >= Duration::from_millis(90),
            "{:?}",
            out.elapsed
        );
    }

    #[tokio::test]
    async fn a_run_whose_ops_fail_is_an_error() {
        let plan = Plan {
            concurrency: 2,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(30),
            ops: None,
        };
        let err = drive("test", vec![Failing, Failing], plan)
            .await
            .err()
            .expect("fails");
        assert!(format!("{err:#}").contains("refused"), "{err:#}");
    }

    #[test]
    fn authorities() {
        assert_eq!(
            authority("http://127.0.0.1:4000").unwrap(),
            "127.0.0.1:4000"
        );
        assert_eq!(authority("http://localhost/").unwrap(), "localhost:80");
        assert!(authority("https://x").is_err());
    }
}
