//! Error mapping of every provider failure, with the mockall LiteLLM (no network).

use crate::helpers::*;
use bff_providers::{ErrorKind, MockLiteLlm, ProviderError};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

async fn app_failing_with(kind: ErrorKind) -> TestApp {
    let mut litellm = MockLiteLlm::new();
    let chat_kind = kind.clone();
    litellm
        .expect_chat()
        .returning(move |_, _| Err(ProviderError::new(chat_kind.clone(), 1)));
    litellm
        .expect_models()
        .returning(move |_| Err(ProviderError::new(kind.clone(), 1)));
    spawn_with(Options {
        litellm: Some(Arc::new(litellm)),
        no_telemetry: true,
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn each_provider_failure_maps_to_its_documented_status_and_code() {
    let message = || "upstream said no".to_owned();
    let cases = [
        (
            ErrorKind::BadRequest {
                status: 400,
                message: message(),
            },
            400,
            "upstream_bad_request",
        ),
        (
            ErrorKind::UnknownModel {
                status: 400,
                message: message(),
            },
            404,
            "model_not_found",
        ),
        (
            ErrorKind::RateLimited {
                message: message(),
                retry_after: Some(Duration::from_secs(3)),
            },
            429,
            "rate_limited",
        ),
        (
            ErrorKind::UpstreamTimeout {
                status: 408,
                message: message(),
            },
            504,
            "upstream_timeout",
        ),
        (
            ErrorKind::DeadlineExceeded {
                limit: "whole call",
            },
            504,
            "upstream_timeout",
        ),
        (
            ErrorKind::UpstreamFailure {
                status: 500,
                message: message(),
            },
            502,
            "upstream_failure",
        ),
        (
            ErrorKind::Unavailable { reason: message() },
            503,
            "upstream_unavailable",
        ),
        (
            ErrorKind::AuthRejected {
                status: 401,
                message: message(),
            },
            502,
            "upstream_auth_rejected",
        ),
        (ErrorKind::Protocol { reason: message() }, 502, "protocol"),
    ];
    for (kind, status, code) in cases {
        let app = app_failing_with(kind.clone()).await;
        let token = app.user("alice", "user").await;
        for route in ["/v1/chat/completions", "/chat/completions"] {
            let response = app
                .post_json(route, &token, &chat_body("fake-gpt", false))
                .await;
            assert_eq!(response.status().as_u16(), status, "{kind:?} on {route}");
            if status == 429 {
                assert_eq!(response.headers()["retry-after"], "3");
            }
            let request_id = response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned();
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], code, "{kind:?}");
            assert_eq!(body["error"]["request_id"], request_id);
            let text = body.to_string();
            assert!(
                !text.contains("ProviderError") && !text.contains("kind:"),
                "no Rust debug strings: {text}"
            );
        }
        let response = app.get("/v1/models", Some(&token)).await;
        assert_eq!(response.status().as_u16(), status, "models: {kind:?}");
    }
}

#[tokio::test]
async fn success_through_the_mock_returns_litellm_bytes() {
    let mut litellm = MockLiteLlm::new();
    litellm
        .expect_chat()
        .times(1)
        .returning(|context, request| {
            assert_eq!(context.user_id.as_deref(), Some("alice"));
            assert_eq!(request.model, "fake-gpt");
            Ok(bff_providers::ChatCompletion {
                response: serde_json::from_str(CHAT_BODY).unwrap(),
                raw: bytes::Bytes::from_static(CHAT_BODY.as_bytes()),
                meta: bff_providers::ResponseMeta {
                    status: 200,
                    attempts: 1,
                    call_id: Some(context.request_id.clone()),
                    cost_usd: Some(2.3e-05),
                    model_group: Some("fake-gpt".into()),
                    model_id: None,
                    time_to_headers: Duration::from_millis(5),
                },
            })
        });
    let app = spawn_with(Options {
        litellm: Some(Arc::new(litellm)),
        no_telemetry: true,
        ..Options::default()
    })
    .await;
    let token = app.user("alice", "user").await;
    let response = app
        .post_json("/chat/completions", &token, &chat_body("fake-gpt", false))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), CHAT_BODY);
}

#[tokio::test]
async fn a_record_keeps_the_status_the_client_got_and_the_upstreams_apart() {
    let app = spawn_app().await;
    app.telemetry_up().await;
    // LiteLLM 1.108.7's answer to a model it does not know (recorded): 400.
    app.litellm_error(
        400,
        "invalid_request_error",
        "/chat/completions: Invalid model name passed in model=no-such-model. Call `/v1/models` to view available models for your key.",
    )
    .await;
    let token = app.user("alice", "user").await;
    let response = app
        .post_json(
            "/v1/chat/completions",
            &token,
            &chat_body("no-such-model", false),
        )
        .await;
    assert_eq!(response.status(), 404);
    let log = &received(&app.helicone, "/custom/v1/log", 1).await[0];
    let log: Value = serde_json::from_slice(&log.body).unwrap();
    assert_eq!(
        log["providerResponse"]["status"], 404,
        "what the client got"
    );
    let spans = app.langfuse_spans().await;
    let generation = &spans["bff-chat"];
    assert_eq!(
        generation["langfuse.observation.metadata.upstream_status"],
        "400"
    );
    assert!(generation["langfuse.observation.status_message"].starts_with("model_not_found"));
}
