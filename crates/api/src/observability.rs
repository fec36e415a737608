//! Reading the observability backends for `/ready` and `/observability/*`: dependency
//! health, recent traces and usage from Langfuse, in stable shapes of bff's own (not Langfuse's
//! raw payloads).
//!
//! Langfuse v4 serves Observations API v2 and Metrics API v2 only; bff reads those, with the
//! documented dimensions (`providedModelName`, `level`) and `userId` only as a filter, never
//! grouped. v3 servers without v2 answer 404 there, and bff falls back to v1
//! (`/api/public/traces`, `/api/public/metrics/daily`); a v1 route answering 404 on a v4 server
//! (a v1 page cursor from before the move) is the last page, not an error.

use crate::error::ApiError;
use crate::reporting::model::{TraceItem, UsageRow, UsageTotals};
use bff_telemetry::{GENERATION_NAME, Secret};
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

/// Most items per traces page.
pub const MAX_PAGE: u32 = 100;

/// Health of one dependency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DependencyStatus {
    /// `litellm`, `openwebui`, `langfuse`, `helicone`.
    pub name: &'static str,
    /// `up`, `down` or `not_configured`.
    pub status: &'static str,
    /// Round-trip time of the check.
    pub latency_ms: Option<u64>,
    /// What went wrong, when down.
    pub detail: Option<String>,
}

impl DependencyStatus {
    /// A dependency that is not configured.
    pub fn not_configured(name: &'static str) -> Self {
        Self {
            name,
            status: "not_configured",
            latency_ms: None,
            detail: None,
        }
    }

    /// A finished check.
    pub fn checked(name: &'static str, started: Instant, result: Result<(), String>) -> Self {
        let latency_ms = Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
        match result {
            Ok(()) => Self {
                name,
                status: "up",
                latency_ms,
                detail: None,
            },
            Err(detail) => Self {
                name,
                status: "down",
                latency_ms,
                detail: Some(detail),
            },
        }
    }

    /// Whether it was checked and found down (`not_configured` is not down).
    pub fn is_down(&self) -> bool {
        self.status == "down"
    }

    /// The status without what the dependency said, for viewers who may not see it: a down
    /// dependency still says so in words.
    pub fn without_detail(mut self) -> Self {
        self.detail = self
            .is_down()
            .then(|| "not answering or failing (an administrator sees why)".to_owned());
        self
    }
}

/// A page of traces.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TracePage {
    /// The traces, newest first.
    pub data: Vec<TraceItem>,
    /// Pass back as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// `langfuse-v2`, `langfuse-v1` or `bff` (in-process, since start).
    pub source: &'static str,
}

/// Usage over a range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageReport {
    /// First day (`YYYY-MM-DD`).
    pub from: String,
    /// Last day (`YYYY-MM-DD`).
    pub to: String,
    /// The user the report is limited to, if any.
    pub user_id: Option<String>,
    /// The group the report is limited to, if any.
    pub group: Option<String>,
    /// `langfuse-v2`, `langfuse-v1` or `bff` (bff's own ledger).
    pub source: &'static str,
    /// Per day and model.
    pub rows: Vec<UsageRow>,
    /// Sum of the rows.
    pub totals: UsageTotals,
    /// What people typed (`task: null`) next to each Open WebUI background task, always from
    /// bff's ledger (Langfuse cannot group by task).
    pub by_task: Vec<TaskUsage>,
}

/// One line of [`UsageReport::by_task`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskUsage {
    /// The task, or `null` for what people typed.
    pub task: Option<String>,
    /// Totals.
    #[serde(flatten)]
    pub totals: UsageTotals,
}

