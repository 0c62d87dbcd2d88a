//! Mutation fuzzing in the suite (not coverage-guided: a fixed xorshift sequence, so every run tries the
//! same inputs and a failure names the case to turn into a regression test). Thousands of damaged
//! archives, tokens, Slack requests and configuration strings: never a panic, never an accept without
//! a valid signature, never a damaged archive's content passed off as checked.

use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use eternia_backup::archive::Compression;
use eternia_backup::archive::Sidecar;
use eternia_backup::archive::codec::decoder;
use eternia_backup::archive::reader::walk;
use eternia_backup::webhook::jwt::{Policy, Verifier};
use eternia_backup::webhook::slack::{Command, SlackAuth};

use crate::helpers::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One of: flip a byte, overwrite a run with random bytes, truncate, duplicate a slice, insert bytes.
fn mutate(rng: &mut Rng, input: &[u8]) -> (String, Vec<u8>) {
    let mut v = input.to_vec();
    let at = rng.below(v.len());
    match rng.below(5) {
        0 => {
            v[at] ^= 1 << rng.below(8);
            (format!("flip bit at {at}"), v)
        }
        1 => {
            let n = 1 + rng.below(64).min(v.len() - at - 1);
            for b in &mut v[at..at + n] {
                *b = rng.next() as u8;
            }
            (format!("overwrite {n} bytes at {at}"), v)
        }
        2 => {
            v.truncate(at);
            (format!("truncate to {at}"), v)
        }
        3 => {
            let n = rng.below(4096).min(v.len() - at);
            let slice = v[at..at + n].to_vec();
            v.splice(at..at, slice);
            (format!("duplicate {n} bytes at {at}"), v)
        }
        _ => {
            let junk: Vec<u8> = (0..1 + rng.below(512)).map(|_| rng.next() as u8).collect();
            let n = junk.len();
            v.splice(at..at, junk);
            (format!("insert {n} bytes at {at}"), v)
        }
    }
}

#[test]
fn five_thousand_damaged_archives_never_panic_and_a_passing_walk_means_every_entry_matched() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    let name = list_json(dir.path())[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let archive = std::fs::read(dir.path().join(&name)).unwrap();
    let sidecar: Sidecar = serde_json::from_slice(
        &std::fs::read(dir.path().join(format!("{name}.manifest.json"))).unwrap(),
    )
    .unwrap();
    let manifest = sidecar.manifest;
    let check = |bytes: &[u8]| {
        let d = decoder(bytes, Compression::Gzip, false, &[]).unwrap();
        walk(&name, d, &manifest, |_, r| {
            // Read everything, bounded: a declared size larger than the data must end in an error.
            std::io::copy(&mut r.take(64 << 20), &mut std::io::sink()).map(|_| ())
        })
    };
    let original = check(&archive).expect("the undamaged archive passes");

    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut refused, mut passed) = (0, 0);
    for case in 0..5000 {
        let (what, damaged) = mutate(&mut rng, &archive);
        match catch_unwind(AssertUnwindSafe(|| check(&damaged))) {
            Err(_) => panic!("case {case} ({what}) panicked in the archive reader"),
            Ok(Err(_)) => refused += 1,
            Ok(Ok(summary)) => {
                // Damage the content checks cannot see (tar padding, the gzip header's mtime, bytes
                // after the end of the gzip stream): every entry still matched its manifest checksum,
                // so the content is the original. The whole-file SHA-256 (`verify`, `restore`) is what
                // refuses such a file.
                assert_eq!(summary.entries, original.entries, "case {case} ({what})");
                assert_eq!(summary.bytes, original.bytes, "case {case} ({what})");
                passed += 1;
            }
        }
    }
    eprintln!(
        "5000 damaged archives: {refused} refused, {passed} harmless (padding or header bytes)"
    );
    assert!(refused > 4000, "most damage is caught: {refused}");
}

