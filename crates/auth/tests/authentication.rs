//! End-to-end authentication through `Gate`, built from settings, against a fake Open WebUI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic is a failed test

mod support;

use bff_auth::{AuthError, AuthMethod, Identity, RequestCredentials, TokenError};
use serde_json::json;
use std::time::Duration;
use support::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

fn request(headers: &[(&str, &str)]) -> RequestCredentials {
    RequestCredentials::from_headers(headers.iter().map(|(n, v)| (*n, v.as_bytes())))
        .with_method("GET")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn session_token_gets_its_role_from_open_webui_never_from_the_token() {
    let server = open_webui().await;
    // The token claims admin; Open WebUI says user. Open WebUI wins.
    let now = now();
    let token = sign(
        WEBUI_SECRET,
        &json!({"id": ALICE, "typ": "session", "role": "admin", "exp": now + 600, "iat": now}),
    );
    stub_session(&server, &token, "user", 1).await;
    let gate = gate(&[("OPENWEBUI_URL", &server.uri())]);
    let identity = gate
        .authenticate(&request(&[("authorization", &bearer(&token))]))
        .await
        .unwrap();
    assert_eq!(
        identity,
        Identity {
            email: Some("alice@example.com".into()),
            name: Some("Alice Admin".into()),
            ..Identity::new(ALICE, Some("user".into()), AuthMethod::Session)
        }
    );
    assert!(gate.authorize(&identity, &CHAT).is_ok());
    assert!(matches!(
        gate.authorize(&identity, &REPORTS_ALL),
        Err(AuthError::Forbidden(_))
    ));
}

#[tokio::test]
async fn lower_case_bearer_cookie_only_and_header_over_cookie() {
    let server = open_webui().await;
    let header_token = session_token(ALICE);
    let cookie_token = session_token("someone-else");
    stub_session(&server, &header_token, "admin", 1).await;
    let gate = gate(&[("OPENWEBUI_URL", &server.uri())]);

    let lower = format!("bearer {header_token}");
    let identity = gate
        .authenticate(&request(&[("authorization", &lower)]))
        .await
        .unwrap();
    assert_eq!(identity.role.as_deref(), Some("admin"));

    // Header and cookie: the header wins (the cookie's token is never sent to Open WebUI).
    let cookie = format!("theme=dark; token={cookie_token}");
    let identity = gate
        .authenticate(&request(&[
            ("authorization", &bearer(&header_token)),
            ("cookie", &cookie),
        ]))
        .await
        .unwrap();
    assert_eq!(identity.user_id, ALICE);
}

#[tokio::test]
async fn cookie_only_session_is_accepted() {
    let server = open_webui().await;
    let token = session_token(ALICE);
    stub_session(&server, &token, "user", 1).await;
    let gate = gate(&[("OPENWEBUI_URL", &server.uri())]);
    let cookie = format!("token={token}");
    let identity = gate
        .authenticate(&request(&[("cookie", &cookie)]))
        .await
        .unwrap();
    assert_eq!(
        (identity.user_id.as_str(), identity.via),
        (ALICE, AuthMethod::Session)
    );
}

#[tokio::test]
async fn the_cookie_alone_does_not_authenticate_unsafe_methods() {
    let server = open_webui().await;
    let token = session_token(ALICE);
    stub_session(&server, &token, "user", 0).await;
    let gate = gate(&[("OPENWEBUI_URL", &server.uri())]);
    let cookie = format!("token={token}");
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let credentials = request(&[("cookie", &cookie)]).with_method(method);
        assert_eq!(
            gate.authenticate(&credentials).await,
            Err(AuthError::CookieNotAccepted),
            "{method}"
        );
    }
}

#[tokio::test]
async fn malformed_api_keys_never_reach_open_webui() {
    let server = open_webui().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let gate = gate(&[("OPENWEBUI_URL", &server.uri())]);
    for n in 0..1000_u32 {
        let key = match n % 4 {
            0 => format!("sk-{n}"),
            1 => format!("sk-{}", "g".repeat(32)),
            2 => format!("sk-{:032x}{n}", n),
            _ => format!("sk-{}", "a".repeat(31)),
        };
        let authorization = bearer(&key);
        assert_eq!(
            gate.authenticate(&request(&[("authorization", &authorization)]))
                .await,
            Err(AuthError::MalformedApiKey),
            "{key}"
        );
    }
    server.verify().await;
}

