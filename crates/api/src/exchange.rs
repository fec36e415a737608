//! One value per finished exchange: [`Exchange`], built once where a request ends — answered,
//! refused, failed, cut off, or abandoned by its client — and handed to every [`Subscriber`]:
//! the telemetry sinks, the usage store, the recent list, the traffic window, the metrics, quota
//! settlement and the log line. Nothing that counts reads a request any other way.
//!
//! While a request runs, what is known of it is a [`Draft`], shared through an
//! [`ExchangeHandle`] by the request-context middleware (which starts it and, for answers that
//! do not stream, finishes it), the handler (which adds the caller, the chat and its quota
//! ticket) and a streaming body (which finishes it when the stream ends). A request whose client
//! leaves is dropped by the server: the handle's last owner then finishes it as abandoned, so
//! every request is published exactly once.

use bff_auth::Identity;
use bff_quota::{Spend, Ticket};
use bff_telemetry::{CapturePolicy, LlmRecord, Outcome, RecordError, UnixNanos};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// The status bff records for a request whose client left before any answer (nginx's 499).
pub const CLIENT_CLOSED: u16 = 499;

/// How an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Answered with success.
    Answered,
    /// Answered with an error: refused (4xx) or failed (5xx, or a stream cut by the upstream).
    Failed,
    /// The client left before the end.
    Abandoned,
}

impl Ending {
    /// `ok`, `error` or `abandoned`, as logs and records say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "ok",
            Self::Failed => "error",
            Self::Abandoned => "abandoned",
        }
    }
}

/// What went wrong, as the client was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The stable error code (`rate_limit_exceeded`, `model_not_found`, …).
    pub code: &'static str,
    /// The message (never a credential; server-side detail stays in the log).
    pub message: String,
    /// Whether bff's authentication or authorization refused it (counted by reason).
    pub auth: bool,
}

/// What the quota decided for a chat, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotaCheck {
    /// How long the counters took.
    pub took: Duration,
    /// The refusal's kind, if refused.
    pub refused: Option<&'static str>,
}

/// The model call of a chat exchange.
#[derive(Debug)]
pub struct Chat {
    /// The telemetry record: what LiteLLM was asked and answered (capture already applied).
    pub record: Arc<LlmRecord>,
    /// Whether LiteLLM was called at all (a refusal before the call has a record but no call).
    pub called: bool,
    /// Whether the model is one LiteLLM is known to serve: only such models become rows and
    /// labels; anything else counts under one bucket.
    pub model_known: bool,
    /// From the start to the first streamed token.
    pub first_token_after: Option<Duration>,
    /// The label of a LiteLLM failure (`rate_limited`, `upstream_timeout`, …).
    pub upstream_error: Option<&'static str>,
    /// The quota's answer.
    pub quota: Option<QuotaCheck>,
}

/// One finished request: everything that counts reads this.
#[derive(Debug)]
pub struct Exchange {
    /// bff's request id.
    pub request_id: String,
    /// `GET`, `POST`, `HEAD`, `OPTIONS` or `other`.
    pub method: &'static str,
    /// The matched route pattern, or `unmatched`.
    pub route: &'static str,
    /// The status the client got ([`CLIENT_CLOSED`] when it left before an answer).
    pub status: u16,
    /// How it ended.
    pub ending: Ending,
    /// What went wrong, when it did.
    pub failure: Option<Failure>,
    /// The caller, when authenticated.
    pub caller: Option<Identity>,
    /// The Open WebUI background task it was (`title_generation`, …), if any.
    pub task: Option<&'static str>,
    /// When it started.
    pub started_at: SystemTime,
    /// Until the response head (`None` if the client left before).
    pub head_after: Option<Duration>,
    /// Until the end (streams: until the stream ended).
    pub elapsed: Duration,
    /// Of that, waiting on LiteLLM for the response head.
    pub upstream_wait: Duration,
    /// The chat, on chat routes past authentication.
    pub chat: Option<Chat>,
    ticket: Mutex<Option<Ticket>>,
}

