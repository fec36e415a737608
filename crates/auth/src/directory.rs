//! Asking Open WebUI who a credential belongs to, what role that user has now, and which groups
//! they are in.
//!
//! A valid signature does not make a valid session: Open WebUI revokes sessions by rotating the
//! user's `session_stamp`, and only its database knows the current role. API keys (`sk-…`) are
//! opaque and can only be checked there. [`UserDirectory`] is that question;
//! [`OpenWebUiDirectory`] asks a real Open WebUI, and [`crate::CachedDirectory`] remembers answers.

use crate::identity::Group;
use crate::secret::Secret;
use async_trait::async_trait;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::time::Duration;
use url::Url;

/// What is escaped in a user id made a path segment: all but letters, digits, `-`, `_` and `~`
/// (a `.` too, so an id of `..` cannot climb to another endpoint).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

/// The role of an account awaiting an admin's approval.
const PENDING_ROLE: &str = "pending";

/// Largest body read from Open WebUI.
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
    /// Their groups, inherited ones included (empty when groups are not asked for).
    pub groups: Vec<Group>,
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
#[cfg_attr(any(test, feature = "test-support"), mockall::automock)]
#[async_trait]
pub trait UserDirectory: Send + Sync {
    /// Who `credential` belongs to, with their current role (and groups, where asked for).
    async fn lookup(
        &self,
        credential: &DirectoryCredential,
    ) -> Result<DirectoryUser, DirectoryError>;

    /// The groups of the user `user_id` (inherited ones included), asked with the directory's
    /// own admin credential: for users whose identity was forwarded, which carries no groups.
    async fn groups_of(&self, user_id: &str) -> Result<Vec<Group>, DirectoryError>;
}

