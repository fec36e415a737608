//! The actix extractor and permission middleware: statuses, headers and OpenAI-style bodies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic is a failed test
#![cfg(feature = "actix")]

mod support;

use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, test, web};
use bff_auth::{Gate, Identity};
use serde_json::{Value, json};
use std::time::Duration;
use support::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

async fn whoami(identity: Identity) -> HttpResponse {
    HttpResponse::Ok().json(json!({"user_id": identity.user_id, "role": identity.role}))
}

/// Every path but `/public` is authenticated once; `/chat` needs chat, `/admin` needs
/// reports:all inside a scope that needs models, `/open` needs no permission, and
/// `/public` is not authenticated (its extractor finds no identity).
fn app(
    gate: Gate,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .wrap(gate.authenticate_requests(["/public"]))
        .service(
            web::resource("/chat")
                .wrap(gate.require(CHAT))
                .route(web::post().to(whoami)),
        )
        .service(
            web::scope("/api").wrap(gate.require(MODELS)).service(
                web::resource("/admin")
                    .wrap(gate.require(REPORTS_ALL))
                    .route(web::get().to(whoami)),
            ),
        )
        .route("/open", web::get().to(whoami))
        .route("/public", web::get().to(whoami))
        .route("/public", web::post().to(whoami))
}

async fn body_json(
    response: actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
) -> Value {
    let bytes = test::read_body(response).await;
    serde_json::from_slice(&bytes).unwrap()
}

#[actix_web::test]
async fn missing_credentials_is_401_with_www_authenticate_and_an_openai_body() {
    let service = test::init_service(app(gate(&[]))).await;
    let response = test::call_service(
        &service,
        test::TestRequest::post().uri("/chat").to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers().get("www-authenticate").unwrap(),
        "Bearer"
    );
    let body = body_json(response).await;
    assert_eq!(body["error"]["type"], "authentication_error");
    assert_eq!(body["error"]["code"], "missing_credentials");
    assert_eq!(body["error"]["param"], Value::Null);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Bearer")
    );
}

#[actix_web::test]
async fn invalid_token_is_401_and_the_body_does_not_echo_it() {
    let service = test::init_service(app(gate(&[]))).await;
    let token = sign(
        "some-other-secret-some-other-secret",
        &json!({"id": ALICE, "exp": now() + 60}),
    );
    let response = test::call_service(
        &service,
        test::TestRequest::post()
            .uri("/chat")
            .insert_header(("authorization", format!("Bearer {token}")))
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let text = String::from_utf8(test::read_body(response).await.to_vec()).unwrap();
    assert!(!text.contains(&token));
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "token_signature");
}

#[actix_web::test]
async fn permitted_caller_reaches_the_handler_and_a_forbidden_one_gets_403() {
    let server = open_webui().await;
    let token = session_token(ALICE);
    // One directory call for the whole test: the middleware stores the identity and the
    // cache answers later requests.
    stub_session(&server, &token, "user", 1).await;
    let service = test::init_service(app(gate(&[("OPENWEBUI_URL", &server.uri())]))).await;
    let authorized = |request: test::TestRequest| {
        request
            .insert_header(("authorization", format!("Bearer {token}")))
            .to_request()
    };

    let response =
        test::call_service(&service, authorized(test::TestRequest::post().uri("/chat"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        body_json(response).await,
        json!({"user_id": ALICE, "role": "user"})
    );

    let response = test::call_service(
        &service,
        authorized(test::TestRequest::get().uri("/api/admin")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("www-authenticate").is_none());
    let body = body_json(response).await;
    assert_eq!(body["error"]["type"], "permission_error");
    assert_eq!(body["error"]["code"], "permission_denied");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("reports:all")
    );

    let response =
        test::call_service(&service, authorized(test::TestRequest::get().uri("/open"))).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[actix_web::test]
async fn nested_requirements_authenticate_once() {
    let server = open_webui().await;
    let token = session_token(ALICE);
    stub_session(&server, &token, "admin", 1).await;
    // TTL 0: nothing is cached, so a second authentication would be a second call.
    let gate = gate(&[
        ("OPENWEBUI_URL", &server.uri()),
        ("AUTH_CACHE_TTL_SECONDS", "0"),
    ]);
    let service = test::init_service(app(gate)).await;
    let response = test::call_service(
        &service,
        test::TestRequest::get()
            .uri("/api/admin")
            .insert_header(("authorization", format!("Bearer {token}")))
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[actix_web::test]
async fn unreachable_directory_is_503() {
    let server = open_webui().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/auths/"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let gate = gate(&[
        ("OPENWEBUI_URL", &server.uri()),
        ("OPENWEBUI_TIMEOUT_MS", "100"),
    ]);
    let service = test::init_service(app(gate)).await;
    let response = test::call_service(
        &service,
        test::TestRequest::post()
            .uri("/chat")
            .insert_header(("authorization", format!("Bearer {}", session_token(ALICE))))
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = body_json(response).await;
    assert_eq!(body["error"]["type"], "service_unavailable_error");
    assert_eq!(body["error"]["code"], "directory_unavailable");
}

#[actix_web::test]
async fn a_public_path_is_not_authenticated_and_its_extractor_finds_no_one() {
    let service = test::init_service(app(gate(&[]))).await;
    let response = test::call_service(
        &service,
        test::TestRequest::get().uri("/public").to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body = body_json(response).await;
    assert_eq!(body["error"]["code"], "missing_credentials");
}

#[actix_web::test]
async fn the_cookie_authenticates_gets_but_not_posts_from_another_site() {
    let server = open_webui().await;
    let token = session_token(ALICE);
    stub_session(&server, &token, "user", 1).await;
    let service = test::init_service(app(gate(&[("OPENWEBUI_URL", &server.uri())]))).await;
    let cookie = format!("token={token}");
    let response = test::call_service(
        &service,
        test::TestRequest::get()
            .uri("/open")
            .insert_header(("cookie", cookie.as_str()))
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    // What a cross-site form post carries: the cookie, a form content type, any Origin.
    for origin in [None, Some("http://localhost:3000"), Some("null")] {
        let mut request = test::TestRequest::post()
            .uri("/chat")
            .insert_header(("cookie", cookie.as_str()))
            .insert_header(("content-type", "text/plain"))
            .set_payload(r#"{"model":"m","messages":[]}"#);
        if let Some(origin) = origin {
            request = request.insert_header(("origin", origin));
        }
        let response = test::call_service(&service, request.to_request()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{origin:?}");
        let body = body_json(response).await;
        assert_eq!(body["error"]["code"], "cookie_not_accepted");
    }
}
