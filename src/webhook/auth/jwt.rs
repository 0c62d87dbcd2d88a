//! Bearer tokens from CI: HS256 with a shared secret, RS256/ES256 against a JWKS (a file, or a URL fetched
//! and cached, refetched when a token names an unknown `kid`). Then the claim policy: issuer, audience,
//! allowed subjects, extra claim constraints, token age. A refusal carries a reason for the log and the
//! metrics, never the token.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tracing::{info, instrument, warn};

use super::pattern::Pattern;

/// Why a token was refused: the `reason` label of `eternia_webhook_auth_failures_total` and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotConfigured,
    Missing,
    Malformed,
    AlgNone,
    AlgorithmNotAllowed,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    MissingClaim,
    SubjectNotAllowed,
    ClaimNotAllowed,
    TooOld,
    Replayed,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NotConfigured => "not_configured",
            Refusal::Missing => "missing_token",
            Refusal::Malformed => "malformed",
            Refusal::AlgNone => "alg_none",
            Refusal::AlgorithmNotAllowed => "algorithm_not_allowed",
            Refusal::UnknownKey => "unknown_kid",
            Refusal::BadSignature => "bad_signature",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::WrongIssuer => "wrong_issuer",
            Refusal::WrongAudience => "wrong_audience",
            Refusal::MissingClaim => "missing_claim",
            Refusal::SubjectNotAllowed => "subject_not_allowed",
            Refusal::ClaimNotAllowed => "claim_not_allowed",
            Refusal::TooOld => "token_too_old",
            Refusal::Replayed => "replayed_jti",
        }
    }

    /// What the caller is told (no detail that helps forge a token).
    pub fn message(self) -> &'static str {
        match self {
            Refusal::NotConfigured => {
                "token verification is not configured on this webhook (set WEBHOOK_JWT_HS256_SECRET or a JWKS)"
            }
            Refusal::Missing => "missing Authorization: Bearer <token>",
            Refusal::Malformed | Refusal::AlgNone | Refusal::AlgorithmNotAllowed => {
                "the token is malformed or uses an algorithm this webhook does not accept"
            }
            Refusal::UnknownKey | Refusal::BadSignature => "the token signature is not valid",
            Refusal::Expired => "the token has expired",
            Refusal::NotYetValid => "the token is not valid yet",
            Refusal::WrongIssuer | Refusal::WrongAudience | Refusal::MissingClaim => {
                "the token's issuer, audience or required claims do not match this webhook"
            }
            Refusal::SubjectNotAllowed | Refusal::ClaimNotAllowed => {
                "this token's subject is not allowed to restore"
            }
            Refusal::TooOld => "the token is older than this webhook accepts",
            Refusal::Replayed => "this token was already used for another request",
        }
    }
}

/// Who called, as far as the verified token says.
#[derive(Debug, Clone)]
pub struct Caller {
    pub subject: String,
    pub issuer: Option<String>,
    pub jti: Option<String>,
    /// `exp`, seconds since the epoch: how long a replay record must be kept.
    pub expires: i64,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    iat: Option<i64>,
    exp: i64,
    #[serde(flatten)]
    other: HashMap<String, serde_json::Value>,
}

#[derive(Debug, Clone)]
pub enum JwksSource {
    File(PathBuf),
    Url(url::Url),
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::File(p) => write!(f, "{}", p.display()),
            JwksSource::Url(u) => write!(f, "{u}"),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Empty: any subject (only allowed with an HS256 shared secret).
    pub subjects: Vec<Pattern>,
    /// Claim name → accepted patterns; the claim must be a string matching one.
    pub claims: Vec<(String, Vec<Pattern>)>,
    pub max_age: Duration,
    pub leeway: Duration,
}

impl Policy {
    /// Parses `claim=pattern` constraints (repeat a claim for alternatives).
    pub fn parse_claims(items: &[String]) -> Result<Vec<(String, Vec<Pattern>)>, String> {
        let mut out: Vec<(String, Vec<Pattern>)> = Vec::new();
        for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let (k, v) = item.split_once('=').ok_or_else(|| {
                format!("WEBHOOK_JWT_CLAIMS entry {item:?} is not claim=pattern (e.g. environment=production)")
            })?;
            let (k, v) = (k.trim(), v.trim());
            if k.is_empty() || v.is_empty() {
                return Err(format!(
                    "WEBHOOK_JWT_CLAIMS entry {item:?} has an empty claim name or pattern"
                ));
            }
            match out.iter_mut().find(|(name, _)| name == k) {
                Some((_, pats)) => pats.push(Pattern::new(v)),
                None => out.push((k.to_owned(), vec![Pattern::new(v)])),
            }
        }
        Ok(out)
    }
}

