//! Usage limits from the policy file: per role, per user (overrides), per model inside a role.
//!
//! ```toml
//! [roles.user.limits]
//! requests_per_minute = 60
//! tokens_per_minute = 100_000      # prompt + completion tokens
//! concurrent_requests = 4          # streams count until they end or the client leaves
//! daily_budget_usd = 5.0
//! monthly_budget_usd = 50.0        # calendar month, UTC
//!
//! [roles.user.limits.models."gpt-4o*"]   # on top of the above, for matching models
//! requests_per_minute = 10
//!
//! [users."<open-webui-user-id>".limits]  # replaces the role's value, key by key
//! monthly_budget_usd = 200.0
//! ```
//! A missing key means no limit of that kind. An unknown key or a negative number is an error
//! naming the file and line.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// Limits of one scope. `None`: no limit of that kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Requests started per minute.
    pub requests_per_minute: Option<u64>,
    /// Prompt + completion tokens per minute, as LiteLLM reports them.
    pub tokens_per_minute: Option<u64>,
    /// Requests (streams included) in flight at once.
    pub concurrent_requests: Option<u64>,
    /// USD per UTC day.
    pub daily_budget_usd: Option<f64>,
    /// USD per UTC calendar month.
    pub monthly_budget_usd: Option<f64>,
}

impl Limits {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// These limits with every value `other` sets replacing this one's.
    pub fn overridden_by(&self, other: &Self) -> Self {
        Self {
            requests_per_minute: other.requests_per_minute.or(self.requests_per_minute),
            tokens_per_minute: other.tokens_per_minute.or(self.tokens_per_minute),
            concurrent_requests: other.concurrent_requests.or(self.concurrent_requests),
            daily_budget_usd: other.daily_budget_usd.or(self.daily_budget_usd),
            monthly_budget_usd: other.monthly_budget_usd.or(self.monthly_budget_usd),
        }
    }
}

/// What applies to one request: the account-wide limits and, when the role limits the model
/// asked for, those too (counted separately, per model pattern).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuotaLimits {
    /// Account-wide: the role's limits, replaced key by key by the user's own.
    pub account: Limits,
    /// The role's limits for a model pattern that matches the requested model: `(pattern,
    /// limits)`.
    pub model: Option<(String, Limits)>,
}

/// `[…limits]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsFile {
    requests_per_minute: Option<Spanned<i64>>,
    tokens_per_minute: Option<Spanned<i64>>,
    concurrent_requests: Option<Spanned<i64>>,
    daily_budget_usd: Option<Spanned<f64>>,
    monthly_budget_usd: Option<Spanned<f64>>,
}

/// `[roles.<role>.limits]` as written: limits plus per-model ones.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleLimitsFile {
    requests_per_minute: Option<Spanned<i64>>,
    tokens_per_minute: Option<Spanned<i64>>,
    concurrent_requests: Option<Spanned<i64>>,
    daily_budget_usd: Option<Spanned<f64>>,
    monthly_budget_usd: Option<Spanned<f64>>,
    #[serde(default)]
    models: BTreeMap<String, LimitsFile>,
}

/// `[users."<id>"]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserFile {
    #[serde(default)]
    pub(crate) limits: LimitsFile,
}

/// A limit that cannot be used: where (byte offset) and why.
pub(crate) type Invalid = (usize, String);

fn count(value: Option<&Spanned<i64>>, name: &str) -> Result<Option<u64>, Invalid> {
    value
        .map(|value| {
            u64::try_from(*value.get_ref())
                .map_err(|_| (value.span().start, format!("`{name}` must not be negative")))
        })
        .transpose()
}

fn dollars(value: Option<&Spanned<f64>>, name: &str) -> Result<Option<f64>, Invalid> {
    value
        .map(|value| {
            let amount = *value.get_ref();
            if amount.is_finite() && amount >= 0.0 {
                Ok(amount)
            } else {
                Err((value.span().start, format!("`{name}` must be a number ≥ 0")))
            }
        })
        .transpose()
}

impl LimitsFile {
    pub(crate) fn into_limits(self) -> Result<Limits, Invalid> {
        Ok(Limits {
            requests_per_minute: count(self.requests_per_minute.as_ref(), "requests_per_minute")?,
            tokens_per_minute: count(self.tokens_per_minute.as_ref(), "tokens_per_minute")?,
            concurrent_requests: count(self.concurrent_requests.as_ref(), "concurrent_requests")?,
            daily_budget_usd: dollars(self.daily_budget_usd.as_ref(), "daily_budget_usd")?,
            monthly_budget_usd: dollars(self.monthly_budget_usd.as_ref(), "monthly_budget_usd")?,
        })
    }
}

impl RoleLimitsFile {
    /// The role's own limits and its per-model limits, in file order.
    pub(crate) fn into_limits(self) -> Result<(Limits, Vec<(String, Limits)>), Invalid> {
        let own = LimitsFile {
            requests_per_minute: self.requests_per_minute,
            tokens_per_minute: self.tokens_per_minute,
            concurrent_requests: self.concurrent_requests,
            daily_budget_usd: self.daily_budget_usd,
            monthly_budget_usd: self.monthly_budget_usd,
        }
        .into_limits()?;
        let models = self
            .models
            .into_iter()
            .map(|(pattern, limits)| Ok((pattern, limits.into_limits()?)))
            .collect::<Result<_, Invalid>>()?;
        Ok((own, models))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_override_replaces_key_by_key() {
        let role = Limits {
            requests_per_minute: Some(60),
            monthly_budget_usd: Some(50.0),
            ..Limits::default()
        };
        let user = Limits {
            monthly_budget_usd: Some(200.0),
            ..Limits::default()
        };
        let merged = role.overridden_by(&user);
        assert_eq!(merged.requests_per_minute, Some(60));
        assert_eq!(merged.monthly_budget_usd, Some(200.0));
        assert!(Limits::default().is_empty() && !merged.is_empty());
    }
}
