//! `GET /observability/me`, `/health`, `/traces`, `/usage`, `/usage/users`, `/usage/groups` and
//! `/traffic`.
//!
//! Scoping: a caller with `observability:all` may pass `user_id` (or none, for everyone);
//! anyone else only ever sees their own user id, whatever they ask for. A `group` is visible to
//! `observability:all` and to the group's own members. `/usage/users` and `/usage/groups`
//! (everyone's spend) are for `observability:all` only; `/traffic` is fleet-wide counts with no
//! user in them.

use crate::access::OBSERVABILITY_ALL;
use crate::error::ApiError;
use crate::observability::{
    DependencyStatus, MAX_PAGE, TraceFilter, TracePage, UsageReport, by_task,
};
use crate::reporting::model::{Subject, UsageTotals};
use crate::reporting::store::StoreError;
use crate::reporting::writer::day_of;
use crate::routes::ops::{litellm_status, redis_status, usage_store_status};
use crate::state::AppState;
use actix_web::{HttpResponse, web};
use bff_auth::Identity;
use bff_telemetry::UnixNanos;
use serde::Deserialize;
use serde_json::json;
use std::time::{Duration, SystemTime};

/// Query of `/observability/traces`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracesQuery {
    /// Whose traces (admins only; others always get their own).
    user_id: Option<String>,
    /// Page size, 1..=100 (default 50).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Range start, RFC 3339.
    from: Option<String>,
    /// Range end, RFC 3339.
    to: Option<String>,
}

/// Query of `/observability/usage/users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopUsersQuery {
    /// First day, `YYYY-MM-DD` (default: six days before `to`).
    from: Option<String>,
    /// Last day, `YYYY-MM-DD` (default: today, UTC).
    to: Option<String>,
    /// How many users, 1..=100 (default 10).
    limit: Option<u32>,
}

/// Query of `/observability/usage`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Whose usage (admins only; others always get their own).
    user_id: Option<String>,
    /// A group's usage: every member's requests (admins, and the group's members).
    group: Option<String>,
    /// First day, `YYYY-MM-DD` (default: six days before `to`).
    from: Option<String>,
    /// Last day, `YYYY-MM-DD` (default: today, UTC).
    to: Option<String>,
}

/// Whether the caller may see every user's data (`observability:all`), not only their own.
pub(crate) fn sees_all(state: &AppState, identity: &Identity) -> bool {
    state.gate.authorize(identity, &OBSERVABILITY_ALL).is_ok()
}

/// The user a request may see: any (or all) with `observability:all`, else only the caller.
fn scoped_user(state: &AppState, identity: &Identity, requested: Option<String>) -> Option<String> {
    if sees_all(state, identity) {
        requested.filter(|user| !user.is_empty())
    } else {
        Some(identity.user_id.clone())
    }
}

/// Who the caller is and every permission they hold, as the policy decides it (the monitoring
/// page shows admin controls from this, instead of trying a request that would be refused).
pub async fn me(identity: Identity, state: web::Data<AppState>) -> HttpResponse {
    let permissions: Vec<String> = state
        .gate
        .policy()
        .permissions_of(&identity)
        .iter()
        .map(ToString::to_string)
        .collect();
    let groups: Vec<&str> = identity
        .groups
        .iter()
        .map(|group| group.name.as_str())
        .collect();
    HttpResponse::Ok().json(json!({
        "user_id": identity.user_id,
        "name": identity.name,
        "email": identity.email,
        "role": identity.role,
        "groups": groups,
        "auth": identity.via.as_str(),
        "permissions": permissions,
    }))
}

