//! Which limits apply to a request: the one place the combination rule lives.
//!
//! For each limit key of the caller's own account:
//! 1. the user's own override (`[users."<id>"]`), if it sets that key;
//! 2. else the most generous value among the caller's groups that set it;
//! 3. else the role's value.
//!
//! On top of the account:
//! - the role's limits for the first model pattern matching the requested model, counted apart
//!   per pattern (`user:<id>|model:<pattern>`);
//! - every shared budget of the caller's groups (`group:<key>`): all members draw from one
//!   counter, and each budget must have room.

use crate::limits::Limits;
use std::collections::BTreeMap;
use std::fmt;

/// What a set of counters belongs to. Keys are built only from verified ids and policy keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeKey {
    /// One user's account.
    User(String),
    /// One user's use of the models matching a pattern.
    UserModel(String, String),
    /// A group's shared budget.
    Group(String),
}

impl fmt::Display for ScopeKey {
    /// The counting key: `user:<id>`, `user:<id>|model:<pattern>`, `group:<key>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(user) => write!(f, "user:{user}"),
            Self::UserModel(user, pattern) => write!(f, "user:{user}|model:{pattern}"),
            Self::Group(group) => write!(f, "group:{group}"),
        }
    }
}

impl ScopeKey {
    /// How a refusal names the scope to the caller.
    pub fn describe(&self) -> String {
        match self {
            Self::User(_) => "your account".to_owned(),
            Self::UserModel(_, pattern) => format!("model pattern `{pattern}`"),
            Self::Group(group) => format!("group `{group}`'s shared budget"),
        }
    }
}

/// One set of counters and its limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    /// The counting key.
    pub key: ScopeKey,
    /// Its limits (empty: counted, never refused).
    pub limits: Limits,
}

/// Who is asking, as the limits see it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The verified user id.
    pub user_id: &'a str,
    /// The user's role, if known.
    pub role: Option<&'a str>,
    /// The policy keys of the user's groups.
    pub groups: &'a [&'a str],
}

#[derive(Debug, Clone, Default, PartialEq)]
struct RoleLimits {
    account: Limits,
    models: Vec<(String, Limits)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct GroupLimits {
    member: Limits,
    budget: Limits,
}

/// Every limit of a policy: per role (with per-model limits), per group (each member's own,
/// and a shared budget) and per user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitPolicy {
    roles: BTreeMap<String, RoleLimits>,
    groups: BTreeMap<String, GroupLimits>,
    users: BTreeMap<String, Limits>,
}

impl LimitPolicy {
    /// Sets a role's account limits and its per-model-pattern limits.
    pub fn set_role(&mut self, role: &str, account: Limits, models: Vec<(String, Limits)>) {
        self.roles
            .insert(role.to_owned(), RoleLimits { account, models });
    }

    /// Sets the limits each member of `group` has on their own account.
    pub fn set_group_limits(&mut self, group: &str, member: Limits) {
        self.groups.entry(group.to_owned()).or_default().member = member;
    }

    /// Sets `group`'s shared budget.
    pub fn set_group_budget(&mut self, group: &str, budget: Limits) {
        self.groups.entry(group.to_owned()).or_default().budget = budget;
    }

    /// Sets one user's overrides.
    pub fn set_user(&mut self, user_id: &str, limits: Limits) {
        self.users.insert(user_id.to_owned(), limits);
    }

    /// The limits of the subject's own account, by the combination rule (module docs).
    pub fn account(&self, subject: &Subject<'_>) -> Limits {
        let role = subject
            .role
            .and_then(|role| self.roles.get(role))
            .map(|role| role.account.clone())
            .unwrap_or_default();
        let groups = subject
            .groups
            .iter()
            .filter_map(|group| self.groups.get(*group))
            .map(|group| &group.member)
            .fold(Limits::default(), |best, limits| best.most_generous(limits));
        let combined = role.overridden_by(&groups);
        match self.users.get(subject.user_id) {
            Some(own) => combined.overridden_by(own),
            None => combined,
        }
    }

    /// The role's per-model-pattern limits, in pattern order (for reports).
    pub fn model_limits(&self, role: Option<&str>) -> Vec<(String, Limits)> {
        role.and_then(|role| self.roles.get(role))
            .map(|role| role.models.clone())
            .unwrap_or_default()
    }

