//! A streaming chat completion: SSE events out as soon as they are complete, plus what
//! telemetry needs once it is over.

use crate::ResponseMeta;
use crate::error::{ErrorKind, ProviderError, UpstreamError};
use crate::sse::{SseEvent, SseParser};
use crate::wire::{ChatChunk, Usage};
use bytes::Bytes;
use futures_util::Stream;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Most output text a stream keeps for telemetry by default
/// ([`StreamSettings::max_captured_output_bytes`]); the stream itself is never cut.
pub const MAX_CAPTURED_OUTPUT_BYTES: usize = 1024 * 1024;

/// The bytes of the final `[DONE]` event.
pub const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

/// One event to hand to the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    /// The event exactly as LiteLLM sent it (re-encoded only when bff had to remove `usage`).
    pub bytes: Bytes,
    /// The parsed chunk; `None` for `data: [DONE]`.
    pub chunk: Option<ChatChunk>,
}

/// What the stream produced so far; complete once the stream has ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamSummary {
    /// When the first content or tool-call delta arrived.
    pub first_output_at: Option<Instant>,
    /// The concatenated content deltas of choice 0 (capped at
    /// [`StreamSettings::max_captured_output_bytes`]).
    pub output_text: String,
    /// Whether `output_text` was capped.
    pub output_truncated: bool,
    /// Usage from the usage chunk (always requested upstream), including LiteLLM's `cost`.
    pub usage: Option<Usage>,
    /// The finish reason of choice 0.
    pub finish_reason: Option<String>,
    /// The model named by the chunks.
    pub model: Option<String>,
    /// Whether `data: [DONE]` arrived.
    pub done: bool,
    /// Events handed to the caller.
    pub events_forwarded: u64,
}

/// How a [`ChatStream`] behaves.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Whether the caller asked for the usage chunk; if not, bff removes it.
    pub caller_wants_usage: bool,
    /// Longest silence allowed between two reads.
    pub idle_timeout: Duration,
    /// The caller's deadline for the whole stream.
    pub deadline: Option<Instant>,
    /// Largest single event accepted.
    pub max_event_bytes: usize,
    /// Most output text kept in [`StreamSummary::output_text`]; past it the text is cut and
    /// [`StreamSummary::output_truncated`] set.
    pub max_captured_output_bytes: usize,
}

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

