//! What `bff check-config` asks Open WebUI, so a misconfigured connection shows up there and
//! not as users' "Model not found" (Open WebUI drops a connection whose `/models` answers 401).

use bff_auth::Secret;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use url::Url;

/// One finding: `Ok` is fine, `Err` needs the operator.
pub type Finding = Result<String, String>;

/// Checks that Open WebUI answers and whether it accepts tokens signed with bff's
/// `WEBUI_SECRET_KEY`: a token for a user that does not exist is refused either way, but Open
/// WebUI says "Invalid authentication request." only once the signature checked out (observed
/// with 0.12.4; anything else is reported as undecided rather than guessed).
pub async fn openwebui(base: &Url, webui_secret: &Secret, timeout: Duration) -> Vec<Finding> {
    let client = match reqwest::Client::builder().timeout(timeout).build() {
        Ok(client) => client,
        Err(error) => return vec![Err(format!("cannot build an HTTP client: {error}"))],
    };
    let health = base.join("health").map_err(|error| error.to_string());
    let answered = match health {
        Ok(url) => client
            .get(url)
            .send()
            .await
            .map_err(|error| error.to_string()),
        Err(error) => Err(error),
    };
    match answered {
        Ok(response) if response.status().is_success() => {}
        Ok(response) => {
            return vec![Err(format!(
                "Open WebUI at {base} answered /health with HTTP {}",
                response.status().as_u16()
            ))];
        }
        Err(error) => {
            return vec![Err(format!(
                "Open WebUI at {base} does not answer: {error}"
            ))];
        }
    }
    vec![
        Ok(format!("Open WebUI answers at {base}")),
        secret_matches(&client, base, webui_secret).await,
    ]
}

async fn secret_matches(client: &reqwest::Client, base: &Url, secret: &Secret) -> Finding {
    let token =
        probe_token(secret).map_err(|error| format!("cannot sign a probe token: {error}"))?;
    let url = base
        .join("api/v1/auths/")
        .map_err(|error| error.to_string())?;
    let response = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|error| format!("Open WebUI did not answer the token check: {error}"))?;
    let status = response.status().as_u16();
    let detail = response
        .json::<Value>()
        .await
        .ok()
        .and_then(|body| {
            body.get("detail")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    match (status, detail.as_str()) {
        (401, "Invalid authentication request.") => Ok(
            "WEBUI_SECRET_KEY matches Open WebUI's: it took a token bff signed as genuine".into(),
        ),
        (401, detail) if detail.contains("Unauthorized") || detail.contains("Invalid token") => {
            Err(format!(
                "WEBUI_SECRET_KEY does not match Open WebUI's: it refused a token bff signed as forged ({detail}). \
             Copy Open WebUI's WEBUI_SECRET_KEY (or its .webui_secret_key file) byte for byte"
            ))
        }
        (status, detail) => Err(format!(
            "could not tell whether WEBUI_SECRET_KEY matches Open WebUI's: HTTP {status} {detail}"
        )),
    }
}

/// A session token for a user that cannot exist, valid for a minute.
fn probe_token(secret: &Secret) -> Result<String, jsonwebtoken::errors::Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let id = format!("bff-check-config-{}", uuid::Uuid::new_v4());
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"id": id, "typ": "session", "iat": now, "exp": now + 60, "jti": uuid::Uuid::new_v4().to_string()}),
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    /// Open WebUI 0.12.4's two answers to a token for an unknown user, recorded.
    async fn open_webui(detail: &str) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/health"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": true})))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api/v1/auths/"))
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({"detail": detail})))
            .expect(1)
            .mount(&server)
            .await;
        server
    }

    fn base(server: &MockServer) -> Url {
        Url::parse(&format!("{}/", server.uri())).unwrap()
    }

    #[tokio::test]
    async fn a_matching_secret_and_a_forged_one_are_told_apart() {
        let secret = Secret::new("webui-secret");
        let matching = open_webui("Invalid authentication request.").await;
        let findings = openwebui(&base(&matching), &secret, Duration::from_secs(2)).await;
        assert!(findings.iter().all(Result::is_ok), "{findings:?}");
        let forged = open_webui("401 Unauthorized").await;
        let findings = openwebui(&base(&forged), &secret, Duration::from_secs(2)).await;
        let error = findings[1].as_ref().unwrap_err();
        assert!(error.contains("does not match"), "{error}");
    }

    #[tokio::test]
    async fn a_silent_open_webui_is_reported_by_address() {
        let url = Url::parse("http://127.0.0.1:9/").unwrap();
        let findings = openwebui(&url, &Secret::new("s"), Duration::from_millis(500)).await;
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0]
                .as_ref()
                .unwrap_err()
                .contains("does not answer")
        );
    }
}