#[tokio::test]
async fn five_thousand_mutated_tokens_are_never_accepted_and_never_panic() {
    let secret = "fuzz-hs256-secret-0123456789abcdef0123";
    let policy = Policy {
        issuer: Some("ci".into()),
        audience: Some("eternia-backup".into()),
        subjects: Vec::new(),
        claims: Vec::new(),
        max_age: Duration::from_secs(3600),
        leeway: Duration::from_secs(5),
    };
    let v = Verifier::new(Some(&secret.to_string().into()), None, policy).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"iss": "ci", "aud": "eternia-backup", "sub": "ci:x", "iat": now, "exp": now + 300}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    assert!(v.verify(Some(&format!("Bearer {token}"))).await.is_ok());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut accepted_equal = 0;
    for case in 0..5000 {
        let (what, bytes) = mutate(&mut rng, token.as_bytes());
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let header = format!("Bearer {text}");
        let r = v.verify(Some(&header)).await;
        if r.is_ok() {
            // Only a token whose signed parts are unchanged may pass (e.g. base64 padding bits).
            let strip = |t: &str| t.rsplit_once('.').map(|(signed, _)| signed.to_owned());
            assert_eq!(
                strip(&text),
                strip(&token),
                "case {case} ({what}) was accepted"
            );
            accepted_equal += 1;
        }
    }
    eprintln!(
        "5000 mutated tokens: {accepted_equal} accepted, all with the original signed content"
    );
}

#[test]
fn five_thousand_mutated_slack_requests_never_verify_and_never_panic() {
    use hmac::Mac;
    let auth = SlackAuth::new("slack-fuzz-secret".to_string().into());
    let body =
        b"token=x&team_id=T1&user_id=U1&channel_id=C1&text=restore+latest&trigger_id=t1".to_vec();
    let now = jiff::Timestamp::now().as_second();
    let ts = now.to_string();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"slack-fuzz-secret").unwrap();
    mac.update(format!("v0:{ts}:").as_bytes());
    mac.update(&body);
    let sig = format!("v0={}", hex::encode(mac.finalize().into_bytes()));
    assert!(auth.verify(Some(&ts), Some(&sig), &body, now).is_ok());
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for case in 0..5000 {
        let (what, new_body) = mutate(&mut rng, &body);
        let (swhat, new_sig) = mutate(&mut rng, sig.as_bytes());
        let new_sig = String::from_utf8_lossy(&new_sig).into_owned();
        let ok_body = auth.verify(Some(&ts), Some(&sig), &new_body, now).is_ok();
        assert_eq!(
            ok_body,
            new_body == body,
            "case {case}: body {what} verified"
        );
        let ok_sig = auth.verify(Some(&ts), Some(&new_sig), &body, now).is_ok();
        assert_eq!(
            ok_sig,
            new_sig.eq_ignore_ascii_case(&sig),
            "case {case}: signature {swhat} verified"
        );
        let text = String::from_utf8_lossy(&new_body).into_owned();
        let _ = Command::parse(&text);
        let _ =
            serde_urlencoded::from_bytes::<eternia_backup::webhook::slack::SlashCommand>(&new_body);
    }
}

#[test]
fn random_configuration_strings_are_refused_or_parsed_but_never_panic() {
    use eternia_backup::cli::{parse_duration, parse_size};
    use eternia_backup::kube::selector::Selector;
    use eternia_backup::webhook::pattern::Pattern;
    let seeds = [
        "8MiB",
        "90s",
        "app=x,tier!=db",
        "env in (a,b)",
        "!x",
        "1h",
        "64KiB",
        "claim=repo:*",
    ];
    let alphabet = b"0123456789 KMGTiBkmshd=!,()-_.*:/\\\"'\t\n\xc3\xa9";
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for case in 0..20000 {
        let seed = seeds[rng.below(seeds.len())].as_bytes();
        let (_, mut s) = mutate(&mut rng, seed);
        for _ in 0..rng.below(3) {
            s.push(alphabet[rng.below(alphabet.len())]);
        }
        let text = String::from_utf8_lossy(&s).into_owned();
        let r = catch_unwind(|| {
            let _ = parse_size(&text);
            let _ = parse_duration(&text);
            let _ = Selector::parse(&text);
            let _ = Policy::parse_claims(std::slice::from_ref(&text));
            let _ = Pattern::new(&text).matches("repo:eternia/app:environment:production");
            let _ = Command::parse(&text);
        });
        assert!(r.is_ok(), "case {case}: {text:?} panicked");
    }
}