struct KeyEntry {
    alg: Algorithm,
    key: DecodingKey,
}

/// Trusted asymmetric keys by `kid`, refreshed from their source at most once per `min_refresh`.
struct Jwks {
    source: JwksSource,
    keys: RwLock<HashMap<String, KeyEntry>>,
    last_load: tokio::sync::Mutex<Option<Instant>>,
    min_refresh: Duration,
    http: reqwest::Client,
}

pub struct Verifier {
    hs256: Option<DecodingKey>,
    jwks: Option<Jwks>,
    policy: Policy,
}

impl Verifier {
    /// Checks that the configuration is safe before the webhook starts: a JWKS (keys anyone may hold
    /// tokens from, e.g. GitHub) needs an issuer, an audience and subject patterns.
    pub fn new(
        hs256_secret: Option<&SecretString>,
        jwks: Option<JwksSource>,
        policy: Policy,
    ) -> Result<Verifier, String> {
        if jwks.is_some()
            && (policy.issuer.is_none() || policy.audience.is_none() || policy.subjects.is_empty())
        {
            return Err("a JWKS is configured but WEBHOOK_JWT_ISSUER, WEBHOOK_JWT_AUDIENCE or WEBHOOK_ALLOWED_SUBJECTS is empty: \
                 with public keys (e.g. GitHub Actions OIDC) anyone could mint a token, so all three are required"
                .into());
        }
        if jwks.is_some()
            && let Some(open) = policy.subjects.iter().find(|p| p.matches_any_owner())
        {
            return Err(format!(
                "WEBHOOK_ALLOWED_SUBJECTS has {:?}, which matches every subject a public OIDC issuer signs (any \
                 repository can get a token for any audience): name the repository, e.g. \
                 repo:my-org/my-app:environment:production",
                open.as_str()
            ));
        }
        let hs256 = match hs256_secret {
            Some(s) if s.expose_secret().len() < 32 => {
                return Err("WEBHOOK_JWT_HS256_SECRET is shorter than 32 bytes; generate one with `openssl rand -hex 32`".into());
            }
            Some(s) => Some(DecodingKey::from_secret(s.expose_secret().as_bytes())),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot build the JWKS HTTP client: {e}"))?;
        Ok(Verifier {
            hs256,
            jwks: jwks.map(|source| Jwks {
                source,
                keys: RwLock::new(HashMap::new()),
                last_load: tokio::sync::Mutex::new(None),
                min_refresh: Duration::from_secs(60),
                http,
            }),
            policy,
        })
    }

    pub fn configured(&self) -> bool {
        self.hs256.is_some() || self.jwks.is_some()
    }

    /// Loads the JWKS once at startup (a failure is logged; the next token retries).
    pub async fn preload(&self) {
        if let Some(j) = &self.jwks {
            j.refresh(true).await;
        }
    }

    /// Verifies an `Authorization` header value.
    #[instrument(skip_all)]
    pub async fn verify(&self, authorization: Option<&str>) -> Result<Caller, Refusal> {
        if !self.configured() {
            return Err(Refusal::NotConfigured);
        }
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::Missing)?;
        let (alg, kid) = peek_header(token)?;
        let claims = match alg {
            Algorithm::HS256 => {
                let key = self.hs256.as_ref().ok_or(Refusal::AlgorithmNotAllowed)?;
                self.decode(token, key, alg)?
            }
            Algorithm::RS256 | Algorithm::ES256 => {
                let jwks = self.jwks.as_ref().ok_or(Refusal::AlgorithmNotAllowed)?;
                let kid = kid.ok_or(Refusal::UnknownKey)?;
                if !jwks.has(&kid) {
                    jwks.refresh(false).await;
                }
                let keys = jwks.keys.read().expect("jwks lock");
                let entry = keys.get(&kid).ok_or(Refusal::UnknownKey)?;
                if entry.alg != alg {
                    return Err(Refusal::AlgorithmNotAllowed);
                }
                self.decode(token, &entry.key, alg)?
            }
            _ => return Err(Refusal::AlgorithmNotAllowed),
        };
        self.authorize(claims)
    }

