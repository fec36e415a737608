//! Asking Open WebUI who a credential belongs to and what role that user has now.
//!
//! A valid signature does not make a valid session: Open WebUI revokes sessions by rotating the
//! user's `session_stamp`, and only its database knows the current role. API keys (`sk-…`) are
//! opaque and can only be checked there. [`UserDirectory`] is that question;
//! [`OpenWebUiDirectory`] asks a real Open WebUI, and [`crate::CachedDirectory`] remembers answers.

use crate::secret::Secret;
use async_trait::async_trait;
use serde::Deserialize;
use std::time::Duration;
use url::Url;

/// Largest whoami body read from Open WebUI.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A credential to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryCredential {
    /// An Open WebUI session JWT (already verified locally).
    SessionToken(Secret),
    /// An Open WebUI API key (`sk-` + 32 hex).
    ApiKey(Secret),
}

impl DirectoryCredential {
    /// The credential itself.
    pub fn secret(&self) -> &Secret {
        match self {
            Self::SessionToken(secret) | Self::ApiKey(secret) => secret,
        }
    }
}

/// The user behind a credential, as Open WebUI's database has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    /// User id.
    pub id: String,
    /// `admin`, `user` or `pending`.
    pub role: String,
    /// Email, if known.
    pub email: Option<String>,
    /// Display name, if known.
    pub name: Option<String>,
}

/// Why a lookup did not produce a user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// Open WebUI answered and refused the credential (revoked, expired, invalid, pending).
    #[error("Open WebUI rejected the credential (HTTP {status})")]
    Rejected {
        /// Open WebUI's status code (401 or 403).
        status: u16,
    },
    /// Open WebUI could not give an answer (down, slow, 5xx, unreadable body).
    #[error("Open WebUI is unavailable: {0}")]
    Unavailable(String),
}

/// Resolves credentials to users. Implementations must never log the credential.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait UserDirectory: Send + Sync {
    /// Who `credential` belongs to, with their current role.
    async fn lookup(
        &self,
        credential: &DirectoryCredential,
    ) -> Result<DirectoryUser, DirectoryError>;
}

/// [`UserDirectory`] backed by Open WebUI's HTTP API.
///
/// - session token → `GET {base}/api/v1/auths/`
/// - API key → `GET {base}/api/v1/users/user/status` (Open WebUI answers API keys with 403 on
///   `/api/v1/auths/`)
#[derive(Debug, Clone)]
pub struct OpenWebUiDirectory {
    client: reqwest::Client,
    session_url: Url,
    api_key_url: Url,
    timeout: Duration,
}

/// The fields bff reads from either whoami body; everything else (including the echoed
/// `token`) is discarded unread.
#[derive(Deserialize)]
struct WhoamiBody {
    id: String,
    role: String,
    email: Option<String>,
    name: Option<String>,
}

impl OpenWebUiDirectory {
    /// A directory for the Open WebUI at `base_url`, giving up on a call after `timeout`.
    pub fn new(base_url: &Url, timeout: Duration) -> Result<Self, DirectoryError> {
        let join = |path: &str| {
            Url::parse(&format!(
                "{}/{path}",
                base_url.as_str().trim_end_matches('/')
            ))
            .map_err(|error| DirectoryError::Unavailable(format!("invalid OPENWEBUI_URL: {error}")))
        };
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| {
                DirectoryError::Unavailable(format!("cannot build HTTP client: {error}"))
            })?;
        Ok(Self {
            client,
            session_url: join("api/v1/auths/")?,
            api_key_url: join("api/v1/users/user/status")?,
            timeout,
        })
    }

    async fn fetch(
        &self,
        credential: &DirectoryCredential,
    ) -> Result<DirectoryUser, DirectoryError> {
        let url = match credential {
            DirectoryCredential::SessionToken(_) => &self.session_url,
            DirectoryCredential::ApiKey(_) => &self.api_key_url,
        };
        let response = self
            .client
            .get(url.clone())
            .bearer_auth(credential.secret().expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| self.transport_error(&error))?;
        let status = response.status();
        match status.as_u16() {
            200 => {}
            401 | 403 => {
                return Err(DirectoryError::Rejected {
                    status: status.as_u16(),
                });
            }
            other => {
                return Err(DirectoryError::Unavailable(format!(
                    "Open WebUI answered HTTP {other}"
                )));
            }
        }
        if response
            .content_length()
            .is_some_and(|length| length > MAX_BODY_BYTES as u64)
        {
            return Err(DirectoryError::Unavailable(
                "Open WebUI's answer is too large".to_owned(),
            ));
        }
        let body = response
            .bytes()
            .await
            .map_err(|error| self.transport_error(&error))?;
        // The body echoes the credential: never include it in an error or a log line.
        let whoami: WhoamiBody = serde_json::from_slice(&body).map_err(|_| {
            DirectoryError::Unavailable(
                "Open WebUI's answer lacks a string `id` and `role`".to_owned(),
            )
        })?;
        Ok(DirectoryUser {
            id: whoami.id,
            role: whoami.role,
            email: whoami.email,
            name: whoami.name,
        })
    }

    fn transport_error(&self, error: &reqwest::Error) -> DirectoryError {
        // reqwest's Display can include the URL; ours has no secret, but say only what matters.
        let what = if error.is_timeout() {
            format!("no answer within {} ms", self.timeout.as_millis())
        } else if error.is_connect() {
            "connection failed".to_owned()
        } else {
            "the request failed".to_owned()
        };
        DirectoryError::Unavailable(what)
    }
}

#[async_trait]
impl UserDirectory for OpenWebUiDirectory {
    async fn lookup(
        &self,
        credential: &DirectoryCredential,
    ) -> Result<DirectoryUser, DirectoryError> {
        self.fetch(credential).await
    }
}
