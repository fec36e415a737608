//! Local verification of Open WebUI session tokens.
//!
//! Open WebUI 0.12 signs `{"id","typ":"session","session_stamp","exp","iat",…}` with HS256 and its
//! `WEBUI_SECRET_KEY`; older versions sign `{"id","exp"}`. There is no `sub` and no `role`: the
//! role lives only in Open WebUI's database, so a verified token says *who*, never *what they may
//! do*. Revocation (a rotated `session_stamp`) is invisible here too; see [`crate::directory`].

use crate::jwt::{Hs256Verifier, TokenError, now_unix, string_claim};
use crate::secret::Secret;

/// What a valid session token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionClaims {
    /// Open WebUI user id (the `id` claim).
    pub user_id: String,
    /// `exp` in Unix seconds, if the token has one.
    pub expires_at: Option<u64>,
}

/// Verifies session tokens with the shared `WEBUI_SECRET_KEY`.
#[derive(Clone)]
pub struct SessionTokenVerifier {
    verifier: Hs256Verifier,
    allow_non_expiring: bool,
}

impl SessionTokenVerifier {
    /// A verifier for tokens signed with `secret`, used byte for byte as Open WebUI does.
    ///
    /// `leeway_secs` is the clock skew tolerated on `exp`, `nbf` and `iat`;
    /// `allow_non_expiring` accepts tokens without `exp` (Open WebUI's `JWT_EXPIRES_IN=-1`).
    pub fn new(secret: &Secret, leeway_secs: u64, allow_non_expiring: bool) -> Self {
        Self {
            verifier: Hs256Verifier::new(secret.expose().as_bytes(), leeway_secs),
            allow_non_expiring,
        }
    }

    /// Verifies `token` against the system clock.
    pub fn verify(&self, token: &str) -> Result<SessionClaims, TokenError> {
        self.verify_at(token, now_unix())
    }

