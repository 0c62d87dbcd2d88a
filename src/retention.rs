//! Retention as a pure function: backups and a policy in, what to keep (and why) and what to delete out.
//! A backup is kept when any rule keeps it; the newest backup is always kept.

use std::collections::BTreeMap;

use jiff::{Span, Timestamp, tz::TimeZone};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Keep everything created within this many days (0 = rule off).
    pub keep_days: u32,
    pub keep_last: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    /// Safety backups (a restore's, before it changed anything) are kept this many days, on their own:
    /// the newest always, and they neither count for nor displace the rules above.
    pub safety_keep_days: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    Newest,
    WithinDays,
    Last,
    Daily,
    Weekly,
    Monthly,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<'a> {
    pub keep: Vec<(&'a str, Vec<Reason>)>,
    pub delete: Vec<&'a str>,
}

/// `backups` are `(name, created, is a safety backup)`: the backups under `policy`, the safety backups
/// under their own `safety_keep_days` (and their newest).
pub fn plan_with_safety<'a>(
    backups: &[(&'a str, Timestamp, bool)],
    policy: &Policy,
    now: Timestamp,
) -> Plan<'a> {
    let of = |safety: bool| -> Vec<(&'a str, Timestamp)> {
        backups
            .iter()
            .filter(|b| b.2 == safety)
            .map(|b| (b.0, b.1))
            .collect()
    };
    let mut p = plan(&of(false), policy, now);
    let safety_policy = Policy {
        keep_days: policy.safety_keep_days,
        ..Policy::default()
    };
    let s = plan(&of(true), &safety_policy, now);
    p.keep.extend(s.keep);
    p.delete.extend(s.delete);
    p
}

