//! Arbitrary Authorization headers, JWKS documents and Slack requests: never a panic, never an accept.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use eternia_backup::webhook::jwt::{Policy, Verifier, parse_jwks};
use eternia_backup::webhook::slack::{Command, SlackAuth, SlashCommand};
use libfuzzer_sys::fuzz_target;

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let policy = Policy {
            issuer: Some("ci".into()),
            audience: Some("eternia-backup".into()),
            subjects: Vec::new(),
            claims: Vec::new(),
            max_age: Duration::from_secs(3600),
            leeway: Duration::from_secs(5),
        };
        Verifier::new(
            Some(&"fuzz-hs256-secret-0123456789abcdef0123".to_string().into()),
            None,
            policy,
        )
        .expect("verifier")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // Random bytes cannot carry a valid HMAC of the fixed secret.
    assert!(
        rt.block_on(verifier().verify(Some(&format!("Bearer {text}"))))
            .is_err()
    );
    let _ = parse_jwks(data);
    let auth = SlackAuth::new("slack-fuzz-secret".to_string().into());
    let (head, body) = data.split_at(data.len().min(80));
    let head = String::from_utf8_lossy(head);
    let mut parts = head.splitn(2, '|');
    let (ts, sig) = (parts.next(), parts.next());
    let now = ts.and_then(|t| t.parse::<i64>().ok()).unwrap_or(0);
    // Nothing the fuzzer writes can carry the HMAC of the secret over its own body.
    assert!(auth.verify(ts, sig, body, now).is_err());
    let _ = serde_urlencoded::from_bytes::<SlashCommand>(body);
    let _ = auth.open_confirmation(&text);
    let _ = Command::parse(&text);
});