/// `rows` summed per task: people's requests first, then tasks by cost.
pub fn by_task(rows: &[UsageRow]) -> Vec<TaskUsage> {
    let mut tasks: std::collections::BTreeMap<Option<&str>, UsageTotals> = Default::default();
    for row in rows {
        tasks
            .entry(row.task.as_deref())
            .or_default()
            .add(&row.totals);
    }
    let mut lines: Vec<TaskUsage> = tasks
        .into_iter()
        .map(|(task, totals)| TaskUsage {
            task: task.map(str::to_owned),
            totals,
        })
        .collect();
    lines.sort_by(|a, b| {
        (a.task.is_some(), b.totals.cost_usd)
            .partial_cmp(&(b.task.is_some(), a.totals.cost_usd))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    lines
}

/// What the traces route asks for.
#[derive(Debug, Clone, Default)]
pub struct TraceFilter {
    /// Limit to this user.
    pub user_id: Option<String>,
    /// Items per page (1..=100).
    pub limit: u32,
    /// Cursor from a previous page.
    pub cursor: Option<String>,
    /// Start of the range (RFC 3339).
    pub from: Option<String>,
    /// End of the range (RFC 3339).
    pub to: Option<String>,
}

/// Clients for the backends bff reads.
pub struct Observability {
    http: reqwest::Client,
    /// Open WebUI base URL.
    pub openwebui: Option<Url>,
    langfuse: Option<LangfuseReader>,
    helicone: Option<(Url, Secret)>,
}

/// How bff reads Langfuse, and where its traces are for a browser.
pub struct LangfuseReader {
    /// API base URL.
    pub host: Url,
    /// Basic credentials.
    pub credentials: Secret,
    /// The UI's base URL, for trace links.
    pub ui_url: Url,
}

impl Observability {
    /// Builds the readers; `helicone` is `(query API URL, key)`.
    pub fn new(
        openwebui: Option<Url>,
        langfuse: Option<LangfuseReader>,
        helicone: Option<(Url, Secret)>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .build()?;
        Ok(Self {
            http,
            openwebui,
            langfuse,
            helicone,
        })
    }

    /// Whether Langfuse is configured.
    pub fn has_langfuse(&self) -> bool {
        self.langfuse.is_some()
    }

    fn join(base: &Url, path: &str) -> String {
        format!("{}/{path}", base.as_str().trim_end_matches('/'))
    }

    async fn probe(
        &self,
        request: reqwest::RequestBuilder,
        expect: impl Fn(&Value) -> bool,
    ) -> Result<(), String> {
        let response = request.send().await.map_err(|error| {
            if error.is_timeout() {
                "timed out".to_owned()
            } else {
                "unreachable".to_owned()
            }
        })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!("HTTP {}", status.as_u16()));
        }
        if expect(&body) {
            Ok(())
        } else {
            Err(format!(
                "unexpected answer: {}",
                truncate(&body.to_string())
            ))
        }
    }

    /// Open WebUI's `/health`.
    pub async fn openwebui_health(&self) -> DependencyStatus {
        let Some(url) = &self.openwebui else {
            return DependencyStatus::not_configured("openwebui");
        };
        let started = Instant::now();
        let result = self
            .probe(self.http.get(Self::join(url, "health")), |_| true)
            .await;
        DependencyStatus::checked("openwebui", started, result)
    }

    /// Langfuse's `/api/public/health` (no auth).
    pub async fn langfuse_health(&self) -> DependencyStatus {
        let Some(LangfuseReader { host, .. }) = &self.langfuse else {
            return DependencyStatus::not_configured("langfuse");
        };
        let started = Instant::now();
        let result = self
            .probe(
                self.http.get(Self::join(host, "api/public/health")),
                |body| body.get("status").and_then(Value::as_str) == Some("OK"),
            )
            .await;
        DependencyStatus::checked("langfuse", started, result)
    }

    /// Helicone has no health route on its cloud: an authenticated one-minute
    /// `totalRequests` query is the check (`error: null` means up).
    pub async fn helicone_health(&self) -> DependencyStatus {
        let Some((api, key)) = &self.helicone else {
            return DependencyStatus::not_configured("helicone");
        };
        let started = Instant::now();
        let now = std::time::SystemTime::now();
        let minute_ago = now - Duration::from_secs(60);
        let body = json!({"filter": "all", "timeFilter": {
            "start": humantime::format_rfc3339_seconds(minute_ago).to_string(),
            "end": humantime::format_rfc3339_seconds(now).to_string()}});
        let request = self
            .http
            .post(Self::join(api, "v1/metrics/totalRequests"))
            .bearer_auth(key.expose())
            .json(&body);
        let result = self
            .probe(request, |body| {
                body.get("error").is_some_and(Value::is_null)
            })
            .await;
        DependencyStatus::checked("helicone", started, result)
    }

    async fn langfuse_get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<Value>, ApiError> {
        let Some(LangfuseReader {
            host, credentials, ..
        }) = &self.langfuse
        else {
            return Err(ApiError::NotConfigured(
                "Langfuse is not configured: set LANGFUSE_HOST, LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY",
            ));
        };
        let failed = |reason: String| ApiError::Dependency {
            dependency: "langfuse",
            reason,
        };
        let response = self
            .http
            .get(Self::join(host, path))
            .header(reqwest::header::AUTHORIZATION, credentials.expose())
            .query(query)
            .send()
            .await
            .map_err(|error| {
                failed(if error.is_timeout() {
                    "timed out".into()
                } else {
                    "unreachable".into()
                })
            })?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None); // this API is not served here: the caller falls back
        }
        let body = response
            .bytes()
            .await
            .map_err(|_| failed("the answer could not be read".into()))?;
        if !status.is_success() {
            return Err(failed(format!(
                "{path} answered HTTP {}: {}",
                status.as_u16(),
                truncate(&String::from_utf8_lossy(&body))
            )));
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|_| failed(format!("{path} answered something that is not JSON")))
    }

    /// The items, each with its trace's address in Langfuse's UI (`{LANGFUSE_UI_URL}/trace/{id}`, which
    /// Langfuse redirects to the trace's project page). Ids that are not plain tokens get none.
    fn linked(&self, items: impl Iterator<Item = TraceItem>) -> Vec<TraceItem> {
        let host = self.langfuse.as_ref().map(|langfuse| &langfuse.ui_url);
        items
            .map(|mut item| {
                let plain = |id: &&String| {
                    id.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                };
                item.url = host
                    .zip(item.trace_id.as_ref().filter(plain))
                    .map(|(host, id)| Self::join(host, &format!("trace/{id}")));
                item
            })
            .collect()
    }

    /// Recent traces: v2 observations (generations), or v1 traces when v2 is not served.
    pub async fn traces(&self, filter: &TraceFilter) -> Result<TracePage, ApiError> {
        let page_cursor = filter
            .cursor
            .as_deref()
            .and_then(|c| c.strip_prefix("page:"));
        if page_cursor.is_none() {
            let mut query = vec![
                ("type", "GENERATION".to_owned()),
                ("name", GENERATION_NAME.to_owned()),
                ("limit", filter.limit.to_string()),
                ("fields", "core,basic,time,model,usage,metrics".to_owned()),
            ];
            push(&mut query, "userId", filter.user_id.as_ref());
            push(&mut query, "cursor", filter.cursor.as_ref());
            push(&mut query, "fromStartTime", filter.from.as_ref());
            push(&mut query, "toStartTime", filter.to.as_ref());
            if let Some(body) = self
                .langfuse_get("api/public/v2/observations", &query)
                .await?
            {
                return Ok(TracePage {
                    data: self.linked(items(&body).iter().map(observation_item)),
                    next_cursor: body
                        .pointer("/meta/cursor")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    source: "langfuse-v2",
                });
            }
        }
        let page: u32 = page_cursor.and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
        let mut query = vec![
            ("page", page.to_string()),
            ("limit", filter.limit.to_string()),
            ("orderBy", "timestamp.desc".to_owned()),
            ("fields", "core,metrics".to_owned()),
        ];
        push(&mut query, "userId", filter.user_id.as_ref());
        push(&mut query, "fromTimestamp", filter.from.as_ref());
        push(&mut query, "toTimestamp", filter.to.as_ref());
        let body = match self.langfuse_get("api/public/traces", &query).await? {
            Some(body) => body,
            // A v1 page cursor on a server that moved to v4 (which has no v1): no more pages.
            None if page_cursor.is_some() => {
                return Ok(TracePage {
                    data: Vec::new(),
                    next_cursor: None,
                    source: "langfuse-v1",
                });
            }
            None => {
                return Err(ApiError::Dependency {
                    dependency: "langfuse",
                    reason: "neither /api/public/v2/observations nor /api/public/traces is served"
                        .into(),
                });
            }
        };
        let total_pages = body
            .pointer("/meta/totalPages")
            .and_then(number)
            .unwrap_or(0.0);
        Ok(TracePage {
            data: self.linked(items(&body).iter().map(trace_item)),
            next_cursor: (f64::from(page) < total_pages).then(|| format!("page:{}", page + 1)),
            source: "langfuse-v1",
        })
    }

    /// Usage per day and model: v2 metrics, or v1 daily metrics when v2 is not served.
    /// `from`/`to` are RFC 3339 instants bounding whole days `from_day..=to_day`.
    ///
    /// v2 counts bff's own generations only ([`GENERATION_NAME`]), so another writer's
    /// generation in the same trace is not counted twice, and errors are the generations at
    /// level `ERROR`. v1's daily metrics can filter neither: they count every generation and
    /// report errors as unknown.
    pub async fn usage(
        &self,
        (from_day, to_day): (&str, &str),
        (from, to): (&str, &str),
        user: Option<&str>,
    ) -> Result<(Vec<UsageRow>, &'static str), ApiError> {
        let mut filters = vec![
            json!({"column": "type", "operator": "=", "value": "GENERATION", "type": "string"}),
            json!({"column": "name", "operator": "=", "value": GENERATION_NAME, "type": "string"}),
        ];
        if let Some(user) = user {
            filters.push(
                json!({"column": "userId", "operator": "=", "value": user, "type": "string"}),
            );
        }
        let query = json!({
            "view": "observations",
            "dimensions": [{"field": "providedModelName"}, {"field": "level"}],
            "metrics": [
                {"measure": "count", "aggregation": "count"},
                {"measure": "inputTokens", "aggregation": "sum"},
                {"measure": "outputTokens", "aggregation": "sum"},
                {"measure": "totalTokens", "aggregation": "sum"},
                {"measure": "totalCost", "aggregation": "sum"}
            ],
            "filters": filters,
            "timeDimension": {"granularity": "day"},
            "fromTimestamp": from, "toTimestamp": to,
            "config": {"row_limit": 1000}
        });
        if let Some(body) = self
            .langfuse_get("api/public/v2/metrics", &[("query", query.to_string())])
            .await?
        {
            return Ok((v2_usage_rows(&body, from_day), "langfuse-v2"));
        }
        let mut query = vec![
            ("fromTimestamp", from.to_owned()),
            ("toTimestamp", to.to_owned()),
            ("limit", "100".to_owned()),
        ];
        if let Some(user) = user {
            query.push(("userId", user.to_owned()));
        }
        let body = self
            .langfuse_get("api/public/metrics/daily", &query)
            .await?
            .ok_or_else(|| ApiError::Dependency {
                dependency: "langfuse",
                reason: "neither /api/public/v2/metrics nor /api/public/metrics/daily is served"
                    .into(),
            })?;
        let mut rows = Vec::new();
        for day in items(&body) {
            let date: String = day
                .get("date")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .chars()
                .take(10)
                .collect();
            if date.as_str() < from_day || date.as_str() > to_day {
                continue;
            }
            for usage in day
                .get("usage")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                rows.push(UsageRow {
                    day: date.clone(),
                    task: None,
                    model: usage
                        .get("model")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown")
                        .to_owned(),
                    totals: UsageTotals {
                        requests: count(usage.get("countObservations")),
                        errors: None,
                        input_tokens: count(usage.get("inputUsage")),
                        output_tokens: count(usage.get("outputUsage")),
                        total_tokens: count(usage.get("totalUsage")),
                        cost_usd: usage.get("totalCost").and_then(number).unwrap_or(0.0),
                    },
                });
            }
        }
        rows.sort_by(|a, b| (&a.day, &a.model).cmp(&(&b.day, &b.model)));
        Ok((rows, "langfuse-v1"))
    }
}

