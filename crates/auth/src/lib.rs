//! # bff-auth
//!
//! Who is calling and what they may do, for services that sit behind
//! [Open WebUI](https://github.com/open-webui/open-webui).
//!
//! It verifies Open WebUI's own credentials — HS256 session tokens (header or `token` cookie)
//! and `sk-…` API keys — asks Open WebUI for the caller's current role (tokens carry none) and
//! whether the session is still live, accepts identity forwarded by Open WebUI's backend from
//! trusted callers only, and applies a deny-by-default [`Policy`]: what each role and each Open
//! WebUI group may do, in permission names the service defines.
//!
//! ## Connecting Open WebUI, best option first
//! 1. **The user's own credential** (connection `auth_type: session`): Open WebUI sends the
//!    user's session token or API key as the Bearer credential; bff verifies it exactly as if
//!    the browser had called. Nothing to trust but Open WebUI's own signature and database.
//! 2. **Signed forwarded user**: Open WebUI's `FORWARD_USER_INFO_HEADER_JWT_SECRET` signs an
//!    `X-OpenWebUI-User-Jwt` (role included); bff checks it with `OPENWEBUI_FORWARD_JWT_SECRET`
//!    and requires a service key (`AUTH_SERVICE_KEYS`) as the connection's Bearer key, because
//!    the JWT can be replayed for its 5-minute life.
//! 3. **Plain forwarded headers** (`X-OpenWebUI-User-*`): unsigned; honoured only with a service
//!    key and `AUTH_TRUST_FORWARDED_USER_HEADERS=true`, behind a network boundary.
//!
//! ## Use from another service
//! ```no_run
//! use bff_auth::{AuthSettings, Gate, Permission, Policy, RequestCredentials};
//!
//! const CHAT: Permission = Permission::new("chat"); // your service's own vocabulary
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let settings = AuthSettings::from_env()?; // WEBUI_SECRET_KEY, OPENWEBUI_URL, …
//! let policy = Policy::load(&settings.policy_file, &[CHAT])?; // stops on errors, with file:line
//! let gate = Gate::from_settings(&settings, policy)?;
//!
//! let headers = [("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9…".as_bytes())];
//! let credentials = RequestCredentials::from_headers(headers);
//! let identity = gate.authenticate(&credentials).await?; // 401 / 503 as AuthError
//! gate.authorize(&identity, &CHAT)?; // 403 as AuthError
//! println!("{} ({:?}) may chat", identity.user_id, identity.role);
//! # Ok(()) }
//! ```
//! With actix-web (feature `actix`), see the `actix` module: `gate.require(CHAT)` on a route,
//! and `Identity` as an extractor.
//!
//! ## Revocation lag
//! Open WebUI's answers are cached per credential for `AUTH_CACHE_TTL_SECONDS` (default 60):
//! a session revoked or a user demoted in Open WebUI keeps its previous rights here for at most
//! that long. When Open WebUI is down, a cached answer is served until its TTL ends; after that
//! requests fail closed with 503.

#![deny(missing_docs)]

mod authenticator;
mod cache;
mod credentials;
mod directory;
mod document;
mod error;
mod forwarded;
mod identity;
mod jwt;
mod policy;
mod secret;
mod service_keys;
mod session;
mod settings;

#[cfg(feature = "actix")]
mod actix;
#[cfg(feature = "tower")]
pub mod tower;

#[cfg(feature = "actix")]
pub use actix::{
    Authenticate, AuthenticateService, RequirePermission, RequirePermissionService,
    credentials_from_request,
};
pub use authenticator::{Authenticator, Gate};
pub use cache::CachedDirectory;
pub use credentials::{
    AUTH_TYPE_HEADER, CHAT_ID_HEADER, FORWARDED_JWT_HEADER, FORWARDED_USER_EMAIL_HEADER,
    FORWARDED_USER_GROUP_IDS_HEADER, FORWARDED_USER_GROUPS_HEADER, FORWARDED_USER_ID_HEADER,
    FORWARDED_USER_NAME_HEADER, FORWARDED_USER_ROLE_HEADER, RequestCredentials, TOKEN_COOKIE,
    sanitize_label,
};
#[cfg(any(test, feature = "test-support"))]
pub use directory::MockUserDirectory;
pub use directory::{
    DirectoryCredential, DirectoryError, DirectoryUser, OpenWebUiDirectory, UserDirectory,
};
pub use document::{PolicyDocument, Section, Table, Vocabulary, read_file};
pub use error::{AuthError, ConfigError, PolicyError};
pub use forwarded::{
    ForwardedJwtVerifier, ForwardedUser, groups_from_headers, user_from_plain_headers,
};
pub use identity::{AuthMethod, Group, Identity};
pub use jwt::{MAX_TOKEN_BYTES, TokenError};
pub use policy::{Grant, Permission, Policy};
pub use secret::Secret;
pub use service_keys::ServiceKeys;
pub use session::{SessionClaims, SessionTokenVerifier};
pub use settings::{AuthSettings, ENV_VARIABLES, MIN_SERVICE_KEY_BYTES, RECOMMENDED_SECRET_BYTES};
