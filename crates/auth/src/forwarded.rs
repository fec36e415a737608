//! Identity forwarded by Open WebUI's backend when bff is its "OpenAI API connection".
//!
//! Two forms, both trusted only together with a service key (see [`crate::ServiceKeys`]):
//! - `X-OpenWebUI-User-Jwt`: HS256, signed with Open WebUI's `FORWARD_USER_INFO_HEADER_JWT_SECRET`
//!   (not `WEBUI_SECRET_KEY`), `{"sub","email","name","role","iss":"open-webui","iat","exp"}`.
//!   The one token whose `role` is trusted: Open WebUI minted it to say exactly that.
//! - Plain `X-OpenWebUI-User-*` headers (`ENABLE_FORWARD_USER_INFO_HEADERS=true`): unsigned, so
//!   honoured only when the operator enabled them.

use crate::credentials::RequestCredentials;
use crate::identity::Group;
use crate::jwt::{Hs256Verifier, TokenError, now_unix, optional_string_claim, string_claim};
use crate::secret::Secret;
use percent_encoding::percent_decode_str;

/// A user vouched for by Open WebUI's backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedUser {
    /// Open WebUI user id.
    pub user_id: String,
    /// Role at the time Open WebUI made the call (`admin`, `user`, …), if it said.
    pub role: Option<String>,
    /// Email, if forwarded.
    pub email: Option<String>,
    /// Display name, if forwarded.
    pub name: Option<String>,
}

/// Verifies `X-OpenWebUI-User-Jwt`.
#[derive(Clone)]
pub struct ForwardedJwtVerifier {
    verifier: Hs256Verifier,
}

impl ForwardedJwtVerifier {
    /// A verifier for tokens signed with Open WebUI's `FORWARD_USER_INFO_HEADER_JWT_SECRET`.
    pub fn new(secret: &Secret, leeway_secs: u64) -> Self {
        Self {
            verifier: Hs256Verifier::new(secret.expose().as_bytes(), leeway_secs),
        }
    }

    /// Verifies against the system clock.
    pub fn verify(&self, token: &str) -> Result<ForwardedUser, TokenError> {
        self.verify_at(token, now_unix())
    }

    /// Verifies as if the time were `now` (Unix seconds). `exp` is always required.
    pub fn verify_at(&self, token: &str, now: u64) -> Result<ForwardedUser, TokenError> {
        let claims = self.verifier.verify(token, now, true)?;
        if claims.get("iss").and_then(serde_json::Value::as_str) != Some("open-webui") {
            return Err(TokenError::UnexpectedClaimValue {
                claim: "iss",
                expected: "open-webui",
            });
        }
        Ok(ForwardedUser {
            user_id: string_claim(&claims, "sub")?.to_owned(),
            role: Some(string_claim(&claims, "role")?.to_owned()),
            email: optional_string_claim(&claims, "email"),
            name: optional_string_claim(&claims, "name"),
        })
    }
}

/// Reads the plain `X-OpenWebUI-User-*` headers; `None` without a user id.
///
/// The name is percent-decoded (Open WebUI sends `quote(name, safe=' ')`).
pub fn user_from_plain_headers(credentials: &RequestCredentials) -> Option<ForwardedUser> {
    let user_id = non_empty(credentials.forwarded_user_id.as_deref())?;
    Some(ForwardedUser {
        user_id: user_id.to_owned(),
        role: non_empty(credentials.forwarded_user_role.as_deref()).map(str::to_owned),
        email: non_empty(credentials.forwarded_user_email.as_deref()).map(str::to_owned),
        name: non_empty(credentials.forwarded_user_name.as_deref())
            .map(|name| percent_decode_str(name).decode_utf8_lossy().into_owned()),
    })
}

