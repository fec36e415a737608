//! `GET /observability/quota`: the caller's limits, what is used and what remains in each
//! window, and when each resets. `observability:own` sees their own; `observability:all` may
//! pass `user_id` (and `role`, since roles come from Open WebUI per credential).

use crate::error::ApiError;
use crate::quota::calendar::{Windows, rfc3339};
use crate::quota::{Scope, Used};
use crate::routes::observability::sees_all;
use crate::state::AppState;
use actix_web::{HttpResponse, web};
use bff_auth::{Identity, Limits};
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
}

/// The report.
pub async fn quota(
    identity: Identity,
    state: web::Data<AppState>,
    query: web::Query<QuotaQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let sees_all = sees_all(&state, &identity);
    let (user_id, role) = match query.user_id.filter(|user| sees_all && !user.is_empty()) {
        Some(user) => (user, query.role),
        None => (identity.user_id.clone(), identity.role.clone()),
    };
    let policy = state.gate.policy();
    let mut scopes = vec![(
        "account".to_owned(),
        Scope {
            key: user_id.clone(),
            limits: policy.limits_for(&user_id, role.as_deref(), "").account,
        },
    )];
    for (pattern, limits) in policy.model_limits(role.as_deref()) {
        scopes.push((
            format!("model:{pattern}"),
            Scope {
                key: format!("{user_id}|model:{pattern}"),
                limits,
            },
        ));
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
        "user_id": user_id,
        "role": role,
        "backend": state.quota.backend(),
        "scopes": report,
    })))
}

fn scope_report(name: &str, limits: &Limits, used: &Used, windows: &Windows) -> Value {
    let left = |limit: Option<u64>, used: u64| limit.map(|limit| limit.saturating_sub(used));
    let left_usd = |budget: Option<f64>, spent: f64| budget.map(|budget| (budget - spent).max(0.0));
    json!({
        "scope": name,
        "limits": {
            "requests_per_minute": limits.requests_per_minute,
            "tokens_per_minute": limits.tokens_per_minute,
            "concurrent_requests": limits.concurrent_requests,
            "daily_budget_usd": limits.daily_budget_usd,
            "monthly_budget_usd": limits.monthly_budget_usd,
        },
        "used": used,
        "remaining": {
            "requests_this_minute": left(limits.requests_per_minute, used.requests_this_minute),
            "tokens_this_minute": left(limits.tokens_per_minute, used.tokens_this_minute),
            "concurrent_requests": left(limits.concurrent_requests, used.concurrent_requests),
            "today_usd": left_usd(limits.daily_budget_usd, used.spent_today_usd),
            "this_month_usd": left_usd(limits.monthly_budget_usd, used.spent_this_month_usd),
        },
        "resets": {
            "minute": rfc3339(windows.now + windows.minute_left.as_secs().max(1)),
            "day": rfc3339(windows.day_ends),
            "month": rfc3339(windows.month_ends),
        },
    })
}
