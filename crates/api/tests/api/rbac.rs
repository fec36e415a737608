//! The RBAC matrix over the real routes: each default role × each route → documented status.

use crate::helpers::*;
use serde_json::json;
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, ResponseTemplate};

#[tokio::test]
async fn every_default_role_on_every_route() {
    let app = spawn_app().await;
    app.litellm_ready().await;
    app.telemetry_up().await;
    Mock::given(path("/health"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": true})))
        .mount(&app.openwebui)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"stream": true})))
        .respond_with(ResponseTemplate::new(200).set_body_raw(STREAM_BODY, "text/event-stream"))
        .mount(&app.litellm)
        .await;
    app.litellm_chat().await;
    Mock::given(path("/v1/models"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": []})),
        )
        .mount(&app.litellm)
        .await;
    Mock::given(path("/api/public/v2/observations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [], "meta": {}})))
        .mount(&app.langfuse)
        .await;
    Mock::given(path("/api/public/v2/metrics"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})))
        .mount(&app.langfuse)
        .await;

    let admin = app.user("alice", "admin").await;
    let user = app.user("bob", "user").await;
    let pending = app.user("carol", "pending").await;
    let callers: [(&str, Option<&str>); 5] = [
        ("anonymous", None),
        ("pending", Some(&pending)),
        ("user", Some(&user)),
        ("admin", Some(&admin)),
        ("service", Some(SERVICE_KEY)),
    ];
    // route, method, expected status for: anonymous, pending, user, admin, service
    let matrix: [(&str, &str, [u16; 5]); 11] = [
        ("/health", "GET", [200, 200, 200, 200, 200]),
        ("/monitoring", "GET", [200, 200, 200, 200, 200]),
        ("/ready", "GET", [200, 200, 200, 200, 200]),
        ("/metrics", "GET", [200, 200, 200, 200, 200]),
        ("/chat/completions", "POST", [401, 403, 200, 200, 200]),
        ("/chat/stream", "POST", [401, 403, 200, 200, 200]),
        ("/v1/chat/completions", "POST", [401, 403, 200, 200, 200]),
        ("/v1/models", "GET", [401, 403, 200, 200, 200]),
        ("/observability/health", "GET", [401, 403, 200, 200, 403]),
        ("/observability/traces", "GET", [401, 403, 200, 200, 403]),
        ("/observability/usage", "GET", [401, 403, 200, 200, 403]),
    ];
    let mut failures = Vec::new();
    for (route, verb, expected) in matrix {
        for ((who, credential), status) in callers.iter().zip(expected) {
            let mut request = if verb == "POST" {
                app.client
                    .post(app.url(route))
                    .json(&chat_body("fake-gpt", false))
            } else {
                app.client.get(app.url(route))
            };
            if let Some(credential) = credential {
                request = request.bearer_auth(credential);
            }
            let response = request.send().await.unwrap();
            let actual = response.status().as_u16();
            if actual != status {
                failures.push(format!(
                    "{who} {verb} {route}: expected {status}, got {actual}"
                ));
            }
            if actual == 401 {
                assert_eq!(response.headers()["www-authenticate"], "Bearer");
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn a_spoofed_role_header_from_an_ordinary_user_changes_nothing() {
    let app = spawn_app().await;
    Mock::given(path("/api/public/v2/observations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [], "meta": {}})))
        .mount(&app.langfuse)
        .await;
    let user = app.user("bob", "user").await;
    let response = app
        .client
        .get(app.url("/observability/traces?user_id=alice"))
        .bearer_auth(&user)
        .header("x-openwebui-user-role", "admin")
        .header("x-openwebui-user-id", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // bob may read traces, but only his own: Langfuse is asked for bob, not alice.
    let asked = received(&app.langfuse, "/api/public/v2/observations", 1).await;
    let user_id = asked[0]
        .url
        .query_pairs()
        .find(|(key, _)| key == "userId")
        .unwrap()
        .1
        .into_owned();
    assert_eq!(user_id, "bob");
}