/// The groups a trusted service forwarded in `X-OpenWebUI-User-Groups` (names) and
/// `X-OpenWebUI-User-Group-Ids` (ids), each comma-separated and percent-encoded as Open WebUI
/// fills `{{USER_GROUPS}}` and `{{USER_GROUP_IDS}}`.
///
/// With both, names and ids pair up by position; a name with a comma in it breaks the pairing,
/// and then the ids alone are used (a policy key that is an id still matches). With one, each
/// entry is both the id and the name, so a policy key matches it in whichever form the header
/// carries. An entry list longer than [`Group::MAX_PER_CALLER`], or an entry longer than
/// [`Group::MAX_FIELD_BYTES`], is an error: a list cut short could drop the group whose budget
/// applies.
pub fn groups_from_headers(credentials: &RequestCredentials) -> Result<Vec<Group>, String> {
    let names = header_entries(
        "X-OpenWebUI-User-Groups",
        credentials.forwarded_groups.as_deref(),
    )?;
    let ids = header_entries(
        "X-OpenWebUI-User-Group-Ids",
        credentials.forwarded_group_ids.as_deref(),
    )?;
    let paired: Vec<(&str, &str)> = match (ids.is_empty(), names.is_empty()) {
        (false, false) if ids.len() == names.len() => ids
            .iter()
            .zip(&names)
            .map(|(id, name)| (id.as_str(), name.as_str()))
            .collect(),
        (false, _) => ids.iter().map(|id| (id.as_str(), id.as_str())).collect(),
        (true, _) => names
            .iter()
            .map(|name| (name.as_str(), name.as_str()))
            .collect(),
    };
    let mut groups: Vec<Group> = Vec::with_capacity(paired.len());
    for (id, name) in paired {
        let group = Group::checked(id, name).ok_or_else(|| {
            format!(
                "a forwarded group is longer than {} bytes",
                Group::MAX_FIELD_BYTES
            )
        })?;
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    Ok(groups)
}

/// The non-empty, percent-decoded entries of a comma-separated header value, bounded.
fn header_entries(header: &str, value: Option<&str>) -> Result<Vec<String>, String> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let mut entries = Vec::new();
    for raw in value.split(',') {
        let entry = percent_decode_str(raw.trim()).decode_utf8_lossy();
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        if entries.len() == Group::MAX_PER_CALLER {
            return Err(format!(
                "{header} lists more than {} groups",
                Group::MAX_PER_CALLER
            ));
        }
        entries.push(entry.to_owned());
    }
    Ok(entries)
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::test_tokens::hs256;
    use serde_json::json;

    const FORWARD_SECRET: &str = "forwarding-secret-shared-with-open-webui";
    const NOW: u64 = 1_795_553_107;

    fn claims() -> serde_json::Value {
        json!({"sub": "5f0c2b7e-3d41-4a8e-9c57-2e1b6d9f0a13", "email": "alice@example.com",
               "name": "Alice Admin", "role": "admin", "iss": "open-webui",
               "iat": NOW, "exp": NOW + 300})
    }

    fn verifier() -> ForwardedJwtVerifier {
        ForwardedJwtVerifier::new(&Secret::new(FORWARD_SECRET), 0)
    }

    #[test]
    fn valid_forwarded_jwt_carries_the_role() {
        let user = verifier()
            .verify_at(&hs256(FORWARD_SECRET, &claims()), NOW)
            .unwrap();
        assert_eq!(user.user_id, "5f0c2b7e-3d41-4a8e-9c57-2e1b6d9f0a13");
        assert_eq!(user.role.as_deref(), Some("admin"));
        assert_eq!(user.email.as_deref(), Some("alice@example.com"));
        assert_eq!(user.name.as_deref(), Some("Alice Admin"));
    }

    #[test]
    fn forwarded_jwt_signed_with_another_secret_is_rejected() {
        let token = hs256("the-webui-secret-key-not-the-forwarding-one", &claims());
        assert_eq!(
            verifier().verify_at(&token, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn expired_forwarded_jwt_is_rejected() {
        let token = hs256(FORWARD_SECRET, &claims());
        assert_eq!(
            verifier().verify_at(&token, NOW + 300),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn forwarded_jwt_needs_exp_iss_sub_and_role() {
        let mut no_exp = claims();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            verifier().verify_at(&hs256(FORWARD_SECRET, &no_exp), NOW),
            Err(TokenError::NoExpiry)
        );
        for issuer in [json!("someone-else"), json!(null)] {
            let mut wrong_issuer = claims();
            wrong_issuer["iss"] = issuer;
            assert!(matches!(
                verifier().verify_at(&hs256(FORWARD_SECRET, &wrong_issuer), NOW),
                Err(TokenError::UnexpectedClaimValue { claim: "iss", .. })
            ));
        }
        for claim in ["sub", "role"] {
            let mut missing = claims();
            missing.as_object_mut().unwrap().remove(claim);
            assert!(matches!(
                verifier().verify_at(&hs256(FORWARD_SECRET, &missing), NOW),
                Err(TokenError::BadClaim(name, _)) if name == claim
            ));
        }
    }

    fn forwarded(names: Option<&str>, ids: Option<&str>) -> Result<Vec<Group>, String> {
        groups_from_headers(&RequestCredentials {
            forwarded_groups: names.map(str::to_owned),
            forwarded_group_ids: ids.map(str::to_owned),
            ..RequestCredentials::default()
        })
    }

    fn group(id: &str, name: &str) -> Group {
        Group::checked(id, name).unwrap()
    }

    #[test]
    fn forwarded_groups_pair_names_and_ids_and_decode_them() {
        assert_eq!(
            forwarded(Some("research,%C3%A9quipe a"), Some("g-1,g-2")).unwrap(),
            vec![group("g-1", "research"), group("g-2", "équipe a")]
        );
        // One header: each entry is both, so a policy key matches in the form sent.
        assert_eq!(
            forwarded(Some("research, interns,"), None).unwrap(),
            vec![group("research", "research"), group("interns", "interns")]
        );
        assert_eq!(
            forwarded(None, Some("g-1")).unwrap(),
            vec![group("g-1", "g-1")]
        );
        // A name with a comma: the counts differ, so the ids alone are used.
        assert_eq!(
            forwarded(Some("a,b,c"), Some("g-1,g-2")).unwrap(),
            vec![group("g-1", "g-1"), group("g-2", "g-2")]
        );
        assert_eq!(forwarded(Some(""), None).unwrap(), vec![]);
        assert_eq!(forwarded(None, None).unwrap(), vec![]);
    }

    #[test]
    fn a_forwarded_group_list_too_long_is_refused_not_cut() {
        let many = vec!["g"; Group::MAX_PER_CALLER + 1]
            .iter()
            .enumerate()
            .map(|(n, g)| format!("{g}{n}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(
            forwarded(Some(&many), None)
                .unwrap_err()
                .contains("more than 256")
        );
        let long = "x".repeat(Group::MAX_FIELD_BYTES + 1);
        assert!(
            forwarded(Some(&long), None)
                .unwrap_err()
                .contains("longer than")
        );
    }

    #[test]
    fn plain_headers_are_read_and_the_name_is_decoded() {
        let credentials = RequestCredentials {
            forwarded_user_id: Some("u-1".into()),
            forwarded_user_name: Some("Zo%C3%AB O%27Brien".into()),
            forwarded_user_email: Some("zoe@example.com".into()),
            forwarded_user_role: Some("user".into()),
            ..RequestCredentials::default()
        };
        let user = user_from_plain_headers(&credentials).unwrap();
        assert_eq!(user.name.as_deref(), Some("Zoë O'Brien"));
        assert_eq!(user.role.as_deref(), Some("user"));
        assert_eq!(
            user_from_plain_headers(&RequestCredentials::default()),
            None
        );
    }
}
