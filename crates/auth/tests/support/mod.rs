//! Shared fixtures: tokens minted exactly as Open WebUI 0.12.4 mints them, and the whoami
//! bodies recorded in `shared/contracts/open-webui.md`.
#![allow(dead_code)] // each test binary uses a different subset

use bff_auth::{AuthSettings, Gate, Permission, Policy};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const WEBUI_SECRET: &str = "test-webui-secret-key-32-bytes!!";
pub const FORWARD_SECRET: &str = "test-forward-user-jwt-secret-0001";
pub const SERVICE_KEY: &str = "sk-bff-connection-key-for-tests";
pub const ALICE: &str = "5f0c2b7e-3d41-4a8e-9c57-2e1b6d9f0a13";
pub const API_KEY: &str = "sk-0f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// The vocabulary of the service these tests play.
pub const CHAT: Permission = Permission::new("chat");
pub const MODELS: Permission = Permission::new("models");
pub const REPORTS_OWN: Permission = Permission::new("reports:own");
pub const REPORTS_ALL: Permission = Permission::new("reports:all");
pub const PERMISSIONS: [Permission; 4] = [CHAT, MODELS, REPORTS_OWN, REPORTS_ALL];

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn sign(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A current-format Open WebUI session token for `user_id`, valid for four weeks.
pub fn session_token(user_id: &str) -> String {
    let now = now();
    sign(
        WEBUI_SECRET,
        &json!({"id": user_id, "typ": "session", "auth_method": "password", "auth_time": now,
                "session_stamp": "9b2d4e61-7a0f-4c3b-8e15-d6a4f2c9b870", "mfa_verified": false,
                "exp": now + 2_419_200, "jti": "c4e8a1f2-6b3d-4f9a-a027-51d9e3b6c8f4", "iat": now}),
    )
}

/// The signed `X-OpenWebUI-User-Jwt` Open WebUI sends with `FORWARD_USER_INFO_HEADER_JWT_SECRET`.
pub fn forwarded_jwt(secret: &str, role: &str, iss: &str, exp_offset: i64) -> String {
    let now = now();
    sign(
        secret,
        &json!({"sub": ALICE, "email": "alice@example.com", "name": "Alice Admin", "role": role,
                "iss": iss, "iat": now, "exp": now.saturating_add_signed(exp_offset)}),
    )
}

/// `GET /api/v1/auths/` 200 body (it echoes the token, as the real one does).
pub fn auths_body(user_id: &str, role: &str, token: &str) -> Value {
    json!({"id": user_id, "name": "Alice Admin", "email": "alice@example.com", "role": role,
           "profile_image_url": "/user.png", "token": token, "token_type": "Bearer",
           "expires_at": 1_797_970_760_u64,
           "permissions": {"workspace": {"models": false}, "features": {"api_keys": false},
                           "settings": {"interface": true}},
           "bio": null, "gender": null, "date_of_birth": null, "status_emoji": null,
           "status_message": null, "status_expires_at": null})
}

/// `GET /api/v1/users/user/status` 200 body: the user row.
pub fn status_body(user_id: &str, role: &str) -> Value {
    json!({"id": user_id, "email": "alice@example.com", "username": null, "role": role,
           "name": "Alice Admin", "profile_image_url": "/user.png", "info": null,
           "settings": null, "oauth": null, "scim": null, "last_active_at": 1_795_553_070_u64,
           "updated_at": 1_795_553_070_u64, "created_at": 1_795_551_560_u64})
}

/// Answers `/api/v1/auths/` for `token` with `role`, expecting exactly `calls` calls.
pub async fn stub_session(server: &MockServer, token: &str, role: &str, calls: u64) {
    Mock::given(method("GET"))
        .and(path("/api/v1/auths/"))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(auths_body(ALICE, role, token)))
        .expect(calls)
        .mount(server)
        .await;
}

/// One of Open WebUI's group objects as `GET /api/v1/users/groups?include_inherited=true`
/// lists it (0.12.4).
pub fn group_body(id: &str, name: &str, membership: &str) -> Value {
    json!({"id": id, "user_id": ALICE, "name": name, "description": format!("the {name} team"),
           "parent_group_id": null, "data": null, "meta": null,
           "permissions": {"workspace": {"models": false}}, "created_at": 1_795_551_560_u64,
           "updated_at": 1_795_551_560_u64, "membership_type": membership})
}

/// A wiremock Open WebUI in which every user is in no group until a test says otherwise
/// (a group mock of higher priority, see [`stub_groups`]).
pub async fn open_webui() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/users/groups"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .with_priority(10)
        .mount(&server)
        .await;
    server
}

/// Answers the caller's own groups, for `credential`, with `groups` (id, name).
pub async fn stub_groups(server: &MockServer, credential: &str, groups: &[(&str, &str)]) {
    let body: Vec<Value> = groups
        .iter()
        .map(|(id, name)| group_body(id, name, "direct"))
        .collect();
    Mock::given(method("GET"))
        .and(path("/api/v1/users/groups"))
        .and(wiremock::matchers::query_param("include_inherited", "true"))
        .and(header(
            "authorization",
            format!("Bearer {credential}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .with_priority(1)
        .mount(server)
        .await;
}

/// A gate built from settings the way a server builds it.
pub fn gate(vars: &[(&str, &str)]) -> Gate {
    let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/policy.toml");
    let mut map: HashMap<String, String> = HashMap::from([
        ("WEBUI_SECRET_KEY".to_owned(), WEBUI_SECRET.to_owned()),
        ("RBAC_POLICY_FILE".to_owned(), policy.to_owned()),
    ]);
    for (name, value) in vars {
        map.insert((*name).to_owned(), (*value).to_owned());
    }
    let settings = AuthSettings::from_lookup(|name| map.get(name).cloned()).unwrap();
    let policy = Policy::load(&settings.policy_file, &PERMISSIONS).unwrap();
    Gate::from_settings(&settings, policy).unwrap()
}