#[tokio::test]
async fn bad_credentials_are_refused_before_open_webui_is_asked() {
    let server = open_webui().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let gate = gate(&[("OPENWEBUI_URL", &server.uri())]);
    let oversized = format!("{}{}", session_token(ALICE), "A".repeat(9 * 1024));
    let cases: Vec<(Vec<(&str, String)>, AuthError)> = vec![
        (vec![], AuthError::MissingCredentials),
        (
            vec![("authorization", "Bearer ".to_owned())],
            AuthError::MalformedAuthorization("the bearer credential is empty"),
        ),
        (
            vec![("authorization", "Basic dXNlcjpwYXNz".to_owned())],
            AuthError::MalformedAuthorization("only the Bearer scheme is accepted"),
        ),
        (
            vec![("authorization", bearer(&oversized))],
            AuthError::InvalidToken(TokenError::TooLarge),
        ),
        (
            vec![("authorization", bearer("not-a-jwt"))],
            AuthError::InvalidToken(TokenError::Malformed(
                "expected three dot-separated segments",
            )),
        ),
        (
            vec![(
                "authorization",
                bearer(&sign(
                    "wrong-secret-wrong-secret-wrong!!",
                    &json!({"id": ALICE, "exp": now() + 60}),
                )),
            )],
            AuthError::InvalidToken(TokenError::BadSignature),
        ),
    ];
    for (headers, expected) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let error = gate.authenticate(&request(&headers)).await.unwrap_err();
        assert_eq!(error, expected);
        assert_eq!(error.status(), 401);
    }
}

