//! One value per LLM request: what it was, who asked, what it cost, how it ended.

use ring::digest::{SHA256, digest};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What to keep of prompts and answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CapturePolicy {
    /// Keep input messages and output text.
    #[default]
    Full,
    /// Drop input and output before the record leaves `record()`: not queued, not spooled,
    /// not exported.
    MetadataOnly,
}

impl CapturePolicy {
    /// Parses `full` or `metadata-only`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "full" => Some(Self::Full),
            "metadata-only" => Some(Self::MetadataOnly),
            _ => None,
        }
    }
}

/// How the request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Completed.
    Ok,
    /// Failed; see [`LlmRecord::error`].
    Error,
    /// The client went away before the end, waiting for the first byte or during a stream.
    #[serde(alias = "cancelled")]
    Abandoned,
}

/// A failure, as telemetry shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordError {
    /// A stable label (`rate_limited`, `upstream_timeout`, …).
    pub kind: String,
    /// A human-readable message (never a credential).
    pub message: String,
    /// The HTTP status the caller received, if any.
    pub status: Option<u16>,
}

/// Token counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Input (prompt) tokens.
    pub input: Option<u64>,
    /// Output (completion) tokens.
    pub output: Option<u64>,
    /// Total tokens.
    pub total: Option<u64>,
    /// Further counts (`reasoning_tokens`, `cached_tokens`, …), flattened.
    #[serde(default)]
    pub details: Vec<(String, u64)>,
}

/// Time as Unix nanoseconds, the unit OTLP uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UnixNanos(pub u64);

impl UnixNanos {
    /// The current time.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// As a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.0)
    }

    /// RFC 3339 with milliseconds, UTC (`2026-01-01T00:00:00.010Z`).
    pub fn to_rfc3339(self) -> String {
        humantime::format_rfc3339_millis(self.to_system_time()).to_string()
    }
}

impl From<SystemTime> for UnixNanos {
    fn from(time: SystemTime) -> Self {
        Self(time.duration_since(UNIX_EPOCH).map_or(0, |elapsed| {
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
        }))
    }
}

/// Everything recorded about one LLM request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmRecord {
    /// W3C trace id (32 lowercase hex), shared with LiteLLM's own logging.
    pub trace_id: String,
    /// The service's request id; the stable identity of this record (retries and replays
    /// reuse it, so sinks can deduplicate). Minted by the service, never taken from a caller.
    pub request_id: String,
    /// The caller's own request id, if it sent one: an attribute, never a key.
    #[serde(default)]
    pub client_request_id: Option<String>,
    /// The span this request's spans hang under (16 hex), when a trusted caller continued its
    /// own trace.
    #[serde(default)]
    pub parent_span_id: Option<String>,
    /// The authenticated user.
    pub user_id: Option<String>,
    /// The user's role.
    pub role: Option<String>,
    /// The caller's groups (teams), by display name: Langfuse tags `group:<name>` and metadata
    /// `groups`, Helicone's `Helicone-Property-Group`.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The background task the request served for the front end (`title_generation`, …);
    /// `None` for a request a person made.
    #[serde(default)]
    pub task: Option<String>,
    /// Chat or session id.
    pub session_id: Option<String>,
    /// The service route (`/v1/chat/completions`).
    pub route: String,
    /// Environment name (`production`, `dev`, …) for Langfuse's `langfuse.environment`.
    pub environment: Option<String>,
    /// The model the caller asked for.
    pub model_requested: String,
    /// The model that answered, if known.
    pub model_served: Option<String>,
    /// Whether the answer was streamed.
    pub stream: bool,
    /// When the request started.
    pub started_at: UnixNanos,
    /// When the first output token arrived.
    pub first_token_at: Option<UnixNanos>,
    /// When the request ended.
    pub ended_at: UnixNanos,
    /// How it ended.
    pub outcome: Outcome,
    /// What went wrong, for `Error` (and optionally `Abandoned`).
    pub error: Option<RecordError>,
    /// Token usage.
    pub usage: Option<TokenUsage>,
    /// Cost in USD, when the gateway reported it.
    pub cost_usd: Option<f64>,
    /// The gateway's call id (`x-litellm-call-id`).
    pub upstream_call_id: Option<String>,
    /// The HTTP status the gateway answered with, when it answered (the caller's own status is
    /// in [`RecordError::status`]: bff may answer differently, say 404 for LiteLLM's 400).
    #[serde(default)]
    pub upstream_status: Option<u16>,
    /// HTTP attempts made upstream.
    pub attempts: u32,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Input messages (OpenAI shape), unless the capture policy drops them.
    pub input: Option<Value>,
    /// Output text, unless the capture policy drops it.
    pub output: Option<String>,
    /// Finish reason of the answer.
    pub finish_reason: Option<String>,
    /// Whether `input` or `output` was cut to the capture limit.
    #[serde(default)]
    pub capture_truncated: bool,
}

