//! Who is calling, and may they chat? A session token checked the way a service behind Open
//! WebUI checks it, against a two-role policy, with no network: without `OPENWEBUI_URL` a valid
//! token authenticates but carries no role (Open WebUI alone knows roles), and a service key acts
//! with the policy's `service_role`.
//!
//! `cargo run -p bff-auth --example check_token`
#![allow(clippy::print_stdout)] // an example's output

use bff_auth::{AuthSettings, Gate, Permission, Policy, RequestCredentials};

/// This service's own permission names.
const CHAT: Permission = Permission::new("chat");

const POLICY: &str = r#"
service_role = "batch"
[roles.user]
permissions = ["chat"]
[roles.batch]
permissions = ["chat"]
"#;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = AuthSettings::from_lookup(|name| match name {
        "WEBUI_SECRET_KEY" => Some("example-secret-of-at-least-32-bytes!".to_owned()),
        "AUTH_SERVICE_KEYS" => Some("nightly=sk-example-service-key-0001".to_owned()),
        _ => None,
    })?;
    let policy = Policy::parse(POLICY, "inline policy", &[CHAT])?;
    let gate = Gate::from_settings(&settings, policy)?;

    for (what, authorization) in [
        ("no credential", None),
        (
            "a token signed with another secret",
            Some("Bearer eyJhbGciOiJIUzI1NiJ9.eyJpZCI6InUifQ.c2ln"),
        ),
        (
            "the service key",
            Some("Bearer sk-example-service-key-0001"),
        ),
    ] {
        let headers: Vec<(&str, &[u8])> = authorization
            .map(|value| ("authorization", value.as_bytes()))
            .into_iter()
            .collect();
        let credentials = RequestCredentials::from_headers(headers).with_method("POST");
        match gate.authenticate(&credentials).await {
            Err(error) => println!("{what}: {} {}", error.status(), error.body()),
            Ok(identity) => match gate.authorize(&identity, &CHAT) {
                Ok(()) => println!(
                    "{what}: {} ({:?}) may chat",
                    identity.user_id, identity.role
                ),
                Err(error) => println!("{what}: {} {}", error.status(), error.body()),
            },
        }
    }
    Ok(())
}
