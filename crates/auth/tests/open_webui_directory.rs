//! The Open WebUI directory against a wiremock Open WebUI speaking the recorded contract.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic is a failed test

mod support;

use bff_auth::{
    CachedDirectory, DirectoryCredential, DirectoryError, DirectoryUser, OpenWebUiDirectory,
    Secret, UserDirectory,
};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use url::Url;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn directory(server: &MockServer, timeout: Duration) -> OpenWebUiDirectory {
    OpenWebUiDirectory::new(&Url::parse(&server.uri()).unwrap(), timeout).unwrap()
}

fn session(token: &str) -> DirectoryCredential {
    DirectoryCredential::SessionToken(Secret::new(token))
}

#[tokio::test]
async fn resolves_user_admin_and_pending_roles_from_the_whoami_body() {
    for role in ["user", "admin", "pending"] {
        let server = MockServer::start().await;
        let token = session_token(ALICE);
        stub_session(&server, &token, role, 1).await;
        let user = directory(&server, Duration::from_secs(2))
            .lookup(&session(&token))
            .await
            .unwrap();
        assert_eq!(
            user,
            DirectoryUser {
                id: ALICE.into(),
                role: role.into(),
                email: Some("alice@example.com".into()),
                name: Some("Alice Admin".into()),
                groups: vec![],
            }
        );
    }
}

#[tokio::test]
async fn api_keys_are_resolved_through_the_user_status_endpoint() {
    let server = MockServer::start().await;
    // Open WebUI answers API keys with 403 on /api/v1/auths/: bff must not ask there.
    Mock::given(method("GET"))
        .and(path("/api/v1/auths/"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(json!({"detail": "A human session is required."})),
        )
        .expect(0)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/users/user/status"))
        .and(header(
            "authorization",
            format!("Bearer {API_KEY}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(status_body(ALICE, "user")))
        .expect(1)
        .mount(&server)
        .await;
    let user = directory(&server, Duration::from_secs(2))
        .lookup(&DirectoryCredential::ApiKey(Secret::new(API_KEY)))
        .await
        .unwrap();
    assert_eq!((user.id.as_str(), user.role.as_str()), (ALICE, "user"));
}

#[tokio::test]
async fn revoked_session_and_pending_api_key_are_rejections() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/auths/"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"detail": "Invalid token"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/users/user/status"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"detail": "You do not have permission to access this resource."}),
        ))
        .mount(&server)
        .await;
    let directory = directory(&server, Duration::from_secs(2));
    assert_eq!(
        directory.lookup(&session(&session_token(ALICE))).await,
        Err(DirectoryError::Rejected { status: 401 })
    );
    assert_eq!(
        directory
            .lookup(&DirectoryCredential::ApiKey(Secret::new(API_KEY)))
            .await,
        Err(DirectoryError::Rejected { status: 401 })
    );
}

