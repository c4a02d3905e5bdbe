//! `dotdo bench` as a user runs it: it starts its own server, runs scenarios, checks the
//! server's state after them, and prints one JSON record per scenario.

use std::process::Command;

fn dotdo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dotdo"))
}

#[test]
fn bench_runs_scenarios_and_prints_json_records() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("r.jsonl");
    let out = dotdo()
        .args(["bench", "--json", "-n", "200", "-c", "4", "--warmup", "0.1"])
        .args([
            "-s",
            "health,sql-incr-one,object-call,rpc-pipelined-3,event-fanout",
        ])
        .arg("--out")
        .arg(&results)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let records: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = records
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "health",
            "sql-incr-one",
            "object-call",
            "rpc-pipelined-3",
            "event-fanout"
        ]
    );
    for r in &records {
        assert_eq!(r["target"], "dotdo");
        assert_eq!(r["durability"], "normal");
        assert_eq!(r["iterations"], 200, "{r}");
        assert_eq!(r["concurrency"], 4);
        assert!(r["throughput"].as_f64().unwrap() > 0.0);
        let l = &r["latency"];
        let v = |k: &str| l[k].as_f64().unwrap();
        assert!(v("min") <= v("p50") && v("p50") <= v("p95") && v("p95") <= v("p99"));
        assert!(v("p99") <= v("max") && v("stddev") >= 0.0, "{l}");
        assert!(r["machine"]["cpus"].as_u64().unwrap() >= 1);
        assert!(r["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(r["server"]["rss_mb"].as_f64().unwrap() > 0.0);
    }
    // The same records went to the file, and the report compares them.
    assert_eq!(std::fs::read_to_string(&results).unwrap(), stdout);
    let report = dotdo()
        .arg("bench")
        .arg("--report")
        .arg(&results)
        .output()
        .unwrap();
    assert!(report.status.success());
    let md = String::from_utf8(report.stdout).unwrap();
    assert!(
        md.contains("| dotdo | normal | sql-incr-one | 4 | 200 |"),
        "{md}"
    );
}

#[test]
fn bad_bench_arguments_are_clear_errors() {
    for (args, says) in [
        (vec!["-s", "nope"], "no scenario `nope`"),
        (vec!["-c", "0"], "--concurrency"),
        (
            vec!["--durability", "sometimes"],
            "--durability must be normal or fsync",
        ),
        (vec!["--url", "https://example.com"], "only http://"),
    ] {
        let out = dotdo().arg("bench").args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