impl Exchange {
    /// The quota ticket, once: whoever settles it takes it.
    pub fn take_ticket(&self) -> Option<Ticket> {
        self.ticket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// What the request used, for quota settlement.
    pub fn spend(&self) -> Spend {
        let Some(record) = self.chat.as_ref().map(|chat| &chat.record) else {
            return Spend::default();
        };
        Spend {
            tokens: record.usage.as_ref().map_or(0, |usage| {
                usage
                    .total
                    .unwrap_or_else(|| usage.input.unwrap_or(0) + usage.output.unwrap_or(0))
            }),
            cost_usd: record.cost_usd.unwrap_or(0.0),
        }
    }
}

/// Everything that counts finished exchanges.
pub trait Subscriber: Send + Sync {
    /// One exchange ended. Called on the request's thread: never block.
    fn finished(&self, exchange: &Arc<Exchange>);
}

impl<T: Subscriber> Subscriber for Arc<T> {
    fn finished(&self, exchange: &Arc<Exchange>) {
        T::finished(self, exchange);
    }
}

/// The subscribers, and what exchanges in progress hold open.
pub struct Hub {
    subscribers: Vec<Box<dyn Subscriber>>,
    open_streams: Arc<AtomicU64>,
    capture: (CapturePolicy, usize),
    routes: &'static [(&'static str, &'static str)],
}

impl Hub {
    /// A hub publishing to `subscribers`. Chat records keep prompts and answers per `capture`
    /// (policy, most bytes each); `routes` are the `(method, pattern)`s exchanges are labelled
    /// with (anything else is `unmatched`); `open_streams` counts the streams open.
    pub fn new(
        subscribers: Vec<Box<dyn Subscriber>>,
        capture: (CapturePolicy, usize),
        routes: &'static [(&'static str, &'static str)],
        open_streams: Arc<AtomicU64>,
    ) -> Self {
        Self {
            subscribers,
            open_streams,
            capture,
            routes,
        }
    }

    /// The most bytes of a prompt or an answer a record keeps.
    pub fn max_capture_bytes(&self) -> usize {
        self.capture.1
    }

    fn publish(&self, exchange: Exchange) {
        let exchange = Arc::new(exchange);
        for subscriber in &self.subscribers {
            subscriber.finished(&exchange);
        }
    }
}

/// A chat while it runs.
#[derive(Debug)]
pub struct ChatDraft {
    /// The record under construction.
    pub record: LlmRecord,
    /// Whether LiteLLM was called.
    pub called: bool,
    /// See [`Chat::model_known`].
    pub model_known: bool,
    /// When the first token arrived.
    pub first_token: Option<Instant>,
    /// See [`Chat::upstream_error`].
    pub upstream_error: Option<&'static str>,
    /// See [`Chat::quota`].
    pub quota: Option<QuotaCheck>,
}

/// What is known of a request while it runs.
#[derive(Debug)]
pub struct Draft {
    /// bff's request id.
    pub request_id: String,
    /// Method label.
    pub method: &'static str,
    /// Route pattern.
    pub route: &'static str,
    /// Monotonic start.
    pub started: Instant,
    /// Wall-clock start.
    pub started_at: SystemTime,
    /// The caller.
    pub caller: Option<Identity>,
    /// The Open WebUI task, if any.
    pub task: Option<&'static str>,
    /// The chat.
    pub chat: Option<ChatDraft>,
    /// The quota ticket of an admitted chat.
    pub ticket: Option<Ticket>,
    /// Time waiting on LiteLLM for the response head.
    pub upstream_wait: Duration,
    head: Option<(u16, Duration)>,
    failure: Option<Failure>,
    streaming: bool,
    finished: bool,
}

/// A request's draft, shared by everything that handles the request; cheap to clone.
#[derive(Clone)]
pub struct ExchangeHandle {
    draft: Rc<RefCell<Draft>>,
    hub: Arc<Hub>,
}

impl ExchangeHandle {
    /// Starts the draft of a request.
    pub fn start(hub: Arc<Hub>, request_id: String, method: &'static str) -> Self {
        Self {
            draft: Rc::new(RefCell::new(Draft {
                request_id,
                method,
                route: "unmatched",
                started: Instant::now(),
                started_at: SystemTime::now(),
                caller: None,
                task: None,
                chat: None,
                ticket: None,
                upstream_wait: Duration::ZERO,
                head: None,
                failure: None,
                streaming: false,
                finished: false,
            })),
            hub,
        }
    }

    /// Changes the draft.
    pub fn update<T>(&self, change: impl FnOnce(&mut Draft) -> T) -> T {
        change(&mut self.draft.borrow_mut())
    }

    /// The chat's draft, if the request is a chat.
    pub fn chat<T>(&self, change: impl FnOnce(&mut ChatDraft) -> T) -> Option<T> {
        self.draft.borrow_mut().chat.as_mut().map(change)
    }

