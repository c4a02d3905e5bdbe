//! `dotdo start`: open the state directory, start the host and serve HTTP until a signal.

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use dotdo_runtime::{Durability, Host, HostOptions};
use dotdo_server::{BUILTIN_NAMESPACE, ServerConfig};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Port to listen on (0 picks a free one).
    #[arg(short, long, default_value_t = 4000, env = "DOTDO_PORT")]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1", env = "DOTDO_HOST")]
    host: String,
    /// Where all state lives.
    #[arg(long, default_value = "./.do/state", env = "DOTDO_STATE_DIR")]
    state_dir: PathBuf,
    /// Delete all state before starting (asks first).
    #[arg(long)]
    reset: bool,
    /// Answer yes to questions (for --reset without a terminal).
    #[arg(short = 'y', long)]
    yes: bool,
    /// When a write is durable before its reply leaves.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Normal, env = "DOTDO_DURABILITY")]
    durability: DurabilityArg,
    /// Seconds an idle object stays in memory.
    #[arg(long, default_value_t = 30)]
    idle_timeout: u64,
    /// Most objects open at once (default: derived from the open-files limit).
    #[arg(long)]
    max_open_objects: Option<usize>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Largest body of a thing (and of the other store routes) in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_thing_bytes: usize,
    /// Mount the benchmark's counter class at /counter/{name} (what `dotdo bench` drives).
    #[arg(long)]
    bench_class: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DurabilityArg {
    /// Survives a process crash (WAL, synchronous=NORMAL).
    Normal,
    /// Survives power loss: replies wait for a group fsync.
    Fsync,
}

pub fn run(args: StartArgs) -> anyhow::Result<()> {
    if args.reset {
        reset(&args.state_dir, args.yes)?;
    }
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("cannot create {}", args.state_dir.display()))?;
    let _lock = lock_state_dir(&args.state_dir)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(args))
}

/// One worker per core. Turns run their (fast, synchronous) storage calls on the workers; a
/// checkpoint, the one call that regularly waits for the disk, hands its worker's other tasks
/// to another thread first (`block_in_place`). More workers than cores cost throughput: with
/// 8 workers on 2 cores, `sql-incr-one` ran about a fifth slower, from the extra parking and
/// waking of idle workers.
fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

async fn serve(args: StartArgs) -> anyhow::Result<()> {
    let workflow = dotdo_server::workflow_env().map_err(anyhow::Error::msg)?;
    let mut opts = HostOptions::new(&args.state_dir).class(
        BUILTIN_NAMESPACE,
        dotdo_server::builtin_class(workflow.clone()),
    );
    let mut mounts = Vec::new();
    if args.bench_class {
        use crate::bench::class;
        opts = opts.class(class::NAMESPACE, class::class(workflow));
        mounts.push(dotdo_server::Mount::new(class::SEGMENT, class::NAMESPACE));
    }
    opts.durability = match args.durability {
        DurabilityArg::Normal => Durability::Normal,
        DurabilityArg::Fsync => Durability::Fsync,
    };
    opts.idle_timeout = Duration::from_secs(args.idle_timeout);
    opts.max_open_objects = args.max_open_objects;
    let host = Host::open(opts).context("cannot open the state directory")?;
    let config = ServerConfig {
        max_body_bytes: args.max_body_bytes,
        max_thing_bytes: args.max_thing_bytes,
        mounts,
        ..ServerConfig::default()
    };
    let app = dotdo_server::app(host.clone(), config);
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}:{} (is another server using it?)",
                args.host, args.port
            )
        })?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    let stats = host.stats();
    println!("dotdo {} listening on {base}", env!("CARGO_PKG_VERSION"));
    println!("  api      {base}/");
    println!("  health   {base}/health");
    println!("  objects  {base}/{{name}}  (e.g. {base}/acme/_storage/kv)");
    println!(
        "  state    {}  (durability {:?}, up to {} open objects)",
        args.state_dir.display(),
        host.options().durability,
        stats.max_open
    );
    std::io::stdout().flush().ok();
    // Small frames (RPC messages, SSE events) go out at once rather than waiting for an ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the HTTP server failed")?;
    tracing::info!("stopping: finishing running turns");
    host.shutdown(Duration::from_secs(30)).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Holds an exclusive lock on the state directory for the life of the process, so two servers
/// never write the same objects.
fn lock_state_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another dotdo is already using {} (stop it, or pass another --state-dir)",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).context("cannot lock the state directory"),
    }
}

/// Deletes the state directory's contents, and nothing outside it.
fn reset(dir: &Path, yes: bool) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "--reset deletes all state in {}; pass --yes to confirm without a terminal",
                dir.display()
            );
        }
        eprint!("Delete all state in {}? [y/N] ", dir.display());
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("reset cancelled");
        }
    }
    let _lock = lock_state_dir(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.file_name().is_some_and(|n| n == "LOCK") {
            continue;
        }
        if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .with_context(|| format!("cannot delete {}", path.display()))?;
    }
    eprintln!("state in {} deleted", dir.display());
    Ok(())
}