impl LlmRecord {
    /// A minimal record; fill in the rest with struct update syntax.
    pub fn new(
        trace_id: impl Into<String>,
        request_id: impl Into<String>,
        route: impl Into<String>,
        model_requested: impl Into<String>,
    ) -> Self {
        let now = UnixNanos::now();
        Self {
            trace_id: trace_id.into(),
            request_id: request_id.into(),
            client_request_id: None,
            parent_span_id: None,
            user_id: None,
            role: None,
            groups: Vec::new(),
            task: None,
            session_id: None,
            route: route.into(),
            environment: None,
            model_requested: model_requested.into(),
            model_served: None,
            stream: false,
            started_at: now,
            first_token_at: None,
            ended_at: now,
            outcome: Outcome::Ok,
            error: None,
            usage: None,
            cost_usd: None,
            upstream_call_id: None,
            upstream_status: None,
            attempts: 1,
            tags: Vec::new(),
            input: None,
            output: None,
            finish_reason: None,
            capture_truncated: false,
        }
    }

    /// Whether the record already keeps no more than `policy` and `max_bytes` allow.
    pub fn within_capture(&self, policy: CapturePolicy, max_bytes: usize) -> bool {
        match policy {
            CapturePolicy::MetadataOnly => self.input.is_none() && self.output.is_none(),
            CapturePolicy::Full => {
                self.output
                    .as_ref()
                    .is_none_or(|output| output.len() <= max_bytes)
                    && self
                        .input
                        .as_ref()
                        .is_none_or(|input| text_bytes(input) <= max_bytes)
            }
        }
    }

    /// Applies a capture policy, and cuts `input` and `output` to at most `max_bytes` each.
    /// A cut output keeps its first `max_bytes`; a cut input becomes the first `max_bytes` of
    /// its JSON text. Either sets [`Self::capture_truncated`].
    pub fn apply(&mut self, policy: CapturePolicy, max_bytes: usize) {
        if policy == CapturePolicy::MetadataOnly {
            self.input = None;
            self.output = None;
            return;
        }
        if let Some(output) = &mut self.output
            && output.len() > max_bytes
        {
            output.truncate(floor_char_boundary(output, max_bytes));
            self.capture_truncated = true;
        }
        if let Some(input) = &self.input
            && text_bytes(input) > max_bytes
        {
            let mut text = input.to_string();
            text.truncate(floor_char_boundary(&text, max_bytes));
            self.input = Some(Value::String(text));
            self.capture_truncated = true;
        }
    }

    /// About how much memory the record holds: its captured text plus a fixed allowance for
    /// the rest. Used to bound queues in bytes.
    pub fn approx_bytes(&self) -> usize {
        const FIXED: usize = 1024;
        FIXED
            + self.input.as_ref().map_or(0, text_bytes)
            + self.output.as_ref().map_or(0, String::len)
    }

