//! Helicone's async-log API: one `POST {base}/custom/v1/log` per record.
//!
//! Helicone has no batch endpoint, so a batch is sent as individual requests with bounded
//! concurrency. Helicone answers a storage failure with **200 and `{"error":…}`**: that is a
//! retryable failure, not a success.

use crate::error::TelemetryError;
use crate::helicone_body::LogBody;
use crate::http;
use crate::record::{LlmRecord, hex};
use crate::secret::Secret;
use crate::sink::{ExportError, TelemetrySink};
use async_trait::async_trait;
use futures_util::StreamExt as _;
use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use url::Url;

/// Where and how to log.
#[derive(Debug, Clone)]
pub struct HeliconeConfig {
    /// The log endpoint: `{HELICONE_BASE_URL}/custom/v1/log`.
    pub endpoint: Url,
    /// `HELICONE_API_KEY`.
    pub api_key: Secret,
    /// Posts in flight at once (Helicone has no batch endpoint). Default 16: at 4 the sink fell
    /// behind bff at 5k req/s on 2 cores and spooled (`make bench`, BENCHMARKS.md).
    pub concurrency: usize,
    /// Per-request timeout. Default 10 s.
    pub timeout: Duration,
}

impl HeliconeConfig {
    /// The cloud worker's default base URL.
    pub const DEFAULT_BASE_URL: &'static str = "https://api.worker.helicone.ai";
    /// Posts in flight unless set otherwise.
    pub const DEFAULT_CONCURRENCY: usize = 64;

    /// Helicone at `base_url` (cloud worker or self-hosted) with `api_key`.
    pub fn new(base_url: &Url, api_key: Secret) -> Result<Self, TelemetryError> {
        let endpoint = Url::parse(&format!(
            "{}/custom/v1/log",
            base_url.as_str().trim_end_matches('/')
        ))
        .map_err(|error| TelemetryError::InvalidConfig {
            what: "HELICONE_BASE_URL",
            reason: error.to_string(),
        })?;
        Ok(Self {
            endpoint,
            api_key,
            concurrency: Self::DEFAULT_CONCURRENCY,
            timeout: Duration::from_secs(10),
        })
    }
}

/// The Helicone sink.
pub struct HeliconeSink {
    client: reqwest::Client,
    config: HeliconeConfig,
}

impl HeliconeSink {
    /// Builds the sink and its HTTP client.
    pub fn new(config: HeliconeConfig) -> Result<Self, TelemetryError> {
        Ok(Self {
            client: http::client(config.timeout)?,
            config,
        })
    }

    async fn send(&self, record: &LlmRecord) -> Result<(), ExportError> {
        let response = self
            .client
            .post(self.config.endpoint.clone())
            .bearer_auth(self.config.api_key.expose())
            .json(&log_body(record))
            .send()
            .await
            .map_err(|error| http::transport("helicone", &error).resend_replaces())?;
        let status = response.status().as_u16();
        let retry_after = http::retry_after(response.headers());
        let ok = response.status().is_success();
        let body = response.bytes().await.unwrap_or_default();
        if !ok {
            return Err(
                http::status_error("helicone", status, retry_after, &body).resend_replaces()
            );
        }
        // `200 {"error":…}` is Helicone's storage failure.
        match serde_json::from_slice::<Value>(&body) {
            Ok(value) if value.get("error").is_some() => Err(ExportError::Retryable {
                reason: format!(
                    "helicone reported a failure with HTTP {status}: {}",
                    value.get("error").unwrap_or(&Value::Null)
                ),
                retry_after,
            }),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl TelemetrySink for HeliconeSink {
    fn name(&self) -> &str {
        "helicone"
    }

    /// Helicone takes one record per call: waiting to fill a batch would only turn a steady
    /// flow into bursts of posts (measured in BENCHMARKS.md §11).
    fn fills_batches(&self) -> bool {
        false
    }

    async fn export(&self, batch: &[&LlmRecord]) -> Vec<Result<(), ExportError>> {
        type Sending<'a> =
            Pin<Box<dyn Future<Output = (usize, Result<(), ExportError>)> + Send + 'a>>;
        let sends: Vec<Sending<'_>> = batch
            .iter()
            .copied()
            .enumerate()
            .map(|(index, record)| -> Sending<'_> {
                Box::pin(async move { (index, self.send(record).await) })
            })
            .collect();
        let mut results: Vec<(usize, Result<(), ExportError>)> = futures_util::stream::iter(sends)
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        results.sort_unstable_by_key(|(index, _)| *index);
        results.into_iter().map(|(_, result)| result).collect()
    }
}

/// bff's namespace for name-based (v5) Helicone request ids.
const REQUEST_ID_NAMESPACE: [u8; 16] = [
    0x6b, 0x1f, 0x2a, 0x4e, 0x90, 0x3c, 0x4d, 0x5e, 0x8a, 0x17, 0x2c, 0x61, 0x0f, 0xd3, 0x9b, 0x44,
];

/// The `Helicone-Request-Id` of a record: Helicone keeps only UUIDs of versions 1–5 and
/// replaces anything else (bff's ids are v7) with a random one. So: the request id itself if it
/// is such a UUID, else the RFC 4122 version-5 UUID of the request id in bff's namespace —
/// stable across retries, replays and restarts, so a resend carries the same id, and anyone
/// holding the request id can compute it.
pub fn helicone_request_id(record: &LlmRecord) -> String {
    let id = record.request_id.as_str();
    if uuid_version(id).is_some_and(|version| (1..=5).contains(&version)) {
        return id.to_ascii_lowercase();
    }
    let mut input = REQUEST_ID_NAMESPACE.to_vec();
    input.extend_from_slice(id.as_bytes());
    let hash = digest(&SHA1_FOR_LEGACY_USE_ONLY, &input);
    let mut bytes = [0_u8; 16];
    for (slot, byte) in bytes.iter_mut().zip(hash.as_ref()) {
        *slot = *byte;
    }
    if let Some(byte) = bytes.get_mut(6) {
        *byte = (*byte & 0x0f) | 0x50;
    }
    if let Some(byte) = bytes.get_mut(8) {
        *byte = (*byte & 0x3f) | 0x80;
    }
    let hex = hex(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        hex.get(0..8).unwrap_or_default(),
        hex.get(8..12).unwrap_or_default(),
        hex.get(12..16).unwrap_or_default(),
        hex.get(16..20).unwrap_or_default(),
        hex.get(20..32).unwrap_or_default()
    )
}

/// The version nibble of a canonical (8-4-4-4-12 hex) UUID.
fn uuid_version(id: &str) -> Option<u32> {
    let canonical = id.len() == 36
        && id.char_indices().all(|(index, c)| {
            if matches!(index, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    canonical
        .then(|| id.chars().nth(14)?.to_digit(16))
        .flatten()
}

/// The async-log body for one record, borrowing from it; serialize it with serde.
pub fn log_body(record: &LlmRecord) -> LogBody<'_> {
    crate::helicone_body::body(record, helicone_request_id(record))
}