/// `backups` are `(name, created)`, in any order. Output lists are newest first.
pub fn plan<'a>(backups: &[(&'a str, Timestamp)], policy: &Policy, now: Timestamp) -> Plan<'a> {
    let mut sorted: Vec<(&'a str, Timestamp)> = backups.to_vec();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(a.0)));

    let mut reasons: BTreeMap<usize, Vec<Reason>> = BTreeMap::new();
    let mut add = |i: usize, r: Reason| reasons.entry(i).or_default().push(r);

    if !sorted.is_empty() {
        add(0, Reason::Newest);
    }
    if policy.keep_days > 0 {
        let cutoff = now
            .checked_sub(Span::new().hours(24 * i64::from(policy.keep_days)))
            .unwrap_or(Timestamp::MIN);
        for (i, (_, t)) in sorted.iter().enumerate() {
            if *t >= cutoff {
                add(i, Reason::WithinDays);
            }
        }
    }
    for i in 0..sorted.len().min(policy.keep_last as usize) {
        add(i, Reason::Last);
    }
    type BucketKey = fn(Timestamp) -> (i32, i32);
    let buckets: [(u32, Reason, BucketKey); 3] = [
        (policy.keep_daily, Reason::Daily, |t| {
            let d = t.to_zoned(TimeZone::UTC).date();
            (i32::from(d.year()), i32::from(d.day_of_year()))
        }),
        (policy.keep_weekly, Reason::Weekly, |t| {
            let w = t.to_zoned(TimeZone::UTC).date().iso_week_date();
            (i32::from(w.year()), i32::from(w.week()))
        }),
        (policy.keep_monthly, Reason::Monthly, |t| {
            let d = t.to_zoned(TimeZone::UTC).date();
            (i32::from(d.year()), i32::from(d.month()))
        }),
    ];
    for (count, reason, key) in buckets {
        let mut last_key = None;
        let mut kept = 0;
        for (i, (_, t)) in sorted.iter().enumerate() {
            if kept >= count {
                break;
            }
            let k = key(*t);
            if last_key != Some(k) {
                last_key = Some(k);
                kept += 1;
                add(i, reason);
            }
        }
    }

    let mut keep = Vec::new();
    let mut delete = Vec::new();
    for (i, (name, _)) in sorted.iter().enumerate() {
        match reasons.remove(&i) {
            Some(r) => keep.push((*name, r)),
            None => delete.push(*name),
        }
    }
    Plan { keep, delete }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn deleted(backups: &[(&'static str, &str)], policy: Policy, now: &str) -> Vec<&'static str> {
        let input: Vec<(&str, Timestamp)> = backups.iter().map(|(n, t)| (*n, ts(t))).collect();
        let mut d = plan(&input, &policy, ts(now)).delete;
        d.sort();
        d
    }

    const DAILY_FOR_TEN_DAYS: &[(&str, &str)] = &[
        ("d01", "2026-11-01T02:00:00Z"),
        ("d02", "2026-11-02T02:00:00Z"),
        ("d03", "2026-11-03T02:00:00Z"),
        ("d04", "2026-11-04T02:00:00Z"),
        ("d05", "2026-11-05T02:00:00Z"),
        ("d06", "2026-11-06T02:00:00Z"),
        ("d07", "2026-11-07T02:00:00Z"),
        ("d08", "2026-11-08T02:00:00Z"),
        ("d09", "2026-11-09T02:00:00Z"),
        ("d10", "2026-11-10T02:00:00Z"),
    ];

    #[test]
    fn safety_backups_are_kept_on_their_own_and_never_displace_a_backup() {
        let input: Vec<(&str, Timestamp, bool)> = vec![
            ("b1", ts("2026-11-01T02:00:00Z"), false),
            ("b2", ts("2026-11-09T02:00:00Z"), false),
            ("s-old", ts("2026-11-01T12:00:00Z"), true),
            ("s-new", ts("2026-11-09T12:00:00Z"), true),
        ];
        let policy = Policy {
            keep_last: 2,
            safety_keep_days: 3,
            ..Policy::default()
        };
        let p = plan_with_safety(&input, &policy, ts("2026-11-10T00:00:00Z"));
        let kept: Vec<&str> = p.keep.iter().map(|(n, _)| *n).collect();
        // keep_last 2 counts backups only: the newer safety backups do not push b1 out.
        assert!(kept.contains(&"b1") && kept.contains(&"b2"), "{kept:?}");
        assert!(kept.contains(&"s-new"));
        assert_eq!(
            p.delete,
            vec!["s-old"],
            "older than the safety backups' 3 days"
        );
    }

    #[test]
    fn seven_days_keeps_the_last_week_like_the_seed_runbook() {
        let policy = Policy {
            keep_days: 7,
            ..Policy::default()
        };
        assert_eq!(
            deleted(DAILY_FOR_TEN_DAYS, policy, "2026-11-10T03:00:00Z"),
            ["d01", "d02", "d03"]
        );
    }

    #[test]
    fn the_newest_backup_is_kept_even_when_every_rule_would_drop_it() {
        let policy = Policy {
            keep_days: 7,
            ..Policy::default()
        };
        assert_eq!(
            deleted(DAILY_FOR_TEN_DAYS, policy, "2027-06-01T00:00:00Z").len(),
            9
        );
        let p = plan(
            &[("only", ts("2020-01-01T00:00:00Z"))],
            &Policy {
                keep_days: 1,
                ..Policy::default()
            },
            ts("2026-01-01T00:00:00Z"),
        );
        assert_eq!(p.delete, Vec::<&str>::new());
        assert_eq!(p.keep, vec![("only", vec![Reason::Newest])]);
    }

    #[test]
    fn keep_last_keeps_that_many_newest() {
        let policy = Policy {
            keep_last: 3,
            ..Policy::default()
        };
        assert_eq!(
            deleted(DAILY_FOR_TEN_DAYS, policy, "2026-11-10T03:00:00Z"),
            ["d01", "d02", "d03", "d04", "d05", "d06", "d07"]
        );
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        let backups = [
            ("a", "2026-11-09T01:00:00Z"),
            ("b", "2026-11-09T13:00:00Z"),
            ("c", "2026-11-10T01:00:00Z"),
            ("d", "2026-11-10T13:00:00Z"),
            ("e", "2026-11-08T13:00:00Z"),
        ];
        let policy = Policy {
            keep_daily: 2,
            ..Policy::default()
        };
        assert_eq!(
            deleted(&backups, policy, "2026-11-11T00:00:00Z"),
            ["a", "c", "e"]
        );
    }

    #[test]
    fn weekly_and_monthly_keep_one_per_iso_week_and_calendar_month() {
        let backups = [
            ("sep30", "2026-09-30T02:00:00Z"),
            ("oct15", "2026-10-15T02:00:00Z"),
            ("oct31", "2026-10-31T02:00:00Z"),
            ("nov02", "2026-11-02T02:00:00Z"), // Monday, ISO week 45
            ("nov08", "2026-11-08T02:00:00Z"), // Sunday, ISO week 45
            ("nov09", "2026-11-09T02:00:00Z"), // Monday, ISO week 46
        ];
        let weekly = Policy {
            keep_weekly: 2,
            ..Policy::default()
        };
        assert_eq!(
            deleted(&backups, weekly, "2026-11-10T00:00:00Z"),
            ["nov02", "oct15", "oct31", "sep30"]
        );
        let monthly = Policy {
            keep_monthly: 3,
            ..Policy::default()
        };
        assert_eq!(
            deleted(&backups, monthly, "2026-11-10T00:00:00Z"),
            ["nov02", "nov08", "oct15"]
        );
    }

    #[test]
    fn rules_combine_as_a_union() {
        let policy = Policy {
            keep_days: 2,
            keep_last: 4,
            ..Policy::default()
        };
        assert_eq!(
            deleted(DAILY_FOR_TEN_DAYS, policy, "2026-11-10T03:00:00Z"),
            ["d01", "d02", "d03", "d04", "d05", "d06"]
        );
    }

    #[test]
    fn no_backups_means_nothing_to_do() {
        let p = plan(
            &[],
            &Policy {
                keep_days: 7,
                ..Policy::default()
            },
            ts("2026-11-10T03:00:00Z"),
        );
        assert!(p.keep.is_empty() && p.delete.is_empty());
    }
}
