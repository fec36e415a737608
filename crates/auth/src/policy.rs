//! Role-based access control: which role may do what, loaded from `config/rbac.toml`.
//!
//! Deny by default: a role absent from the policy, a caller without a role, and a permission a
//! role does not list all get nothing. A policy that cannot be read, or that names an unknown
//! permission, is an error naming the file, the line and the reason, so start-up stops.
//!
//! ```toml
//! service_role = "service"          # the role given to a bare service key
//!
//! [roles.admin]
//! permissions = ["*"]               # every permission
//!
//! [roles.user]
//! permissions = ["chat", "models", "observability:own"]
//! models = ["gpt-4o-mini", "mock-*"] # optional model allow-list, `*` wildcards; absent = all
//! allow_params = ["num_retries"]     # optional: body fields beyond OpenAI's parameters
//! ```
//!
//! A chat request is checked as a whole by [`Policy::check_request`]: every model it can reach
//! (`model` and any fallback) against the allow-list, and every body field that is not an
//! OpenAI parameter against `allow_params`. Fields that let a caller pick credentials or
//! deployments ([`NEVER_ALLOWED_PARAMS`]) cannot be allowed at all.

use crate::error::AuthError;
use crate::identity::Identity;
use crate::limits::{Limits, QuotaLimits, RoleLimitsFile, UserFile};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

/// Something the product lets a caller do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Call chat completions (`chat`).
    Chat,
    /// List models (`models`).
    Models,
    /// Read one's own traces and usage, and dependency health (`observability:own`).
    ObservabilityOwn,
    /// Read every user's traces and usage (`observability:all`).
    ObservabilityAll,
    /// Scrape `/metrics` when it is protected (`metrics`).
    Metrics,
    /// Administrative operations (`admin`).
    Admin,
}

impl Permission {
    /// Every permission, in a stable order.
    pub const ALL: [Self; 6] = [
        Self::Chat,
        Self::Models,
        Self::ObservabilityOwn,
        Self::ObservabilityAll,
        Self::Metrics,
        Self::Admin,
    ];

    /// The name used in the policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Models => "models",
            Self::ObservabilityOwn => "observability:own",
            Self::ObservabilityAll => "observability:all",
            Self::Metrics => "metrics",
            Self::Admin => "admin",
        }
    }

    /// Parses a policy-file name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|permission| permission.as_str() == name)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

/// Body fields no role may be allowed: they let a caller choose the credentials, endpoint or
/// deployments LiteLLM uses.
pub const NEVER_ALLOWED_PARAMS: [&str; 9] = [
    "api_key",
    "api_base",
    "base_url",
    "api_version",
    "model_list",
    "litellm_params",
    "user_config",
    "extra_headers",
    "organization",
];

/// What one role may do.
#[derive(Debug, Clone, PartialEq)]
struct RoleGrant {
    permissions: BTreeSet<Permission>,
    /// `None`: every model. `Some`: only models matching one of these patterns.
    models: Option<Vec<String>>,
    /// Body fields beyond the OpenAI parameters this role may send.
    allow_params: BTreeSet<String>,
    /// Account-wide usage limits.
    limits: Limits,
    /// Usage limits per model pattern, in file order.
    model_limits: Vec<(String, Limits)>,
}

/// The role → permission map. Cheap to clone behind an `Arc`.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    roles: BTreeMap<String, RoleGrant>,
    service_role: String,
    /// Per-user limit overrides, by Open WebUI user id.
    users: BTreeMap<String, Limits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    service_role: toml::Spanned<String>,
    #[serde(default)]
    roles: BTreeMap<String, RoleFile>,
    #[serde(default)]
    users: BTreeMap<String, UserFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleFile {
    permissions: Vec<toml::Spanned<String>>,
    models: Option<Vec<toml::Spanned<String>>>,
    #[serde(default)]
    allow_params: Vec<toml::Spanned<String>>,
    limits: Option<RoleLimitsFile>,
}

