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
    Ok(render(&records))
}

/// Both records measure the same scenario of the same target at the same durability.
fn same_series(a: &Record, b: &Record) -> bool {
    a.name == b.name && a.target == b.target && a.durability == b.durability
}

/// One record per scenario, target and durability. `scripts/bench` measures in rounds (each
/// round runs dotdo and every peer once), so a scenario has a record per round: the one with
/// the median throughput stands for them all, with every round's throughput as its runs.
fn merge_rounds(records: Vec<Record>) -> Vec<Record> {
    let mut groups: Vec<Vec<Record>> = Vec::new();
    for r in records {
        match groups.iter_mut().find(|g| same_series(&g[0], &r)) {
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

/// A ratio between two targets' results: the median over the rounds that measured both, and
/// the range of the per-round ratios.
struct Paired {
    median: f64,
    lo: f64,
    hi: f64,
    rounds: usize,
}

impl Paired {
    /// `f(a, b)` in each round where both `a`'s and `b`'s scenario, target and durability were
    /// measured. Within a round the two ran a minute apart at most, so the machine's drift
    /// over a whole run (up to 2× on a shared machine) falls on both sides of each ratio;
    /// records without rounds give the one ratio of `a` and `b` themselves.
    fn of(all: &[Record], a: &Record, b: &Record, f: impl Fn(&Record, &Record) -> f64) -> Paired {
        let mut values: Vec<f64> = all
            .iter()
            .filter(|x| x.round.is_some() && same_series(x, a))
            .filter_map(|x| {
                let y = all
                    .iter()
                    .find(|y| y.round == x.round && same_series(y, b))?;
                Some(f(x, y))
            })
            .collect();
        if values.is_empty() {
            values.push(f(a, b));
        }
        values.sort_by(f64::total_cmp);
        Paired {
            median: values[super::median_index(&values)],
            lo: values[0],
            hi: values[values.len() - 1],
            rounds: values.len(),
        }
    }

    /// `3.21×`, or `3.21× (2.90–3.60)` over several rounds.
    fn times(&self) -> String {
        if self.rounds > 1 {
            format!("{:.2}× ({:.2}–{:.2})", self.median, self.lo, self.hi)
        } else {
            format!("{:.2}×", self.median)
        }
    }

    /// `48%`, or `48% (39–53%)` over several rounds.
    fn percent(&self) -> String {
        let pct = |v: f64| v * 100.0;
        if self.rounds > 1 {
            format!(
                "{:.0}% ({:.0}–{:.0}%)",
                pct(self.median),
                pct(self.lo),
                pct(self.hi)
            )
        } else {
            format!("{:.0}%", pct(self.median))
        }
    }
}

fn throughput_ratio(a: &Record, b: &Record) -> f64 {
    a.throughput / b.throughput.max(1e-9)
}

fn p99_ratio(a: &Record, b: &Record) -> f64 {
    a.latency.p99 / b.latency.p99.max(1e-9)
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

fn render(all: &[Record]) -> String {
    let mut md = String::new();
    let merged = merge_rounds(all.to_vec());
    let records = &merged[..];
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
    if all.iter().any(|r| r.round.is_some()) {
        let _ = writeln!(
            md,
            "A ratio of dotdo to a peer is the median of the ratios measured in each round \
             (dotdo and the peer back to back), and their range is in brackets.\n"
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
                Paired::of(all, d, p, throughput_ratio).times(),
                Paired::of(all, d, p, p99_ratio).times(),
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
        let t = Paired::of(all, d, p, throughput_ratio);
        let l = Paired::of(all, d, p, p99_ratio);
        let met = t.median >= *want && (!p99_half || l.median <= 0.5);
        let goal = if *p99_half {
            format!("`{name}` ≥ {want}× {peer}, p99 ≤ ½")
        } else {
            format!("`{name}` ≥ {want}× {peer}")
        };
        let measured = if *p99_half {
            format!("{}, p99 {}", t.times(), l.times())
        } else {
            t.times()
        };
        let _ = writeln!(
            md,
            "| {goal} | {measured} | {} |",
            if met { "yes" } else { "no" }
        );
    }
    if let (Some(s), Some(h)) = (normal("sql-incr-one"), normal("health")) {
        let share = Paired::of(all, s, h, throughput_ratio);
        let _ = writeln!(
            md,
            "| `sql-incr-one` ≥ 50% of `health` (normal) | {} | {} |",
            share.percent(),
            if share.median >= 0.5 { "yes" } else { "no" }
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

    let _ = writeln!(md, "\n### Memory\n");
    let _ = writeln!(
        md,
        "The largest resident memory of each target's server after a scenario.\n"
    );
    let _ = writeln!(md, "| target | durability | RSS MB | after |");
    let _ = writeln!(md, "|---|---|---:|---|");
    let mut largest: Vec<(&str, &str, f64, &str)> = Vec::new();
    for r in records {
        let Some(s) = &r.server else { continue };
        match largest
            .iter_mut()
            .find(|(t, d, ..)| *t == r.target && *d == r.durability)
        {
            Some(l) if l.2 >= s.rss_mb => {}
            Some(l) => *l = (&r.target, &r.durability, s.rss_mb, &r.name),
            None => largest.push((&r.target, &r.durability, s.rss_mb, &r.name)),
        }
    }
    for (t, d, rss, name) in largest {
        let _ = writeln!(md, "| {t} | {d} | {rss:.0} | `{name}` |");
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
        assert!(
            md.contains("| workerd | fsync | 40 | `sql-incr-one` |"),
            "{md}"
        );
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
    fn ratios_are_the_median_of_each_rounds_ratio() {
        let mut all = Vec::new();
        for (round, dotdo, node) in [
            (1, 30_000.0, 10_000.0),
            (2, 20_000.0, 5_000.0),
            (3, 25_000.0, 20_000.0),
        ] {
            for mut r in [
                record("rpc-ws", "dotdo", "normal", dotdo, 1.0),
                record("rpc-ws", "capnweb-node", "memory", node, 2.0),
            ] {
                r.round = Some(round);
                all.push(r);
            }
        }
        let md = render(&all);
        // The medians alone (25000 and 10000) would say 2.50×; the rounds say 3, 4 and 1.25.
        assert!(
            md.contains("| `rpc-ws` ≥ 3× capnweb-node | 3.00× (1.25–4.00) | yes |"),
            "{md}"
        );
        assert!(
            md.contains("| **3.00× (1.25–4.00)** | 0.50× (0.50–0.50) |"),
            "{md}"
        );
        assert!(
            md.contains("median of the ratios measured in each round"),
            "{md}"
        );
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