#[tokio::test]
async fn server_errors_and_unreadable_bodies_are_unavailability() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/auths/"))
        .respond_with(ResponseTemplate::new(500).set_body_string("Internal Server Error"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/auths/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": ALICE})))
        .mount(&server)
        .await;
    let directory = directory(&server, Duration::from_secs(2));
    let token = session_token(ALICE);
    assert!(matches!(
        directory.lookup(&session(&token)).await,
        Err(DirectoryError::Unavailable(reason)) if reason.contains("500")
    ));
    assert!(matches!(
        directory.lookup(&session(&token)).await,
        Err(DirectoryError::Unavailable(reason)) if reason.contains("`role`")
    ));
}

#[tokio::test]
async fn a_slow_open_webui_times_out_as_unavailable() {
    let server = MockServer::start().await;
    let token = session_token(ALICE);
    Mock::given(method("GET"))
        .and(path("/api/v1/auths/"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(auths_body(ALICE, "user", &token))
                .set_delay(Duration::from_secs(5)),
        )
        .mount(&server)
        .await;
    let result = directory(&server, Duration::from_millis(200))
        .lookup(&session(&token))
        .await;
    assert_eq!(
        result,
        Err(DirectoryError::Unavailable(
            "no answer within 200 ms".into()
        ))
    );
}

#[tokio::test]
async fn unreachable_open_webui_is_unavailable_and_says_nothing_secret() {
    let url = Url::parse("http://127.0.0.1:9").unwrap();
    let directory = OpenWebUiDirectory::new(&url, Duration::from_secs(1)).unwrap();
    let token = session_token(ALICE);
    let error = directory.lookup(&session(&token)).await.unwrap_err();
    assert!(matches!(error, DirectoryError::Unavailable(_)));
    assert!(!error.to_string().contains(&token));
}

#[tokio::test]
async fn concurrent_misses_for_one_credential_make_one_call() {
    let server = MockServer::start().await;
    let token = session_token(ALICE);
    Mock::given(method("GET"))
        .and(path("/api/v1/auths/"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(auths_body(ALICE, "user", &token))
                .set_delay(Duration::from_millis(300)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let cache = Arc::new(CachedDirectory::new(
        directory(&server, Duration::from_secs(2)),
        Duration::from_secs(60),
        100,
    ));
    let lookups: Vec<_> = (0..16)
        .map(|_| {
            let cache = Arc::clone(&cache);
            let token = token.clone();
            tokio::spawn(async move { cache.lookup(&session(&token)).await })
        })
        .collect();
    for lookup in lookups {
        assert_eq!(lookup.await.unwrap().unwrap().role, "user");
    }
    // `.expect(1)` is verified when `server` drops.
}

#[tokio::test]
async fn a_revocation_after_the_cached_answer_expires_is_seen() {
    let server = MockServer::start().await;
    let token = session_token(ALICE);
    Mock::given(method("GET"))
        .and(path("/api/v1/auths/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(auths_body(ALICE, "user", &token)))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/auths/"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"detail": "Invalid token"})))
        .expect(1)
        .mount(&server)
        .await;
    let cache = CachedDirectory::new(
        directory(&server, Duration::from_secs(2)),
        Duration::from_millis(150),
        100,
    );
    assert!(cache.lookup(&session(&token)).await.is_ok());
    assert!(cache.lookup(&session(&token)).await.is_ok()); // cached: no second call
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        cache.lookup(&session(&token)).await,
        Err(DirectoryError::Rejected { status: 401 })
    );
}

const ADMIN_KEY: &str = "sk-aaaabbbbccccddddeeeeffff00001111";

#[tokio::test]
async fn groups_are_asked_with_the_callers_own_credential_inherited_ones_included() {
    let server = MockServer::start().await;
    let token = session_token(ALICE);
    stub_session(&server, &token, "user", 1).await;
    Mock::given(method("GET"))
        .and(path("/api/v1/users/groups"))
        .and(wiremock::matchers::query_param("include_inherited", "true"))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            group_body("g-1", " research ", "direct"),
            group_body("g-0", "staff", "inherited"),
            group_body("g-1", " research ", "direct"),
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let user = directory(&server, Duration::from_secs(2))
        .with_groups(true)
        .unwrap()
        .lookup(&session(&token))
        .await
        .unwrap();
    let groups: Vec<(&str, &str)> = user
        .groups
        .iter()
        .map(|g| (g.id.as_str(), g.name.as_str()))
        .collect();
    // Trimmed as Open WebUI trims them in its headers, and listed once.
    assert_eq!(groups, [("g-1", "research"), ("g-0", "staff")]);
}

#[tokio::test]
async fn a_group_list_past_the_bounds_is_unavailability_not_a_cut() {
    let server = MockServer::start().await;
    let token = session_token(ALICE);
    stub_session(&server, &token, "user", 2).await;
    let many: Vec<_> = (0..300)
        .map(|n| group_body(&format!("g-{n}"), &format!("team {n}"), "direct"))
        .collect();
    Mock::given(path("/api/v1/users/groups"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!(many)))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let long_name = "x".repeat(300);
    Mock::given(path("/api/v1/users/groups"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([group_body("g", &long_name, "direct")])),
        )
        .mount(&server)
        .await;
    let directory = directory(&server, Duration::from_secs(2))
        .with_groups(true)
        .unwrap();
    for expected in ["300 groups", "longer than 256 bytes"] {
        let Err(DirectoryError::Unavailable(reason)) = directory.lookup(&session(&token)).await
        else {
            panic!("expected unavailability");
        };
        assert!(reason.contains(expected), "{reason}");
    }
}

#[tokio::test]
async fn another_users_groups_need_the_admin_key_and_their_id_stays_one_path_segment() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/users/%2E%2E%2Fauths%2F/groups"))
        .and(header(
            "authorization",
            format!("Bearer {ADMIN_KEY}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    let plain = directory(&server, Duration::from_secs(2));
    let Err(DirectoryError::Unavailable(reason)) = plain.groups_of(ALICE).await else {
        panic!("expected unavailability without an admin key");
    };
    assert!(reason.contains("OPENWEBUI_ADMIN_API_KEY"), "{reason}");

    let admin = plain.with_admin_key(Secret::new(ADMIN_KEY));
    assert_eq!(admin.groups_of("../auths/").await, Ok(vec![]));
}

#[tokio::test]
async fn an_admin_key_open_webui_refuses_is_the_operators_problem_not_a_rejection() {
    let server = MockServer::start().await;
    Mock::given(path(format!("/api/v1/users/{ALICE}/groups")))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"detail": "Not authenticated"})),
        )
        .mount(&server)
        .await;
    let admin = directory(&server, Duration::from_secs(2)).with_admin_key(Secret::new(ADMIN_KEY));
    let Err(DirectoryError::Unavailable(reason)) = admin.groups_of(ALICE).await else {
        panic!("expected unavailability");
    };
    assert!(
        reason.contains("refused OPENWEBUI_ADMIN_API_KEY"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_pending_account_refused_its_groups_is_still_pending_not_rejected() {
    for (role, expected) in [
        ("pending", Ok(vec![])),
        ("user", Err(DirectoryError::Rejected { status: 401 })),
    ] {
        let server = MockServer::start().await;
        let token = session_token(ALICE);
        stub_session(&server, &token, role, 1).await;
        Mock::given(path("/api/v1/users/groups"))
            .respond_with(ResponseTemplate::new(401).set_body_json(
                json!({"detail": "You do not have permission to access this resource."}),
            ))
            .mount(&server)
            .await;
        let found = directory(&server, Duration::from_secs(2))
            .with_groups(true)
            .unwrap()
            .lookup(&session(&token))
            .await
            .map(|user| user.groups);
        assert_eq!(found, expected, "{role}");
    }
}
