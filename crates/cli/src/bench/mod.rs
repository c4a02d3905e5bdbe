//! `dotdo bench`: load scenarios against a dotdo it starts (or any target with `--url`),
//! printed as a table and written as JSON lines, one record per scenario.

pub mod class;
mod load;
mod report;
mod scenarios;
mod stats;

use anyhow::{Context as _, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use stats::Latency;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[derive(Args, Debug)]
// A later flag overrides an earlier one (scripts add to a common set of flags).
#[command(args_override_self = true)]
pub struct BenchArgs {
    /// Scenarios to run, comma-separated (default: all; `--list` names them).
    #[arg(short, long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Measure a running server instead of starting one: a dotdo started with
    /// `--bench-class`, or a peer from bench/peers.
    #[arg(long)]
    url: Option<String>,
    /// The target's name in the results.
    #[arg(long, default_value = "dotdo")]
    target: String,
    /// Durability of the dotdo it starts (normal or fsync); with --url, only a label.
    #[arg(long)]
    durability: Option<String>,
    /// Clients running at once (each with its own connection).
    #[arg(short, long, default_value_t = 32)]
    concurrency: usize,
    /// Measured seconds per scenario [default: 5, or 1 with --quick].
    #[arg(short, long)]
    duration: Option<f64>,
    /// Measured operations per scenario, instead of a duration.
    #[arg(short = 'n', long)]
    ops: Option<u64>,
    /// Seconds of warm-up per scenario, not measured [default: 1, or 0.2 with --quick].
    #[arg(long)]
    warmup: Option<f64>,
    /// Measure each scenario this many times, back to back, and keep the run with the
    /// median throughput (every run's throughput is kept in the record's `runs`).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// A smoke run: short scenarios and smaller setups.
    #[arg(long)]
    quick: bool,
    /// Append the JSON lines to this file.
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// Print JSON lines on stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// With --url: the server's process ids, for its memory (RSS) and CPU per operation.
    #[arg(long = "server-pid", value_delimiter = ',')]
    server_pids: Vec<u32>,
    /// Label the records with this round of a run: `--report` compares dotdo with each peer
    /// round by round (scripts/bench measures in rounds).
    #[arg(long)]
    round: Option<u32>,
    /// Print a Markdown comparison of the results in this JSON lines file, and exit.
    #[arg(long, value_name = "JSONL")]
    report: Option<PathBuf>,
}

/// One scenario's result: one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub timestamp: String,
    pub target: String,
    pub iterations: u64,
    pub concurrency: usize,
    pub durability: String,
    pub latency: Latency,
    pub throughput: f64,
    pub machine: Machine,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerUse>,
    #[serde(default)]
    pub errors: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// With `--repeat`: every run's throughput (ops/s), in the order measured; the record
    /// is the run with the median.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<f64>,
    /// The round of a run in rounds (`--round`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cpus: usize,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
}

/// What the server process used: its resident memory after the scenario, and its CPU time
/// per operation during it (its efficiency, whatever share of the cores the client takes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerUse {
    pub rss_mb: f64,
    pub cpu_us_per_op: f64,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.report {
        print!("{}", report::markdown(path)?);
        return Ok(());
    }
    if args.list {
        for (name, what) in scenarios::ALL {
            println!("{name:<16} {what}");
        }
        return Ok(());
    }
    let names = chosen(&args.scenarios)?;
    if args.concurrency == 0 || args.concurrency > 10_000 {
        bail!("--concurrency must be 1 to 10000");
    }
    if args.repeat == 0 || args.repeat > 20 {
        bail!("--repeat must be 1 to 20");
    }
    if args.duration.is_some_and(|d| d <= 0.0)
        || args.warmup.is_some_and(|w| w < 0.0)
        || args.ops == Some(0)
    {
        bail!("--duration must be > 0, --warmup ≥ 0 and --ops ≥ 1");
    }
    if args.url.is_none() {
        match args.durability.as_deref() {
            None | Some("normal" | "fsync") => {}
            Some(d) => bail!("--durability must be normal or fsync, not `{d}`"),
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(bench(args, names))
}

fn chosen(asked: &[String]) -> anyhow::Result<Vec<&'static str>> {
    if asked.is_empty() {
        return Ok(scenarios::ALL.iter().map(|(n, _)| *n).collect());
    }
    asked
        .iter()
        .map(|a| {
            scenarios::ALL
                .iter()
                .map(|(n, _)| *n)
                .find(|n| n == a)
                .with_context(|| format!("no scenario `{a}` (`dotdo bench --list` names them)"))
        })
        .collect()
}

