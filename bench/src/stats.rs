//! Latency summaries.

use serde_json::{Value, json};
use std::time::Duration;

/// A scenario's result line.
pub struct Line(pub Value);

impl Line {
    /// Summarizes `latencies` of `ops` operations that took `elapsed` in all.
    pub fn new(mut latencies: Vec<Duration>, elapsed: Duration) -> Line {
        latencies.sort_unstable();
        let ops = latencies.len();
        let pct = |p: f64| -> f64 {
            if latencies.is_empty() {
                return 0.0;
            }
            // Nearest rank.
            let rank = ((p / 100.0) * ops as f64).ceil() as usize;
            let d = latencies[rank.clamp(1, ops) - 1];
            (d.as_secs_f64() * 1e6).round() / 1e3
        };
        Line(json!({
            "ops": ops,
            "p50_ms": pct(50.0),
            "p95_ms": pct(95.0),
            "p99_ms": pct(99.0),
            "throughput": (ops as f64 / elapsed.as_secs_f64()).round(),
        }))
    }

    pub fn with(mut self, key: &str, value: Value) -> Line {
        self.0[key] = value;
        self
    }

    pub fn with_name(self, scenario: &str) -> Line {
        self.with("scenario", json!(scenario))
    }
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Scenario first, for people reading the lines.
        let mut obj = serde_json::Map::new();
        if let Some(s) = self.0.get("scenario") {
            obj.insert("scenario".into(), s.clone());
        }
        if let Some(map) = self.0.as_object() {
            for (k, v) in map {
                obj.insert(k.clone(), v.clone());
            }
        }
        write!(f, "{}", Value::Object(obj))
    }
}
