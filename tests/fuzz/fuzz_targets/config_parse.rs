//! Configuration strings (sizes, durations, label selectors, claim constraints, patterns): never a panic.
#![no_main]

use eternia_backup::cli::{parse_duration, parse_size};
use eternia_backup::kube::selector::Selector;
use eternia_backup::webhook::jwt::Policy;
use eternia_backup::webhook::pattern::Pattern;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_size(&text);
    let _ = parse_duration(&text);
    let _ = Selector::parse(&text);
    let _ = Policy::parse_claims(&[text.to_string()]);
    let mid = (0..=text.len() / 2)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let (p, t) = text.split_at(mid);
    let _ = Pattern::new(p).matches(t);
});