impl Policy {
    /// Reads and validates the policy at `path`.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| PolicyError {
            file: file.clone(),
            line: 0,
            reason: format!("cannot read the RBAC policy: {error}"),
        })?;
        Self::parse(&text, &file)
    }

    /// Parses policy text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, PolicyError> {
        let error_at = |offset: Option<usize>, reason: String| PolicyError {
            file: file.to_owned(),
            line: offset.map_or(1, |offset| line_of(text, offset)),
            reason,
        };
        let parsed: PolicyFile = toml::from_str(text).map_err(|error| {
            error_at(
                error.span().map(|span| span.start),
                error.message().trim().to_owned(),
            )
        })?;

        let mut roles = BTreeMap::new();
        for (role, file) in parsed.roles {
            let grant = file.into_grant().map_err(|(offset, reason)| {
                error_at(Some(offset), format!("role `{role}`: {reason}"))
            })?;
            roles.insert(role, grant);
        }

        let service_role = parsed.service_role;
        if !roles.contains_key(service_role.get_ref()) {
            return Err(error_at(
                Some(service_role.span().start),
                format!(
                    "service_role `{}` has no [roles.{}] table",
                    service_role.get_ref(),
                    service_role.get_ref()
                ),
            ));
        }
        let mut users = BTreeMap::new();
        for (user, file) in parsed.users {
            let limits = file.limits.into_limits().map_err(|(offset, reason)| {
                error_at(Some(offset), format!("user `{user}`: {reason}"))
            })?;
            users.insert(user, limits);
        }
        Ok(Self {
            roles,
            service_role: service_role.into_inner(),
            users,
        })
    }

    /// The usage limits for `user_id` with `role` asking for `model`: the role's account-wide
    /// limits replaced key by key by the user's own, and the role's limits for the first model
    /// pattern matching `model`. No role, or a role not in the policy: the user's own limits.
    pub fn limits_for(&self, user_id: &str, role: Option<&str>, model: &str) -> QuotaLimits {
        let grant = role.and_then(|role| self.roles.get(role));
        let role_limits = grant.map(|grant| grant.limits.clone()).unwrap_or_default();
        let account = match self.users.get(user_id) {
            Some(own) => role_limits.overridden_by(own),
            None => role_limits,
        };
        let model = grant.and_then(|grant| {
            grant
                .model_limits
                .iter()
                .find(|(pattern, _)| wildcard_match(pattern, model))
                .cloned()
        });
        QuotaLimits { account, model }
    }

    /// Every model-pattern limit a role has, for reports.
    pub fn model_limits(&self, role: Option<&str>) -> Vec<(String, Limits)> {
        role.and_then(|role| self.roles.get(role))
            .map(|grant| grant.model_limits.clone())
            .unwrap_or_default()
    }

    /// The role given to callers that present only a service key.
    pub fn service_role(&self) -> &str {
        &self.service_role
    }

    /// The roles the policy defines.
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.roles.keys().map(String::as_str)
    }

    /// Whether `role` has `permission`. No role, or a role not in the policy, has nothing.
    pub fn allows(&self, role: Option<&str>, permission: Permission) -> bool {
        role.and_then(|role| self.roles.get(role))
            .is_some_and(|grant| grant.permissions.contains(&permission))
    }

    /// `Ok` if `identity` has `permission`, else a 403 error that says why.
    pub fn check(&self, identity: &Identity, permission: Permission) -> Result<(), AuthError> {
        if self.allows(identity.role.as_deref(), permission) {
            return Ok(());
        }
        let reason = match identity.role.as_deref() {
            None => format!(
                "permission `{permission}` denied: bff cannot learn your role because it is not connected to Open WebUI (the operator must set OPENWEBUI_URL)"
            ),
            Some(role) if !self.roles.contains_key(role) => format!(
                "permission `{permission}` denied: role `{role}` is not in the RBAC policy, so it has no permissions"
            ),
            Some("pending") => format!(
                "permission `{permission}` denied: your Open WebUI account is pending approval by an administrator"
            ),
            Some(role) => format!("permission `{permission}` denied for role `{role}`"),
        };
        Err(AuthError::Forbidden(reason))
    }

    /// `Ok` if `identity`'s role may send a request reaching `models` and carrying
    /// `extra_params` (body fields that are not OpenAI parameters); else the first violation:
    /// a 400 naming an unsupported field, or a 403 naming a model the role may not use.
    pub fn check_request(
        &self,
        identity: &Identity,
        models: &[&str],
        extra_params: &[String],
    ) -> Result<(), AuthError> {
        let grant = identity
            .role
            .as_deref()
            .and_then(|role| self.roles.get(role));
        if let Some(param) = extra_params
            .iter()
            .find(|param| grant.is_none_or(|grant| !grant.allow_params.contains(*param)))
        {
            return Err(AuthError::UnsupportedParameter(param.clone()));
        }
        match models
            .iter()
            .find(|model| !self.allows_model(identity.role.as_deref(), model))
        {
            Some(model) => Err(AuthError::ModelNotAllowed((*model).to_owned())),
            None => Ok(()),
        }
    }

    /// Whether `role` may use `model`. Roles without an allow-list may use every model;
    /// no role or an unknown role may use none.
    pub fn allows_model(&self, role: Option<&str>, model: &str) -> bool {
        match role.and_then(|role| self.roles.get(role)) {
            None => false,
            Some(RoleGrant { models: None, .. }) => true,
            Some(RoleGrant {
                models: Some(patterns),
                ..
            }) => patterns
                .iter()
                .any(|pattern| wildcard_match(pattern, model)),
        }
    }
}

