//! `dotdo-bench`: the project's own micro-benchmarks, below what `dotdo bench` (the user-facing
//! load generator, compared with the peers by `scripts/bench`) measures. One JSON line each:
//! `{ scenario, ops, p50_ms, p95_ms, p99_ms, throughput, durability, … }`.
//!
//! HTTP scenarios start the real `dotdo` binary on 127.0.0.1 with a temp state dir; runtime
//! scenarios run a `Host` in process. Every scenario stops by itself after a fixed count.
//!
//! `cargo build --release -p dotdo-cli -p dotdo-bench && target/release/dotdo-bench`

mod http_load;
mod runtime;
mod schedules;
mod stats;
mod things;
mod workflow;

use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "Benchmarks dotdo and prints JSON lines")]
struct Args {
    /// The dotdo binary to start (default: next to this one).
    #[arg(long)]
    dotdo: Option<PathBuf>,
    /// Requests per HTTP scenario.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Concurrent HTTP connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Durability modes to run the HTTP scenarios in.
    #[arg(long, value_delimiter = ',', default_value = "normal,fsync")]
    durability: Vec<String>,
    /// Only scenarios whose name contains this.
    #[arg(long)]
    only: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dotdo = match args.dotdo.clone() {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("dotdo"),
    };
    let wants = |name: &str| args.only.as_deref().is_none_or(|o| name.contains(o));
    // In-process runtime scenarios first, on a quiet disk.
    if wants("schedules_next_alarm_10k") {
        for line in schedules::next_alarm_10k()? {
            println!("{line}");
        }
    }
    if wants("activation_evicted_1mb") {
        println!("{}", runtime::activation_1mb(200).await?);
    }
    if wants("object_to_object_call") {
        println!("{}", runtime::object_to_object(20_000).await?);
    }
    if wants("runtime_kv_increment_one_object") {
        use dotdo_runtime::Durability::*;
        for d in [Normal, Fsync, FsyncEach] {
            println!("{}", runtime::increments(d, 20_000, 64).await?);
        }
    }
    {
        use dotdo_runtime::Durability::*;
        for d in [Normal, Fsync] {
            if wants("do_noop_one_object") {
                println!("{}", workflow::do_noop(d, 1, 20_000, 64).await?);
            }
            if wants("do_noop_100_objects") {
                println!("{}", workflow::do_noop(d, 100, 20_000, 64).await?);
            }
            if wants("events_delivered_object_to_object") {
                println!("{}", workflow::events_delivery_only(d, 20_000, 64).await?);
            }
            if wants("events_handled_object_to_object") || wants("events_emit_one_object") {
                for line in workflow::events_to_object(d, 20_000, 64).await? {
                    println!("{line}");
                }
            }
        }
    }
    for durability in &args.durability {
        let scenario = "schedule_alarm_lateness_1000_due_100_objects";
        if wants(scenario) {
            println!(
                "{}",
                schedules::alarm_lateness(&dotdo, durability, 3).await?
            );
        }
        if wants("things_") {
            for line in things::things(&dotdo, durability, 100_000, args.connections).await? {
                println!("{line}");
            }
        }
        let scenario = "http_kv_put_10000_new_objects";
        if wants(scenario) {
            let line = http_load::new_objects(&dotdo, durability, 10_000, args.connections).await?;
            println!("{}", line.with_name(scenario));
        }
    }
    Ok(())
}
