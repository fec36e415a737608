//! Limits, and how they are written in a TOML policy file.
//!
//! ```toml
//! requests_per_minute = 60      # chat requests started per minute
//! tasks_per_minute = 120        # background tasks (titles, tags…); absent: they count as requests
//! tokens_per_minute = 100_000   # prompt + completion tokens
//! concurrent_requests = 4       # in flight at once (streams until they end or the client leaves)
//! daily_budget_usd = 5.0        # UTC day
//! monthly_budget_usd = 50.0     # UTC calendar month
//! daily_tokens = 1_000_000
//! monthly_tokens = 20_000_000
//! ```
//! A missing key means no limit of that kind. An unknown key, a negative number or a budget that
//! is not a finite number is an error at its byte offset (the caller turns it into file:line).

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// Limits of one scope. `None`: no limit of that kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Chat requests started per minute (and tasks, without `tasks_per_minute`).
    pub requests_per_minute: Option<u64>,
    /// Background tasks started per minute, counted apart from chat requests.
    pub tasks_per_minute: Option<u64>,
    /// Prompt + completion tokens per minute, as the gateway reports them.
    pub tokens_per_minute: Option<u64>,
    /// Requests (streams included) in flight at once.
    pub concurrent_requests: Option<u64>,
    /// USD per UTC day.
    pub daily_budget_usd: Option<f64>,
    /// USD per UTC calendar month.
    pub monthly_budget_usd: Option<f64>,
    /// Tokens per UTC day.
    pub daily_tokens: Option<u64>,
    /// Tokens per UTC calendar month.
    pub monthly_tokens: Option<u64>,
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
            tasks_per_minute: other.tasks_per_minute.or(self.tasks_per_minute),
            tokens_per_minute: other.tokens_per_minute.or(self.tokens_per_minute),
            concurrent_requests: other.concurrent_requests.or(self.concurrent_requests),
            daily_budget_usd: other.daily_budget_usd.or(self.daily_budget_usd),
            monthly_budget_usd: other.monthly_budget_usd.or(self.monthly_budget_usd),
            daily_tokens: other.daily_tokens.or(self.daily_tokens),
            monthly_tokens: other.monthly_tokens.or(self.monthly_tokens),
        }
    }

    /// Key by key, the more generous of the two where both set a value, else whichever is set.
    pub fn most_generous(&self, other: &Self) -> Self {
        fn count(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            a.max(b)
        }
        fn usd(a: Option<f64>, b: Option<f64>) -> Option<f64> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            }
        }
        Self {
            requests_per_minute: count(self.requests_per_minute, other.requests_per_minute),
            tasks_per_minute: count(self.tasks_per_minute, other.tasks_per_minute),
            tokens_per_minute: count(self.tokens_per_minute, other.tokens_per_minute),
            concurrent_requests: count(self.concurrent_requests, other.concurrent_requests),
            daily_budget_usd: usd(self.daily_budget_usd, other.daily_budget_usd),
            monthly_budget_usd: usd(self.monthly_budget_usd, other.monthly_budget_usd),
            daily_tokens: count(self.daily_tokens, other.daily_tokens),
            monthly_tokens: count(self.monthly_tokens, other.monthly_tokens),
        }
    }
}

/// A limit that cannot be used: where (byte offset in the policy text) and why.
pub type Invalid = (usize, String);

/// `limits` as written: a role's, a group's (each member's own) or a user's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    requests_per_minute: Option<Spanned<i64>>,
    tasks_per_minute: Option<Spanned<i64>>,
    tokens_per_minute: Option<Spanned<i64>>,
    concurrent_requests: Option<Spanned<i64>>,
    daily_budget_usd: Option<Spanned<f64>>,
    monthly_budget_usd: Option<Spanned<f64>>,
    daily_tokens: Option<Spanned<i64>>,
    monthly_tokens: Option<Spanned<i64>>,
    /// Per model pattern, on top of the account's limits (roles only).
    #[serde(default)]
    models: BTreeMap<Spanned<String>, LimitsFile>,
}

