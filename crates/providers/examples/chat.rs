//! One chat completion, then the same question streamed, through a LiteLLM proxy: the one at
//! `LITELLM_URL` (with `LITELLM_API_KEY`), or, without it, a local stand-in answering with
//! LiteLLM 1.108.7's recorded responses, so the example runs offline.
//!
//! `cargo run -p bff-providers --example chat`
#![allow(clippy::print_stdout)] // an example's output

use bff_providers::{
    ApiKey, ChatMessage, ChatRequest, LiteLlm, LiteLlmClient, LiteLlmConfig, RequestContext,
    TraceId,
};
use futures_util::StreamExt as _;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, key, _stand_in) = match std::env::var("LITELLM_URL") {
        Ok(url) => (
            url,
            std::env::var("LITELLM_API_KEY").unwrap_or_default(),
            None,
        ),
        Err(_) => {
            let stand_in = recorded_litellm().await;
            (stand_in.uri(), "sk-example".to_owned(), Some(stand_in))
        }
    };
    let client = LiteLlmClient::new(LiteLlmConfig::new(url.parse()?, ApiKey::new(key)))?;
    let question = || ChatRequest::new("mock-gpt", vec![ChatMessage::new("user", "Hello")]);

    let context = RequestContext::new("example-1", TraceId::random());
    let answer = client.chat(&context, question()).await?;
    println!(
        "answer: {:?}, usage: {:?}, cost: {:?} USD",
        answer.response.output_text(),
        answer.response.usage,
        answer.meta.cost_usd
    );

    let context = RequestContext::new("example-2", TraceId::random());
    let mut request = question();
    request.stream = Some(true);
    let mut stream = client.chat_stream(&context, request).await?;
    let mut chunks = 0;
    while let Some(chunk) = stream.next().await {
        chunk?;
        chunks += 1;
    }
    let summary = stream.summary();
    println!(
        "streamed: {chunks} events, text {:?}, usage {:?}",
        summary.output_text, summary.usage
    );
    Ok(())
}

/// A LiteLLM stand-in answering with the recorded chat and stream of LiteLLM 1.108.7.
async fn recorded_litellm() -> MockServer {
    let server = MockServer::start().await;
    for (fixture, streamed) in [("mock.txt", false), ("mock_stream.txt", true)] {
        let recorded = std::fs::read_to_string(format!(
            "{}/tests/fixtures/litellm-1.108.7/{fixture}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap_or_default();
        // mock.txt is a whole response (status line, headers, body); mock_stream.txt a body.
        let body = match recorded.strip_prefix("HTTP/") {
            Some(response) => response
                .split_once("\r\n\r\n")
                .or_else(|| response.split_once("\n\n"))
                .map_or("", |(_, body)| body),
            None => recorded.as_str(),
        }
        .to_owned();
        let content_type = if streamed {
            "text/event-stream"
        } else {
            "application/json"
        };
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(wiremock::matchers::body_partial_json(
                serde_json::json!({"stream": streamed}),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_raw(body, content_type))
            .mount(&server)
            .await;
    }
    server
}
