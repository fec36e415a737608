//! Role- and group-based access control: which role or group may do what.
//!
//! Deny by default: a role absent from the policy, a caller without a role, and a permission no
//! grant of the caller lists all get nothing. Permissions are names the service defines
//! ([`Permission::new`]); a policy naming one the service does not know is refused at load, with
//! file and line (see [`crate::PolicyDocument`]).
//!
//! A caller's grants are their role's plus those of every group they belong to: permissions and
//! model patterns are the union of all of them. A role without `models` may use every model; a
//! group without `models` adds none (a group that only sets, say, a budget widens nothing).

use crate::error::AuthError;
use crate::identity::{Group, Identity};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use wildmatch::WildMatch;

/// Something a service lets a caller do, by name (`chat`, `reports:read`, …). Services define
/// their own as constants: `const CHAT: Permission = Permission::new("chat");`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission(Cow<'static, str>);

impl Permission {
    /// A permission named `name`.
    pub const fn new(name: &'static str) -> Self {
        Self(Cow::Borrowed(name))
    }

    /// Its name, as the policy file writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one role or group may do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grant {
    /// The permissions granted.
    pub permissions: BTreeSet<Permission>,
    /// `None`: every model (roles only: a group without `models` adds none). `Some`: the models
    /// matching one of these patterns (`*` any run of characters, `?` one character).
    pub models: Option<Vec<String>>,
}

/// The grants of every role and group. Cheap to share behind an `Arc`.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    roles: BTreeMap<String, Grant>,
    groups: BTreeMap<String, Grant>,
    service_role: String,
}

impl Policy {
    /// A policy of `roles`, keyed by role name; bare service keys act as `service_role`.
    pub fn new(roles: BTreeMap<String, Grant>, service_role: impl Into<String>) -> Self {
        Self {
            roles,
            groups: BTreeMap::new(),
            service_role: service_role.into(),
        }
    }

    /// The same policy with grants for `groups`, keyed by Open WebUI group id or name.
    pub fn with_groups(mut self, groups: BTreeMap<String, Grant>) -> Self {
        self.groups = groups;
        self
    }

    /// The role given to callers that present only a service key.
    pub fn service_role(&self) -> &str {
        &self.service_role
    }

    /// The roles the policy defines.
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.roles.keys().map(String::as_str)
    }

    /// The group keys the policy defines.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    /// The policy keys of the caller's groups that the policy knows, in policy order: a key
    /// matches a group by its id, or else by its name.
    pub fn group_keys<'a>(&'a self, groups: &'a [Group]) -> impl Iterator<Item = &'a str> + 'a {
        self.groups
            .keys()
            .filter(|key| groups.iter().any(|group| group.is_named(key)))
            .map(String::as_str)
    }

    fn role_grant(&self, identity: &Identity) -> Option<&Grant> {
        identity
            .role
            .as_deref()
            .and_then(|role| self.roles.get(role))
    }

    fn group_grants<'a>(&'a self, identity: &'a Identity) -> impl Iterator<Item = &'a Grant> + 'a {
        self.group_keys(&identity.groups)
            .filter_map(|key| self.groups.get(key))
    }

    /// Whether the caller's role or one of their groups grants `permission`.
    pub fn allows(&self, identity: &Identity, permission: &Permission) -> bool {
        self.role_grant(identity)
            .into_iter()
            .chain(self.group_grants(identity))
            .any(|grant| grant.permissions.contains(permission))
    }

    /// Every permission the caller holds, sorted.
    pub fn permissions_of(&self, identity: &Identity) -> BTreeSet<Permission> {
        self.role_grant(identity)
            .into_iter()
            .chain(self.group_grants(identity))
            .flat_map(|grant| grant.permissions.iter().cloned())
            .collect()
    }

    /// `Ok` if the caller holds `permission`, else a 403 error that says why.
    pub fn check(&self, identity: &Identity, permission: &Permission) -> Result<(), AuthError> {
        if self.allows(identity, permission) {
            return Ok(());
        }
        let reason = match identity.role.as_deref() {
            None => format!(
                "permission `{permission}` denied: your role is unknown because this service is not connected to Open WebUI (the operator must set OPENWEBUI_URL)"
            ),
            Some(role) if !self.roles.contains_key(role) => format!(
                "permission `{permission}` denied: role `{role}` is not in the RBAC policy, so it has no permissions"
            ),
            Some("pending") => format!(
                "permission `{permission}` denied: your Open WebUI account is pending approval by an administrator"
            ),
            Some(role) => {
                format!("permission `{permission}` denied for role `{role}` and your groups")
            }
        };
        Err(AuthError::Forbidden(reason))
    }

    /// Whether the caller may use `model`: their role allows every model or one matching, or
    /// one of their groups lists a matching pattern. No role or an unknown role: none by role.
    pub fn allows_model(&self, identity: &Identity, model: &str) -> bool {
        let by_role = self
            .role_grant(identity)
            .is_some_and(|grant| grant.models.as_ref().is_none_or(|p| matches(p, model)));
        by_role
            || self
                .group_grants(identity)
                .any(|grant| grant.models.as_ref().is_some_and(|p| matches(p, model)))
    }

    /// `Ok` if the caller may use every one of `models`, else a 403 naming the first that is
    /// not allowed.
    pub fn check_models(&self, identity: &Identity, models: &[&str]) -> Result<(), AuthError> {
        match models
            .iter()
            .find(|model| !self.allows_model(identity, model))
        {
            Some(model) => Err(AuthError::ModelNotAllowed((*model).to_owned())),
            None => Ok(()),
        }
    }
}