    /// Verifies `token` as if the time were `now` (Unix seconds).
    pub fn verify_at(&self, token: &str, now: u64) -> Result<SessionClaims, TokenError> {
        let claims = self.verifier.verify(token, now, !self.allow_non_expiring)?;
        let user_id = string_claim(&claims, "id")?.to_owned();
        if let Some(typ) = claims.get("typ")
            && typ.as_str() != Some("session")
        {
            return Err(TokenError::UnexpectedClaimValue {
                claim: "typ",
                expected: "session",
            });
        }
        // Any `role` claim is deliberately not read: Open WebUI never puts one in a session token,
        // so one that is there did not come from Open WebUI's authority.
        Ok(SessionClaims {
            user_id,
            expires_at: claims.get("exp").and_then(serde_json::Value::as_u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::MAX_TOKEN_BYTES;
    use crate::jwt::test_tokens::{hs256, raw, with_algorithm};
    use jsonwebtoken::Algorithm;
    use serde_json::json;

    const SECRET: &str = "t0p-secret-key-of-at-least-32-bytes!";
    const NOW: u64 = 1_795_551_560;
    const USER: &str = "5f0c2b7e-3d41-4a8e-9c57-2e1b6d9f0a13";

    fn verifier() -> SessionTokenVerifier {
        SessionTokenVerifier::new(&Secret::new(SECRET), 0, false)
    }

    fn current_claims() -> serde_json::Value {
        json!({"id": USER, "typ": "session", "auth_method": "password", "auth_time": NOW,
               "session_stamp": "9b2d4e61-7a0f-4c3b-8e15-d6a4f2c9b870", "mfa_verified": false,
               "exp": NOW + 2_419_200, "jti": "c4e8a1f2-6b3d-4f9a-a027-51d9e3b6c8f4", "iat": NOW})
    }

    #[test]
    fn accepts_the_current_open_webui_format() {
        let claims = verifier()
            .verify_at(&hs256(SECRET, &current_claims()), NOW)
            .unwrap();
        assert_eq!(claims.user_id, USER);
        assert_eq!(claims.expires_at, Some(NOW + 2_419_200));
    }

    #[test]
    fn accepts_the_old_id_and_exp_format() {
        let token = hs256(SECRET, &json!({"id": USER, "exp": NOW + 60}));
        assert_eq!(verifier().verify_at(&token, NOW).unwrap().user_id, USER);
    }

    #[test]
    fn a_role_claim_in_a_session_token_grants_nothing() {
        let mut claims = current_claims();
        claims["role"] = json!("admin");
        let verified = verifier().verify_at(&hs256(SECRET, &claims), NOW).unwrap();
        // SessionClaims has no role at all: the type cannot carry one.
        assert_eq!(
            verified,
            SessionClaims {
                user_id: USER.into(),
                expires_at: Some(NOW + 2_419_200)
            }
        );
    }

    #[test]
    fn sub_and_role_without_id_is_rejected() {
        let token = hs256(
            SECRET,
            &json!({"sub": USER, "role": "admin", "exp": NOW + 60}),
        );
        assert_eq!(
            verifier().verify_at(&token, NOW),
            Err(TokenError::BadClaim("id", "non-empty string"))
        );
    }

    #[test]
    fn non_string_or_empty_id_is_rejected() {
        for id in [json!(42), json!(""), json!(null)] {
            let token = hs256(SECRET, &json!({"id": id, "exp": NOW + 60}));
            assert!(matches!(
                verifier().verify_at(&token, NOW),
                Err(TokenError::BadClaim("id", _))
            ));
        }
    }

    #[test]
    fn typ_other_than_session_is_rejected() {
        for typ in ["automation", "subagent", "api"] {
            let mut claims = current_claims();
            claims["typ"] = json!(typ);
            assert_eq!(
                verifier().verify_at(&hs256(SECRET, &claims), NOW),
                Err(TokenError::UnexpectedClaimValue {
                    claim: "typ",
                    expected: "session"
                })
            );
        }
    }

    #[test]
    fn expiry_is_enforced_with_configurable_leeway() {
        let token = hs256(SECRET, &json!({"id": USER, "exp": NOW}));
        assert_eq!(verifier().verify_at(&token, NOW), Err(TokenError::Expired));
        assert_eq!(
            verifier().verify_at(&token, NOW + 100),
            Err(TokenError::Expired)
        );
        let lenient = SessionTokenVerifier::new(&Secret::new(SECRET), 30, false);
        assert!(lenient.verify_at(&token, NOW + 29).is_ok());
        assert_eq!(
            lenient.verify_at(&token, NOW + 30),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn future_nbf_and_iat_are_rejected() {
        let token = hs256(
            SECRET,
            &json!({"id": USER, "exp": NOW + 600, "nbf": NOW + 60}),
        );
        assert_eq!(
            verifier().verify_at(&token, NOW),
            Err(TokenError::NotYetValid)
        );
        let token = hs256(
            SECRET,
            &json!({"id": USER, "exp": NOW + 600, "iat": NOW + 60}),
        );
        assert_eq!(
            verifier().verify_at(&token, NOW),
            Err(TokenError::IssuedInFuture)
        );
        let lenient = SessionTokenVerifier::new(&Secret::new(SECRET), 60, false);
        assert!(lenient.verify_at(&token, NOW).is_ok());
    }

    #[test]
    fn missing_exp_needs_the_operator_opt_in() {
        let token = hs256(SECRET, &json!({"id": USER, "typ": "session", "iat": NOW}));
        let error = verifier().verify_at(&token, NOW).unwrap_err();
        assert_eq!(error, TokenError::NoExpiry);
        assert!(
            error
                .to_string()
                .contains("AUTH_ALLOW_NON_EXPIRING_TOKENS=true")
        );
        let opted_in = SessionTokenVerifier::new(&Secret::new(SECRET), 0, true);
        let claims = opted_in.verify_at(&token, NOW).unwrap();
        assert_eq!(claims.expires_at, None);
    }

    #[test]
    fn non_numeric_exp_is_rejected() {
        let token = hs256(SECRET, &json!({"id": USER, "exp": "tomorrow"}));
        assert_eq!(
            verifier().verify_at(&token, NOW),
            Err(TokenError::BadClaim("exp", "number"))
        );
    }

    #[test]
    fn alg_none_is_rejected() {
        let token = raw(&json!({"alg": "none", "typ": "JWT"}), &current_claims(), "");
        assert_eq!(
            verifier().verify_at(&token, NOW),
            Err(TokenError::UnsupportedAlgorithm("none".into()))
        );
    }

    #[test]
    fn other_hmac_algorithms_are_rejected() {
        for algorithm in [Algorithm::HS384, Algorithm::HS512] {
            let token = with_algorithm(SECRET, algorithm, &current_claims());
            assert!(matches!(
                verifier().verify_at(&token, NOW),
                Err(TokenError::UnsupportedAlgorithm(_))
            ));
        }
    }

    #[test]
    fn asymmetric_algorithm_headers_are_rejected() {
        for alg in ["RS256", "ES256"] {
            let token = raw(
                &json!({"alg": alg, "typ": "JWT"}),
                &current_claims(),
                "c2ln",
            );
            assert_eq!(
                verifier().verify_at(&token, NOW),
                Err(TokenError::UnsupportedAlgorithm(alg.into()))
            );
        }
    }

    #[test]
    fn tampered_payload_with_the_original_signature_is_rejected() {
        let token = hs256(SECRET, &current_claims());
        let signature = token.rsplit('.').next().unwrap();
        let mut claims = current_claims();
        claims["id"] = json!("someone-else");
        let forged = raw(&json!({"alg": "HS256", "typ": "JWT"}), &claims, signature);
        assert_eq!(
            verifier().verify_at(&forged, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn wrong_secret_is_rejected() {
        let token = hs256("another-secret-another-secret-xx", &current_claims());
        assert_eq!(
            verifier().verify_at(&token, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn wrong_segment_counts_are_rejected() {
        let token = hs256(SECRET, &current_claims());
        let parts: Vec<&str> = token.split('.').collect();
        for candidate in [
            parts[0].to_owned(),
            format!("{}.{}", parts[0], parts[1]),
            format!("{token}.extra"),
        ] {
            assert!(matches!(
                verifier().verify_at(&candidate, NOW),
                Err(TokenError::Malformed(_))
            ));
        }
    }

    #[test]
    fn non_base64_and_non_json_are_rejected() {
        assert!(matches!(
            verifier().verify_at("!!!.@@@.###", NOW),
            Err(TokenError::Malformed(_))
        ));
        let header = r#"{"alg":"HS256"}"#;
        let not_json = format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode("not json")
        );
        assert!(matches!(
            verifier().verify_at(&not_json, NOW),
            Err(TokenError::Malformed(_) | TokenError::BadSignature)
        ));
        let signed_not_json = sign_raw_payload(b"not json");
        assert!(matches!(
            verifier().verify_at(&signed_not_json, NOW),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            verifier().verify_at("", NOW),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn oversized_tokens_are_rejected_before_decoding() {
        let mut claims = current_claims();
        claims["padding"] = json!("x".repeat(9 * 1024));
        let token = hs256(SECRET, &claims);
        assert!(token.len() > MAX_TOKEN_BYTES);
        assert_eq!(verifier().verify_at(&token, NOW), Err(TokenError::TooLarge));
    }

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    /// A correctly signed token whose payload is arbitrary bytes.
    fn sign_raw_payload(payload: &[u8]) -> String {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
        let tag = ring::hmac::sign(&key, signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }
}
