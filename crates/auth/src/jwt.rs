//! HS256 JWT verification shared by Open WebUI session tokens and the forwarded-user JWT.
//!
//! Signature checking is delegated to `jsonwebtoken`; this module adds what that crate leaves to
//! the caller: a size cap, a strict `alg` check that reports what was presented, and claim-time
//! rules with an explicit clock so tests can pin "now". A token whose signature verified is
//! remembered (by its SHA-256) so the next request with it skips the HMAC and the decoding; its
//! time claims are checked again on every use.

use crate::service_keys::sha256;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use moka::sync::Cache;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest token accepted, in bytes. Anything longer is rejected before it is decoded.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Verified tokens remembered per verifier (about 0.5 KB each).
const VERIFIED_CAPACITY: u64 = 10_000;

/// How long a remembered token stays unused before it is forgotten.
const VERIFIED_IDLE: Duration = Duration::from_secs(600);

/// The claims of a token, shared by every request that presents it.
pub(crate) type Claims = Arc<Map<String, Value>>;

/// Why a token was refused. Messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// Not three base64url segments of JSON.
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    /// Any `alg` other than HS256.
    #[error("token algorithm `{0}` is not accepted; only HS256 is")]
    UnsupportedAlgorithm(String),
    /// HMAC does not match: wrong secret or tampered token.
    #[error("token signature is invalid")]
    BadSignature,
    /// A required claim is absent or has the wrong JSON type.
    #[error("token claim `{0}` is missing or not a {1}")]
    BadClaim(&'static str, &'static str),
    /// A claim holds a value that is not accepted (e.g. `typ` other than `session`).
    #[error("token claim `{claim}` must be `{expected}`")]
    UnexpectedClaimValue {
        /// The claim name.
        claim: &'static str,
        /// The only accepted value.
        expected: &'static str,
    },
    /// `exp` is in the past.
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token is not valid yet (nbf is in the future)")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("token was issued in the future (iat)")]
    IssuedInFuture,
    /// No `exp` and the operator did not allow non-expiring tokens.
    #[error(
        "token has no expiry (exp); set AUTH_ALLOW_NON_EXPIRING_TOKENS=true to accept Open WebUI tokens issued with JWT_EXPIRES_IN=-1"
    )]
    NoExpiry,
}

impl TokenError {
    /// A short, stable label for metrics (`auth_failures_total{reason=…}`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge => "token_too_large",
            Self::Malformed(_) => "token_malformed",
            Self::UnsupportedAlgorithm(_) => "token_algorithm",
            Self::BadSignature => "token_signature",
            Self::BadClaim(..) | Self::UnexpectedClaimValue { .. } => "token_claims",
            Self::Expired => "token_expired",
            Self::NotYetValid | Self::IssuedInFuture => "token_not_yet_valid",
            Self::NoExpiry => "token_no_expiry",
        }
    }
}

/// Seconds since the Unix epoch, from the system clock.
pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// An HS256 key and the time rules to apply.
#[derive(Clone)]
pub(crate) struct Hs256Verifier {
    key: DecodingKey,
    leeway_secs: u64,
    /// Claims of tokens whose header and signature verified, by the token's SHA-256 (never the
    /// token itself). HMAC and decoding give the same answer for the same bytes, so only the
    /// time claims need checking again. Only verified tokens enter: without the key no one can
    /// fill it. Bounded in entries (moka: constant-time eviction by frequency and recency).
    verified: Cache<[u8; 32], Claims>,
}

impl Hs256Verifier {
    pub(crate) fn new(secret: &[u8], leeway_secs: u64) -> Self {
        Self {
            key: DecodingKey::from_secret(secret),
            leeway_secs,
            verified: Cache::builder()
                .max_capacity(VERIFIED_CAPACITY)
                .time_to_idle(VERIFIED_IDLE)
                .build(),
        }
    }

    /// Checks size, header, signature and time claims; returns the claims object.
    ///
    /// `require_exp` false means a token without `exp` passes (the caller decides whether that
    /// is allowed); a present `exp` is always enforced.
    pub(crate) fn verify(
        &self,
        token: &str,
        now: u64,
        require_exp: bool,
    ) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let digest = sha256(token.as_bytes());
        if let Some(claims) = self.verified.get(&digest) {
            self.check_times(&claims, now, require_exp)?;
            return Ok(claims);
        }
        let claims = Arc::new(self.decode(token)?);
        self.check_times(&claims, now, require_exp)?;
        self.verified.insert(digest, Arc::clone(&claims));
        Ok(claims)
    }

    /// Header and signature checked, the claims object decoded; no time rules.
    fn decode(&self, token: &str) -> Result<Map<String, Value>, TokenError> {
        check_header(token)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::new();
        jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &validation)
            .map(|data| data.claims)
            .map_err(|error| match error.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    TokenError::UnsupportedAlgorithm("unknown".to_owned())
                }
                ErrorKind::Base64(_) => TokenError::Malformed("a segment is not base64url"),
                ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                    TokenError::Malformed("the payload is not a JSON object")
                }
                _ => TokenError::Malformed("cannot be decoded"),
            })
    }

    fn check_times(
        &self,
        claims: &Map<String, Value>,
        now: u64,
        require_exp: bool,
    ) -> Result<(), TokenError> {
        match numeric_claim(claims, "exp")? {
            // Expired once `now` reaches `exp` (PyJWT's rule, which Open WebUI uses).
            Some(exp) if now >= exp.saturating_add(self.leeway_secs) => {
                return Err(TokenError::Expired);
            }
            Some(_) => {}
            None if require_exp => return Err(TokenError::NoExpiry),
            None => {}
        }
        let latest_acceptable = now.saturating_add(self.leeway_secs);
        if numeric_claim(claims, "nbf")?.is_some_and(|nbf| nbf > latest_acceptable) {
            return Err(TokenError::NotYetValid);
        }
        if numeric_claim(claims, "iat")?.is_some_and(|iat| iat > latest_acceptable) {
            return Err(TokenError::IssuedInFuture);
        }
        Ok(())
    }
}