#[tokio::test]
async fn revoked_session_is_401_and_open_webui_down_is_503() {
    let server = open_webui().await;
    let revoked = session_token(ALICE);
    let unlucky = session_token("bob");
    Mock::given(method("GET"))
        .and(path("/api/v1/auths/"))
        .and(wiremock::matchers::header(
            "authorization",
            bearer(&revoked).as_str(),
        ))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"detail": "Invalid token"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/auths/"))
        .and(wiremock::matchers::header(
            "authorization",
            bearer(&unlucky).as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let gate = gate(&[
        ("OPENWEBUI_URL", &server.uri()),
        ("OPENWEBUI_TIMEOUT_MS", "200"),
    ]);
    let error = gate
        .authenticate(&request(&[("authorization", &bearer(&revoked))]))
        .await
        .unwrap_err();
    assert_eq!((error.clone(), error.status()), (AuthError::Rejected, 401));
    let error = gate
        .authenticate(&request(&[("authorization", &bearer(&unlucky))]))
        .await
        .unwrap_err();
    assert_eq!(error.status(), 503, "{error}");
    assert!(error.to_string().contains("Open WebUI"), "{error}");
}

#[tokio::test]
async fn open_webui_naming_another_user_is_a_rejection() {
    let server = open_webui().await;
    let token = session_token("mallory");
    stub_session(&server, &token, "admin", 1).await; // answers with ALICE's row
    let gate = gate(&[("OPENWEBUI_URL", &server.uri())]);
    let error = gate
        .authenticate(&request(&[("authorization", &bearer(&token))]))
        .await
        .unwrap_err();
    assert_eq!(error, AuthError::Rejected);
}

#[tokio::test]
async fn pending_users_authenticate_but_may_do_nothing() {
    let server = open_webui().await;
    let token = session_token(ALICE);
    stub_session(&server, &token, "pending", 1).await;
    let gate = gate(&[("OPENWEBUI_URL", &server.uri())]);
    let identity = gate
        .authenticate(&request(&[("authorization", &bearer(&token))]))
        .await
        .unwrap();
    for permission in &PERMISSIONS {
        let error = gate.authorize(&identity, permission).unwrap_err();
        assert_eq!(error.status(), 403);
    }
}

#[tokio::test]
async fn api_key_is_resolved_by_open_webui() {
    let server = open_webui().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/users/user/status"))
        .respond_with(ResponseTemplate::new(200).set_body_json(status_body(ALICE, "admin")))
        .expect(1)
        .mount(&server)
        .await;
    let gate = gate(&[("OPENWEBUI_URL", &server.uri())]);
    let identity = gate
        .authenticate(&request(&[("authorization", &bearer(API_KEY))]))
        .await
        .unwrap();
    assert_eq!(identity.via, AuthMethod::ApiKey);
    assert_eq!(identity.role.as_deref(), Some("admin"));
    // Cached: a second request makes no call (`.expect(1)`).
    gate.authenticate(&request(&[("authorization", &bearer(API_KEY))]))
        .await
        .unwrap();
}

#[tokio::test]
async fn without_open_webui_sessions_have_no_role_and_api_keys_are_refused() {
    let gate = gate(&[]);
    let identity = gate
        .authenticate(&request(&[(
            "authorization",
            &bearer(&session_token(ALICE)),
        )]))
        .await
        .unwrap();
    assert_eq!(identity.role, None);
    let denied = gate.authorize(&identity, &CHAT).unwrap_err();
    assert_eq!(denied.status(), 403);
    assert!(denied.to_string().contains("OPENWEBUI_URL"), "{denied}");

    let error = gate
        .authenticate(&request(&[("authorization", &bearer(API_KEY))]))
        .await
        .unwrap_err();
    assert_eq!(
        (error.clone(), error.status()),
        (AuthError::ApiKeyNeedsDirectory, 403)
    );
}

#[tokio::test]
async fn spoofed_forwarded_headers_from_an_ordinary_user_change_nothing() {
    let server = open_webui().await;
    let token = session_token(ALICE);
    stub_session(&server, &token, "user", 1).await;
    let gate = gate(&[
        ("OPENWEBUI_URL", &server.uri()),
        ("AUTH_SERVICE_KEYS", &format!("openwebui={SERVICE_KEY}")),
        ("OPENWEBUI_FORWARD_JWT_SECRET", FORWARD_SECRET),
    ]);
    let forged_jwt = forwarded_jwt(FORWARD_SECRET, "admin", "open-webui", 300);
    let identity = gate
        .authenticate(&request(&[
            ("authorization", &bearer(&token)),
            ("x-openwebui-user-role", "admin"),
            ("x-openwebui-user-id", "someone-else"),
            ("x-openwebui-user-jwt", &forged_jwt),
            ("x-openwebui-chat-id", "chat-1<script>\r\n"),
            ("x-openwebui-auth-type", "jwt"),
        ]))
        .await
        .unwrap();
    assert_eq!(identity.user_id, ALICE);
    assert_eq!(identity.role.as_deref(), Some("user"));
    assert_eq!(identity.via, AuthMethod::Session);
    // The chat id only labels the caller's own request (mode 1 keeps chat correlation), sanitised.
    assert_eq!(identity.chat_id.as_deref(), Some("chat-1script"));
    assert_eq!(identity.openwebui_auth_type.as_deref(), Some("jwt"));
}

fn forwarding_gate() -> bff_auth::Gate {
    gate(&[
        ("AUTH_SERVICE_KEYS", &format!("openwebui={SERVICE_KEY}")),
        ("OPENWEBUI_FORWARD_JWT_SECRET", FORWARD_SECRET),
    ])
}

#[tokio::test]
async fn forwarded_jwt_with_service_key_is_trusted_including_its_role() {
    let jwt = forwarded_jwt(FORWARD_SECRET, "admin", "open-webui", 300);
    let identity = forwarding_gate()
        .authenticate(&request(&[
            ("authorization", &bearer(SERVICE_KEY)),
            ("x-openwebui-user-jwt", &jwt),
            (
                "x-openwebui-chat-id",
                "7d3a9e52-0c4b-4f18-b6e2-9a51c3f08d47",
            ),
        ]))
        .await
        .unwrap();
    assert_eq!(identity.user_id, ALICE);
    assert_eq!(identity.role.as_deref(), Some("admin"));
    assert_eq!(identity.via, AuthMethod::ForwardedJwt);
    assert_eq!(
        identity.chat_id.as_deref(),
        Some("7d3a9e52-0c4b-4f18-b6e2-9a51c3f08d47")
    );
}

#[tokio::test]
async fn forwarded_jwt_failures() {
    let gate = forwarding_gate();
    let cases = [
        (
            forwarded_jwt(
                "not-the-forwarding-secret-at-all!",
                "admin",
                "open-webui",
                300,
            ),
            TokenError::BadSignature,
        ),
        (
            forwarded_jwt(FORWARD_SECRET, "admin", "open-webui", -10),
            TokenError::Expired,
        ),
        (
            forwarded_jwt(FORWARD_SECRET, "admin", "evil", 300),
            TokenError::UnexpectedClaimValue {
                claim: "iss",
                expected: "open-webui",
            },
        ),
    ];
    for (jwt, expected) in cases {
        let error = gate
            .authenticate(&request(&[
                ("authorization", &bearer(SERVICE_KEY)),
                ("x-openwebui-user-jwt", &jwt),
            ]))
            .await
            .unwrap_err();
        assert_eq!(error, AuthError::InvalidForwardedToken(expected));
        assert_eq!(error.status(), 401);
    }
}

#[tokio::test]
async fn forwarded_jwt_without_a_service_key_is_ignored() {
    // No service key: the JWT is just an unknown bearer-less header; the caller is anonymous.
    let jwt = forwarded_jwt(FORWARD_SECRET, "admin", "open-webui", 300);
    let error = forwarding_gate()
        .authenticate(&request(&[("x-openwebui-user-jwt", &jwt)]))
        .await
        .unwrap_err();
    assert_eq!(error, AuthError::MissingCredentials);
    // Presented as the bearer itself it is a session token signed with the wrong secret.
    let error = forwarding_gate()
        .authenticate(&request(&[("authorization", &bearer(&jwt))]))
        .await
        .unwrap_err();
    assert_eq!(error, AuthError::InvalidToken(TokenError::BadSignature));
}

#[tokio::test]
async fn forwarded_jwt_without_a_configured_secret_is_refused_not_downgraded() {
    let gate = gate(&[("AUTH_SERVICE_KEYS", &format!("openwebui={SERVICE_KEY}"))]);
    let jwt = forwarded_jwt(FORWARD_SECRET, "admin", "open-webui", 300);
    let error = gate
        .authenticate(&request(&[
            ("authorization", &bearer(SERVICE_KEY)),
            ("x-openwebui-user-jwt", &jwt),
        ]))
        .await
        .unwrap_err();
    assert_eq!(error, AuthError::ForwardedTokenNotConfigured);
}

#[tokio::test]
async fn with_a_signing_secret_unsigned_headers_are_never_honoured() {
    // Settings refuse this combination; an authenticator built by hand must hold too.
    use bff_auth::{
        Authenticator, ForwardedJwtVerifier, Secret, ServiceKeys, SessionTokenVerifier,
    };
    let authenticator = Authenticator::new(
        SessionTokenVerifier::new(&Secret::new(WEBUI_SECRET), 0, false),
        None,
    )
    .with_service_keys(
        ServiceKeys::new([("openwebui".to_owned(), Secret::new(SERVICE_KEY))]),
        "service",
    )
    .with_forwarded_jwt(ForwardedJwtVerifier::new(&Secret::new(FORWARD_SECRET), 0))
    .trusting_forwarded_headers(true);
    let identity = authenticator
        .authenticate(&request(&[
            ("authorization", &bearer(SERVICE_KEY)),
            ("x-openwebui-user-id", ALICE),
            ("x-openwebui-user-role", "admin"),
        ]))
        .await
        .unwrap();
    assert_eq!(identity.via, AuthMethod::Service);
    assert_eq!(identity.role.as_deref(), Some("service"));
}

#[tokio::test]
async fn plain_forwarded_headers_need_a_service_key_and_the_opt_in() {
    let headers = |authorization: &'static str| {
        vec![
            ("authorization", authorization),
            ("x-openwebui-user-id", ALICE),
            ("x-openwebui-user-role", "admin"),
            ("x-openwebui-user-name", "Alice%20Admin"),
            ("x-openwebui-chat-id", "chat-1"),
        ]
    };
    let keys = format!("openwebui={SERVICE_KEY}");

    // Opted in, with the key: the forwarded user is the caller.
    let trusting = gate(&[
        ("AUTH_SERVICE_KEYS", &keys),
        ("AUTH_TRUST_FORWARDED_USER_HEADERS", "true"),
    ]);
    let identity = trusting
        .authenticate(&request(&headers("Bearer sk-bff-connection-key-for-tests")))
        .await
        .unwrap();
    assert_eq!(identity.user_id, ALICE);
    assert_eq!(identity.role.as_deref(), Some("admin"));
    assert_eq!(identity.name.as_deref(), Some("Alice Admin"));
    assert_eq!(identity.via, AuthMethod::ForwardedHeaders);

    // Opted in, with a wrong key: not a service key (nor an API key), so never a forwarded user.
    let error = trusting
        .authenticate(&request(&headers("Bearer sk-bff-connection-key-for-testz")))
        .await
        .unwrap_err();
    assert_eq!(error, AuthError::MalformedApiKey);

    // Not opted in: the key alone makes a service principal; the headers are ignored.
    let identity = gate(&[("AUTH_SERVICE_KEYS", &keys)])
        .authenticate(&request(&headers("Bearer sk-bff-connection-key-for-tests")))
        .await
        .unwrap();
    assert_eq!(identity.user_id, "service:openwebui");
    assert_eq!(identity.role.as_deref(), Some("service"));
    assert_eq!(identity.via, AuthMethod::Service);
    assert_eq!(identity.chat_id.as_deref(), Some("chat-1"));
}

#[tokio::test]
async fn service_keys_are_not_accepted_as_a_cookie() {
    let gate = gate(&[("AUTH_SERVICE_KEYS", &format!("openwebui={SERVICE_KEY}"))]);
    let cookie = format!("token={SERVICE_KEY}");
    let error = gate
        .authenticate(&request(&[("cookie", &cookie)]))
        .await
        .unwrap_err();
    assert_eq!(error, AuthError::MalformedApiKey);
}

#[tokio::test]
async fn error_messages_never_echo_the_credential() {
    let gate = gate(&[]);
    let token = sign(WEBUI_SECRET, &json!({"id": ALICE, "exp": 1}));
    let error = gate
        .authenticate(&request(&[("authorization", &bearer(&token))]))
        .await
        .unwrap_err();
    assert_eq!(error, AuthError::InvalidToken(TokenError::Expired));
    assert!(!error.to_string().contains(&token));
    assert!(!format!("{error:?}").contains(&token));
}

fn names(identity: &Identity) -> Vec<&str> {
    identity.groups.iter().map(|g| g.name.as_str()).collect()
}

#[tokio::test]
async fn a_session_callers_groups_come_from_open_webui_and_a_groups_header_gains_nothing() {
    let server = open_webui().await;
    let token = session_token(ALICE);
    stub_session(&server, &token, "user", 1).await;
    stub_groups(&server, &token, &[("g-1", "research"), ("g-2", "interns")]).await;
    let gate = gate(&[("OPENWEBUI_URL", &server.uri())]);
    let identity = gate
        .authenticate(&request(&[
            ("authorization", &bearer(&token)),
            // The caller's own claims: only a service key's forwarded headers are read.
            ("x-openwebui-user-groups", "admins,finance"),
            ("x-openwebui-user-group-ids", "g-9"),
        ]))
        .await
        .unwrap();
    assert_eq!(names(&identity), ["research", "interns"]);
    assert_eq!(identity.groups[0].id, "g-1");
}

#[tokio::test]
async fn an_api_key_callers_groups_come_from_open_webui_too() {
    let server = open_webui().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/users/user/status"))
        .respond_with(ResponseTemplate::new(200).set_body_json(status_body(ALICE, "user")))
        .mount(&server)
        .await;
    stub_groups(&server, API_KEY, &[("g-1", "research")]).await;
    let identity = gate(&[("OPENWEBUI_URL", &server.uri())])
        .authenticate(&request(&[("authorization", &bearer(API_KEY))]))
        .await
        .unwrap();
    assert_eq!(names(&identity), ["research"]);
}

#[tokio::test]
async fn groups_are_not_asked_for_when_learning_them_is_off() {
    let server = open_webui().await;
    let token = session_token(ALICE);
    stub_session(&server, &token, "user", 1).await;
    Mock::given(path("/api/v1/users/groups"))
        .respond_with(ResponseTemplate::new(500))
        .with_priority(1)
        .expect(0)
        .mount(&server)
        .await;
    let identity = gate(&[
        ("OPENWEBUI_URL", &server.uri()),
        ("AUTH_LEARN_GROUPS", "false"),
    ])
    .authenticate(&request(&[("authorization", &bearer(&token))]))
    .await
    .unwrap();
    assert!(identity.groups.is_empty());
}

#[tokio::test]
async fn a_forwarded_users_groups_come_from_the_service_headers() {
    let jwt = forwarded_jwt(FORWARD_SECRET, "user", "open-webui", 300);
    let identity = forwarding_gate()
        .authenticate(&request(&[
            ("authorization", &bearer(SERVICE_KEY)),
            ("x-openwebui-user-jwt", &jwt),
            ("x-openwebui-user-groups", "research,%C3%A9quipe"),
        ]))
        .await
        .unwrap();
    assert_eq!(identity.via, AuthMethod::ForwardedJwt);
    assert_eq!(names(&identity), ["research", "équipe"]);

    let too_many = (0..300)
        .map(|n| format!("g{n}"))
        .collect::<Vec<_>>()
        .join(",");
    let error = forwarding_gate()
        .authenticate(&request(&[
            ("authorization", &bearer(SERVICE_KEY)),
            ("x-openwebui-user-jwt", &jwt),
            ("x-openwebui-user-groups", &too_many),
        ]))
        .await
        .unwrap_err();
    assert_eq!(error.status(), 400);
    assert!(
        error.to_string().contains("more than 256 groups"),
        "{error}"
    );
}

#[tokio::test]
async fn with_an_admin_key_a_forwarded_users_groups_are_looked_up_and_headers_ignored() {
    const ADMIN_KEY: &str = "sk-aaaabbbbccccddddeeeeffff00001111";
    let server = open_webui().await;
    Mock::given(method("GET"))
        .and(path(format!("/api/v1/users/{ALICE}/groups")))
        .and(wiremock::matchers::query_param("include_inherited", "true"))
        .and(wiremock::matchers::header(
            "authorization",
            bearer(ADMIN_KEY).as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            group_body("g-1", "research", "direct"),
            group_body("g-0", "staff", "inherited"),
        ])))
        .expect(1) // cached for the next request
        .mount(&server)
        .await;
    let gate = gate(&[
        ("OPENWEBUI_URL", &server.uri()),
        ("AUTH_SERVICE_KEYS", &format!("openwebui={SERVICE_KEY}")),
        ("OPENWEBUI_FORWARD_JWT_SECRET", FORWARD_SECRET),
        ("OPENWEBUI_ADMIN_API_KEY", ADMIN_KEY),
    ]);
    let jwt = forwarded_jwt(FORWARD_SECRET, "user", "open-webui", 300);
    for _ in 0..2 {
        let identity = gate
            .authenticate(&request(&[
                ("authorization", &bearer(SERVICE_KEY)),
                ("x-openwebui-user-jwt", &jwt),
                ("x-openwebui-user-groups", "admins"),
            ]))
            .await
            .unwrap();
        assert_eq!(names(&identity), ["research", "staff"]);
    }
}

#[tokio::test]
async fn open_webui_without_a_groups_api_fails_closed_and_says_what_to_set() {
    let server = open_webui().await;
    let token = session_token(ALICE);
    stub_session(&server, &token, "user", 1).await;
    Mock::given(path("/api/v1/users/groups"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"detail": "Not Found"})))
        .with_priority(1)
        .mount(&server)
        .await;
    let error = gate(&[("OPENWEBUI_URL", &server.uri())])
        .authenticate(&request(&[("authorization", &bearer(&token))]))
        .await
        .unwrap_err();
    assert_eq!(error.status(), 503);
    let AuthError::DirectoryUnavailable(reason) = error else {
        panic!("expected unavailability, got {error:?}");
    };
    assert!(reason.contains("AUTH_LEARN_GROUPS=false"), "{reason}");
}