async fn bench(args: BenchArgs, names: Vec<&'static str>) -> anyhow::Result<()> {
    let quick = args.quick;
    let plan = load::Plan {
        concurrency: args.concurrency,
        warmup: Duration::from_secs_f64(args.warmup.unwrap_or(if quick { 0.2 } else { 1.0 })),
        duration: Duration::from_secs_f64(args.duration.unwrap_or(if quick { 1.0 } else { 5.0 })),
        ops: args.ops,
    };
    let durability = args.durability.clone().unwrap_or_else(|| {
        if args.url.is_some() {
            "unknown"
        } else {
            "normal"
        }
        .to_string()
    });
    let machine = machine();
    let run_id = format!("{:x}", chrono::Utc::now().timestamp_millis());
    let mut out = match &args.out {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open {}", p.display()))?,
        ),
        None => None,
    };
    // The server every scenario but cold-activation runs against.
    let main = match &args.url {
        Some(url) => Target::Url(
            url.trim_end_matches('/').to_string(),
            args.server_pids.clone(),
        ),
        None => Target::Started(Server::start(&durability, &[])?),
    };
    if !args.json {
        eprintln!(
            "dotdo bench: {} at {} ({} clients, {})",
            args.target,
            main.base(),
            plan.concurrency,
            match plan.ops {
                Some(n) => format!("{n} ops per scenario"),
                None => format!("{:.1} s per scenario", plan.duration.as_secs_f64()),
            }
        );
        print_header();
    }
    let mut failed = Vec::new();
    for name in names {
        // An evicted object needs a server that keeps few open: one of its own.
        let cold;
        let target = if name == "cold-activation" {
            if args.url.is_some() {
                eprintln!(
                    "  {name:<16} skipped: with --url the server's open-object limit is unknown"
                );
                continue;
            }
            cold = Target::Started(Server::start(
                &durability,
                &["--max-open-objects", "8", "--idle-timeout", "3600"],
            )?);
            &cold
        } else {
            &main
        };
        let env = scenarios::Env {
            base: target.base().to_string(),
            plan,
            quick,
            run: run_id.clone(),
            pids: target.pids().to_vec(),
        };
        let measured = match measure(name, &env, args.repeat, !args.json).await {
            Ok(m) => m,
            Err(e) => {
                eprintln!("  {name:<16} FAILED: {e:#}");
                failed.push(name);
                continue;
            }
        };
        let (measured, runs) = measured;
        let mut o = measured.outcome;
        let server = (!target.pids().is_empty()).then(|| ServerUse {
            rss_mb: (rss_bytes(target.pids()) as f64 / 1e5).round() / 10.0,
            cpu_us_per_op: (o.server_cpu_s * 1e7 / o.total_ops.max(1) as f64).round() / 10.0,
        });
        let record = Record {
            name: name.to_string(),
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            target: args.target.clone(),
            iterations: o.samples.len() as u64,
            concurrency: o.workers,
            durability: durability.clone(),
            throughput: o.throughput().round(),
            latency: Latency::of(&mut o.samples),
            machine: machine.clone(),
            server,
            errors: o.errors,
            note: measured.note,
            runs,
            round: args.round,
        };
        let line = serde_json::to_string(&record)?;
        if let Some(f) = out.as_mut() {
            writeln!(f, "{line}")?;
        }
        if args.json {
            println!("{line}");
        } else {
            print_row(&record);
        }
    }
    if !failed.is_empty() {
        bail!("{} scenario(s) failed: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}

/// Runs a scenario `repeat` times and returns the run with the median throughput, with every
/// run's throughput when there was more than one.
async fn measure(
    name: &str,
    env: &scenarios::Env,
    repeat: usize,
    progress: bool,
) -> anyhow::Result<(scenarios::Measured, Vec<f64>)> {
    let mut all = Vec::with_capacity(repeat);
    for i in 1..=repeat {
        // Each run on objects of its own, so its checks count only its own operations.
        let mut env = env.clone();
        if i > 1 {
            env.run = format!("{}r{i}", env.run);
        }
        let m = scenarios::run(name, &env).await?;
        if progress && repeat > 1 {
            eprintln!(
                "  {name:<16} run {i}/{repeat}: {:.0} ops/s",
                m.outcome.throughput()
            );
        }
        all.push(m);
    }
    let runs: Vec<f64> = all.iter().map(|m| m.outcome.throughput().round()).collect();
    let median = median_index(&runs);
    let chosen = all.swap_remove(median);
    Ok((chosen, if repeat > 1 { runs } else { Vec::new() }))
}

/// The index of the median value (the lower middle one of an even count).
pub(crate) fn median_index(values: &[f64]) -> usize {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    order[(values.len().saturating_sub(1)) / 2]
}

fn print_header() {
    println!(
        "{:<16} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9}",
        "scenario", "ops/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "ops", "rss MB"
    );
}

fn print_row(r: &Record) {
    let rss = r
        .server
        .as_ref()
        .map_or("-".to_string(), |s| format!("{:.0}", s.rss_mb));
    println!(
        "{:<16} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>8} {:>9}",
        r.name,
        r.throughput,
        r.latency.p50,
        r.latency.p95,
        r.latency.p99,
        r.latency.max,
        r.iterations,
        rss
    );
    let _ = std::io::stdout().flush();
}

fn machine() -> Machine {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    });
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        os: format!("{} {}", std::env::consts::OS, kernel.trim())
            .trim()
            .to_string(),
        cpu,
    }
}