impl RoleFile {
    /// What the role may do, or where (byte offset) and why it cannot be used.
    fn into_grant(self) -> Result<RoleGrant, (usize, String)> {
        let mut permissions = BTreeSet::new();
        for name in &self.permissions {
            if name.get_ref() == "*" {
                permissions.extend(Permission::ALL);
                continue;
            }
            let permission = Permission::from_name(name.get_ref()).ok_or_else(|| {
                (
                    name.span().start,
                    format!(
                        "unknown permission `{}`; known: *, {}",
                        name.get_ref(),
                        Permission::ALL.map(Permission::as_str).join(", ")
                    ),
                )
            })?;
            permissions.insert(permission);
        }
        let mut allow_params = BTreeSet::new();
        for param in self.allow_params {
            if NEVER_ALLOWED_PARAMS.contains(&param.get_ref().as_str()) {
                return Err((
                    param.span().start,
                    format!(
                        "`{}` cannot be allowed: it lets a caller choose LiteLLM's credentials, endpoint or deployments",
                        param.get_ref()
                    ),
                ));
            }
            allow_params.insert(param.into_inner());
        }
        let (limits, model_limits) = self.limits.unwrap_or_default().into_limits()?;
        Ok(RoleGrant {
            permissions,
            models: self.models.map(|patterns| {
                patterns
                    .into_iter()
                    .map(toml::Spanned::into_inner)
                    .collect()
            }),
            allow_params,
            limits,
            model_limits,
        })
    }
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(1, |before| {
        before.bytes().filter(|b| *b == b'\n').count() + 1
    })
}