/// A streaming chat completion.
///
/// Yields [`StreamEvent`]s; ends after `data: [DONE]`, or with one error: a typed mid-stream
/// failure (`StreamFailed`), a truncation (`StreamTruncated`), an idle or deadline timeout, or a
/// protocol error. Dropping it drops the HTTP response, which closes the upstream connection,
/// so LiteLLM stops generating (and spending).
pub struct ChatStream {
    body: ByteStream,
    parser: SseParser,
    ready: VecDeque<SseEvent>,
    settings: StreamSettings,
    timer: Pin<Box<Sleep>>,
    meta: ResponseMeta,
    summary: StreamSummary,
    finished: bool,
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStream")
            .field("meta", &self.meta)
            .field("summary", &self.summary)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl ChatStream {
    /// A stream over raw SSE bytes. The client builds one from the HTTP body; tests and mocks
    /// can build one from canned bytes.
    pub fn from_byte_stream<S, E>(body: S, meta: ResponseMeta, settings: StreamSettings) -> Self
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: std::fmt::Display,
    {
        use futures_util::StreamExt as _;
        let body = body.map(|item| item.map_err(|error| error.to_string()));
        let timer = Box::pin(tokio::time::sleep_until(next_wake(&settings)));
        Self {
            body: Box::pin(body),
            parser: SseParser::new(settings.max_event_bytes),
            ready: VecDeque::new(),
            settings,
            timer,
            meta,
            summary: StreamSummary::default(),
            finished: false,
        }
    }

    /// Response metadata (call id, model, attempts, …).
    pub fn meta(&self) -> &ResponseMeta {
        &self.meta
    }

    /// What has streamed so far.
    pub fn summary(&self) -> &StreamSummary {
        &self.summary
    }

    fn fail(&mut self, kind: ErrorKind) -> Poll<Option<Result<StreamEvent, ProviderError>>> {
        self.finished = true;
        self.ready.clear();
        Poll::Ready(Some(Err(ProviderError {
            kind,
            attempts: self.meta.attempts,
            call_id: self.meta.call_id.clone(),
        })))
    }

    /// Turns one SSE event into what the caller sees: `Ok(None)` means "skip it".
    fn handle(&mut self, event: SseEvent) -> Result<Option<StreamEvent>, ErrorKind> {
        if self.summary.done {
            return Ok(None); // nothing after [DONE] is forwarded
        }
        if event.data.trim() == "[DONE]" {
            self.summary.done = true;
            return Ok(Some(StreamEvent {
                bytes: event.raw,
                chunk: None,
            }));
        }
        let value: serde_json::Value =
            serde_json::from_str(&event.data).map_err(|error| ErrorKind::Protocol {
                reason: format!("a stream event is not JSON: {error}"),
            })?;
        if value.get("error").is_some() || event.event.as_deref() == Some("error") {
            let upstream = UpstreamError::from_value(&value);
            return Err(ErrorKind::StreamFailed {
                message: upstream
                    .as_ref()
                    .map_or_else(|| event.data.clone(), |error| error.message.clone()),
                code: upstream.and_then(|error| error.code),
            });
        }
        let mut chunk: ChatChunk =
            serde_json::from_value(value).map_err(|error| ErrorKind::Protocol {
                reason: format!("a stream event is not a chat completion chunk: {error}"),
            })?;
        self.record(&chunk);
        let mut bytes = event.raw;
        if chunk.usage.is_some() && !self.settings.caller_wants_usage {
            if chunk.is_usage_only() {
                return Ok(None);
            }
            // Usage rode on a content chunk: remove it, re-encoding only this event.
            chunk.usage = None;
            let json = serde_json::to_string(&chunk).map_err(|error| ErrorKind::Protocol {
                reason: format!("cannot re-encode a chunk: {error}"),
            })?;
            bytes = Bytes::from(format!("data: {json}\n\n"));
        }
        Ok(Some(StreamEvent {
            bytes,
            chunk: Some(chunk),
        }))
    }

    fn record(&mut self, chunk: &ChatChunk) {
        let summary = &mut self.summary;
        if summary.model.is_none() {
            summary.model.clone_from(&chunk.model);
        }
        if let Some(usage) = &chunk.usage {
            summary.usage = Some(usage.clone());
        }
        for choice in chunk.choices.iter().filter(|choice| choice.index == 0) {
            if summary.first_output_at.is_none() && choice.has_output() {
                summary.first_output_at = Some(Instant::now());
            }
            if let Some(text) = choice.content() {
                let room = self
                    .settings
                    .max_captured_output_bytes
                    .saturating_sub(summary.output_text.len());
                if text.len() <= room {
                    summary.output_text.push_str(text);
                } else {
                    let mut cut = room;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    summary
                        .output_text
                        .push_str(text.get(..cut).unwrap_or_default());
                    summary.output_truncated = true;
                }
            }
            if choice.finish_reason.is_some() {
                summary.finish_reason.clone_from(&choice.finish_reason);
            }
        }
    }
}

/// When the timer should fire next: the idle limit, or the caller's deadline if sooner.
fn next_wake(settings: &StreamSettings) -> Instant {
    let idle = Instant::now() + settings.idle_timeout;
    settings
        .deadline
        .map_or(idle, |deadline| deadline.min(idle))
}

impl Stream for ChatStream {
    type Item = Result<StreamEvent, ProviderError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            while let Some(event) = this.ready.pop_front() {
                match this.handle(event) {
                    Ok(Some(item)) => {
                        this.summary.events_forwarded += 1;
                        return Poll::Ready(Some(Ok(item)));
                    }
                    Ok(None) => {}
                    Err(kind) => return this.fail(kind),
                }
            }
            if this.finished {
                return Poll::Ready(None);
            }
            match this.body.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    this.timer.as_mut().reset(next_wake(&this.settings));
                    match this.parser.push(&bytes) {
                        Ok(events) => this.ready.extend(events),
                        Err(error) => {
                            return this.fail(ErrorKind::Protocol {
                                reason: error.to_string(),
                            });
                        }
                    }
                }
                Poll::Ready(Some(Err(_))) => return this.fail(ErrorKind::StreamTruncated),
                Poll::Ready(None) => {
                    if this.summary.done {
                        this.finished = true;
                        return Poll::Ready(None);
                    }
                    // A final event without its blank line, then EOF: still truncated.
                    return this.fail(ErrorKind::StreamTruncated);
                }
                Poll::Pending => {
                    if this.timer.as_mut().poll(cx).is_ready() {
                        let at_deadline = this
                            .settings
                            .deadline
                            .is_some_and(|deadline| Instant::now() >= deadline);
                        return this.fail(ErrorKind::DeadlineExceeded {
                            limit: if at_deadline {
                                "caller deadline"
                            } else {
                                "idle stream"
                            },
                        });
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;

    fn meta() -> ResponseMeta {
        ResponseMeta {
            status: 200,
            attempts: 1,
            call_id: Some("call-1".into()),
            cost_usd: None,
            model_group: None,
            model_id: None,
            time_to_headers: Duration::ZERO,
        }
    }

    fn settings(caller_wants_usage: bool) -> StreamSettings {
        StreamSettings {
            caller_wants_usage,
            idle_timeout: Duration::from_secs(5),
            deadline: None,
            max_event_bytes: 1 << 20,
            max_captured_output_bytes: MAX_CAPTURED_OUTPUT_BYTES,
        }
    }

    fn stream_of(chunks: Vec<&'static [u8]>, caller_wants_usage: bool) -> ChatStream {
        let body = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|chunk| Ok::<_, std::io::Error>(Bytes::from_static(chunk))),
        );
        ChatStream::from_byte_stream(body, meta(), settings(caller_wants_usage))
    }

