//! Retry policies: how often, and how long apart, an action or a delivery is attempted.

use serde::{Deserialize, Serialize};

/// Exponential backoff with jitter. The defaults are those of `$.do` (SPEC §2): 3 attempts,
/// first delay 100 ms, doubling, at most 30 s, plus 0–25 % jitter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_delay_ms: u64,
    pub max_delay_ms: u64,
    /// Growth of the delay from one retry to the next.
    pub multiplier: f64,
    /// Up to this fraction of the delay is added at random, so retries of many failed calls
    /// do not arrive together.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_delay_ms: 100,
            max_delay_ms: 30_000,
            multiplier: 2.0,
            jitter: 0.25,
        }
    }
}

/// Largest `maxAttempts` a policy may ask for.
pub const MAX_ATTEMPTS: u32 = 100;
/// Longest delay a policy may ask for (one day).
pub const MAX_DELAY_MS: u64 = 24 * 3600 * 1000;

impl RetryPolicy {
    /// The default for event deliveries (to objects and webhooks): receivers may be down
    /// for a while, so more patience than an action: 10 attempts over about 50 s.
    pub fn delivery() -> Self {
        RetryPolicy {
            max_attempts: 10,
            ..RetryPolicy::default()
        }
    }

    pub fn check(&self) -> Result<(), String> {
        if self.max_attempts == 0 || self.max_attempts > MAX_ATTEMPTS {
            return Err(format!("retry.maxAttempts must be 1 to {MAX_ATTEMPTS}"));
        }
        if self.initial_delay_ms > MAX_DELAY_MS || self.max_delay_ms > MAX_DELAY_MS {
            return Err(format!("retry delays must be at most {MAX_DELAY_MS} ms"));
        }
        if self.max_delay_ms < self.initial_delay_ms {
            return Err("retry.maxDelayMs must be at least retry.initialDelayMs".into());
        }
        if !(1.0..=10.0).contains(&self.multiplier) {
            return Err("retry.multiplier must be between 1 and 10".into());
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err("retry.jitter must be between 0 and 1".into());
        }
        Ok(())
    }

    /// The delay before the next attempt once `attempts` attempts have failed; `unit` in
    /// `[0, 1)` picks the jitter. `None` when no attempt is left.
    pub fn delay_after(&self, attempts: u32, unit: f64) -> Option<u64> {
        if attempts >= self.max_attempts {
            return None;
        }
        let exp = i32::try_from(attempts.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = (self.initial_delay_ms as f64 * self.multiplier.powi(exp))
            .min(self.max_delay_ms as f64);
        let jittered = base * (1.0 + self.jitter * unit.clamp(0.0, 1.0));
        Some(jittered.min(self.max_delay_ms as f64).round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay_after(1, 0.0), Some(100));
        assert_eq!(p.delay_after(2, 0.0), Some(200));
        assert_eq!(p.delay_after(3, 0.0), None, "3 attempts in all");
        assert_eq!(p.delay_after(1, 0.999), Some(125));
        assert_eq!(p.delay_after(2, 0.5), Some(225));
    }

    #[test]
    fn capped_and_jitter_bounded() {
        let p = RetryPolicy {
            max_attempts: 40,
            ..RetryPolicy::default()
        };
        assert_eq!(p.delay_after(9, 0.0), Some(25_600));
        assert_eq!(p.delay_after(10, 0.0), Some(30_000));
        assert_eq!(
            p.delay_after(30, 0.99),
            Some(30_000),
            "jitter never passes the cap"
        );
        for attempts in 1..40 {
            for unit in [0.0, 0.3, 0.999] {
                let d = p.delay_after(attempts, unit).unwrap();
                let base = p.delay_after(attempts, 0.0).unwrap();
                assert!(d >= base && d as f64 <= (base as f64 * 1.25).ceil());
            }
        }
    }

    #[test]
    fn delivery_policy_total_wait() {
        let p = RetryPolicy::delivery();
        let total: u64 = (1..p.max_attempts)
            .filter_map(|a| p.delay_after(a, 0.0))
            .sum();
        assert!((45_000..=60_000).contains(&total), "{total}");
    }

    #[test]
    fn rejects_nonsense() {
        let bad = [
            RetryPolicy {
                max_attempts: 0,
                ..Default::default()
            },
            RetryPolicy {
                max_attempts: 1000,
                ..Default::default()
            },
            RetryPolicy {
                multiplier: 0.5,
                ..Default::default()
            },
            RetryPolicy {
                jitter: 2.0,
                ..Default::default()
            },
            RetryPolicy {
                initial_delay_ms: 500,
                max_delay_ms: 100,
                ..Default::default()
            },
        ];
        for p in bad {
            assert!(p.check().is_err(), "{p:?}");
        }
        assert!(RetryPolicy::default().check().is_ok());
    }
}
