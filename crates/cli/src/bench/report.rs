//! `dotdo bench --report results.jsonl`: the records of one run as Markdown, with each
//! scenario of dotdo beside the same scenario of every peer, the ratios, and the goals.

use super::Record;
use anyhow::Context as _;
use std::fmt::Write;
use std::path::Path;

/// The goals a run is checked against, per scenario and peer: dotdo's throughput must be at
/// least `ratio` times the peer's, and (when `p99_half`) its p99 at most half the peer's.
const GOALS: &[(&str, &str, f64, bool)] = &[
    ("sql-incr-one", "workerd", 3.0, true),
    ("sql-incr-many", "workerd", 3.0, true),
    ("rpc-ws", "capnweb-node", 3.0, false),
    ("rpc-batch", "capnweb-node", 3.0, false),
    ("rpc-pipelined-3", "capnweb-node", 3.0, false),
    ("do-action", "restate", 2.0, false),
];

pub fn markdown(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut records: Vec<Record> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: Record = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a bench record", path.display(), n + 1))?;
        records.push(r);
    }
    Ok(render(&merge_rounds(records)))
}

/// One record per scenario, target and durability. `scripts/bench` measures in rounds (each
/// round runs dotdo and every peer once), so a scenario has a record per round: the one with
/// the median throughput stands for them all, with every round's throughput as its runs.
fn merge_rounds(records: Vec<Record>) -> Vec<Record> {
    let mut groups: Vec<Vec<Record>> = Vec::new();
    for r in records {
        let same = |g: &&mut Vec<Record>| {
            let o = &g[0];
            o.name == r.name && o.target == r.target && o.durability == r.durability
        };
        match groups.iter_mut().find(same) {
            Some(g) => g.push(r),
            None => groups.push(vec![r]),
        }
    }
    groups
        .into_iter()
        .map(|mut g| {
            if g.len() == 1 {
                return g.remove(0);
            }
            let runs: Vec<f64> = g
                .iter()
                .flat_map(|r| {
                    if r.runs.is_empty() {
                        vec![r.throughput]
                    } else {
                        r.runs.clone()
                    }
                })
                .collect();
            let throughputs: Vec<f64> = g.iter().map(|r| r.throughput).collect();
            let mut chosen = g.swap_remove(super::median_index(&throughputs));
            chosen.runs = runs;
            chosen
        })
        .collect()
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

/// The throughput, and the range of every run's when the scenario was repeated.
fn throughput_with_range(r: &Record) -> String {
    let lo = r.runs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = r.runs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if r.runs.len() > 1 {
        format!("{:.0} ({lo:.0}–{hi:.0})", r.throughput)
    } else {
        format!("{:.0}", r.throughput)
    }
}

fn render(records: &[Record]) -> String {
    let mut md = String::new();
    let Some(first) = records.first() else {
        return "No results.\n".into();
    };
    let m = &first.machine;
    let _ = writeln!(
        md,
        "Machine: {} CPUs{}, {}. Run of {} (UTC). The load generator (`dotdo bench`) runs on \
         the same machine as the servers, one server at a time.\n",
        m.cpus,
        m.cpu
            .as_deref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default(),
        m.os,
        first.timestamp.get(..10).unwrap_or(&first.timestamp),
    );
    if let Some(n) = records
        .iter()
        .map(|r| r.runs.len())
        .max()
        .filter(|&n| n > 1)
    {
        let _ = writeln!(
            md,
            "Each scenario was measured {n} times; every figure is from the run with the \
             median throughput, and the range of all runs is in brackets.\n"
        );
    }
    let dotdo: Vec<&Record> = records.iter().filter(|r| r.target == "dotdo").collect();
    let peers: Vec<&Record> = records.iter().filter(|r| r.target != "dotdo").collect();

    let _ = writeln!(md, "### dotdo beside the peers\n");
    let _ = writeln!(
        md,
        "| scenario | dotdo durability | dotdo ops/s | dotdo p99 ms | peer | peer ops/s | peer p99 ms | throughput dotdo/peer | p99 dotdo/peer |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---|---:|---:|---:|---:|");
    for p in &peers {
        for d in dotdo.iter().filter(|d| d.name == p.name) {
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {:.2} | {} ({}) | {:.0} | {:.2} | **{}** | {} |",
                p.name,
                d.durability,
                d.throughput,
                d.latency.p99,
                p.target,
                p.durability,
                p.throughput,
                p.latency.p99,
                ratio(d.throughput, p.throughput),
                ratio(d.latency.p99, p.latency.p99),
            );
        }
    }

    let _ = writeln!(md, "\n### Goals\n");
    let _ = writeln!(md, "| goal | measured | met |");
    let _ = writeln!(md, "|---|---|---|");
    let normal = |name: &str| {
        dotdo
            .iter()
            .find(|d| d.name == name && d.durability == "normal")
            .copied()
    };
    for (name, peer, want, p99_half) in GOALS {
        let Some(p) = peers.iter().find(|p| p.name == *name && p.target == *peer) else {
            continue;
        };
        let Some(d) = normal(name) else { continue };
        let t = d.throughput / p.throughput.max(1e-9);
        let l = d.latency.p99 / p.latency.p99.max(1e-9);
        let met = t >= *want && (!p99_half || l <= 0.5);
        let goal = if *p99_half {
            format!("`{name}` ≥ {want}× {peer}, p99 ≤ ½")
        } else {
            format!("`{name}` ≥ {want}× {peer}")
        };
        let measured = if *p99_half {
            format!("{t:.2}×, p99 {l:.2}×")
        } else {
            format!("{t:.2}×")
        };
        let _ = writeln!(
            md,
            "| {goal} | {measured} | {} |",
            if met { "yes" } else { "no" }
        );
    }
    if let (Some(s), Some(h)) = (normal("sql-incr-one"), normal("health")) {
        let share = s.throughput / h.throughput.max(1e-9);
        let _ = writeln!(
            md,
            "| `sql-incr-one` ≥ 50% of `health` (normal) | {:.0}% | {} |",
            share * 100.0,
            if share >= 0.5 { "yes" } else { "no" }
        );
    }

    let _ = writeln!(md, "\n### Every result\n");
    let _ = writeln!(
        md,
        "| target | durability | scenario | clients | ops | ops/s | p50 ms | p95 ms | p99 ms | max ms | server CPU µs/op | RSS MB |"
    );
    let _ = writeln!(
        md,
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in records {
        let (cpu, rss) = r.server.as_ref().map_or(("–".into(), "–".into()), |s| {
            (
                format!("{:.0}", s.cpu_us_per_op),
                format!("{:.0}", s.rss_mb),
            )
        });
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {cpu} | {rss} |",
            r.target,
            r.durability,
            r.name,
            r.concurrency,
            r.iterations,
            throughput_with_range(r),
            r.latency.p50,
            r.latency.p95,
            r.latency.p99,
            r.latency.max,
        );
    }
    let notes: Vec<&Record> = records.iter().filter(|r| r.note.is_some()).collect();
    if !notes.is_empty() {
        let _ = writeln!(md, "\nNotes:\n");
        let mut seen = Vec::new();
        for r in notes {
            let key = (r.name.as_str(), r.note.as_deref().unwrap_or(""));
            if !seen.contains(&key) {
                seen.push(key);
                let _ = writeln!(md, "- `{}` ({}): {}", r.name, r.target, key.1);
            }
        }
    }

    let _ = writeln!(md, "\n### Memory after the run\n");
    let _ = writeln!(md, "| target | durability | RSS MB |");
    let _ = writeln!(md, "|---|---|---:|");
    let mut last: Vec<(&str, &str, f64)> = Vec::new();
    for r in records {
        if let Some(s) = &r.server {
            last.retain(|(t, d, _)| !(*t == r.target && *d == r.durability));
            last.push((&r.target, &r.durability, s.rss_mb));
        }
    }
    for (t, d, rss) in last {
        let _ = writeln!(md, "| {t} | {d} | {rss:.0} |");
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, target: &str, durability: &str, tput: f64, p99: f64) -> Record {
        serde_json::from_value(serde_json::json!({
            "name": name, "timestamp": "2026-11-25T00:00:00Z", "target": target,
            "iterations": 100, "concurrency": 8, "durability": durability,
            "latency": { "p50": 1.0, "p95": 2.0, "p99": p99, "min": 0.5, "max": 9.0, "mean": 1.2,
                         "stddev": 0.3 },
            "throughput": tput, "machine": { "cpus": 2, "os": "linux" },
            "server": { "rss_mb": 40.0, "cpu_us_per_op": 20.0 }
        }))
        .unwrap()
    }

    #[test]
    fn ratios_and_goals() {
        let md = render(&[
            record("health", "dotdo", "normal", 40_000.0, 2.0),
            record("sql-incr-one", "dotdo", "normal", 30_000.0, 3.0),
            record("sql-incr-one", "workerd", "fsync", 5_000.0, 10.0),
            record("rpc-ws", "dotdo", "normal", 20_000.0, 3.0),
            record("rpc-ws", "capnweb-node", "memory", 10_000.0, 6.0),
        ]);
        assert!(md.contains("| sql-incr-one | normal | 30000 | 3.00 | workerd (fsync) | 5000 | 10.00 | **6.00×** | 0.30× |"), "{md}");
        assert!(
            md.contains("| `sql-incr-one` ≥ 3× workerd, p99 ≤ ½ | 6.00×, p99 0.30× | yes |"),
            "{md}"
        );
        assert!(
            md.contains("| `rpc-ws` ≥ 3× capnweb-node | 2.00× | no |"),
            "{md}"
        );
        assert!(
            md.contains("| `sql-incr-one` ≥ 50% of `health` (normal) | 75% | yes |"),
            "{md}"
        );
        assert!(md.contains("| workerd | fsync | 40 |"), "{md}");
        assert!(!md.contains("median"), "{md}");
    }

    #[test]
    fn repeated_runs_show_their_range() {
        let mut r = record("health", "dotdo", "normal", 40_000.0, 2.0);
        r.runs = vec![41_000.0, 40_000.0, 38_000.0];
        let md = render(&[r]);
        assert!(md.contains("measured 3 times"), "{md}");
        assert!(md.contains("| 40000 (38000–41000) |"), "{md}");
    }

    #[test]
    fn rounds_merge_into_their_median() {
        let merged = merge_rounds(vec![
            record("health", "dotdo", "normal", 40_000.0, 2.0),
            record("health", "workerd", "fsync", 9_000.0, 4.0),
            record("health", "dotdo", "normal", 30_000.0, 3.0),
            record("health", "workerd", "fsync", 8_000.0, 5.0),
            record("health", "dotdo", "normal", 35_000.0, 2.5),
            record("health", "dotdo", "fsync", 20_000.0, 6.0),
        ]);
        assert_eq!(merged.len(), 3);
        let dotdo = &merged[0];
        assert_eq!((dotdo.throughput, dotdo.latency.p99), (35_000.0, 2.5));
        assert_eq!(dotdo.runs, vec![40_000.0, 30_000.0, 35_000.0]);
        // An even count keeps the lower middle run.
        assert_eq!(merged[1].throughput, 8_000.0);
        assert_eq!(merged[1].runs, vec![9_000.0, 8_000.0]);
        assert!(merged[2].runs.is_empty(), "a lone record is kept as it is");
    }
}