    /// The shared budgets of the subject's groups.
    pub fn budgets(&self, subject: &Subject<'_>) -> Vec<Scope> {
        subject
            .groups
            .iter()
            .filter_map(|group| {
                let limits = &self.groups.get(*group)?.budget;
                (!limits.is_empty()).then(|| Scope {
                    key: ScopeKey::Group((*group).to_owned()),
                    limits: limits.clone(),
                })
            })
            .collect()
    }

    /// Every scope a request of `subject` for `model` counts in: the account (always, limited
    /// or not, so usage shows), the matching model pattern, and each shared budget.
    pub fn scopes(&self, subject: &Subject<'_>, model: &str) -> Vec<Scope> {
        let mut scopes = vec![Scope {
            key: ScopeKey::User(subject.user_id.to_owned()),
            limits: self.account(subject),
        }];
        if let Some((pattern, limits)) = self
            .model_limits(subject.role)
            .into_iter()
            .find(|(pattern, limits)| !limits.is_empty() && crate::matches(pattern, model))
        {
            scopes.push(Scope {
                key: ScopeKey::UserModel(subject.user_id.to_owned(), pattern),
                limits,
            });
        }
        scopes.extend(self.budgets(subject));
        scopes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rpm: u64, daily: f64) -> Limits {
        Limits {
            requests_per_minute: Some(rpm),
            daily_budget_usd: Some(daily),
            ..Limits::default()
        }
    }

    fn policy() -> LimitPolicy {
        let mut policy = LimitPolicy::default();
        policy.set_role(
            "user",
            Limits {
                requests_per_minute: Some(10),
                tokens_per_minute: Some(1000),
                ..Limits::default()
            },
            vec![("big-*".into(), limits(2, 1.0))],
        );
        policy.set_group_limits("interns", limits(5, 5.0));
        policy.set_group_limits("research", limits(60, 2.0));
        policy.set_group_budget(
            "support",
            Limits {
                monthly_budget_usd: Some(300.0),
                ..Limits::default()
            },
        );
        policy.set_user(
            "u-7",
            Limits {
                daily_budget_usd: Some(9.0),
                ..Limits::default()
            },
        );
        policy
    }

    #[test]
    fn the_user_wins_then_the_most_generous_group_then_the_role() {
        let policy = policy();
        let subject = |user, groups| Subject {
            user_id: user,
            role: Some("user"),
            groups,
        };
        let plain = policy.account(&subject("u-1", &[]));
        assert_eq!(
            (plain.requests_per_minute, plain.daily_budget_usd),
            (Some(10), None)
        );
        let both = policy.account(&subject("u-1", &["interns", "research"]));
        assert_eq!(both.requests_per_minute, Some(60)); // most generous group beats the role
        assert_eq!(both.daily_budget_usd, Some(5.0));
        assert_eq!(both.tokens_per_minute, Some(1000)); // no group sets it: the role's
        let own = policy.account(&subject("u-7", &["interns", "research"]));
        assert_eq!(own.daily_budget_usd, Some(9.0)); // the user's own override wins
        assert_eq!(own.requests_per_minute, Some(60));
    }

    #[test]
    fn scopes_are_the_account_a_matching_model_pattern_and_shared_budgets() {
        let policy = policy();
        let subject = Subject {
            user_id: "u-1",
            role: Some("user"),
            groups: &["support", "nobody-knows-this-group"],
        };
        let keys: Vec<String> = policy
            .scopes(&subject, "big-model")
            .iter()
            .map(|scope| scope.key.to_string())
            .collect();
        assert_eq!(keys, ["user:u-1", "user:u-1|model:big-*", "group:support"]);
        let unlimited = Subject {
            user_id: "u-2",
            role: Some("admin"),
            groups: &[],
        };
        let scopes = policy.scopes(&unlimited, "m");
        assert_eq!(scopes.len(), 1);
        assert!(scopes[0].limits.is_empty(), "counted, never refused");
        assert_eq!(
            ScopeKey::Group("support".into()).describe(),
            "group `support`'s shared budget"
        );
    }
}
