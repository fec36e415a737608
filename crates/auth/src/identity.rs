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

    /// Whether the caller presented a service key: a trusted backend, which may vouch for a user.
    pub fn is_service(self) -> bool {
        matches!(
            self,
            Self::Service | Self::ForwardedJwt | Self::ForwardedHeaders
        )
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An Open WebUI group the caller belongs to (directly or through a parent group).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Group {
    /// Open WebUI's group id: stable across renames. Empty when only the name is known
    /// (a connection header carrying `{{USER_GROUPS}}`).
    pub id: String,
    /// The group's display name.
    pub name: String,
}

impl Group {
    /// Most groups one caller may be reported in; a longer list is refused, not cut, because a
    /// group dropped could be the one whose budget limits the caller.
    pub const MAX_PER_CALLER: usize = 256;
    /// Longest group id or name accepted, in bytes.
    pub const MAX_FIELD_BYTES: usize = 256;

    /// A group with both an id and a name, if both fit [`Self::MAX_FIELD_BYTES`] (the name is
    /// trimmed, as Open WebUI trims it in its connection headers).
    pub fn checked(id: &str, name: &str) -> Option<Self> {
        let name = name.trim();
        let fits = |text: &str| text.len() <= Self::MAX_FIELD_BYTES;
        (fits(id) && fits(name) && !(id.is_empty() && name.is_empty())).then(|| Self {
            id: id.to_owned(),
            name: name.to_owned(),
        })
    }

    /// Whether a policy key names this group: its id, or else its name.
    pub fn is_named(&self, key: &str) -> bool {
        (!self.id.is_empty() && self.id == key) || self.name == key
    }
}

/// Who is calling. Built only by [`crate::Authenticator`]; never a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Open WebUI user id, or `service:<key name>` for a service principal.
    pub user_id: String,
    /// The role RBAC applies. `None` when no authority could say (no Open WebUI connection):
    /// such a caller is authenticated but has no permissions.
    pub role: Option<String>,
    /// The caller's groups, as Open WebUI reports them (inherited ones included).
    pub groups: Vec<Group>,
    /// Email, when the authority told us.
    pub email: Option<String>,
    /// Display name, when the authority told us (a service key's name for a service).
    pub name: Option<String>,
    /// Open WebUI chat id (`X-OpenWebUI-Chat-Id`, sanitised): it only labels the caller's own
    /// request, so any authenticated caller may send it.
    pub chat_id: Option<String>,
    /// How the user signed in to Open WebUI (`X-OpenWebUI-Auth-Type`: `jwt` or `api_key`).
    pub openwebui_auth_type: Option<String>,
    /// How the caller authenticated.
    pub via: AuthMethod,
}

impl Identity {
    /// An identity with only a user id, a role and how it was proven; the rest empty.
    pub fn new(user_id: impl Into<String>, role: Option<String>, via: AuthMethod) -> Self {
        Self {
            user_id: user_id.into(),
            role,
            groups: Vec::new(),
            email: None,
            name: None,
            chat_id: None,
            openwebui_auth_type: None,
            via,
        }
    }
}