    fn decode(&self, token: &str, key: &DecodingKey, alg: Algorithm) -> Result<Claims, Refusal> {
        let mut v = Validation::new(alg);
        v.leeway = self.policy.leeway.as_secs();
        v.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.policy.issuer {
            Some(iss) => {
                v.set_issuer(&[iss]);
                required.push("iss");
            }
            None => v.iss = None,
        }
        match &self.policy.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        jsonwebtoken::decode::<Claims>(token, key, &v)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => Refusal::BadSignature,
                ErrorKind::ExpiredSignature => Refusal::Expired,
                ErrorKind::ImmatureSignature => Refusal::NotYetValid,
                ErrorKind::InvalidIssuer => Refusal::WrongIssuer,
                ErrorKind::InvalidAudience => Refusal::WrongAudience,
                ErrorKind::MissingRequiredClaim(_) => Refusal::MissingClaim,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    Refusal::AlgorithmNotAllowed
                }
                _ => Refusal::Malformed,
            })
    }

    fn authorize(&self, c: Claims) -> Result<Caller, Refusal> {
        let p = &self.policy;
        if !p.subjects.is_empty() && !p.subjects.iter().any(|s| s.matches(&c.sub)) {
            return Err(Refusal::SubjectNotAllowed);
        }
        for (name, patterns) in &p.claims {
            let value = c.other.get(name).and_then(|v| v.as_str());
            match value {
                Some(v) if patterns.iter().any(|pat| pat.matches(v)) => {}
                Some(_) => return Err(Refusal::ClaimNotAllowed),
                None => return Err(Refusal::MissingClaim),
            }
        }
        let now = jiff::Timestamp::now().as_second();
        let leeway = p.leeway.as_secs() as i64;
        let max_age = p.max_age.as_secs() as i64;
        match c.iat {
            Some(iat) if iat > now + leeway => return Err(Refusal::NotYetValid),
            Some(iat) if now - iat > max_age + leeway => return Err(Refusal::TooOld),
            None if c.exp - now > max_age + leeway => return Err(Refusal::TooOld),
            _ => {}
        }
        Ok(Caller {
            subject: c.sub,
            issuer: c.iss,
            jti: c.jti.filter(|j| !j.is_empty()),
            expires: c.exp,
        })
    }
}

/// The header's `alg` and `kid`, read before choosing a key (`alg: none` gets its own reason).
fn peek_header(token: &str) -> Result<(Algorithm, Option<String>), Refusal> {
    if token.len() > 16 * 1024 || token.split('.').count() != 3 {
        return Err(Refusal::Malformed);
    }
    let head = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| Refusal::Malformed)?;
    #[derive(Deserialize)]
    struct Head {
        alg: String,
        #[serde(default)]
        kid: Option<String>,
    }
    let h: Head = serde_json::from_slice(&bytes).map_err(|_| Refusal::Malformed)?;
    if h.alg.eq_ignore_ascii_case("none") {
        return Err(Refusal::AlgNone);
    }
    let alg = h
        .alg
        .parse::<Algorithm>()
        .map_err(|_| Refusal::AlgorithmNotAllowed)?;
    Ok((alg, h.kid))
}

/// Parses a JWKS document into usable keys: RSA keys for RS256 and P-256 keys for ES256 only; symmetric
/// (`oct`) keys and keys whose declared `alg` disagrees are skipped, so a public key can never be used
/// as an HMAC secret.
pub fn parse_jwks(doc: &[u8]) -> Result<HashMap<String, (Algorithm, DecodingKey)>, String> {
    let set: JwkSet =
        serde_json::from_slice(doc).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut out = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec)
                if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => continue,
        };
        if let Some(declared) = jwk.common.key_algorithm
            && format!("{declared:?}") != format!("{alg:?}")
        {
            continue;
        }
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            out.insert(kid, (alg, key));
        }
    }
    Ok(out)
}

/// The largest JWKS document read (GitHub's is about 2 KiB; a few dozen keys fit easily).
const MAX_JWKS_BYTES: usize = 256 << 10;

