//! Kubernetes label selectors (`a=b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`, comma = AND),
//! matched client-side: the exclude selector cannot be sent to the API server as a negation.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector(Vec<Req>);

impl Selector {
    pub fn parse(s: &str) -> Result<Self> {
        let err = |why: &str| {
            Error::config(format!(
                "label selector {s:?}: {why}; expected e.g. `app=web,tier!=cache,env in (prod,staging)`"
            ))
        };
        let mut reqs = Vec::new();
        for part in split_top_level(s).map_err(&err)? {
            let p = part.trim();
            if p.is_empty() {
                return Err(err("empty requirement"));
            }
            let req = if let Some(k) = p.strip_prefix('!') {
                Req::Absent(key(k.trim()).map_err(&err)?)
            } else if let Some((k, rest)) = split_word(p, " notin ") {
                Req::NotIn(key(k).map_err(&err)?, set(rest).map_err(&err)?)
            } else if let Some((k, rest)) = split_word(p, " in ") {
                Req::In(key(k).map_err(&err)?, set(rest).map_err(&err)?)
            } else if let Some((k, v)) = p.split_once("!=") {
                Req::Ne(key(k.trim()).map_err(&err)?, value(v.trim()).map_err(&err)?)
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                Req::Eq(key(k.trim()).map_err(&err)?, value(v.trim()).map_err(&err)?)
            } else {
                Req::Exists(key(p).map_err(&err)?)
            };
            reqs.push(req);
        }
        Ok(Selector(reqs))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => labels.get(k) == Some(v),
            Req::Ne(k, v) => labels.get(k) != Some(v),
            Req::Exists(k) => labels.contains_key(k),
            Req::Absent(k) => !labels.contains_key(k),
            Req::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Req::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
        })
    }
}

fn split_top_level(s: &str) -> std::result::Result<Vec<&str>, &'static str> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err("unbalanced parentheses");
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses");
    }
    out.push(&s[start..]);
    Ok(out)
}

fn split_word<'a>(p: &'a str, word: &str) -> Option<(&'a str, &'a str)> {
    let i = p.find(word)?;
    Some((p[..i].trim(), p[i + word.len()..].trim()))
}

fn key(k: &str) -> std::result::Result<String, &'static str> {
    let ok = !k.is_empty()
        && k.len() <= 316
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(k.to_owned())
    } else {
        Err("invalid label key")
    }
}

fn value(v: &str) -> std::result::Result<String, &'static str> {
    let ok = v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(v.to_owned())
    } else {
        Err("invalid label value")
    }
}

fn set(s: &str) -> std::result::Result<Vec<String>, &'static str> {
    let inner = s
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or("a set must be written (a,b)")?;
    inner.split(',').map(|v| value(v.trim())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_requirement_form_matches_like_kubernetes() {
        let l = labels(&[("app", "web"), ("env", "prod")]);
        for (sel, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app", true),
            ("!app", false),
            ("!backup.eternia.io/skip", true),
            ("env in (prod,staging)", true),
            ("env notin (prod)", false),
            ("tier notin (cache)", true),
            ("app=web,env in (dev)", false),
            ("app=web, env in (prod, staging)", true),
        ] {
            assert_eq!(Selector::parse(sel).unwrap().matches(&l), want, "{sel}");
        }
    }

    #[test]
    fn malformed_selectors_are_configuration_errors() {
        for sel in [
            "",
            "app=web,",
            "env in prod",
            "env in (prod",
            "a b=c",
            "app=we b",
        ] {
            let e = Selector::parse(sel).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{sel}");
        }
    }
}
