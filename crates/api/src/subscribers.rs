//! The subscribers that are not reports or metrics: telemetry, quota settlement, the log line.

use crate::exchange::{Ending, Exchange, Subscriber};
use bff_telemetry::Pipeline;
use std::sync::Arc;

/// Hands each chat that reached LiteLLM to the telemetry sinks (Langfuse, Helicone).
pub struct Telemetry(pub Arc<Pipeline>);

impl Subscriber for Telemetry {
    fn finished(&self, exchange: &Arc<Exchange>) {
        if let Some(chat) = exchange.chat.as_ref().filter(|chat| chat.called) {
            self.0.record_shared(Arc::clone(&chat.record));
        }
    }
}

/// Settles an admitted chat's quota ticket with what it used (and frees its slot).
pub struct QuotaSettlement;

impl Subscriber for QuotaSettlement {
    fn finished(&self, exchange: &Arc<Exchange>) {
        if let Some(ticket) = exchange.take_ticket() {
            ticket.settle(exchange.spend());
        }
    }
}

/// The one log line per request, at its end: who did what, how it ended, how long it took.
pub struct LogLine;

/// The caller's group names, comma-separated, written straight into the log line.
struct GroupNames<'a>(Option<&'a bff_auth::Identity>);

impl std::fmt::Display for GroupNames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let groups = self
            .0
            .map(|caller| caller.groups.as_slice())
            .unwrap_or_default();
        for (n, group) in groups.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            f.write_str(&group.name)?;
        }
        Ok(())
    }
}

impl Subscriber for LogLine {
    fn finished(&self, exchange: &Arc<Exchange>) {
        let caller = exchange.caller.as_ref();
        let chat = exchange.chat.as_ref();
        let record = chat.map(|chat| &chat.record);
        let millis =
            |duration: std::time::Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    request_id = %exchange.request_id,
                    trace_id = record.map(|record| record.trace_id.as_str()),
                    method = exchange.method,
                    route = exchange.route,
                    status = exchange.status,
                    outcome = exchange.ending.as_str(),
                    error_code = exchange.failure.as_ref().map(|failure| failure.code),
                    user_id = caller.map(|caller| caller.user_id.as_str()),
                    role = caller.and_then(|caller| caller.role.as_deref()),
                    groups = %GroupNames(caller),
                    auth = caller.map(|caller| caller.via.as_str()),
                    openwebui_auth = caller.and_then(|caller| caller.openwebui_auth_type.as_deref()),
                    session_id = caller.and_then(|caller| caller.chat_id.as_deref()),
                    task = exchange.task,
                    client_request_id = record.and_then(|record| record.client_request_id.as_deref()),
                    model = record.map(|record| record.model_requested.as_str()),
                    stream = record.map(|record| record.stream),
                    duration_ms = millis(exchange.elapsed),
                    upstream_ms = millis(exchange.upstream_wait),
                    "request finished"
                )
            };
        }
        match exchange.ending {
            Ending::Abandoned => line!(warn),
            _ if exchange.status >= 500 => line!(warn),
            _ => line!(info),
        }
    }
}