    async fn drain(stream: &mut ChatStream) -> (Vec<u8>, Option<ErrorKind>) {
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => out.extend_from_slice(&event.bytes),
                Err(error) => return (out, Some(error.kind)),
            }
        }
        (out, None)
    }

    const USAGE_ON_CONTENT: &[u8] = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}\n\n";

    #[tokio::test]
    async fn usage_riding_on_a_content_chunk_is_removed_not_the_chunk() {
        let mut stream = stream_of(vec![USAGE_ON_CONTENT, DONE_EVENT], false);
        let (out, error) = drain(&mut stream).await;
        assert_eq!(error, None);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"content\":\"hi\""), "{text}");
        assert!(!text.contains("usage"), "{text}");
        assert_eq!(
            stream.summary().usage.as_ref().unwrap().total_tokens,
            Some(2)
        );

        let mut stream = stream_of(vec![USAGE_ON_CONTENT, DONE_EVENT], true);
        let (out, _) = drain(&mut stream).await;
        assert_eq!(out, [USAGE_ON_CONTENT, DONE_EVENT].concat());
    }

    #[tokio::test]
    async fn events_after_done_are_not_forwarded() {
        let mut stream = stream_of(vec![DONE_EVENT, USAGE_ON_CONTENT], true);
        let (out, error) = drain(&mut stream).await;
        assert_eq!((out.as_slice(), error), (DONE_EVENT, None));
    }

    #[tokio::test]
    async fn non_json_event_is_a_protocol_error() {
        let mut stream = stream_of(vec![b"data: {not json\n\n"], true);
        let (_, error) = drain(&mut stream).await;
        assert!(matches!(error, Some(ErrorKind::Protocol { .. })));
        assert!(stream.next().await.is_none(), "nothing after the error");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_stream_hits_the_idle_limit_and_the_caller_deadline() {
        let stalled = || {
            futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(
                b"data: {\"choices\":[]}\n\n",
            ))])
            .chain(futures_util::stream::pending())
        };
        let mut stream = ChatStream::from_byte_stream(stalled(), meta(), settings(true));
        let (_, error) = drain(&mut stream).await;
        assert_eq!(
            error,
            Some(ErrorKind::DeadlineExceeded {
                limit: "idle stream"
            })
        );

        let mut with_deadline = settings(true);
        with_deadline.deadline = Some(Instant::now() + Duration::from_secs(1));
        let mut stream = ChatStream::from_byte_stream(stalled(), meta(), with_deadline);
        let (_, error) = drain(&mut stream).await;
        assert_eq!(
            error,
            Some(ErrorKind::DeadlineExceeded {
                limit: "caller deadline"
            })
        );
    }

    #[tokio::test]
    async fn output_text_capture_is_capped_on_a_char_boundary() {
        let big = format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}\"}}}}]}}\n\n",
            "é".repeat(MAX_CAPTURED_OUTPUT_BYTES)
        );
        let body = futures_util::stream::iter([
            Ok::<_, std::io::Error>(Bytes::from(big)),
            Ok(Bytes::from_static(DONE_EVENT)),
        ]);
        let mut stream = ChatStream::from_byte_stream(
            body,
            meta(),
            StreamSettings {
                max_event_bytes: 8 << 20,
                ..settings(true)
            },
        );
        let (_, error) = drain(&mut stream).await;
        assert_eq!(error, None);
        assert!(stream.summary().output_truncated);
        assert!(stream.summary().output_text.len() <= MAX_CAPTURED_OUTPUT_BYTES);
    }
}
