//! Who may call: JWT verification (HS256 secret, JWKS incl. GitHub Actions OIDC) with its subject and
//! claim policy, Slack request signing and confirmation tokens, and the `*` patterns both use.

pub mod jwt;
pub mod pattern;
pub mod slack;