/// Every dependency with status and latency, and the telemetry sinks' counters. What a
/// dependency or sink said when it failed (`detail`, `last_error`) is shown to
/// `observability:all` only.
pub async fn health(identity: Identity, state: web::Data<AppState>) -> HttpResponse {
    let (litellm, openwebui, langfuse, helicone, redis, usage) = tokio::join!(
        litellm_status(&state),
        state.observability.openwebui_health(),
        state.observability.langfuse_health(),
        state.observability.helicone_health(),
        redis_status(&state),
        usage_store_status(&state),
    );
    let mut dependencies: Vec<DependencyStatus> = [litellm, openwebui, langfuse, helicone]
        .into_iter()
        .chain(redis)
        .chain(usage)
        .collect();
    let mut telemetry = state.telemetry.stats();
    if !sees_all(&state, &identity) {
        dependencies = dependencies
            .into_iter()
            .map(DependencyStatus::without_detail)
            .collect();
        for sink in &mut telemetry {
            sink.last_error = None;
        }
    }
    let healthy = !dependencies.iter().any(|d| d.is_down());
    HttpResponse::Ok().json(json!({
        "status": if healthy { "ok" } else { "degraded" },
        "checked_at": UnixNanos::now().to_rfc3339(),
        "dependencies": dependencies,
        "telemetry": telemetry,
    }))
}

/// A query's `limit`, 1..=[`MAX_PAGE`], or `default` when absent.
fn page_limit(limit: Option<u32>, default: u32) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(default);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request(
            format!("`limit` must be between 1 and {MAX_PAGE}"),
            Some("limit"),
        ))
    }
}

/// Recent traces from Langfuse, paginated; without Langfuse, bff's own latest requests (since
/// start, newest first, one page).
pub async fn traces(
    identity: Identity,
    state: web::Data<AppState>,
    query: web::Query<TracesQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let limit = page_limit(query.limit, 50)?;
    for (name, value) in [("from", &query.from), ("to", &query.to)] {
        if let Some(value) = value
            && humantime::parse_rfc3339_weak(value).is_err()
        {
            return Err(ApiError::bad_request(
                format!("`{name}` must be an RFC 3339 time such as 2026-01-01T00:00:00Z"),
                None,
            ));
        }
    }
    let filter = TraceFilter {
        user_id: scoped_user(&state, &identity, query.user_id),
        limit,
        cursor: query.cursor,
        from: query.from,
        to: query.to,
    };
    let page = if state.observability.has_langfuse() {
        let mut page = state.observability.traces(&filter).await?;
        state
            .reporting
            .name(&mut page.data)
            .await
            .map_err(unavailable)?;
        page
    } else {
        let limit = usize::try_from(filter.limit).unwrap_or(usize::MAX);
        TracePage {
            data: state
                .reporting
                .recent(filter.user_id.as_deref(), limit)
                .await
                .map_err(unavailable)?,
            next_cursor: None,
            source: "bff",
        }
    };
    Ok(HttpResponse::Ok().json(page))
}

fn parse_day(name: &'static str, value: &str) -> Result<SystemTime, ApiError> {
    humantime::parse_rfc3339(&format!("{}T00:00:00Z", value.trim())).map_err(|_| {
        ApiError::bad_request(format!("`{name}` must be a day such as 2026-01-31"), None)
    })
}

const DAY: Duration = Duration::from_secs(86_400);

/// The days `from..=to` of a query (default: the last seven), checked.
fn day_range(from: Option<&str>, to: Option<&str>) -> Result<(SystemTime, SystemTime), ApiError> {
    let to = match to {
        Some(day) => parse_day("to", day)?,
        None => parse_day("to", &day_of(UnixNanos::now()))?,
    };
    let from = match from {
        Some(day) => parse_day("from", day)?,
        None => to - DAY * 6,
    };
    if from > to {
        return Err(ApiError::bad_request(
            "`from` must not be after `to`",
            Some("from"),
        ));
    }
    if to.duration_since(from).unwrap_or_default() > DAY * 366 {
        return Err(ApiError::bad_request(
            "the range must not exceed 366 days",
            None,
        ));
    }
    Ok((from, to))
}

/// The reports' answer when the usage store cannot be read.
fn unavailable(error: StoreError) -> ApiError {
    tracing::warn!(%error, "the usage store could not be read");
    ApiError::StoreUnavailable(error.0)
}