    /// `N` bytes derived from the request id and a purpose: stable across retries, replays
    /// and restarts, so re-sent spans and logs carry the same ids.
    pub fn derived_id<const N: usize>(&self, purpose: &str) -> [u8; N] {
        let mut input = self.request_id.as_bytes().to_vec();
        input.push(0);
        input.extend_from_slice(purpose.as_bytes());
        let hash = digest(&SHA256, &input);
        let mut out = [0_u8; N];
        for (slot, byte) in out.iter_mut().zip(hash.as_ref()) {
            *slot = *byte;
        }
        if out.iter().all(|b| *b == 0)
            && let Some(last) = out.last_mut()
        {
            *last = 1; // OTLP forbids all-zero ids
        }
        out
    }
}

/// Bytes of the strings (and keys) in a JSON value: a cheap size estimate.
fn text_bytes(value: &Value) -> usize {
    match value {
        Value::String(text) => text.len(),
        Value::Array(items) => items.iter().map(text_bytes).sum(),
        Value::Object(fields) => fields
            .iter()
            .map(|(key, value)| key.len() + text_bytes(value))
            .sum(),
        _ => 8,
    }
}

/// The largest index ≤ `index` that is a char boundary of `text`.
fn floor_char_boundary(text: &str, index: usize) -> usize {
    (0..=index.min(text.len()))
        .rev()
        .find(|at| text.is_char_boundary(*at))
        .unwrap_or(0)
}

/// Lowercase hex of bytes.
#[cfg(feature = "helicone")]
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of a hex string; `None` if it is not hex of the right length.
#[cfg(feature = "langfuse")]
pub(crate) fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0_u8; N];
    for (index, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(text.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_only_drops_input_and_output() {
        let mut record = LlmRecord::new("ab".repeat(16), "req-1", "/chat", "m");
        record.input = Some(serde_json::json!([{"role": "user", "content": "secret plan"}]));
        record.output = Some("answer".into());
        record.apply(CapturePolicy::Full, 1 << 20);
        assert!(record.input.is_some() && record.output.is_some());
        assert!(!record.capture_truncated);
        record.apply(CapturePolicy::MetadataOnly, 1 << 20);
        assert!(record.input.is_none() && record.output.is_none());
        assert_eq!(
            CapturePolicy::parse("metadata-only"),
            Some(CapturePolicy::MetadataOnly)
        );
        assert_eq!(CapturePolicy::parse("partial"), None);
    }

    #[test]
    fn capture_is_cut_to_the_limit_and_marked() {
        let mut record = LlmRecord::new("ab".repeat(16), "req-1", "/chat", "m");
        record.input = Some(serde_json::json!([{"role": "user", "content": "é".repeat(5000)}]));
        record.output = Some("ü".repeat(5000));
        let before = record.approx_bytes();
        record.apply(CapturePolicy::Full, 1001);
        assert!(record.capture_truncated);
        assert!(record.output.as_ref().unwrap().len() <= 1001);
        let Some(Value::String(input)) = &record.input else {
            panic!("a cut input is kept as text");
        };
        assert!(
            input.len() <= 1001 && input.starts_with(r#"[{"role":"user","content":"é"#),
            "{input}"
        );
        assert!(record.approx_bytes() < before / 4);
    }

    #[test]
    fn derived_ids_are_stable_and_distinct_by_purpose() {
        let record = LlmRecord::new("ab".repeat(16), "req-1", "/chat", "m");
        let again = LlmRecord::new("cd".repeat(16), "req-1", "/other", "n");
        assert_eq!(
            record.derived_id::<8>("root"),
            again.derived_id::<8>("root")
        );
        assert_ne!(
            record.derived_id::<8>("root"),
            record.derived_id::<8>("generation")
        );
    }

    #[test]
    fn hex_round_trip_and_rfc3339() {
        assert_eq!(unhex::<2>("0aff"), Some([0x0a, 0xff]));
        assert_eq!(unhex::<2>("0af"), None);
        assert_eq!(unhex::<2>("zzzz"), None);
        assert_eq!(hex(&[0x0a, 0xff]), "0aff");
        assert_eq!(
            UnixNanos(1_767_225_600_010_000_000).to_rfc3339(),
            "2026-01-01T00:00:00.010Z"
        );
    }
}
