//! The authenticated caller.

use std::fmt;

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// Their own Open WebUI session token (header or cookie), role from Open WebUI.
    Session,
    /// Their own Open WebUI API key, role from Open WebUI.
    ApiKey,
    /// A service key plus `X-OpenWebUI-User-Jwt` signed by Open WebUI.
    ForwardedJwt,
    /// A service key plus plain `X-OpenWebUI-User-*` headers (operator opt-in).
    ForwardedHeaders,
    /// A service key alone: the service itself is the principal.
    Service,
}

impl AuthMethod {
    /// Stable lowercase name, for logs, metrics and telemetry.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::ApiKey => "api_key",
            Self::ForwardedJwt => "forwarded_jwt",
            Self::ForwardedHeaders => "forwarded_headers",
            Self::Service => "service",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is calling. Built only by [`crate::Authenticator`]; never a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Open WebUI user id, or `service:<key name>` for a service principal.
    pub user_id: String,
    /// The role RBAC applies. `None` when no authority could say (bff has no `OPENWEBUI_URL`):
    /// such a caller is authenticated but has no permissions.
    pub role: Option<String>,
    /// Email, when the authority told us.
    pub email: Option<String>,
    /// Display name, when the authority told us.
    pub name: Option<String>,
    /// Open WebUI chat id (`X-OpenWebUI-Chat-Id`, sanitised): it only labels the caller's own
    /// request, so any authenticated caller may send it.
    pub chat_id: Option<String>,
    /// How the user signed in to Open WebUI (`X-OpenWebUI-Auth-Type`: `jwt` or `api_key`).
    pub openwebui_auth_type: Option<String>,
    /// How the caller authenticated.
    pub via: AuthMethod,
}