/// The group a caller may see usage of: any with `observability:all`, else one of theirs.
fn scoped_group(
    state: &AppState,
    identity: &Identity,
    group: Option<String>,
) -> Result<Option<String>, ApiError> {
    let Some(group) = group.filter(|group| !group.is_empty()) else {
        return Ok(None);
    };
    let member = identity.groups.iter().any(|own| own.name == group);
    if member || sees_all(state, identity) {
        Ok(Some(group))
    } else {
        Err(ApiError::Auth(bff_auth::AuthError::Forbidden(format!(
            "you may see the usage of your own groups only, and `{group}` is not one of them"
        ))))
    }
}

/// Tokens and cost per model, task and day over a range: of one user, one group or everyone.
pub async fn usage(
    identity: Identity,
    state: web::Data<AppState>,
    query: web::Query<UsageQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let (from, to) = day_range(query.from.as_deref(), query.to.as_deref())?;
    let group = scoped_group(&state, &identity, query.group)?;
    let user = match group {
        Some(_) => None,
        None => scoped_user(&state, &identity, query.user_id),
    };
    let from_day = day_of(UnixNanos::from(from));
    let to_day = day_of(UnixNanos::from(to));
    let subject = match (&group, &user) {
        (Some(group), _) => Some(Subject::Group(group.clone())),
        (None, user) => user.clone().map(Subject::User),
    };
    let ledger = state
        .reporting
        .usage(&from_day, &to_day, subject.as_ref())
        .await
        .map_err(unavailable)?;
    let by_task = by_task(&ledger);
    let (rows, source) = if group.is_none() && state.observability.has_langfuse() {
        let from_time = humantime::format_rfc3339_seconds(from).to_string();
        let to_time = humantime::format_rfc3339_seconds(to + DAY).to_string();
        state
            .observability
            .usage(
                (&from_day, &to_day),
                (&from_time, &to_time),
                user.as_deref(),
            )
            .await?
    } else {
        (ledger, "bff")
    };
    let mut totals = UsageTotals::default();
    for row in &rows {
        totals.add(&row.totals);
    }
    Ok(HttpResponse::Ok().json(UsageReport {
        from: from_day,
        to: to_day,
        user_id: user,
        group,
        source,
        rows,
        totals,
        by_task,
    }))
}

/// The users who spent most over a range (admins), with their names, from bff's own ledger:
/// Langfuse's metrics API cannot group by user.
pub async fn top_users(
    state: web::Data<AppState>,
    query: web::Query<TopUsersQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let limit = page_limit(query.limit, 10)?;
    let (from, to) = day_range(query.from.as_deref(), query.to.as_deref())?;
    let (from_day, to_day) = (day_of(UnixNanos::from(from)), day_of(UnixNanos::from(to)));
    let users = state
        .reporting
        .top_users(
            &from_day,
            &to_day,
            usize::try_from(limit).unwrap_or(usize::MAX),
        )
        .await
        .map_err(unavailable)?;
    Ok(HttpResponse::Ok().json(json!({
        "from": from_day,
        "to": to_day,
        "source": "bff",
        "users": users,
    })))
}

/// Every group's spend over a range (admins), from bff's own ledger.
pub async fn groups(
    state: web::Data<AppState>,
    query: web::Query<UsageQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let (from, to) = day_range(query.from.as_deref(), query.to.as_deref())?;
    let (from_day, to_day) = (day_of(UnixNanos::from(from)), day_of(UnixNanos::from(to)));
    let groups = state
        .reporting
        .groups(&from_day, &to_day)
        .await
        .map_err(unavailable)?;
    Ok(HttpResponse::Ok().json(json!({
        "from": from_day,
        "to": to_day,
        "source": "bff",
        "groups": groups,
    })))
}

/// Chat traffic over the last minute, fleet-wide (see [`crate::reporting::traffic`]).
pub async fn traffic(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.reporting.traffic().await)
}
