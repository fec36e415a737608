//! A batch job with no web framework: each prompt of a list goes through LiteLLM, one at a time,
//! and each call is recorded to every telemetry sink. With a spool, a record a sink cannot take
//! now waits on disk and is delivered by a later run: the job's numbers are never lost.

use crate::record_outcome;
use bff_providers::{ChatMessage, ChatRequest, LiteLlm, RequestContext, TraceId};
use bff_telemetry::{LlmRecord, Pipeline, UnixNanos};

/// How a run went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Prompts answered.
    pub answered: usize,
    /// Prompts that failed (recorded too, with their error).
    pub failed: usize,
}

/// Runs every prompt through `model`, recording each call to `telemetry` as `job`.
pub async fn run(
    litellm: &dyn LiteLlm,
    telemetry: &Pipeline,
    (job, model): (&str, &str),
    prompts: &[String],
) -> Summary {
    let mut summary = Summary::default();
    for (n, prompt) in prompts.iter().enumerate() {
        let request_id = uuid::Uuid::now_v7().to_string();
        let trace = TraceId::random();
        let mut record = LlmRecord::new(trace.as_str(), &request_id, "batch", model);
        record.user_id = Some(job.to_owned());
        record.tags = vec![format!("job:{job}"), format!("prompt:{n}")];
        record.input = Some(serde_json::json!([{"role": "user", "content": prompt}]));
        record.started_at = UnixNanos::now();
        let request = ChatRequest::new(model, vec![ChatMessage::new("user", prompt.as_str())]);
        let result = litellm
            .chat(&RequestContext::new(request_id, trace), request)
            .await;
        record_outcome(&mut record, &result);
        telemetry.record(record);
        match result {
            Ok(_) => summary.answered += 1,
            Err(_) => summary.failed += 1,
        }
    }
    summary
}
