//! In-memory guards with bounded size: a token-bucket rate limiter per source address, and an
//! expiring set of seen ids (token `jti`s, Slack trigger ids) for replay and retry detection.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Entries kept at most per guard, under any flood of distinct sources or ids.
const MAX_ENTRIES: usize = 100_000;

/// A map of at most `2 × half` entries with constant work per insert: entries go into the current
/// generation; when it holds `half`, it becomes the previous one and the previous one is dropped whole.
/// A key found in the previous generation moves to the current one, so what is in use stays.
struct TwoGenerations<K, V> {
    current: HashMap<K, V>,
    previous: HashMap<K, V>,
    half: usize,
}

impl<K: Hash + Eq + Clone, V> TwoGenerations<K, V> {
    fn new(capacity: usize) -> Self {
        TwoGenerations {
            current: HashMap::new(),
            previous: HashMap::new(),
            half: (capacity / 2).max(1),
        }
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.current.get(k).or_else(|| self.previous.get(k))
    }

    /// The entry for `k`, created by `make` if it is in neither generation.
    fn entry(&mut self, k: &K, make: impl FnOnce() -> V) -> &mut V {
        if !self.current.contains_key(k) {
            let v = self.previous.remove(k).unwrap_or_else(make);
            if self.current.len() >= self.half {
                self.previous = std::mem::take(&mut self.current);
            }
            self.current.insert(k.clone(), v);
        }
        self.current.get_mut(k).expect("just inserted")
    }

    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<TwoGenerations<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_minute` 0 disables the limit.
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter {
        Self::with_capacity(per_minute, burst, MAX_ENTRIES)
    }

    fn with_capacity(per_minute: u32, burst: u32, capacity: usize) -> RateLimiter {
        RateLimiter {
            per_second: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(TwoGenerations::new(capacity)),
        }
    }

    pub fn enabled(&self) -> bool {
        self.per_second > 0.0
    }

    /// Takes one token for `source`; false when its bucket is empty. Constant work: no scan, whatever
    /// the number of sources. (A source dropped with an old generation starts again with a full
    /// bucket: under a flood of distinct sources a per-source limit says little anyway.)
    pub fn allow(&self, source: IpAddr, now: Instant) -> bool {
        if !self.enabled() {
            return true;
        }
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        let (tokens, last) = buckets.entry(&source, || (self.burst, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * self.per_second;
        *tokens = (*tokens + refill).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Sources tracked now (at most the capacity).
    pub fn tracked(&self) -> usize {
        self.buckets.lock().expect("rate limiter lock").len()
    }
}

/// Ids seen recently, each with a value (e.g. the restore it started) and an expiry; at most
/// `MAX_ENTRIES`, with constant work per insert.
pub struct SeenIds<V> {
    entries: Mutex<TwoGenerations<String, (V, i64)>>,
}

impl<V: Clone> Default for SeenIds<V> {
    fn default() -> Self {
        Self::with_capacity(MAX_ENTRIES)
    }
}

impl<V: Clone> SeenIds<V> {
    fn with_capacity(capacity: usize) -> Self {
        SeenIds {
            entries: Mutex::new(TwoGenerations::new(capacity)),
        }
    }

    /// Records `id` until `expires` (seconds since the epoch) unless present; returns the value
    /// recorded before, if any.
    pub fn insert_or_get(&self, id: &str, value: V, expires: i64, now: i64) -> Option<V> {
        let mut m = self.entries.lock().expect("seen ids lock");
        let key = id.to_owned();
        let mut fresh = false;
        let entry = m.entry(&key, || {
            fresh = true;
            (value.clone(), expires)
        });
        if !fresh && entry.1 >= now {
            return Some(entry.0.clone());
        }
        *entry = (value, expires);
        None
    }

    pub fn get(&self, id: &str, now: i64) -> Option<V> {
        let m = self.entries.lock().expect("seen ids lock");
        m.get(&id.to_owned())
            .filter(|(_, exp)| *exp >= now)
            .map(|(v, _)| v.clone())
    }

    pub fn set(&self, id: &str, value: V, expires: i64) {
        let mut m = self.entries.lock().expect("seen ids lock");
        let v = value.clone();
        *m.entry(&id.to_owned(), || (v, expires)) = (value, expires);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().expect("seen ids lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
    fn a_flood_of_distinct_sources_stays_within_the_capacity_and_a_busy_source_keeps_its_state() {
        let rl = RateLimiter::with_capacity(60, 2, 1_000);
        let busy: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        assert!(rl.allow(busy, t0) && rl.allow(busy, t0) && !rl.allow(busy, t0));
        for i in 0..100_000u32 {
            rl.allow(IpAddr::from(i.to_be_bytes()), t0);
            // The busy source keeps asking: its empty bucket stays with it through the rotations.
            if i % 400 == 0 {
                assert!(!rl.allow(busy, t0), "after {i} other sources");
            }
            assert!(rl.tracked() <= 1_000);
        }
    }

    #[test]
    fn the_seen_ids_stay_within_the_capacity_and_every_write_is_kept_until_rotated_out() {
        let seen = SeenIds::with_capacity(100);
        for i in 0..10_000 {
            seen.set(&format!("trigger-{i}"), i, 1_000);
            assert!(seen.len() <= 100);
            assert_eq!(seen.get(&format!("trigger-{i}"), 10), Some(i));
        }
        assert_eq!(seen.get("trigger-0", 10), None, "the oldest rotated out");
    }

    #[test]
    fn a_seen_id_is_reported_until_it_expires() {
        let seen = SeenIds::default();
        assert_eq!(seen.insert_or_get("jti-1", 1, 100, 50), None);
        assert_eq!(seen.insert_or_get("jti-1", 2, 100, 60), Some(1));
        assert_eq!(seen.insert_or_get("jti-1", 3, 200, 101), None);
    }
}