async fn read_file_bounded(p: &std::path::Path) -> Result<Vec<u8>, String> {
    let too_big = || {
        format!(
            "{} is larger than {} KiB",
            p.display(),
            MAX_JWKS_BYTES >> 10
        )
    };
    let meta = tokio::fs::metadata(p)
        .await
        .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    if meta.len() > MAX_JWKS_BYTES as u64 {
        return Err(too_big());
    }
    let doc = tokio::fs::read(p)
        .await
        .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    if doc.len() > MAX_JWKS_BYTES {
        return Err(too_big());
    }
    Ok(doc)
}

/// The response body, refused as soon as it passes the limit (never buffered whole first).
async fn read_body_bounded(mut r: reqwest::Response) -> Result<Vec<u8>, String> {
    let too_big = || format!("the response is larger than {} KiB", MAX_JWKS_BYTES >> 10);
    if r.content_length()
        .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
    {
        return Err(too_big());
    }
    let mut doc = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
        if doc.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(too_big());
        }
        doc.extend_from_slice(&chunk);
    }
    Ok(doc)
}

impl Jwks {
    fn has(&self, kid: &str) -> bool {
        self.keys.read().expect("jwks lock").contains_key(kid)
    }

    /// Reloads the key set unless it was loaded less than `min_refresh` ago (unknown `kid`s must not
    /// turn every bad token into a fetch).
    async fn refresh(&self, force: bool) {
        let mut last = self.last_load.lock().await;
        if !force && last.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return;
        }
        *last = Some(Instant::now());
        let doc = match &self.source {
            JwksSource::File(p) => read_file_bounded(p).await,
            JwksSource::Url(u) => match self.http.get(u.clone()).send().await {
                Ok(r) if r.status().is_success() => read_body_bounded(r).await,
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(format!("unreachable ({e})")),
            },
        };
        match doc.and_then(|d| parse_jwks(&d)) {
            // A key set that suddenly has no usable key is a broken source, not a rotation: keep the keys.
            Ok(keys) if keys.is_empty() && !self.keys.read().expect("jwks lock").is_empty() => {
                warn!(source = %self.source, "the JWKS has no usable key; keeping the keys loaded before")
            }
            Ok(keys) => {
                info!(source = %self.source, keys = keys.len(), "JWKS loaded");
                *self.keys.write().expect("jwks lock") = keys
                    .into_iter()
                    .map(|(kid, (alg, key))| (kid, KeyEntry { alg, key }))
                    .collect();
            }
            Err(e) => {
                warn!(source = %self.source, error = %e, "cannot load the JWKS; keeping the keys loaded before")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC_KEY: &str = r#"{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256",
        "x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}"#;

    fn jwks_file(dir: &std::path::Path) -> (std::path::PathBuf, Jwks) {
        let path = dir.join("jwks.json");
        let jwks = Jwks {
            source: JwksSource::File(path.clone()),
            keys: RwLock::new(HashMap::new()),
            last_load: tokio::sync::Mutex::new(None),
            min_refresh: Duration::ZERO,
            http: reqwest::Client::new(),
        };
        (path, jwks)
    }

    #[tokio::test]
    async fn a_key_set_that_comes_back_empty_keeps_the_working_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (path, jwks) = jwks_file(dir.path());
        std::fs::write(&path, format!(r#"{{"keys": [{EC_KEY}]}}"#)).unwrap();
        jwks.refresh(true).await;
        assert!(jwks.has("k1"));

        std::fs::write(&path, r#"{"keys": []}"#).unwrap();
        jwks.refresh(true).await;
        assert!(jwks.has("k1"), "an empty set replaced the working keys");
    }

    #[tokio::test]
    async fn an_oversized_key_set_is_refused_and_the_working_keys_stay() {
        let dir = tempfile::tempdir().unwrap();
        let (path, jwks) = jwks_file(dir.path());
        std::fs::write(&path, format!(r#"{{"keys": [{EC_KEY}]}}"#)).unwrap();
        jwks.refresh(true).await;

        let padding = " ".repeat(MAX_JWKS_BYTES);
        std::fs::write(&path, format!(r#"{{"keys": [{EC_KEY}]}}{padding}"#)).unwrap();
        assert!(
            read_file_bounded(&path)
                .await
                .unwrap_err()
                .contains("larger than")
        );
        jwks.refresh(true).await;
        assert!(jwks.has("k1"));
    }
}