/// User + system CPU seconds of the processes, from `/proc`.
pub(crate) fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the command name (which may hold spaces) start after the last ')'.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
            // utime and stime: fields 14 and 15, so 12 and 13 after the name. Linux reports
            // them in clock ticks of 1/100 s.
            (ticks(11).unwrap_or(0.0) + ticks(12).unwrap_or(0.0)) / 100.0
        })
        .sum()
}

/// Resident memory of the processes, from `/proc/{pid}/status`.
fn rss_bytes(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .sum()
}

enum Target {
    Url(String, Vec<u32>),
    Started(Server),
}

impl Target {
    fn base(&self) -> &str {
        match self {
            Target::Url(u, _) => u,
            Target::Started(s) => &s.base,
        }
    }

    fn pids(&self) -> &[u32] {
        match self {
            Target::Url(_, p) => p,
            Target::Started(s) => &s.pids,
        }
    }
}

/// A `dotdo start` of this same binary on a free port, with its state in a temporary
/// directory; stopped and deleted on drop.
struct Server {
    child: Child,
    base: String,
    pids: Vec<u32>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(durability: &str, extra: &[&str]) -> anyhow::Result<Server> {
        let exe = std::env::current_exe().context("cannot find the dotdo binary")?;
        let dir = tempfile::Builder::new().prefix("dotdo-bench-").tempdir()?;
        let mut child = Command::new(&exe)
            .args([
                "start",
                "--port",
                "0",
                "--bench-class",
                "--durability",
                durability,
            ])
            .args(extra)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = match lines.next() {
            Some(Ok(l)) => l,
            _ => {
                let _ = child.kill();
                bail!("the dotdo server did not start (see its errors above)");
            }
        };
        let Some(base) = first.split_whitespace().find(|w| w.starts_with("http://")) else {
            let _ = child.kill();
            bail!("unexpected first line from dotdo start: {first}");
        };
        let base = base.to_string();
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Server {
            pids: vec![child.id()],
            child,
            base,
            _dir: dir,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::median_index;

    #[test]
    fn the_median_run_is_the_middle_one_by_throughput() {
        assert_eq!(median_index(&[5.0]), 0);
        assert_eq!(median_index(&[30.0, 10.0, 20.0]), 2);
        assert_eq!(median_index(&[10.0, 30.0, 20.0, 40.0]), 2);
        assert_eq!(median_index(&[7.0, 7.0, 1.0]), 0);
    }
}
