//! CPU cost of checking an Open WebUI session token, once per request: the first time a token is
//! seen (header, HMAC, claims decoded) and every later time (remembered: time claims only).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use bff_auth::{Secret, SessionTokenVerifier};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use std::hint::black_box;

const SECRET: &str = "bench-webui-secret-key-32-bytes!!";

/// A token shaped like Open WebUI 0.12's, valid for a day.
fn token() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"id": "5f0c2b7e-3d41-4a8e-9c57-2e1b6d9f0a13", "typ": "session",
                        "session_stamp": "0b5c7e2a9f3d4e61", "iat": now, "exp": now + 86_400,
                        "jti": "8d2e6f0a-1b3c-4d5e-9f70-a1b2c3d4e5f6"});
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

fn verifier() -> SessionTokenVerifier {
    SessionTokenVerifier::new(&Secret::new(SECRET), 0, false)
}

fn bench_verify(c: &mut Criterion) {
    let token = token();
    c.bench_function("session token/first sight", |b| {
        b.iter_batched_ref(
            verifier,
            |verifier| verifier.verify(black_box(&token)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    let warm = verifier();
    warm.verify(&token).unwrap();
    c.bench_function("session token/remembered", |b| {
        b.iter(|| warm.verify(black_box(&token)).unwrap())
    });
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
