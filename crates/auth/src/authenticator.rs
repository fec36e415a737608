//! Turning a request's credentials into an [`Identity`], and the [`Gate`] that adds RBAC.

use crate::cache::CachedDirectory;
use crate::credentials::{
    BearerError, RequestCredentials, bearer_credential, is_api_key_body, sanitize_label,
};
use crate::directory::{
    DirectoryCredential, DirectoryError, DirectoryUser, OpenWebUiDirectory, UserDirectory,
};
use crate::error::{AuthError, ConfigError};
use crate::forwarded::{
    ForwardedJwtVerifier, ForwardedUser, groups_from_headers, user_from_plain_headers,
};
use crate::identity::{AuthMethod, Identity};
use crate::policy::{Permission, Policy};
use crate::secret::Secret;
use crate::service_keys::ServiceKeys;
use crate::session::SessionTokenVerifier;
use crate::settings::AuthSettings;
use std::sync::Arc;

/// Decides who a caller is. Holds no per-request state; share it behind an `Arc`.
///
/// Order of checks:
/// 1. The credential is the `Authorization: Bearer` value, else the `token` cookie — the
///    cookie only for safe methods (`GET`, `HEAD`), because a browser attaches it to requests
///    other sites make.
/// 2. A configured service key → the caller is a trusted backend: it may vouch for a user with
///    `X-OpenWebUI-User-Jwt` (always checked) or, if enabled, plain `X-OpenWebUI-User-*`
///    headers; otherwise the service itself is the principal. Only here are `X-OpenWebUI-*`
///    headers read at all.
/// 3. `sk-…` → an Open WebUI API key: refused unless it has the form Open WebUI issues
///    (`sk-` and 32 hex digits), then checked with Open WebUI.
/// 4. Anything else → a session token: verified locally, then (with a directory) confirmed
///    with Open WebUI, which supplies the current role and sees revocations.
pub struct Authenticator {
    sessions: SessionTokenVerifier,
    directory: Option<Arc<dyn UserDirectory>>,
    service_keys: ServiceKeys,
    service_role: String,
    forwarded_jwt: Option<ForwardedJwtVerifier>,
    trust_forwarded_headers: bool,
    forwarded_groups_from_directory: bool,
}

impl Authenticator {
    /// An authenticator for session tokens; `directory` supplies roles and revocation
    /// (without one, callers authenticate with no role). Add trusted backends with
    /// [`Self::with_service_keys`].
    pub fn new(sessions: SessionTokenVerifier, directory: Option<Arc<dyn UserDirectory>>) -> Self {
        Self {
            sessions,
            directory,
            service_keys: ServiceKeys::default(),
            service_role: String::new(),
            forwarded_jwt: None,
            trust_forwarded_headers: false,
            forwarded_groups_from_directory: false,
        }
    }

    /// Trusts callers presenting one of `keys`; a bare key acts with `service_role`.
    pub fn with_service_keys(mut self, keys: ServiceKeys, service_role: impl Into<String>) -> Self {
        self.service_keys = keys;
        self.service_role = service_role.into();
        self
    }

    /// Verifies `X-OpenWebUI-User-Jwt` from service-key callers with this verifier.
    pub fn with_forwarded_jwt(mut self, verifier: ForwardedJwtVerifier) -> Self {
        self.forwarded_jwt = Some(verifier);
        self
    }

    /// Honours plain `X-OpenWebUI-User-*` headers from service-key callers, unless a
    /// forwarded-JWT verifier is set: then only signed identity counts.
    pub fn trusting_forwarded_headers(mut self, trust: bool) -> Self {
        self.trust_forwarded_headers = trust;
        self
    }

    /// Takes a forwarded user's groups from the directory ([`UserDirectory::groups_of`], an
    /// admin lookup) instead of the `X-OpenWebUI-User-Groups` / `-Group-Ids` headers.
    pub fn with_forwarded_groups_from_directory(mut self, from_directory: bool) -> Self {
        self.forwarded_groups_from_directory = from_directory;
        self
    }

