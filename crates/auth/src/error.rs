//! The crate's errors: [`AuthError`] at request time, [`ConfigError`] at start-up.

use crate::directory::DirectoryError;
use crate::jwt::TokenError;

/// Why a request was not let through. Messages never contain a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header and no `token` cookie.
    #[error(
        "authentication required: send `Authorization: Bearer <Open WebUI token or API key>` or the `token` cookie"
    )]
    MissingCredentials,
    /// Only the `token` cookie was sent, with a method it may not authenticate.
    #[error(
        "the `token` cookie authenticates only GET and HEAD requests (otherwise any site could act for you); send `Authorization: Bearer <token>`"
    )]
    CookieNotAccepted,
    /// An `sk-…` credential that is not shaped like an Open WebUI API key.
    #[error("not an Open WebUI API key: they are `sk-` followed by 32 hexadecimal digits")]
    MalformedApiKey,
    /// `Authorization` is present but not `Bearer <credential>`.
    #[error("the Authorization header must be `Bearer <credential>`: {0}")]
    MalformedAuthorization(&'static str),
    /// The session token failed local verification.
    #[error("invalid session token: {0}")]
    InvalidToken(TokenError),
    /// `X-OpenWebUI-User-Jwt` failed verification.
    #[error("invalid X-OpenWebUI-User-Jwt: {0}")]
    InvalidForwardedToken(TokenError),
    /// `X-OpenWebUI-User-Jwt` arrived but bff has no secret to check it with.
    #[error(
        "X-OpenWebUI-User-Jwt cannot be verified: bff has no OPENWEBUI_FORWARD_JWT_SECRET configured"
    )]
    ForwardedTokenNotConfigured,
    /// A trusted service forwarded a group list bff will not take (too many, too long).
    #[error("X-OpenWebUI-User-Groups / -Group-Ids: {0}")]
    InvalidForwardedGroups(String),
    /// Open WebUI refused the credential: revoked or expired session, invalid API key, or a
    /// pending account using an API key.
    #[error(
        "Open WebUI rejected the credential: the session was revoked or has expired, or the API key is invalid"
    )]
    Rejected,
    /// Open WebUI could not be asked, so the caller cannot be verified (fail closed). The
    /// reason is logged, not shown.
    #[error("cannot verify the caller right now: Open WebUI did not answer; try again shortly")]
    DirectoryUnavailable(String),
    /// An API key arrived but bff is not connected to Open WebUI, the only place keys can be checked.
    #[error(
        "API keys can only be verified by Open WebUI, and bff is not connected to it (the operator must set OPENWEBUI_URL)"
    )]
    ApiKeyNeedsDirectory,
    /// The request can reach a model (as `model` or a fallback) that neither the caller's role
    /// nor their groups allow.
    #[error("model `{0}` is not allowed for your role or your groups")]
    ModelNotAllowed(String),
    /// Authenticated, but the role lacks the permission; the message says why.
    #[error("{0}")]
    Forbidden(String),
    /// The server was wired without the auth state (a deployment bug, not the caller's fault).
    #[error("authentication is not configured on this server")]
    NotConfigured,
}

impl AuthError {
    /// HTTP status: 401 bad or missing credentials, 400 a forwarded group list refused, 403 not
    /// allowed, 503 directory down.
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingCredentials
            | Self::CookieNotAccepted
            | Self::MalformedApiKey
            | Self::MalformedAuthorization(_)
            | Self::InvalidToken(_)
            | Self::InvalidForwardedToken(_)
            | Self::ForwardedTokenNotConfigured
            | Self::Rejected => 401,
            Self::ApiKeyNeedsDirectory | Self::Forbidden(_) | Self::ModelNotAllowed(_) => 403,
            Self::InvalidForwardedGroups(_) => 400,
            Self::DirectoryUnavailable(_) => 503,
            Self::NotConfigured => 500,
        }
    }

    /// OpenAI-style error `type`.
    pub fn error_type(&self) -> &'static str {
        match self.status() {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            503 => "service_unavailable_error",
            _ => "server_error",
        }
    }

    /// A short, stable label: the OpenAI-style `code` and the metrics `reason`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing_credentials",
            Self::CookieNotAccepted => "cookie_not_accepted",
            Self::MalformedApiKey => "malformed_api_key",
            Self::MalformedAuthorization(_) => "malformed_authorization",
            Self::InvalidToken(error) | Self::InvalidForwardedToken(error) => error.reason(),
            Self::ForwardedTokenNotConfigured => "forwarded_token_not_configured",
            Self::InvalidForwardedGroups(_) => "invalid_forwarded_groups",
            Self::Rejected => "credential_rejected",
            Self::DirectoryUnavailable(_) => "directory_unavailable",
            Self::ApiKeyNeedsDirectory => "api_key_needs_directory",
            Self::Forbidden(_) => "permission_denied",
            Self::ModelNotAllowed(_) => "model_not_allowed",
            Self::NotConfigured => "auth_not_configured",
        }
    }
}

impl AuthError {
    /// The request field the error is about, for the OpenAI-style `param`.
    pub fn param(&self) -> Option<&str> {
        match self {
            Self::ModelNotAllowed(_) => Some("model"),
            _ => None,
        }
    }

    /// The OpenAI-shaped body: `{"error": {"message", "type", "param", "code"}}`, the one the
    /// actix and tower integrations answer with.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.to_string(),
                "type": self.error_type(),
                "param": self.param(),
                "code": self.code(),
            }
        })
    }
}

/// A policy file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct PolicyError {
    /// The file (or source name) that was read.
    pub file: String,
    /// 1-based line of the problem (0 when the file could not be read at all).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Why the auth layer cannot start. Each message names the variable or file to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Neither `WEBUI_SECRET_KEY` nor `WEBUI_SECRET_KEY_FILE` gives a secret.
    #[error(
        "no session signing secret: set WEBUI_SECRET_KEY to Open WebUI's secret, or WEBUI_SECRET_KEY_FILE to the path of its .webui_secret_key file"
    )]
    MissingSecret,
    /// `WEBUI_SECRET_KEY_FILE` cannot be used.
    #[error("WEBUI_SECRET_KEY_FILE ({path}): {reason}")]
    SecretFile {
        /// The configured path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A variable holds a value that cannot be used.
    #[error("{variable}: {reason}")]
    InvalidValue {
        /// The environment variable.
        variable: &'static str,
        /// What is expected (never echoes a secret value).
        reason: String,
    },
    /// The RBAC policy file is unusable.
    #[error("RBAC policy {0}")]
    Policy(#[from] PolicyError),
    /// The Open WebUI client could not be built.
    #[error("OPENWEBUI_URL: {0}")]
    Directory(#[from] DirectoryError),
}