/// Rejects anything but three segments whose header says `"alg":"HS256"`, naming what was seen.
fn check_header(token: &str) -> Result<(), TokenError> {
    let segments: Vec<&str> = token.split('.').collect();
    let [header, _, _] = segments.as_slice() else {
        return Err(TokenError::Malformed(
            "expected three dot-separated segments",
        ));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed("a segment is not base64url"))?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|_| TokenError::Malformed("the header is not a JSON object"))?;
    match header.get("alg") {
        Some(Value::String(alg)) if alg == "HS256" => Ok(()),
        Some(Value::String(alg)) => Err(TokenError::UnsupportedAlgorithm(
            alg.chars().take(16).collect(),
        )),
        _ => Err(TokenError::Malformed("the header has no `alg`")),
    }
}

/// Reads an optional numeric date claim. Present but not a non-negative number is an error.
fn numeric_claim(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, TokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number
            .as_u64()
            // PyJWT accepts float dates; truncate them like it does.
            .or_else(|| number.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or(TokenError::BadClaim(name, "non-negative number")),
        Some(_) => Err(TokenError::BadClaim(name, "number")),
    }
}

/// Reads a required non-empty string claim.
pub(crate) fn string_claim<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, TokenError> {
    match claims.get(name) {
        Some(Value::String(value)) if !value.is_empty() => Ok(value),
        _ => Err(TokenError::BadClaim(name, "non-empty string")),
    }
}

/// Reads an optional string claim, ignoring other types.
pub(crate) fn optional_string_claim(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims.get(name).and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
pub(crate) mod test_tokens {
    //! Mints tokens for tests, including deliberately broken ones.
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::Value;

    /// An HS256 token over `claims`.
    pub fn hs256(secret: &str, claims: &Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    /// A token signed with another HMAC algorithm.
    pub fn with_algorithm(secret: &str, algorithm: Algorithm, claims: &Value) -> String {
        jsonwebtoken::encode(
            &Header::new(algorithm),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    /// A token with an arbitrary raw header and signature.
    pub fn raw(header: &Value, claims: &Value, signature: &str) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            signature
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::test_tokens::hs256;
    use super::*;
    use serde_json::json;

    const SECRET: &str = "t0p-secret-key-of-at-least-32-bytes!";
    const NOW: u64 = 1_795_551_560;

    fn remembered(verifier: &Hs256Verifier) -> u64 {
        verifier.verified.run_pending_tasks();
        verifier.verified.entry_count()
    }

    #[test]
    fn a_remembered_token_is_still_refused_once_it_expires() {
        let verifier = Hs256Verifier::new(SECRET.as_bytes(), 0);
        let token = hs256(SECRET, &json!({"id": "u1", "exp": NOW + 60}));
        assert_eq!(verifier.verify(&token, NOW, true).unwrap()["id"], "u1");
        assert_eq!(remembered(&verifier), 1);
        assert_eq!(verifier.verify(&token, NOW + 59, true).unwrap()["id"], "u1");
        assert_eq!(
            verifier.verify(&token, NOW + 60, true),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn only_tokens_that_pass_every_check_are_remembered() {
        let verifier = Hs256Verifier::new(SECRET.as_bytes(), 0);
        let forged = hs256("another-secret-of-at-least-32-bytes!", &json!({"id": "u1"}));
        let not_yet = hs256(
            SECRET,
            &json!({"id": "u1", "exp": NOW + 60, "nbf": NOW + 30}),
        );
        assert_eq!(
            verifier.verify(&forged, NOW, false),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verifier.verify(&not_yet, NOW, true),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(remembered(&verifier), 0);
        // Valid later: verified in full then, and remembered.
        assert!(verifier.verify(&not_yet, NOW + 30, true).is_ok());
        assert_eq!(remembered(&verifier), 1);
    }

    #[test]
    fn a_remembered_token_vouches_for_no_other_bytes() {
        let verifier = Hs256Verifier::new(SECRET.as_bytes(), 0);
        let token = hs256(SECRET, &json!({"id": "u1", "exp": NOW + 60}));
        verifier.verify(&token, NOW, true).unwrap();
        let [header, _, signature] = token.split('.').collect::<Vec<_>>()[..] else {
            panic!("three segments")
        };
        let other_claims =
            URL_SAFE_NO_PAD.encode(json!({"id": "admin", "exp": NOW + 60}).to_string());
        let tampered = format!("{header}.{other_claims}.{signature}");
        assert_eq!(
            verifier.verify(&tampered, NOW, true),
            Err(TokenError::BadSignature)
        );
    }
}
