//! `GET /observability/quota`: the caller's limits, what is used in each window (whether or not
//! a limit applies), what remains, and when each window resets, and the shared budget of each of
//! their groups that has one (`group:<key>`). `observability:own` sees their own;
//! `observability:all` may pass `user_id` (and `role` and `groups`, since roles and groups come
//! from Open WebUI per credential).

use crate::error::ApiError;
use crate::routes::observability::sees_all;
use crate::state::AppState;
use actix_web::{HttpResponse, web};
use bff_auth::{AuthMethod, Group, Identity};
use bff_quota::calendar::{Windows, rfc3339};
use bff_quota::{Limits, Scope, ScopeKey, Used};
use serde::Deserialize;
use serde_json::{Value, json};

/// Query of `/observability/quota`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaQuery {
    /// Whose quota (admins only; others always get their own).
    user_id: Option<String>,
    /// That user's role (admins only; default: none, so only per-user limits apply).
    role: Option<String>,
    /// That user's groups, comma-separated policy keys (admins only; default: none).
    groups: Option<String>,
}

/// The report.
pub async fn quota(
    identity: Identity,
    state: web::Data<AppState>,
    query: web::Query<QuotaQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let subject = match query
        .user_id
        .filter(|user| sees_all(&state, &identity) && !user.is_empty())
    {
        Some(user) => Identity {
            groups: named_groups(query.groups.as_deref()),
            ..Identity::new(user, query.role, AuthMethod::Session)
        },
        None => identity,
    };
    let mut scopes = vec![(
        "account".to_owned(),
        Scope {
            key: ScopeKey::User(subject.user_id.clone()),
            limits: state.access.account_limits(&subject),
        },
    )];
    for (pattern, limits) in state.access.limits().model_limits(subject.role.as_deref()) {
        scopes.push((
            format!("model:{pattern}"),
            Scope {
                key: ScopeKey::UserModel(subject.user_id.clone(), pattern),
                limits,
            },
        ));
    }
    for budget in state.access.budgets(&subject) {
        scopes.push((budget.key.to_string(), budget));
    }
    let windows = state.quota.windows();
    let mut report = Vec::new();
    for (name, scope) in scopes {
        let used = state
            .quota
            .counters()
            .used(&scope.key, &windows)
            .await
            .map_err(|error| ApiError::Dependency {
                dependency: "the quota counters",
                reason: error.0,
            })?;
        report.push(scope_report(&name, &scope.limits, &used, &windows));
    }
    Ok(HttpResponse::Ok().json(json!({
        "user_id": subject.user_id,
        "role": subject.role,
        "backend": state.quota.backend(),
        "scopes": report,
    })))
}

/// Groups named by policy key in a query; only keys the policy knows ever become scopes.
fn named_groups(keys: Option<&str>) -> Vec<Group> {
    keys.unwrap_or_default()
        .split(',')
        .filter_map(|key| Group::checked("", key))
        .take(Group::MAX_PER_CALLER)
        .collect()
}

fn scope_report(name: &str, limits: &Limits, used: &Used, windows: &Windows) -> Value {
    let left = |limit: Option<u64>, used: u64| limit.map(|limit| limit.saturating_sub(used));
    let left_usd = |budget: Option<f64>, spent: f64| budget.map(|budget| (budget - spent).max(0.0));
    json!({
        "scope": name,
        "limits": {
            "requests_per_minute": limits.requests_per_minute,
            "tasks_per_minute": limits.tasks_per_minute,
            "tokens_per_minute": limits.tokens_per_minute,
            "concurrent_requests": limits.concurrent_requests,
            "daily_budget_usd": limits.daily_budget_usd,
            "monthly_budget_usd": limits.monthly_budget_usd,
            "daily_tokens": limits.daily_tokens,
            "monthly_tokens": limits.monthly_tokens,
        },
        "used": used,
        "remaining": {
            "requests_this_minute": left(limits.requests_per_minute, used.requests_this_minute),
            "tasks_this_minute": left(limits.tasks_per_minute, used.tasks_this_minute),
            "tokens_this_minute": left(limits.tokens_per_minute, used.tokens_this_minute),
            "concurrent_requests": left(limits.concurrent_requests, used.concurrent_requests),
            "today_usd": left_usd(limits.daily_budget_usd, used.spent_today_usd),
            "this_month_usd": left_usd(limits.monthly_budget_usd, used.spent_this_month_usd),
            "tokens_today": left(limits.daily_tokens, used.tokens_today),
            "tokens_this_month": left(limits.monthly_tokens, used.tokens_this_month),
        },
        "resets": {
            "minute": rfc3339(windows.now + windows.minute_left.as_secs().max(1)),
            "day": rfc3339(windows.day_ends),
            "month": rfc3339(windows.month_ends),
        },
    })
}
