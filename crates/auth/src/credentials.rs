//! What a request presents: the bearer credential, the `token` cookie and forwarded headers.
//!
//! Framework-neutral: build [`RequestCredentials`] from any header list with
//! [`RequestCredentials::from_headers`] (the actix integration does this for you).

use crate::secret::Secret;
use std::fmt;

/// `X-OpenWebUI-User-Jwt`: the signed forwarded-user token.
pub const FORWARDED_JWT_HEADER: &str = "x-openwebui-user-jwt";
/// `X-OpenWebUI-User-Id`.
pub const FORWARDED_USER_ID_HEADER: &str = "x-openwebui-user-id";
/// `X-OpenWebUI-User-Name` (percent-encoded).
pub const FORWARDED_USER_NAME_HEADER: &str = "x-openwebui-user-name";
/// `X-OpenWebUI-User-Email`.
pub const FORWARDED_USER_EMAIL_HEADER: &str = "x-openwebui-user-email";
/// `X-OpenWebUI-User-Role`.
pub const FORWARDED_USER_ROLE_HEADER: &str = "x-openwebui-user-role";
/// `X-OpenWebUI-User-Groups`: the user's group names, comma-separated (`{{USER_GROUPS}}` on an
/// Open WebUI connection).
pub const FORWARDED_USER_GROUPS_HEADER: &str = "x-openwebui-user-groups";
/// `X-OpenWebUI-User-Group-Ids`: the same groups' ids, in the same order (`{{USER_GROUP_IDS}}`).
pub const FORWARDED_USER_GROUP_IDS_HEADER: &str = "x-openwebui-user-group-ids";
/// `X-OpenWebUI-Chat-Id`.
pub const CHAT_ID_HEADER: &str = "x-openwebui-chat-id";
/// `X-OpenWebUI-Auth-Type`.
pub const AUTH_TYPE_HEADER: &str = "x-openwebui-auth-type";
/// Name of the cookie Open WebUI sets for browsers.
pub const TOKEN_COOKIE: &str = "token";

/// Longest forwarded header value kept; longer ones are treated as absent.
const MAX_FORWARDED_VALUE_BYTES: usize = 1024;

/// The credential-bearing parts of a request. Secrets are wrapped so `Debug` never shows them.
#[derive(Default, Clone)]
pub struct RequestCredentials {
    /// Raw `Authorization` header.
    pub authorization: Option<Secret>,
    /// Value of the `token` cookie.
    pub token_cookie: Option<Secret>,
    /// `X-OpenWebUI-User-Jwt`.
    pub forwarded_jwt: Option<Secret>,
    /// `X-OpenWebUI-User-Id`.
    pub forwarded_user_id: Option<String>,
    /// `X-OpenWebUI-User-Name`, still percent-encoded.
    pub forwarded_user_name: Option<String>,
    /// `X-OpenWebUI-User-Email`.
    pub forwarded_user_email: Option<String>,
    /// `X-OpenWebUI-User-Role`.
    pub forwarded_user_role: Option<String>,
    /// `X-OpenWebUI-User-Groups`, still percent-encoded, whatever its length (a group list is
    /// refused when too long, never cut).
    pub forwarded_groups: Option<String>,
    /// `X-OpenWebUI-User-Group-Ids`, whatever its length.
    pub forwarded_group_ids: Option<String>,
    /// `X-OpenWebUI-Chat-Id`.
    pub chat_id: Option<String>,
    /// `X-OpenWebUI-Auth-Type`.
    pub auth_type: Option<String>,
    /// Whether the request's method is safe (`GET`, `HEAD`): only then may the `token` cookie
    /// authenticate it, so another site cannot make a browser spend its user's account.
    /// `false` unless set with [`RequestCredentials::with_method`].
    pub safe_method: bool,
}

impl fmt::Debug for RequestCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestCredentials")
            .field("authorization", &self.authorization)
            .field("token_cookie", &self.token_cookie)
            .field("forwarded_jwt", &self.forwarded_jwt)
            .field("forwarded_user_id", &self.forwarded_user_id)
            .field("forwarded_user_role", &self.forwarded_user_role)
            .field("chat_id", &self.chat_id)
            .field("safe_method", &self.safe_method)
            .finish_non_exhaustive()
    }
}

impl RequestCredentials {
    /// Collects credentials from `(name, value)` header pairs (names in any case).
    ///
    /// The first occurrence of a header wins; `Cookie` headers are searched for `token`.
    /// Values that are not valid UTF-8 are ignored, except `Authorization`, which is kept
    /// (lossily) so that a garbled header is rejected rather than silently skipped.
    pub fn from_headers<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let mut credentials = Self::default();
        for (name, raw_value) in headers {
            let name = name.to_ascii_lowercase();
            if name == "authorization" {
                if credentials.authorization.is_none() {
                    credentials.authorization =
                        Some(Secret::new(String::from_utf8_lossy(raw_value).into_owned()));
                }
                continue;
            }
            let Ok(value) = std::str::from_utf8(raw_value) else {
                continue;
            };
            match name.as_str() {
                "cookie" if credentials.token_cookie.is_none() => {
                    credentials.token_cookie = cookie_value(value, TOKEN_COOKIE).map(Secret::new);
                }
                FORWARDED_JWT_HEADER => {
                    set_once_secret(&mut credentials.forwarded_jwt, value);
                }
                FORWARDED_USER_ID_HEADER => set_once(&mut credentials.forwarded_user_id, value),
                FORWARDED_USER_NAME_HEADER => {
                    set_once(&mut credentials.forwarded_user_name, value);
                }
                FORWARDED_USER_EMAIL_HEADER => {
                    set_once(&mut credentials.forwarded_user_email, value);
                }
                FORWARDED_USER_ROLE_HEADER => {
                    set_once(&mut credentials.forwarded_user_role, value);
                }
                FORWARDED_USER_GROUPS_HEADER if credentials.forwarded_groups.is_none() => {
                    credentials.forwarded_groups = Some(value.trim().to_owned());
                }
                FORWARDED_USER_GROUP_IDS_HEADER if credentials.forwarded_group_ids.is_none() => {
                    credentials.forwarded_group_ids = Some(value.trim().to_owned());
                }
                CHAT_ID_HEADER => set_once(&mut credentials.chat_id, value),
                AUTH_TYPE_HEADER => set_once(&mut credentials.auth_type, value),
                _ => {}
            }
        }
        credentials
    }

    /// Records the request's HTTP method, which decides whether the cookie may authenticate.
    #[must_use]
    pub fn with_method(mut self, method: &str) -> Self {
        self.safe_method = matches!(method, "GET" | "HEAD");
        self
    }
}