/// v2 metrics rows (one per day, model and level) merged into one row per day and model.
fn v2_usage_rows(body: &Value, from_day: &str) -> Vec<UsageRow> {
    let mut merged: BTreeMap<(String, String), UsageTotals> = BTreeMap::new();
    for row in items(body) {
        let day: String = row
            .get("time_dimension")
            .and_then(Value::as_str)
            .unwrap_or(from_day)
            .chars()
            .take(10)
            .collect();
        let model = row
            .get("providedModelName")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let requests = count(row.get("count_count"));
        let failed = row.get("level").and_then(Value::as_str) == Some("ERROR");
        merged.entry((day, model)).or_default().add(&UsageTotals {
            requests,
            errors: Some(if failed { requests } else { 0 }),
            input_tokens: count(row.get("sum_inputTokens")),
            output_tokens: count(row.get("sum_outputTokens")),
            total_tokens: count(row.get("sum_totalTokens")),
            cost_usd: row.get("sum_totalCost").and_then(number).unwrap_or(0.0),
        });
    }
    merged
        .into_iter()
        .map(|((day, model), totals)| UsageRow {
            day,
            model,
            task: None,
            totals,
        })
        .collect()
}

fn push(query: &mut Vec<(&'static str, String)>, key: &'static str, value: Option<&String>) {
    if let Some(value) = value.filter(|value| !value.is_empty()) {
        query.push((key, value.clone()));
    }
}

fn items(body: &Value) -> Vec<Value> {
    body.get("data")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Numbers Langfuse may send as JSON strings (ClickHouse 64-bit counts).
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

fn count(value: Option<&Value>) -> u64 {
    value.and_then(number).map_or(0, |n| n.max(0.0) as u64)
}

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn truncate(text: &str) -> String {
    text.chars().take(200).collect()
}

fn observation_item(observation: &Value) -> TraceItem {
    let usage = observation.get("usageDetails");
    let usage_of = |key: &str| {
        usage
            .and_then(|u| u.get(key))
            .and_then(number)
            .map(|n| n as u64)
    };
    TraceItem {
        trace_id: text(observation, "traceId"),
        observation_id: text(observation, "id"),
        name: text(observation, "traceName").or_else(|| text(observation, "name")),
        user_id: text(observation, "userId"),
        session_id: text(observation, "sessionId"),
        model: text(observation, "providedModelName"),
        start_time: text(observation, "startTime"),
        end_time: text(observation, "endTime"),
        latency_ms: observation
            .get("latency")
            .and_then(number)
            .map(|s| s * 1000.0),
        time_to_first_token_ms: observation
            .get("timeToFirstToken")
            .and_then(number)
            .map(|s| s * 1000.0),
        input_tokens: usage_of("input"),
        output_tokens: usage_of("output"),
        total_tokens: usage_of("total"),
        cost_usd: observation.get("totalCost").and_then(number),
        level: text(observation, "level"),
        status_message: text(observation, "statusMessage"),
        tags: tags(observation),
        ..TraceItem::default()
    }
}

fn trace_item(trace: &Value) -> TraceItem {
    TraceItem {
        trace_id: text(trace, "id"),
        name: text(trace, "name"),
        user_id: text(trace, "userId"),
        session_id: text(trace, "sessionId"),
        start_time: text(trace, "timestamp"),
        // v1 reports latency in seconds and -1 when not computed.
        latency_ms: trace
            .get("latency")
            .and_then(number)
            .filter(|s| *s >= 0.0)
            .map(|s| s * 1000.0),
        cost_usd: trace
            .get("totalCost")
            .and_then(number)
            .filter(|c| *c >= 0.0),
        tags: tags(trace),
        ..TraceItem::default()
    }
}

fn tags(value: &Value) -> Vec<String> {
    value
        .get("tags")
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}
