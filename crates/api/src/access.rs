//! What a caller may do: the one place that decides it, from `config/rbac.toml`.
//!
//! bff's permission names are defined here ([`PERMISSIONS`]). The policy file is read once, by
//! [`AccessPolicy::load`], into three parts, each enforced by the crate that owns its rule:
//! - routes and models: [`bff_auth::Policy`] (roles and Open WebUI groups);
//! - body fields beyond OpenAI's parameters: `allow_params`, per role and group, as
//!   [`bff_providers::ParameterAllowList`]s (credential-choosing fields can never be allowed);
//! - usage limits: `limits` per role, group and user, and each group's shared `budget`, as a
//!   [`bff_quota::LimitPolicy`].

use bff_auth::{Identity, Permission, Policy, PolicyDocument, PolicyError, Table, Vocabulary};
use bff_providers::{ParameterAllowList, UnsupportedParameter};
use bff_quota::{BudgetFile, LimitPolicy, Limits, LimitsFile, Scope, Subject};
use std::collections::BTreeMap;
use std::path::Path;

/// Call chat completions.
pub const CHAT: Permission = Permission::new("chat");
/// List models.
pub const MODELS: Permission = Permission::new("models");
/// Read one's own traces, usage and quota, and dependency health.
pub const OBSERVABILITY_OWN: Permission = Permission::new("observability:own");
/// Read every user's traces, usage and quota.
pub const OBSERVABILITY_ALL: Permission = Permission::new("observability:all");
/// Scrape `/metrics` when it is protected.
pub const METRICS: Permission = Permission::new("metrics");
/// Administrative operations.
pub const ADMIN: Permission = Permission::new("admin");

/// Every permission bff defines, in a stable order.
pub const PERMISSIONS: [Permission; 6] = [
    CHAT,
    MODELS,
    OBSERVABILITY_OWN,
    OBSERVABILITY_ALL,
    METRICS,
    ADMIN,
];

/// The keys of bff's own in the policy file, and the tables they may appear in.
const KEYS: [(&str, &[Table]); 3] = [
    ("allow_params", &[Table::Role, Table::Group]),
    ("limits", &[Table::Role, Table::Group, Table::User]),
    ("budget", &[Table::Group]),
];

/// The policy: who may reach which route and model, send which fields, use how much.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    policy: Policy,
    params: BTreeMap<(TableKind, String), ParameterAllowList>,
    limits: LimitPolicy,
}

/// [`Table`] as a map key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TableKind {
    Role,
    Group,
}

impl AccessPolicy {
    /// Reads and validates the policy file; every problem names the file and line.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = bff_auth::read_file(path)?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses policy text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, PolicyError> {
        let vocabulary = Vocabulary {
            permissions: &PERMISSIONS,
            keys: &KEYS,
        };
        let document = PolicyDocument::parse(text, file, &vocabulary)?;
        let mut params = BTreeMap::new();
        let mut limits = LimitPolicy::default();
        for section in document.sections() {
            let at = PolicyDocument::offset_of(section);
            let invalid = |(offset, reason): (usize, String)| {
                document.error_at(
                    offset,
                    format!(
                        "[{}.{}] {reason}",
                        section_name(section.table),
                        section.name
                    ),
                )
            };
            match (section.key.as_str(), section.table) {
                ("allow_params", table) => {
                    let names: Vec<String> = document.read(section)?;
                    let allowed = ParameterAllowList::new(names)
                        .map_err(|error| document.error_at(at, error.to_string()))?;
                    params.insert((kind_of(table), section.name.clone()), allowed);
                }
                ("limits", table) => {
                    let file: LimitsFile = document.read(section)?;
                    let (account, models) = file.into_limits().map_err(invalid)?;
                    match table {
                        Table::Role => limits.set_role(&section.name, account, models),
                        _ if !models.is_empty() => {
                            return Err(document.error_at(
                                at,
                                "per-model limits (`limits.models`) are set on roles only",
                            ));
                        }
                        Table::Group => limits.set_group_limits(&section.name, account),
                        Table::User => limits.set_user(&section.name, account),
                    }
                }
                _ => {
                    let file: BudgetFile = document.read(section)?;
                    let budget = file.into_limits().map_err(invalid)?;
                    limits.set_group_budget(&section.name, budget);
                }
            }
        }
        Ok(Self {
            policy: document.policy().clone(),
            params,
            limits,
        })
    }

    /// Who may reach which route and model (what the auth gate enforces).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Every usage limit.
    pub fn limits(&self) -> &LimitPolicy {
        &self.limits
    }

    /// `Ok` if the caller may send a chat reaching `models` with `extra_parameters` (fields
    /// that are not OpenAI parameters): the role's and the groups' allow-lists together.
    pub fn check_chat(
        &self,
        identity: &Identity,
        models: &[&str],
        extra_parameters: &[String],
    ) -> Result<(), AccessError> {
        let mut allowed = ParameterAllowList::default();
        let role = identity
            .role
            .iter()
            .map(|role| (TableKind::Role, role.as_str()));
        let groups = self
            .policy
            .group_keys(&identity.groups)
            .map(|group| (TableKind::Group, group));
        for (kind, name) in role.chain(groups) {
            if let Some(list) = self.params.get(&(kind, name.to_owned())) {
                allowed.extend(list);
            }
        }
        allowed.check(extra_parameters)?;
        self.policy.check_models(identity, models)?;
        Ok(())
    }

    /// The scopes a request of `identity` for `model` counts in.
    pub fn scopes(&self, identity: &Identity, model: &str) -> Vec<Scope> {
        let groups: Vec<&str> = self.policy.group_keys(&identity.groups).collect();
        self.limits.scopes(&subject(identity, &groups), model)
    }

    /// The shared budgets of `identity`'s groups (for reports).
    pub fn budgets(&self, identity: &Identity) -> Vec<Scope> {
        let groups: Vec<&str> = self.policy.group_keys(&identity.groups).collect();
        self.limits.budgets(&subject(identity, &groups))
    }

    /// The limits of `identity`'s own account (for reports).
    pub fn account_limits(&self, identity: &Identity) -> Limits {
        let groups: Vec<&str> = self.policy.group_keys(&identity.groups).collect();
        self.limits.account(&subject(identity, &groups))
    }
}

fn subject<'a>(identity: &'a Identity, groups: &'a [&'a str]) -> Subject<'a> {
    Subject {
        user_id: &identity.user_id,
        role: identity.role.as_deref(),
        groups,
    }
}

fn kind_of(table: Table) -> TableKind {
    match table {
        Table::Role => TableKind::Role,
        _ => TableKind::Group,
    }
}

fn section_name(table: Table) -> &'static str {
    match table {
        Table::Role => "roles",
        Table::Group => "groups",
        Table::User => "users",
    }
}

/// Why a chat body is refused by the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// A field neither OpenAI's nor allowed (400).
    #[error(transparent)]
    Parameter(#[from] UnsupportedParameter),
    /// A model the caller may not use (403).
    #[error(transparent)]
    Auth(#[from] bff_auth::AuthError),
}