fn set_once(slot: &mut Option<String>, value: &str) {
    if slot.is_none() && value.len() <= MAX_FORWARDED_VALUE_BYTES {
        *slot = Some(value.trim().to_owned());
    }
}

fn set_once_secret(slot: &mut Option<Secret>, value: &str) {
    if slot.is_none() {
        *slot = Some(Secret::new(value.trim()));
    }
}

/// A caller-supplied label (chat id, request id) made safe to log and to key on: keeps
/// `[A-Za-z0-9._:-]`, at most 128 characters; `None` if nothing is left.
pub fn sanitize_label(raw: &str) -> Option<String> {
    let clean: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
        .take(128)
        .collect();
    (!clean.is_empty()).then_some(clean)
}

/// What follows `sk-` in the API keys Open WebUI issues: 32 hex digits (a UUID's hex).
pub(crate) fn is_api_key_body(key: &str) -> bool {
    key.len() == 32 && key.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// Finds `name=value` in a `Cookie` header.
fn cookie_value(header: &str, name: &str) -> Option<String> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key.trim() == name).then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// The credential in `Authorization`, or an error saying what is wrong with the header.
pub(crate) fn bearer_credential(header: &Secret) -> Result<&str, BearerError> {
    let value = header.expose().trim();
    let (scheme, credential) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::UnsupportedScheme);
    }
    let credential = credential.trim();
    if credential.is_empty() {
        return Err(BearerError::Empty);
    }
    Ok(credential)
}

/// What is wrong with an `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BearerError {
    UnsupportedScheme,
    Empty,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sanitised_and_bounded() {
        assert_eq!(
            sanitize_label("abc-123_x.y:z").as_deref(),
            Some("abc-123_x.y:z")
        );
        assert_eq!(
            sanitize_label("a b\r\nc<script>").as_deref(),
            Some("abcscript")
        );
        assert_eq!(sanitize_label("\u{1F600}\n"), None);
        assert_eq!(sanitize_label(&"x".repeat(500)).unwrap().len(), 128);
    }

    fn collect(headers: &[(&'static str, &'static str)]) -> RequestCredentials {
        RequestCredentials::from_headers(
            headers
                .iter()
                .map(|(name, value)| (*name, value.as_bytes())),
        )
    }

    #[test]
    fn reads_every_credential_header_in_any_case() {
        let credentials = collect(&[
            ("AUTHORIZATION", "Bearer abc"),
            ("Cookie", "theme=dark; token=eyJ.x.y; other=1"),
            ("X-OpenWebUI-User-Jwt", "j.w.t"),
            ("X-OpenWebUI-User-Id", "u-1"),
            ("X-OpenWebUI-User-Role", "admin"),
            ("X-OpenWebUI-Chat-Id", "chat-9"),
        ]);
        assert_eq!(credentials.authorization.unwrap().expose(), "Bearer abc");
        assert_eq!(credentials.token_cookie.unwrap().expose(), "eyJ.x.y");
        assert_eq!(credentials.forwarded_jwt.unwrap().expose(), "j.w.t");
        assert_eq!(credentials.forwarded_user_id.as_deref(), Some("u-1"));
        assert_eq!(credentials.forwarded_user_role.as_deref(), Some("admin"));
        assert_eq!(credentials.chat_id.as_deref(), Some("chat-9"));
    }

    #[test]
    fn debug_output_hides_credentials() {
        let credentials = collect(&[
            ("Authorization", "Bearer super-secret"),
            ("Cookie", "token=cookie-secret"),
        ]);
        let printed = format!("{credentials:?}");
        assert!(!printed.contains("super-secret"), "{printed}");
        assert!(!printed.contains("cookie-secret"), "{printed}");
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_other_schemes_are_refused() {
        for header in ["Bearer tok", "bearer tok", "BEARER   tok  "] {
            assert_eq!(bearer_credential(&Secret::new(header)), Ok("tok"));
        }
        assert_eq!(
            bearer_credential(&Secret::new("Basic dXNlcjpwYXNz")),
            Err(BearerError::UnsupportedScheme)
        );
        assert_eq!(
            bearer_credential(&Secret::new("tok")),
            Err(BearerError::UnsupportedScheme)
        );
        for empty in ["Bearer", "Bearer   ", ""] {
            assert!(bearer_credential(&Secret::new(empty)).is_err());
        }
    }
}