fn matches(patterns: &[String], model: &str) -> bool {
    patterns
        .iter()
        .any(|pattern| WildMatch::new(pattern).matches(model))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AuthMethod;

    const CHAT: Permission = Permission::new("chat");
    const READ: Permission = Permission::new("read");

    fn grant(permissions: &[Permission], models: Option<&[&str]>) -> Grant {
        Grant {
            permissions: permissions.iter().cloned().collect(),
            models: models.map(|models| models.iter().map(|m| (*m).to_owned()).collect()),
        }
    }

    fn caller(role: Option<&str>, groups: &[(&str, &str)]) -> Identity {
        let mut identity = Identity::new("u-1", role.map(str::to_owned), AuthMethod::Session);
        identity.groups = groups
            .iter()
            .map(|(id, name)| Group {
                id: (*id).to_owned(),
                name: (*name).to_owned(),
            })
            .collect();
        identity
    }

    fn policy() -> Policy {
        Policy::new(
            BTreeMap::from([
                ("user".into(), grant(&[CHAT], Some(&["small-*"]))),
                ("admin".into(), grant(&[CHAT, READ], None)),
                ("pending".into(), grant(&[], None)),
            ]),
            "admin",
        )
        .with_groups(BTreeMap::from([
            ("research".into(), grant(&[READ], Some(&["large-?"]))),
            ("g-42".into(), grant(&[], None)),
        ]))
    }

    #[test]
    fn permissions_are_the_union_of_the_role_and_the_groups() {
        let policy = policy();
        let plain = caller(Some("user"), &[]);
        assert!(policy.allows(&plain, &CHAT) && !policy.allows(&plain, &READ));
        let member = caller(Some("user"), &[("g-1", "research")]);
        assert!(policy.allows(&member, &READ));
        assert_eq!(policy.permissions_of(&member).len(), 2);
        // A group alone grants what it lists, whatever the role.
        assert!(policy.allows(&caller(Some("ghost"), &[("x", "research")]), &READ));
        assert!(!policy.allows(&caller(None, &[]), &CHAT));
    }

    #[test]
    fn models_are_the_union_and_a_group_without_models_adds_none() {
        let policy = policy();
        let plain = caller(Some("user"), &[]);
        assert!(policy.allows_model(&plain, "small-1"));
        assert!(!policy.allows_model(&plain, "large-1"));
        let member = caller(Some("user"), &[("g-1", "research")]);
        assert!(policy.allows_model(&member, "large-1"));
        assert!(!policy.allows_model(&member, "large-10"));
        // `g-42` lists no models: it widens nothing, although a role without `models` means all.
        assert!(!policy.allows_model(&caller(Some("user"), &[("g-42", "x")]), "large-1"));
        assert!(policy.allows_model(&caller(Some("admin"), &[]), "anything"));
        assert_eq!(
            policy.check_models(&member, &["small-1", "huge"]),
            Err(AuthError::ModelNotAllowed("huge".into()))
        );
    }

    #[test]
    fn groups_match_by_id_first_or_by_name() {
        let policy = policy();
        let by_id = caller(Some("user"), &[("g-42", "renamed")]);
        assert_eq!(
            policy.group_keys(&by_id.groups).collect::<Vec<_>>(),
            ["g-42"]
        );
        // A group known only by name (a forwarded header) has no id to match.
        let by_name = caller(Some("user"), &[("", "research")]);
        assert_eq!(
            policy.group_keys(&by_name.groups).collect::<Vec<_>>(),
            ["research"]
        );
        let unknown = caller(Some("user"), &[("", "")]);
        assert_eq!(policy.group_keys(&unknown.groups).count(), 0);
    }

    #[test]
    fn denials_say_why() {
        let policy = policy();
        let message = |role: Option<&str>| {
            policy
                .check(&caller(role, &[]), &READ)
                .unwrap_err()
                .to_string()
        };
        assert!(message(None).contains("OPENWEBUI_URL"));
        assert!(message(Some("pending")).contains("pending approval"));
        assert!(message(Some("ghost")).contains("not in the RBAC policy"));
        assert!(message(Some("user")).contains("`read` denied for role `user`"));
    }
}