/// [`UserDirectory`] backed by Open WebUI's HTTP API.
///
/// - session token → `GET {base}/api/v1/auths/`
/// - API key → `GET {base}/api/v1/users/user/status` (Open WebUI answers API keys with 403 on
///   `/api/v1/auths/`)
/// - with [`Self::with_groups`], at the same time and with the same credential:
///   `GET {base}/api/v1/users/groups?include_inherited=true`
/// - [`UserDirectory::groups_of`], with [`Self::with_admin_key`]:
///   `GET {base}/api/v1/users/{id}/groups?include_inherited=true`
#[derive(Debug, Clone)]
pub struct OpenWebUiDirectory {
    client: reqwest::Client,
    base_url: Url,
    session_url: Url,
    api_key_url: Url,
    own_groups_url: Option<Url>,
    admin_key: Option<Secret>,
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

/// The fields read from each of Open WebUI's group objects.
#[derive(Deserialize)]
struct GroupBody {
    id: String,
    name: String,
}

impl OpenWebUiDirectory {
    /// A directory for the Open WebUI at `base_url`, giving up on a call after `timeout`.
    pub fn new(base_url: &Url, timeout: Duration) -> Result<Self, DirectoryError> {
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
            base_url: base_url.clone(),
            session_url: join(base_url, "api/v1/auths/")?,
            api_key_url: join(base_url, "api/v1/users/user/status")?,
            own_groups_url: None,
            admin_key: None,
            timeout,
        })
    }

    /// Also asks for each caller's groups (one more call, made at the same time as the first).
    pub fn with_groups(mut self, learn: bool) -> Result<Self, DirectoryError> {
        self.own_groups_url = if learn {
            Some(join(
                &self.base_url,
                "api/v1/users/groups?include_inherited=true",
            )?)
        } else {
            None
        };
        Ok(self)
    }

    /// Answers [`UserDirectory::groups_of`] with this admin API key.
    pub fn with_admin_key(mut self, key: Secret) -> Self {
        self.admin_key = Some(key);
        self
    }

    async fn fetch(
        &self,
        credential: &DirectoryCredential,
    ) -> Result<DirectoryUser, DirectoryError> {
        let url = match credential {
            DirectoryCredential::SessionToken(_) => &self.session_url,
            DirectoryCredential::ApiKey(_) => &self.api_key_url,
        };
        let whoami =
            self.get_json::<WhoamiBody>(url, credential.secret(), "a string `id` and `role`");
        let groups = async {
            match &self.own_groups_url {
                Some(url) => self.get_groups(url, credential.secret()).await,
                None => Ok(Vec::new()),
            }
        };
        // Both at once; the whoami answer decides. The body echoes the credential: never
        // include it in an error or a log line.
        let (whoami, groups) = tokio::join!(whoami, groups);
        let whoami = whoami?;
        // Open WebUI refuses a pending account its groups (401): it has none that count.
        let groups = if whoami.role == PENDING_ROLE {
            Vec::new()
        } else {
            groups?
        };
        Ok(DirectoryUser {
            id: whoami.id,
            role: whoami.role,
            email: whoami.email,
            name: whoami.name,
            groups,
        })
    }

    async fn get_groups(
        &self,
        url: &Url,
        credential: &Secret,
    ) -> Result<Vec<Group>, DirectoryError> {
        let listed: Vec<GroupBody> = self
            .get_json(
                url,
                credential,
                "a list of groups with a string `id` and `name`",
            )
            .await?;
        if listed.len() > Group::MAX_PER_CALLER {
            return Err(DirectoryError::Unavailable(format!(
                "Open WebUI lists {} groups for the user; bff takes at most {}",
                listed.len(),
                Group::MAX_PER_CALLER
            )));
        }
        let mut groups = Vec::with_capacity(listed.len());
        for group in listed {
            let group = Group::checked(&group.id, &group.name).ok_or_else(|| {
                DirectoryError::Unavailable(format!(
                    "an Open WebUI group id or name is empty or longer than {} bytes",
                    Group::MAX_FIELD_BYTES
                ))
            })?;
            if !groups.contains(&group) {
                groups.push(group);
            }
        }
        Ok(groups)
    }

    /// `GET url` with `credential`: 200 and a body of the expected shape (`shape` says it in
    /// words; serde's own message could quote the body, which may echo the credential),
    /// `Rejected` on 401 and 403, `Unavailable` otherwise.
    async fn get_json<T: DeserializeOwned>(
        &self,
        url: &Url,
        credential: &Secret,
        shape: &str,
    ) -> Result<T, DirectoryError> {
        let response = self
            .client
            .get(url.clone())
            .bearer_auth(credential.expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| self.transport_error(&error))?;
        match response.status().as_u16() {
            200 => {}
            status @ (401 | 403) => return Err(DirectoryError::Rejected { status }),
            404 if self.own_groups_url.as_ref() == Some(url) => {
                return Err(DirectoryError::Unavailable(
                    "Open WebUI answered HTTP 404 on its groups API (too old for groups?): upgrade it, or set AUTH_LEARN_GROUPS=false".to_owned(),
                ));
            }
            other => {
                return Err(DirectoryError::Unavailable(format!(
                    "Open WebUI answered HTTP {other} on {}",
                    url.path()
                )));
            }
        }
        let body = self.read_bounded(response).await?;
        serde_json::from_slice(&body).map_err(|_| {
            DirectoryError::Unavailable(format!(
                "Open WebUI's answer on {} lacks {shape}",
                url.path()
            ))
        })
    }

    /// The body, up to [`MAX_BODY_BYTES`]: a longer one (declared or sent) is refused unread.
    async fn read_bounded(
        &self,
        mut response: reqwest::Response,
    ) -> Result<Vec<u8>, DirectoryError> {
        let too_large =
            || DirectoryError::Unavailable("Open WebUI's answer is too large".to_owned());
        if response
            .content_length()
            .is_some_and(|length| length > MAX_BODY_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| self.transport_error(&error))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
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

/// `base` joined with `path` (which may carry a query).
fn join(base: &Url, path: &str) -> Result<Url, DirectoryError> {
    Url::parse(&format!("{}/{path}", base.as_str().trim_end_matches('/')))
        .map_err(|error| DirectoryError::Unavailable(format!("invalid OPENWEBUI_URL: {error}")))
}

#[async_trait]
impl UserDirectory for OpenWebUiDirectory {
    async fn lookup(
        &self,
        credential: &DirectoryCredential,
    ) -> Result<DirectoryUser, DirectoryError> {
        self.fetch(credential).await
    }

    async fn groups_of(&self, user_id: &str) -> Result<Vec<Group>, DirectoryError> {
        let Some(key) = &self.admin_key else {
            return Err(DirectoryError::Unavailable(
                "no admin API key to look up a forwarded user's groups (OPENWEBUI_ADMIN_API_KEY)"
                    .to_owned(),
            ));
        };
        // The id is verified (a signed token, or a trusted service's header), but it is still
        // text: one path segment, every other byte escaped.
        let segment = utf8_percent_encode(user_id, PATH_SEGMENT).to_string();
        let url = join(
            &self.base_url,
            &format!("api/v1/users/{segment}/groups?include_inherited=true"),
        )?;
        self.get_groups(&url, key).await.map_err(|error| match error {
            // Open WebUI refusing the admin key is the operator's problem, not the user's.
            DirectoryError::Rejected { status } => DirectoryError::Unavailable(format!(
                "Open WebUI refused OPENWEBUI_ADMIN_API_KEY (HTTP {status}) when asked for a user's groups"
            )),
            other => other,
        })
    }
}
