//! Allowlist patterns: literal text with `*` matching any run of characters (e.g.
//! `repo:eternia/app:environment:*`). No other metacharacters, so a subject can never be read as a regex.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    pub fn new(p: &str) -> Pattern {
        Pattern(p.trim().to_owned())
    }

    pub fn list(items: &[String]) -> Vec<Pattern> {
        items
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(Pattern::new)
            .collect()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the pattern does not pin an owner: nothing literal before its first `*`, or a GitHub
    /// subject whose owner is not spelled out whole (`*`, `repo:*`, `repo:my-org*`, which also matches
    /// `repo:my-org-evil/...`). With a public OIDC issuer such a pattern admits tokens other
    /// repositories can get.
    pub fn matches_any_owner(&self) -> bool {
        let Some(star) = self.0.find('*') else {
            return false;
        };
        let literal = &self.0[..star];
        literal.is_empty()
            || (literal.to_ascii_lowercase().starts_with("repo:") && !literal.contains('/'))
    }

    pub fn matches(&self, text: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or_default();
        let Some(mut rest) = text.strip_prefix(first) else {
            return false;
        };
        let tail: Vec<&str> = parts.collect();
        let Some((last, middle)) = tail.split_last() else {
            return rest.is_empty();
        };
        for part in middle {
            match rest.find(part) {
                Some(i) => rest = &rest[i + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    #[test]
    fn a_pattern_that_does_not_name_the_owner_whole_is_open_to_any_repository() {
        for open in [
            "*",
            "*:environment:production",
            "repo:*",
            "repo:eternia*",
            "REPO:*/app:*",
        ] {
            assert!(Pattern::new(open).matches_any_owner(), "{open}");
        }
        for pinned in [
            "repo:eternia/app:environment:production",
            "repo:eternia/*",
            "repo:eternia/app:*",
            "system:serviceaccount:ci:*",
        ] {
            assert!(!Pattern::new(pinned).matches_any_owner(), "{pinned}");
        }
    }

    #[test]
    fn a_literal_pattern_matches_only_itself() {
        let p = Pattern::new("repo:eternia/app:environment:production");
        assert!(p.matches("repo:eternia/app:environment:production"));
        assert!(!p.matches("repo:eternia/app:environment:production2"));
        assert!(!p.matches("repo:eternia/app:environment:prod"));
    }

    #[test]
    fn a_star_matches_any_run_of_characters_anchored_at_both_ends() {
        let p = Pattern::new("repo:eternia/*:environment:production");
        assert!(p.matches("repo:eternia/app:environment:production"));
        assert!(p.matches("repo:eternia/a/b:environment:production"));
        assert!(!p.matches("repo:evil/app:environment:production"));
        assert!(!p.matches("repo:eternia/app:environment:production:x"));
        assert!(Pattern::new("*").matches(""));
        assert!(Pattern::new("a*b*c").matches("abc"));
        assert!(!Pattern::new("a*bc*c").matches("abc"));
    }
}