/// Glob match where `*` matches any run of characters (including none).
fn wildcard_match(pattern: &str, candidate: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return candidate.is_empty();
    };
    let Some(mut rest) = candidate.strip_prefix(first) else {
        return false;
    };
    let remaining: Vec<&str> = parts.collect();
    let Some((last, middle)) = remaining.split_last() else {
        return rest.is_empty(); // no `*` at all: exact match
    };
    for part in middle {
        match rest.find(part) {
            Some(index) => rest = rest.get(index + part.len()..).unwrap_or_default(),
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AuthMethod;

    const DEFAULT_POLICY: &str = include_str!("../../../config/rbac.toml");

    /// A session user with `role`.
    fn caller(role: Option<&str>) -> Identity {
        Identity {
            user_id: "u-1".into(),
            role: role.map(str::to_owned),
            email: None,
            name: None,
            chat_id: None,
            openwebui_auth_type: None,
            via: AuthMethod::Session,
        }
    }

    fn default_policy() -> Policy {
        Policy::parse(DEFAULT_POLICY, "config/rbac.toml").unwrap()
    }

    /// The matrix the shipped `config/rbac.toml` promises, written out by hand.
    #[test]
    fn default_policy_matrix() {
        use Permission::*;
        let policy = default_policy();
        let expected: [(&str, &[Permission]); 4] = [
            ("admin", &Permission::ALL),
            ("user", &[Chat, Models, ObservabilityOwn]),
            ("pending", &[]),
            ("service", &[Chat, Models]),
        ];
        for (role, granted) in expected {
            for permission in Permission::ALL {
                assert_eq!(
                    policy.allows(Some(role), permission),
                    granted.contains(&permission),
                    "role {role} × permission {permission}"
                );
            }
        }
        assert_eq!(
            policy.roles().collect::<Vec<_>>(),
            ["admin", "pending", "service", "user"]
        );
        assert_eq!(policy.service_role(), "service");
        for permission in Permission::ALL {
            assert!(!policy.allows(None, permission));
            assert!(!policy.allows(Some("superuser"), permission));
        }
    }

    #[test]
    fn denials_say_why() {
        let policy = default_policy();
        let identity = caller;
        let message = |role| {
            policy
                .check(&identity(role), Permission::Chat)
                .unwrap_err()
                .to_string()
        };
        assert!(message(None).contains("OPENWEBUI_URL"));
        assert!(message(Some("pending")).contains("pending approval"));
        assert!(message(Some("ghost")).contains("not in the RBAC policy"));
        assert!(
            policy
                .check(&identity(Some("user")), Permission::ObservabilityAll)
                .unwrap_err()
                .to_string()
                .contains("observability:all")
        );
        assert!(
            policy
                .check(&identity(Some("user")), Permission::Chat)
                .is_ok()
        );
    }

    #[test]
    fn model_allow_lists_use_wildcards() {
        let policy = Policy::parse(
            r#"
service_role = "svc"
[roles.svc]
permissions = ["chat"]
[roles.user]
permissions = ["chat"]
models = ["gpt-4o-mini", "mock-*", "*-local"]
[roles.none]
permissions = ["chat"]
models = []
"#,
            "inline",
        )
        .unwrap();
        assert!(policy.allows_model(Some("svc"), "anything"));
        assert!(policy.allows_model(Some("user"), "gpt-4o-mini"));
        assert!(policy.allows_model(Some("user"), "mock-fast"));
        assert!(policy.allows_model(Some("user"), "llama-local"));
        assert!(!policy.allows_model(Some("user"), "gpt-4o"));
        assert!(!policy.allows_model(Some("user"), "gpt-4o-mini-2"));
        assert!(!policy.allows_model(Some("none"), "gpt-4o-mini"));
        assert!(!policy.allows_model(Some("ghost"), "gpt-4o-mini"));
        assert!(!policy.allows_model(None, "gpt-4o-mini"));
    }

    #[test]
    fn requests_are_checked_for_every_model_and_extra_field() {
        let policy = Policy::parse(
            r#"
service_role = "svc"
[roles.svc]
permissions = ["chat"]
[roles.user]
permissions = ["chat"]
models = ["a"]
allow_params = ["fallbacks"]
"#,
            "inline",
        )
        .unwrap();
        let caller = |role: &str| caller(Some(role));
        let fallbacks = ["fallbacks".to_owned()];
        assert!(
            policy
                .check_request(&caller("user"), &["a", "a"], &fallbacks)
                .is_ok()
        );
        assert_eq!(
            policy.check_request(&caller("user"), &["a", "b"], &fallbacks),
            Err(AuthError::ModelNotAllowed("b".into()))
        );
        assert_eq!(
            policy.check_request(&caller("svc"), &["a"], &fallbacks),
            Err(AuthError::UnsupportedParameter("fallbacks".into()))
        );
        assert_eq!(
            policy.check_request(&caller("ghost"), &[], &fallbacks),
            Err(AuthError::UnsupportedParameter("fallbacks".into()))
        );
    }

    #[test]
    fn limits_merge_role_user_and_model() {
        let policy = Policy::parse(
            r#"
service_role = "svc"
[roles.svc]
permissions = ["chat"]
[roles.user]
permissions = ["chat"]
[roles.user.limits]
requests_per_minute = 60
monthly_budget_usd = 50.0
[roles.user.limits.models."gpt-4o*"]
requests_per_minute = 10
[users."u-7".limits]
monthly_budget_usd = 200.0
"#,
            "inline",
        )
        .unwrap();
        let limits = policy.limits_for("u-7", Some("user"), "gpt-4o-mini");
        assert_eq!(limits.account.requests_per_minute, Some(60));
        assert_eq!(limits.account.monthly_budget_usd, Some(200.0));
        let (pattern, model) = limits.model.unwrap();
        assert_eq!(
            (pattern.as_str(), model.requests_per_minute),
            ("gpt-4o*", Some(10))
        );
        let other = policy.limits_for("u-8", Some("user"), "claude");
        assert_eq!(other.account.monthly_budget_usd, Some(50.0));
        assert!(other.model.is_none());
        assert!(
            policy
                .limits_for("u-8", Some("svc"), "m")
                .account
                .is_empty()
        );
    }

    #[test]
    fn bad_limits_stop_start_up_with_the_line() {
        for (text, line, words) in [
            (
                "[roles.svc.limits]\nrequests_per_minute = -1\n",
                5,
                "must not be negative",
            ),
            (
                "[roles.svc.limits]\nrequests_per_mnute = 1\n",
                5,
                "requests_per_mnute",
            ),
            (
                "[users.\"u\".limits]\nmonthly_budget_usd = -5.0\n",
                5,
                "≥ 0",
            ),
            (
                "[roles.svc.limits.models.\"m\"]\nconcurrent_requests = -2\n",
                5,
                "negative",
            ),
        ] {
            let full = format!("service_role = \"svc\"\n[roles.svc]\npermissions = []\n{text}");
            let error = Policy::parse(&full, "rbac.toml").unwrap_err();
            assert_eq!(error.line, line, "{error}");
            assert!(error.reason.contains(words), "{error}");
        }
    }

    #[test]
    fn credential_fields_cannot_be_allowed() {
        let error = Policy::parse(
            "service_role = \"svc\"\n[roles.svc]\npermissions = []\nallow_params = [\"num_retries\", \"api_base\"]\n",
            "rbac.toml",
        )
        .unwrap_err();
        assert_eq!(error.line, 4, "{error}");
        assert!(
            error.reason.contains("`api_base` cannot be allowed"),
            "{error}"
        );
    }

    #[test]
    fn wildcard_matching() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*b*c", "abc"));
        assert!(wildcard_match("a*b*c", "a-x-b-y-c"));
        assert!(!wildcard_match("a*b*c", "a-x-c"));
        assert!(wildcard_match("exact", "exact"));
        assert!(!wildcard_match("exact", "exactly"));
    }

    #[test]
    fn unknown_permission_names_the_file_line_and_choices() {
        let error = Policy::parse(
            "service_role = \"svc\"\n[roles.svc]\npermissions = [\"chat\", \"chats\"]\n",
            "rbac.toml",
        )
        .unwrap_err();
        assert_eq!(error.line, 3);
        assert!(
            error.reason.contains("unknown permission `chats`"),
            "{error}"
        );
        assert!(error.to_string().starts_with("rbac.toml:3: "), "{error}");
    }

    #[test]
    fn syntax_errors_and_unknown_fields_name_the_line() {
        let error = Policy::parse("service_role = \"svc\"\n[roles.svc\n", "rbac.toml").unwrap_err();
        assert_eq!(error.line, 2, "{error}");
        let error = Policy::parse(
            "service_role = \"svc\"\n[roles.svc]\npermissions = []\npermisions = [\"chat\"]\n",
            "rbac.toml",
        )
        .unwrap_err();
        assert_eq!(error.line, 4, "{error}");
        assert!(error.reason.contains("permisions"), "{error}");
    }

    #[test]
    fn service_role_must_be_defined() {
        let error = Policy::parse("service_role = \"robot\"\n", "rbac.toml").unwrap_err();
        assert!(error.reason.contains("[roles.robot]"), "{error}");
    }

    #[test]
    fn unreadable_file_is_reported() {
        let error = Policy::load(Path::new("/nonexistent/rbac.toml")).unwrap_err();
        assert!(error.reason.contains("cannot read"), "{error}");
    }
}