/// A shared budget as written (`[groups."<name>".budget]`): every member draws from it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetFile {
    daily_budget_usd: Option<Spanned<f64>>,
    monthly_budget_usd: Option<Spanned<f64>>,
    daily_tokens: Option<Spanned<i64>>,
    monthly_tokens: Option<Spanned<i64>>,
}

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
    /// The account-wide limits, and the per-model-pattern ones in pattern order. Refuses two
    /// patterns where one matches the other, since a model matching both would be ambiguous.
    pub fn into_limits(self) -> Result<(Limits, Vec<(String, Limits)>), Invalid> {
        let mut models = Vec::new();
        for (pattern, limits) in self.models {
            let (model, nested) = limits.into_limits()?;
            if !nested.is_empty() {
                return Err((pattern.span().start, "per-model limits cannot nest".into()));
            }
            if let Some((other, _)) = models.iter().find(|(other, _): &&(String, Limits)| {
                crate::matches(other, pattern.get_ref()) || crate::matches(pattern.get_ref(), other)
            }) {
                return Err((
                    pattern.span().start,
                    format!(
                        "model patterns `{other}` and `{}` overlap: a model matching both would be limited twice; make them disjoint",
                        pattern.get_ref()
                    ),
                ));
            }
            models.push((pattern.into_inner(), model));
        }
        let limits = Limits {
            requests_per_minute: count(self.requests_per_minute.as_ref(), "requests_per_minute")?,
            tasks_per_minute: count(self.tasks_per_minute.as_ref(), "tasks_per_minute")?,
            tokens_per_minute: count(self.tokens_per_minute.as_ref(), "tokens_per_minute")?,
            concurrent_requests: count(self.concurrent_requests.as_ref(), "concurrent_requests")?,
            daily_budget_usd: dollars(self.daily_budget_usd.as_ref(), "daily_budget_usd")?,
            monthly_budget_usd: dollars(self.monthly_budget_usd.as_ref(), "monthly_budget_usd")?,
            daily_tokens: count(self.daily_tokens.as_ref(), "daily_tokens")?,
            monthly_tokens: count(self.monthly_tokens.as_ref(), "monthly_tokens")?,
        };
        Ok((limits, models))
    }
}

impl BudgetFile {
    /// The budget as limits (spend and tokens per day and month only).
    pub fn into_limits(self) -> Result<Limits, Invalid> {
        Ok(Limits {
            daily_budget_usd: dollars(self.daily_budget_usd.as_ref(), "daily_budget_usd")?,
            monthly_budget_usd: dollars(self.monthly_budget_usd.as_ref(), "monthly_budget_usd")?,
            daily_tokens: count(self.daily_tokens.as_ref(), "daily_tokens")?,
            monthly_tokens: count(self.monthly_tokens.as_ref(), "monthly_tokens")?,
            ..Limits::default()
        })
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

    #[test]
    fn the_most_generous_value_wins_key_by_key() {
        let a = Limits {
            requests_per_minute: Some(10),
            daily_budget_usd: Some(5.0),
            ..Limits::default()
        };
        let b = Limits {
            requests_per_minute: Some(30),
            daily_budget_usd: Some(1.0),
            tokens_per_minute: Some(7),
            ..Limits::default()
        };
        let best = a.most_generous(&b);
        assert_eq!(best.requests_per_minute, Some(30));
        assert_eq!(best.daily_budget_usd, Some(5.0));
        assert_eq!(best.tokens_per_minute, Some(7));
    }

    fn parse(text: &str) -> Result<(Limits, Vec<(String, Limits)>), Invalid> {
        toml::from_str::<LimitsFile>(text).unwrap().into_limits()
    }

    #[test]
    fn bad_values_and_overlapping_patterns_are_refused_where_they_stand() {
        let error = parse("requests_per_minute = -1").unwrap_err();
        assert_eq!(error.0, 22);
        assert!(error.1.contains("must not be negative"));
        let error = parse("daily_budget_usd = nan").unwrap_err();
        assert!(error.1.contains("≥ 0"));
        let error = parse("[models.\"gpt-*\"]\nrequests_per_minute = 1\n[models.\"gpt-4*\"]\nrequests_per_minute = 2\n").unwrap_err();
        assert!(error.1.contains("overlap"), "{error:?}");
        let (limits, models) = parse("tasks_per_minute = 5\n[models.\"a-*\"]\nrequests_per_minute = 1\n[models.\"b-*\"]\ndaily_tokens = 9\n").unwrap();
        assert_eq!(limits.tasks_per_minute, Some(5));
        assert_eq!(models.len(), 2);
        assert!(toml::from_str::<BudgetFile>("requests_per_minute = 1").is_err());
    }
}
