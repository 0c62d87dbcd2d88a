//! In-memory guards with bounded size: a token-bucket rate limiter per source address, and an
//! expiring set of seen ids (token `jti`s, Slack trigger ids) for replay and retry detection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept at most; beyond that the oldest-expiring are dropped (memory stays bounded under a flood).
const MAX_ENTRIES: usize = 100_000;

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_minute` 0 disables the limit.
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            per_second: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.per_second > 0.0
    }

    /// Takes one token for `source`; false when its bucket is empty.
    pub fn allow(&self, source: IpAddr, now: Instant) -> bool {
        if !self.enabled() {
            return true;
        }
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if buckets.len() >= MAX_ENTRIES {
            // Sources whose bucket has refilled carry no state worth keeping.
            let full_after = Duration::from_secs_f64(self.burst / self.per_second);
            buckets.retain(|_, (_, t)| now.duration_since(*t) < full_after);
        }
        let (tokens, last) = buckets.entry(source).or_insert((self.burst, now));
        let refill = now.duration_since(*last).as_secs_f64() * self.per_second;
        *tokens = (*tokens + refill).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Ids seen recently, each with a value (e.g. the restore it started) and an expiry.
pub struct SeenIds<V> {
    entries: Mutex<HashMap<String, (V, i64)>>,
}

impl<V: Clone> Default for SeenIds<V> {
    fn default() -> Self {
        SeenIds {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone> SeenIds<V> {
    /// Records `id` until `expires` (seconds since the epoch) unless present; returns the value
    /// recorded before, if any.
    pub fn insert_or_get(&self, id: &str, value: V, expires: i64, now: i64) -> Option<V> {
        let mut m = self.entries.lock().expect("seen ids lock");
        if let Some((v, exp)) = m.get(id)
            && *exp >= now
        {
            return Some(v.clone());
        }
        if m.len() >= MAX_ENTRIES {
            m.retain(|_, (_, exp)| *exp >= now);
            if m.len() >= MAX_ENTRIES {
                let oldest = m
                    .iter()
                    .min_by_key(|(_, (_, exp))| *exp)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    m.remove(&k);
                }
            }
        }
        m.insert(id.to_owned(), (value, expires));
        None
    }

    pub fn get(&self, id: &str, now: i64) -> Option<V> {
        let m = self.entries.lock().expect("seen ids lock");
        m.get(id)
            .filter(|(_, exp)| *exp >= now)
            .map(|(v, _)| v.clone())
    }

    pub fn set(&self, id: &str, value: V, expires: i64) {
        let mut m = self.entries.lock().expect("seen ids lock");
        m.insert(id.to_owned(), (value, expires));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_burst_then_the_steady_rate_and_other_sources_are_unaffected() {
        let rl = RateLimiter::new(60, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        assert!((0..3).all(|_| rl.allow(a, t0)));
        assert!(!rl.allow(a, t0));
        assert!(rl.allow(b, t0));
        assert!(rl.allow(a, t0 + Duration::from_millis(1100)));
        assert!(!rl.allow(a, t0 + Duration::from_millis(1200)));
    }

    #[test]
    fn a_seen_id_is_reported_until_it_expires() {
        let seen = SeenIds::default();
        assert_eq!(seen.insert_or_get("jti-1", 1, 100, 50), None);
        assert_eq!(seen.insert_or_get("jti-1", 2, 100, 60), Some(1));
        assert_eq!(seen.insert_or_get("jti-1", 3, 200, 101), None);
    }
}
