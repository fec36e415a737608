//! The tower layers: statuses, headers and OpenAI-style bodies, the identity in the extensions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic is a failed test

mod support;

use bff_auth::tower::{AuthLayer, RequireLayer};
use bff_auth::{Gate, Identity};
use http::{Method, Request, Response, StatusCode};
use serde_json::Value;
use std::convert::Infallible;
use support::*;
use tower::{ServiceBuilder, ServiceExt as _};

/// A handler answering with the caller's user id (or `anonymous`).
async fn whoami(request: Request<String>) -> Result<Response<String>, Infallible> {
    let who = request
        .extensions()
        .get::<Identity>()
        .map_or("anonymous".to_owned(), |identity| identity.user_id.clone());
    Ok(Response::new(who))
}

/// `/health` is public; everything else needs a caller holding REPORTS_ALL.
async fn call(gate: &Gate, method: Method, path: &str, bearer: Option<&str>) -> Response<String> {
    let service = ServiceBuilder::new()
        .layer(AuthLayer::new(gate.clone(), ["/health"]))
        .layer(RequireLayer::new(gate.clone(), REPORTS_ALL))
        .service_fn(whoami);
    let public = ServiceBuilder::new()
        .layer(AuthLayer::new(gate.clone(), ["/health"]))
        .service_fn(whoami);
    let mut request = Request::builder().method(method).uri(path);
    if let Some(bearer) = bearer {
        request = request.header("authorization", format!("Bearer {bearer}"));
    }
    let request = request.body(String::new()).unwrap();
    if path == "/health" || request.method() == Method::OPTIONS {
        public.oneshot(request).await.unwrap()
    } else {
        service.oneshot(request).await.unwrap()
    }
}

fn error_of(response: &Response<String>) -> Value {
    assert_eq!(response.headers()["content-type"], "application/json");
    serde_json::from_str(response.body()).unwrap()
}

fn service_gate() -> Gate {
    gate(&[("AUTH_SERVICE_KEYS", &format!("openwebui={SERVICE_KEY}"))])
}

#[tokio::test]
async fn no_credential_is_a_401_with_the_bearer_challenge() {
    let response = call(&service_gate(), Method::POST, "/chat", None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body = error_of(&response);
    assert_eq!(body["error"]["code"], "missing_credentials");
    assert_eq!(body["error"]["type"], "authentication_error");
}

#[tokio::test]
async fn a_caller_without_the_permission_is_a_403_and_with_it_reaches_the_handler() {
    // A bare service key acts with the `service` role: chat and models, not reports:all.
    let response = call(&service_gate(), Method::GET, "/report", Some(SERVICE_KEY)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_of(&response)["error"]["code"], "permission_denied");

    // A session token with no Open WebUI to ask has no role: authenticated, not permitted.
    let token = session_token(ALICE);
    let response = call(&service_gate(), Method::GET, "/report", Some(&token)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // An admin, per the signed forwarded user, is let through with their identity.
    let gate = gate(&[
        ("AUTH_SERVICE_KEYS", &format!("openwebui={SERVICE_KEY}")),
        ("OPENWEBUI_FORWARD_JWT_SECRET", FORWARD_SECRET),
    ]);
    let service = ServiceBuilder::new()
        .layer(AuthLayer::new(gate.clone(), []))
        .layer(RequireLayer::new(gate, REPORTS_ALL))
        .service_fn(whoami);
    let request = Request::builder()
        .uri("/report")
        .header("authorization", format!("Bearer {SERVICE_KEY}"))
        .header(
            "x-openwebui-user-jwt",
            forwarded_jwt(FORWARD_SECRET, "admin", "open-webui", 300),
        )
        .body(String::new())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), ALICE);
}

#[tokio::test]
async fn public_paths_and_preflight_pass_without_a_credential() {
    for (method, path) in [(Method::GET, "/health"), (Method::OPTIONS, "/chat")] {
        let response = call(&service_gate(), method, path, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), "anonymous");
    }
}

#[tokio::test]
async fn require_without_auth_in_front_refuses_rather_than_lets_through() {
    let gate = service_gate();
    let service = ServiceBuilder::new()
        .layer(RequireLayer::new(gate, CHAT))
        .service_fn(whoami);
    let request = Request::builder().uri("/chat").body(String::new()).unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