    /// Authenticates a request. Never logs or returns a credential. The chat id
    /// (`X-OpenWebUI-Chat-Id`) and Open WebUI's auth type (`X-OpenWebUI-Auth-Type`) only label
    /// the caller's own request, so they are taken from any authenticated caller, sanitised.
    pub async fn authenticate(&self, request: &RequestCredentials) -> Result<Identity, AuthError> {
        let mut identity = self.identify(request).await?;
        identity.chat_id = request.chat_id.as_deref().and_then(sanitize_label);
        identity.openwebui_auth_type = request
            .auth_type
            .as_deref()
            .filter(|kind| matches!(*kind, "jwt" | "api_key"))
            .map(str::to_owned);
        Ok(identity)
    }

    async fn identify(&self, request: &RequestCredentials) -> Result<Identity, AuthError> {
        let credential = match (&request.authorization, &request.token_cookie) {
            (Some(header), _) => bearer_credential(header).map_err(|error| {
                AuthError::MalformedAuthorization(match error {
                    BearerError::UnsupportedScheme => "only the Bearer scheme is accepted",
                    BearerError::Empty => "the bearer credential is empty",
                })
            })?,
            (None, Some(cookie)) if !cookie.is_empty() => {
                if !request.safe_method {
                    return Err(AuthError::CookieNotAccepted);
                }
                cookie.expose()
            }
            (None, _) => return Err(AuthError::MissingCredentials),
        };

        // Service keys count only in the Authorization header, never as a browser cookie.
        if request.authorization.is_some()
            && let Some(service) = self.service_keys.identify(credential)
        {
            return self.authenticate_service(service, request).await;
        }
        if let Some(key) = credential.strip_prefix("sk-") {
            if !is_api_key_body(key) {
                return Err(AuthError::MalformedApiKey);
            }
            return self.authenticate_api_key(credential).await;
        }
        self.authenticate_session(credential).await
    }

    async fn authenticate_service(
        &self,
        service: &str,
        request: &RequestCredentials,
    ) -> Result<Identity, AuthError> {
        if let Some(token) = &request.forwarded_jwt {
            let verifier = self
                .forwarded_jwt
                .as_ref()
                .ok_or(AuthError::ForwardedTokenNotConfigured)?;
            let user = verifier
                .verify(token.expose())
                .map_err(AuthError::InvalidForwardedToken)?;
            return self
                .forwarded(user, AuthMethod::ForwardedJwt, request)
                .await;
        }
        // With a signing secret configured, only signed identity counts.
        if self.trust_forwarded_headers
            && self.forwarded_jwt.is_none()
            && let Some(user) = user_from_plain_headers(request)
        {
            return self
                .forwarded(user, AuthMethod::ForwardedHeaders, request)
                .await;
        }
        Ok(Identity {
            name: Some(service.to_owned()),
            ..Identity::new(
                format!("service:{service}"),
                Some(self.service_role.clone()),
                AuthMethod::Service,
            )
        })
    }

    /// A user a trusted service vouched for, with their groups: from the directory's admin
    /// lookup when configured, else from the service's group headers.
    async fn forwarded(
        &self,
        user: ForwardedUser,
        via: AuthMethod,
        request: &RequestCredentials,
    ) -> Result<Identity, AuthError> {
        let groups = match &self.directory {
            Some(directory) if self.forwarded_groups_from_directory => directory
                .groups_of(&user.user_id)
                .await
                .map_err(directory_error)?,
            _ => groups_from_headers(request).map_err(AuthError::InvalidForwardedGroups)?,
        };
        Ok(Identity {
            email: user.email,
            name: user.name,
            groups,
            ..Identity::new(user.user_id, user.role, via)
        })
    }

    async fn authenticate_api_key(&self, key: &str) -> Result<Identity, AuthError> {
        let directory = self
            .directory
            .as_ref()
            .ok_or(AuthError::ApiKeyNeedsDirectory)?;
        let user = lookup(
            directory.as_ref(),
            &DirectoryCredential::ApiKey(Secret::new(key)),
        )
        .await?;
        Ok(identity_from_directory(user, AuthMethod::ApiKey))
    }