    /// The most bytes of a prompt or an answer a record keeps.
    pub fn max_capture_bytes(&self) -> usize {
        self.hub.max_capture_bytes()
    }

    /// Labels the exchange with the route `pattern` matched (one of the hub's routes).
    pub fn set_route(&self, pattern: Option<&str>) {
        let route = pattern
            .and_then(|pattern| self.hub.routes.iter().find(|(_, route)| *route == pattern))
            .map_or("unmatched", |(_, route)| route);
        self.draft.borrow_mut().route = route;
    }

    /// The response head left with `status`; `failure` says what went wrong, if anything.
    pub fn responded(&self, status: u16, failure: Option<Failure>) {
        let mut draft = self.draft.borrow_mut();
        let after = draft.started.elapsed();
        draft.head = Some((status, after));
        if draft.failure.is_none() {
            draft.failure = failure;
        }
    }

    /// From now on a streaming body owns the end: the middleware will not finish it.
    pub fn streams(&self) -> OpenStream {
        self.draft.borrow_mut().streaming = true;
        self.hub.open_streams.fetch_add(1, Ordering::Relaxed);
        OpenStream(Arc::clone(&self.hub))
    }

    /// Whether a streaming body owns the end.
    pub fn is_streaming(&self) -> bool {
        self.draft.borrow().streaming
    }

    /// Ends the exchange and publishes it, once; later calls do nothing. A failure given here
    /// (a stream cut by the upstream) wins over one seen at the head.
    pub fn finish(&self, ending: Ending, failure: Option<Failure>) {
        let exchange = {
            let mut draft = self.draft.borrow_mut();
            if draft.finished {
                return;
            }
            draft.finished = true;
            if failure.is_some() {
                draft.failure = failure;
            }
            build(&mut draft, ending, self.hub.capture)
        };
        self.hub.publish(exchange);
    }
}

/// Counts a stream as open until dropped, however the stream ends.
#[derive(Debug)]
pub struct OpenStream(Arc<Hub>);

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("subscribers", &self.subscribers.len())
            .finish_non_exhaustive()
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Finishes a request as abandoned if it is dropped before anything else finished it: the
/// client left and the server dropped the request's future or its streaming body.
pub struct AbandonGuard(pub ExchangeHandle);

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        self.0.finish(Ending::Abandoned, None);
    }
}

/// The exchange a draft became.
fn build(draft: &mut Draft, ending: Ending, capture: (CapturePolicy, usize)) -> Exchange {
    let elapsed = draft.started.elapsed();
    let status = match (ending, draft.head) {
        (_, Some((status, _))) => status,
        (Ending::Abandoned, None) => CLIENT_CLOSED,
        (_, None) => 500,
    };
    let chat = draft.chat.take().map(|chat| {
        let first_token_after = chat
            .first_token
            .map(|first| first.saturating_duration_since(draft.started));
        let mut record = chat.record;
        record.ended_at = UnixNanos::now();
        record.first_token_at = first_token_after
            .and_then(|after| draft.started_at.checked_add(after))
            .map(UnixNanos::from);
        record.outcome = match ending {
            Ending::Answered => Outcome::Ok,
            Ending::Failed => Outcome::Error,
            Ending::Abandoned => Outcome::Abandoned,
        };
        record.error = draft.failure.as_ref().map(|failure| RecordError {
            kind: failure.code.to_owned(),
            message: failure.message.clone(),
            status: Some(status),
        });
        if ending == Ending::Abandoned && record.error.is_none() {
            record.error = Some(RecordError {
                kind: "abandoned".into(),
                message: "the client disconnected before the answer ended".into(),
                status: Some(status),
            });
        }
        record.apply(capture.0, capture.1);
        Chat {
            record: Arc::new(record),
            called: chat.called,
            model_known: chat.model_known,
            first_token_after,
            upstream_error: chat.upstream_error,
            quota: chat.quota,
        }
    });
    Exchange {
        request_id: std::mem::take(&mut draft.request_id),
        method: draft.method,
        route: draft.route,
        status,
        ending,
        failure: draft.failure.take(),
        caller: draft.caller.take(),
        task: draft.task,
        started_at: draft.started_at,
        head_after: draft.head.map(|(_, after)| after),
        elapsed,
        upstream_wait: draft.upstream_wait,
        chat,
        ticket: Mutex::new(draft.ticket.take()),
    }
}
