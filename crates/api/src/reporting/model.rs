//! What the reports are made of: rows of usage, people, recent requests. Plain values, shared by
//! the stores, the Langfuse reader and the routes.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The model bucket of everything LiteLLM did not serve: refusals, unknown models. One bucket,
/// so no caller's string becomes a row.
pub const NOT_SERVED: &str = "(not served)";

/// Totals of requests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UsageTotals {
    /// Requests.
    pub requests: u64,
    /// Requests that failed; `None` (JSON `null`) when the source cannot say (Langfuse's v1
    /// daily metrics have no level).
    pub errors: Option<u64>,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Total tokens.
    pub total_tokens: u64,
    /// Cost in USD.
    pub cost_usd: f64,
}

impl Default for UsageTotals {
    fn default() -> Self {
        Self {
            requests: 0,
            errors: Some(0),
            input_tokens: 0,
            output_tokens: 0,
            total_tokens: 0,
            cost_usd: 0.0,
        }
    }
}

impl UsageTotals {
    /// Adds another row's totals to these (errors stay unknown once one row does not know).
    pub fn add(&mut self, other: &Self) {
        self.requests += other.requests;
        self.errors = self.errors.zip(other.errors).map(|(a, b)| a + b);
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.total_tokens += other.total_tokens;
        self.cost_usd += other.cost_usd;
    }
}

/// Whose usage a row counts: a user's own, or a group's (every member's requests).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Subject {
    /// A verified user id.
    User(String),
    /// A policy group key.
    Group(String),
}

impl fmt::Display for Subject {
    /// `u:<id>` or `g:<key>`: how stores write it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "u:{id}"),
            Self::Group(key) => write!(f, "g:{key}"),
        }
    }
}

impl Subject {
    /// Parses [`Self`]'s display form.
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(id) = text.strip_prefix("u:") {
            Some(Self::User(id.to_owned()))
        } else {
            text.strip_prefix("g:")
                .map(|key| Self::Group(key.to_owned()))
        }
    }
}

/// The key of one stored row: day × subject × model × task. Every part is minted or verified by
/// bff: a day, a verified user id or policy group key, a model LiteLLM served (or
/// [`NOT_SERVED`]), a task from Open WebUI's fixed list (or empty for a person's own request).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RowKey {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    /// Whose.
    pub subject: Subject,
    /// Which model.
    pub model: String,
    /// Which Open WebUI task; empty for what a person typed.
    pub task: String,
}

/// One row of a usage answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRow {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Model.
    pub model: String,
    /// The Open WebUI task (`title_generation`, …), or `null` for what people typed.
    pub task: Option<String>,
    /// Totals.
    #[serde(flatten)]
    pub totals: UsageTotals,
}

/// A person as Open WebUI named them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Display name (a service key's name for a service).
    pub name: Option<String>,
    /// Email.
    pub email: Option<String>,
}

/// One user's totals over a range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserUsage {
    /// The user id.
    pub user_id: String,
    /// Their name, as Open WebUI gave it.
    pub name: Option<String>,
    /// Their email.
    pub email: Option<String>,
    /// Totals.
    #[serde(flatten)]
    pub totals: UsageTotals,
}

/// One group's totals over a range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupUsage {
    /// The group, as the policy names it.
    pub group: String,
    /// Totals.
    #[serde(flatten)]
    pub totals: UsageTotals,
}

/// One trace (a generation observation, or a v1 trace) as the monitoring page shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceItem {
    /// Trace id.
    pub trace_id: Option<String>,
    /// Observation id (v2 only).
    pub observation_id: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// User.
    pub user_id: Option<String>,
    /// The user's name, as Open WebUI gave it.
    #[serde(default)]
    pub user_name: Option<String>,
    /// The user's email.
    #[serde(default)]
    pub user_email: Option<String>,
    /// Session / chat.
    pub session_id: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// The Open WebUI task, if the request was one.
    #[serde(default)]
    pub task: Option<String>,
    /// Start (RFC 3339).
    pub start_time: Option<String>,
    /// End (RFC 3339).
    pub end_time: Option<String>,
    /// Latency in milliseconds.
    pub latency_ms: Option<f64>,
    /// Time to first token in milliseconds.
    pub time_to_first_token_ms: Option<f64>,
    /// Input tokens.
    pub input_tokens: Option<u64>,
    /// Output tokens.
    pub output_tokens: Option<u64>,
    /// Total tokens.
    pub total_tokens: Option<u64>,
    /// Cost in USD.
    pub cost_usd: Option<f64>,
    /// `DEFAULT`, `WARNING`, `ERROR`, …
    pub level: Option<String>,
    /// Status message (errors).
    pub status_message: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// The trace in Langfuse's UI (when Langfuse is configured).
    pub url: Option<String>,
}