    async fn authenticate_session(&self, token: &str) -> Result<Identity, AuthError> {
        let claims = self
            .sessions
            .verify(token)
            .map_err(AuthError::InvalidToken)?;
        let Some(directory) = &self.directory else {
            return Ok(Identity::new(claims.user_id, None, AuthMethod::Session));
        };
        let user = lookup(
            directory.as_ref(),
            &DirectoryCredential::SessionToken(Secret::new(token)),
        )
        .await?;
        if user.id != claims.user_id {
            tracing::warn!(
                "Open WebUI resolved a session token to a different user id than its `id` claim; rejecting"
            );
            return Err(AuthError::Rejected);
        }
        Ok(identity_from_directory(user, AuthMethod::Session))
    }
}

async fn lookup(
    directory: &dyn UserDirectory,
    credential: &DirectoryCredential,
) -> Result<DirectoryUser, AuthError> {
    directory.lookup(credential).await.map_err(directory_error)
}

fn directory_error(error: DirectoryError) -> AuthError {
    match error {
        DirectoryError::Rejected { .. } => AuthError::Rejected,
        DirectoryError::Unavailable(reason) => {
            tracing::warn!(%reason, "Open WebUI lookup failed; refusing the request");
            AuthError::DirectoryUnavailable(format!("Open WebUI: {reason}"))
        }
    }
}

fn identity_from_directory(user: DirectoryUser, via: AuthMethod) -> Identity {
    Identity {
        email: user.email,
        name: user.name,
        groups: user.groups,
        ..Identity::new(user.id, Some(user.role), via)
    }
}

/// Authentication plus authorization: the one object a server needs. Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    authenticator: Arc<Authenticator>,
    policy: Arc<Policy>,
}

impl Gate {
    /// Combines an authenticator and a policy.
    pub fn new(authenticator: Authenticator, policy: Policy) -> Self {
        Self {
            authenticator: Arc::new(authenticator),
            policy: Arc::new(policy),
        }
    }

    /// Builds everything from settings with `policy`: connects the (cached) Open WebUI
    /// directory when `OPENWEBUI_URL` is set, and logs the settings' warnings. Load the policy
    /// with [`Policy::load`] (or [`crate::PolicyDocument`] when the file carries sections of
    /// the service's own).
    pub fn from_settings(settings: &AuthSettings, policy: Policy) -> Result<Self, ConfigError> {
        for warning in settings.warnings() {
            tracing::warn!("{warning}");
        }
        let directory = match &settings.openwebui_url {
            Some(url) => {
                let mut client = OpenWebUiDirectory::new(url, settings.directory_timeout)?
                    .with_groups(settings.learn_groups)?;
                if let Some(key) = &settings.admin_api_key {
                    client = client.with_admin_key(key.clone());
                }
                let cached =
                    CachedDirectory::new(client, settings.cache_ttl, settings.cache_capacity);
                Some(Arc::new(cached) as Arc<dyn UserDirectory>)
            }
            None => None,
        };
        let sessions = SessionTokenVerifier::new(
            &settings.webui_secret,
            settings.token_leeway_secs,
            settings.allow_non_expiring_tokens,
        );
        let mut authenticator = Authenticator::new(sessions, directory)
            .with_service_keys(
                ServiceKeys::new(settings.service_keys.iter().cloned()),
                policy.service_role(),
            )
            .trusting_forwarded_headers(settings.trust_forwarded_headers)
            .with_forwarded_groups_from_directory(settings.admin_api_key.is_some());
        if let Some(secret) = &settings.forward_jwt_secret {
            authenticator = authenticator.with_forwarded_jwt(ForwardedJwtVerifier::new(
                secret,
                settings.token_leeway_secs,
            ));
        }
        Ok(Self::new(authenticator, policy))
    }

    /// Who is calling.
    pub async fn authenticate(&self, request: &RequestCredentials) -> Result<Identity, AuthError> {
        self.authenticator.authenticate(request).await
    }

    /// `Ok` if `identity` holds `permission`, else a 403 saying why.
    pub fn authorize(&self, identity: &Identity, permission: &Permission) -> Result<(), AuthError> {
        self.policy.check(identity, permission)
    }

    /// The policy, e.g. for model allow-lists.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}
